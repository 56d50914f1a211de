package httpapi

import (
	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/raftfsm"
)

// Group commit of small commands. Concurrent requests queue their encoded
// commands; one goroutine packs whatever is queued into one Batch entry, so
// under load every fsync and every log entry carries many requests, and an
// idle node adds no delay (a lone command goes out at once, unwrapped).
//
// Only batchInflight entries are in Raft at once, and the next batch is
// packed only when a slot frees. With one slot, a batch gathers everything
// that arrived while the previous one was written and applied. With more,
// a slot frees just after the next batch went out, so the batches alternate
// between many commands and one or two, and Raft's leader loop may write
// such a small batch before it commits the big one: measured on 2 cores,
// 32 one-recipient clients did ~16k req/s with 3 in flight and ~19k with 1.
const (
	batchInflight  = 1
	batchMaxCmds   = 512
	batchMaxBytes  = 256 << 10
	smallCmdBytes  = 64 << 10 // larger commands go to Raft on their own
	batchQueueSize = 4096
)

type pendingCmd struct {
	cmd  []byte
	done chan cmdResult
}

type cmdResult struct {
	resp *raftfsm.Response
	err  error // Raft's error: outcome unknown
}

type batchInFlight struct {
	f    raft.ApplyFuture
	cmds []*pendingCmd
}

type batcher struct {
	raft     Consensus
	queue    chan *pendingCmd
	slots    chan struct{} // one token per entry in Raft
	inflight chan batchInFlight
	done     chan struct{}
}

func newBatcher(r Consensus) *batcher {
	b := &batcher{raft: r, queue: make(chan *pendingCmd, batchQueueSize),
		slots: make(chan struct{}, batchInflight), inflight: make(chan batchInFlight, batchInflight),
		done: make(chan struct{})}
	go b.pack()
	go b.deliver()
	return b
}

// submit queues cmd and waits for its outcome.
func (b *batcher) submit(cmd []byte) (*raftfsm.Response, error) {
	p := &pendingCmd{cmd: cmd, done: make(chan cmdResult, 1)}
	select {
	case b.queue <- p:
	case <-b.done:
		return nil, raft.ErrRaftShutdown
	}
	r := <-p.done
	return r.resp, r.err
}

// close stops the batcher once nothing submits any more; what is queued
// still goes out.
func (b *batcher) close() { close(b.done) }

func (b *batcher) pack() {
	defer close(b.inflight)
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
		b.inflight <- batchInFlight{f: b.raft.Apply(entry, applyTimeout), cmds: cmds}
	}
}

func (b *batcher) deliver() {
	for bf := range b.inflight {
		err := bf.f.Error()
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
		for i, c := range bf.cmds {
			if err != nil {
				c.done <- cmdResult{err: err}
			} else {
				c.done <- cmdResult{resp: resps[i]}
			}
		}
	}
}
