package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/httpapi/codecsv"
	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

type listJSON struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	Dedupe            bool   `json:"dedupe"`
	LowStockThreshold uint64 `json:"low_stock_threshold"`
	LowStock          bool   `json:"low_stock"`
	Added             uint64 `json:"added"`
	Available         uint64 `json:"available"`
	Reserved          uint64 `json:"reserved"`
	Used              uint64 `json:"used"`
	Withdrawn         uint64 `json:"withdrawn"`
	UsedOrDeleted     uint64 `json:"used_or_deleted"`
	CreatedAt         string `json:"created_at"`
}

// listDetailJSON is one list with the messages it is assigned to.
type listDetailJSON struct {
	listJSON
	AssignedMessages []assignedMessageJSON `json:"assigned_messages"`
}

type assignedMessageJSON struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Campaign       string `json:"campaign"`
	CampaignType   string `json:"campaign_type"`
	CampaignStatus string `json:"campaign_status"`
}

func toListJSON(v *raftfsm.ListView) listJSON {
	return listJSON{
		ID: formatListID(v.ID), Name: v.Name, Dedupe: v.Dedupe,
		LowStockThreshold: v.Threshold, LowStock: v.LowStock(),
		Added: v.Added, Available: v.Available, Reserved: v.Reserved,
		Used: v.Used, Withdrawn: v.Withdrawn,
		UsedOrDeleted: v.Added - v.Available - v.Reserved,
		CreatedAt:     rfc3339(v.CreatedAt),
	}
}

type importJSON struct {
	Imported   uint64 `json:"imported"`
	Duplicates uint64 `json:"duplicates"`
	Size       uint64 `json:"size"`
}

func toImportJSON(r raftfsm.ImportResult) importJSON {
	return importJSON{Imported: r.Imported, Duplicates: r.Duplicates, Size: r.Size}
}

func validName(field, name string) *apiError {
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		return badRequest(fmt.Sprintf("%s must be 1 to %d bytes of UTF-8", field, maxNameLen))
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return badRequest(fmt.Sprintf("%s must not contain control characters", field))
		}
	}
	return nil
}

// tenantList finds the list named by the path for the caller's tenant.
func (s *Server) tenantList(r *request) (*raftfsm.ListView, *apiError) {
	id, ok := parseListID(r.seg[2])
	if !ok {
		return nil, errNotFound
	}
	v, ok := s.state.List(r.token.Tenant, id)
	if !ok {
		return nil, errNotFound
	}
	return v, nil
}

func (s *Server) listLists(r *request) *apiError {
	views := s.state.Lists(r.token.Tenant)
	out := make([]listJSON, len(views))
	for i, v := range views {
		out[i] = toListJSON(v)
	}
	writeJSON(r.ctx, fasthttp.StatusOK, map[string]any{"lists": out})
	return nil
}

func (s *Server) getList(r *request) *apiError {
	v, e := s.tenantList(r)
	if e != nil {
		return e
	}
	out := listDetailJSON{listJSON: toListJSON(v), AssignedMessages: []assignedMessageJSON{}}
	for _, m := range s.state.MessagesOfList(r.token.Tenant, v.ID) {
		out.AssignedMessages = append(out.AssignedMessages, assignedMessageJSON{ID: m.ID, Name: m.Name,
			Campaign: m.Campaign, CampaignType: m.CampaignType, CampaignStatus: m.Status})
	}
	writeJSON(r.ctx, fasthttp.StatusOK, out)
	return nil
}

// createList makes an empty list from JSON, or with ?name= creates a list
// and imports its CSV body in one step.
func (s *Server) createList(r *request) *apiError {
	ctx := r.ctx
	if ctx.QueryArgs().Has("name") {
		return s.createAndImport(r)
	}
	var in struct {
		Name              *string `json:"name"`
		Dedupe            *bool   `json:"dedupe"`
		LowStockThreshold *uint64 `json:"low_stock_threshold"`
	}
	if e := s.decodeJSON(ctx, &in); e != nil {
		return e
	}
	if in.Name == nil {
		return badRequest("name is required")
	}
	if e := validName("name", *in.Name); e != nil {
		return e
	}
	c := &raftfsm.CreateList{Tenant: r.token.Tenant, ID: newID(), Name: *in.Name, Dedupe: true, At: s.now().UnixNano()}
	if in.Dedupe != nil {
		c.Dedupe = *in.Dedupe
	}
	if in.LowStockThreshold != nil {
		c.Threshold = *in.LowStockThreshold
	}
	if _, e := s.apply(c); e != nil {
		return e
	}
	v, ok := s.state.List(c.Tenant, c.ID)
	if !ok {
		return unavailable("the list was created but is not readable yet; read it again")
	}
	writeJSON(ctx, fasthttp.StatusCreated, toListJSON(v))
	return nil
}

func (s *Server) createAndImport(r *request) *apiError {
	ctx := r.ctx
	name := string(ctx.QueryArgs().Peek("name"))
	if e := validName("name", name); e != nil {
		return e
	}
	dedupe, e := queryBool(ctx, "dedupe", true)
	if e != nil {
		return e
	}
	header, e := queryBool(ctx, "header", false)
	if e != nil {
		return e
	}
	c := &raftfsm.CreateList{Tenant: r.token.Tenant, ID: newID(), Name: name, Dedupe: dedupe, At: s.now().UnixNano()}
	res, e := s.importCSV(ctx, r.token.Tenant, header, c.ID, c, importTarget{route: "create", name: name, dedupe: dedupe})
	if e != nil {
		return e
	}
	v, ok := s.state.List(c.Tenant, res.List)
	if !ok {
		return unavailable("the list was created but is not readable yet; read it again")
	}
	writeJSON(ctx, fasthttp.StatusCreated, map[string]any{"list": toListJSON(v), "import": toImportJSON(res)})
	return nil
}

func (s *Server) topUp(r *request) *apiError {
	v, e := s.tenantList(r)
	if e != nil {
		return e
	}
	header, e := queryBool(r.ctx, "header", false)
	if e != nil {
		return e
	}
	res, e := s.importCSV(r.ctx, r.token.Tenant, header, v.ID, nil, importTarget{route: "topup", list: v.ID})
	if e != nil {
		return e
	}
	writeJSON(r.ctx, fasthttp.StatusOK, toImportJSON(res))
	return nil
}

// csvBody checks the declared size and returns the body, cut at the limit.
func (s *Server) csvBody(ctx *fasthttp.RequestCtx) (*limitedBody, *apiError) {
	if cl := ctx.Request.Header.ContentLength(); cl > 0 && int64(cl) > s.cfg.MaxBody {
		return nil, errTooLarge
	}
	return &limitedBody{r: bodyStream(ctx), n: s.cfg.MaxBody}, nil
}

// csvError maps a reader error to the API's answer.
func csvError(err error) *apiError {
	var ce *codecsv.Error
	switch {
	case errors.As(err, &ce):
		return newError(fasthttp.StatusBadRequest, "invalid_csv", fmt.Sprintf("line %d: %s", ce.Line, ce.Reason)).
			with("line", ce.Line).with("reason", ce.Reason)
	case errors.Is(err, errBodyTooLarge):
		return errTooLarge
	}
	return badRequest("cannot read the request body")
}

// uploadID names an import. With an Idempotency-Key header a retried
// request names the same upload, so it gets the first answer instead of
// importing again; without one every request is a new upload.
func uploadID(ctx *fasthttp.RequestCtx, tenant string) raftfsm.UploadID {
	var id raftfsm.UploadID
	key := ctx.Request.Header.Peek("Idempotency-Key")
	if len(key) == 0 {
		rand.Read(id[:])
		return id
	}
	h := sha256.New()
	h.Write([]byte("import\x00"))
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write(key)
	copy(id[:], h.Sum(nil))
	return id
}

// importTarget is what an import request does apart from its body: top up
// a list, or create one with a name and a de-duplication setting.
type importTarget struct {
	route  string // "topup" or "create"
	list   uint64 // topup
	name   string // create
	dedupe bool   // create
}

// requestDigest starts the digest an Idempotency-Key is bound to: tenant
// (already in the upload id), method and path are fixed by the route and
// its target, then the parameters; the body is written as it is read. A
// retry with the same key and another digest is another request.
// Changing these bytes makes every retry of an upload bound by an earlier
// release answer 409: bump the leading tag only with that in mind.
func requestDigest(t importTarget, header bool) hash.Hash {
	h := sha256.New()
	var b []byte
	b = appendField(b, "POST import v1")
	b = appendField(b, t.route)
	b = appendField(b, formatListID(t.list))
	b = appendField(b, t.name)
	b = appendField(b, strconv.FormatBool(t.dedupe))
	b = appendField(b, strconv.FormatBool(header))
	h.Write(b)
	return h
}

// appendField appends s with its length, so no two field lists write the same bytes.
func appendField(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// importBody reads an import's CSV body for the proposer, and digests
// the request for a keyed upload.
type importBody struct {
	rd     *codecsv.Reader
	body   io.Reader
	digest hash.Hash // nil: no Idempotency-Key
}

func (b *importBody) Next() ([]byte, error) { return b.rd.Next() }

func (b *importBody) Digest() ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	if b.digest == nil {
		return d, nil
	}
	if _, err := io.Copy(b.digest, b.body); err != nil {
		return d, err
	}
	copy(d[:], b.digest.Sum(nil))
	return d, nil
}

// importCSV streams a CSV body through the proposer's import (staged
// chunks, then one commit). Any failure leaves nothing of it visible.
func (s *Server) importCSV(ctx *fasthttp.RequestCtx, tenant string, header bool, list uint64, create *raftfsm.CreateList, target importTarget) (raftfsm.ImportResult, *apiError) {
	body, e := s.csvBody(ctx)
	if e != nil {
		return raftfsm.ImportResult{}, e
	}
	key := ctx.Request.Header.Peek("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		return raftfsm.ImportResult{}, badRequest(fmt.Sprintf("Idempotency-Key is longer than %d bytes", maxIdempotencyKey))
	}
	in := &importBody{body: body}
	var src io.Reader = body
	if len(key) > 0 {
		in.digest = requestDigest(target, header)
		src = io.TeeReader(body, in.digest)
	}
	in.rd = codecsv.NewReader(src, header)
	imp := propose.Import{Tenant: tenant, Upload: uploadID(ctx, tenant), Keyed: len(key) > 0, List: list, Create: create,
		BodyLen: ctx.Request.Header.ContentLength(), At: s.now().UnixNano()}
	res, err := s.prop.Import(imp, in)
	if err != nil {
		return raftfsm.ImportResult{}, fromApply(err)
	}
	return res, nil
}

func (s *Server) updateList(r *request) *apiError {
	v, e := s.tenantList(r)
	if e != nil {
		return e
	}
	var in struct {
		Name              *string `json:"name"`
		LowStockThreshold *uint64 `json:"low_stock_threshold"`
	}
	if e := s.decodeJSON(r.ctx, &in); e != nil {
		return e
	}
	c := &raftfsm.UpdateList{Tenant: r.token.Tenant, ID: v.ID}
	if in.Name != nil {
		if e := validName("name", *in.Name); e != nil {
			return e
		}
		c.SetName, c.Name = true, *in.Name
	}
	if in.LowStockThreshold != nil {
		c.SetThreshold, c.Threshold = true, *in.LowStockThreshold
	}
	if _, e := s.apply(c); e != nil {
		return e
	}
	v, ok := s.state.List(c.Tenant, c.ID)
	if !ok {
		return errNotFound // deleted in the meantime
	}
	writeJSON(r.ctx, fasthttp.StatusOK, toListJSON(v))
	return nil
}

func (s *Server) deleteList(r *request) *apiError {
	v, e := s.tenantList(r)
	if e != nil {
		return e
	}
	if _, e := s.apply(&raftfsm.DeleteList{Tenant: r.token.Tenant, ID: v.ID}); e != nil {
		return e
	}
	r.ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

func (s *Server) withdraw(r *request) *apiError {
	v, e := s.tenantList(r)
	if e != nil {
		return e
	}
	body, e := s.csvBody(r.ctx)
	if e != nil {
		return e
	}
	header, e := queryBool(r.ctx, "header", false)
	if e != nil {
		return e
	}
	rd := codecsv.NewReader(body, header)
	var block raftfsm.CodeBlock
	for {
		code, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return csvError(err)
		}
		if len(block)+1+len(code) > propose.ImportChunkBytes {
			return newError(fasthttp.StatusRequestEntityTooLarge, "payload_too_large",
				fmt.Sprintf("one withdrawal holds at most %d bytes of codes; split it", propose.ImportChunkBytes))
		}
		block = block.AppendCode(code)
	}
	out, e := s.apply(&raftfsm.Withdraw{Tenant: r.token.Tenant, List: v.ID, Codes: block})
	if e != nil {
		return e
	}
	res := out.(raftfsm.WithdrawResult)
	writeJSON(r.ctx, fasthttp.StatusOK, map[string]uint64{
		"withdrawn": res.Withdrawn, "not_found": res.NotFound, "already_used": res.AlreadyUsed})
	return nil
}

func (s *Server) getCode(r *request) *apiError {
	v, e := s.tenantList(r)
	if e != nil {
		return e
	}
	code := r.seg[4]
	info, err := s.state.CodeState(r.token.Tenant, v.ID, []byte(code))
	if err != nil {
		return newError(fasthttp.StatusNotFound, "not_found", "no such code in this list")
	}
	out := map[string]any{"code": info.Code, "state": info.State.String()}
	if info.Assignment != nil {
		a := info.Assignment
		out["assignment"] = map[string]any{"recipient": a.Recipient, "send_id": a.Send,
			"message_id": a.Message, "assigned_at": rfc3339(a.At)}
	}
	writeJSON(r.ctx, fasthttp.StatusOK, out)
	return nil
}
