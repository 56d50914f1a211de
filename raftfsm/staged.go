package raftfsm

import "github.com/coupond/coupond/pool"

// stagedPool is the pool that an upload meant for a new list
// (ImportChunk.NewList) builds while its chunks are applied: its codes
// added in chunk order to a de-duplicating list of their own. The commit
// registers it as the new list's pool, which is what adding the same codes
// in the same order to that empty list gives; so a 5M-code import costs
// its commit a scan of the staged chunks, not 5M adds in one apply that
// every other write waits for. It lives in memory only: after a restart,
// a restore, a chunk out of order, or for any other list, the commit adds
// the codes itself, with the same outcome. Writer only.
type stagedPool struct {
	list       *pool.List
	next       uint32 // the chunk it expects
	imported   uint64
	duplicates uint64
}

// maxExpect bounds the codes an ImportChunk.Expect sizes a pool's index
// for (at most about 80 MiB of index; beyond, the index grows as usual):
// the estimate comes from a Content-Length that the body may never reach.
const maxExpect = 1 << 23

// stageInPool adds the codes of chunk c to its upload's staged pool; first
// says the chunk opened the upload.
func (a *applier) stageInPool(c *ImportChunk, first bool) {
	f := a.f
	sp := f.staged[c.Upload]
	if sp == nil {
		if !c.NewList || !first || c.Chunk != 0 {
			return
		}
		if f.staged == nil {
			f.staged = map[UploadID]*stagedPool{}
		}
		sp = &stagedPool{list: pool.NewList(true)}
		sp.list.GrowIndex(int(min(c.Expect, maxExpect)))
		f.staged[c.Upload] = sp
	}
	if !c.NewList || c.Chunk != sp.next {
		delete(f.staged, c.Upload) // the commit adds the codes itself
		return
	}
	batch := f.stagedCodes[:0]
	c.Codes.Each(func(code []byte) { batch = append(batch, code) })
	ok := true
	sp.list.AddMany(batch, func(_ int, _ uint32, added bool, err error) {
		switch {
		case err != nil:
			ok = false
		case added:
			sp.imported++
		default:
			sp.duplicates++
		}
	})
	clear(batch)
	f.stagedCodes = batch[:0]
	if !ok {
		delete(f.staged, c.Upload)
		return
	}
	sp.next++
}

// takeStagedPool removes the upload's staged pool and returns it if it
// holds all of the upload's chunks.
func (a *applier) takeStagedPool(id UploadID, chunks uint32) *stagedPool {
	sp := a.f.staged[id]
	delete(a.f.staged, id)
	if sp == nil || sp.next != chunks {
		return nil
	}
	return sp
}
