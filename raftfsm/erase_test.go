package raftfsm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// wantErased is the erased form as SPEC §4 defines it, computed here on its
// own rather than with the code under test.
func wantErased(key [ErasureKeyLen]byte, r string) string {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(r))
	return "erased:" + hex.EncodeToString(m.Sum(nil)[:16])
}

// storeHolds reports whether any key or value of the state holds b.
func storeHolds(t *testing.T, db *pebble.DB, b []byte) bool {
	t.Helper()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if bytes.Contains(it.Key(), b) || bytes.Contains(it.Value(), b) {
			return true
		}
	}
	return false
}

func drained(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// TestEraseRecipient: every assignment of the recipient in its tenant, in
// any send, released or live, drawn or fallback, shows the erased form;
// codes and counts stay; history is empty; the recipient is new afterwards;
// another tenant's recipient of the same bytes is untouched.
func TestEraseRecipient(t *testing.T) {
	const r = "a/b.c%2F@example.com"
	tf := orcFixture(t, 3)
	tf.mustApply(&UpdateList{Tenant: "acme", ID: 7, SetFallback: true, FallbackCode: "FB"})
	// Another tenant with the same recipient.
	tf.mustApply(&CreateTenant{ID: "zeta", Name: "Zeta", At: 1})
	tf.mustApply(&CreateList{Tenant: "zeta", ID: 8, Name: "z", Dedupe: true, At: 2})
	tf.importCodes("zeta", 8, 2, 10, "Z1")
	tf.mustApply(&UpsertMessage{Tenant: "zeta", ID: "msg", Name: "n", CampaignType: "standard", Channel: "email", At: 3})
	tf.mustApply(&AssignList{Tenant: "zeta", Message: "msg", List: 8})
	tf.mustApply(&Allocate{Tenant: "zeta", Send: "s1", Message: "msg", Recipients: orcBlock([]string{r}), At: 4})

	orcAlloc(tf, "s1", 10, r, "x@example.com")                                                    // K00000, K00001
	orcAlloc(tf, "s2", 20, r)                                                                     // K00002
	tf.mustApply(&Release{Tenant: "acme", Send: "s2", Recipients: orcBlock([]string{r}), At: 25}) // K00002 back as a copy
	tf.mustApply(&Allocate{Tenant: "acme", Send: "s3", Message: "msg", Recipients: orcBlock([]string{"y@example.com", r}),
		At: 30, OnShortage: ShortageFallback}) // y: the copy of K00002, r: FB
	before, _ := tf.f.List("acme", 7)
	sends := map[string]*Send{}
	for _, s := range []string{"s1", "s2", "s3"} {
		sends[s], _ = tf.f.Send("acme", s)
	}
	if _, ok := tf.f.ErasedForm("acme", []byte(r)); ok {
		t.Fatal("a tenant that erased nobody has an erased form")
	}
	for !drained(tf.f.ErasuresApplied()) {
	}

	key := [ErasureKeyLen]byte{1, 2, 3}
	if n := tf.mustApply(&EraseRecipient{Tenant: "acme", Recipient: []byte(r), Key: key, At: 40}).(int); n != 3 {
		t.Fatalf("erased %d, want 3", n)
	}
	if drained(tf.f.ErasuresApplied()) {
		t.Fatal("no signal after an erasure")
	}
	erased := wantErased(key, r)
	if got, ok := tf.f.ErasedForm("acme", []byte(r)); !ok || got != erased {
		t.Fatalf("ErasedForm %q %v, want %q", got, ok, erased)
	}

	check := func(when string) {
		t.Helper()
		f := tf.f
		if h, err := f.RecipientHistory("acme", []byte(r)); err != nil || len(h) != 0 {
			t.Fatalf("%s: history %+v %v, want none", when, h, err)
		}
		if h, err := f.RecipientHistory("zeta", []byte(r)); err != nil || len(h) != 1 || h[0].Recipient != r {
			t.Fatalf("%s: the other tenant's history %+v %v", when, h, err)
		}
		var got []string
		for _, s := range []string{"s1", "s2", "s3"} {
			f.EachAssignment("acme", s, func(a *Assignment) error {
				got = append(got, fmt.Sprintf("%s %s %s fallback=%v released=%v", s, a.Recipient, a.Code, a.Fallback, a.ReleasedAt != 0))
				return nil
			})
		}
		want := []string{
			"s1 " + erased + " K00000 fallback=false released=false",
			"s1 x@example.com K00001 fallback=false released=false",
			"s2 " + erased + " K00002 fallback=false released=true",
			"s3 y@example.com K00002 fallback=false released=false",
			"s3 " + erased + " FB fallback=true released=false",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: assignments\n%s\nwant\n%s", when, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// The erased form is no recipient's name: it finds nothing either.
		if h, err := f.RecipientHistory("acme", []byte(erased)); err != nil || len(h) != 0 {
			t.Fatalf("%s: history of the erased form %+v %v, want none", when, h, err)
		}
		if has, _ := f.HasAssignment("acme", "s1", []byte(erased)); has {
			t.Fatalf("%s: the erased form has an assignment in s1", when)
		}
		info, err := f.CodeState("acme", 7, []byte("K00000"))
		if err != nil || info.Assignment == nil || info.Assignment.Recipient != erased || info.Assignment.Send != "s1" {
			t.Fatalf("%s: code lookup %+v %v", when, info.Assignment, err)
		}
	}
	check("after the erasure")
	after, _ := tf.f.List("acme", 7)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("counts changed:\n%+v\n%+v", before, after)
	}
	for id, s := range sends {
		if got, _ := tf.f.Send("acme", id); !reflect.DeepEqual(got, s) {
			t.Fatalf("send %s changed: %+v, was %+v", id, got, s)
		}
	}
	tf = tf.reopen()
	check("after a restart") // the rebuilt index leaves erased entries out
	// Only the other tenant's batch still holds the plain recipient.
	zb, _ := tf.f.readBatch(tf.db, 0)
	if string(zb.Recips[0]) != r {
		t.Fatalf("zeta's batch holds %q", zb.Recips[0])
	}
	if !storeHolds(t, tf.db, []byte(r)) {
		t.Fatal("the scan does not see zeta's assignment")
	}
	tf.mustApply(&EraseRecipient{Tenant: "zeta", Recipient: []byte(r), Key: [ErasureKeyLen]byte{9}, At: 41})
	if storeHolds(t, tf.db, []byte(r)) {
		t.Fatal("the state still holds the plain recipient after both tenants erased it")
	}

	// A second erasure finds nothing, and signals nothing.
	for !drained(tf.f.ErasuresApplied()) {
	}
	if n := tf.mustApply(&EraseRecipient{Tenant: "acme", Recipient: []byte(r), Key: [ErasureKeyLen]byte{7}, At: 50}).(int); n != 0 {
		t.Fatalf("second erasure: %d, want 0", n)
	}
	if !drained(tf.f.ErasuresApplied()) {
		t.Fatal("an erasure of nothing signalled")
	}
	// The recipient is new: a release finds nothing, an allocation draws.
	if rel := tf.mustApply(&Release{Tenant: "acme", Send: "s1", Recipients: orcBlock([]string{r}), At: 55}).(ReleaseResult); rel.NotAssigned != 1 {
		t.Fatalf("release after erasure: %+v", rel)
	}
	tf.importCodes("acme", 7, 3, 10, "K9")
	if res := orcAlloc(tf, "s1", 60, r); res.New != 1 || string(res.Codes[0]) != "K9" {
		t.Fatalf("allocation after erasure: %q new %d, want K9 new", res.Codes[0], res.New)
	}
	// The tenant's first key stays: a later erasure gives the same form.
	if n := tf.mustApply(&EraseRecipient{Tenant: "acme", Recipient: []byte(r), Key: [ErasureKeyLen]byte{8}, At: 70}).(int); n != 1 {
		t.Fatalf("erasure of the new assignment: %d", n)
	}
	info, _ := tf.f.CodeState("acme", 7, []byte("K9"))
	if info.Assignment == nil || info.Assignment.Recipient != erased {
		t.Fatalf("the second erasure used another key: %+v", info.Assignment)
	}

	digest := tf.f.Digest()
	tf = tf.reopen()
	if tf.f.Digest() != digest {
		t.Fatal("a restart changed the digest")
	}
	if got, _ := tf.f.ErasedForm("acme", []byte(r)); got != erased {
		t.Fatalf("after a restart the erased form is %q", got)
	}

	// A restore carries the key and signals (the state it replaced may
	// have held the plain recipient).
	snap, err := tf.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteSnapshot(snap.(*fsmSnapshot).snap, &buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	dst := newTestFSM(t)
	if err := dst.f.Restore(nopCloser{bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if dst.f.Digest() != digest {
		t.Fatal("restore differs")
	}
	if drained(dst.f.ErasuresApplied()) {
		t.Fatal("a restore of a state with erasures did not signal")
	}
	if got, _ := dst.f.ErasedForm("acme", []byte(r)); got != erased {
		t.Fatalf("after a restore the erased form is %q", got)
	}
}

// TestEraseInsideABatch: the applier keeps decoded batches for the
// allocations of one entry; an erasure in the middle must not leave the
// plain recipient there, or the next allocation would find its old code.
func TestEraseInsideABatch(t *testing.T) {
	const r = "r@example.com"
	tf := orcFixture(t, 5)
	orcAlloc(tf, "s1", 10, r) // K00000
	alloc := Encode(&Allocate{Tenant: "acme", Send: "s1", Recipients: orcBlock([]string{r}), At: 20})
	out := tf.mustApply(&Batch{Commands: [][]byte{
		alloc, // a retry: reads and keeps batch 0
		Encode(&EraseRecipient{Tenant: "acme", Recipient: []byte(r), Key: [ErasureKeyLen]byte{1}, At: 21}),
		alloc,
	}}).(*BatchResponse)
	first, erased, second := out.Responses[0].Value.(*AllocResult), out.Responses[1].Value.(int), out.Responses[2].Value.(*AllocResult)
	if string(first.Codes[0]) != "K00000" || first.New != 0 || erased != 1 {
		t.Fatalf("retry %q new %d, erased %d", first.Codes[0], first.New, erased)
	}
	if string(second.Codes[0]) != "K00001" || second.New != 1 {
		t.Fatalf("allocation after the erasure in the same entry: %q new %d, want K00001 new", second.Codes[0], second.New)
	}
	if h, _ := tf.f.RecipientHistory("acme", []byte(r)); len(h) != 1 || h[0].Code != "K00001" {
		t.Fatalf("history %+v", h)
	}
}

func TestEraseUnknownTenant(t *testing.T) {
	tf := newTestFSM(t)
	r := tf.apply(&EraseRecipient{Tenant: "nobody", Recipient: []byte("r"), Key: [ErasureKeyLen]byte{1}})
	if !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", r.Err)
	}
	if storeHolds(t, tf.db, []byte("nobody")) {
		t.Fatal("an erasure for an unknown tenant stored its key")
	}
}

func TestEraseRecipientEncoding(t *testing.T) {
	c := &EraseRecipient{Tenant: "acme", Recipient: []byte("r@x"), Key: [ErasureKeyLen]byte{1, 31: 2}, At: -5}
	data := Encode(c)
	back, err := Decode(data)
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("decoded %+v %v", back, err)
	}
	if data[0] != 24 || data[1] != 1 {
		t.Fatalf("type %d version %d", data[0], data[1])
	}
	for name, bad := range map[string]*EraseRecipient{
		"empty recipient":    {Tenant: "a", Recipient: []byte{}},
		"recipient too long": {Tenant: "a", Recipient: bytes.Repeat([]byte("r"), MaxRecipientLen+1)},
	} {
		if _, err := Decode(Encode(bad)); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want errCorrupt", name, err)
		}
	}
	if _, err := Decode(data[:len(data)-2]); !errors.Is(err, errCorrupt) {
		t.Errorf("truncated: %v", err)
	}
}

// TestErasedBatchRecord: a batch with erased entries is stored as version
// 3 (4 when fallback), with the erased indexes after its pairs; a batch
// without keeps its bytes; the decoder refuses what the encoder never writes.
func TestErasedBatchRecord(t *testing.T) {
	b := &assignBatch{Send: 1, List: 7, At: 5, FirstSeq: 3, Runs: []posRun{{0, 3}},
		Recips: [][]byte{[]byte("erased:00"), []byte("r2"), []byte("erased:11")}, Codes: [][]byte{{'A'}, {'B'}, {'C'}},
		Erased: []uint32{0, 2}}
	v := b.marshal(nil)
	if v[0] != 3 {
		t.Fatalf("version %d, want 3", v[0])
	}
	if !bytes.HasSuffix(v, []byte{2, 0, 1}) {
		t.Fatalf("erased section of %x: want count 2, index 0, gap 1", v)
	}
	back, err := unmarshalBatch(v)
	if err != nil || !reflect.DeepEqual(back, b) {
		t.Fatalf("decoded %+v %v", back, err)
	}
	if !back.erased(0) || back.erased(1) || !back.erased(2) {
		t.Fatal("erased() disagrees with Erased")
	}
	fb := &assignBatch{Send: 1, List: 7, Runs: []posRun{}, Recips: [][]byte{[]byte("e")}, Codes: [][]byte{{'F'}}, Fallback: true, Erased: []uint32{0}}
	if v := fb.marshal(nil); v[0] != 4 {
		t.Fatalf("fallback erased batch version %d, want 4", v[0])
	} else if back, err := unmarshalBatch(v); err != nil || !reflect.DeepEqual(back, fb) {
		t.Fatalf("decoded %+v %v", back, err)
	}
	plain := *b
	plain.Erased = nil
	if v := plain.marshal(nil); v[0] != 1 {
		t.Fatalf("a batch without erasures is version %d", v[0])
	}
	base := plain.marshal(nil)
	for name, bad := range map[string][]byte{
		"no erased entries": append(append([]byte{3}, base[1:]...), 0),
		"index past them":   append(append([]byte{3}, base[1:]...), 1, 3),
		"gap past them":     append(append([]byte{3}, base[1:]...), 2, 1, 1),
		"version 5":         append([]byte{5}, base[1:]...),
	} {
		if _, err := unmarshalBatch(bad); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want errCorrupt", name, err)
		}
	}
}
