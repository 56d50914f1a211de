package raftfsm

import (
	"fmt"
	"reflect"
)

// CmdType is the first byte of every log entry.
type CmdType byte

// The command types and, below, their registry: every command is one
// constant here and one row there, and its own file holds the rest (its
// struct, encoding, time and apply).
//
// The rule: numbers are only appended. A number is never reused, not even
// for a command that is gone, and never renumbered: every Raft log and
// snapshot in the field holds them. A body whose encoding grows gets a new
// version: its row's maxVersion goes up, the command writes the newest
// version only when it needs it (versioned), and its decodeBody still
// reads every older one.
const (
	CmdCreateTenant  CmdType = 1
	CmdCreateToken   CmdType = 2
	CmdRevokeToken   CmdType = 3
	CmdCreateList    CmdType = 4
	CmdUpdateList    CmdType = 5
	CmdDeleteList    CmdType = 6
	CmdImportChunk   CmdType = 7
	CmdImportCommit  CmdType = 8
	CmdImportAbort   CmdType = 9
	CmdWithdraw      CmdType = 10
	CmdUpsertMessage CmdType = 11
	CmdAssignList    CmdType = 12
	CmdOpenSend      CmdType = 13
	CmdAllocate      CmdType = 14
	CmdReserve       CmdType = 15
	CmdCloseSend     CmdType = 16
	CmdBatch         CmdType = 17
	CmdSetNode       CmdType = 18
	CmdRemoveNode    CmdType = 19
	CmdSetClusterKey CmdType = 20
	CmdAckAlerts     CmdType = 21
	CmdRelease       CmdType = 22
	CmdTick          CmdType = 23

	// Erasure of a recipient (erase.go).
	CmdEraseRecipient CmdType = 24
)

// cmdInfo is a command type's row of the registry.
type cmdInfo struct {
	new        func() Command
	maxVersion byte // the newest body version Decode reads
}

var registry = [...]cmdInfo{
	CmdCreateTenant:  {func() Command { return new(CreateTenant) }, 1},
	CmdCreateToken:   {func() Command { return new(CreateToken) }, 1},
	CmdRevokeToken:   {func() Command { return new(RevokeToken) }, 1},
	CmdCreateList:    {func() Command { return new(CreateList) }, 2}, // 2: fallback code, expiry
	CmdUpdateList:    {func() Command { return new(UpdateList) }, 2}, // 2: fallback code, expiry
	CmdDeleteList:    {func() Command { return new(DeleteList) }, 1},
	CmdImportChunk:   {func() Command { return new(ImportChunk) }, 2},  // 2: NewList, Expect
	CmdImportCommit:  {func() Command { return new(ImportCommit) }, 3}, // 2: Request; 3: the created list's lifecycle
	CmdImportAbort:   {func() Command { return new(ImportAbort) }, 1},
	CmdWithdraw:      {func() Command { return new(Withdraw) }, 1},
	CmdUpsertMessage: {func() Command { return new(UpsertMessage) }, 1},
	CmdAssignList:    {func() Command { return new(AssignList) }, 1},
	CmdOpenSend:      {func() Command { return new(OpenSend) }, 2}, // 2: OnShortage
	CmdAllocate:      {func() Command { return new(Allocate) }, 2}, // 2: OnShortage
	CmdReserve:       {func() Command { return new(Reserve) }, 2},  // 2: OnShortage
	CmdCloseSend:     {func() Command { return new(CloseSend) }, 1},
	CmdBatch:         {func() Command { return new(Batch) }, 1},
	CmdSetNode:       {func() Command { return new(SetNode) }, 1},
	CmdRemoveNode:    {func() Command { return new(RemoveNode) }, 1},
	CmdSetClusterKey: {func() Command { return new(SetClusterKey) }, 1},
	CmdAckAlerts:     {func() Command { return new(AckAlerts) }, 1},
	CmdRelease:       {func() Command { return new(Release) }, 1},
	CmdTick:          {func() Command { return new(Tick) }, 1},

	CmdEraseRecipient: {func() Command { return new(EraseRecipient) }, 1},
}

// bodyVersion is the version of every body written, but for a command
// that says otherwise (versioned).
const bodyVersion = 1

// versioned is a command whose encoding grew: it names the version of the
// body it writes.
type versioned interface {
	version() byte
}

// Command is one state change. Encode turns it into a log entry.
type Command interface {
	Type() CmdType
	appendBody(dst []byte) []byte
	decodeBody(d *decoder)
	// at is the leader's time of the command: the At it carries, or, for
	// a command without one, entryAt, the time its entry was appended
	// (raft.Log.AppendedAt). Both travel in the log, so every replica
	// records the same times.
	at(entryAt int64) int64
	// apply carries the command out: the value answers it
	// (Response.Value), the error is a domain outcome (Response.Err).
	apply(a *applier) (any, error)
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

// Decode parses a log entry written by Encode. It refuses unknown types,
// newer versions, and bodies that Encode would not have written; the error
// names the command and the field.
func Decode(data []byte) (Command, error) {
	if len(data) < 2 {
		return nil, fmt.Errorf("raftfsm: decode: entry of %d bytes: %w", len(data), errCorrupt)
	}
	t, v := CmdType(data[0]), data[1]
	if int(t) >= len(registry) || registry[t].new == nil {
		return nil, fmt.Errorf("raftfsm: decode: unknown command type %d: %w", t, errCorrupt)
	}
	c := registry[t].new()
	if v < 1 || v > registry[t].maxVersion {
		return nil, fmt.Errorf("raftfsm: decode %s: unknown version %d: %w", cmdName(c), v, errCorrupt)
	}
	d := decoder{b: data[2:], version: v}
	c.decodeBody(&d)
	if err := d.done(); err != nil {
		return nil, fmt.Errorf("raftfsm: decode %s: %w", cmdName(c), err)
	}
	return c, nil
}

// cmdName is the name of a command's type, for errors.
func cmdName(c Command) string { return reflect.TypeOf(c).Elem().Name() }
