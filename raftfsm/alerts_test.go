package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// applyAppendedAt applies c as an entry the leader appended at appended.
func (tf *testFSM) applyAppendedAt(c Command, appended time.Time) *Response {
	tf.t.Helper()
	tf.index++
	return tf.f.ApplyBatch([]*raft.Log{{Index: tf.index, Type: raft.LogCommand, Data: Encode(c), AppendedAt: appended}})[0].(*Response)
}

func recipientBlock(prefix string, from, n int) RecipientBlock {
	var b RecipientBlock
	for i := from; i < from+n; i++ {
		b = b.AppendRecipient(fmt.Appendf(nil, "%s%d", prefix, i))
	}
	return b
}

func codeNames(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, from+i)
	}
	return out
}

// alertSetup makes tenant acme, list 7 "spring" with threshold 5 and 10
// codes (C0000..C0009), and message m with the list.
func alertSetup(tf *testFSM) {
	tf.t.Helper()
	tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme", At: 1})
	tf.mustApply(&CreateList{Tenant: "acme", ID: 7, Name: "spring", Dedupe: true, Threshold: 5, At: 2})
	tf.importCodes("acme", 7, 1, 4, codeNames("C", 0, 10)...)
	tf.mustApply(&UpsertMessage{Tenant: "acme", ID: "m", Name: "M", CampaignType: "standard", Channel: "email", At: 3})
	tf.mustApply(&AssignList{Tenant: "acme", Message: "m", List: 7})
}

func (tf *testFSM) allocate(send string, from, n int, at int64) *AllocResult {
	tf.t.Helper()
	return tf.mustApply(&Allocate{Tenant: "acme", Send: send, Message: "m", Recipients: recipientBlock("r", from, n), At: at}).(*AllocResult)
}

func pendingIDs(f *FSM) []uint64 {
	var ids []uint64
	for _, a := range f.PendingAlerts() {
		ids = append(ids, a.ID)
	}
	return ids
}

// TestLowStockCrossings drives one list across its threshold by every kind
// of command that can lower what it has available, with the re-arming
// commands in between: one alert per crossing, none while it stays low.
func TestLowStockCrossings(t *testing.T) {
	tf := newTestFSM(t)
	alertSetup(tf)
	if got := tf.f.PendingAlerts(); len(got) != 0 {
		t.Fatalf("alerts before any crossing: %+v", got)
	}
	want := []Alert{}
	check := func(what string, newAlert *Alert) {
		t.Helper()
		if newAlert != nil {
			newAlert.ID = uint64(len(want) + 1)
			newAlert.Tenant, newAlert.List = "acme", 7
			want = append(want, *newAlert)
		}
		got := tf.f.PendingAlerts()
		if len(got) == 0 {
			got = []Alert{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: outbox\n%+v\nwant\n%+v", what, got, want)
		}
		if tf.f.LastAlertID() != uint64(len(want)) {
			t.Fatalf("%s: last alert id %d, want %d", what, tf.f.LastAlertID(), len(want))
		}
	}

	// 10 -> 5: at the threshold, not below it.
	tf.allocate("s1", 0, 5, 100)
	check("down to the threshold", nil)
	// 5 -> 4: the crossing, by an allocation.
	if r := tf.allocate("s1", 5, 1, 101); r.Available != 4 {
		t.Fatalf("available %d after the crossing", r.Available)
	}
	check("allocation crossing", &Alert{ListName: "spring", Threshold: 5, Available: 4, At: 101})
	// Further down: still low, nothing new.
	tf.allocate("s1", 6, 2, 102)
	tf.allocate("s1", 6, 2, 103) // a retry that takes nothing
	check("allocations below", nil)

	// A top-up re-arms it (2 -> 7); a reservation crosses again (7 -> 4).
	tf.importCodes("acme", 7, 2, 10, codeNames("C", 10, 5)...)
	check("top-up", nil)
	tf.mustApply(&OpenSend{Tenant: "acme", Send: "s2", Message: "m", HasExpected: true, Expected: 3, At: 104})
	check("reservation crossing", &Alert{ListName: "spring", Threshold: 5, Available: 4, At: 104})
	// Drawing the held codes changes nothing that readers see as available.
	tf.allocate("s2", 100, 3, 105)
	check("allocation from a hold", nil)

	// A top-up re-arms it (4 -> 8); a withdrawal crosses (8 -> 4). Withdraw
	// carries no time: the alert has the time its entry was appended.
	tf.importCodes("acme", 7, 3, 10, codeNames("C", 15, 4)...)
	appended := time.Unix(0, 1_000_000_123)
	r := tf.applyAppendedAt(&Withdraw{Tenant: "acme", List: 7, Codes: block(codeNames("C", 15, 4)...)}, appended)
	if r.Err != nil || r.Value.(WithdrawResult).Withdrawn != 4 {
		t.Fatalf("withdraw: %+v", r)
	}
	check("withdrawal crossing", &Alert{ListName: "spring", Threshold: 5, Available: 4, At: appended.UnixNano()})

	// Threshold 0 turns the flag off (re-armed); a threshold raised above
	// what is available is a crossing too. A rename alone is not.
	tf.applyAppendedAt(&UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: 0}, appended.Add(time.Second))
	check("threshold off", nil)
	tf.applyAppendedAt(&UpdateList{Tenant: "acme", ID: 7, SetName: true, Name: "summer"}, appended.Add(2*time.Second))
	check("rename", nil)
	tf.applyAppendedAt(&UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: 10}, appended.Add(3*time.Second))
	check("threshold raised", &Alert{ListName: "summer", Threshold: 10, Available: 4, At: appended.Add(3 * time.Second).UnixNano()})
	tf.applyAppendedAt(&UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: 8}, appended.Add(4*time.Second))
	check("threshold lowered, still low", nil)

	// A closed send gives its hold back (no hold left here); a lower
	// threshold re-arms it, an allocation crosses again.
	tf.mustApply(&CloseSend{Tenant: "acme", Send: "s2", At: 106})
	tf.applyAppendedAt(&UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: 3}, appended.Add(5*time.Second))
	check("threshold below available", nil)
	tf.allocate("s1", 200, 2, 107)
	check("allocation crossing again", &Alert{ListName: "summer", Threshold: 3, Available: 2, At: 107})

	// A restart rebuilds the outbox and the sequence from Pebble.
	tf = tf.reopen()
	check("after a restart", nil)
}

// TestListCreatedBelowItsThresholdNeverCrossed: a list that starts below its
// threshold has not crossed it; it alerts once it has been above it.
func TestListCreatedBelowItsThresholdNeverCrossed(t *testing.T) {
	tf := newTestFSM(t)
	tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme", At: 1})
	// Created and imported in one step, below the threshold.
	tf.mustApply(&ImportChunk{Tenant: "acme", Upload: UploadID{1}, Codes: block("A", "B", "C")})
	tf.mustApply(&ImportCommit{Tenant: "acme", Upload: UploadID{1}, Chunks: 1, List: 9, At: 2,
		Create: &CreateList{Tenant: "acme", ID: 9, Name: "small", Dedupe: true, Threshold: 5, At: 2}})
	tf.mustApply(&CreateList{Tenant: "acme", ID: 10, Name: "empty", Dedupe: true, Threshold: 5, At: 3})
	tf.importCodes("acme", 10, 2, 10, "X", "Y")
	if got := tf.f.PendingAlerts(); len(got) != 0 {
		t.Fatalf("alerts of lists that never crossed: %+v", got)
	}
	// Deleting a list is no crossing either.
	tf.mustApply(&DeleteList{Tenant: "acme", ID: 10})
	if got := tf.f.PendingAlerts(); len(got) != 0 {
		t.Fatalf("alerts after a delete: %+v", got)
	}
}

// TestAckAlerts: acknowledged alerts leave the outbox, a repeated or unknown
// id is ignored, and ids are never reused, even once the outbox is empty.
func TestAckAlerts(t *testing.T) {
	tf := newTestFSM(t)
	alertSetup(tf)
	cross := func(i int) { // re-arm with a threshold of 1, cross with 1000
		tf.applyAppendedAt(&UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: 1}, time.Unix(int64(i), 0))
		tf.applyAppendedAt(&UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: 1000}, time.Unix(int64(i), 1))
	}
	for i := range 4 {
		cross(i)
	}
	if got := pendingIDs(tf.f); !reflect.DeepEqual(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("pending %v", got)
	}
	before := tf.f.Digest()
	if n := tf.mustApply(&AckAlerts{IDs: []uint64{3, 1, 99, 3}}).(int); n != 2 {
		t.Fatalf("ack removed %d, want 2", n)
	}
	if tf.f.Digest() == before {
		t.Fatal("the digest does not cover the outbox")
	}
	if got := pendingIDs(tf.f); !reflect.DeepEqual(got, []uint64{2, 4}) {
		t.Fatalf("pending after ack %v", got)
	}
	// A repeated acknowledgement (a new leader acks again) changes nothing.
	before = tf.f.Digest()
	if n := tf.mustApply(&AckAlerts{IDs: []uint64{1, 3}}).(int); n != 0 {
		t.Fatalf("repeated ack removed %d", n)
	}
	if tf.f.Digest() != before {
		t.Fatal("a repeated ack changed the state")
	}
	tf.mustApply(&AckAlerts{IDs: []uint64{2, 4}})
	if got := tf.f.PendingAlerts(); len(got) != 0 {
		t.Fatalf("pending after acking all: %+v", got)
	}
	var n int
	tf.f.scan([]byte{prefixAlert}, func(k, v []byte) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d alert keys left in Pebble", n)
	}
	tf = tf.reopen()
	cross(9)
	if got := pendingIDs(tf.f); !reflect.DeepEqual(got, []uint64{5}) {
		t.Fatalf("an id after an empty outbox and a restart: %v, want [5]", got)
	}
}

// TestAlertOutboxIsBounded: at MaxPendingAlerts the outbox is full; one more
// alert drops the oldest pending alert of its own list, or the oldest of
// all when its list has none pending.
func TestAlertOutboxIsBounded(t *testing.T) {
	tf := newTestFSM(t)
	alertSetup(tf)
	tf.mustApply(&CreateList{Tenant: "acme", ID: 8, Name: "other", Dedupe: true, At: 4})
	tf.importCodes("acme", 8, 9, 10, codeNames("O", 0, 10)...)
	toggle := func(list uint64) [][]byte {
		return [][]byte{
			Encode(&UpdateList{Tenant: "acme", ID: list, SetThreshold: true, Threshold: 1}),
			Encode(&UpdateList{Tenant: "acme", ID: list, SetThreshold: true, Threshold: 1000}),
		}
	}
	// List 8 crosses first (alert 1), then list 7 fills the outbox, in
	// batches of many commands per entry.
	tf.mustApply(&Batch{Commands: toggle(8)})
	for sent := 1; sent < MaxPendingAlerts; {
		var cmds [][]byte
		for ; sent < MaxPendingAlerts && len(cmds) < 1000; sent++ {
			cmds = append(cmds, toggle(7)...)
		}
		tf.mustApply(&Batch{Commands: cmds})
	}
	got := tf.f.PendingAlerts()
	if len(got) != MaxPendingAlerts || got[0].ID != 1 || got[0].List != 8 || got[len(got)-1].ID != MaxPendingAlerts {
		t.Fatalf("full outbox: %d alerts, first %+v, last %+v", len(got), got[0], got[len(got)-1])
	}
	// One past the limit, list 7 again: its own oldest (id 2) goes.
	tf.mustApply(&Batch{Commands: toggle(7)})
	ids := pendingIDs(tf.f)
	if len(ids) != MaxPendingAlerts || ids[0] != 1 || ids[1] != 3 || ids[len(ids)-1] != MaxPendingAlerts+1 {
		t.Fatalf("after one more of list 7: %d alerts, %v ... %v", len(ids), ids[:3], ids[len(ids)-1])
	}
	// List 8 has alert 1 pending: that one goes for its new alert.
	tf.mustApply(&Batch{Commands: toggle(8)})
	ids = pendingIDs(tf.f)
	if len(ids) != MaxPendingAlerts || ids[0] != 3 || ids[len(ids)-1] != MaxPendingAlerts+2 {
		t.Fatalf("after one more of list 8: %d alerts, %v ... %v", len(ids), ids[:3], ids[len(ids)-1])
	}
	// A third list with nothing pending: the oldest of all (3, of list 7) goes.
	tf.mustApply(&CreateList{Tenant: "acme", ID: 11, Name: "third", Dedupe: true, At: 5})
	tf.importCodes("acme", 11, 10, 10, "T1", "T2")
	tf.mustApply(&Batch{Commands: toggle(11)})
	ids = pendingIDs(tf.f)
	if len(ids) != MaxPendingAlerts || ids[0] != 4 || ids[len(ids)-1] != MaxPendingAlerts+3 {
		t.Fatalf("after one of a third list: %d alerts, %v ... %v", len(ids), ids[:3], ids[len(ids)-1])
	}
	var n int
	tf.f.scan([]byte{prefixAlert}, func(k, v []byte) error { n++; return nil })
	if n != MaxPendingAlerts {
		t.Fatalf("%d alert keys in Pebble, want %d", n, MaxPendingAlerts)
	}
	if got, want := tf.reopen().f.PendingAlerts(), tf.f.PendingAlerts(); !reflect.DeepEqual(got, want) {
		t.Fatal("the full outbox differs after a restart")
	}
}

// alertLog is a log with crossings by every cause and acknowledgements,
// with the leader's append times.
func alertLog(t *testing.T) []*raft.Log {
	var cmds []Command
	for i := range 8 {
		cmds = append(cmds,
			&Allocate{Tenant: "acme", Send: fmt.Sprintf("s%d", i), Message: "m", Recipients: recipientBlock("r", 0, 6), At: int64(200 + i)},
			&Withdraw{Tenant: "acme", List: 7, Codes: block(fmt.Sprintf("C%04d", 20+i))},
			&OpenSend{Tenant: "acme", Send: fmt.Sprintf("h%d", i), Message: "m", HasExpected: true, Expected: 2, At: int64(300 + i)},
			&UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: uint64(20 + 4*(i%3))},
			&AckAlerts{IDs: []uint64{uint64(i / 2)}},
		)
		chunk := &ImportChunk{Tenant: "acme", Upload: UploadID{byte(10 + i)}, Codes: block(codeNames(fmt.Sprintf("T%d-", i), 0, 5)...)}
		cmds = append(cmds, chunk, &ImportCommit{Tenant: "acme", Upload: chunk.Upload, Chunks: 1, List: 7, At: int64(400 + i)})
		cmds = append(cmds, &CloseSend{Tenant: "acme", Send: fmt.Sprintf("h%d", i), At: int64(500 + i)})
	}
	// The entries of alertSetup first, then these.
	var logs []*raft.Log
	setup := []Command{
		&CreateTenant{ID: "acme", Name: "Acme", At: 1},
		&CreateList{Tenant: "acme", ID: 7, Name: "spring", Dedupe: true, Threshold: 22, At: 2},
		&ImportChunk{Tenant: "acme", Upload: UploadID{1}, Codes: block(codeNames("C", 0, 40)...)},
		&ImportCommit{Tenant: "acme", Upload: UploadID{1}, Chunks: 1, List: 7, At: 2},
		&UpsertMessage{Tenant: "acme", ID: "m", Name: "M", CampaignType: "standard", Channel: "email", At: 3},
		&AssignList{Tenant: "acme", Message: "m", List: 7},
	}
	for i, c := range append(setup, cmds...) {
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: Encode(c),
			AppendedAt: time.Unix(1_700_000_000, int64(i)*1_000_003)})
	}
	return logs
}

// TestAlertsAreDeterministic: two replicas fed the same log, in different
// batch splits, record the same alerts with the same ids and times, and a
// restart or a snapshot restore keeps the outbox and the sequence.
func TestAlertsAreDeterministic(t *testing.T) {
	logs := alertLog(t)
	a, b := newTestFSM(t), newTestFSM(t)
	for _, l := range logs {
		if r := a.f.ApplyBatch([]*raft.Log{l})[0].(*Response); r.Err != nil && !errors.Is(r.Err, ErrExists) {
			t.Fatalf("entry %d: %v", l.Index, r.Err)
		}
	}
	for i := 0; i < len(logs); {
		n := min(1+i%5, len(logs)-i)
		b.f.ApplyBatch(logs[i : i+n])
		i += n
	}
	if a.f.LastAlertID() < 5 {
		t.Fatalf("the log made only %d alerts", a.f.LastAlertID())
	}
	if len(a.f.PendingAlerts()) == 0 || int(a.f.LastAlertID()) == len(a.f.PendingAlerts()) {
		t.Fatalf("the log should leave some alerts acknowledged and some pending: %d made, %d pending",
			a.f.LastAlertID(), len(a.f.PendingAlerts()))
	}
	if !reflect.DeepEqual(a.f.PendingAlerts(), b.f.PendingAlerts()) || a.f.Digest() != b.f.Digest() {
		t.Fatalf("replicas differ:\n%+v\n%+v", a.f.PendingAlerts(), b.f.PendingAlerts())
	}
	t.Logf("%d alerts made, %d pending", a.f.LastAlertID(), len(a.f.PendingAlerts()))

	// Snapshot and restore into a replica that has other state.
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteSnapshot(snap.(*fsmSnapshot).snap, &buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	dst := newTestFSM(t)
	alertSetup(dst)
	dst.applyAppendedAt(&UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: 1000}, time.Unix(1, 0))
	if err := dst.f.Restore(nopCloser{bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dst.f.PendingAlerts(), a.f.PendingAlerts()) || dst.f.LastAlertID() != a.f.LastAlertID() || dst.f.Digest() != a.f.Digest() {
		t.Fatalf("restored outbox differs:\n%+v\n%+v", dst.f.PendingAlerts(), a.f.PendingAlerts())
	}
	select {
	case <-dst.f.AlertsChanged():
	default:
		t.Fatal("a restore that brings alerts does not wake the delivery loop")
	}
	// The next crossing continues the sequence on both.
	next := &UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: 100_000}
	idx := uint64(len(logs) + 1)
	l := &raft.Log{Index: idx, Type: raft.LogCommand, Data: Encode(next), AppendedAt: time.Unix(1_800_000_000, 0)}
	a.f.ApplyBatch([]*raft.Log{l})
	dst.f.ApplyBatch([]*raft.Log{l})
	if dst.f.Digest() != a.f.Digest() || dst.reopen().f.Digest() != a.f.Digest() {
		t.Fatal("replicas differ after a crossing that follows a restore")
	}
}

func TestAckAlertsRoundTrip(t *testing.T) {
	for _, c := range []*AckAlerts{{}, {IDs: []uint64{1}}, {IDs: []uint64{1 << 63, 0, 7}}} {
		got, err := Decode(Encode(c))
		if err != nil {
			t.Fatal(err)
		}
		if g := got.(*AckAlerts); len(g.IDs) != len(c.IDs) || (len(c.IDs) > 0 && !reflect.DeepEqual(g.IDs, c.IDs)) {
			t.Fatalf("round trip %+v -> %+v", c, g)
		}
	}
	ids := make([]uint64, MaxAckAlerts)
	if _, err := Decode(Encode(&AckAlerts{IDs: ids})); err != nil {
		t.Fatalf("%d ids refused: %v", MaxAckAlerts, err)
	}
	// One past the limit, hand-made (Encode refuses it).
	b := []byte{byte(CmdAckAlerts), bodyVersion}
	b = append(b, byte(0x80|((MaxAckAlerts+1)&0x7f)), byte((MaxAckAlerts+1)>>7))
	b = append(b, make([]byte, MaxAckAlerts+1)...)
	if _, err := Decode(b); err == nil {
		t.Fatal("an AckAlerts of too many ids was accepted")
	}
	if _, err := Decode([]byte{byte(CmdAckAlerts), bodyVersion, 2, 1}); err == nil {
		t.Fatal("a truncated AckAlerts was accepted")
	}
}
