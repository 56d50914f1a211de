package bench

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// fakeSendState is the fake's model of messages and sends (SPEC §2):
// idempotent per (send, recipient), FIFO codes from the message's list,
// all-or-nothing 409 insufficient_codes, reservations as counts; and the
// fallback policy of SPEC §4 (a list's fallback code, a send's
// on_shortage).
type fakeSendState struct {
	codes    map[string][]string            // list id -> codes in import order
	codeSet  map[string]map[string]struct{} // list id -> its codes
	next     map[string]int                 // list id -> next code to hand out
	messages map[string]*fakeMessage
	sends    map[string]*fakeSend

	newCodes int64 // new assignments made
	topups   int64
	allocs   int64 // allocation requests answered 200

	// Misbehaviour, for the tests that check the harness catches it.
	dupAt      int64 // > 0: the dupAt-th new assignment repeats the code before it
	forgetIdem bool  // a retry gets new codes
	swapOrder  bool  // the assignments of a request come back reversed
	noSends    bool  // no messages or sends at all (404), like a server without them
	fbEarly    bool  // fallback policy: hands out the fallback while codes are left
	fbUnflag   bool  // a retried fallback assignment comes back without "fallback": true
	delay      time.Duration
}

type fakeMessage struct {
	list string
}

type fakeSend struct {
	message, list string
	onShortage    string
	reserved      int64
	assigned      map[string]string
	fallback      map[string]bool // recipients answered with the fallback code
	created       time.Time
}

func (f *fakeAPI) keepCodesLocked(list string, order []string, set map[string]struct{}) {
	if f.codes == nil {
		f.codes, f.codeSet, f.next = map[string][]string{}, map[string]map[string]struct{}{}, map[string]int{}
	}
	f.codes[list] = order
	f.codeSet[list] = set
}

// decodeStrict decodes a JSON body, refusing unknown fields (as coupond does).
func decodeStrict(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// serveSends answers the message, send and top-up calls; false when the
// call is none of them.
func (f *fakeAPI) serveSends(w http.ResponseWriter, r *http.Request) bool {
	if f.noSends {
		return false
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")
	switch {
	case len(parts) == 2 && parts[0] == "messages" && r.Method == http.MethodPut:
		f.putMessage(w, r, parts[1])
	case len(parts) == 3 && parts[0] == "messages" && parts[2] == "coupon-list" && r.Method == http.MethodPut:
		f.assignList(w, r, parts[1])
	case len(parts) == 2 && parts[0] == "sends" && r.Method == http.MethodPut:
		f.openSend(w, r, parts[1])
	case len(parts) == 2 && parts[0] == "sends" && r.Method == http.MethodGet:
		f.getSend(w, parts[1])
	case len(parts) == 3 && parts[0] == "sends" && parts[2] == "codes" && r.Method == http.MethodPost:
		f.allocate(w, r, parts[1])
	case len(parts) == 3 && parts[0] == "lists" && parts[2] == "codes" && r.Method == http.MethodPost:
		f.topUp(w, r, parts[1])
	case len(parts) == 2 && parts[0] == "lists" && r.Method == http.MethodPatch:
		f.patchList(w, r, parts[1])
	default:
		return false
	}
	return true
}

func (f *fakeAPI) putMessage(w http.ResponseWriter, r *http.Request, id string) {
	var m struct {
		Name         string `json:"name"`
		Campaign     string `json:"campaign"`
		CampaignType string `json:"campaign_type"`
		Channel      string `json:"channel"`
		DOI          *bool  `json:"doi"`
		Status       string `json:"status"`
	}
	if err := decodeStrict(r, &m); err != nil {
		f.problem("PUT message: %v", err)
		writeErr(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if m.Name == "" || m.Campaign == "" || m.CampaignType != "standard" || m.Channel != "email" || m.DOI == nil || *m.DOI {
		f.problem("PUT message %s: %+v is not an eligible standard e-mail message", id, m)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.messages == nil {
		f.messages, f.sends = map[string]*fakeMessage{}, map[string]*fakeSend{}
	}
	if _, ok := f.messages[id]; ok {
		writeJSON(w, http.StatusOK, map[string]any{"id": id})
		return
	}
	f.messages[id] = &fakeMessage{}
	writeJSON(w, http.StatusCreated, map[string]any{"id": id})
}

func (f *fakeAPI) assignList(w http.ResponseWriter, r *http.Request, id string) {
	var b struct {
		ListID string `json:"list_id"`
	}
	if err := decodeStrict(r, &b); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.messages[id]
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found", "no such message")
		return
	}
	if _, ok := f.lists[b.ListID]; !ok {
		writeErr(w, http.StatusNotFound, "not_found", "no such list")
		return
	}
	m.list = b.ListID
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "coupon_list_id": b.ListID})
}

// sendLocked finds or (create) makes a send; it writes the error itself.
func (f *fakeAPI) sendLocked(w http.ResponseWriter, id, message string, create bool) (*fakeSend, bool) {
	if s, ok := f.sends[id]; ok {
		if message != "" && message != s.message {
			writeErr(w, http.StatusConflict, "send_message_mismatch", "other message")
			return nil, false
		}
		return s, true
	}
	if message == "" {
		writeErr(w, http.StatusBadRequest, "bad_request", "message_id is required")
		return nil, false
	}
	m, ok := f.messages[message]
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found", "no such message")
		return nil, false
	}
	if m.list == "" {
		writeErr(w, http.StatusUnprocessableEntity, "no_coupon_list", "message has no list")
		return nil, false
	}
	s := &fakeSend{message: message, list: m.list, assigned: map[string]string{}, fallback: map[string]bool{}, created: time.Now()}
	if create {
		f.sends[id] = s
	}
	return s, true
}

// validShortage checks an on_shortage of a request ("" when absent).
func (f *fakeAPI) validShortage(w http.ResponseWriter, v string) bool {
	switch v {
	case "", "reject", "fallback":
		return true
	}
	f.problem("on_shortage %q", v)
	writeErr(w, http.StatusBadRequest, "bad_request", "on_shortage: reject or fallback")
	return false
}

func (f *fakeAPI) patchList(w http.ResponseWriter, r *http.Request, id string) {
	var b struct {
		FallbackCode *string `json:"fallback_code"`
	}
	if err := decodeStrict(r, &b); err != nil {
		f.problem("PATCH list: %v", err)
		writeErr(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.lists[id]
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found", "no such list")
		return
	}
	if b.FallbackCode != nil && *b.FallbackCode != "" {
		if _, dup := f.codeSet[id][*b.FallbackCode]; dup {
			f.problem("PATCH list: the fallback code %q is a code of the list", *b.FallbackCode)
		}
	}
	l.FallbackCode = b.FallbackCode
	writeJSON(w, http.StatusOK, l)
}

func (f *fakeAPI) openSend(w http.ResponseWriter, r *http.Request, id string) {
	var b struct {
		MessageID  string `json:"message_id"`
		Expected   *int64 `json:"expected_recipients"`
		OnShortage string `json:"on_shortage"`
	}
	if err := decodeStrict(r, &b); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if !f.validShortage(w, b.OnShortage) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, existed := f.sends[id]
	s, ok := f.sendLocked(w, id, b.MessageID, false)
	if !ok {
		return
	}
	l := f.lists[s.list]
	if b.Expected != nil {
		hold := max(0, *b.Expected-int64(len(s.assigned)))
		if delta := hold - s.reserved; delta > l.Available {
			writeErr(w, http.StatusConflict, "insufficient_codes", "not enough codes")
			return
		} else {
			l.Available -= delta
			l.Reserved += delta
			s.reserved = hold
		}
	}
	if b.OnShortage != "" {
		s.onShortage = b.OnShortage
	}
	f.sends[id] = s
	st := http.StatusOK
	if !existed {
		st = http.StatusCreated
	}
	writeJSON(w, st, map[string]any{"send_id": id, "list_id": s.list, "reserved": s.reserved})
}

func (f *fakeAPI) getSend(w http.ResponseWriter, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sends[id]
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found", "no such send")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"send_id": id, "message_id": s.message, "list_id": s.list, "status": "open",
		"reserved": s.reserved, "assigned": len(s.assigned), "created_at": s.created.UTC().Format(time.RFC3339),
	})
}

func (f *fakeAPI) allocate(w http.ResponseWriter, r *http.Request, id string) {
	var b struct {
		MessageID  string   `json:"message_id"`
		OnShortage string   `json:"on_shortage"`
		Recipients []string `json:"recipients"`
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.problem("allocation with Content-Type %q", ct)
	}
	if err := decodeStrict(r, &b); err != nil {
		f.problem("allocation body: %v", err)
		writeErr(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if !f.validShortage(w, b.OnShortage) {
		return
	}
	if len(b.Recipients) == 0 || len(b.Recipients) > MaxRecipientsPerRequest {
		f.problem("allocation of %d recipients", len(b.Recipients))
		writeErr(w, http.StatusBadRequest, "bad_request", "1..100000 recipients")
		return
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, existed := f.sends[id]
	s, ok := f.sendLocked(w, id, b.MessageID, false)
	if !ok {
		return
	}
	if !existed {
		s.onShortage = b.OnShortage // the policy of the send it opens
	}
	l := f.lists[s.list]
	needed := int64(0)
	fresh := map[string]bool{}
	for _, rc := range b.Recipients {
		if _, ok := s.assigned[rc]; !ok && !fresh[rc] {
			fresh[rc] = true
			needed++
		}
	}
	fallback := s.onShortage == "fallback" && l.FallbackCode != nil && *l.FallbackCode != ""
	// drawable is how many new recipients get a code; the rest get the
	// fallback.
	drawable := min(needed, s.reserved+l.Available)
	if f.fbEarly && fallback {
		drawable = min(drawable, needed/2)
	}
	if needed > s.reserved+l.Available && !fallback {
		writeJSON(w, http.StatusConflict, map[string]any{"error": map[string]any{
			"code": "insufficient_codes", "message": "not enough codes", "needed": needed, "available": s.reserved + l.Available}})
		return
	}
	if !existed {
		f.sends[id] = s
	}
	type asg struct {
		Recipient string `json:"recipient"`
		Code      string `json:"code"`
		Fallback  bool   `json:"fallback,omitempty"`
	}
	out := make([]asg, 0, len(b.Recipients))
	codes := f.codes[s.list]
	for _, rc := range b.Recipients {
		code, ok := s.assigned[rc]
		if !ok && fresh[rc] && drawable == 0 {
			code = *l.FallbackCode
			s.assigned[rc], s.fallback[rc] = code, true
			l.FallbackUsed++
			delete(fresh, rc)
		} else if !ok || f.forgetIdem && !fresh[rc] && !s.fallback[rc] {
			drawable--
			i := f.next[s.list]
			if i >= len(codes) {
				writeErr(w, http.StatusInternalServerError, "internal", "fake ran out of codes")
				return
			}
			f.next[s.list] = i + 1
			f.newCodes++
			if f.dupAt > 0 && f.newCodes == f.dupAt && i > 0 {
				i-- // the bug: the code before, again
			}
			code = codes[i]
			s.assigned[rc] = code
			if !fresh[rc] { // forgetIdem: a retry that drew a new code
				l.Available--
				l.Used++
			} else if s.reserved > 0 {
				s.reserved--
				l.Reserved--
				l.Used++
			} else {
				l.Available--
				l.Used++
			}
			l.UsedOrDeleted = l.Used + l.Withdrawn
			delete(fresh, rc)
		}
		out = append(out, asg{rc, code, s.fallback[rc] && !(f.fbUnflag && ok)})
	}
	if f.swapOrder && len(out) > 1 {
		out[0], out[1] = out[1], out[0]
	}
	f.allocs++
	writeJSON(w, http.StatusOK, map[string]any{"assignments": out, "available": l.Available})
}

func (f *fakeAPI) topUp(w http.ResponseWriter, r *http.Request, id string) {
	if ct := r.Header.Get("Content-Type"); ct != "text/csv" {
		f.problem("top-up with Content-Type %q", ct)
	}
	var lines []string
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.lists[id]
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found", "no such list")
		return
	}
	set := f.codeSet[id]
	var imported, dups int64
	for _, c := range lines {
		if _, dup := set[c]; dup {
			dups++
			continue
		}
		set[c] = struct{}{}
		f.codes[id] = append(f.codes[id], c)
		imported++
	}
	l.Added += imported
	l.Available += imported
	f.topups++
	writeJSON(w, http.StatusOK, ImportResult{Imported: imported, Duplicates: dups, Size: l.Available})
}
