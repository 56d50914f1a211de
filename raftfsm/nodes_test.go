package raftfsm

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// Tests of the node directory and the cluster key (nodes.go).

func key(b byte) [ClusterKeyLen]byte {
	var k [ClusterKeyLen]byte
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func node(id, raftAddr, httpAddr string) NodeInfo {
	return NodeInfo{ID: id, RaftAddr: raftAddr, HTTPAddr: httpAddr}
}

// clusterState is what the FSM tells of the cluster.
func clusterState(f *FSM) (nodes []NodeInfo, k [ClusterKeyLen]byte, hasKey bool) {
	k, hasKey = f.ClusterKey()
	return f.Nodes(), k, hasKey
}

func TestClusterCommandsRoundTrip(t *testing.T) {
	cmds := []Command{
		&SetNode{Node: node("n1", "10.0.0.1:8081", "10.0.0.1:8080")},
		&SetNode{Node: node("node-é", "", "")},
		&RemoveNode{ID: "n1"},
		&RemoveNode{ID: ""},
		&SetClusterKey{Key: key(7)},
		&SetClusterKey{},
		&Batch{Commands: [][]byte{Encode(&SetNode{Node: node("n2", "a:1", "b:2")}), Encode(&SetClusterKey{Key: key(1)})}},
	}
	for _, c := range cmds {
		data := Encode(c)
		got, err := Decode(data)
		if err != nil {
			t.Fatalf("decode %T: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of %T: got %+v, want %+v", c, got, c)
		}
		if again := Encode(got); !bytes.Equal(again, data) {
			t.Fatalf("re-encoding %T differs", c)
		}
	}
	if CmdSetNode <= CmdBatch || CmdRemoveNode <= CmdBatch || CmdSetClusterKey <= CmdBatch {
		t.Fatal("cluster commands must be numbered after the existing ones")
	}
	// Truncated or padded entries are refused.
	for name, data := range map[string][]byte{
		"short key":       Encode(&SetClusterKey{Key: key(1)})[:2+ClusterKeyLen-1],
		"long key":        append(Encode(&SetClusterKey{Key: key(1)}), 0),
		"node cut short":  func() []byte { b := Encode(&SetNode{Node: node("n1", "a:1", "b:2")}); return b[:len(b)-1] }(),
		"node extra byte": append(Encode(&SetNode{Node: node("n1", "a:1", "b:2")}), 0),
		"remove no id":    Encode(&RemoveNode{ID: "n1"})[:2],
	} {
		if _, err := Decode(data); !errors.Is(err, errCorrupt) {
			t.Fatalf("%s: want errCorrupt, got %v", name, err)
		}
	}
}

func TestNodeDirectory(t *testing.T) {
	tf := newTestFSM(t)
	if nodes, _, hasKey := clusterState(tf.f); len(nodes) != 0 || hasKey {
		t.Fatalf("a fresh state has nodes %v or a key (%v)", nodes, hasKey)
	}
	if _, ok := tf.f.Node("n1"); ok {
		t.Fatal("a fresh state knows n1")
	}
	tf.mustApply(&SetNode{Node: node("n2", "10.0.0.2:8081", "10.0.0.2:8080")})
	tf.mustApply(&SetNode{Node: node("n1", "10.0.0.1:8081", "10.0.0.1:8080")})
	tf.mustApply(&SetNode{Node: node("n3", "10.0.0.3:8081", "10.0.0.3:8080")})
	// A node that moved: SetNode replaces its addresses.
	tf.mustApply(&SetNode{Node: node("n1", "10.0.0.9:8081", "10.0.0.9:8080")})
	want := []NodeInfo{
		node("n1", "10.0.0.9:8081", "10.0.0.9:8080"),
		node("n2", "10.0.0.2:8081", "10.0.0.2:8080"),
		node("n3", "10.0.0.3:8081", "10.0.0.3:8080"),
	}
	if got := tf.f.Nodes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("directory: got %v, want %v (sorted by id)", got, want)
	}
	if n, ok := tf.f.Node("n1"); !ok || n != want[0] {
		t.Fatalf("Node(n1) = %v %v", n, ok)
	}
	// Callers get copies: changing one changes nothing in the state.
	n, _ := tf.f.Node("n2")
	n.HTTPAddr = "evil:1"
	tf.f.Nodes()[0].HTTPAddr = "evil:2"
	if got := tf.f.Nodes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("a caller changed the directory: %v", got)
	}

	tf.mustApply(&RemoveNode{ID: "n2"})
	want = []NodeInfo{want[0], want[2]}
	if got := tf.f.Nodes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after removing n2: got %v, want %v", got, want)
	}
	if _, ok := tf.f.Node("n2"); ok {
		t.Fatal("n2 still known")
	}
	// Removing an unknown node (or one removed already) is ErrNotFound and
	// changes nothing, but the entry is applied.
	before := tf.f.Nodes()
	for _, id := range []string{"n2", "nobody", ""} {
		idx := tf.index
		if r := tf.apply(&RemoveNode{ID: id}); !errors.Is(r.Err, ErrNotFound) {
			t.Fatalf("RemoveNode(%q): want ErrNotFound, got %v", id, r.Err)
		}
		if tf.f.AppliedIndex() != idx+1 {
			t.Fatalf("RemoveNode(%q): applied index %d, want %d", id, tf.f.AppliedIndex(), idx+1)
		}
	}
	if got := tf.f.Nodes(); !reflect.DeepEqual(got, before) {
		t.Fatalf("failed removals changed the directory: %v", got)
	}

	// A restart reads the same directory from Pebble.
	tf = tf.reopen()
	if got := tf.f.Nodes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after restart: got %v, want %v", got, want)
	}
	// And it goes on from there.
	tf.mustApply(&RemoveNode{ID: "n1"})
	tf.mustApply(&SetNode{Node: node("n4", "h4:1", "h4:2")})
	tf = tf.reopen()
	want = []NodeInfo{want[1], node("n4", "h4:1", "h4:2")}
	if got := tf.f.Nodes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a second restart: got %v, want %v", got, want)
	}
}

func TestClusterKeyIsSetOnce(t *testing.T) {
	tf := newTestFSM(t)
	if _, ok := tf.f.ClusterKey(); ok {
		t.Fatal("a fresh state has a cluster key")
	}
	first, second := key(1), key(100)
	tf.mustApply(&SetClusterKey{Key: first})
	if k, ok := tf.f.ClusterKey(); !ok || k != first {
		t.Fatalf("key %x %v, want %x", k, ok, first)
	}
	// A second key (another leader racing at bootstrap) is refused; the
	// first stays. The same key again is refused too.
	for _, k := range [][ClusterKeyLen]byte{second, first} {
		if r := tf.apply(&SetClusterKey{Key: k}); !errors.Is(r.Err, ErrExists) {
			t.Fatalf("second SetClusterKey: want ErrExists, got %v", r.Err)
		}
	}
	if k, _ := tf.f.ClusterKey(); k != first {
		t.Fatalf("key after a refused second one: %x, want %x", k, first)
	}
	tf = tf.reopen()
	if k, ok := tf.f.ClusterKey(); !ok || k != first {
		t.Fatalf("key after restart: %x %v, want %x", k, ok, first)
	}
	if r := tf.apply(&SetClusterKey{Key: second}); !errors.Is(r.Err, ErrExists) {
		t.Fatalf("SetClusterKey after restart: want ErrExists, got %v", r.Err)
	}
	if k, _ := tf.f.ClusterKey(); k != first {
		t.Fatalf("key after restart and a refused one: %x", k)
	}
	// An all-zero key is a key like any other (the absence is a nil key).
	tz := newTestFSM(t)
	tz.mustApply(&SetClusterKey{})
	if k, ok := tz.f.ClusterKey(); !ok || k != ([ClusterKeyLen]byte{}) {
		t.Fatalf("zero key: %x %v", k, ok)
	}
	if r := tz.apply(&SetClusterKey{Key: first}); !errors.Is(r.Err, ErrExists) {
		t.Fatalf("a key after the zero key: want ErrExists, got %v", r.Err)
	}
}

// TestClusterCommandsInOneBatch: within one Raft batch (and one Batch
// entry) each command sees what the earlier ones did, as in separate entries.
func TestClusterCommandsInOneBatch(t *testing.T) {
	a, b := newTestFSM(t), newTestFSM(t)
	cmds := []Command{
		&SetClusterKey{Key: key(3)},
		&SetNode{Node: node("n1", "a:1", "a:2")},
		&SetClusterKey{Key: key(4)},
		&SetNode{Node: node("n2", "b:1", "b:2")},
		&RemoveNode{ID: "n1"},
		&RemoveNode{ID: "n1"},
		&SetNode{Node: node("n1", "c:1", "c:2")},
	}
	wantErr := []error{nil, nil, ErrExists, nil, nil, ErrNotFound, nil}
	// a: one entry each, all in one ApplyBatch.
	logs := make([]*raftLog, len(cmds))
	for i, c := range cmds {
		logs[i] = &raftLog{index: uint64(i + 1), data: Encode(c)}
	}
	for i, out := range a.f.ApplyBatch(toRaftLogs(logs)) {
		if err := out.(*Response).Err; !errors.Is(err, wantErr[i]) || (wantErr[i] == nil && err != nil) {
			t.Fatalf("entry %d (%T): err %v, want %v", i, cmds[i], err, wantErr[i])
		}
	}
	// b: one Batch entry of them all.
	batch := &Batch{}
	for _, c := range cmds {
		batch.Commands = append(batch.Commands, Encode(c))
	}
	resp := b.mustApply(batch).(*BatchResponse)
	for i, r := range resp.Responses {
		if !errors.Is(r.Err, wantErr[i]) || (wantErr[i] == nil && r.Err != nil) {
			t.Fatalf("batch command %d (%T): err %v, want %v", i, cmds[i], r.Err, wantErr[i])
		}
	}
	want := []NodeInfo{node("n1", "c:1", "c:2"), node("n2", "b:1", "b:2")}
	for name, tf := range map[string]*testFSM{"entries": a, "batch": b} {
		nodes, k, ok := clusterState(tf.f)
		if !reflect.DeepEqual(nodes, want) || !ok || k != key(3) {
			t.Fatalf("%s: nodes %v key %x %v; want %v key %x", name, nodes, k, ok, want, key(3))
		}
		reopened := tf.reopen()
		if n2, k2, ok2 := clusterState(reopened.f); !reflect.DeepEqual(n2, nodes) || k2 != k || !ok2 {
			t.Fatalf("%s after restart: nodes %v key %x %v", name, n2, k2, ok2)
		}
	}
}

// snapshotBytes streams a snapshot of f.
func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var buf bytes.Buffer
	if err := WriteSnapshot(snap.(*fsmSnapshot).snap, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestClusterStateSurvivesSnapshotRestore(t *testing.T) {
	src := newTestFSM(t)
	src.setup()
	src.mustApply(&SetClusterKey{Key: key(9)})
	src.mustApply(&SetNode{Node: node("n1", "h1:1", "h1:2")})
	src.mustApply(&SetNode{Node: node("n2", "h2:1", "h2:2")})
	src.mustApply(&SetNode{Node: node("gone", "h9:1", "h9:2")})
	src.mustApply(&RemoveNode{ID: "gone"})
	snap := snapshotBytes(t, src.f)
	wantNodes, wantKey, _ := clusterState(src.f)

	// A replica with another key and other nodes: the snapshot replaces
	// both, and nothing of its own directory stays.
	dst := newTestFSM(t)
	dst.mustApply(&SetClusterKey{Key: key(50)})
	dst.mustApply(&SetNode{Node: node("n1", "old:1", "old:2")})
	dst.mustApply(&SetNode{Node: node("stale", "s:1", "s:2")})
	if err := dst.f.Restore(nopCloser{bytes.NewReader(snap)}); err != nil {
		t.Fatal(err)
	}
	dst.index = dst.f.AppliedIndex() // the log goes on from the snapshot
	check := func(what string, f *FSM) {
		t.Helper()
		nodes, k, ok := clusterState(f)
		if !reflect.DeepEqual(nodes, wantNodes) {
			t.Fatalf("%s: nodes %v, want %v", what, nodes, wantNodes)
		}
		if !ok || k != wantKey {
			t.Fatalf("%s: key %x %v, want %x", what, k, ok, wantKey)
		}
		if _, ok := f.Node("stale"); ok {
			t.Fatalf("%s: the replica's own node survived", what)
		}
		if f.Digest() != src.f.Digest() {
			t.Fatalf("%s: digest differs from the source", what)
		}
	}
	check("after restore", dst.f)
	// The restored key is the key: a new one is refused.
	if r := dst.apply(&SetClusterKey{Key: key(51)}); !errors.Is(r.Err, ErrExists) {
		t.Fatalf("SetClusterKey after restore: want ErrExists, got %v", r.Err)
	}
	check("after a refused key", dst.f)
	dst = dst.reopen()
	check("after restore and restart", dst.f)

	// A snapshot of a state without a key restores to no key.
	bare := newTestFSM(t)
	bare.mustApply(&SetNode{Node: node("n1", "h1:1", "h1:2")})
	into := newTestFSM(t)
	into.mustApply(&SetClusterKey{Key: key(5)})
	if err := into.f.Restore(nopCloser{bytes.NewReader(snapshotBytes(t, bare.f))}); err != nil {
		t.Fatal(err)
	}
	into.index = into.f.AppliedIndex()
	if _, ok := into.f.ClusterKey(); ok {
		t.Fatal("a key survived the restore of a state without one")
	}
	if got := into.f.Nodes(); !reflect.DeepEqual(got, []NodeInfo{node("n1", "h1:1", "h1:2")}) {
		t.Fatalf("nodes after restore: %v", got)
	}
	into.mustApply(&SetClusterKey{Key: key(6)})
	if k, _ := into.reopen().f.ClusterKey(); k != key(6) {
		t.Fatalf("key set after the restore: %x", k)
	}
}

// TestReplicasAgreeOnTheDirectory: the same log gives the same directory
// and key on two replicas, one entry at a time or in batches.
func TestReplicasAgreeOnTheDirectory(t *testing.T) {
	var stream [][]byte
	for i := 0; i < 60; i++ {
		id := string(rune('a' + i%7))
		switch i % 5 {
		case 0, 1:
			stream = append(stream, Encode(&SetNode{Node: node(id, id+":1", id+":"+string(rune('0'+i%10)))}))
		case 2:
			stream = append(stream, Encode(&RemoveNode{ID: id}))
		case 3:
			stream = append(stream, Encode(&SetClusterKey{Key: key(byte(i))}))
		case 4:
			stream = append(stream, Encode(&Batch{Commands: [][]byte{
				Encode(&SetNode{Node: node(id+"x", "x:1", "x:2")}), Encode(&RemoveNode{ID: id + "y"})}}))
		}
	}
	a, b := newTestFSM(t), newTestFSM(t)
	for i, data := range stream {
		a.f.ApplyCommand(uint64(i+1), data)
	}
	for i := 0; i < len(stream); {
		n := min(1+i%4, len(stream)-i)
		logs := make([]*raftLog, n)
		for k := range logs {
			logs[k] = &raftLog{index: uint64(i + k + 1), data: stream[i+k]}
		}
		b.f.ApplyBatch(toRaftLogs(logs))
		i += n
	}
	na, ka, oka := clusterState(a.f)
	nb, kb, okb := clusterState(b.f)
	if !reflect.DeepEqual(na, nb) || ka != kb || oka != okb {
		t.Fatalf("replicas differ:\n%v %x\n%v %x", na, ka, nb, kb)
	}
	if !oka || ka != key(3) {
		t.Fatalf("the key is %x, want the first one set (%x)", ka, key(3))
	}
}
