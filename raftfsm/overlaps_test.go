package raftfsm

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"testing"
)

// ovCode is code i of TestOverlapsMillion's code space.
func ovCode(i int) string { return fmt.Sprintf("OV-%09d", i) }

// importList creates list id of acme and imports codes into it in chunks of
// 70,000 (about 1 MiB, as httpapi stages them), as a create-and-import.
func (tf *testFSM) importList(id uint64, name string, upload byte, codes []string) ImportResult {
	tf.t.Helper()
	up := UploadID{upload, byte(id)}
	var n uint32
	for i := 0; i < len(codes); i += 70_000 {
		var blk CodeBlock
		for _, c := range codes[i:min(i+70_000, len(codes))] {
			blk = blk.AppendCode([]byte(c))
		}
		tf.mustApply(&ImportChunk{Tenant: "acme", Upload: up, Chunk: n, Codes: blk, NewList: true})
		n++
	}
	return tf.mustApply(&ImportCommit{Tenant: "acme", Upload: up, Chunks: n, List: id,
		Create: &CreateList{Tenant: "acme", ID: id, Name: name, Dedupe: true}}).(ImportResult)
}

// TestOverlapsMillion is acceptance d): three lists of 1,000,000 codes
// with known overlaps, exact counts and examples both ways, and the
// in_other_lists of each import, also when its commit is retried.
//
//	A = 0 .. N-1                                 in order
//	B = N*7/10 .. N*17/10-1                      in reverse order
//	C = 0, 4, 8, .. 4(N/4-1), then 2N .. 2N+N*3/4-1
//
// So A∩B = [0.7N, N) (0.3N codes), A∩C = the multiples of 4 below N
// (N/4), B∩C = the multiples of 4 in [0.7N, N) (0.075N).
func TestOverlapsMillion(t *testing.T) {
	n := overlapCodes
	tf := newTestFSM(t)
	tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme"})
	tf.mustApply(&CreateTenant{ID: "other", Name: "Other"})
	var a, b, c []string
	for i := range n {
		a = append(a, ovCode(i))
	}
	for i := n*17/10 - 1; i >= n*7/10; i-- {
		b = append(b, ovCode(i))
	}
	for k := range n / 4 {
		c = append(c, ovCode(4*k))
	}
	for i := range n * 3 / 4 {
		c = append(c, ovCode(2*n+i))
	}
	if len(a) != n || len(b) != n || len(c) != n {
		t.Fatalf("lists of %d, %d, %d codes", len(a), len(b), len(c))
	}
	// Another tenant holds every code of A: it must count nowhere.
	tf.mustApply(&CreateList{Tenant: "other", ID: 99, Name: "theirs", Dedupe: true})
	tf.importCodes("other", 99, 9, 70_000, a...)

	if r := tf.importList(1, "A", 1, a); r.Imported != uint64(n) || r.InOtherLists != 0 {
		t.Fatalf("import A: %+v", r)
	}
	if r := tf.importList(2, "B", 2, b); r.Imported != uint64(n) || r.InOtherLists != uint64(n*3/10) {
		t.Fatalf("import B: %+v, want in_other_lists %d", r, n*3/10)
	}
	rc := tf.importList(3, "C", 3, c)
	// C's multiples of 4 below N are all in A (those in B too): one count each.
	if rc.Imported != uint64(n) || rc.InOtherLists != uint64(n/4) {
		t.Fatalf("import C: %+v, want in_other_lists %d", rc, n/4)
	}

	codes := func(is ...int) []string {
		out := make([]string, len(is))
		for k, i := range is {
			out[k] = ovCode(i)
		}
		return out
	}
	hi := n - 1 // B starts at its highest code
	m := n * 7 / 10
	want := map[uint64][]Overlap{
		1: {{List: 2, Name: "B", Codes: uint64(n * 3 / 10), Examples: codes(m, m+1, m+2, m+3, m+4)},
			{List: 3, Name: "C", Codes: uint64(n / 4), Examples: codes(0, 4, 8, 12, 16)}},
		// B's order is descending: its first shared codes are its first codes.
		2: {{List: 1, Name: "A", Codes: uint64(n * 3 / 10), Examples: codes(hi, hi-1, hi-2, hi-3, hi-4)},
			{List: 3, Name: "C", Codes: uint64(n * 3 / 40), Examples: codes(hi-3, hi-7, hi-11, hi-15, hi-19)}},
		3: {{List: 1, Name: "A", Codes: uint64(n / 4), Examples: codes(0, 4, 8, 12, 16)},
			{List: 2, Name: "B", Codes: uint64(n * 3 / 40), Examples: codes(m, m+4, m+8, m+12, m+16)}},
	}
	if hi%4 != 3 {
		t.Fatalf("test set-up: N-1 = %d must be 3 mod 4", hi)
	}
	for id, w := range want {
		got, err := tf.f.Overlaps("acme", id)
		if err != nil || !reflect.DeepEqual(got, w) {
			t.Fatalf("Overlaps(%d) = %+v, %v\nwant %+v", id, got, err, w)
		}
	}
	if got, err := tf.f.Overlaps("acme", 99); err != ErrNotFound || got != nil {
		t.Fatalf("another tenant's list: %v, %v", got, err)
	}
	if got, err := tf.f.Overlaps("other", 99); err != nil || len(got) != 0 {
		t.Fatalf("the other tenant's only list: %v, %v", got, err)
	}

	// A retried commit answers the stored result, even after a restart and
	// with A gone (so C's codes stand in B only, 0.075N of them now).
	tf.mustApply(&DeleteList{Tenant: "acme", ID: 1})
	tf = tf.reopen()
	up := UploadID{3, 3}
	again := tf.mustApply(&ImportCommit{Tenant: "acme", Upload: up, Chunks: uint32((n + 69_999) / 70_000), List: 3,
		Create: &CreateList{Tenant: "acme", ID: 4, Name: "C", Dedupe: true}}).(ImportResult)
	if again != rc {
		t.Fatalf("retried commit answered %+v, first %+v", again, rc)
	}
	got, _ := tf.f.Overlaps("acme", 3)
	if len(got) != 1 || got[0].List != 2 || got[0].Codes != uint64(n*3/40) {
		t.Fatalf("after deleting A, Overlaps(C) = %+v", got)
	}
}

// TestOverlapsMatchBruteForce compares the report and in_other_lists with
// sets built in the test, on random lists of very different sizes (so both
// sides of a pair are walked), without dedupe and with withdrawn,
// assigned and released (copied) codes.
func TestOverlapsMatchBruteForce(t *testing.T) {
	rng := rand.New(rand.NewSource(18))
	tf := newTestFSM(t)
	tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme"})
	type list struct {
		id     uint64
		dedupe bool
		order  []string // first occurrences in order
		set    map[string]bool
	}
	var lists []*list
	upload := byte(1)
	for k, size := range []int{3, 40, 500, 9000, 70_000, 150_000} {
		l := &list{id: uint64(k + 1), dedupe: k%3 != 1, set: map[string]bool{}}
		tf.mustApply(&CreateList{Tenant: "acme", ID: l.id, Name: fmt.Sprint("L", k), Dedupe: l.dedupe})
		// Two uploads: a top-up into a list that has codes takes the other path.
		for part := range 2 {
			var up []string
			for range size / 2 {
				up = append(up, fmt.Sprintf("R%d", rng.Intn(200_000)))
			}
			// in_other_lists by hand: added codes (each position, for a list
			// without dedupe) that another list holds.
			var want uint64
			seen := map[string]bool{}
			for _, c := range up {
				if l.dedupe && (l.set[c] || seen[c]) {
					continue
				}
				seen[c] = true
				for _, o := range lists {
					if o.set[c] {
						want++
						break
					}
				}
			}
			res := tf.importCodes("acme", l.id, upload, 20_000, up...)
			upload++
			if res.InOtherLists != want {
				t.Fatalf("list %d part %d: in_other_lists %d, want %d", l.id, part, res.InOtherLists, want)
			}
			for _, c := range up {
				if !l.set[c] {
					l.set[c] = true
					l.order = append(l.order, c)
				}
			}
		}
		lists = append(lists, l)
	}
	// States do not matter: withdraw some, hand out some, release one.
	tf.mustApply(&Withdraw{Tenant: "acme", List: 5, Codes: block(lists[4].order[:50]...)})
	tf.mustApply(&UpsertMessage{Tenant: "acme", ID: "m", Name: "m", Campaign: "c", CampaignType: "standard", Channel: "email"})
	tf.mustApply(&AssignList{Tenant: "acme", Message: "m", List: 6})
	tf.mustApply(&Allocate{Tenant: "acme", Send: "s", Message: "m", Recipients: recipientBlock("r", 1, 3), At: 5})
	tf.mustApply(&Release{Tenant: "acme", Send: "s", Recipients: recipientBlock("r", 1, 1), At: 6})

	for _, a := range lists {
		got, err := tf.f.Overlaps("acme", a.id)
		if err != nil {
			t.Fatal(err)
		}
		var want []Overlap
		for _, b := range lists {
			if b == a {
				continue
			}
			o := Overlap{List: b.id, Name: fmt.Sprint("L", b.id-1)}
			for _, c := range a.order {
				if b.set[c] {
					o.Codes++
					if len(o.Examples) < MaxOverlapExamples {
						o.Examples = append(o.Examples, c)
					}
				}
			}
			if o.Codes > 0 {
				want = append(want, o)
			}
		}
		slices.SortStableFunc(want, func(x, y Overlap) int {
			if x.Codes != y.Codes {
				return int(int64(y.Codes) - int64(x.Codes))
			}
			return int(int64(x.List) - int64(y.List))
		})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Overlaps(%d):\n got %+v\nwant %+v", a.id, got, want)
		}
	}
}

// TestUploadRecordInOtherLists: the count takes record version 3 only when
// it is not zero, so every other record keeps its version 2 bytes, and a
// version 3 record without a count (one encoding per value) is refused.
func TestUploadRecordInOtherLists(t *testing.T) {
	u := &uploadRecord{Tenant: "acme", Committed: true, List: 7,
		Result: ImportResult{List: 7, Imported: 5, Duplicates: 1, Size: 9}, At: 5, Request: [32]byte{3}}
	v2 := u.marshal()
	if v2[0] != 2 {
		t.Fatalf("a record without in_other_lists is version %d", v2[0])
	}
	u.Result.InOtherLists = 4
	v3 := u.marshal()
	if v3[0] != 3 || string(v3[1:len(v2)]) != string(v2[1:]) || len(v3) != len(v2)+1 {
		t.Fatalf("version 3 is not version 2 plus the count: %x vs %x", v3, v2)
	}
	got, err := unmarshalUpload(v3)
	if err != nil || !reflect.DeepEqual(got, u) {
		t.Fatalf("round trip: %+v %v, want %+v", got, err, u)
	}
	zero := append(append([]byte{3}, v2[1:]...), 0)
	if _, err := unmarshalUpload(zero); err == nil {
		t.Fatal("a version 3 record with a zero count was read")
	}
	if _, err := unmarshalUpload(append([]byte{4}, v3[1:]...)); err == nil {
		t.Fatal("a version 4 record was read")
	}
}
