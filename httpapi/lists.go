package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"time"
	"unicode"
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
	// SPEC §4: null when the list has no fallback code or no expiry.
	FallbackCode      *string `json:"fallback_code"`
	ExpiresAt         *string `json:"expires_at"`
	ExpiryWarningDays uint32  `json:"expiry_warning_days"`
	Expired           bool    `json:"expired"`
	Released          uint64  `json:"released"`
	FallbackUsed      uint64  `json:"fallback_used"`
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

// toListJSON answers a list as the API shows it; now (unix ns, this
// node's clock) decides "expired".
func toListJSON(v *raftfsm.ListView, now int64) listJSON {
	l := listJSON{
		ID: formatListID(v.ID), Name: v.Name, Dedupe: v.Dedupe,
		LowStockThreshold: v.Threshold, LowStock: v.LowStock(),
		Added: v.Added, Available: v.Available, Reserved: v.Reserved,
		Used: v.Used, Withdrawn: v.Withdrawn,
		UsedOrDeleted:     v.Added - v.Available - v.Reserved,
		CreatedAt:         rfc3339(v.CreatedAt),
		ExpiryWarningDays: v.WarnDays, Expired: v.Expired(now),
		Released: v.Released, FallbackUsed: v.FallbackUsed,
	}
	if v.FallbackCode != "" {
		l.FallbackCode = &v.FallbackCode
	}
	if v.HasExpiry {
		t := rfc3339(v.ExpiresAt)
		l.ExpiresAt = &t
	}
	return l
}

// maxWarnDays bounds expiry_warning_days: ten years.
const maxWarnDays = 3650

// validCode checks a code given in JSON (a fallback code) by the rules of
// an imported one (SPEC §1): 1 to 128 bytes of UTF-8, no control
// characters, no white space at either end.
func validCode(field, code string) *apiError {
	if code == "" || len(code) > codecsv.MaxCodeLen || !utf8.ValidString(code) {
		return badRequest(fmt.Sprintf("%s must be 1 to %d bytes of UTF-8", field, codecsv.MaxCodeLen))
	}
	for _, r := range code {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == 0x2028 || r == 0x2029 {
			return badRequest(fmt.Sprintf("%s must not contain control characters", field))
		}
	}
	first, _ := utf8.DecodeRuneInString(code)
	last, _ := utf8.DecodeLastRuneInString(code)
	if unicode.Is(unicode.White_Space, first) || unicode.Is(unicode.White_Space, last) {
		return badRequest(fmt.Sprintf("%s must not begin or end with white space", field))
	}
	return nil
}

// parseExpiry reads expires_at: RFC 3339 with any offset, kept as unix ns.
func parseExpiry(s string) (int64, *apiError) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, badRequest(fmt.Sprintf("expires_at %q is not an RFC 3339 time (2026-12-31T23:59:59Z)", s))
	}
	// UnixNano is defined for years 1678 to 2262 only.
	if t.Year() < 1970 || t.Year() > 2200 {
		return 0, badRequest("expires_at must lie between the years 1970 and 2200")
	}
	return t.UnixNano(), nil
}

func validWarnDays(d uint32) *apiError {
	if d > maxWarnDays {
		return badRequest(fmt.Sprintf("expiry_warning_days must be 0 to %d", maxWarnDays))
	}
	return nil
}

// nullable reads a JSON field that may be absent, null or a value.
type nullable[T any] struct {
	set, null bool // given at all; given as null
	v         T
}

func (n *nullable[T]) UnmarshalJSON(b []byte) error {
	n.set = true
	if string(b) == "null" {
		n.null = true
		return nil
	}
	return json.Unmarshal(b, &n.v)
}

type importJSON struct {
	Imported   uint64 `json:"imported"`
	Duplicates uint64 `json:"duplicates"`
	Size       uint64 `json:"size"`
	// InOtherLists: imported codes that another list of the tenant holds.
	InOtherLists uint64 `json:"in_other_lists"`
}

func toImportJSON(r raftfsm.ImportResult) importJSON {
	return importJSON{Imported: r.Imported, Duplicates: r.Duplicates, Size: r.Size, InOtherLists: r.InOtherLists}
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
	now := s.now().UnixNano()
	for i, v := range views {
		out[i] = toListJSON(v, now)
	}
	writeJSON(r.ctx, fasthttp.StatusOK, map[string]any{"lists": out})
	return nil
}

func (s *Server) getList(r *request) *apiError {
	v, e := s.tenantList(r)
	if e != nil {
		return e
	}
	out := listDetailJSON{listJSON: toListJSON(v, s.now().UnixNano()), AssignedMessages: []assignedMessageJSON{}}
	for _, m := range s.state.MessagesOfList(r.token.Tenant, v.ID) {
		out.AssignedMessages = append(out.AssignedMessages, assignedMessageJSON{ID: m.ID, Name: m.Name,
			Campaign: m.Campaign, CampaignType: m.CampaignType, CampaignStatus: m.Status})
	}
	writeJSON(r.ctx, fasthttp.StatusOK, out)
	return nil
}

// forecast answers whether the list lasts for a send of ?recipients=N,
// with the hold of ?send_id= counted (SPEC §4). Senders may call it,
// though the list itself is an admin's: it tells counts, never codes.
func (s *Server) forecast(r *request) *apiError {
	id, ok := parseListID(r.seg[2])
	if !ok {
		return errNotFound
	}
	args := r.ctx.QueryArgs()
	if !args.Has("recipients") {
		return badRequest("recipients is required: the number of recipients of the planned send")
	}
	n, err := strconv.ParseUint(string(args.Peek("recipients")), 10, 64)
	if err != nil {
		return badRequest("recipients must be a whole number")
	}
	send := ""
	if args.Has("send_id") {
		send = string(args.Peek("send_id"))
		if e := validID("send_id", send); e != nil {
			return e
		}
	}
	f, ferr := s.state.Forecast(r.token.Tenant, id, n, send, s.now().UnixNano())
	if ferr != nil {
		return fromApply(ferr)
	}
	out := forecastJSON{Recipients: f.Recipients, Needed: f.Needed, Available: f.Available, Reserved: f.Reserved,
		Shortfall: f.Shortfall, Enough: f.Enough, UsedLast7Days: f.UsedLast7Days, UsedPerDay: f.UsedPerDay,
		Expired: f.Expired}
	if f.RunsOutAt != 0 {
		t := rfc3339(f.RunsOutAt)
		out.RunsOutAt = &t
	}
	if f.HasExpiry {
		t := rfc3339(f.ExpiresAt)
		out.ExpiresAt = &t
	}
	writeJSON(r.ctx, fasthttp.StatusOK, out)
	return nil
}

type forecastJSON struct {
	Recipients    uint64  `json:"recipients"`
	Needed        uint64  `json:"needed"`
	Available     uint64  `json:"available"`
	Reserved      uint64  `json:"reserved"`
	Shortfall     uint64  `json:"shortfall"`
	Enough        bool    `json:"enough"`
	UsedLast7Days uint64  `json:"used_last_7_days"`
	UsedPerDay    float64 `json:"used_per_day"`
	RunsOutAt     *string `json:"runs_out_at"`
	ExpiresAt     *string `json:"expires_at"`
	Expired       bool    `json:"expired"`
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
		FallbackCode      *string `json:"fallback_code"` // null: none
		ExpiresAt         *string `json:"expires_at"`    // null: never
		ExpiryWarningDays *uint32 `json:"expiry_warning_days"`
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
	if in.FallbackCode != nil {
		if e := validCode("fallback_code", *in.FallbackCode); e != nil {
			return e
		}
		c.FallbackCode = *in.FallbackCode
	}
	if in.ExpiresAt != nil {
		at, e := parseExpiry(*in.ExpiresAt)
		if e != nil {
			return e
		}
		c.HasExpiry, c.ExpiresAt = true, at
	}
	if in.ExpiryWarningDays != nil {
		if e := validWarnDays(*in.ExpiryWarningDays); e != nil {
			return e
		}
		c.SetWarnDays, c.WarnDays = true, *in.ExpiryWarningDays
	}
	if _, e := s.apply(c); e != nil {
		return e
	}
	v, ok := s.state.List(c.Tenant, c.ID)
	if !ok {
		return unavailable("the list was created but is not readable yet; read it again")
	}
	writeJSON(ctx, fasthttp.StatusCreated, toListJSON(v, s.now().UnixNano()))
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
	writeJSON(ctx, fasthttp.StatusCreated, map[string]any{"list": toListJSON(v, s.now().UnixNano()), "import": toImportJSON(res)})
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

// csvBody checks the encoding and the declared size and returns the body,
// decoded when it came gzip-compressed and cut at the limit (gzip.go); gz
// tells whether it came compressed.
func (s *Server) csvBody(ctx *fasthttp.RequestCtx) (body io.Reader, gz bool, e *apiError) {
	return s.uploadBody(ctx, s.cfg.MaxBody)
}

// csvError maps a reader error to the API's answer.
func csvError(err error) *apiError {
	var ce *codecsv.Error
	switch {
	case errors.As(err, &ce):
		return newError(fasthttp.StatusBadRequest, "invalid_csv", fmt.Sprintf("line %d: %s", ce.Line, ce.Reason)).
			with("line", ce.Line).with("reason", ce.Reason)
	}
	return bodyReadError(err)
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
	// gz is the body when it came compressed, declared its length as sent.
	gz       *decodedBody
	declared int
}

// EstimatedLen estimates a compressed body's decoded length (propose.SizedBody).
func (b *importBody) EstimatedLen() int {
	if b.gz == nil {
		return -1
	}
	return b.gz.estimatedLen(b.declared)
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
	body, gz, e := s.csvBody(ctx)
	if e != nil {
		return raftfsm.ImportResult{}, e
	}
	bodyLen := ctx.Request.Header.ContentLength()
	if gz {
		bodyLen = -1 // the decoded length is unknown until the end
	}
	key := ctx.Request.Header.Peek("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		return raftfsm.ImportResult{}, badRequest(fmt.Sprintf("Idempotency-Key is longer than %d bytes", maxIdempotencyKey))
	}
	in := &importBody{body: body}
	if gz {
		in.gz, in.declared = body.(*decodedBody), ctx.Request.Header.ContentLength()
	}
	var src io.Reader = body
	if len(key) > 0 {
		in.digest = requestDigest(target, header)
		src = io.TeeReader(body, in.digest)
	}
	in.rd = codecsv.NewReader(src, header)
	imp := propose.Import{Tenant: tenant, Upload: uploadID(ctx, tenant), Keyed: len(key) > 0, List: list, Create: create,
		BodyLen: bodyLen, At: s.now().UnixNano()}
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
		Name              *string          `json:"name"`
		LowStockThreshold *uint64          `json:"low_stock_threshold"`
		FallbackCode      nullable[string] `json:"fallback_code"` // null clears it
		ExpiresAt         nullable[string] `json:"expires_at"`    // null: never
		ExpiryWarningDays nullable[uint32] `json:"expiry_warning_days"`
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
	if f := in.FallbackCode; f.set {
		c.SetFallback = true
		if !f.null {
			if e := validCode("fallback_code", f.v); e != nil {
				return e
			}
			c.FallbackCode = f.v
		}
	}
	if x := in.ExpiresAt; x.set {
		c.SetExpiry = true
		if !x.null {
			at, e := parseExpiry(x.v)
			if e != nil {
				return e
			}
			c.HasExpiry, c.ExpiresAt = true, at
		}
	}
	if d := in.ExpiryWarningDays; d.set {
		if d.null {
			return badRequest("expiry_warning_days must be a number (0 turns the warning off)")
		}
		if e := validWarnDays(d.v); e != nil {
			return e
		}
		c.SetWarnDays, c.WarnDays = true, d.v
	}
	if _, e := s.apply(c); e != nil {
		return e
	}
	v, ok := s.state.List(c.Tenant, c.ID)
	if !ok {
		return errNotFound // deleted in the meantime
	}
	writeJSON(r.ctx, fasthttp.StatusOK, toListJSON(v, s.now().UnixNano()))
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
	body, _, e := s.csvBody(r.ctx)
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
