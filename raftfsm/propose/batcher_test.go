package propose

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/raftfsm"
)

// heldRaft stands in for Raft: every entry waits in entries until the test
// releases it, and each command is answered with its own bytes.
type heldRaft struct{ entries chan *heldEntry }

type heldEntry struct {
	raw      []byte // the slice given to Apply
	cmds     [][]byte
	released chan struct{}
}

func (e *heldEntry) release() { close(e.released) }

func (h *heldRaft) Apply(entry []byte, _ time.Duration) raft.ApplyFuture {
	e := &heldEntry{raw: entry, cmds: [][]byte{entry}, released: make(chan struct{})}
	if raftfsm.CmdType(entry[0]) == raftfsm.CmdBatch {
		c, err := raftfsm.Decode(entry)
		if err != nil {
			panic(err)
		}
		e.cmds = c.(*raftfsm.Batch).Commands
	}
	h.entries <- e
	return &heldFuture{e}
}

type heldFuture struct{ e *heldEntry }

func (f *heldFuture) Error() error  { <-f.e.released; return nil }
func (f *heldFuture) Index() uint64 { return 0 }
func (f *heldFuture) Response() interface{} {
	if len(f.e.cmds) == 1 {
		return &raftfsm.Response{Value: string(f.e.cmds[0])}
	}
	br := &raftfsm.BatchResponse{}
	for _, c := range f.e.cmds {
		br.Responses = append(br.Responses, &raftfsm.Response{Value: string(c)})
	}
	return &raftfsm.Response{Value: br}
}

// TestBatcherGroupWait shows the group wait of batcher.go: after a batch
// of two is answered, the next batch waits for two more commands instead of
// leaving with the one that was queued; after a batch of one nothing waits.
func TestBatcherGroupWait(t *testing.T) {
	h := &heldRaft{entries: make(chan *heldEntry, 8)}
	// A clock that moves an hour per reading makes every cycle look long,
	// so only maxWait bounds the wait, and a minute is more than the test
	// needs: a batch that left on time (not when its group was in) fails it.
	var clock atomic.Int64
	now := func() time.Time { return time.Unix(clock.Add(3600), 0) }
	b := startBatcher(h, time.Minute, now, DefaultApplyTimeout)

	var wg sync.WaitGroup
	submit := func(name string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := raftfsm.Encode(&raftfsm.CloseSend{Tenant: "t", Send: name})
			resp, err := b.submit(cmd)
			if err != nil || resp.Value != string(cmd) {
				t.Errorf("command %s answered %v, %v", name, resp, err)
			}
		}()
	}
	next := func(want int) *heldEntry {
		t.Helper()
		select {
		case e := <-h.entries:
			if len(e.cmds) != want {
				t.Fatalf("entry of %d commands, want %d", len(e.cmds), want)
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("no entry of %d commands", want)
			return nil
		}
	}
	waitSubmitted := func(n uint64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); b.submitted.Load() < n; {
			if time.Now().After(deadline) {
				t.Fatalf("only %d commands submitted, want %d", b.submitted.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}

	submit("a")
	first := next(1) // a lone command goes out at once, unwrapped
	submit("b")
	submit("c")
	waitSubmitted(3)
	first.release()
	second := next(2) // after a batch of one, b and c go without waiting
	submit("d")
	waitSubmitted(4)
	second.release()
	for deadline := time.Now().Add(10 * time.Second); b.answeredCount.Load() != 2; {
		if time.Now().After(deadline) {
			t.Fatal("the batch of two was not answered")
		}
		time.Sleep(time.Millisecond)
	}
	// Two were answered, so the batcher waits for two more before packing:
	// without the wait, d would leave alone.
	submit("e")
	submit("f")
	third := next(3)
	third.release()
	wg.Wait()
	b.close()
}

// TestBatcherEarlyAnswers: the state machine answers the commands of the
// batch entry in flight as it applies them; deliver answers only the rest
// once the entry's future resolves, and never a command twice. A copy of
// the entry (a follower's, a replay's) is not claimed.
func TestBatcherEarlyAnswers(t *testing.T) {
	h := &heldRaft{entries: make(chan *heldEntry, 8)}
	b := startBatcher(h, time.Minute, time.Now, DefaultApplyTimeout)
	defer b.close()
	// Commands queued by hand, with room for a second answer so that one
	// would show instead of blocking deliver.
	queue := func(name string) *pendingCmd {
		p := &pendingCmd{cmd: raftfsm.Encode(&raftfsm.CloseSend{Tenant: "t", Send: name}), done: make(chan cmdResult, 2)}
		b.queue <- p
		b.submitted.Add(1)
		return p
	}
	answer := func(p *pendingCmd) string {
		t.Helper()
		select {
		case r := <-p.done:
			return r.resp.Value.(string)
		case <-time.After(10 * time.Second):
			t.Fatal("no answer")
			return ""
		}
	}
	lone := queue("lone")
	e := <-h.entries
	// Queued while the lone command holds the only slot, the three go
	// out together once it is answered.
	ps := []*pendingCmd{queue("a"), queue("b"), queue("c")}
	e.release()
	answer(lone)
	e2 := <-h.entries
	if len(e2.cmds) != 3 {
		t.Fatalf("entry of %d commands, want 3", len(e2.cmds))
	}
	if b.answerEarly(append([]byte(nil), e2.raw...)) != nil {
		t.Fatal("a copy of the entry was claimed")
	}
	early := b.answerEarly(e2.raw)
	if early == nil {
		t.Fatal("the entry in flight was not claimed")
	}
	early(0, &raftfsm.Response{Value: "early a"})
	early(1, &raftfsm.Response{Value: "early b"})
	if got := answer(ps[0]); got != "early a" {
		t.Fatalf("a answered %q before the future resolved, want the early answer", got)
	}
	if got := answer(ps[1]); got != "early b" {
		t.Fatalf("b answered %q", got)
	}
	e2.release()
	if got := answer(ps[2]); got != string(ps[2].cmd) {
		t.Fatalf("c answered %q, want its own command", got)
	}
	// deliver handles entries in order: once the next one is answered, a
	// second answer to a or b would be in their channels.
	last := queue("last")
	e3 := <-h.entries
	e3.release()
	answer(last)
	for i, p := range ps[:2] {
		if len(p.done) != 0 {
			t.Errorf("command %d answered twice", i)
		}
	}
}
