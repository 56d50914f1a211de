package raftfsm

import (
	"errors"
	"strings"
	"testing"
)

// TestRegistry: every type number up to the last has a row whose command
// says it is of that type, and a command that writes a newer body version
// has a row that reads it.
func TestRegistry(t *testing.T) {
	if registry[0].new != nil {
		t.Fatal("type 0 has a row")
	}
	for i := 1; i < len(registry); i++ {
		row := registry[i]
		if row.new == nil {
			t.Fatalf("type %d has no row: numbers are never left out or reused", i)
		}
		c := row.new()
		if c.Type() != CmdType(i) {
			t.Fatalf("type %d makes a %s of type %d", i, cmdName(c), c.Type())
		}
		_, isVersioned := c.(versioned)
		if row.maxVersion < 1 || (row.maxVersion > 1) != isVersioned {
			t.Fatalf("%s: max version %d, versioned %v", cmdName(c), row.maxVersion, isVersioned)
		}
	}
	if got := registry[len(registry)-1].new().Type(); got != CmdEraseRecipient {
		t.Fatalf("the last row is type %d", got)
	}
}

func TestDecodeRefusesNonMinimalVarints(t *testing.T) {
	good := Encode(&ImportChunk{Tenant: "a", Upload: UploadID{1}, Chunk: 0x50, Codes: block("A"), At: 1})
	if _, err := Decode(good); err != nil {
		t.Fatal(err)
	}
	// Chunk 0x50 written in two bytes instead of one: 0xd0 0x00.
	i := 2 + 1 + len("a") + 16
	if good[i] != 0x50 {
		t.Fatalf("chunk byte is %x", good[i])
	}
	long := append(append(append([]byte{}, good[:i]...), 0xd0, 0x00), good[i+1:]...)
	_, err := Decode(long)
	if !errors.Is(err, errCorrupt) {
		t.Fatalf("non-minimal uvarint: got %v", err)
	}
	for _, want := range []string{"ImportChunk", "field Chunk", "non-minimal"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	// A non-minimal recipient length inside a block.
	bad := Encode(&Allocate{Tenant: "a", Send: "s", Recipients: RecipientBlock{0x81, 0x00, 'r'}})
	if _, err := Decode(bad); !errors.Is(err, errCorrupt) {
		t.Fatalf("non-minimal recipient length: got %v", err)
	}
}

func TestDecodeErrorsNameCommandAndField(t *testing.T) {
	good := Encode(&ImportChunk{Tenant: "acme", Upload: UploadID{9}, Chunk: 4, Codes: block("A", "BB"), At: 1})
	for _, tc := range []struct {
		data []byte
		want string
	}{
		{good[:len(good)-1], "raftfsm: decode ImportChunk: field Codes: truncated"},
		{append(append([]byte{}, good...), 7), "raftfsm: decode ImportChunk: 1 trailing bytes"},
		{[]byte{byte(CmdImportChunk), 3}, "raftfsm: decode ImportChunk: unknown version 3"},
		{[]byte{99, 1}, "raftfsm: decode: unknown command type 99"},
		{Encode(&CreateList{Tenant: "a", Dedupe: true})[:2+2+1+1], "raftfsm: decode CreateList: field Dedupe: truncated"},
	} {
		_, err := Decode(tc.data)
		if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%x: got %v, want %q", tc.data, err, tc.want)
		}
	}
}
