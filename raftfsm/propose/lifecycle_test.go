package propose

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/raftfsm"
)

// singleNode is a real one-node Raft (in memory) over a real state machine,
// with the proposer on top: what the daemon runs, without the disk's log.
func singleNode(t *testing.T) (*Proposer, *raftfsm.FSM) {
	t.Helper()
	db, err := pebble.Open(t.TempDir(), &pebble.Options{DisableWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	fsm, err := raftfsm.New(db)
	if err != nil {
		t.Fatal(err)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.LogOutput = io.Discard
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	store := raft.NewInmemStore()
	_, trans := raft.NewInmemTransport("n1")
	r, err := raft.NewRaft(conf, fsm, store, store, raft.NewDiscardSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: trans.LocalAddr()}}}).Error(); err != nil {
		t.Fatal(err)
	}
	for r.State() != raft.Leader {
		time.Sleep(5 * time.Millisecond)
	}
	p := New(r, fsm, Config{})
	t.Cleanup(func() {
		p.Close()
		r.Shutdown().Error()
		db.Close()
	})
	return p, fsm
}

func mustPropose(t *testing.T, p *Proposer, c raftfsm.Command) any {
	t.Helper()
	v, err := p.Propose(c)
	if err != nil {
		t.Fatalf("%T: %v", c, err)
	}
	return v
}

// listWithCodes makes tenant "t", a list of n codes with fallback code FB,
// and message "m" assigned to it; it returns the list id.
func listWithCodes(t *testing.T, p *Proposer, n int) uint64 {
	t.Helper()
	mustPropose(t, p, &raftfsm.CreateTenant{ID: "t", Name: "T"})
	mustPropose(t, p, &raftfsm.CreateList{Tenant: "t", ID: 1, Name: "l", Dedupe: true, FallbackCode: "FB"})
	var codes raftfsm.CodeBlock
	for i := range n {
		codes = codes.AppendCode(fmt.Appendf(nil, "CODE-%07d", i))
	}
	mustPropose(t, p, &raftfsm.ImportChunk{Tenant: "t", Upload: raftfsm.UploadID{1}, Chunk: 0, Codes: codes})
	mustPropose(t, p, &raftfsm.ImportCommit{Tenant: "t", Upload: raftfsm.UploadID{1}, Chunks: 1, List: 1})
	mustPropose(t, p, &raftfsm.UpsertMessage{Tenant: "t", ID: "m", Name: "m", CampaignType: "standard", Channel: "email"})
	mustPropose(t, p, &raftfsm.AssignList{Tenant: "t", Message: "m", List: 1})
	return 1
}

// recipients are n recipients long enough that n of them fill several
// Raft entries.
func recipients(from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "recipient-%07d@a-rather-long-mail-domain.example.com", from+i)
	}
	return out
}

// TestBigAllocationFallsBackInRequestOrder: a request of several entries
// (a hold, then chunks) under on_shortage fallback gives the list's codes
// to the first recipients of the request and the fallback code to the
// rest; a retry answers the same.
func TestBigAllocationFallsBackInRequestOrder(t *testing.T) {
	p, fsm := singleNode(t)
	list := listWithCodes(t, p, 5000)
	recips := recipients(0, 30000) // ~1.8 MB: several entries
	if len(recipientChunks(recips)) < 2 {
		t.Fatal("the request fits one entry: the test would not cross chunks")
	}
	a := Allocation{Tenant: "t", Send: "s", Message: "m", Recipients: recips, At: time.Now().UnixNano(),
		OnShortage: raftfsm.ShortageFallback}
	got, err := p.Allocate(a)
	if err != nil {
		t.Fatal(err)
	}
	check := func(got Allocated) {
		t.Helper()
		if len(got.Codes) != len(recips) || len(got.Fallback) != len(recips) {
			t.Fatalf("%d codes, %d flags for %d recipients", len(got.Codes), len(got.Fallback), len(recips))
		}
		for i, c := range got.Codes {
			if want := i >= 5000; got.Fallback[i] != want || (want != bytes.Equal(c, []byte("FB"))) {
				t.Fatalf("recipient %d: code %q fallback %v", i, c, got.Fallback[i])
			}
		}
	}
	check(got)
	a.Message = ""
	again, err := p.Allocate(a)
	if err != nil {
		t.Fatal(err)
	}
	check(again)
	v, _ := fsm.List("t", list)
	if v.Available != 0 || v.Used != 5000 || v.FallbackUsed != 25000 || v.Reserved != 0 {
		t.Fatalf("list after: %+v", v)
	}
	s, _ := fsm.Send("t", "s")
	if s.Assigned != 30000 || s.OnShortage != raftfsm.ShortageFallback {
		t.Fatalf("send after: %+v", s)
	}
}

// TestBigReleaseInChunks: a release of several entries releases every
// recipient once; repeated, it finds them all released already; the codes
// are back at the end of the list and a resend draws them.
func TestBigReleaseInChunks(t *testing.T) {
	p, fsm := singleNode(t)
	list := listWithCodes(t, p, 40000)
	recips := recipients(0, 30000)
	at := time.Now().UnixNano()
	if _, err := p.Allocate(Allocation{Tenant: "t", Send: "s", Message: "m", Recipients: recips, At: at}); err != nil {
		t.Fatal(err)
	}
	rel := ReleaseRequest{Tenant: "t", Send: "s", Recipients: append(recipients(0, 20000), recipients(90000, 10)...), At: at}
	if len(recipientChunks(rel.Recipients)) < 2 {
		t.Fatal("the release fits one entry")
	}
	res, err := p.Release(rel)
	if err != nil {
		t.Fatal(err)
	}
	if res != (raftfsm.ReleaseResult{Released: 20000, NotAssigned: 10}) {
		t.Fatalf("release: %+v", res)
	}
	res, err = p.Release(rel)
	if err != nil {
		t.Fatal(err)
	}
	if res != (raftfsm.ReleaseResult{AlreadyReleased: 20000, NotAssigned: 10}) {
		t.Fatalf("repeated release: %+v", res)
	}
	v, _ := fsm.List("t", list)
	if v.Added != 40000 || v.Used != 10000 || v.Available != 30000 || v.Released != 20000 {
		t.Fatalf("list after release: %+v", v)
	}
	if _, err := p.Release(ReleaseRequest{Tenant: "t", Send: "nope", Recipients: recips[:1], At: at}); err != raftfsm.ErrNotFound {
		t.Fatalf("release on an unknown send: %v", err)
	}
	// The 10,000 codes never handed out come first, then the released
	// ones in release order.
	got, err := p.Allocate(Allocation{Tenant: "t", Send: "s", Recipients: recipients(0, 30000), At: at})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30000 {
		var want string
		switch {
		case i < 20000 && i < 10000:
			want = fmt.Sprintf("CODE-%07d", 30000+i) // resend: fresh codes first
		case i < 20000:
			want = fmt.Sprintf("CODE-%07d", i-10000) // then the first released ones
		default:
			want = fmt.Sprintf("CODE-%07d", i) // never released: the same code
		}
		if string(got.Codes[i]) != want {
			t.Fatalf("recipient %d after resend: %s, want %s", i, got.Codes[i], want)
		}
	}
}
