package client

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// List is a code list with its counts (SPEC §2).
type List struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	Dedupe            bool      `json:"dedupe"`
	LowStockThreshold uint64    `json:"low_stock_threshold"`
	LowStock          bool      `json:"low_stock"`
	Added             uint64    `json:"added"`
	Available         uint64    `json:"available"`
	Reserved          uint64    `json:"reserved"`
	Used              uint64    `json:"used"`
	Withdrawn         uint64    `json:"withdrawn"`
	UsedOrDeleted     uint64    `json:"used_or_deleted"`
	CreatedAt         time.Time `json:"created_at"`
	// FallbackCode is what recipients of a send with on_shortage
	// "fallback" get when the list runs dry; nil when the list has none.
	FallbackCode *string `json:"fallback_code"`
	// ExpiresAt is when the list stops handing out codes; nil for never.
	ExpiresAt         *time.Time `json:"expires_at"`
	ExpiryWarningDays uint32     `json:"expiry_warning_days"`
	Expired           bool       `json:"expired"`
	Released          uint64     `json:"released"`      // codes given back by releases, ever
	FallbackUsed      uint64     `json:"fallback_used"` // live fallback assignments
}

// ListDetail is one list with the messages it is assigned to.
type ListDetail struct {
	List
	AssignedMessages []AssignedMessage `json:"assigned_messages"`
}

// AssignedMessage is a message that has the list.
type AssignedMessage struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Campaign       string `json:"campaign"`
	CampaignType   string `json:"campaign_type"`
	CampaignStatus string `json:"campaign_status"`
}

// NewList describes a list to create; nil fields take the server's
// defaults (de-duplication on, no low-stock threshold, no fallback code,
// no expiry, expiry warning 7 days ahead).
type NewList struct {
	Name              string     `json:"name"`
	Dedupe            *bool      `json:"dedupe,omitempty"`
	LowStockThreshold *uint64    `json:"low_stock_threshold,omitempty"`
	FallbackCode      *string    `json:"fallback_code,omitempty"`
	ExpiresAt         *time.Time `json:"expires_at,omitempty"`
	ExpiryWarningDays *uint32    `json:"expiry_warning_days,omitempty"`
}

// ListUpdate changes the fields that are not nil; ClearFallback and
// NoExpiry remove the fallback code and the expiry (they win over
// FallbackCode and ExpiresAt).
type ListUpdate struct {
	Name              *string
	LowStockThreshold *uint64
	FallbackCode      *string
	ClearFallback     bool
	ExpiresAt         *time.Time
	NoExpiry          bool
	ExpiryWarningDays *uint32
}

// MarshalJSON writes the PATCH body: only the fields to change, and null
// for a field to clear (the server tells "absent" from null).
func (u ListUpdate) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if u.Name != nil {
		m["name"] = *u.Name
	}
	if u.LowStockThreshold != nil {
		m["low_stock_threshold"] = *u.LowStockThreshold
	}
	switch {
	case u.ClearFallback:
		m["fallback_code"] = nil
	case u.FallbackCode != nil:
		m["fallback_code"] = *u.FallbackCode
	}
	switch {
	case u.NoExpiry:
		m["expires_at"] = nil
	case u.ExpiresAt != nil:
		m["expires_at"] = u.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	if u.ExpiryWarningDays != nil {
		m["expiry_warning_days"] = *u.ExpiryWarningDays
	}
	return json.Marshal(m)
}

// empty reports an update that changes nothing.
func (u ListUpdate) empty() bool {
	return u.Name == nil && u.LowStockThreshold == nil && u.FallbackCode == nil && !u.ClearFallback &&
		u.ExpiresAt == nil && !u.NoExpiry && u.ExpiryWarningDays == nil
}

// ImportResult is the outcome of an import or top-up.
type ImportResult struct {
	Imported   uint64 `json:"imported"`
	Duplicates uint64 `json:"duplicates"`
	Size       uint64 `json:"size"` // available codes after the import
	// InOtherLists counts the imported codes that already stood in another
	// list of the tenant.
	InOtherLists uint64 `json:"in_other_lists"`
}

// CreatedList is the answer of CreateAndImport.
type CreatedList struct {
	List   List         `json:"list"`
	Import ImportResult `json:"import"`
}

// WithdrawResult is the outcome of a withdrawal.
type WithdrawResult struct {
	Withdrawn   uint64 `json:"withdrawn"`
	NotFound    uint64 `json:"not_found"`
	AlreadyUsed uint64 `json:"already_used"`
}

// Upload is a single-column CSV body of codes (SPEC §2, CSV rules).
type Upload struct {
	// Body is read once, as it is sent. When it is an io.Seeker (an
	// *os.File, say) the client can rewind it to send it again.
	Body io.Reader
	// Size is the length of Body in bytes when known, which lets the
	// server refuse an oversized upload at once; 0 means unknown.
	Size int64
	// Header skips the first line.
	Header bool
	// IdempotencyKey names the upload: a repeat with the same key answers
	// the first result instead of importing again. Empty, the client makes
	// one for a rewindable Body, so that its own retries cannot import
	// twice; a non-rewindable Body without a key is sent once.
	IdempotencyKey string
	// Gzip compresses Body as it is sent (Content-Encoding: gzip): a
	// CSV of codes shrinks several times over the wire. Size is then not
	// sent (the compressed length is not known in advance); the server's
	// body limit still holds for the uncompressed bytes.
	Gzip bool
}

// CodeInfo is the state of one code of a list.
type CodeInfo struct {
	Code       string          `json:"code"`
	State      string          `json:"state"` // available, assigned or withdrawn
	Assignment *CodeAssignment `json:"assignment,omitempty"`
}

// CodeAssignment tells who got an assigned code.
type CodeAssignment struct {
	Recipient  string    `json:"recipient"`
	SendID     string    `json:"send_id"`
	MessageID  string    `json:"message_id"`
	AssignedAt time.Time `json:"assigned_at"`
}

// Message is a creative of the mailing platform.
type Message struct {
	ID           string  `json:"id"`
	Name         string  `json:"name"`
	Campaign     string  `json:"campaign"`
	CampaignType string  `json:"campaign_type"`
	Channel      string  `json:"channel"`
	DOI          bool    `json:"doi"`
	Status       string  `json:"status"`
	CouponListID *string `json:"coupon_list_id"`
}

// MessageInput is the body of PutMessage. Status empty keeps the server's
// choice ("draft" for a new message).
type MessageInput struct {
	Name         string `json:"name"`
	Campaign     string `json:"campaign"`
	CampaignType string `json:"campaign_type"` // standard, auto, tracking, network_tracking
	Channel      string `json:"channel"`       // email, web_push, app_push, sms, voice, print
	DOI          bool   `json:"doi"`
	Status       string `json:"status,omitempty"` // draft or sent
}

// The shortage policies of a send (SPEC §4): what an allocation does when
// the send cannot draw a new code for every recipient.
const (
	// ShortageReject refuses the whole request (409 insufficient_codes).
	ShortageReject = "reject"
	// ShortageFallback gives the codes there are, then the list's fallback
	// code (like reject when the list has none).
	ShortageFallback = "fallback"
)

// SendOption sets an optional field of OpenSend or Allocate.
type SendOption func(*sendOptions)

type sendOptions struct {
	onShortage string
}

// OnShortage sets the send's shortage policy, ShortageReject or
// ShortageFallback. OpenSend sets it on a new or open send; Allocate only
// on a send that the allocation opens (an existing send keeps its own).
func OnShortage(policy string) SendOption {
	return func(o *sendOptions) { o.onShortage = policy }
}

func sendOpts(opts []SendOption) sendOptions {
	var o sendOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// OpenedSend is the answer of OpenSend.
type OpenedSend struct {
	SendID     string `json:"send_id"`
	ListID     string `json:"list_id"`
	Reserved   uint64 `json:"reserved"`
	OnShortage string `json:"on_shortage"`
}

// Send is a send's state.
type Send struct {
	SendID     string    `json:"send_id"`
	MessageID  string    `json:"message_id"`
	ListID     string    `json:"list_id"`
	Status     string    `json:"status"` // open or closed
	Reserved   uint64    `json:"reserved"`
	Assigned   uint64    `json:"assigned"` // live assignments, fallback ones included
	OnShortage string    `json:"on_shortage"`
	CreatedAt  time.Time `json:"created_at"`
}

// Assignment is one recipient's code in a send. Fallback marks the list's
// fallback code, which is not one of its codes.
type Assignment struct {
	Recipient string `json:"recipient"`
	Code      string `json:"code"`
	Fallback  bool   `json:"fallback,omitempty"`
}

// ReleaseResult is the outcome of Release.
type ReleaseResult struct {
	Released        uint64 `json:"released"`
	NotAssigned     uint64 `json:"not_assigned"`
	AlreadyReleased uint64 `json:"already_released"`
}

// Forecast tells whether a list lasts for a send (SPEC §4).
type Forecast struct {
	Recipients    uint64     `json:"recipients"`
	Needed        uint64     `json:"needed"` // recipients less the send's hold
	Available     uint64     `json:"available"`
	Reserved      uint64     `json:"reserved"`
	Shortfall     uint64     `json:"shortfall"`
	Enough        bool       `json:"enough"`
	UsedLast7Days uint64     `json:"used_last_7_days"`
	UsedPerDay    float64    `json:"used_per_day"`
	RunsOutAt     *time.Time `json:"runs_out_at"` // nil with no use in the last 7 days
	ExpiresAt     *time.Time `json:"expires_at"`
	Expired       bool       `json:"expired"`
}

// Allocation is the answer of Allocate: one code per requested recipient,
// in request order, and the list's available count after it.
type Allocation struct {
	Assignments []Assignment `json:"assignments"`
	Available   uint64       `json:"available"`
}

// HistoryEntry is one code a recipient got.
type HistoryEntry struct {
	Code       string    `json:"code"`
	ListID     string    `json:"list_id"`
	MessageID  string    `json:"message_id"`
	SendID     string    `json:"send_id"`
	AssignedAt time.Time `json:"assigned_at"`
	Fallback   bool      `json:"fallback,omitempty"`
	// ReleasedAt is when the assignment was released; nil while it is live.
	ReleasedAt *time.Time `json:"released_at,omitempty"`
}

// Tenant is one customer of the platform.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// NewToken is a token just made; Token, the secret, is shown only once.
type NewToken struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

// ClusterStatus is a node's view of the cluster.
type ClusterStatus struct {
	Leader       *string       `json:"leader"`
	Nodes        []ClusterNode `json:"nodes"`
	Term         uint64        `json:"term"`
	CommitIndex  uint64        `json:"commit_index"`
	AppliedIndex uint64        `json:"applied_index"`
}

// ClusterNode is one member as a node sees it.
type ClusterNode struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Suffrage string `json:"suffrage"`
	State    string `json:"state"` // leader, follower, catching_up, unreachable, ...
}

// Node names a node to add to the cluster.
type Node struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
}

// Format is the encoding of an export.
type Format int

const (
	// CSV is "recipient,code" lines, RFC 4180 quoting, no header.
	CSV Format = iota
	// JSON is {"assignments": [{"recipient","code","assigned_at"}]}, with
	// "fallback": true and "released_at" where they apply.
	JSON
)

// Lists answers the tenant's lists.
func (c *Client) Lists(ctx context.Context) ([]List, error) {
	var out struct {
		Lists []List `json:"lists"`
	}
	cl, _ := jsonCall("GET", route("v1", "lists"), nil, retryAlways)
	_, err := c.doJSON(ctx, cl, &out)
	return out.Lists, err
}

// GetList answers one list with its counts and assigned messages.
func (c *Client) GetList(ctx context.Context, id string) (*ListDetail, error) {
	return callJSON[ListDetail](ctx, c, "GET", route("v1", "lists", id), nil, retryAlways)
}

// CreateList makes an empty list. It is not repeated after an unknown
// outcome: a second try would make a second list.
func (c *Client) CreateList(ctx context.Context, l NewList) (*List, error) {
	return callJSON[List](ctx, c, "POST", route("v1", "lists"), l, retryNever)
}

// CreateAndImport makes a list named name and imports up into it in one
// step: a CSV error creates no list. dedupe nil keeps the default (on).
func (c *Client) CreateAndImport(ctx context.Context, name string, dedupe *bool, up Upload) (*CreatedList, error) {
	q := url.Values{"name": {name}}
	if dedupe != nil {
		q.Set("dedupe", strconv.FormatBool(*dedupe))
	}
	var out CreatedList
	if _, err := c.doJSON(ctx, uploadCall(route("v1", "lists"), q, up, retryUpload), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TopUp imports up into an existing list.
func (c *Client) TopUp(ctx context.Context, listID string, up Upload) (*ImportResult, error) {
	var out ImportResult
	if _, err := c.doJSON(ctx, uploadCall(route("v1", "lists", listID, "codes"), nil, up, retryUpload), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Withdraw withdraws the unused codes of up from a list. It may be
// repeated: a code already withdrawn counts as withdrawn again, so a
// repeat answers as the first try did. up.IdempotencyKey is not used.
func (c *Client) Withdraw(ctx context.Context, listID string, up Upload) (*WithdrawResult, error) {
	up.IdempotencyKey = ""
	var out WithdrawResult
	if _, err := c.doJSON(ctx, uploadCall(route("v1", "lists", listID, "codes", "withdraw"), nil, up, retryAlways), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateList changes a list's name, low-stock threshold, fallback code or
// expiry; an update that changes nothing is refused before any call.
func (c *Client) UpdateList(ctx context.Context, id string, u ListUpdate) (*List, error) {
	if u.empty() {
		return nil, errors.New("the list update changes nothing")
	}
	// Setting fields to given values: a repeat changes nothing more.
	return callJSON[List](ctx, c, "PATCH", route("v1", "lists", id), u, retryAlways)
}

// DeleteList deletes a list (409 list_in_use while a message or an open
// send needs its codes).
func (c *Client) DeleteList(ctx context.Context, id string) error {
	cl, _ := jsonCall("DELETE", route("v1", "lists", id), nil, retryAlways)
	cl.gone = true
	_, err := c.doJSON(ctx, cl, nil)
	return err
}

// LookupCode answers the state of a code of a list and, once assigned, who got it.
func (c *Client) LookupCode(ctx context.Context, listID, code string) (*CodeInfo, error) {
	return callJSON[CodeInfo](ctx, c, "GET", route("v1", "lists", listID, "codes", code), nil, retryAlways)
}

// PutMessage creates or replaces a message; created tells which.
func (c *Client) PutMessage(ctx context.Context, id string, m MessageInput) (msg *Message, created bool, err error) {
	return upsertJSON[Message](ctx, c, "PUT", route("v1", "messages", id), m, retryAlways)
}

// GetMessage answers a message.
func (c *Client) GetMessage(ctx context.Context, id string) (*Message, error) {
	return callJSON[Message](ctx, c, "GET", route("v1", "messages", id), nil, retryAlways)
}

// AssignList gives a message its coupon list (422 not_eligible for a
// message that may have none).
func (c *Client) AssignList(ctx context.Context, messageID, listID string) (*Message, error) {
	return callJSON[Message](ctx, c, "PUT", route("v1", "messages", messageID, "coupon-list"), map[string]string{"list_id": listID}, retryAlways)
}

// UnassignList takes a message's coupon list away; codes and history stay.
func (c *Client) UnassignList(ctx context.Context, messageID string) error {
	cl, _ := jsonCall("DELETE", route("v1", "messages", messageID, "coupon-list"), nil, retryAlways)
	_, err := c.doJSON(ctx, cl, nil)
	return err
}

// OpenSend opens a send of a message; expected, when not nil, holds that
// many codes less those assigned already. created tells whether the send is new.
// OnShortage sets its shortage policy (a new send's is reject).
func (c *Client) OpenSend(ctx context.Context, sendID, messageID string, expected *uint64, opts ...SendOption) (s *OpenedSend, created bool, err error) {
	o := sendOpts(opts)
	in := struct {
		MessageID          string  `json:"message_id"`
		ExpectedRecipients *uint64 `json:"expected_recipients,omitempty"`
		OnShortage         string  `json:"on_shortage,omitempty"`
	}{messageID, expected, o.onShortage}
	return upsertJSON[OpenedSend](ctx, c, "PUT", route("v1", "sends", sendID), in, retryAlways)
}

// Allocate hands out one code per recipient of a send (at most 100,000
// per call). It is idempotent per send and recipient, so it is retried
// with the same send id: a repeat gets the same codes. messageID may be
// empty once the send exists. OnShortage sets the policy of a send that
// this call opens.
func (c *Client) Allocate(ctx context.Context, sendID, messageID string, recipients []string, opts ...SendOption) (*Allocation, error) {
	o := sendOpts(opts)
	in := struct {
		MessageID  string   `json:"message_id,omitempty"`
		OnShortage string   `json:"on_shortage,omitempty"`
		Recipients []string `json:"recipients"`
	}{messageID, o.onShortage, recipients}
	return callJSON[Allocation](ctx, c, "POST", route("v1", "sends", sendID, "codes"), in, retryAlways)
}

// Release gives the codes of recipients of a send back to its list (at
// most 100,000 per call): bounces, say. It is retried like allocation: a
// repeat finds the recipients released already (AlreadyReleased), so
// Released + AlreadyReleased of the last try count every recipient the
// first try released. (A recipient allocated again between two tries
// would lose that new code too: release a recipient only once it is no
// longer being sent to.)
func (c *Client) Release(ctx context.Context, sendID string, recipients []string) (*ReleaseResult, error) {
	in := struct {
		Recipients []string `json:"recipients"`
	}{recipients}
	return callJSON[ReleaseResult](ctx, c, "POST", route("v1", "sends", sendID, "release"), in, retryAlways)
}

// Forecast tells whether a list has enough codes for a send of recipients,
// and when it runs out at the rate of the last 7 days. With sendID (may be
// empty) the codes that send holds count towards the recipients.
func (c *Client) Forecast(ctx context.Context, listID string, recipients uint64, sendID string) (*Forecast, error) {
	q := url.Values{"recipients": {strconv.FormatUint(recipients, 10)}}
	if sendID != "" {
		q.Set("send_id", sendID)
	}
	cl, _ := jsonCall("GET", route("v1", "lists", listID, "forecast"), nil, retryAlways)
	cl.query = q
	var out Forecast
	if _, err := c.doJSON(ctx, cl, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CloseSend ends a send; its unused hold goes back to the list. Closing a
// closed send answers it as it is, so the call is repeated safely.
func (c *Client) CloseSend(ctx context.Context, sendID string) (*Send, error) {
	return callJSON[Send](ctx, c, "POST", route("v1", "sends", sendID, "close"), nil, retryAlways)
}

// GetSend answers a send's state.
func (c *Client) GetSend(ctx context.Context, sendID string) (*Send, error) {
	return callJSON[Send](ctx, c, "GET", route("v1", "sends", sendID), nil, retryAlways)
}

// ExportAssignments streams every assignment of a send into w, as the
// server writes them, and answers the bytes written. It is retried only
// until the answer starts: once bytes reached w, a broken stream is an
// error for the caller to repeat the whole export.
func (c *Client) ExportAssignments(ctx context.Context, sendID string, w io.Writer, f Format) (int64, error) {
	cl, _ := jsonCall("GET", route("v1", "sends", sendID, "assignments"), nil, retryAlways)
	accept := "text/csv"
	if f == JSON {
		accept = "application/json"
	}
	cl.header = http.Header{"Accept": {accept}}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("cannot export the assignments of send %q: %w", sendID, err)
	}
	return n, nil
}

// RecipientHistory answers every code a recipient got, across sends.
func (c *Client) RecipientHistory(ctx context.Context, recipient string) ([]HistoryEntry, error) {
	var out struct {
		Assignments []HistoryEntry `json:"assignments"`
	}
	cl, _ := jsonCall("GET", route("v1", "recipients", recipient, "assignments"), nil, retryAlways)
	_, err := c.doJSON(ctx, cl, &out)
	return out.Assignments, err
}

// CreateTenant makes a tenant (operator). A repeat answers 409 tenant_exists.
func (c *Client) CreateTenant(ctx context.Context, id, name string) (*Tenant, error) {
	return callJSON[Tenant](ctx, c, "POST", route("v1", "tenants"), map[string]string{"id": id, "name": name}, retryNever)
}

// Tenants answers every tenant (operator).
func (c *Client) Tenants(ctx context.Context) ([]Tenant, error) {
	var out struct {
		Tenants []Tenant `json:"tenants"`
	}
	cl, _ := jsonCall("GET", route("v1", "tenants"), nil, retryAlways)
	_, err := c.doJSON(ctx, cl, &out)
	return out.Tenants, err
}

// CreateToken makes a token of a tenant with role "admin" or "sender"
// (operator). It is not repeated after an unknown outcome: a second try
// would make a second token.
func (c *Client) CreateToken(ctx context.Context, tenant, role, name string) (*NewToken, error) {
	in := map[string]string{"role": role}
	if name != "" {
		in["name"] = name
	}
	return callJSON[NewToken](ctx, c, "POST", route("v1", "tenants", tenant, "tokens"), in, retryNever)
}

// RevokeToken revokes a token by its id (operator).
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	cl, _ := jsonCall("DELETE", route("v1", "tokens", id), nil, retryAlways)
	cl.gone = true
	_, err := c.doJSON(ctx, cl, nil)
	return err
}

// Cluster answers the node's view of the cluster (operator).
func (c *Client) Cluster(ctx context.Context) (*ClusterStatus, error) {
	return callJSON[ClusterStatus](ctx, c, "GET", route("v1", "cluster"), nil, retryAlways)
}

// AddNode adds a voter (operator); added is false when it was a member
// with these addresses already, which also makes the call safe to repeat.
func (c *Client) AddNode(ctx context.Context, n Node) (added bool, err error) {
	cl, err := jsonCall("POST", route("v1", "cluster", "nodes"), n, retryAlways)
	if err != nil {
		return false, err
	}
	st, err := c.doJSON(ctx, cl, nil)
	return st == http.StatusCreated, err
}

// RemoveNode removes a member (operator).
func (c *Client) RemoveNode(ctx context.Context, id string) error {
	cl, _ := jsonCall("DELETE", route("v1", "cluster", "nodes", id), nil, retryAlways)
	cl.gone = true
	_, err := c.doJSON(ctx, cl, nil)
	return err
}

// Healthz reports whether the process answers at all; it needs no token
// and is tried once, as a probe should be.
func (c *Client) Healthz(ctx context.Context) error {
	cl, _ := jsonCall("GET", "/healthz", nil, retryNever)
	cl.probe = true
	_, err := c.doJSON(ctx, cl, nil)
	return err
}

// Readyz reports whether the node serves API calls (it knows a leader and
// has caught up); it needs no token and is tried once, as a probe should be.
func (c *Client) Readyz(ctx context.Context) error {
	cl, _ := jsonCall("GET", "/readyz", nil, retryNever)
	cl.probe = true
	_, err := c.doJSON(ctx, cl, nil)
	return err
}

// uploadCall makes the call of a CSV upload. retry is what a rewindable
// body allows; a body that cannot be rewound is sent again only when not
// a byte of it was read.
func uploadCall(path string, q url.Values, up Upload, retry retryable) *call {
	c := &call{method: "POST", path: path, query: q, contentType: "text/csv", size: -1}
	if up.Header {
		if c.query == nil {
			c.query = url.Values{}
		}
		c.query.Set("header", "true")
	}
	if up.Size > 0 && !up.Gzip {
		c.size = up.Size
	}
	seeker, rewind := up.Body.(io.Seeker)
	var start int64
	if rewind {
		var err error
		start, err = seeker.Seek(0, io.SeekCurrent)
		rewind = err == nil // a pipe or a terminal
	}
	body := &countingReader{r: up.Body}
	var prev *tryBody
	c.body = func() (io.Reader, error) {
		if prev != nil {
			<-prev.closed // the last try's transport is done with the body
			switch {
			case body.n == 0:
			case rewind:
				if _, err := seeker.Seek(start, io.SeekStart); err != nil {
					return nil, fmt.Errorf("cannot rewind the upload: %w", err)
				}
				body.n = 0
			default:
				return nil, errNoRepeat
			}
		}
		prev = &tryBody{r: body, closed: make(chan struct{})}
		if up.Gzip {
			prev.r, prev.stop = gzipStream(body)
		}
		return prev, nil
	}
	key := up.IdempotencyKey
	if rewind {
		c.retry = retry
		if key == "" && retry == retryUpload {
			key = randomKey()
		}
	}
	c.header = http.Header{}
	if key != "" {
		c.header.Set("Idempotency-Key", key)
	}
	if up.Gzip {
		c.header.Set("Content-Encoding", "gzip")
	}
	return c
}

// gzipStream compresses src as it is read, on a goroutine of its own;
// stop ends that goroutine and waits for it, so that the caller may
// rewind src afterwards.
func gzipStream(src io.Reader) (r io.Reader, stop func()) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// BestSpeed: codes compress well at any level, and the upload
		// should not wait on the client's CPU.
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
		_, err := io.Copy(zw, src)
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err) // nil: the reader sees the end
	}()
	return pr, func() {
		pr.CloseWithError(errTryOver)
		<-done
	}
}

// errTryOver is what the compressing goroutine of a finished try sees.
var errTryOver = errors.New("the try is over")

// tryBody is one try's view of an upload body. The transport may go on
// reading it after the answer came, until it calls Close (the contract of
// http.RoundTripper), so the next try waits for Close before it rewinds.
// Close never closes the caller's reader: that is theirs, and a retry
// needs it.
type tryBody struct {
	r      io.Reader
	stop   func() // ends the compression of a gzip upload; nil for a plain one
	once   sync.Once
	closed chan struct{}
}

func (b *tryBody) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *tryBody) Close() error {
	b.once.Do(func() {
		if b.stop != nil {
			b.stop()
		}
		close(b.closed)
	})
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func randomKey() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// callJSON makes one JSON call and decodes its answer into a new T.
func callJSON[T any](ctx context.Context, c *Client, method, path string, in any, retry retryable) (*T, error) {
	out, _, err := upsertJSON[T](ctx, c, method, path, in, retry)
	return out, err
}

// upsertJSON is callJSON that also tells whether the call created the
// object (201 rather than 200).
func upsertJSON[T any](ctx context.Context, c *Client, method, path string, in any, retry retryable) (*T, bool, error) {
	cl, err := jsonCall(method, path, in, retry)
	if err != nil {
		return nil, false, err
	}
	var out T
	st, err := c.doJSON(ctx, cl, &out)
	if err != nil {
		return nil, false, err
	}
	return &out, st == http.StatusCreated, nil
}
