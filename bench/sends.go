package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Message is the body of PUT /v1/messages/{id} (SPEC §2).
type Message struct {
	Name         string `json:"name"`
	Campaign     string `json:"campaign"`
	CampaignType string `json:"campaign_type"`
	Channel      string `json:"channel"`
	DOI          bool   `json:"doi"`
}

// SendInfo is the answer of GET /v1/sends/{id}.
type SendInfo struct {
	SendID    string `json:"send_id"`
	MessageID string `json:"message_id"`
	ListID    string `json:"list_id"`
	Status    string `json:"status"`
	Reserved  int64  `json:"reserved"`
	Assigned  int64  `json:"assigned"`
	CreatedAt string `json:"created_at"`
}

// OpenSendReply is the answer of PUT /v1/sends/{id}.
type OpenSendReply struct {
	SendID   string `json:"send_id"`
	ListID   string `json:"list_id"`
	Reserved int64  `json:"reserved"`
}

// sendJSON sends v as a JSON body and decodes the answer into out. A status
// outside want (when given) is an error.
func (c *Client) sendJSON(ctx context.Context, method, path string, v any, out any, want ...int) (int, error) {
	var body []byte
	var rd io.Reader
	ct := ""
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			return 0, err
		}
		rd, ct = bytes.NewReader(body), "application/json"
	}
	req, err := c.newRequest(ctx, method, path, rd, int64(len(body)), ct)
	if err != nil {
		return 0, err
	}
	st, err := c.doJSON(req, 0, out)
	if err != nil {
		return st, err
	}
	if len(want) > 0 {
		for _, w := range want {
			if st == w {
				return st, nil
			}
		}
		return st, fmt.Errorf("%s %s: HTTP %d, want one of %v", method, path, st, want)
	}
	return st, nil
}

// PutMessage upserts a message (200 or 201).
func (c *Client) PutMessage(ctx context.Context, id string, m Message) error {
	_, err := c.sendJSON(ctx, http.MethodPut, "/v1/messages/"+url.PathEscape(id), m, nil, http.StatusOK, http.StatusCreated)
	return err
}

// AssignList assigns a list to a message (200).
func (c *Client) AssignList(ctx context.Context, messageID, listID string) error {
	_, err := c.sendJSON(ctx, http.MethodPut, "/v1/messages/"+url.PathEscape(messageID)+"/coupon-list",
		map[string]string{"list_id": listID}, nil, http.StatusOK)
	return err
}

// OpenSend opens a send with a reservation of expected codes (200 or 201),
// and with the shortage policy onShortage unless it is "".
func (c *Client) OpenSend(ctx context.Context, sendID, messageID string, expected int64, onShortage string) (OpenSendReply, error) {
	var out OpenSendReply
	body := map[string]any{"message_id": messageID, "expected_recipients": expected}
	if onShortage != "" {
		body["on_shortage"] = onShortage
	}
	_, err := c.sendJSON(ctx, http.MethodPut, "/v1/sends/"+url.PathEscape(sendID), body, &out, http.StatusOK, http.StatusCreated)
	return out, err
}

// GetSend answers GET /v1/sends/{id}.
func (c *Client) GetSend(ctx context.Context, sendID string) (SendInfo, error) {
	var out SendInfo
	_, err := c.sendJSON(ctx, http.MethodGet, "/v1/sends/"+url.PathEscape(sendID), nil, &out, http.StatusOK)
	return out, err
}

// TopUp adds the codes [start, start+count) of g to a list (200).
func (c *Client) TopUp(ctx context.Context, listID string, g *CodeGen, start, count uint64) (ImportResult, time.Duration, error) {
	var out ImportResult
	r, err := NewCodeReader(g, start, count)
	if err != nil {
		return out, 0, err
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/lists/"+url.PathEscape(listID)+"/codes", r, CSVSize(g, count), "text/csv")
	if err != nil {
		return out, 0, err
	}
	t0 := time.Now()
	_, err = c.doJSON(req, http.StatusOK, &out)
	return out, time.Since(t0), err
}

// SetFallbackCode sets the fallback code of a list (PATCH, SPEC §4) and
// answers the list.
func (c *Client) SetFallbackCode(ctx context.Context, listID, code string) (List, error) {
	var out List
	_, err := c.sendJSON(ctx, http.MethodPatch, "/v1/lists/"+url.PathEscape(listID), map[string]any{"fallback_code": code}, &out, http.StatusOK)
	return out, err
}

// sendRun is what every send scenario sets up before it is timed: a fresh
// list holding the generated codes [0, imported), and a message using it.
type sendRun struct {
	runID        string // unique per run: names the list, the message and the sends
	g            *CodeGen
	listID       string
	messageID    string
	imported     int64  // codes imported so far (the next index to import)
	onShortage   string // the policy asked of the sends ("": the server's default)
	fallbackCode string // the list's fallback code ("": none)
}

// FallbackCode is the fallback code the send scenarios give their list with
// --on-shortage fallback. It has a '-', so the harness never generates it
// as one of the list's codes (CodeAlphabet).
const FallbackCode = "BENCH-FALLBACK"

// newRunID is a short id unique per run (base 36 of the time in ns).
func newRunID() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }

// setupSends imports codes generated codes into a new list (not timed),
// then creates a message and assigns the list to it.
func setupSends(ctx context.Context, env *Env, scenario string, codes int64) (*sendRun, error) {
	c := env.Client
	if _, err := c.Lists(ctx); err != nil {
		return nil, fmt.Errorf("GET /v1/lists before the setup: %w", err)
	}
	g, err := NewCodeGen(env.Cfg.CodeLen)
	if err != nil {
		return nil, err
	}
	run := &sendRun{runID: newRunID(), g: g}
	name := "bench-" + run.runID
	env.logf("%s: setup: importing %d codes into list %q (not timed)", scenario, codes, name)
	reply, d, err := ImportUpload(ctx, c, name, codes, env.Cfg.CodeLen)
	if err != nil {
		return nil, fmt.Errorf("setup import: %w", err)
	}
	var readBack *List
	if reply.List.ID != "" {
		if l, err := c.GetList(ctx, reply.List.ID); err == nil {
			readBack = &l
		} else {
			return nil, fmt.Errorf("setup: reading the list back: %w", err)
		}
	}
	if p := CheckImport(codes, reply, readBack); len(p) > 0 {
		return nil, &CheckError{Scenario: scenario + " (setup import)", Problems: p}
	}
	run.listID = reply.List.ID
	run.imported = codes
	run.messageID = "bench-" + run.runID
	msg := Message{Name: "couponbench " + scenario, Campaign: "couponbench", CampaignType: "standard", Channel: "email", DOI: false}
	if err := c.PutMessage(ctx, run.messageID, msg); err != nil {
		return nil, fmt.Errorf("setup message: %w", err)
	}
	if err := c.AssignList(ctx, run.messageID, run.listID); err != nil {
		return nil, fmt.Errorf("setup coupon list: %w", err)
	}
	run.onShortage = env.Cfg.OnShortage
	if run.onShortage == ShortageFallback {
		l, err := c.SetFallbackCode(ctx, run.listID, FallbackCode)
		if err != nil {
			return nil, fmt.Errorf("setup fallback code: %w", err)
		}
		if l.FallbackCode == nil || *l.FallbackCode != FallbackCode {
			return nil, &CheckError{Scenario: scenario + " (setup)", Problems: []string{
				fmt.Sprintf("PATCH list %s: fallback_code %v, want %q", run.listID, l.FallbackCode, FallbackCode)}}
		}
		run.fallbackCode = FallbackCode
	}
	env.logf("%s: setup: list %s (%d codes, imported in %.2fs), message %s", scenario, run.listID, codes, d.Seconds(), run.messageID)
	if env.Cluster != nil {
		// Followers apply the import after the leader answers it: the timed
		// part starts once every node has, so it times the sends alone.
		// Nodes that never agree are reported by the check after the run.
		converge := env.Cfg.Timing.withDefaults().ConvergeTimeout
		ds, ok, waited, err := env.Cluster.WaitConverged(ctx, converge)
		if err != nil || !ok {
			env.logf("%s: setup: the nodes did not agree within %s (%v): %s", scenario, converge, err, fmtDigests(ds))
		} else {
			env.logf("%s: setup: every node at applied_index %d %.2fs later (not timed)", scenario, ds[0].AppliedIndex, waited.Seconds())
		}
	}
	return run, nil
}
