package daemon

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/coupond/coupond/raftfsm"
)

// The alert webhook (README "Webhook"). The state machine records each
// low-stock crossing and each expiry warning in its outbox
// (raftfsm/alerts.go, raftfsm/lifecycle.go); while this node leads,
// webhook.run POSTs every pending alert, whatever its type, to
// --webhook-url, signed with --webhook-secret, retries failures with
// capped exponential backoff and jitter, and acknowledges delivered alerts
// through the log (raftfsm.AckAlerts), which removes them from the outbox.
// A new leader finds what was not acknowledged and delivers it again:
// delivery is at least once, and receivers dedupe on the alert id.

// Headers of a delivery. Renaming one breaks receivers.
const (
	headerAlertID   = "X-Coupond-Alert-Id"
	headerTimestamp = "X-Coupond-Timestamp"
	headerSignature = "X-Coupond-Signature"
)

// Defaults and limits of the delivery.
const (
	DefaultWebhookTimeout  = 10 * time.Second
	DefaultWebhookRetryMin = 250 * time.Millisecond
	DefaultWebhookRetryMax = 30 * time.Second
	webhookRescan          = 5 * time.Second // the outbox is read again at least this often
	webhookParallel        = 4               // deliveries in flight at once
	webhookAnswerLimit     = 4 << 10         // bytes of an answer read (and logged in part)
)

// alertPayload is the JSON body of a delivery: the same fields for every
// type, plus expires_at for expiry_soon.
type alertPayload struct {
	ID        uint64 `json:"id"`
	Type      string `json:"type"` // "low_stock" | "expiry_soon"
	Tenant    string `json:"tenant"`
	ListID    string `json:"list_id"`
	ListName  string `json:"list_name"`
	Threshold uint64 `json:"threshold"`
	Available uint64 `json:"available"`
	At        string `json:"at"`
	ExpiresAt string `json:"expires_at,omitempty"`
}

func alertBody(a raftfsm.Alert) []byte {
	p := alertPayload{ID: a.ID, Type: a.Type.String(), Tenant: a.Tenant, ListID: fmt.Sprintf("%016x", a.List),
		ListName: a.ListName, Threshold: a.Threshold, Available: a.Available, At: rfc3339(a.At)}
	if a.Type == raftfsm.AlertExpirySoon {
		p.ExpiresAt = rfc3339(a.ExpiresAt)
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic("BUG: cannot encode an alert: " + err.Error())
	}
	return b
}

// rfc3339 is a time of the state (unix ns) as the API shows times.
func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// SignAlert is the signature header's value for a body sent at timestamp
// (unix seconds, as sent in X-Coupond-Timestamp): "sha256=" and the hex
// HMAC-SHA256 of timestamp + "." + body under the secret.
func SignAlert(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// webhook delivers the outbox; one per node, run once per leadership.
type webhook struct {
	url      string // may hold credentials: logs show logURL
	logURL   string
	secret   []byte // never logged
	client   *http.Client
	retryMin time.Duration
	retryMax time.Duration
	fsm      *raftfsm.FSM
	ack      func(ids []uint64) error // proposes AckAlerts and waits for it to apply
	log      zerolog.Logger
}

func newWebhook(cfg Config, fsm *raftfsm.FSM, ack func([]uint64) error, log zerolog.Logger) *webhook {
	logURL := cfg.WebhookURL
	if u, err := url.Parse(cfg.WebhookURL); err == nil {
		logURL = u.Redacted()
	}
	return &webhook{
		url: cfg.WebhookURL, logURL: logURL, secret: []byte(cfg.WebhookSecret),
		client: &http.Client{
			Timeout: cfg.WebhookTimeout,
			// A redirect would carry the signed alert somewhere else: a 3xx is a failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport:     &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: webhookParallel},
		},
		retryMin: cfg.WebhookRetryMin, retryMax: cfg.WebhookRetryMax,
		fsm: fsm, ack: ack, log: log,
	}
}

// attempts is what the loop knows of one pending alert.
type attempts struct {
	n         int       // failed attempts so far
	due       time.Time // next attempt
	delivered bool      // accepted by the receiver, acknowledgement not applied yet
}

// run delivers pending alerts until ctx ends. It wakes on every new alert,
// on the earliest retry due, and every webhookRescan.
func (w *webhook) run(ctx context.Context) {
	defer w.client.CloseIdleConnections()
	w.log.Info().Str("url", w.logURL).Msg("delivering alerts")
	state := map[uint64]*attempts{}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.fsm.AlertsChanged():
		}
		wait := w.round(ctx, state)
		if ctx.Err() != nil {
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// round attempts every alert that is due, acknowledges the delivered ones,
// and answers how long the loop may sleep.
func (w *webhook) round(ctx context.Context, state map[uint64]*attempts) time.Duration {
	pending := w.fsm.PendingAlerts()
	live := make(map[uint64]bool, len(pending))
	now := time.Now()
	var due []raftfsm.Alert
	var delivered []uint64
	for _, a := range pending {
		live[a.ID] = true
		st := state[a.ID]
		if st == nil {
			st = &attempts{due: now}
			state[a.ID] = st
		}
		switch {
		case st.delivered:
			delivered = append(delivered, a.ID)
		case !st.due.After(now):
			due = append(due, a)
		}
	}
	for id := range state {
		if !live[id] {
			delete(state, id) // acknowledged, or dropped from a full outbox
		}
	}

	// Deliver what is due, webhookParallel at a time.
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, webhookParallel)
	for _, a := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := w.post(ctx, a)
			if ctx.Err() != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			st := state[a.ID]
			if err == nil {
				st.delivered = true
				delivered = append(delivered, a.ID)
				return
			}
			st.n++
			backoff := w.backoff(st.n)
			st.due = time.Now().Add(backoff)
			ev := w.log.Debug()
			if st.n == 1 || st.n%10 == 0 {
				ev = w.log.Warn()
			}
			ev.Uint64("alert", a.ID).Str("type", a.Type.String()).Int("attempt", st.n).Dur("retry_in", backoff).Err(err).
				Msg("alert not delivered; retrying")
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return 0
	}

	wait := webhookRescan
	if len(delivered) > 0 {
		if err := w.acknowledge(delivered); err != nil {
			w.log.Warn().Err(err).Int("alerts", len(delivered)).Msg("cannot acknowledge delivered alerts; retrying")
			wait = w.retryMin
		} else {
			for _, id := range delivered {
				delete(state, id)
			}
		}
	}
	now = time.Now()
	for _, st := range state {
		if !st.delivered {
			wait = min(wait, max(st.due.Sub(now), 0))
		}
	}
	return wait
}

// acknowledge proposes the removal of delivered alerts, MaxAckAlerts per entry.
func (w *webhook) acknowledge(ids []uint64) error {
	for len(ids) > 0 {
		n := min(len(ids), raftfsm.MaxAckAlerts)
		if err := w.ack(ids[:n]); err != nil {
			return err
		}
		w.log.Debug().Int("alerts", n).Msg("alerts delivered and acknowledged")
		ids = ids[n:]
	}
	return nil
}

// backoff is the wait after the n-th failed attempt: retryMin doubled per
// attempt up to retryMax, with its upper half jittered.
func (w *webhook) backoff(n int) time.Duration {
	d := w.retryMax
	if n < 40 {
		d = min(w.retryMin<<(n-1), w.retryMax)
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// errRejected is a delivery the receiver answered with a status other than 2xx.
var errRejected = errors.New("receiver did not accept the alert")

// post makes one attempt. The timestamp is the attempt's own, so a
// receiver can refuse old replays.
func (w *webhook) post(ctx context.Context, a raftfsm.Alert) error {
	body := alertBody(a)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("cannot make the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "coupond-webhook/1")
	req.Header.Set(headerAlertID, strconv.FormatUint(a.ID, 10))
	req.Header.Set(headerTimestamp, ts)
	req.Header.Set(headerSignature, SignAlert(w.secret, ts, body))
	resp, err := w.client.Do(req)
	if err != nil {
		return err // net/http leaves the URL's password out of its errors
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, webhookAnswerLimit))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if len(answer) > 200 {
			answer = answer[:200]
		}
		return fmt.Errorf("%w: status %d: %q", errRejected, resp.StatusCode, answer)
	}
	return nil
}

// alertDelivery runs the webhook during one leadership: start after the
// barrier of the term, stop when it ends (or the node closes).
type alertDelivery struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *alertDelivery) start(w *webhook) {
	d.stop()
	if w == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan struct{})
	go func() {
		defer close(d.done)
		w.run(ctx)
	}()
}

// stop ends the delivery and waits for it: an attempt in flight is cut off.
func (d *alertDelivery) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	<-d.done
	d.cancel, d.done = nil, nil
}

// ackAlerts proposes an AckAlerts entry and waits until it is applied.
func (n *Node) ackAlerts(ids []uint64) error { return n.prop.AckAlerts(ids, n.done) }
