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
	Batches   uint32 // committed imports, numbered 0..Batches-1
	Cursor    uint32 // the pool's cursor: positions below it are consumed
	Reserved  uint64 // codes held by open sends

	// counts is what readers see of the pool, taken by the writer when it
	// publishes the meta after a change, so the numbers always add up.
	// It is not stored: load takes it from the rebuilt pool.
	counts poolCounts
}

type poolCounts struct{ added, used, withdrawn, available uint64 }

func countsOf(p *pool.List) poolCounts {
	return poolCounts{added: uint64(p.Len()), used: uint64(p.Used()), withdrawn: uint64(p.Withdrawn()), available: uint64(p.Available())}
}

func (l *ListMeta) marshal() []byte {
	b := []byte{recordVersion}
	b = binary.AppendUvarint(b, l.ID)
	b = appendString(b, l.Tenant)
	b = appendString(b, l.Name)
	b = appendBool(b, l.Dedupe)
	b = binary.AppendUvarint(b, l.Threshold)
	b = appendVarint(b, l.CreatedAt)
	b = binary.AppendUvarint(b, uint64(l.Batches))
	b = binary.AppendUvarint(b, uint64(l.Cursor))
	return binary.AppendUvarint(b, l.Reserved)
}

func unmarshalList(v []byte) (*ListMeta, error) {
	d := recordDecoder(v)
	l := &ListMeta{ID: d.uvarint("ID"), Tenant: d.string("Tenant"), Name: d.string("Name"), Dedupe: d.bool("Dedupe"),
		Threshold: d.uvarint("Threshold"), CreatedAt: d.varint("CreatedAt"), Batches: d.uint32("Batches"),
		Cursor: d.uint32("Cursor"), Reserved: d.uvarint("Reserved")}
	return l, d.done()
}

// ImportResult is the answer to a committed upload (SPEC §2 "Import result").
type ImportResult struct {
	List       uint64 // the list the upload went into
	Imported   uint64
	Duplicates uint64
	Size       uint64 // available codes after the import
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

// uploadRecordVersion 2 appends the request digest; version 1 records of
// older data folders are still read.
const uploadRecordVersion = 2

func (u *uploadRecord) marshal() []byte {
	b := []byte{uploadRecordVersion}
	b = appendString(b, u.Tenant)
	b = appendBool(b, u.Committed)
	b = binary.AppendUvarint(b, u.List)
	b = binary.AppendUvarint(b, u.Result.Imported)
	b = binary.AppendUvarint(b, u.Result.Duplicates)
	b = binary.AppendUvarint(b, u.Result.Size)
	b = appendVarint(b, u.At)
	return append(b, u.Request[:]...)
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
	return u, d.done()
}
