package raftfsm

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/coupond/coupond/pool"
)

// InsufficientError refuses an allocation or hold that needs more codes
// than the send can draw (SPEC §2: needed, available).
type InsufficientError struct{ Needed, Available uint64 }

func (e *InsufficientError) Error() string {
	return fmt.Sprintf("needs %d new codes, %d available", e.Needed, e.Available)
}

func (e *InsufficientError) Unwrap() error { return errInsufficientCodes }

// EligibilityError says why a message may not have a coupon list.
type EligibilityError struct{ Reason string }

func (e *EligibilityError) Error() string { return "not eligible: " + e.Reason }
func (e *EligibilityError) Unwrap() error { return ErrNotEligible }

// Message is a creative of the platform as the mailing engine registered it.
type Message struct {
	Tenant, ID, Name, Campaign string
	CampaignType, Channel      string
	DOI                        bool
	Status                     string // draft | sent
	List                       uint64 // 0: none
}

func (m *Message) marshal() []byte {
	b := []byte{recordVersion}
	for _, s := range []string{m.Tenant, m.ID, m.Name, m.Campaign, m.CampaignType, m.Channel} {
		b = appendString(b, s)
	}
	b = appendBool(b, m.DOI)
	b = appendString(b, m.Status)
	return binary.AppendUvarint(b, m.List)
}

func unmarshalMessage(v []byte) (*Message, error) {
	d := recordDecoder(v)
	m := &Message{Tenant: d.string("Tenant"), ID: d.string("ID"), Name: d.string("Name"), Campaign: d.string("Campaign"),
		CampaignType: d.string("CampaignType"), Channel: d.string("Channel"), DOI: d.bool("DOI"),
		Status: d.string("Status"), List: d.uvarint("List")}
	return m, d.done()
}

// Eligibility returns why m may not have a coupon list, or "" (SPEC §1).
func Eligibility(campaignType, channel string, doi bool) string {
	switch {
	case campaignType == "tracking" || campaignType == "network_tracking":
		return "tracking and network tracking campaigns draw no codes"
	case doi:
		return "double opt-in messages draw no codes"
	case channel != "email":
		return "only e-mail messages draw codes"
	}
	return ""
}

// Send is one delivery of a message; immutable once published.
type Send struct {
	Tenant, ID string
	Num        uint32 // internal number, in order of creation
	Message    string
	List       uint64
	Closed     bool
	Reserved   uint64 // codes held for the send and not drawn yet
	Assigned   uint64 // live assignments (fallback ones included; a release lowers it)
	CreatedAt  int64
	OnShortage Shortage
}

// Shortage is a send's policy when a request needs more codes than it can
// draw (SPEC §4).
type Shortage uint8

const (
	// ShortageReject refuses the whole request (409 insufficient_codes).
	ShortageReject Shortage = 0
	// ShortageFallback gives the codes there are, in request order, and the
	// list's fallback code to the rest.
	ShortageFallback Shortage = 1
)

// ParseShortage reads "reject" or "fallback".
func ParseShortage(s string) (Shortage, bool) {
	switch s {
	case "reject":
		return ShortageReject, true
	case "fallback":
		return ShortageFallback, true
	}
	return 0, false
}

func (s Shortage) String() string {
	if s == ShortageFallback {
		return "fallback"
	}
	return "reject"
}

// sendVersion 2 adds OnShortage; a send under reject is written as version
// 1, byte for byte as before.
const sendVersion = 2

func (s *Send) marshal() []byte {
	// Sized for the strings and at most 6 varints of 10 bytes: one allocation.
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+len(s.Tenant)+len(s.ID)+len(s.Message)+1+6*binary.MaxVarintLen64)
	if s.OnShortage != ShortageReject {
		b = append(b, sendVersion)
	} else {
		b = append(b, recordVersion)
	}
	b = appendString(b, s.Tenant)
	b = appendString(b, s.ID)
	b = binary.AppendUvarint(b, uint64(s.Num))
	b = appendString(b, s.Message)
	b = binary.AppendUvarint(b, s.List)
	b = appendBool(b, s.Closed)
	b = binary.AppendUvarint(b, s.Reserved)
	b = binary.AppendUvarint(b, s.Assigned)
	b = appendVarint(b, s.CreatedAt)
	if s.OnShortage != ShortageReject {
		b = append(b, byte(s.OnShortage))
	}
	return b
}

func unmarshalSend(v []byte) (*Send, error) {
	if len(v) == 0 || v[0] < recordVersion || v[0] > sendVersion {
		return nil, fmt.Errorf("send record of unknown version: %w", errCorrupt)
	}
	d := &decoder{b: v[1:], version: v[0]}
	s := &Send{Tenant: d.string("Tenant"), ID: d.string("ID"), Num: d.uint32("Num"), Message: d.string("Message"),
		List: d.uvarint("List"), Closed: d.bool("Closed"), Reserved: d.uvarint("Reserved"),
		Assigned: d.uvarint("Assigned"), CreatedAt: d.varint("CreatedAt")}
	if d.version >= 2 {
		s.OnShortage = Shortage(d.byte("OnShortage"))
		if d.err == nil && s.OnShortage != ShortageFallback {
			d.fail("OnShortage", "not fallback in version 2")
		}
	}
	return s, d.done()
}

func scopedKey(tenant, id string) string { return tenant + "\x00" + id }

// appendScoped appends scopedKey(tenant, id) to b: a map index with
// string(b) looks it up without allocating the key.
func appendScoped(b []byte, tenant, id string) []byte {
	return append(append(append(b, tenant...), 0), id...)
}

// compactSend makes a send's strings share storage, since a node keeps
// every send in memory and the collector visits each object: the map key
// is one allocation with the id as its suffix, and the tenant and message
// are the strings their own records hold. It returns the key.
func compactSend(s *Send, tenants map[string]*Tenant, messages map[string]*Message) string {
	key := scopedKey(s.Tenant, s.ID)
	s.ID = key[len(s.Tenant)+1:]
	var buf [96]byte
	if m, ok := messages[string(appendScoped(buf[:0], s.Tenant, s.Message))]; ok {
		s.Message = m.ID
	}
	if t, ok := tenants[s.Tenant]; ok {
		s.Tenant = t.ID
	}
	return key
}

// Message returns a tenant's message.
func (f *FSM) Message(tenant, id string) (*Message, bool) {
	var buf [96]byte
	k := appendScoped(buf[:0], tenant, id)
	f.mu.RLock()
	m, ok := f.messages[string(k)]
	f.mu.RUnlock()
	return m, ok
}

// MessagesOfList returns the messages a list is assigned to, by id.
func (f *FSM) MessagesOfList(tenant string, list uint64) []*Message {
	f.mu.RLock()
	var out []*Message
	for _, m := range f.messages {
		if m.Tenant == tenant && m.List == list {
			out = append(out, m)
		}
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Send returns a tenant's send.
func (f *FSM) Send(tenant, id string) (*Send, bool) {
	var buf [96]byte
	k := appendScoped(buf[:0], tenant, id)
	f.mu.RLock()
	s, ok := f.sends[string(k)]
	f.mu.RUnlock()
	return s, ok
}

func (f *FSM) sendByNum(num uint32) *Send {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if num == 0 || int(num) > f.sendKeys.len() {
		return nil
	}
	return f.sends[f.sendKeys.at(int(num)-1)]
}

// Assignment is one recipient's code in one send.
type Assignment struct {
	Recipient string
	Code      string
	List      uint64
	Message   string
	Send      string
	At        int64
	Position  uint32 // meaningless for a fallback assignment
	Fallback  bool   // the list's fallback code, not one of its codes
	// ReleasedAt is when the assignment was released (unix ns), 0 while it
	// is live. A released assignment stays in history.
	ReleasedAt int64
}

// readBatch reads a stored batch; readers use the database, the writer its batch.
func (f *FSM) readBatch(r getter, no uint64) (*assignBatch, error) {
	v, closer, err := r.Get(assignKey(no))
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return unmarshalBatch(append([]byte(nil), v...))
}

// readStoredBatch reads a stored batch for a reader. A batch the index
// already has may not be stored yet: its apply is still running. If that
// apply answered the batch's command early, the caller may be the client
// that got the answer, so the reader waits for the commit rather than miss
// its own assignment; this is the one wait of readers on an apply, at
// most the rest of one entry of small commands.
func (f *FSM) readStoredBatch(no uint64) (*assignBatch, error) {
	b, err := f.readBatch(f.db, no)
	if isNotFound(err) && f.awaitAnsweredAhead() {
		b, err = f.readBatch(f.db, no)
	}
	return b, err
}

// SettledIndex is AppliedIndex for a caller that may have been answered
// early: it first waits for the apply that answered it to commit, so the
// index it returns covers the caller's command.
func (f *FSM) SettledIndex() uint64 {
	f.awaitAnsweredAhead()
	return f.AppliedIndex()
}

// awaitAnsweredAhead waits until the last apply that answered commands
// early has committed (at once if it has); false if none ever did.
func (f *FSM) awaitAnsweredAhead() bool {
	ahead := f.answeredAhead.Load()
	if ahead == nil {
		return false
	}
	<-*ahead
	return true
}

// history returns the assignment index readers may use now; a restore
// swaps it.
func (f *FSM) history() *history {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.hist
}

// RecipientHistory returns every assignment of a recipient in a tenant, oldest first.
func (f *FSM) RecipientHistory(tenant string, recipient []byte) ([]Assignment, error) {
	var out []Assignment
	var seqs []uint64
	var s *Send // the send of the candidate being looked at
	hist := f.history()
	err := hist.find(hist.hash32(tenant, recipient), recipient, func(m batchMeta) bool {
		s = f.sendByNum(m.send)
		return s != nil && s.Tenant == tenant
	}, f.readStoredBatch, func(seq uint64, b *assignBatch, i int) bool {
		out = append(out, Assignment{Recipient: string(recipient), Code: string(b.Codes[i]), List: b.List,
			Message: s.Message, Send: s.ID, At: b.At, Position: b.positionOf(i), Fallback: b.Fallback})
		seqs = append(seqs, seq)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read history: %w", err)
	}
	// Released marks are read after every assignment was found: a resend
	// found late in the probe implies its release was applied before it, so
	// the earlier assignment shows released, never two live ones in a send.
	for i, seq := range seqs {
		out[i].ReleasedAt, _ = f.releasedAt(seq)
	}
	// The index's probe order is not the order of the assignments.
	sort.Sort(bySeq{out, seqs})
	return out, nil
}

type bySeq struct {
	a   []Assignment
	seq []uint64
}

func (s bySeq) Len() int           { return len(s.a) }
func (s bySeq) Less(i, j int) bool { return s.seq[i] < s.seq[j] }
func (s bySeq) Swap(i, j int) {
	s.a[i], s.a[j] = s.a[j], s.a[i]
	s.seq[i], s.seq[j] = s.seq[j], s.seq[i]
}

// EachAssignment calls fn for every assignment of a send, in the order they
// were made, until fn returns an error.
func (f *FSM) EachAssignment(tenant, send string, fn func(a *Assignment) error) error {
	s, ok := f.Send(tenant, send)
	if !ok {
		return ErrNotFound
	}
	bs := f.history().batches.Load()
	a := Assignment{Message: s.Message, Send: s.ID}
	for no := range bs.len() {
		if bs.at(no).send != s.Num {
			continue
		}
		b, err := f.readStoredBatch(uint64(no))
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return fmt.Errorf("cannot read assignments: %w", err)
		}
		if b.Send != s.Num {
			continue // replaced by a restore under this reader
		}
		a.List, a.At, a.Fallback = b.List, b.At, b.Fallback
		for i := range b.Recips {
			a.Recipient, a.Code, a.Position = string(b.Recips[i]), string(b.Codes[i]), b.positionOf(i)
			a.ReleasedAt, _ = f.releasedAt(b.FirstSeq + uint64(i))
			if err := fn(&a); err != nil {
				return err
			}
		}
	}
	return nil
}

// CodeAssignment finds who got the code at a list position.
func (f *FSM) CodeAssignment(list uint64, pos uint32) (*Assignment, bool) {
	var log chunked[takeEntry]
	f.mu.RLock()
	if l := f.takeLog[list]; l != nil {
		log = *l
	}
	f.mu.RUnlock()
	i := sort.Search(log.len(), func(i int) bool { return log.at(i).start > pos }) - 1
	if i < 0 {
		return nil, false
	}
	b, err := f.readStoredBatch(log.at(i).batch)
	if err != nil {
		return nil, false
	}
	e := b.entryAt(pos)
	s := f.sendByNum(b.Send)
	if e < 0 || e >= len(b.Recips) || s == nil {
		return nil, false
	}
	rel, _ := f.releasedAt(b.FirstSeq + uint64(e))
	return &Assignment{Recipient: string(b.Recips[e]), Code: string(b.Codes[e]), List: b.List,
		Message: s.Message, Send: s.ID, At: b.At, Position: pos, ReleasedAt: rel}, true
}

// takeEntry says that a batch took positions from start on.
type takeEntry struct {
	start uint32
	batch uint64
}

// logTake appends e to the take log of a list; the caller holds the
// FSM's write lock, or has the log to itself.
func logTake(logs map[uint64]*chunked[takeEntry], list uint64, e takeEntry) {
	l := logs[list]
	if l == nil {
		l = &chunked[takeEntry]{}
		logs[list] = l
	}
	l.add(e)
}

// listAvailable is what a list can still hand out beyond every send's hold.
func listAvailable(l *ListMeta, p *pool.List) uint64 {
	avail := uint64(p.Available())
	if avail < l.Reserved {
		panic("BUG: list holds more than it has available")
	}
	return avail - l.Reserved
}

// CountUnassigned counts the distinct recipients without a code in the
// tenant's send (any goroutine). It decodes each stored batch it needs once.
func (f *FSM) CountUnassigned(tenant, send string, recips [][]byte) (uint64, error) {
	seen := make(map[string]struct{}, len(recips))
	s, ok := f.Send(tenant, send)
	if !ok {
		for _, r := range recips {
			seen[string(r)] = struct{}{}
		}
		return uint64(len(seen)), nil
	}
	hist := f.history()
	cache := map[uint64]*assignBatch{}
	var n uint64
	for _, r := range recips {
		if _, dup := seen[string(r)]; dup {
			continue
		}
		seen[string(r)] = struct{}{}
		has, err := f.hasAssignment(hist, cache, s, r)
		if err != nil {
			return 0, err
		}
		if !has {
			n++
		}
	}
	return n, nil
}

func (f *FSM) hasAssignment(hist *history, cache map[uint64]*assignBatch, s *Send, r []byte) (bool, error) {
	found := false
	err := hist.find(hist.hash32(s.Tenant, r), r, func(m batchMeta) bool { return m.send == s.Num },
		func(no uint64) (*assignBatch, error) {
			if b := cache[no]; b != nil {
				return b, nil
			}
			b, err := f.readStoredBatch(no)
			if err == nil {
				cache[no] = b
			}
			return b, err
		},
		func(seq uint64, _ *assignBatch, _ int) bool {
			if _, released := f.releasedAt(seq); released {
				return true // the recipient is new to the send again
			}
			found = true
			return false
		})
	return found, err
}
