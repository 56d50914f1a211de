package propose

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/raftfsm"
)

// Group commit of small commands. Concurrent requests queue their encoded
// commands; one goroutine packs whatever is queued into one Batch entry, so
// under load every fsync and every log entry carries many requests, and an
// idle node adds no delay (a lone command goes out at once, unwrapped).
//
// One batch is in Raft at a time: the next is packed when it is answered,
// so it takes in everything that arrived meanwhile. With more in flight the
// batches alternate between big and tiny ones (DESIGN.md).
//
// Group wait: before packing, the batcher waits until as many commands came
// in since the last answer as that answer carried, for at most one cycle
// and at most groupWaitMax, so clients that send again as soon as they are
// answered go in the next batch together instead of splitting into halves
// that take turns. A batch of one is followed by no wait: a lone client is
// never delayed.
//
// Early answers: the state machine answers the commands of the batch in
// flight one by one as it applies them (raftfsm.FSM.SetEarlyAnswers), so
// the first clients send again while the rest of the batch is applied;
// deliver answers what it did not (all of it on an error).
const (
	batchInflight  = 1
	batchMaxCmds   = 512
	batchMaxBytes  = 256 << 10
	smallCmdBytes  = 64 << 10 // larger commands go to Raft on their own
	batchQueueSize = 4096
	groupWaitMax   = time.Millisecond
)

type pendingCmd struct {
	cmd   []byte
	done  chan cmdResult
	timer *time.Timer // the submitter's deadline, reused with the command
}

type cmdResult struct {
	resp *raftfsm.Response
	err  error // Raft's error: outcome unknown
}

type batchInFlight struct {
	f     raft.ApplyFuture
	entry []byte // what went to Raft: the state machine finds it by its address
	cmds  []*pendingCmd
	start time.Time
	// answered counts the commands the state machine answered while
	// applying (answerEarly), in order; written before the future
	// resolves, so deliver reads it after.
	answered int
}

type batcher struct {
	raft     raftApplier
	queue    chan *pendingCmd
	slots    chan struct{} // one token per entry in Raft
	inflight chan *batchInFlight
	// latest is the last batch entry sent to Raft, for answerEarly.
	latest atomic.Pointer[batchInFlight]
	done   chan struct{}

	submitted atomic.Uint64 // commands queued since the start (counted once queued)
	// groupAt is the submitted count the packer sleeps for (0: none); the
	// submitter that reaches it sends on groupIn.
	groupAt atomic.Uint64
	groupIn chan struct{}
	// The batch answered last, stored before deliver frees the slot that
	// pack takes next: the submitted count when its answers began, how
	// many commands it answered, and how long its entry took in Raft.
	answeredMark  atomic.Uint64
	answeredCount atomic.Uint64
	lastCycle     atomic.Int64

	maxWait time.Duration    // groupWaitMax; tests lengthen it
	now     func() time.Time // time.Now; tests stretch the cycle
	timeout time.Duration    // the apply timeout; tests shorten it
	// enqueueTimeout bounds the wait for a place in Raft's queue; set
	// once, before pack starts.
	enqueueTimeout time.Duration
}

// raftApplier is the part of Raft the batcher uses.
type raftApplier interface {
	Apply(cmd []byte, timeout time.Duration) raft.ApplyFuture
}

func startBatcher(r raftApplier, maxWait time.Duration, now func() time.Time, timeout time.Duration) *batcher {
	b := &batcher{raft: r, queue: make(chan *pendingCmd, batchQueueSize),
		slots: make(chan struct{}, batchInflight), inflight: make(chan *batchInFlight, batchInflight),
		done: make(chan struct{}), groupIn: make(chan struct{}, 1), maxWait: maxWait, now: now, timeout: timeout, enqueueTimeout: timeout}
	go b.pack()
	go b.deliver()
	return b
}

// pendingPool recycles pendingCmds with their channels: deliver sends on
// a command's channel once and never touches it again, so the submitter
// owns it again once it has the answer. A command given up on (timed out)
// is never put back: its answer may still come.
var pendingPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &pendingCmd{done: make(chan cmdResult, 1), timer: t}
}}

// submit queues cmd and waits for its outcome, for at most b.timeout from
// now: a state machine that cannot write (Pebble stalls on a full disk)
// holds the batch in flight, and everything queued behind it, until space
// returns, and the client must have an answer before that. A command given
// up on may still be applied: its outcome is unknown (ErrTimeout).
func (b *batcher) submit(cmd []byte) (*raftfsm.Response, error) {
	p := pendingPool.Get().(*pendingCmd)
	p.cmd = cmd
	p.timer.Reset(b.timeout)
	select {
	case b.queue <- p:
		if n := b.submitted.Add(1); n == b.groupAt.Load() {
			select {
			case b.groupIn <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
	case <-b.done:
		b.recycle(p)
		return nil, raft.ErrRaftShutdown
	case <-p.timer.C:
		// Never queued: nothing was done, and p is still ours.
		b.recycle(p)
		return nil, ErrTimeout
	}
	select {
	case r := <-p.done:
		b.recycle(p)
		return r.resp, r.err
	case <-p.timer.C:
		return nil, ErrTimeout
	}
}

func (b *batcher) recycle(p *pendingCmd) {
	p.timer.Stop()
	p.cmd = nil
	pendingPool.Put(p)
}

// close stops the batcher once nothing submits any more; what is queued
// still goes out.
func (b *batcher) close() { close(b.done) }

func (b *batcher) pack() {
	defer close(b.inflight)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var p *pendingCmd
		select {
		case p = <-b.queue:
		case <-b.done:
			select {
			case p = <-b.queue:
			default:
				return
			}
		}
		// Wait for a slot before draining, so the batch takes in everything
		// that queued up meanwhile.
		b.slots <- struct{}{}
		want, wait := b.groupWait()
		if wait > 0 {
			b.awaitGroup(want, wait, timer)
		}
		cmds := []*pendingCmd{p}
		size := len(p.cmd)
	drain:
		for len(cmds) < batchMaxCmds && size < batchMaxBytes {
			select {
			case q := <-b.queue:
				cmds = append(cmds, q)
				size += len(q.cmd)
			default:
				break drain
			}
		}
		entry := p.cmd
		if len(cmds) > 1 {
			enc := &raftfsm.Batch{Commands: make([][]byte, len(cmds))}
			for i, c := range cmds {
				enc.Commands[i] = c.cmd
			}
			entry = raftfsm.Encode(enc)
		}
		bf := &batchInFlight{entry: entry, cmds: cmds, start: b.now()}
		if len(cmds) > 1 {
			b.latest.Store(bf)
		}
		bf.f = b.raft.Apply(entry, b.enqueueTimeout)
		b.inflight <- bf
	}
}

// awaitGroup sleeps until want commands in all were submitted, for at
// most wait. The submitter that makes the count wakes it (groupAt), so the
// commands that come back meanwhile are taken in one drain instead of
// waking the packer once each.
func (b *batcher) awaitGroup(want uint64, wait time.Duration, timer *time.Timer) {
	select {
	case <-b.groupIn: // a wake-up meant for an earlier wait
	default:
	}
	b.groupAt.Store(want)
	defer b.groupAt.Store(0)
	// A timer shorter than a millisecond may fire late on an idle process,
	// but then no command is waiting for it.
	timer.Reset(wait)
	defer timer.Stop()
	for b.submitted.Load() < want {
		select {
		case <-b.groupIn:
		case <-timer.C:
			return
		case <-b.done:
			return
		}
	}
}

// groupWait answers how many commands in all must have been submitted
// before the next batch goes out, and the longest wait for them; a zero
// wait means none (see "Group wait" above).
func (b *batcher) groupWait() (uint64, time.Duration) {
	n := b.answeredCount.Load()
	if n < 2 {
		return 0, 0
	}
	return b.answeredMark.Load() + n, min(time.Duration(b.lastCycle.Load()), b.maxWait)
}

func (b *batcher) deliver() {
	for bf := range b.inflight {
		err := bf.f.Error()
		// Settled: the state machine may no longer answer any of it.
		b.latest.CompareAndSwap(bf, nil)
		if bf.answered == 0 {
			b.markAnswered(bf)
		}
		b.lastCycle.Store(int64(b.now().Sub(bf.start)))
		<-b.slots
		var resps []*raftfsm.Response
		if err == nil {
			resp, _ := bf.f.Response().(*raftfsm.Response)
			switch {
			case resp == nil:
			case len(bf.cmds) == 1:
				resps = []*raftfsm.Response{resp}
			default:
				if br, ok := resp.Value.(*raftfsm.BatchResponse); ok {
					resps = br.Responses
				}
			}
			if len(resps) != len(bf.cmds) {
				panic("BUG: batch answered with the wrong number of responses")
			}
		}
		for i := bf.answered; i < len(bf.cmds); i++ {
			c := bf.cmds[i]
			if err != nil {
				c.done <- cmdResult{err: err}
			} else {
				c.done <- cmdResult{resp: resps[i]}
			}
		}
	}
}

// markAnswered records that bf's commands are being answered, for the
// group wait of the next batch.
func (b *batcher) markAnswered(bf *batchInFlight) {
	b.answeredMark.Store(b.submitted.Load())
	b.answeredCount.Store(uint64(len(bf.cmds)))
}

// answerEarly is the state machine's raftfsm.EarlyAnswers: the entry being
// applied is ours if it is the very slice handed to Raft (on the leader the
// state machine gets the Apply's own log entry; anywhere else, or after a
// restart, it is another slice and deliver answers as usual).
func (b *batcher) answerEarly(entry []byte) func(int, *raftfsm.Response) {
	bf := b.latest.Load()
	if bf == nil || len(entry) == 0 || unsafe.SliceData(entry) != unsafe.SliceData(bf.entry) {
		return nil
	}
	b.markAnswered(bf)
	return func(i int, r *raftfsm.Response) {
		if i != bf.answered || i >= len(bf.cmds) {
			panic("BUG: early answers out of order")
		}
		bf.cmds[i].done <- cmdResult{resp: r}
		bf.answered = i + 1
	}
}
