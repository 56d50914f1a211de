package raftfsm

import (
	"encoding/binary"
)

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

// The commands of tenants, tokens, lists and imports, and below those of
// messages and sends. Each apply method hands over to the applier's method
// of the same name (apply.go, alloc.go).

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
	c.ID, c.Name, c.At = d.string("ID"), d.string("Name"), d.varint("At")
}
func (c *CreateTenant) at(int64) int64                { return c.At }
func (c *CreateTenant) apply(a *applier) (any, error) { return a.createTenant(c) }

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
	c.ID, c.Tenant, c.Role, c.Name = d.string("ID"), d.string("Tenant"), Role(d.byte("Role")), d.string("Name")
	copy(c.Hash[:], d.fixed("Hash", 32))
	c.At = d.varint("At")
}
func (c *CreateToken) at(int64) int64                { return c.At }
func (c *CreateToken) apply(a *applier) (any, error) { return a.createToken(c) }

type RevokeToken struct{ ID string }

func (*RevokeToken) Type() CmdType                   { return CmdRevokeToken }
func (c *RevokeToken) appendBody(b []byte) []byte    { return appendString(b, c.ID) }
func (c *RevokeToken) decodeBody(d *decoder)         { c.ID = d.string("ID") }
func (*RevokeToken) at(entryAt int64) int64          { return entryAt }
func (c *RevokeToken) apply(a *applier) (any, error) { return nil, a.revokeToken(c) }

type CreateList struct {
	Tenant    string
	ID        uint64 // chosen by the leader
	Name      string
	Dedupe    bool
	Threshold uint64
	At        int64

	FallbackCode string
	HasExpiry    bool
	ExpiresAt    int64
	SetWarnDays  bool // else DefaultWarnDays
	WarnDays     uint32
}

func (*CreateList) Type() CmdType { return CmdCreateList }

// version 2 adds the fallback code and expiry (lifecycle); a list without
// them is written as version 1, byte for byte as before.
func (c *CreateList) version() byte {
	if c.hasLifecycle() {
		return 2
	}
	return 1
}

func (c *CreateList) hasLifecycle() bool {
	return c.FallbackCode != "" || c.HasExpiry || c.ExpiresAt != 0 || c.SetWarnDays
}

// warnDays is the list's expiry_warning_days.
func (c *CreateList) warnDays() uint32 {
	if c.SetWarnDays {
		return c.WarnDays
	}
	return DefaultWarnDays
}

func (c *CreateList) appendBody(b []byte) []byte {
	b = c.appendBase(b)
	if c.hasLifecycle() {
		b = c.appendLifecycle(b)
	}
	return b
}
func (c *CreateList) decodeBody(d *decoder) {
	c.decodeBase(d)
	if d.version >= 2 {
		c.decodeLifecycle(d)
	}
}

// The base and the lifecycle part are apart because ImportCommit embeds a
// CreateList under versions of its own.
func (c *CreateList) appendBase(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = binary.AppendUvarint(b, c.ID)
	b = appendString(b, c.Name)
	b = appendBool(b, c.Dedupe)
	b = binary.AppendUvarint(b, c.Threshold)
	return appendVarint(b, c.At)
}
func (c *CreateList) decodeBase(d *decoder) {
	c.Tenant, c.ID, c.Name = d.string("Tenant"), d.uvarint("ID"), d.string("Name")
	c.Dedupe, c.Threshold, c.At = d.bool("Dedupe"), d.uvarint("Threshold"), d.varint("At")
}
func (c *CreateList) appendLifecycle(b []byte) []byte {
	b = appendString(b, c.FallbackCode)
	b = appendBool(b, c.HasExpiry)
	b = appendVarint(b, c.ExpiresAt)
	b = appendBool(b, c.SetWarnDays)
	return binary.AppendUvarint(b, uint64(c.WarnDays))
}
func (c *CreateList) decodeLifecycle(d *decoder) {
	c.FallbackCode, c.HasExpiry, c.ExpiresAt = d.string("FallbackCode"), d.bool("HasExpiry"), d.varint("ExpiresAt")
	c.SetWarnDays, c.WarnDays = d.bool("SetWarnDays"), d.uint32("WarnDays")
	if d.err == nil && !c.hasLifecycle() {
		d.fail("FallbackCode", "no lifecycle in its version") // the version without it is the one encoding
	}
}
func (c *CreateList) at(int64) int64                { return c.At }
func (c *CreateList) apply(a *applier) (any, error) { return a.createList(c) }

type UpdateList struct {
	Tenant       string
	ID           uint64
	SetName      bool
	Name         string
	SetThreshold bool
	Threshold    uint64

	SetFallback  bool
	FallbackCode string // "" clears it
	SetExpiry    bool
	HasExpiry    bool // false clears it
	ExpiresAt    int64
	SetWarnDays  bool
	WarnDays     uint32
}

func (*UpdateList) Type() CmdType { return CmdUpdateList }

// version 2 adds the fallback code and expiry, written only when set.
func (c *UpdateList) version() byte {
	if c.SetFallback || c.SetExpiry || c.SetWarnDays {
		return 2
	}
	return 1
}

func (c *UpdateList) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = binary.AppendUvarint(b, c.ID)
	b = appendBool(b, c.SetName)
	b = appendString(b, c.Name)
	b = appendBool(b, c.SetThreshold)
	b = binary.AppendUvarint(b, c.Threshold)
	if c.version() == 2 {
		b = appendBool(b, c.SetFallback)
		b = appendString(b, c.FallbackCode)
		b = appendBool(b, c.SetExpiry)
		b = appendBool(b, c.HasExpiry)
		b = appendVarint(b, c.ExpiresAt)
		b = appendBool(b, c.SetWarnDays)
		b = binary.AppendUvarint(b, uint64(c.WarnDays))
	}
	return b
}
func (c *UpdateList) decodeBody(d *decoder) {
	c.Tenant, c.ID = d.string("Tenant"), d.uvarint("ID")
	c.SetName, c.Name = d.bool("SetName"), d.string("Name")
	c.SetThreshold, c.Threshold = d.bool("SetThreshold"), d.uvarint("Threshold")
	if d.version >= 2 {
		c.SetFallback, c.FallbackCode = d.bool("SetFallback"), d.string("FallbackCode")
		c.SetExpiry, c.HasExpiry, c.ExpiresAt = d.bool("SetExpiry"), d.bool("HasExpiry"), d.varint("ExpiresAt")
		c.SetWarnDays, c.WarnDays = d.bool("SetWarnDays"), d.uint32("WarnDays")
		if d.err == nil && c.version() != 2 {
			d.fail("SetWarnDays", "nothing set in version 2")
		}
	}
}
func (*UpdateList) at(entryAt int64) int64          { return entryAt }
func (c *UpdateList) apply(a *applier) (any, error) { return nil, a.updateList(c) }

type DeleteList struct {
	Tenant string
	ID     uint64
}

func (*DeleteList) Type() CmdType { return CmdDeleteList }
func (c *DeleteList) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	return binary.AppendUvarint(b, c.ID)
}
func (c *DeleteList) decodeBody(d *decoder)         { c.Tenant, c.ID = d.string("Tenant"), d.uvarint("ID") }
func (*DeleteList) at(entryAt int64) int64          { return entryAt }
func (c *DeleteList) apply(a *applier) (any, error) { return nil, a.deleteList(c) }

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
	c.Tenant = d.string("Tenant")
	copy(c.Upload[:], d.fixed("Upload", 16))
	c.Chunk, c.At = d.uint32("Chunk"), d.varint("At")
	c.Codes = CodeBlock(d.bytes("Codes"))
	if d.version >= 2 {
		c.NewList, c.Expect = d.bool("NewList"), d.uint32("Expect")
		if d.err == nil && !c.NewList {
			d.fail("NewList", "false in version 2") // version 1 is the one encoding of a chunk without it
		}
	}
	if d.err == nil && !c.Codes.valid() {
		d.fail("Codes", "invalid code block")
	}
}
func (c *ImportChunk) at(int64) int64                { return c.At }
func (c *ImportChunk) apply(a *applier) (any, error) { return nil, a.importChunk(c) }

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
// Version 3 adds the lifecycle of the list it creates (fallback code,
// expiry), after a Request that may then be zero.
func (c *ImportCommit) version() byte {
	switch {
	case c.Create != nil && c.Create.hasLifecycle():
		return 3
	case c.Request == ([32]byte{}):
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
		b = c.Create.appendBase(b)
	}
	v := c.version()
	if v >= 2 {
		b = append(b, c.Request[:]...)
	}
	if v >= 3 {
		b = c.Create.appendLifecycle(b)
	}
	return b
}
func (c *ImportCommit) decodeBody(d *decoder) {
	c.Tenant = d.string("Tenant")
	copy(c.Upload[:], d.fixed("Upload", 16))
	c.Chunks, c.List, c.At = d.uint32("Chunks"), d.uvarint("List"), d.varint("At")
	if d.bool("Create") {
		c.Create = &CreateList{}
		c.Create.decodeBase(d)
	}
	if d.version >= 2 {
		copy(c.Request[:], d.fixed("Request", 32))
		if d.err == nil && d.version == 2 && c.Request == ([32]byte{}) {
			d.fail("Request", "zero in version 2") // version 1 is the one encoding of a commit without a digest
		}
	}
	if d.version >= 3 {
		if c.Create == nil {
			d.fail("Create", "missing in version 3")
			return
		}
		c.Create.decodeLifecycle(d)
	}
}
func (c *ImportCommit) at(int64) int64                { return c.At }
func (c *ImportCommit) apply(a *applier) (any, error) { return a.importCommit(c) }

// ImportAbort drops the staged chunks of an upload that will not be committed.
type ImportAbort struct{ Upload UploadID }

func (*ImportAbort) Type() CmdType                   { return CmdImportAbort }
func (c *ImportAbort) appendBody(b []byte) []byte    { return append(b, c.Upload[:]...) }
func (c *ImportAbort) decodeBody(d *decoder)         { copy(c.Upload[:], d.fixed("Upload", 16)) }
func (*ImportAbort) at(entryAt int64) int64          { return entryAt }
func (c *ImportAbort) apply(a *applier) (any, error) { return nil, a.importAbort(c.Upload) }

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
	c.Tenant, c.List = d.string("Tenant"), d.uvarint("List")
	c.Codes = CodeBlock(d.bytes("Codes"))
	if d.err == nil && !c.Codes.valid() {
		d.fail("Codes", "invalid code block")
	}
}
func (*Withdraw) at(entryAt int64) int64          { return entryAt }
func (c *Withdraw) apply(a *applier) (any, error) { return a.withdraw(c) }

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
	n := d.count("Commands", uint64(len(d.b)))
	if d.err != nil {
		return
	}
	c.Commands = make([][]byte, n)
	for i := range c.Commands {
		c.Commands[i] = d.bytes("Commands")
		if d.err == nil && (len(c.Commands[i]) == 0 || CmdType(c.Commands[i][0]) == CmdBatch) {
			d.fail("Commands", "an empty command or a batch")
		}
	}
}
func (*Batch) at(entryAt int64) int64 { return entryAt }

// apply applies the commands in order; those this node waits for are
// answered one by one as they are applied (SetEarlyAnswers).
func (c *Batch) apply(a *applier) (any, error) {
	out := &BatchResponse{Responses: make([]*Response, len(c.Commands))}
	answer := a.earlyAnswers(a.entry)
	for i, sub := range c.Commands {
		out.Responses[i] = a.apply(sub)
		if answer != nil {
			answer(i, out.Responses[i])
		}
	}
	return out, nil
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
	c.Tenant, c.ID, c.Name, c.Campaign = d.string("Tenant"), d.string("ID"), d.string("Name"), d.string("Campaign")
	c.CampaignType, c.Channel, c.DOI = d.string("CampaignType"), d.string("Channel"), d.bool("DOI")
	c.Status, c.At = d.string("Status"), d.varint("At")
}
func (c *UpsertMessage) at(int64) int64                { return c.At }
func (c *UpsertMessage) apply(a *applier) (any, error) { return a.upsertMessage(c) }

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
	c.Tenant, c.Message, c.List = d.string("Tenant"), d.string("Message"), d.uvarint("List")
}
func (*AssignList) at(entryAt int64) int64          { return entryAt }
func (c *AssignList) apply(a *applier) (any, error) { return nil, a.assignList(c) }

// OpenSend opens a send, or changes its hold when it is open already.
type OpenSend struct {
	Tenant        string
	Send          string
	Message       string
	HasExpected   bool
	Expected      uint64
	At            int64
	SetOnShortage bool
	OnShortage    Shortage
}

func (*OpenSend) Type() CmdType { return CmdOpenSend }

// version 2 adds the shortage policy, written only when set.
func (c *OpenSend) version() byte {
	if c.SetOnShortage {
		return 2
	}
	return 1
}

func (c *OpenSend) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = appendString(b, c.Send)
	b = appendString(b, c.Message)
	b = appendBool(b, c.HasExpected)
	b = binary.AppendUvarint(b, c.Expected)
	b = appendVarint(b, c.At)
	if c.SetOnShortage {
		b = append(b, byte(c.OnShortage))
	}
	return b
}
func (c *OpenSend) decodeBody(d *decoder) {
	c.Tenant, c.Send, c.Message = d.string("Tenant"), d.string("Send"), d.string("Message")
	c.HasExpected, c.Expected, c.At = d.bool("HasExpected"), d.uvarint("Expected"), d.varint("At")
	if d.version >= 2 {
		c.SetOnShortage, c.OnShortage = true, d.shortage()
	}
}
func (c *OpenSend) at(int64) int64                { return c.At }
func (c *OpenSend) apply(a *applier) (any, error) { return a.openSend(c) }

// Allocate hands one code to each recipient that has none in the send yet,
// all or nothing. Message may be empty for a send that exists.
type Allocate struct {
	Tenant     string
	Send       string
	Message    string
	Recipients RecipientBlock
	At         int64
	OnShortage Shortage // the policy of a send this allocation opens
}

func (*Allocate) Type() CmdType { return CmdAllocate }

// version 2 adds OnShortage, written only when it is not the default.
func (c *Allocate) version() byte {
	if c.OnShortage != ShortageReject {
		return 2
	}
	return 1
}

func (c *Allocate) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = appendString(b, c.Send)
	b = appendString(b, c.Message)
	b = appendVarint(b, c.At)
	b = appendBytes(b, c.Recipients)
	if c.OnShortage != ShortageReject {
		b = append(b, byte(c.OnShortage))
	}
	return b
}
func (c *Allocate) decodeBody(d *decoder) {
	c.Tenant, c.Send, c.Message, c.At = d.string("Tenant"), d.string("Send"), d.string("Message"), d.varint("At")
	c.Recipients = RecipientBlock(d.bytes("Recipients"))
	if d.err == nil && !c.Recipients.valid() {
		d.fail("Recipients", "invalid recipient block")
	}
	if d.version >= 2 {
		if c.OnShortage = d.shortage(); d.err == nil && c.OnShortage == ShortageReject {
			d.fail("OnShortage", "reject in version 2")
		}
	}
}
func (c *Allocate) at(int64) int64                { return c.At }
func (c *Allocate) apply(a *applier) (any, error) { return a.allocate(c) }

// Reserve is the first entry of an allocation too big for one entry: it
// makes the all-or-nothing check for Need new recipients and holds the
// codes for the send, so the Allocate chunks that follow cannot run dry.
type Reserve struct {
	Tenant     string
	Send       string
	Message    string
	Need       uint64
	At         int64
	OnShortage Shortage // the policy of a send this request opens
}

func (*Reserve) Type() CmdType { return CmdReserve }

// version 2 adds OnShortage, written only when it is not the default.
func (c *Reserve) version() byte {
	if c.OnShortage != ShortageReject {
		return 2
	}
	return 1
}

func (c *Reserve) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = appendString(b, c.Send)
	b = appendString(b, c.Message)
	b = binary.AppendUvarint(b, c.Need)
	b = appendVarint(b, c.At)
	if c.OnShortage != ShortageReject {
		b = append(b, byte(c.OnShortage))
	}
	return b
}
func (c *Reserve) decodeBody(d *decoder) {
	c.Tenant, c.Send, c.Message = d.string("Tenant"), d.string("Send"), d.string("Message")
	c.Need, c.At = d.uvarint("Need"), d.varint("At")
	if d.version >= 2 {
		if c.OnShortage = d.shortage(); d.err == nil && c.OnShortage == ShortageReject {
			d.fail("OnShortage", "reject in version 2")
		}
	}
}
func (c *Reserve) at(int64) int64                { return c.At }
func (c *Reserve) apply(a *applier) (any, error) { return nil, a.reserve(c) }

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
	c.Tenant, c.Send, c.At = d.string("Tenant"), d.string("Send"), d.varint("At")
}
func (c *CloseSend) at(int64) int64                { return c.At }
func (c *CloseSend) apply(a *applier) (any, error) { return a.closeSend(c) }

// Release gives the codes of recipients of a send back to the send's list
// (bounced mail): each assignment at most once. Open and closed sends.
type Release struct {
	Tenant     string
	Send       string
	Recipients RecipientBlock
	At         int64
}

func (*Release) Type() CmdType { return CmdRelease }
func (c *Release) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = appendString(b, c.Send)
	b = appendVarint(b, c.At)
	return appendBytes(b, c.Recipients)
}
func (c *Release) decodeBody(d *decoder) {
	c.Tenant, c.Send, c.At = d.string("Tenant"), d.string("Send"), d.varint("At")
	c.Recipients = RecipientBlock(d.bytes("Recipients"))
	if d.err == nil && !c.Recipients.valid() {
		d.fail("Recipients", "invalid recipient block")
	}
}
func (c *Release) at(int64) int64                { return c.At }
func (c *Release) apply(a *applier) (any, error) { return a.release(c) }

// Tick carries the leader's clock into the state machine when a passing
// time needs something done (an expiry warning due): nothing else there
// reads a clock.
type Tick struct{ At int64 }

func (*Tick) Type() CmdType                   { return CmdTick }
func (c *Tick) appendBody(b []byte) []byte    { return appendVarint(b, c.At) }
func (c *Tick) decodeBody(d *decoder)         { c.At = d.varint("At") }
func (c *Tick) at(int64) int64                { return c.At }
func (c *Tick) apply(a *applier) (any, error) { return nil, a.tick(c) }

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

// valid also refuses a length longer than it need be, which AppendRecipient
// never writes (one encoding per block).
func (b RecipientBlock) valid() bool {
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || (k > 1 && b[k-1] == 0) || n == 0 || n > MaxRecipientLen || uint64(len(b)-k) < n {
			return false
		}
		b = b[k+int(n):]
	}
	return true
}
