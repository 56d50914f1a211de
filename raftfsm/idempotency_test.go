package raftfsm

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// An upload made under an Idempotency-Key is bound by its first commit to
// the request's digest: a commit of the same upload with another digest
// is refused whatever its list, and a retry whose list was deleted since
// learns so, instead of answering a list no one can read or importing again.
func TestImportKeyIsBoundToItsRequest(t *testing.T) {
	tf := newTestFSM(t)
	tf.setup()
	tf.mustApply(&CreateList{Tenant: "acme", ID: 8, Name: "other", Dedupe: true, At: 3})
	reqA, reqB := [32]byte{0xA}, [32]byte{0xB}

	// Top-up of list 7 under key 1 (upload 1), bound to reqA.
	tf.mustApply(&ImportChunk{Tenant: "acme", Upload: UploadID{1}, Chunk: 0, Codes: block("A", "B")})
	first := tf.mustApply(&ImportCommit{Tenant: "acme", Upload: UploadID{1}, Chunks: 1, List: 7, Request: reqA}).(ImportResult)
	if want := (ImportResult{List: 7, Imported: 2, Size: 2}); first != want {
		t.Fatalf("first commit: got %+v, want %+v", first, want)
	}
	before := tf.f.Digest()
	// The same request again, with or without its chunks staged again, gets
	// the first answer.
	if got := tf.mustApply(&ImportCommit{Tenant: "acme", Upload: UploadID{1}, List: 7, Request: reqA}); got != first {
		t.Fatalf("retry: got %+v, want %+v", got, first)
	}
	reused := []struct {
		name string
		c    *ImportCommit
	}{
		{"same list, other body", &ImportCommit{Tenant: "acme", Upload: UploadID{1}, List: 7, Request: reqB}},
		{"another list", &ImportCommit{Tenant: "acme", Upload: UploadID{1}, List: 8, Request: reqB}},
		{"create and import", &ImportCommit{Tenant: "acme", Upload: UploadID{1}, List: 30, Request: reqB,
			Create: &CreateList{Tenant: "acme", ID: 30, Name: "new", Dedupe: true}}},
	}
	for _, r := range reused {
		if got := tf.apply(r.c); !errors.Is(got.Err, ErrUploadReused) {
			t.Fatalf("%s: got %+v %v, want ErrUploadReused", r.name, got.Value, got.Err)
		}
	}
	if _, ok := tf.f.List("acme", 30); ok {
		t.Fatal("a create-and-import under a key bound to a top-up created a list")
	}
	if tf.f.Digest() != before {
		t.Fatal("refused reuses changed the state")
	}

	// Create-and-import under a key, empty or not; the list is deleted; a
	// retry of the same request is told the list is gone, and creates none.
	for i, codes := range [][]string{nil, {"X", "Y"}} {
		up, list, retryList := UploadID{byte(20 + i)}, uint64(20+i), uint64(40+i)
		req := [32]byte{byte(20 + i)}
		var n uint32
		if len(codes) > 0 {
			tf.mustApply(&ImportChunk{Tenant: "acme", Upload: up, Chunk: 0, Codes: block(codes...)})
			n = 1
		}
		tf.mustApply(&ImportCommit{Tenant: "acme", Upload: up, Chunks: n, List: list, Request: req,
			Create: &CreateList{Tenant: "acme", ID: list, Name: "c", Dedupe: true}})
		tf.mustApply(&DeleteList{Tenant: "acme", ID: list})
		tf = tf.reopen() // the binding is durable
		retry := &ImportCommit{Tenant: "acme", Upload: up, List: retryList, Request: req,
			Create: &CreateList{Tenant: "acme", ID: retryList, Name: "c", Dedupe: true}}
		if got := tf.apply(retry); !errors.Is(got.Err, ErrUploadListDeleted) {
			t.Fatalf("%d codes: retry after delete got %+v %v, want ErrUploadListDeleted", len(codes), got.Value, got.Err)
		}
		if _, ok := tf.f.List("acme", retryList); ok {
			t.Fatalf("%d codes: a retry after delete created a list", len(codes))
		}
		// Another request under the key is still a reuse.
		retry.Request = reqB
		if got := tf.apply(retry); !errors.Is(got.Err, ErrUploadReused) {
			t.Fatalf("%d codes: other request after delete got %v, want ErrUploadReused", len(codes), got.Err)
		}
	}
}

// Commits and upload records of the first layout, written before uploads
// were bound to their request, are still read: a commit without a digest
// keeps its old bytes, and an old record is a legacy one.
func TestImportBindingKeepsTheOldLayouts(t *testing.T) {
	c := &ImportCommit{Tenant: "acme", Upload: UploadID{9}, Chunks: 5, List: 3, At: 2}
	b := Encode(c)
	if b[1] != 1 {
		t.Fatalf("a commit without a digest is written as version %d, want 1", b[1])
	}
	c.Request = [32]byte{1, 2, 3}
	b = Encode(c)
	if b[1] != 2 {
		t.Fatalf("a commit with a digest is written as version %d, want 2", b[1])
	}
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip: got %+v %v, want %+v", got, err, c)
	}
	// Version 2 with a zero digest is not an encoding Encode writes.
	zero := append(Encode(&ImportCommit{Tenant: "acme", Upload: UploadID{9}}), make([]byte, 32)...)
	zero[1] = 2
	if _, err := Decode(zero); !errors.Is(err, errCorrupt) {
		t.Fatalf("version 2 with a zero digest: got %v, want errCorrupt", err)
	}
	newer := append([]byte{}, b...)
	newer[1] = 3
	if _, err := Decode(newer); !errors.Is(err, errCorrupt) {
		t.Fatalf("version 3: got %v, want errCorrupt", err)
	}

	// An upload record as the first layout wrote it.
	old := []byte{1}
	old = appendString(old, "acme")
	old = appendBool(old, true)
	old = binary.AppendUvarint(old, 7)
	old = binary.AppendUvarint(old, 2)
	old = binary.AppendUvarint(old, 1)
	old = binary.AppendUvarint(old, 9)
	old = appendVarint(old, 5)
	u, err := unmarshalUpload(old)
	if err != nil {
		t.Fatalf("cannot read a version 1 upload record: %v", err)
	}
	want := &uploadRecord{Tenant: "acme", Committed: true, List: 7,
		Result: ImportResult{List: 7, Imported: 2, Duplicates: 1, Size: 9}, At: 5, Legacy: true}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("version 1 record: got %+v, want %+v", u, want)
	}
	u.Request, u.Legacy = [32]byte{7}, false
	again, err := unmarshalUpload(u.marshal())
	if err != nil || !reflect.DeepEqual(again, u) {
		t.Fatalf("version 2 record round trip: got %+v %v, want %+v", again, err, u)
	}

	// A legacy record knows no digest: a retry is answered as before, except
	// that a list deleted since is said to be gone.
	tf := newTestFSM(t)
	tf.setup()
	tf.mustApply(&CreateList{Tenant: "acme", ID: 20, Name: "c", Dedupe: true, At: 3})
	tf.mustApply(&DeleteList{Tenant: "acme", ID: 20})
	legacy := []byte{1}
	legacy = appendString(legacy, "acme")
	legacy = appendBool(legacy, true)
	legacy = binary.AppendUvarint(legacy, 20)
	legacy = append(legacy, 0, 0, 0)
	legacy = appendVarint(legacy, 5)
	if err := tf.f.db.Set(uploadKey(UploadID{5}), legacy, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	retry := &ImportCommit{Tenant: "acme", Upload: UploadID{5}, List: 21, Request: [32]byte{1},
		Create: &CreateList{Tenant: "acme", ID: 21, Name: "c", Dedupe: true}}
	if got := tf.apply(retry); !errors.Is(got.Err, ErrUploadListDeleted) {
		t.Fatalf("legacy retry after delete: got %+v %v, want ErrUploadListDeleted", got.Value, got.Err)
	}
}
