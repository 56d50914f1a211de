package raftfsm

import (
	"encoding/binary"
	"fmt"

	"github.com/coupond/coupond/pool"
)

// Records are the values stored under the keys of keys.go. Each starts with
// a version byte so a later release can read older folders.
const recordVersion = 1

// Tenant is one customer of the platform.
type Tenant struct {
	ID, Name  string
	CreatedAt int64
}

func (t *Tenant) marshal() []byte {
	b := []byte{recordVersion}
	b = appendString(b, t.ID)
	b = appendString(b, t.Name)
	return appendVarint(b, t.CreatedAt)
}

func unmarshalTenant(v []byte) (*Tenant, error) {
	d := recordDecoder(v)
	t := &Tenant{ID: d.string("ID"), Name: d.string("Name"), CreatedAt: d.varint("CreatedAt")}
	return t, d.done()
}

// Token is what a bearer token grants. The secret itself is never stored.
type Token struct {
	ID        string
	Tenant    string // empty for operators
	Role      Role
	Name      string
	CreatedAt int64
}

func (t *Token) marshal() []byte {
	b := []byte{recordVersion}
	b = appendString(b, t.ID)
	b = appendString(b, t.Tenant)
	b = append(b, byte(t.Role))
	b = appendString(b, t.Name)
	return appendVarint(b, t.CreatedAt)
}

func unmarshalToken(v []byte) (*Token, error) {
	d := recordDecoder(v)
	t := &Token{ID: d.string("ID"), Tenant: d.string("Tenant"), Role: Role(d.byte("Role")), Name: d.string("Name"),
		CreatedAt: d.varint("CreatedAt")}
	return t, d.done()
}

// ListMeta is the stored part of a list; codes live in batches and pools.
// A ListMeta is immutable once published to readers: changes copy it.
type ListMeta struct {
	ID        uint64
	Tenant    string
	Name      string
	Dedupe    bool
	Threshold uint64
	CreatedAt int64
	Batches   uint32 // committed imports and releases, numbered 0..Batches-1
	Cursor    uint32 // the pool's cursor: positions below it are consumed
	Reserved  uint64 // codes held by open sends

	FallbackCode string // given when a send under fallback runs short; "" = none
	HasExpiry    bool
	ExpiresAt    int64  // unix ns; from then on the list hands out nothing
	WarnDays     uint32 // expiry_warning_days: the expiry_soon alert's lead
	Warned       bool   // expiry_soon recorded for the current ExpiresAt
	Released     uint64 // codes returned by releases, ever: each one is a copy at the pool's end
	FallbackUsed uint64 // live fallback assignments given for this list
	Usage        UsageRing

	// counts is what readers see of the pool, taken by the writer when it
	// publishes the meta after a change, so the numbers always add up.
	// It is not stored: load takes it from the rebuilt pool.
	counts poolCounts
}

// DefaultWarnDays is expiry_warning_days when none is given.
const DefaultWarnDays = 7

// Expired reports whether the list hands out nothing at time now (unix ns).
func (l *ListMeta) Expired(now int64) bool { return l.HasExpiry && now >= l.ExpiresAt }

type poolCounts struct{ added, used, withdrawn, available uint64 }

// countsOf reads the pool's counters as the admin sees them: a released
// code is a second position (a copy) at the pool's end, while its first
// position stays taken, so the copies come off added and used.
func countsOf(p *pool.List, released uint64) poolCounts {
	return poolCounts{added: uint64(p.Len()) - released, used: uint64(p.Used()) - released,
		withdrawn: uint64(p.Withdrawn()), available: uint64(p.Available())}
}

// listMetaVersion 2 adds the fallback code, expiry, releases and usage. A
// meta without any of them is written as version 1, byte for byte as before.
const listMetaVersion = 2

func (l *ListMeta) plain() bool {
	return l.FallbackCode == "" && !l.HasExpiry && l.ExpiresAt == 0 && l.WarnDays == DefaultWarnDays && !l.Warned &&
		l.Released == 0 && l.FallbackUsed == 0 && l.Usage == (UsageRing{})
}

func (l *ListMeta) marshal() []byte {
	v := byte(recordVersion)
	if !l.plain() {
		v = listMetaVersion
	}
	b := []byte{v}
	b = binary.AppendUvarint(b, l.ID)
	b = appendString(b, l.Tenant)
	b = appendString(b, l.Name)
	b = appendBool(b, l.Dedupe)
	b = binary.AppendUvarint(b, l.Threshold)
	b = appendVarint(b, l.CreatedAt)
	b = binary.AppendUvarint(b, uint64(l.Batches))
	b = binary.AppendUvarint(b, uint64(l.Cursor))
	b = binary.AppendUvarint(b, l.Reserved)
	if v == recordVersion {
		return b
	}
	b = appendString(b, l.FallbackCode)
	b = appendBool(b, l.HasExpiry)
	b = appendVarint(b, l.ExpiresAt)
	b = binary.AppendUvarint(b, uint64(l.WarnDays))
	b = appendBool(b, l.Warned)
	b = binary.AppendUvarint(b, l.Released)
	b = binary.AppendUvarint(b, l.FallbackUsed)
	return l.Usage.append(b)
}

func unmarshalList(v []byte) (*ListMeta, error) {
	if len(v) == 0 || v[0] < recordVersion || v[0] > listMetaVersion {
		return nil, fmt.Errorf("list record of unknown version: %w", errCorrupt)
	}
	d := &decoder{b: v[1:], version: v[0]}
	l := &ListMeta{ID: d.uvarint("ID"), Tenant: d.string("Tenant"), Name: d.string("Name"), Dedupe: d.bool("Dedupe"),
		Threshold: d.uvarint("Threshold"), CreatedAt: d.varint("CreatedAt"), Batches: d.uint32("Batches"),
		Cursor: d.uint32("Cursor"), Reserved: d.uvarint("Reserved"), WarnDays: DefaultWarnDays}
	if d.version >= 2 {
		l.FallbackCode, l.HasExpiry, l.ExpiresAt = d.string("FallbackCode"), d.bool("HasExpiry"), d.varint("ExpiresAt")
		l.WarnDays, l.Warned = d.uint32("WarnDays"), d.bool("Warned")
		l.Released, l.FallbackUsed = d.uvarint("Released"), d.uvarint("FallbackUsed")
		l.Usage.decode(d)
	}
	return l, d.done()
}

// UsageRing counts the codes a list handed out per UTC day over the last
// usageDays days: what a forecast needs, in constant space, without reading
// history.
type UsageRing struct {
	Day    int64 // the newest day counted (days since the Unix epoch, UTC)
	Counts [usageDays]uint64
}

const usageDays = 32

const nsPerDay = 24 * 60 * 60 * 1e9

// DayOf is the UTC day of a unix-ns time.
func DayOf(ns int64) int64 {
	d := ns / nsPerDay
	if ns < 0 && ns%nsPerDay != 0 {
		d--
	}
	return d
}

// add counts n codes handed out on day.
func (r *UsageRing) add(day int64, n uint64) {
	if n == 0 {
		return
	}
	if day > r.Day {
		for d := max(r.Day+1, day-usageDays+1); d <= day; d++ {
			r.Counts[slot(d)] = 0
		}
		r.Day = day
	} else if day <= r.Day-usageDays {
		return // older than the ring keeps (a leader's clock stepped back that far)
	}
	r.Counts[slot(day)] += n
}

func slot(day int64) int { return int(((day % usageDays) + usageDays) % usageDays) }

// Sum counts the codes handed out on the days from-..to, as far as the ring
// still holds them.
func (r *UsageRing) Sum(from, to int64) uint64 {
	var n uint64
	for d := max(from, r.Day-usageDays+1); d <= min(to, r.Day); d++ {
		n += r.Counts[slot(d)]
	}
	return n
}

// Last7 is the codes handed out in the 7 UTC days ending with today.
func (r *UsageRing) Last7(today int64) uint64 { return r.Sum(today-6, today) }

func (r *UsageRing) append(b []byte) []byte {
	b = appendVarint(b, r.Day)
	for _, c := range r.Counts {
		b = binary.AppendUvarint(b, c)
	}
	return b
}

func (r *UsageRing) decode(d *decoder) {
	r.Day = d.varint("Usage")
	for i := range r.Counts {
		r.Counts[i] = d.uvarint("Usage")
	}
}

// ImportResult is the answer to a committed upload (SPEC §2 "Import result").
type ImportResult struct {
	List       uint64 // the list the upload went into
	Imported   uint64
	Duplicates uint64
	Size       uint64 // available codes after the import
	// InOtherLists counts the imported codes (added, not skipped) that
	// another list of the tenant held when the upload committed.
	InOtherLists uint64
}

// uploadRecord tracks one upload from its first chunk to its commit, so a
// retried commit answers the same result.
type uploadRecord struct {
	Tenant    string
	Committed bool
	List      uint64
	Result    ImportResult
	At        int64
	// Request is the digest the commit bound the upload to (ImportCommit's
	// Request); zero for an upload without an Idempotency-Key.
	Request [32]byte
	// Legacy is a record of version 1, written before uploads were bound
	// to their request: whether it had a key is unknown.
	Legacy bool
}

// uploadRecordVersion 2 appends the request digest, 3 the result's
// InOtherLists, written only when it is not zero (a record without it is
// byte for byte a version 2 one); older versions are still read.
const uploadRecordVersion = 3

func (u *uploadRecord) marshal() []byte {
	v := byte(2)
	if u.Result.InOtherLists > 0 {
		v = 3
	}
	b := []byte{v}
	b = appendString(b, u.Tenant)
	b = appendBool(b, u.Committed)
	b = binary.AppendUvarint(b, u.List)
	b = binary.AppendUvarint(b, u.Result.Imported)
	b = binary.AppendUvarint(b, u.Result.Duplicates)
	b = binary.AppendUvarint(b, u.Result.Size)
	b = appendVarint(b, u.At)
	b = append(b, u.Request[:]...)
	if v >= 3 {
		b = binary.AppendUvarint(b, u.Result.InOtherLists)
	}
	return b
}

// keyed reports whether the upload was made under an Idempotency-Key, as
// far as its record knows.
func (u *uploadRecord) keyed() bool { return u.Request != [32]byte{} }

func unmarshalUpload(v []byte) (*uploadRecord, error) {
	if len(v) == 0 || v[0] < recordVersion || v[0] > uploadRecordVersion {
		return nil, fmt.Errorf("upload record of unknown version: %w", errCorrupt)
	}
	d := &decoder{b: v[1:], version: v[0]}
	u := &uploadRecord{Tenant: d.string("Tenant"), Committed: d.bool("Committed"), List: d.uvarint("List")}
	u.Result = ImportResult{List: u.List, Imported: d.uvarint("Imported"), Duplicates: d.uvarint("Duplicates"),
		Size: d.uvarint("Size")}
	u.At = d.varint("At")
	if d.version >= 2 {
		copy(u.Request[:], d.fixed("Request", 32))
	} else {
		u.Legacy = true
	}
	if d.version >= 3 {
		u.Result.InOtherLists = d.uvarint("InOtherLists")
		if u.Result.InOtherLists == 0 {
			// Version 2 writes this record: one encoding per value.
			return nil, fmt.Errorf("upload record version 3 with no InOtherLists: %w", errCorrupt)
		}
	}
	return u, d.done()
}
