package propose

import (
	"hash/maphash"
	"sync"

	"github.com/coupond/coupond/raftfsm"
)

// allocEntryBytes is the recipients payload of one Allocate entry; a
// larger request becomes a Reserve entry and several Allocate chunks.
const allocEntryBytes = raftfsm.MaxEntryBytes - 4096

// sendLocks orders the requests of one send on this node. A request that
// takes several entries (a hold, then chunks drawing from it) must not
// interleave with anything else that draws from or changes that hold, or it
// could stop half-way; requests of one entry are atomic in the state
// machine and share the lock. Sends hash onto a fixed set of locks.
type sendLocks struct {
	seed  maphash.Seed
	locks [256]sync.RWMutex
}

func newSendLocks() *sendLocks { return &sendLocks{seed: maphash.MakeSeed()} }

func (l *sendLocks) of(tenant, send string) *sync.RWMutex {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(tenant)
	h.WriteByte(0)
	h.WriteString(send)
	return &l.locks[h.Sum64()%uint64(len(l.locks))]
}

// OpenSend opens a send, or answers the one that is open already.
func (p *Proposer) OpenSend(c *raftfsm.OpenSend) (raftfsm.OpenResult, error) {
	lock := p.sends.of(c.Tenant, c.Send)
	lock.Lock()
	defer lock.Unlock()
	v, err := p.Propose(c)
	if err != nil {
		return raftfsm.OpenResult{}, err
	}
	return v.(raftfsm.OpenResult), nil
}

// CloseSend closes a send and answers it as it is then.
func (p *Proposer) CloseSend(c *raftfsm.CloseSend) (*raftfsm.Send, error) {
	lock := p.sends.of(c.Tenant, c.Send)
	lock.Lock()
	defer lock.Unlock()
	v, err := p.Propose(c)
	if err != nil {
		return nil, err
	}
	return v.(*raftfsm.Send), nil
}

// Allocation asks a code for each recipient of one request of a send.
type Allocation struct {
	Tenant, Send string
	Message      string // "" for a send that exists already
	Recipients   [][]byte
	At           int64
	OnShortage   raftfsm.Shortage // the policy of a send this request opens
}

// Allocated is the answer: Codes[i] is Recipients[i]'s code.
type Allocated struct {
	Codes     [][]byte
	Fallback  []bool // Fallback[i]: Codes[i] is the list's fallback code; nil when none is
	Available uint64 // the list's available codes after the allocation
}

// Allocate assigns codes to a.Recipients, all or none. A request whose
// recipients fit one entry is one Allocate command. A bigger one first
// holds the codes its new recipients need (the all-or-nothing check, one
// Reserve entry), then assigns in chunks that draw from the hold; if the
// leader dies in between, the hold stays with the send and the retry
// finishes the job. Such a request holds its send's lock alone.
func (p *Proposer) Allocate(a Allocation) (Allocated, error) {
	chunks := recipientChunks(a.Recipients)
	lock := p.sends.of(a.Tenant, a.Send)
	if len(chunks) == 1 {
		lock.RLock()
		defer lock.RUnlock()
		v, err := p.Propose(&raftfsm.Allocate{Tenant: a.Tenant, Send: a.Send, Message: a.Message, Recipients: chunks[0], At: a.At,
			OnShortage: a.OnShortage})
		if err != nil {
			return Allocated{}, err
		}
		res := v.(*raftfsm.AllocResult)
		return Allocated{Codes: res.Codes, Fallback: res.Fallback, Available: res.Available}, nil
	}
	lock.Lock()
	defer lock.Unlock()
	need, err := p.fsm.CountUnassigned(a.Tenant, a.Send, a.Recipients)
	if err != nil {
		return Allocated{}, err
	}
	if _, err := p.Propose(&raftfsm.Reserve{Tenant: a.Tenant, Send: a.Send, Message: a.Message, Need: need, At: a.At,
		OnShortage: a.OnShortage}); err != nil {
		return Allocated{}, err
	}
	if err := p.Writable(); err != nil {
		return Allocated{}, err
	}
	futures := make([]pending, len(chunks))
	for i, b := range chunks {
		futures[i] = p.applyRaw(raftfsm.Encode(&raftfsm.Allocate{Tenant: a.Tenant, Send: a.Send, Message: a.Message, Recipients: b, At: a.At,
			OnShortage: a.OnShortage}))
	}
	out := Allocated{Codes: make([][]byte, 0, len(a.Recipients))}
	var failed error
	for _, f := range futures {
		v, err := p.wait(f, nil)
		if err != nil {
			if failed == nil {
				failed = err
			}
			continue
		}
		res := v.(*raftfsm.AllocResult)
		if res.Fallback != nil && out.Fallback == nil {
			out.Fallback = make([]bool, len(out.Codes), len(a.Recipients))
		}
		if out.Fallback != nil {
			if res.Fallback != nil {
				out.Fallback = append(out.Fallback, res.Fallback...)
			} else {
				out.Fallback = append(out.Fallback, make([]bool, len(res.Codes))...)
			}
		}
		out.Codes = append(out.Codes, res.Codes...)
		out.Available = res.Available
	}
	if failed != nil {
		return Allocated{}, failed
	}
	return out, nil
}

// recipientChunks packs recipients into blocks of one entry each.
func recipientChunks(recips [][]byte) []raftfsm.RecipientBlock {
	size := 0
	for _, rc := range recips {
		size += len(rc) + 3
	}
	var chunks []raftfsm.RecipientBlock
	block := make(raftfsm.RecipientBlock, 0, min(size, allocEntryBytes))
	for _, rc := range recips {
		if len(block)+len(rc)+3 > allocEntryBytes {
			chunks = append(chunks, block)
			block = nil
		}
		block = block.AppendRecipient(rc)
	}
	return append(chunks, block)
}

// ReleaseRequest gives the codes of recipients of a send back to its list.
type ReleaseRequest struct {
	Tenant, Send string
	Recipients   [][]byte
	At           int64
}

// Release releases the assignments of r.Recipients in r.Send. A request
// that fits one entry is one Release command, all or nothing; a bigger one
// is several, in order, under the send's lock: if the node fails between
// them, a prefix is released and a retry finishes the job (its released
// and already_released then add up to the request).
func (p *Proposer) Release(r ReleaseRequest) (raftfsm.ReleaseResult, error) {
	lock := p.sends.of(r.Tenant, r.Send)
	lock.Lock()
	defer lock.Unlock()
	var out raftfsm.ReleaseResult
	for _, b := range recipientChunks(r.Recipients) {
		v, err := p.Propose(&raftfsm.Release{Tenant: r.Tenant, Send: r.Send, Recipients: b, At: r.At})
		if err != nil {
			return raftfsm.ReleaseResult{}, err
		}
		res := v.(raftfsm.ReleaseResult)
		out.Released += res.Released
		out.NotAssigned += res.NotAssigned
		out.AlreadyReleased += res.AlreadyReleased
	}
	return out, nil
}

// Tick carries the leader's clock at into the state machine: the daemon's
// leader loop calls it when FSM.TickDue says a passing time needs it.
func (p *Proposer) Tick(at int64) error {
	_, err := p.Propose(&raftfsm.Tick{At: at})
	return err
}
