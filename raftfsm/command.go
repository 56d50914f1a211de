package raftfsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// CmdType is the first byte of every log entry. Types are only ever appended:
// renumbering one breaks every existing Raft log.
type CmdType byte

const (
	CmdCreateTenant CmdType = 1
	CmdCreateToken  CmdType = 2
	CmdRevokeToken  CmdType = 3
	CmdCreateList   CmdType = 4
	CmdUpdateList   CmdType = 5
	CmdDeleteList   CmdType = 6
	CmdImportChunk  CmdType = 7
	CmdImportCommit CmdType = 8
	CmdImportAbort  CmdType = 9
	CmdWithdraw     CmdType = 10
)

// bodyVersion is the encoding version of every body written today, but
// for a command that says otherwise (versioned). A decoder that meets a
// newer version refuses the entry rather than guessing.
const bodyVersion = 1

// versioned is a command whose encoding grew: it names the version of its
// body, and Decode still reads the older versions up to maxVersion.
type versioned interface {
	version() byte
}

// maxVersion is the newest body version of a command type.
func maxVersion(t CmdType) byte {
	if t == CmdImportCommit || t == CmdImportChunk {
		return 2
	}
	return bodyVersion
}

// MaxEntryBytes bounds one encoded command; bigger requests are split by the caller.
const MaxEntryBytes = 1 << 20

// MaxCodeLen is the longest code in bytes (SPEC §1).
const MaxCodeLen = 128

// Role is what a token may do.
type Role byte

const (
	RoleOperator Role = 1
	RoleAdmin    Role = 2
	RoleSender   Role = 3
)

func (r Role) String() string {
	switch r {
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	case RoleSender:
		return "sender"
	}
	return "unknown"
}

// ParseRole maps the API's role names; operator tokens are made only at bootstrap.
func ParseRole(s string) (Role, bool) {
	switch s {
	case "admin":
		return RoleAdmin, true
	case "sender":
		return RoleSender, true
	}
	return 0, false
}

// UploadID names one import across its staged chunks and its commit.
type UploadID [16]byte

// Command is one state change. Encode turns it into a log entry.
type Command interface {
	Type() CmdType
	appendBody(dst []byte) []byte
	decodeBody(d *decoder)
}

// Encode returns a fresh slice holding c: Raft keeps the slice it is given,
// so it must never alias a buffer that is reused.
func Encode(c Command) []byte {
	b := make([]byte, 0, 64)
	v := byte(bodyVersion)
	if vc, ok := c.(versioned); ok {
		v = vc.version()
	}
	b = append(b, byte(c.Type()), v)
	return c.appendBody(b)
}

var errCorrupt = errors.New("corrupt command")

// Decode parses a log entry written by Encode.
func Decode(data []byte) (Command, error) {
	if len(data) < 2 {
		return nil, fmt.Errorf("cannot decode command of %d bytes: %w", len(data), errCorrupt)
	}
	var c Command
	switch CmdType(data[0]) {
	case CmdCreateTenant:
		c = &CreateTenant{}
	case CmdCreateToken:
		c = &CreateToken{}
	case CmdRevokeToken:
		c = &RevokeToken{}
	case CmdCreateList:
		c = &CreateList{}
	case CmdUpdateList:
		c = &UpdateList{}
	case CmdDeleteList:
		c = &DeleteList{}
	case CmdImportChunk:
		c = &ImportChunk{}
	case CmdImportCommit:
		c = &ImportCommit{}
	case CmdImportAbort:
		c = &ImportAbort{}
	case CmdWithdraw:
		c = &Withdraw{}
	case CmdUpsertMessage:
		c = &UpsertMessage{}
	case CmdAssignList:
		c = &AssignList{}
	case CmdOpenSend:
		c = &OpenSend{}
	case CmdAllocate:
		c = &Allocate{}
	case CmdReserve:
		c = &Reserve{}
	case CmdCloseSend:
		c = &CloseSend{}
	case CmdBatch:
		c = &Batch{}
	case CmdSetNode:
		c = &SetNode{}
	case CmdRemoveNode:
		c = &RemoveNode{}
	case CmdSetClusterKey:
		c = &SetClusterKey{}
	case CmdAckAlerts:
		c = &AckAlerts{}
	default:
		return nil, fmt.Errorf("cannot decode command type %d: %w", data[0], errCorrupt)
	}
	if data[1] < 1 || data[1] > maxVersion(CmdType(data[0])) {
		return nil, fmt.Errorf("cannot decode command type %d version %d: %w", data[0], data[1], errCorrupt)
	}
	d := decoder{b: data[2:], version: data[1]}
	c.decodeBody(&d)
	if d.err != nil || len(d.b) != 0 {
		return nil, fmt.Errorf("cannot decode command type %d: %w", data[0], errCorrupt)
	}
	return c, nil
}

type CreateTenant struct {
	ID, Name string
	At       int64 // unix nanoseconds, stamped by the leader
}

func (*CreateTenant) Type() CmdType { return CmdCreateTenant }
func (c *CreateTenant) appendBody(b []byte) []byte {
	b = appendString(b, c.ID)
	b = appendString(b, c.Name)
	return appendVarint(b, c.At)
}
func (c *CreateTenant) decodeBody(d *decoder) {
	c.ID, c.Name, c.At = d.string(), d.string(), d.varint()
}

type CreateToken struct {
	ID     string
	Tenant string // empty for operator tokens
	Role   Role
	Name   string
	Hash   [32]byte // sha256 of the secret; the secret never enters the log
	At     int64
}

func (*CreateToken) Type() CmdType { return CmdCreateToken }
func (c *CreateToken) appendBody(b []byte) []byte {
	b = appendString(b, c.ID)
	b = appendString(b, c.Tenant)
	b = append(b, byte(c.Role))
	b = appendString(b, c.Name)
	b = append(b, c.Hash[:]...)
	return appendVarint(b, c.At)
}
func (c *CreateToken) decodeBody(d *decoder) {
	c.ID, c.Tenant, c.Role, c.Name = d.string(), d.string(), Role(d.byte()), d.string()
	copy(c.Hash[:], d.fixed(32))
	c.At = d.varint()
}

type RevokeToken struct{ ID string }

func (*RevokeToken) Type() CmdType                { return CmdRevokeToken }
func (c *RevokeToken) appendBody(b []byte) []byte { return appendString(b, c.ID) }
func (c *RevokeToken) decodeBody(d *decoder)      { c.ID = d.string() }

type CreateList struct {
	Tenant    string
	ID        uint64 // chosen by the leader
	Name      string
	Dedupe    bool
	Threshold uint64
	At        int64
}

func (*CreateList) Type() CmdType { return CmdCreateList }
func (c *CreateList) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = binary.AppendUvarint(b, c.ID)
	b = appendString(b, c.Name)
	b = appendBool(b, c.Dedupe)
	b = binary.AppendUvarint(b, c.Threshold)
	return appendVarint(b, c.At)
}
func (c *CreateList) decodeBody(d *decoder) {
	c.Tenant, c.ID, c.Name = d.string(), d.uvarint(), d.string()
	c.Dedupe, c.Threshold, c.At = d.bool(), d.uvarint(), d.varint()
}

type UpdateList struct {
	Tenant       string
	ID           uint64
	SetName      bool
	Name         string
	SetThreshold bool
	Threshold    uint64
}

func (*UpdateList) Type() CmdType { return CmdUpdateList }
func (c *UpdateList) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = binary.AppendUvarint(b, c.ID)
	b = appendBool(b, c.SetName)
	b = appendString(b, c.Name)
	b = appendBool(b, c.SetThreshold)
	return binary.AppendUvarint(b, c.Threshold)
}
func (c *UpdateList) decodeBody(d *decoder) {
	c.Tenant, c.ID = d.string(), d.uvarint()
	c.SetName, c.Name = d.bool(), d.string()
	c.SetThreshold, c.Threshold = d.bool(), d.uvarint()
}

type DeleteList struct {
	Tenant string
	ID     uint64
}

func (*DeleteList) Type() CmdType { return CmdDeleteList }
func (c *DeleteList) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	return binary.AppendUvarint(b, c.ID)
}
func (c *DeleteList) decodeBody(d *decoder) { c.Tenant, c.ID = d.string(), d.uvarint() }

// ImportChunk stages codes of one upload; nothing is visible until ImportCommit.
type ImportChunk struct {
	Tenant string
	Upload UploadID
	Chunk  uint32 // 0, 1, 2, ... in upload order
	Codes  CodeBlock
	At     int64
	// NewList says the upload is meant for a list it creates: the state
	// machine then adds its codes to a pool of their own as the chunks
	// come (staged.go), and the commit only registers that pool, instead
	// of adding millions of codes in one apply that every write waits for.
	NewList bool
	// Expect, with NewList on the first chunk, is the leader's estimate of
	// the upload's codes (from Content-Length), so that the pool's index is
	// sized once rather than rehashed, in one chunk's apply, at each
	// doubling on the way; 0: unknown. It changes no outcome.
	Expect uint32
}

func (*ImportChunk) Type() CmdType { return CmdImportChunk }

// version 2 carries NewList and Expect, and only when NewList is set: a chunk without it is
// written as version 1, byte for byte what older releases wrote.
func (c *ImportChunk) version() byte {
	if c.NewList {
		return 2
	}
	return 1
}

func (c *ImportChunk) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = append(b, c.Upload[:]...)
	b = binary.AppendUvarint(b, uint64(c.Chunk))
	b = appendVarint(b, c.At)
	b = appendBytes(b, c.Codes)
	if c.NewList {
		b = appendBool(b, true)
		b = binary.AppendUvarint(b, uint64(c.Expect))
	}
	return b
}
func (c *ImportChunk) decodeBody(d *decoder) {
	c.Tenant = d.string()
	copy(c.Upload[:], d.fixed(16))
	c.Chunk, c.At = d.uint32(), d.varint()
	c.Codes = CodeBlock(d.bytes())
	if d.version >= 2 {
		c.NewList, c.Expect = d.bool(), d.uint32()
		if d.err == nil && !c.NewList {
			d.fail() // version 1 is the one encoding of a chunk without it
		}
	}
	if d.err == nil && !c.Codes.valid() {
		d.err = errCorrupt
	}
}

// ImportCommit makes every staged chunk of an upload visible at once, in
// chunk order. With Create set it creates the list first (create and import
// in one step); List then equals Create.ID.
type ImportCommit struct {
	Tenant string
	Upload UploadID
	Chunks uint32 // how many chunks the upload staged
	List   uint64
	Create *CreateList
	At     int64
	// Request is the digest of the request under an Idempotency-Key (its
	// route, target, parameters and body); zero for an upload without a
	// key. The first commit binds the key to it: a later commit of the same
	// upload with another digest is refused with ErrUploadReused.
	Request [32]byte
}

func (*ImportCommit) Type() CmdType { return CmdImportCommit }

// version 2 carries Request. A commit without one is written as version 1,
// byte for byte what older releases wrote, so every body has one encoding.
func (c *ImportCommit) version() byte {
	if c.Request == ([32]byte{}) {
		return 1
	}
	return 2
}

func (c *ImportCommit) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = append(b, c.Upload[:]...)
	b = binary.AppendUvarint(b, uint64(c.Chunks))
	b = binary.AppendUvarint(b, c.List)
	b = appendVarint(b, c.At)
	b = appendBool(b, c.Create != nil)
	if c.Create != nil {
		b = c.Create.appendBody(b)
	}
	if c.Request != ([32]byte{}) {
		b = append(b, c.Request[:]...)
	}
	return b
}
func (c *ImportCommit) decodeBody(d *decoder) {
	c.Tenant = d.string()
	copy(c.Upload[:], d.fixed(16))
	c.Chunks, c.List, c.At = d.uint32(), d.uvarint(), d.varint()
	if d.bool() {
		c.Create = &CreateList{}
		c.Create.decodeBody(d)
	}
	if d.version >= 2 {
		copy(c.Request[:], d.fixed(32))
		if d.err == nil && c.Request == ([32]byte{}) {
			d.fail() // version 1 is the one encoding of a commit without a digest
		}
	}
}

// ImportAbort drops the staged chunks of an upload that will not be committed.
type ImportAbort struct{ Upload UploadID }

func (*ImportAbort) Type() CmdType                { return CmdImportAbort }
func (c *ImportAbort) appendBody(b []byte) []byte { return append(b, c.Upload[:]...) }
func (c *ImportAbort) decodeBody(d *decoder)      { copy(c.Upload[:], d.fixed(16)) }

// Withdraw removes unused codes from a list, all or nothing.
type Withdraw struct {
	Tenant string
	List   uint64
	Codes  CodeBlock
}

func (*Withdraw) Type() CmdType { return CmdWithdraw }
func (c *Withdraw) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = binary.AppendUvarint(b, c.List)
	return appendBytes(b, c.Codes)
}
func (c *Withdraw) decodeBody(d *decoder) {
	c.Tenant, c.List = d.string(), d.uvarint()
	c.Codes = CodeBlock(d.bytes())
	if d.err == nil && !c.Codes.valid() {
		d.err = errCorrupt
	}
}

// CodeBlock is a run of codes, each as one length byte (1..MaxCodeLen) and its bytes.
type CodeBlock []byte

// AppendCode adds code to the block; the caller has checked its length.
func (b CodeBlock) AppendCode(code []byte) CodeBlock {
	if len(code) == 0 || len(code) > MaxCodeLen {
		panic("BUG: code length out of range")
	}
	return append(append(b, byte(len(code))), code...)
}

// Each calls fn for every code; the slice aliases the block.
func (b CodeBlock) Each(fn func(code []byte)) {
	for len(b) > 0 {
		n := int(b[0])
		fn(b[1 : 1+n])
		b = b[1+n:]
	}
}

// Count is the number of codes in the block.
func (b CodeBlock) Count() int {
	n := 0
	for len(b) > 0 {
		b = b[1+int(b[0]):]
		n++
	}
	return n
}

func (b CodeBlock) valid() bool {
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 || n > MaxCodeLen || 1+n > len(b) {
			return false
		}
		b = b[1+n:]
	}
	return true
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendVarint(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// decoder reads what the append helpers wrote; the first error sticks and
// every later read returns a zero value.
type decoder struct {
	b       []byte
	err     error
	version byte // of the command or record being read
}

func (d *decoder) fail() { d.err = errCorrupt; d.b = nil }

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail()
		return 0
	}
	return uint32(v)
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	p := d.fixed(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail()
	return false
}

func (d *decoder) fixed(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.fail()
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

// bytes returns a slice aliasing the entry.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	return d.fixed(int(n))
}

func (d *decoder) string() string { return string(d.bytes()) }

// Commands of messages and sends (issue 3). Appended after CmdWithdraw.
const (
	CmdUpsertMessage CmdType = 11
	CmdAssignList    CmdType = 12
	CmdOpenSend      CmdType = 13
	CmdAllocate      CmdType = 14
	CmdReserve       CmdType = 15
	CmdCloseSend     CmdType = 16
	CmdBatch         CmdType = 17
)

// Batch carries several small commands in one log entry, so concurrent
// requests share one Raft entry as well as one fsync. They apply in order,
// each with its own outcome; a Batch never holds a Batch.
type Batch struct {
	Commands [][]byte // each an encoded command
}

func (*Batch) Type() CmdType { return CmdBatch }
func (c *Batch) appendBody(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(c.Commands)))
	for _, cmd := range c.Commands {
		b = appendBytes(b, cmd)
	}
	return b
}
func (c *Batch) decodeBody(d *decoder) {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return
	}
	c.Commands = make([][]byte, n)
	for i := range c.Commands {
		c.Commands[i] = d.bytes()
		if d.err == nil && (len(c.Commands[i]) == 0 || CmdType(c.Commands[i][0]) == CmdBatch) {
			d.fail()
		}
	}
}

// BatchResponse is the outcome of each command of a Batch, in order.
type BatchResponse struct{ Responses []*Response }

// UpsertMessage creates or replaces a message's attributes; the assigned
// list stays as it is.
type UpsertMessage struct {
	Tenant       string
	ID           string
	Name         string
	Campaign     string
	CampaignType string
	Channel      string
	DOI          bool
	Status       string // "" keeps the current status (draft for a new message)
	At           int64
}

func (*UpsertMessage) Type() CmdType { return CmdUpsertMessage }
func (c *UpsertMessage) appendBody(b []byte) []byte {
	for _, s := range []string{c.Tenant, c.ID, c.Name, c.Campaign, c.CampaignType, c.Channel} {
		b = appendString(b, s)
	}
	b = appendBool(b, c.DOI)
	b = appendString(b, c.Status)
	return appendVarint(b, c.At)
}
func (c *UpsertMessage) decodeBody(d *decoder) {
	c.Tenant, c.ID, c.Name, c.Campaign = d.string(), d.string(), d.string(), d.string()
	c.CampaignType, c.Channel, c.DOI, c.Status, c.At = d.string(), d.string(), d.bool(), d.string(), d.varint()
}

// AssignList sets the list of a message; List 0 unassigns it.
type AssignList struct {
	Tenant  string
	Message string
	List    uint64
}

func (*AssignList) Type() CmdType { return CmdAssignList }
func (c *AssignList) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = appendString(b, c.Message)
	return binary.AppendUvarint(b, c.List)
}
func (c *AssignList) decodeBody(d *decoder) {
	c.Tenant, c.Message, c.List = d.string(), d.string(), d.uvarint()
}

// OpenSend opens a send, or changes its hold when it is open already.
type OpenSend struct {
	Tenant      string
	Send        string
	Message     string
	HasExpected bool
	Expected    uint64
	At          int64
}

func (*OpenSend) Type() CmdType { return CmdOpenSend }
func (c *OpenSend) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = appendString(b, c.Send)
	b = appendString(b, c.Message)
	b = appendBool(b, c.HasExpected)
	b = binary.AppendUvarint(b, c.Expected)
	return appendVarint(b, c.At)
}
func (c *OpenSend) decodeBody(d *decoder) {
	c.Tenant, c.Send, c.Message = d.string(), d.string(), d.string()
	c.HasExpected, c.Expected, c.At = d.bool(), d.uvarint(), d.varint()
}

// Allocate hands one code to each recipient that has none in the send yet,
// all or nothing. Message may be empty for a send that exists.
type Allocate struct {
	Tenant     string
	Send       string
	Message    string
	Recipients RecipientBlock
	At         int64
}

func (*Allocate) Type() CmdType { return CmdAllocate }
func (c *Allocate) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = appendString(b, c.Send)
	b = appendString(b, c.Message)
	b = appendVarint(b, c.At)
	return appendBytes(b, c.Recipients)
}
func (c *Allocate) decodeBody(d *decoder) {
	c.Tenant, c.Send, c.Message, c.At = d.string(), d.string(), d.string(), d.varint()
	c.Recipients = RecipientBlock(d.bytes())
	if d.err == nil && !c.Recipients.valid() {
		d.err = errCorrupt
	}
}

// Reserve is the first entry of an allocation too big for one entry: it
// makes the all-or-nothing check for Need new recipients and holds the
// codes for the send, so the Allocate chunks that follow cannot run dry.
type Reserve struct {
	Tenant  string
	Send    string
	Message string
	Need    uint64
	At      int64
}

func (*Reserve) Type() CmdType { return CmdReserve }
func (c *Reserve) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = appendString(b, c.Send)
	b = appendString(b, c.Message)
	b = binary.AppendUvarint(b, c.Need)
	return appendVarint(b, c.At)
}
func (c *Reserve) decodeBody(d *decoder) {
	c.Tenant, c.Send, c.Message, c.Need, c.At = d.string(), d.string(), d.string(), d.uvarint(), d.varint()
}

// CloseSend ends a send; its unused hold goes back to the list.
type CloseSend struct {
	Tenant string
	Send   string
	At     int64
}

func (*CloseSend) Type() CmdType { return CmdCloseSend }
func (c *CloseSend) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = appendString(b, c.Send)
	return appendVarint(b, c.At)
}
func (c *CloseSend) decodeBody(d *decoder) {
	c.Tenant, c.Send, c.At = d.string(), d.string(), d.varint()
}

// MaxRecipientLen is the longest recipient in bytes (SPEC §2).
const MaxRecipientLen = 256

// RecipientBlock is a run of recipients, each as a uvarint length and its bytes.
type RecipientBlock []byte

// AppendRecipient adds r; the caller has checked its length.
func (b RecipientBlock) AppendRecipient(r []byte) RecipientBlock {
	if len(r) == 0 || len(r) > MaxRecipientLen {
		panic("BUG: recipient length out of range")
	}
	return append(binary.AppendUvarint(b, uint64(len(r))), r...)
}

// Each calls fn for every recipient; the slice aliases the block.
func (b RecipientBlock) Each(fn func(r []byte)) {
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		fn(b[k : k+int(n)])
		b = b[k+int(n):]
	}
}

func (b RecipientBlock) valid() bool {
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n == 0 || n > MaxRecipientLen || uint64(len(b)-k) < n {
			return false
		}
		b = b[k+int(n):]
	}
	return true
}
