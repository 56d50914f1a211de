package httpapi_test

// Compressed uploads (SPEC §4) on a real node: a gzip body imports,
// withdraws and allocates exactly as its plain form; the body limit holds
// for the decoded bytes (a gzip bomb is 413 and changes nothing); a corrupt
// or cut stream is 400 invalid_gzip and changes nothing; an encoding the
// call does not take is 415 with Accept-Encoding.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coupond/coupond/raftfsm/propose"
)

// gzipBytes compresses each part as one gzip member and joins them: a
// multi-member stream when there are several (RFC 1952 §2.2).
func gzipBytes(t testing.TB, parts ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, p := range parts {
		zw := gzip.NewWriter(&b)
		if _, err := zw.Write(p); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// gzipBest compresses b as tightly as gzip can: a bomb.
func gzipBest(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// encoded is one request with a Content-Encoding header.
type encoded struct {
	method, path, ctype string
	encoding            string // "" sends no Content-Encoding
	accept              string
	body                io.Reader
	size                int64        // -1: chunked
	client              *http.Client // nil: the node's (a 60 s timeout)
}

// sendEncoded sends q with the admin token and answers the checked answer.
func (n *testNode) sendEncoded(t testing.TB, q encoded) response {
	t.Helper()
	hr, err := http.NewRequest(q.method, n.base+q.path, q.body)
	if err != nil {
		t.Fatal(err)
	}
	hr.ContentLength = q.size
	if q.size < 0 {
		hr.Body = io.NopCloser(q.body) // hides the length from net/http
	}
	hr.Header.Set("Content-Type", q.ctype)
	if q.encoding != "" {
		hr.Header.Set("Content-Encoding", q.encoding)
	}
	if q.accept != "" {
		hr.Header.Set("Accept", q.accept)
	}
	hr.Header.Set("Authorization", "Bearer "+n.admin)
	c := q.client
	if c == nil {
		c = n.client
	}
	resp, err := c.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	checkOpenAPI(t, q.method, q.path, r)
	return r
}

// gzipCSV sends a gzip CSV body of known length.
func (n *testNode) gzipCSV(t testing.TB, path string, body []byte) response {
	t.Helper()
	return n.sendEncoded(t, encoded{method: "POST", path: path, ctype: "text/csv", encoding: "gzip",
		body: bytes.NewReader(body), size: int64(len(body))})
}

// stateDigest answers the node's state digest: equal digests, equal state.
func (n *testNode) stateDigest(t testing.TB) string {
	t.Helper()
	var d struct {
		Digest string `json:"digest"`
	}
	decode(t, n.do(t, "GET", "/v1/cluster/digest", n.operator, nil), http.StatusOK, &d)
	return d.Digest
}

// writeCodes writes n codes PREFIX%09d, one per line (11+len(prefix)
// bytes each), to w, compressed as one gzip member when gz.
func writeCodes(w io.Writer, prefix string, n int, gz bool) error {
	var zw *gzip.Writer
	if gz {
		zw, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		w = zw
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	line := []byte(prefix + "000000000\n")
	digits := line[len(prefix) : len(prefix)+9]
	for i := 0; i < n; i++ {
		v := i
		for k := 8; k >= 0; k-- {
			digits[k] = byte('0' + v%10)
			v /= 10
		}
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if zw != nil {
		return zw.Close()
	}
	return nil
}

// codeStream is writeCodes as a reader, made as it is read: a large upload
// is never held in memory.
func codeStream(prefix string, n int) io.Reader {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeCodes(pw, prefix, n, false)) }()
	return pr
}

type createdList struct {
	List   list         `json:"list"`
	Import importResult `json:"import"`
}

// importSame imports n codes into two new lists, once plain with its
// Content-Length and once gzip-compressed and chunked, and checks that
// the two lists are the same: the same counts, and (allocating up to
// checkOrder codes of each) the same codes in the same order, then a
// sample of lookups of codes past those.
func importSame(t *testing.T, n *testNode, codes, checkOrder int) {
	prefix := fmt.Sprintf("Z%d-", codes)
	// 10,000,000 codes under -race take minutes: no client timeout.
	slow := &http.Client{Transport: n.client.Transport}
	var plain, packed createdList
	decode(t, n.sendEncoded(t, encoded{method: "POST", path: "/v1/lists?name=plain", ctype: "text/csv",
		body: codeStream(prefix, codes), size: int64(codes * (len(prefix) + 10)), client: slow}), http.StatusCreated, &plain)
	// Compressed whole first, so it goes with a Content-Length: the server
	// then sizes the new list from the ratio it reads (propose.SizedBody);
	// chunked gzip uploads are the client's and couponctl's tests.
	var packedBody bytes.Buffer
	if err := writeCodes(&packedBody, prefix, codes, true); err != nil {
		t.Fatal(err)
	}
	decode(t, n.sendEncoded(t, encoded{method: "POST", path: "/v1/lists?name=packed", ctype: "text/csv", encoding: "gzip",
		body: bytes.NewReader(packedBody.Bytes()), size: int64(packedBody.Len()), client: slow}), http.StatusCreated, &packed)
	want := importResult{Imported: uint64(codes), Size: uint64(codes)}
	// The second list's codes all stand in the first one already.
	if wantPacked := (importResult{Imported: uint64(codes), Size: uint64(codes), InOtherLists: uint64(codes)}); plain.Import != want || packed.Import != wantPacked {
		t.Fatalf("imports: plain %+v, gzip %+v, want %+v", plain.Import, packed.Import, want)
	}
	if p, g := n.getList(t, n.admin, plain.List.ID).counts(), n.getList(t, n.admin, packed.List.ID).counts(); p != g {
		t.Fatalf("counts differ: plain %+v, gzip %+v", p, g)
	}

	// Allocation hands codes out in import order (FIFO): the same
	// sequence from both lists means the same list.
	var seqs [2][]string
	for i, id := range []string{plain.List.ID, packed.List.ID} {
		msg := fmt.Sprintf("m-%s", id)
		n.putMessage(t, n.admin, msg, emailMsg(msg))
		n.assignList(t, n.admin, msg, id)
		for from := 0; from < checkOrder; from += 100_000 {
			k := min(100_000, checkOrder-from)
			var recips bytes.Buffer
			for r := from; r < from+k; r++ {
				fmt.Fprintf(&recips, "r%d\n", r)
			}
			r := n.postRecipients(t, n.admin, "/v1/sends/s-"+id+"/codes?message_id="+msg, recips.Bytes(), "text/plain", "text/csv")
			for _, p := range parseCSVPairs(t, r) {
				seqs[i] = append(seqs[i], p.Code)
			}
		}
	}
	for i := range seqs[0] {
		if seqs[0][i] != seqs[1][i] {
			t.Fatalf("code %d: plain list gave %q, gzip list %q", i, seqs[0][i], seqs[1][i])
		}
	}
	if len(seqs[0]) != checkOrder || len(seqs[1]) != checkOrder || (checkOrder > 0 && seqs[0][checkOrder-1] != fmt.Sprintf("%s%09d", prefix, checkOrder-1)) {
		t.Fatalf("allocated %d and %d codes, want %d in import order", len(seqs[0]), len(seqs[1]), checkOrder)
	}
	// The rest: every 997th code is available in both lists.
	for i := checkOrder; i < codes; i += max(1, (codes-checkOrder)/997) {
		code := fmt.Sprintf("%s%09d", prefix, i)
		for _, id := range []string{plain.List.ID, packed.List.ID} {
			if st := n.codeState(t, n.admin, id, code); st != "available" {
				t.Fatalf("code %s in list %s: %q, want available", code, id, st)
			}
		}
	}
}

// TestGzipImportMatchesPlain is acceptance point e) at the size of make
// test; gzipSameCodes is 10,000,000 under -tags long.
func TestGzipImportMatchesPlain(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	importSame(t, n, gzipSameCodes, min(gzipSameCodes, 200_000))
}

func TestGzipUploads(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	f := n.newFixture(t, n.admin, 0)

	// Top-up in two gzip members, one of them empty; x-gzip and any case
	// are gzip; identity is no encoding.
	var res importResult
	decode(t, n.gzipCSV(t, "/v1/lists/"+f.list+"/codes", gzipBytes(t, []byte("G1\nG2\n"), nil, []byte("G3\r\nG2\n"))), http.StatusOK, &res)
	if res != (importResult{Imported: 3, Duplicates: 1, Size: 3}) {
		t.Fatalf("gzip top-up %+v", res)
	}
	for _, enc := range []string{"x-gzip", "GZip", "identity, gzip", " gzip ,identity"} {
		body := gzipBytes(t, []byte("G4\n"))
		decode(t, n.sendEncoded(t, encoded{method: "POST", path: "/v1/lists/" + f.list + "/codes", ctype: "text/csv", encoding: enc,
			body: bytes.NewReader(body), size: int64(len(body))}), http.StatusOK, &res)
	}
	decode(t, n.sendEncoded(t, encoded{method: "POST", path: "/v1/lists/" + f.list + "/codes?header=true", ctype: "text/csv", encoding: "identity",
		body: strings.NewReader("code\nG5\n"), size: 8}), http.StatusOK, &res)
	if res != (importResult{Imported: 1, Size: 5}) {
		t.Fatalf("identity top-up %+v", res)
	}

	// Withdrawal and a text/plain allocation and release, gzip-compressed.
	var wd map[string]uint64
	decode(t, n.gzipCSV(t, "/v1/lists/"+f.list+"/codes/withdraw", gzipBytes(t, []byte("G5\nNOPE\n"))), http.StatusOK, &wd)
	if wd["withdrawn"] != 1 || wd["not_found"] != 1 {
		t.Fatalf("gzip withdrawal %v", wd)
	}
	alloc := gzipBytes(t, []byte("a@x\r\nb@x\n"), []byte("a@x\n"))
	r := n.sendEncoded(t, encoded{method: "POST", path: "/v1/sends/s1/codes?message_id=" + f.msg, ctype: "text/plain", encoding: "gzip",
		body: bytes.NewReader(alloc), size: int64(len(alloc))})
	if got := decodeAlloc(t, r, []string{"a@x", "b@x", "a@x"}).codes(); strings.Join(got, ",") != "G1,G2,G1" {
		t.Fatalf("gzip allocation gave %v", got)
	}
	rel := gzipBytes(t, []byte("b@x\n"))
	var released map[string]uint64
	decode(t, n.sendEncoded(t, encoded{method: "POST", path: "/v1/sends/s1/release", ctype: "text/plain", encoding: "gzip",
		body: bytes.NewReader(rel), size: int64(len(rel))}), http.StatusOK, &released)
	if released["released"] != 1 {
		t.Fatalf("gzip release %v", released)
	}
	// A JSON allocation body may be compressed too: it is the same call.
	js := gzipBytes(t, []byte(`{"recipients": ["c@x"]}`))
	r = n.sendEncoded(t, encoded{method: "POST", path: "/v1/sends/s1/codes", ctype: "application/json", encoding: "gzip",
		body: bytes.NewReader(js), size: int64(len(js))})
	if got := decodeAlloc(t, r, []string{"c@x"}).codes(); got[0] == "G1" {
		t.Fatalf("gzip JSON allocation gave %v", got)
	}

	// An Idempotency-Key binds the decoded body: the same upload sent
	// plain and then compressed is one request, answered once.
	plain := []byte("K1\nK2\n")
	keyed := func(enc string, body []byte) importResult {
		hr, _ := http.NewRequest("POST", n.base+"/v1/lists/"+f.list+"/codes", bytes.NewReader(body))
		hr.Header.Set("Authorization", "Bearer "+n.admin)
		hr.Header.Set("Content-Type", "text/csv")
		hr.Header.Set("Idempotency-Key", "gzip-key")
		if enc != "" {
			hr.Header.Set("Content-Encoding", enc)
		}
		resp, err := n.client.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out importResult
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil {
			t.Fatalf("keyed upload (%q): %d %s", enc, resp.StatusCode, b)
		}
		return out
	}
	first := keyed("", plain)
	if again := keyed("gzip", gzipBytes(t, plain)); again != first || first.Imported != 2 {
		t.Fatalf("keyed upload: plain %+v, then gzip %+v", first, again)
	}
}

// TestGzipBombIs413 sends 10 KiB bodies that expand past --max-body.
func TestGzipBombIs413(t *testing.T) {
	t.Parallel()
	const maxBody = 4 << 20
	n := startNode(t, nodeOpts{maxBody: maxBody})
	f := n.newFixture(t, n.admin, 3)

	// The same line over and over: 4.5 MB (past 4 MiB) in under 10 KiB.
	bomb := gzipBest(t, bytes.Repeat([]byte("BOMB-CODE\n"), 450_000))
	recipBomb := gzipBest(t, bytes.Repeat([]byte("same@x\n"), 650_000))
	if len(bomb) > 10<<10 || len(recipBomb) > 10<<10 {
		t.Fatalf("bombs of %d and %d bytes", len(bomb), len(recipBomb))
	}
	// Exactly the limit decoded is fine; one byte more is not.
	var exact bytes.Buffer
	for i := 0; exact.Len() < maxBody; i++ {
		fmt.Fprintf(&exact, "E%014d\n", i)
	}
	over := append(append([]byte{}, exact.Bytes()...), 'X')

	before := n.stateDigest(t)
	lists := n.listIDs(t, n.admin)
	for _, c := range []struct {
		path, ctype string
		body        []byte
	}{
		{"/v1/lists/" + f.list + "/codes", "text/csv", bomb},
		{"/v1/lists/" + f.list + "/codes", "text/csv", gzipBytes(t, over)},
		{"/v1/lists/" + f.list + "/codes", "text/csv", gzipBytes(t, exact.Bytes()[:1<<20], exact.Bytes()[1<<20:], []byte("X"))},
		{"/v1/lists/" + f.list + "/codes/withdraw", "text/csv", bomb},
		{"/v1/lists?name=bomb", "text/csv", bomb},
		{"/v1/sends/s1/codes?message_id=" + f.msg, "text/plain", recipBomb},
		{"/v1/sends/s1/release", "text/plain", recipBomb},
	} {
		r := n.sendEncoded(t, encoded{method: "POST", path: c.path, ctype: c.ctype, encoding: "gzip", body: bytes.NewReader(c.body), size: int64(len(c.body))})
		wantError(t, r, http.StatusRequestEntityTooLarge, "payload_too_large")
	}
	if after := n.stateDigest(t); after != before {
		t.Fatal("a refused gzip body changed the state")
	}
	if after := n.listIDs(t, n.admin); strings.Join(after, ",") != strings.Join(lists, ",") {
		t.Fatal("a refused gzip body made a list")
	}

	var res importResult
	decode(t, n.gzipCSV(t, "/v1/lists/"+f.list+"/codes", gzipBytes(t, exact.Bytes())), http.StatusOK, &res)
	if want := uint64(exact.Len() / 16); res.Imported != want {
		t.Fatalf("an upload of exactly --max-body decoded: %+v, want %d imported", res, want)
	}
}

// TestCorruptGzipIs400 sends broken gzip streams: each is 400
// invalid_gzip and changes nothing, even where the part before the damage
// is valid CSV.
func TestCorruptGzipIs400(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	f := n.newFixture(t, n.admin, 3)

	var csvText bytes.Buffer
	for i := 0; i < 50_000; i++ {
		fmt.Fprintf(&csvText, "C%08d\n", i)
	}
	good := gzipBytes(t, csvText.Bytes())
	flipped := append([]byte{}, good...)
	flipped[len(flipped)/2] ^= 0xff
	badCRC := append([]byte{}, good...)
	badCRC[len(badCRC)-8] ^= 0x01 // the CRC-32 of the trailer
	badSize := append([]byte{}, good...)
	badSize[len(badSize)-1] ^= 0x01 // ISIZE of the trailer
	recips := gzipBytes(t, []byte("a@x\nb@x\n"))

	cases := map[string][]byte{
		"truncated":          good[:len(good)-100],
		"trailer cut":        good[:len(good)-4],
		"flipped byte":       flipped,
		"bad CRC":            badCRC,
		"bad ISIZE":          badSize,
		"not gzip":           csvText.Bytes()[:1000],
		"empty":              {},
		"garbage after":      append(append([]byte{}, good...), "tail"...),
		"header only":        good[:10],
		"second member torn": append(append([]byte{}, good...), gzipBytes(t, []byte("X1\n"))[:15]...),
	}
	before := n.stateDigest(t)
	lists := n.listIDs(t, n.admin)
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			for _, path := range []string{"/v1/lists/" + f.list + "/codes", "/v1/lists/" + f.list + "/codes/withdraw", "/v1/lists?name=corrupt"} {
				for _, size := range []int64{int64(len(body)), -1} {
					r := n.sendEncoded(t, encoded{method: "POST", path: path, ctype: "text/csv", encoding: "gzip", body: bytes.NewReader(body), size: size})
					if name == "flipped byte" && r.status == http.StatusBadRequest && strings.Contains(string(r.body), "invalid_csv") {
						// Damage inside the deflate data may decode to bytes
						// that break the CSV before the decoder can tell
						// (its CRC is at the end): refused all the same.
						t.Logf("%s: invalid_csv before the gzip check", path)
						continue
					}
					wantError(t, r, http.StatusBadRequest, "invalid_gzip")
				}
			}
			alloc := body
			if name == "truncated" || name == "flipped byte" {
				alloc = recips[:len(recips)-3]
			}
			for _, path := range []string{"/v1/sends/s1/codes?message_id=" + f.msg, "/v1/sends/s1/release"} {
				r := n.sendEncoded(t, encoded{method: "POST", path: path, ctype: "text/plain", encoding: "gzip", body: bytes.NewReader(alloc), size: int64(len(alloc))})
				wantError(t, r, http.StatusBadRequest, "invalid_gzip")
			}
		})
	}
	if after := n.stateDigest(t); after != before {
		t.Fatal("a corrupt gzip body changed the state")
	}
	if after := n.listIDs(t, n.admin); strings.Join(after, ",") != strings.Join(lists, ",") {
		t.Fatal("a corrupt gzip body made a list")
	}
	// The same body, whole, imports.
	var res importResult
	decode(t, n.gzipCSV(t, "/v1/lists/"+f.list+"/codes", good), http.StatusOK, &res)
	if res.Imported != 50_000 {
		t.Fatalf("the whole stream: %+v", res)
	}
}

// TestUnsupportedContentEncodingIs415: an encoding the call does not
// decode is refused before the body is read, with what it takes instead.
func TestUnsupportedContentEncodingIs415(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	f := n.newFixture(t, n.admin, 3)
	before := n.stateDigest(t)
	for _, c := range []struct {
		path, ctype, encoding, accept string
		body                          []byte
	}{
		{"/v1/lists/" + f.list + "/codes", "text/csv", "br", "gzip", []byte("B1\n")},
		{"/v1/lists/" + f.list + "/codes", "text/csv", "deflate", "gzip", []byte("B1\n")},
		{"/v1/lists/" + f.list + "/codes", "text/csv", "gzip, gzip", "gzip", gzipBytes(t, gzipBytes(t, []byte("B1\n")))},
		{"/v1/lists/" + f.list + "/codes/withdraw", "text/csv", "compress", "gzip", []byte("A\n")},
		{"/v1/lists?name=zstd", "text/csv", "zstd", "gzip", []byte("B1\n")},
		{"/v1/sends/s1/codes?message_id=" + f.msg, "text/plain", "br", "gzip", []byte("a@x\n")},
		// JSON calls take no encoding at all.
		{"/v1/lists", "application/json", "gzip", "identity", gzipBytes(t, []byte(`{"name": "z"}`))},
		{"/v1/messages/m-z", "application/json", "gzip", "identity", gzipBytes(t, []byte(`{}`))},
	} {
		r := n.sendEncoded(t, encoded{method: map[bool]string{true: "PUT", false: "POST"}[strings.HasPrefix(c.path, "/v1/messages")],
			path: c.path, ctype: c.ctype, encoding: c.encoding, body: bytes.NewReader(c.body), size: int64(len(c.body))})
		wantError(t, r, http.StatusUnsupportedMediaType, "unsupported_encoding")
		if got := r.header.Get("Accept-Encoding"); got != c.accept {
			t.Fatalf("%s with %q: Accept-Encoding %q, want %q", c.path, c.encoding, got, c.accept)
		}
	}
	if after := n.stateDigest(t); after != before {
		t.Fatal("a refused encoding changed the state")
	}
}

// A compressed import is handed to the proposer with no length
// (BodyLen -1) and an estimate of its decoded length from the ratio read
// so far, which sizes a new list's index; a plain one has its length.
func TestFakeGzipImportEstimatesItsLength(t *testing.T) {
	n := newFakeNode(t)
	id := n.addList("acme", 0x1234, 0)
	var plain bytes.Buffer
	for i := 0; i < 100_000; i++ {
		fmt.Fprintf(&plain, "EST-%08d\n", i)
	}
	r := n.do(fakeReq{method: "POST", path: "/v1/lists/" + id + "/codes", token: n.admin, ctype: "text/csv",
		body: string(gzipBytes(t, plain.Bytes())), headers: []string{"Content-Encoding: gzip"}})
	wantStatus(t, r, http.StatusOK)
	c := n.takeWrite("Import")
	if imp := c.arg.(propose.Import); imp.BodyLen != -1 || len(c.codes) != 100_000 {
		t.Fatalf("gzip import: BodyLen %d, %d codes", imp.BodyLen, len(c.codes))
	}
	if c.estimated != plain.Len() {
		t.Fatalf("decoded length estimated %d once read whole, want %d", c.estimated, plain.Len())
	}

	wantStatus(t, n.do(fakeReq{method: "POST", path: "/v1/lists/" + id + "/codes", token: n.admin, ctype: "text/csv",
		body: plain.String()}), http.StatusOK)
	c = n.takeWrite("Import")
	if imp := c.arg.(propose.Import); imp.BodyLen != plain.Len() || c.estimated != -1 {
		t.Fatalf("plain import: BodyLen %d, estimate %d", imp.BodyLen, c.estimated)
	}
}
