package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/coupond/coupond/pool"
)

// testFSM is a state machine on a Pebble folder with its own log index.
type testFSM struct {
	t     testing.TB
	dir   string
	db    *pebble.DB
	f     *FSM
	index uint64
}

func openTestFSM(t testing.TB, dir string) *testFSM {
	t.Helper()
	return openTestFSMWith(t, dir, &pebble.Options{DisableWAL: true, Logger: quietLogger{}})
}

func openTestFSMWith(t testing.TB, dir string, opts *pebble.Options) *testFSM {
	t.Helper()
	db, err := pebble.Open(dir, opts)
	if err != nil {
		t.Fatalf("cannot open pebble: %v", err)
	}
	f, err := New(db)
	if err != nil {
		t.Fatalf("cannot load fsm: %v", err)
	}
	tf := &testFSM{t: t, dir: dir, db: db, f: f, index: f.AppliedIndex()}
	t.Cleanup(func() { tf.close() })
	return tf
}

func newTestFSM(t testing.TB) *testFSM { return openTestFSM(t, t.TempDir()) }

func (tf *testFSM) close() {
	if tf.db != nil {
		tf.db.Flush()
		tf.db.Close()
		tf.db = nil
	}
}

// reopen closes and opens the same folder, as a restart does.
func (tf *testFSM) reopen() *testFSM {
	tf.close()
	return openTestFSM(tf.t, tf.dir)
}

func (tf *testFSM) apply(c Command) *Response {
	tf.t.Helper()
	tf.index++
	return tf.f.ApplyCommand(tf.index, Encode(c))
}

func (tf *testFSM) mustApply(c Command) any {
	tf.t.Helper()
	r := tf.apply(c)
	if r.Err != nil {
		tf.t.Fatalf("apply %T: %v", c, r.Err)
	}
	return r.Value
}

func block(codes ...string) CodeBlock {
	var b CodeBlock
	for _, c := range codes {
		b = b.AppendCode([]byte(c))
	}
	return b
}

// importCodes stages codes in chunks of chunk codes and commits them.
func (tf *testFSM) importCodes(tenant string, list uint64, upload byte, chunk int, codes ...string) ImportResult {
	tf.t.Helper()
	id := UploadID{upload}
	n := uint32(0)
	for i := 0; i < len(codes); i += chunk {
		end := min(i+chunk, len(codes))
		tf.mustApply(&ImportChunk{Tenant: tenant, Upload: id, Chunk: n, Codes: block(codes[i:end]...)})
		n++
	}
	return tf.mustApply(&ImportCommit{Tenant: tenant, Upload: id, Chunks: n, List: list}).(ImportResult)
}

func (tf *testFSM) setup() {
	tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme", At: 1})
	tf.mustApply(&CreateList{Tenant: "acme", ID: 7, Name: "spring", Dedupe: true, At: 2})
}

func counts(t *testing.T, f *FSM, tenant string, id uint64) [4]uint64 {
	t.Helper()
	v, ok := f.List(tenant, id)
	if !ok {
		t.Fatalf("list %d of %s not found", id, tenant)
	}
	return [4]uint64{v.Added, v.Available, v.Used, v.Withdrawn}
}

func TestCommandRoundTrip(t *testing.T) {
	cmds := []Command{
		&CreateTenant{ID: "acme", Name: "Acme Inc", At: 123},
		&CreateToken{ID: "tok_1", Tenant: "acme", Role: RoleSender, Name: "engine", Hash: [32]byte{1, 2}, At: -5},
		&RevokeToken{ID: "tok_1"},
		&CreateList{Tenant: "acme", ID: 1 << 63, Name: "x", Dedupe: true, Threshold: 10, At: 9},
		&UpdateList{Tenant: "acme", ID: 3, SetName: true, Name: "y", SetThreshold: true, Threshold: 0},
		&DeleteList{Tenant: "acme", ID: 3},
		&ImportChunk{Tenant: "acme", Upload: UploadID{9}, Chunk: 4, Codes: block("A", "BB", "é"), At: 1},
		&ImportChunk{Tenant: "acme", Upload: UploadID{9}, Chunk: 0, Codes: block("A"), At: 1, NewList: true, Expect: 5_000_000},
		&ImportCommit{Tenant: "acme", Upload: UploadID{9}, Chunks: 5, List: 3, At: 2},
		&ImportCommit{Tenant: "acme", Upload: UploadID{9}, Chunks: 5, List: 3, At: 2,
			Create: &CreateList{Tenant: "acme", ID: 3, Name: "z", Dedupe: false}},
		&ImportAbort{Upload: UploadID{1, 2, 3}},
		&Withdraw{Tenant: "acme", List: 3, Codes: block("A")},
	}
	for _, c := range cmds {
		got, err := Decode(Encode(c))
		if err != nil {
			t.Fatalf("decode %T: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of %T: got %+v, want %+v", c, got, c)
		}
	}
}

func TestDecodeRefusesCorruptEntries(t *testing.T) {
	good := Encode(&CreateList{Tenant: "acme", ID: 5, Name: "n", At: 1})
	f := func(name string, data []byte) {
		t.Helper()
		if _, err := Decode(data); !errors.Is(err, errCorrupt) {
			t.Fatalf("%s: want errCorrupt, got %v", name, err)
		}
	}
	f("empty", nil)
	f("type only", good[:1])
	f("unknown type", append([]byte{200}, good[1:]...))
	f("newer version", append([]byte{good[0], 2}, good[2:]...))
	f("truncated", good[:len(good)-1])
	f("trailing byte", append(append([]byte{}, good...), 0))
	f("bad code block", Encode(&Withdraw{Tenant: "a", List: 1, Codes: CodeBlock{5, 'a'}}))
	f("zero-length code", Encode(&Withdraw{Tenant: "a", List: 1, Codes: CodeBlock{0}}))
}

// decodeSeeds are encoded commands for the decoder's fuzz run and its
// mutation test to start from.
func decodeSeeds() [][]byte {
	return [][]byte{
		Encode(&ImportChunk{Tenant: "acme", Upload: UploadID{9}, Chunk: 4, Codes: block("A", "BB")}),
		Encode(&ImportCommit{Tenant: "a", Create: &CreateList{Tenant: "a", ID: 1}}),
		Encode(&CreateToken{ID: "t", Role: RoleAdmin}),
		Encode(&Allocate{Tenant: "t", Send: "s", Message: "m", Recipients: RecipientBlock(nil).AppendRecipient([]byte("r1")), At: 300}),
		Encode(&AckAlerts{IDs: []uint64{1, 200, 1 << 40}}),
		Encode(&Batch{Commands: [][]byte{Encode(&CloseSend{Tenant: "t", Send: "s", At: 9}), Encode(&RevokeToken{ID: "x"})}}),
		Encode(&ImportCommit{Tenant: "a", Create: &CreateList{Tenant: "a", ID: 1, FallbackCode: "FB", HasExpiry: true, ExpiresAt: 1 << 60}}),
		Encode(&UpdateList{Tenant: "a", ID: 3, SetExpiry: true, SetWarnDays: true, WarnDays: 2}),
		Encode(&OpenSend{Tenant: "t", Send: "s", SetOnShortage: true, OnShortage: ShortageFallback}),
		Encode(&Reserve{Tenant: "t", Send: "s", Need: 7, OnShortage: ShortageFallback}),
		Encode(&Release{Tenant: "t", Send: "s", Recipients: RecipientBlock(nil).AppendRecipient([]byte("r1")), At: 5}),
		Encode(&Tick{At: 1 << 50}),
		Encode(&EraseRecipient{Tenant: "t", Recipient: []byte("r1"), Key: [ErasureKeyLen]byte{3}, At: 6}),
	}
}

// decodesToItself: whatever decodes must encode back to the same bytes,
// or two replicas could read one entry two ways.
func decodesToItself(t *testing.T, data []byte) {
	c, err := Decode(data)
	if err != nil {
		return
	}
	if again := Encode(c); !bytes.Equal(again, data) {
		t.Fatalf("re-encoding differs:\n%x\n%x", data, again)
	}
}

// FuzzDecode is the coverage-guided search (make fuzz); go test
// runs it on its seeds and saved findings (testdata/fuzz).
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds() {
		f.Add(s)
	}
	f.Fuzz(decodesToItself)
}

// TestDecodeMutations checks FuzzDecode's property on random mutations of
// the seeds (bytes flipped, cut, inserted, varints stretched): no guidance,
// but no instrumented build of Pebble and Raft either, so make test runs it.
func TestDecodeMutations(t *testing.T) {
	rng := rand.New(rand.NewSource(16))
	seeds := decodeSeeds()
	for range 100_000 {
		b := append([]byte(nil), seeds[rng.Intn(len(seeds))]...)
		for n := 1 + rng.Intn(3); n > 0 && len(b) > 0; n-- {
			i := rng.Intn(len(b))
			switch rng.Intn(4) {
			case 0:
				b[i] ^= byte(1 << rng.Intn(8))
			case 1:
				b = b[:i]
			case 2:
				b = append(b[:i], append([]byte{byte(rng.Intn(256))}, b[i:]...)...)
			case 3: // a varint written long: the non-minimal form Decode refuses
				if b[i] < 0x80 {
					b = append(b[:i], append([]byte{b[i] | 0x80, 0}, b[i+1:]...)...)
				}
			}
		}
		decodesToItself(t, b)
	}
}

func TestImportCountsAndDedupe(t *testing.T) {
	tf := newTestFSM(t)
	tf.setup()
	res := tf.importCodes("acme", 7, 1, 2, "A", "B", "A", "C", "D")
	if want := (ImportResult{List: 7, Imported: 4, Duplicates: 1, Size: 4}); res != want {
		t.Fatalf("first import: got %+v, want %+v", res, want)
	}
	res = tf.importCodes("acme", 7, 2, 10, "D", "E", "E")
	if want := (ImportResult{List: 7, Imported: 1, Duplicates: 2, Size: 5}); res != want {
		t.Fatalf("top-up: got %+v, want %+v", res, want)
	}
	before := tf.f.Digest()
	res = tf.importCodes("acme", 7, 3, 10, "A", "E")
	if want := (ImportResult{List: 7, Imported: 0, Duplicates: 2, Size: 5}); res != want {
		t.Fatalf("known codes only: got %+v, want %+v", res, want)
	}
	if tf.f.Digest() != before {
		t.Fatal("an upload of known codes changed the list")
	}
	if got, want := counts(t, tf.f, "acme", 7), [4]uint64{5, 5, 0, 0}; got != want {
		t.Fatalf("counts: got %v, want %v", got, want)
	}
	// FIFO: codes keep import order.
	p := tf.f.Pools().Get(7)
	var order []string
	for pos := uint32(0); pos < p.Len(); pos++ {
		order = append(order, string(p.Code(pos)))
	}
	if fmt.Sprint(order) != "[A B C D E]" {
		t.Fatalf("order: %v", order)
	}
	// A retried commit answers the first result and changes nothing.
	again := tf.mustApply(&ImportCommit{Tenant: "acme", Upload: UploadID{2}, Chunks: 1, List: 7}).(ImportResult)
	if again.Imported != 1 || again.Duplicates != 2 {
		t.Fatalf("retried commit: %+v", again)
	}
	// Chunks of a committed upload that arrive again (a retried request) change nothing.
	tf.mustApply(&ImportChunk{Tenant: "acme", Upload: UploadID{2}, Chunk: 0, Codes: block("NEW")})
	if tf.f.Digest() != before {
		t.Fatal("a late chunk of a committed upload changed the list")
	}
	// A retried create-and-import names a fresh list id: it gets the first list.
	tf.mustApply(&ImportChunk{Tenant: "acme", Upload: UploadID{9}, Chunk: 0, Codes: block("Q")})
	first := tf.mustApply(&ImportCommit{Tenant: "acme", Upload: UploadID{9}, Chunks: 1, List: 20,
		Create: &CreateList{Tenant: "acme", ID: 20, Name: "n", Dedupe: true}}).(ImportResult)
	retry := tf.mustApply(&ImportCommit{Tenant: "acme", Upload: UploadID{9}, Chunks: 1, List: 21,
		Create: &CreateList{Tenant: "acme", ID: 21, Name: "n", Dedupe: true}}).(ImportResult)
	if first != retry || retry.List != 20 {
		t.Fatalf("retried create-and-import: first %+v, retry %+v", first, retry)
	}
	if _, ok := tf.f.List("acme", 21); ok {
		t.Fatal("a retried create-and-import made a second list")
	}
	// The same upload id for another list is refused.
	if r := tf.apply(&ImportCommit{Tenant: "acme", Upload: UploadID{2}, Chunks: 1, List: 20}); !errors.Is(r.Err, ErrUploadReused) {
		t.Fatalf("upload id reused for another list: got %v", r.Err)
	}
}

func TestImportWithoutDedupe(t *testing.T) {
	tf := newTestFSM(t)
	tf.setup()
	tf.mustApply(&CreateList{Tenant: "acme", ID: 8, Name: "generic", Dedupe: false, At: 3})
	res := tf.importCodes("acme", 8, 1, 2, "SAVE10", "SAVE10", "SAVE10")
	if want := (ImportResult{List: 8, Imported: 3, Size: 3}); res != want {
		t.Fatalf("got %+v, want %+v", res, want)
	}
}

func TestImportIsAllOrNothing(t *testing.T) {
	tf := newTestFSM(t)
	tf.setup()
	before := tf.f.Digest()
	// A commit that names more chunks than were staged fails and drops them.
	tf.mustApply(&ImportChunk{Tenant: "acme", Upload: UploadID{5}, Chunk: 0, Codes: block("A")})
	r := tf.apply(&ImportCommit{Tenant: "acme", Upload: UploadID{5}, Chunks: 2, List: 7})
	if !errors.Is(r.Err, ErrUploadIncomplete) {
		t.Fatalf("want ErrUploadIncomplete, got %v", r.Err)
	}
	// Staged chunks are invisible, listed as pending, and an abort drops them.
	tf.mustApply(&ImportChunk{Tenant: "acme", Upload: UploadID{6}, Chunk: 0, Codes: block("B")})
	if tf.f.Digest() != before {
		t.Fatal("a staged chunk became visible")
	}
	tf.db.Flush()
	if ids, err := tf.f.PendingUploads(); err != nil || len(ids) != 1 || ids[0] != (UploadID{6}) {
		t.Fatalf("pending uploads: %v %v", ids, err)
	}
	tf.mustApply(&ImportAbort{Upload: UploadID{6}})
	r = tf.apply(&ImportCommit{Tenant: "acme", Upload: UploadID{6}, Chunks: 1, List: 7})
	if !errors.Is(r.Err, ErrUploadIncomplete) {
		t.Fatalf("commit after abort: want ErrUploadIncomplete, got %v", r.Err)
	}
	// Create-and-import with a missing chunk creates no list.
	r = tf.apply(&ImportCommit{Tenant: "acme", Upload: UploadID{7}, Chunks: 1, List: 9,
		Create: &CreateList{Tenant: "acme", ID: 9, Name: "new", Dedupe: true}})
	if !errors.Is(r.Err, ErrUploadIncomplete) {
		t.Fatalf("want ErrUploadIncomplete, got %v", r.Err)
	}
	if _, ok := tf.f.List("acme", 9); ok {
		t.Fatal("a failed create-and-import created the list")
	}
	if tf.f.Digest() != before {
		t.Fatal("failed uploads changed the state")
	}
	// Nothing of the failed uploads is left on disk.
	n := 0
	tf.f.scan([]byte{prefixStaged}, func(k, v []byte) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d staged chunks left behind", n)
	}
}

func TestTenantIsolation(t *testing.T) {
	tf := newTestFSM(t)
	tf.setup()
	tf.mustApply(&CreateTenant{ID: "other", Name: "Other"})
	tf.importCodes("acme", 7, 1, 10, "A")
	for _, c := range []Command{
		&UpdateList{Tenant: "other", ID: 7, SetName: true, Name: "mine"},
		&DeleteList{Tenant: "other", ID: 7},
		&Withdraw{Tenant: "other", List: 7, Codes: block("A")},
	} {
		if r := tf.apply(c); !errors.Is(r.Err, ErrNotFound) {
			t.Fatalf("%T across tenants: want ErrNotFound, got %v", c, r.Err)
		}
	}
	tf.mustApply(&ImportChunk{Tenant: "other", Upload: UploadID{2}, Codes: block("X")})
	if r := tf.apply(&ImportCommit{Tenant: "other", Upload: UploadID{2}, Chunks: 1, List: 7}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("import across tenants: want ErrNotFound, got %v", r.Err)
	}
	if _, ok := tf.f.List("other", 7); ok {
		t.Fatal("another tenant sees the list")
	}
}

func TestWithdraw(t *testing.T) {
	tf := newTestFSM(t)
	tf.setup()
	tf.importCodes("acme", 7, 1, 10, "A", "B", "C")
	res := tf.mustApply(&Withdraw{Tenant: "acme", List: 7, Codes: block("A", "Z", "A")}).(WithdrawResult)
	if want := (WithdrawResult{Withdrawn: 2, NotFound: 1}); res != want {
		t.Fatalf("got %+v, want %+v", res, want)
	}
	if got, want := counts(t, tf.f, "acme", 7), [4]uint64{3, 2, 0, 1}; got != want {
		t.Fatalf("counts: got %v, want %v", got, want)
	}
	// A withdrawn code is still in the list: importing it again is a duplicate.
	if r := tf.importCodes("acme", 7, 2, 10, "A"); r.Duplicates != 1 {
		t.Fatalf("re-import of a withdrawn code: %+v", r)
	}
	info, err := tf.f.CodeState("acme", 7, []byte("A"))
	if err != nil || info.State != pool.Withdrawn {
		t.Fatalf("state of A: %+v %v", info, err)
	}
}

func TestDeleteList(t *testing.T) {
	tf := newTestFSM(t)
	tf.setup()
	tf.importCodes("acme", 7, 1, 1, "A", "B")
	tf.mustApply(&Withdraw{Tenant: "acme", List: 7, Codes: block("A")})
	tf.mustApply(&DeleteList{Tenant: "acme", ID: 7})
	if _, ok := tf.f.List("acme", 7); ok {
		t.Fatal("list still there")
	}
	for _, p := range []byte{prefixList, prefixBatch, prefixStaged, prefixUpload, prefixWithdraw} {
		tf.f.scan([]byte{p}, func(k, v []byte) error {
			t.Fatalf("key %q left after delete", k)
			return nil
		})
	}
	tf = tf.reopen()
	if _, ok := tf.f.List("acme", 7); ok {
		t.Fatal("list back after restart")
	}
}

func TestReplayedEntriesAreSkipped(t *testing.T) {
	tf := newTestFSM(t)
	tf.setup()
	data := Encode(&CreateTenant{ID: "late", Name: "Late"})
	tf.f.ApplyCommand(10, data)
	r := tf.f.ApplyCommand(10, data)
	if !errors.Is(r.Err, errAlreadyApplied) {
		t.Fatalf("want errAlreadyApplied, got %v", r.Err)
	}
	if tf.f.AppliedIndex() != 10 {
		t.Fatalf("applied index %d", tf.f.AppliedIndex())
	}
}

// randomStream is a reproducible mix of every command kind, including
// failing ones, retries and repeated codes.
func randomStream(seed int64, n int) [][]byte {
	rng := rand.New(rand.NewSource(seed))
	out := [][]byte{Encode(&CreateTenant{ID: "t1", Name: "T1"}), Encode(&CreateTenant{ID: "t2", Name: "T2"})}
	code := func() string { return fmt.Sprintf("C%03d", rng.Intn(300)) }
	tenants := []string{"t1", "t2"}
	for i := 0; i < n; i++ {
		tenant := tenants[rng.Intn(2)]
		list := uint64(rng.Intn(4) + 1)
		switch rng.Intn(7) {
		case 0:
			out = append(out, Encode(&CreateList{Tenant: tenant, ID: list, Name: "l", Dedupe: rng.Intn(3) > 0, At: int64(i)}))
		case 1, 2, 3:
			up := UploadID{byte(i), byte(i >> 8), 1}
			chunks := uint32(rng.Intn(3))
			for c := uint32(0); c < chunks; c++ {
				var b CodeBlock
				for k := rng.Intn(20) + 1; k > 0; k-- {
					b = b.AppendCode([]byte(code()))
				}
				out = append(out, Encode(&ImportChunk{Tenant: tenant, Upload: up, Chunk: c, Codes: b}))
			}
			commit := Encode(&ImportCommit{Tenant: tenant, Upload: up, Chunks: chunks, List: list, At: int64(i)})
			out = append(out, commit)
			if rng.Intn(4) == 0 {
				out = append(out, commit) // a retried commit
			}
		case 4:
			var b CodeBlock
			for k := rng.Intn(5) + 1; k > 0; k-- {
				b = b.AppendCode([]byte(code()))
			}
			out = append(out, Encode(&Withdraw{Tenant: tenant, List: list, Codes: b}))
		case 5:
			out = append(out, Encode(&UpdateList{Tenant: tenant, ID: list, SetThreshold: true, Threshold: uint64(rng.Intn(50))}))
		case 6:
			if rng.Intn(5) == 0 {
				out = append(out, Encode(&DeleteList{Tenant: tenant, ID: list}))
			}
		}
	}
	return out
}

func TestReplicasReachTheSameDigest(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		stream := randomStream(seed, 300)
		a, b := newTestFSM(t), newTestFSM(t)
		for i, data := range stream {
			a.f.ApplyCommand(uint64(i+1), data)
		}
		// b gets the same log in batches of various sizes, as Raft may deliver it.
		for i := 0; i < len(stream); {
			n := min(1+i%7, len(stream)-i)
			logs := make([]*raftLog, n)
			for k := range logs {
				logs[k] = &raftLog{index: uint64(i + k + 1), data: stream[i+k]}
			}
			b.f.ApplyBatch(toRaftLogs(logs))
			i += n
		}
		if a.f.Digest() != b.f.Digest() {
			t.Fatalf("seed %d: replicas differ", seed)
		}
		// A restart rebuilds the same state from Pebble alone.
		if c := a.reopen(); c.f.Digest() != b.f.Digest() {
			t.Fatalf("seed %d: restart changed the state", seed)
		}
	}
}

func TestSnapshotRestoreGivesTheSameState(t *testing.T) {
	stream := randomStream(42, 400)
	src := newTestFSM(t)
	half := len(stream) / 2
	for i, data := range stream[:half] {
		src.f.ApplyCommand(uint64(i+1), data)
	}
	snap, err := src.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteSnapshot(snap.(*fsmSnapshot).snap, &buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	// Restore into a replica that holds other state: the snapshot replaces it.
	dst := newTestFSM(t)
	dst.setup()
	if err := dst.f.Restore(nopCloser{bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if src.f.Digest() != dst.f.Digest() {
		t.Fatal("snapshot restore differs")
	}
	if sr, err := NewSnapshotReader(bytes.NewReader(buf.Bytes())); err != nil || sr.Applied != uint64(half) {
		t.Fatalf("snapshot header: %+v %v", sr, err)
	}
	if dst.f.AppliedIndex() != uint64(half) {
		t.Fatalf("restored applied index %d, want %d", dst.f.AppliedIndex(), half)
	}
	// Snapshot + the rest of the log == the whole log.
	for i, data := range stream[half:] {
		src.f.ApplyCommand(uint64(half+i+1), data)
		dst.f.ApplyCommand(uint64(half+i+1), data)
	}
	if src.f.Digest() != dst.f.Digest() {
		t.Fatal("snapshot + log differs from the whole log")
	}
	if dst.reopen().f.Digest() != src.f.Digest() {
		t.Fatal("restart after restore differs")
	}
	if err := dst.f.Restore(nopCloser{bytes.NewReader([]byte("garbage"))}); err == nil {
		t.Fatal("restore accepted a bad header")
	}
}
