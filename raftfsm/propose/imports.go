package propose

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"time"

	"github.com/coupond/coupond/raftfsm"
)

const (
	// ImportChunkBytes is the payload of one staged import entry, kept
	// under raftfsm.MaxEntryBytes with room for the header; a withdrawal,
	// which is one entry, holds at most this many bytes of codes.
	ImportChunkBytes = raftfsm.MaxEntryBytes - 1024
	// importPipeline is how many import chunks may wait in Raft at once,
	// so reading the body overlaps with the log writes.
	importPipeline = 8
)

// Import is one import request apart from its body: a top-up of List, or
// the creation of a list (Create) with its first codes.
type Import struct {
	Tenant string
	Upload raftfsm.UploadID
	// Keyed uploads are named by the caller's idempotency key: a retry
	// names the same upload and gets the first answer, when its request
	// digest is the same (ImportBody.Digest).
	Keyed  bool
	List   uint64              // the list topped up; Create.ID on a create
	Create *raftfsm.CreateList // nil for a top-up
	// BodyLen is the body's length in bytes, -1 when unknown: a new
	// list's pool is sized from it once (raftfsm/staged.go).
	BodyLen int
	At      int64
}

// ImportBody is the codes of an import as the caller reads them.
type ImportBody interface {
	// Next returns the next code, or io.EOF after the last.
	Next() ([]byte, error)
	// Digest reads what is left of the body and returns the digest of the
	// whole request, which a keyed upload is bound to.
	Digest() ([sha256.Size]byte, error)
}

// SizedBody is an ImportBody whose length is known only once some of it
// was read (a compressed body: its length as sent times the ratio so far).
// EstimatedLen, asked when the first chunk goes out, answers the estimate
// in bytes, or -1 for none; Import.BodyLen is used then.
type SizedBody interface {
	ImportBody
	EstimatedLen() int
}

// Streaming reports whether this node is streaming the upload right now.
func (p *Proposer) Streaming(id raftfsm.UploadID) bool {
	_, ok := p.uploads.Load(id)
	return ok
}

// Import streams the body's codes into staged chunks, several in Raft at
// once, then commits them in one entry. Any failure aborts the upload:
// nothing of it becomes visible. Errors of the body come back as
// *BodyError.
func (p *Proposer) Import(imp Import, body ImportBody) (raftfsm.ImportResult, error) {
	start := time.Now()
	if _, busy := p.uploads.LoadOrStore(imp.Upload, struct{}{}); busy {
		return raftfsm.ImportResult{}, ErrUploadInProgress
	}
	defer p.uploads.Delete(imp.Upload)
	commit := &raftfsm.ImportCommit{Tenant: imp.Tenant, Upload: imp.Upload, List: imp.List, Create: imp.Create, At: imp.At}
	if imp.Keyed && p.fsm.UploadBound(imp.Upload) {
		return p.replayImport(body, commit)
	}
	chunks, err := p.stage(imp, body)
	if err != nil {
		return raftfsm.ImportResult{}, err
	}
	staged := time.Since(start)
	commit.Chunks = chunks
	if imp.Keyed {
		d, err := body.Digest()
		if err != nil {
			p.abort(imp.Upload, false)
			return raftfsm.ImportResult{}, &BodyError{Err: err}
		}
		commit.Request = d
	}
	v, err := p.Propose(commit)
	if err != nil {
		return raftfsm.ImportResult{}, err
	}
	res := v.(raftfsm.ImportResult)
	p.log.Info().Hex("list", binary.BigEndian.AppendUint64(nil, res.List)).Uint64("imported", res.Imported).
		Uint64("duplicates", res.Duplicates).Uint64("size", res.Size).Dur("staged", staged).Dur("took", time.Since(start)).Msg("import")
	return res, nil
}

// stage sends the body's codes as ImportChunk entries, importPipeline of
// them in Raft at once, and answers how many it sent.
func (p *Proposer) stage(imp Import, body ImportBody) (uint32, error) {
	var inflight []pending
	var failed error
	waitOldest := func() {
		f := inflight[0]
		inflight = inflight[1:]
		if _, err := p.wait(f, nil); err != nil && failed == nil {
			failed = err
		}
	}
	var chunks uint32
	block := make(raftfsm.CodeBlock, 0, ImportChunkBytes)
	send := func() {
		c := &raftfsm.ImportChunk{Tenant: imp.Tenant, Upload: imp.Upload, Chunk: chunks, Codes: block, At: imp.At}
		if imp.Create != nil && imp.Create.Dedupe {
			c.NewList = true
			if chunks == 0 {
				n := imp.BodyLen
				if sb, ok := body.(SizedBody); ok {
					if e := sb.EstimatedLen(); e > 0 {
						n = e
					}
				}
				c.Expect = expectedCodes(n, block)
			}
		}
		cmd := raftfsm.Encode(c)
		chunks++
		block = block[:0]
		if err := p.Writable(); err != nil {
			failed = err
			return
		}
		inflight = append(inflight, p.applyRaw(cmd))
		for len(inflight) >= importPipeline {
			waitOldest()
		}
	}
	var readErr error
	for failed == nil {
		code, err := body.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		if len(block)+1+len(code) > ImportChunkBytes {
			send()
		}
		block = block.AppendCode(code)
	}
	if readErr == nil && failed == nil && len(block) > 0 {
		send()
	}
	for len(inflight) > 0 {
		waitOldest()
	}
	if readErr == nil && failed == nil {
		return chunks, nil
	}
	if chunks > 0 {
		// After a 503-like failure (no leader, or a state machine that
		// cannot apply) the abort would fare no better: nobody waits for it.
		p.abort(imp.Upload, failed != nil && unavailable(failed))
	}
	if readErr != nil {
		return 0, &BodyError{Err: readErr}
	}
	return 0, failed
}

// abort drops an upload's staged chunks, best effort: a leader change
// leaves staged chunks that no commit will ever name; they are invisible
// either way, and the next leader drops them (AbortAbandonedUploads).
func (p *Proposer) abort(upload raftfsm.UploadID, background bool) {
	do := func() { p.Propose(&raftfsm.ImportAbort{Upload: upload}) }
	if background {
		go do()
	} else {
		do()
	}
}

// unavailable reports an error after which a further write would most
// likely fail the same way.
func unavailable(err error) bool {
	var re *RaftError
	return errors.As(err, &re) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrStateUnwritable) ||
		errors.Is(err, raftfsm.ErrUploadIncomplete)
}

// replayImport answers a retry of an upload its key is bound to already:
// it reads the body only to finish the digest, stages nothing, and lets the
// commit compare the digest with the bound one (the first answer, or
// raftfsm.ErrUploadReused).
func (p *Proposer) replayImport(body ImportBody, commit *raftfsm.ImportCommit) (raftfsm.ImportResult, error) {
	d, err := body.Digest()
	if err != nil {
		return raftfsm.ImportResult{}, &BodyError{Err: err}
	}
	commit.Request = d
	v, err := p.Propose(commit)
	if err != nil {
		return raftfsm.ImportResult{}, err
	}
	return v.(raftfsm.ImportResult), nil
}

// AbortAbandonedUploads drops the staged chunks of uploads that no
// handler will ever commit (staged under an earlier leader, or before a
// crash); uploads this node is streaming itself are left alone. Call it
// on a new leader once every earlier entry is applied. It answers how many
// it dropped; it gives up when stop closes.
func (p *Proposer) AbortAbandonedUploads(stop <-chan struct{}) (int, error) {
	ids, err := p.fsm.PendingUploads()
	if err != nil {
		return 0, err
	}
	dropped := 0
	for _, id := range ids {
		if p.Streaming(id) {
			continue
		}
		if _, err := p.applyUntil(&raftfsm.ImportAbort{Upload: id}, stop); err != nil {
			return dropped, err
		}
		dropped++
	}
	return dropped, nil
}

// expectedCodes estimates the codes of a body of length bytes (-1 when
// unknown) from its first chunk, whose codes each take about as many
// bytes in the CSV as in the block (a length byte for the line's end).
func expectedCodes(length int, first raftfsm.CodeBlock) uint32 {
	if length <= 0 || len(first) == 0 {
		return 0
	}
	est := float64(length) * float64(first.Count()) / float64(len(first))
	return uint32(min(est, math.MaxUint32))
}
