package httpapi_test

// Acceptance point (d): tenancy and tokens. A role × endpoint matrix over
// every Lists, Messages, Sends and Operators call, tokens kept only as hashes (Pebble state
// and Raft log), and no secret in any log line.

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"
)

// Columns of the matrix.
const (
	colOperator = iota
	colAdminA
	colSenderA
	colAdminB
	colNone
	colGarbage
	colRevoked
	numCols
)

var colNames = [numCols]string{"operator", "admin of A", "sender of A", "admin of B", "no token", "garbage token", "revoked token"}

// TestRoleMatrixOfListsAndOperatorsCalls calls every route of the Lists,
// Messages, Sends and Operators tables of SPEC §2 with each kind of token.
// Tenant A is the "default" tenant; "admin of B" on A's list, message or
// send must get 404 (never reveal it exists), on A's collection it sees its
// own tenant (an upsert of A's message id makes B's own message; a
// recipient's history is B's own, empty). A sender works with messages and
// sends but may not assign lists nor read a recipient's history. A refused
// call must change nothing.
func TestRoleMatrixOfListsAndOperatorsCalls(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	n.createTenant(t, "tenant-b")
	_, senderA := n.createToken(t, "default", "sender")
	_, adminB := n.createToken(t, "tenant-b", "admin")
	revokedID, revoked := n.createToken(t, "default", "admin")
	n.revokeToken(t, revokedID)
	garbage := "cpd_" + strings.Repeat("G", 43)
	tokens := [numCols]string{n.operator, n.admin, senderA, adminB, "", garbage, revoked}

	var seq atomic.Int64
	uniq := func(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }

	// aList makes a fresh list of tenant A with three codes, so destructive
	// calls never share state between cells.
	aList := func(t *testing.T) string {
		id := n.newList(t, n.admin, uniq("matrix"))
		n.topUp(t, n.admin, id, "M1\nM2\nM3\n")
		return id
	}
	type call struct {
		method, path string
		body         any
		// unchanged, if set, answers a snapshot of what the call could change;
		// a refused call must leave it equal.
		unchanged func(t *testing.T) string
	}
	listCall := func(method, suffix string, body any) func(t *testing.T) call {
		return func(t *testing.T) call {
			id := aList(t)
			return call{method, "/v1/lists/" + id + suffix, body, func(t *testing.T) string { return n.getListRaw(t, n.admin, id) }}
		}
	}
	listsOfA := func(t *testing.T) string { return strings.Join(n.listIDs(t, n.admin), ",") }
	// aFix makes a fresh list of tenant A with three codes and a message
	// assigned to it; aSend also opens a send of it holding one code and
	// gives one recipient a code.
	aFix := func(t *testing.T) fixture { return n.newFixture(t, n.admin, 3) }
	aSend := func(t *testing.T) (fixture, string) {
		f := aFix(t)
		id := uniq("send")
		n.openSend(t, n.admin, id, map[string]any{"message_id": f.msg, "expected_recipients": 2}, http.StatusCreated)
		n.alloc(t, n.admin, id, "", "first@example.com")
		return f, id
	}
	// snapshot answers the bodies of GETs as tenant A's admin.
	snapshot := func(paths ...string) func(t *testing.T) string {
		return func(t *testing.T) string {
			var b strings.Builder
			for _, p := range paths {
				r := n.do(t, "GET", p, n.admin, nil)
				fmt.Fprintf(&b, "%s %d %s\n", p, r.status, r.body)
			}
			return b.String()
		}
	}
	msgCall := func(method, suffix string, body func(f fixture) any) func(t *testing.T) call {
		return func(t *testing.T) call {
			f := aFix(t)
			return call{method, "/v1/messages/" + f.msg + suffix, body(f), snapshot("/v1/messages/"+f.msg, "/v1/lists/"+f.list)}
		}
	}
	sendCall := func(method, suffix string, body func(f fixture) any) func(t *testing.T) call {
		return func(t *testing.T) call {
			f, id := aSend(t)
			return call{method, "/v1/sends/" + id + suffix, body(f),
				snapshot("/v1/sends/"+id, "/v1/sends/"+id+"/assignments", "/v1/lists/"+f.list, "/v1/messages/"+f.msg)}
		}
	}
	none := func(fixture) any { return nil }
	tenants := func(t *testing.T) string { return string(n.do(t, "GET", "/v1/tenants", n.operator, nil).body) }

	const (
		OK   = http.StatusOK
		CR   = http.StatusCreated
		NC   = http.StatusNoContent
		E401 = http.StatusUnauthorized
		E403 = http.StatusForbidden
		E404 = http.StatusNotFound
		E422 = http.StatusUnprocessableEntity
	)
	// want: operator, admin A, sender A, admin B, no token, garbage, revoked.
	matrix := []struct {
		route string
		setup func(t *testing.T) call
		want  [numCols]int
	}{
		{"POST /v1/lists (JSON)", func(t *testing.T) call {
			return call{"POST", "/v1/lists", map[string]any{"name": uniq("json")}, listsOfA}
		}, [numCols]int{E403, CR, E403, CR, E401, E401, E401}},
		{"POST /v1/lists?name= (CSV)", func(t *testing.T) call {
			return call{"POST", "/v1/lists?name=" + uniq("csv"), "C1\nC2\n", listsOfA}
		}, [numCols]int{E403, CR, E403, CR, E401, E401, E401}},
		{"GET /v1/lists", func(t *testing.T) call {
			return call{"GET", "/v1/lists", nil, nil}
		}, [numCols]int{E403, OK, E403, OK, E401, E401, E401}},
		{"GET /v1/lists/{id}", listCall("GET", "", nil),
			[numCols]int{E403, OK, E403, E404, E401, E401, E401}},
		{"PATCH /v1/lists/{id}", listCall("PATCH", "", map[string]any{"name": "patched", "low_stock_threshold": 9}),
			[numCols]int{E403, OK, E403, E404, E401, E401, E401}},
		{"DELETE /v1/lists/{id}", listCall("DELETE", "", nil),
			[numCols]int{E403, NC, E403, E404, E401, E401, E401}},
		{"POST /v1/lists/{id}/codes", listCall("POST", "/codes", "M4\nM5\n"),
			[numCols]int{E403, OK, E403, E404, E401, E401, E401}},
		{"POST /v1/lists/{id}/codes/withdraw", listCall("POST", "/codes/withdraw", "M1\n"),
			[numCols]int{E403, OK, E403, E404, E401, E401, E401}},
		{"GET /v1/lists/{id}/codes/{code}", listCall("GET", "/codes/M2", nil),
			[numCols]int{E403, OK, E403, E404, E401, E401, E401}},
		{"PUT /v1/messages/{id}", msgCall("PUT", "", func(f fixture) any { return emailMsg("renamed") }),
			[numCols]int{E403, OK, OK, CR, E401, E401, E401}},
		{"GET /v1/messages/{id}", msgCall("GET", "", none),
			[numCols]int{E403, OK, OK, E404, E401, E401, E401}},
		{"PUT /v1/messages/{id}/coupon-list", func(t *testing.T) call {
			f := aFix(t)
			other := n.newList(t, n.admin, uniq("other"))
			return call{"PUT", "/v1/messages/" + f.msg + "/coupon-list", map[string]any{"list_id": other},
				snapshot("/v1/messages/"+f.msg, "/v1/lists/"+f.list, "/v1/lists/"+other)}
		}, [numCols]int{E403, OK, E403, E404, E401, E401, E401}},
		{"DELETE /v1/messages/{id}/coupon-list", msgCall("DELETE", "/coupon-list", none),
			[numCols]int{E403, NC, E403, E404, E401, E401, E401}},
		{"PUT /v1/sends/{id}", func(t *testing.T) call {
			f := aFix(t)
			id := uniq("send")
			return call{"PUT", "/v1/sends/" + id, map[string]any{"message_id": f.msg, "expected_recipients": 1},
				snapshot("/v1/sends/"+id, "/v1/lists/"+f.list)}
		}, [numCols]int{E403, CR, CR, E404, E401, E401, E401}},
		{"GET /v1/sends/{id}", sendCall("GET", "", none),
			[numCols]int{E403, OK, OK, E404, E401, E401, E401}},
		{"POST /v1/sends/{id}/codes", sendCall("POST", "/codes", func(f fixture) any {
			return map[string]any{"message_id": f.msg, "recipients": []string{"first@example.com", "second@example.com"}}
		}), [numCols]int{E403, OK, OK, E404, E401, E401, E401}},
		{"POST /v1/sends/{id}/close", sendCall("POST", "/close", none),
			[numCols]int{E403, OK, OK, E404, E401, E401, E401}},
		{"GET /v1/sends/{id}/assignments", sendCall("GET", "/assignments", none),
			[numCols]int{E403, OK, OK, E404, E401, E401, E401}},
		{"GET /v1/recipients/{recipient}/assignments", func(t *testing.T) call {
			aSend(t)
			return call{"GET", "/v1/recipients/first%40example%2Ecom/assignments", nil, nil}
		}, [numCols]int{E403, OK, E403, OK, E401, E401, E401}},
		{"POST /v1/tenants", func(t *testing.T) call {
			return call{"POST", "/v1/tenants", map[string]any{"id": uniq("t"), "name": "x"}, tenants}
		}, [numCols]int{CR, E403, E403, E403, E401, E401, E401}},
		{"GET /v1/tenants", func(t *testing.T) call {
			return call{"GET", "/v1/tenants", nil, nil}
		}, [numCols]int{OK, E403, E403, E403, E401, E401, E401}},
		{"POST /v1/tenants/{id}/tokens", func(t *testing.T) call {
			return call{"POST", "/v1/tenants/default/tokens", map[string]any{"role": "admin", "name": "m"}, nil}
		}, [numCols]int{CR, E403, E403, E403, E401, E401, E401}},
		{"DELETE /v1/tokens/{id}", func(t *testing.T) call {
			id, secret := n.createToken(t, "default", "admin")
			return call{"DELETE", "/v1/tokens/" + id, nil, func(t *testing.T) string {
				return fmt.Sprint(n.do(t, "GET", "/v1/lists", secret, nil).status)
			}}
		}, [numCols]int{NC, E403, E403, E403, E401, E401, E401}},
		{"GET /v1/cluster", func(t *testing.T) call {
			return call{"GET", "/v1/cluster", nil, nil}
		}, [numCols]int{OK, E403, E403, E403, E401, E401, E401}},
		{"POST /v1/cluster/nodes", func(t *testing.T) call {
			return call{"POST", "/v1/cluster/nodes", map[string]any{"id": "n2", "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2"}, nil}
		}, [numCols]int{E422, E403, E403, E403, E401, E401, E401}},
		{"DELETE /v1/cluster/nodes/{id}", func(t *testing.T) call {
			return call{"DELETE", "/v1/cluster/nodes/n2", nil, nil}
		}, [numCols]int{E404, E403, E403, E403, E401, E401, E401}},
		{"GET /healthz", func(t *testing.T) call { return call{"GET", "/healthz", nil, nil} },
			[numCols]int{OK, OK, OK, OK, OK, OK, OK}},
		{"GET /readyz", func(t *testing.T) call { return call{"GET", "/readyz", nil, nil} },
			[numCols]int{OK, OK, OK, OK, OK, OK, OK}},
		{"GET /metrics", func(t *testing.T) call { return call{"GET", "/metrics", nil, nil} },
			[numCols]int{OK, OK, OK, OK, OK, OK, OK}},
	}

	for _, row := range matrix {
		for col := 0; col < numCols; col++ {
			want := row.want[col]
			t.Run(row.route+"/"+colNames[col], func(t *testing.T) {
				c := row.setup(t)
				var before string
				if c.unchanged != nil {
					before = c.unchanged(t)
				}
				r := n.do(t, c.method, c.path, tokens[col], c.body)
				if r.status != want {
					t.Fatalf("%s %s as %s: %s, want %d", c.method, c.path, colNames[col], r, want)
				}
				code := map[int]string{E401: "unauthorized", E403: "forbidden", E404: "not_found", E422: "node_unreachable"}[want]
				if code != "" {
					wantError(t, r, want, code)
					if c.unchanged != nil {
						if after := c.unchanged(t); after != before {
							t.Fatalf("a refused call changed state:\nbefore %s\nafter  %s", before, after)
						}
					}
				}
			})
		}
	}
}

// quietPebbleLogger keeps the read-only Pebble of the test silent.
type quietPebbleLogger struct{ t testing.TB }

func (quietPebbleLogger) Infof(string, ...interface{}) {}
func (l quietPebbleLogger) Errorf(format string, args ...interface{}) {
	l.t.Logf("pebble: "+format, args...)
}
func (l quietPebbleLogger) Fatalf(format string, args ...interface{}) {
	l.t.Fatalf("pebble: "+format, args...)
}

// secretForms are the byte strings that must never be stored or logged for
// a secret: the whole token and its random part without the prefix.
func secretForms(secret string) []string {
	forms := []string{secret}
	if _, rest, ok := strings.Cut(secret, "_"); ok && len(rest) >= 16 {
		forms = append(forms, rest)
	}
	return forms
}

// TestTokensAreStoredOnlyAsHashes creates and uses tokens, closes the node,
// then scans every key and value of its Pebble state (opened read-only) and
// the bytes of every other file of the data folder (the Raft log raft.db
// included): no secret appears, while the sha256 of each live token does.
func TestTokensAreStoredOnlyAsHashes(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	n.createTenant(t, "hashes")
	secrets := map[string]string{"operator.token": n.operator, "admin.token": n.admin}
	live := []string{n.operator, n.admin}
	for i, c := range []struct{ tenant, role string }{{"default", "admin"}, {"default", "sender"}, {"hashes", "admin"}, {"hashes", "sender"}} {
		_, s := n.createToken(t, c.tenant, c.role)
		secrets[fmt.Sprintf("created %d", i)] = s
		live = append(live, s)
		wantStatus(t, n.do(t, "GET", "/v1/lists", s, nil), map[string]int{"admin": 200, "sender": 403}[c.role])
	}
	revID, revSecret := n.createToken(t, "hashes", "admin")
	secrets["revoked"] = revSecret
	n.revokeToken(t, revID)
	// Some list data as well, so the state is not only tokens.
	n.do(t, "POST", "/v1/lists?name=h", n.admin, "H1\nH2\n")

	if err := n.stop(); err != nil {
		t.Fatalf("cannot close node: %v", err)
	}

	db, err := pebble.Open(filepath.Join(n.dir, "state"), &pebble.Options{ReadOnly: true, Logger: quietPebbleLogger{t}})
	if err != nil {
		t.Fatalf("cannot open the state read-only: %v", err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	hashSeen := map[string]bool{}
	for it.First(); it.Valid(); it.Next() {
		keys++
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range secrets {
			for _, f := range secretForms(s) {
				if bytes.Contains(k, []byte(f)) || bytes.Contains(v, []byte(f)) {
					t.Errorf("secret of %s found in Pebble key %q", name, k)
				}
			}
		}
		for _, s := range live {
			h := sha256.Sum256([]byte(s))
			if bytes.Contains(k, h[:]) || bytes.Contains(v, h[:]) {
				hashSeen[s] = true
			}
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if keys == 0 || len(hashSeen) != len(live) {
		t.Fatalf("scan saw %d keys and %d of %d token hashes: the scan does not see the tokens", keys, len(hashSeen), len(live))
	}

	// Every other file of the data folder, raw: the Raft log, snapshots,
	// Pebble's own files.
	sawRaftLog := false
	err = filepath.WalkDir(n.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := filepath.Base(path)
		if base == "operator.token" || base == "admin.token" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if base == "raft.db" {
			sawRaftLog = true
			h := sha256.Sum256([]byte(revSecret))
			if !bytes.Contains(b, h[:]) {
				t.Errorf("raft.db does not hold the hash of a created token: is this the Raft log?")
			}
		}
		for name, s := range secrets {
			for _, f := range secretForms(s) {
				if bytes.Contains(b, []byte(f)) {
					t.Errorf("secret of %s found in %s", name, path)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawRaftLog {
		t.Fatal("no raft.db in the data folder")
	}
}

// TestLogsNeverContainSecrets runs a node at debug level with its logs in a
// buffer, exercises token creation, good, wrong and revoked tokens, imports
// (good and refused), then checks that no secret appears in any log line.
func TestLogsNeverContainSecrets(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	lg := zerolog.New(&buf).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	n := startNode(t, nodeOpts{log: &lg})

	wrong := "cpd_" + strings.Repeat("W", 43)
	secrets := map[string]string{"operator": n.operator, "admin": n.admin, "wrong": wrong}

	n.createTenant(t, "logs")
	_, adminL := n.createToken(t, "logs", "admin")
	_, senderL := n.createToken(t, "logs", "sender")
	revID, revoked := n.createToken(t, "logs", "admin")
	secrets["created admin"], secrets["created sender"], secrets["revoked"] = adminL, senderL, revoked

	// Good tokens.
	id := n.newList(t, adminL, "logged")
	n.topUp(t, adminL, id, "L1\nL2\nL3\n")
	n.do(t, "POST", "/v1/lists/"+id+"/codes/withdraw", adminL, "L1\n")
	n.do(t, "POST", "/v1/lists?name=big&header=true", adminL, "code\n"+codeLines("LOG-", 0, 2000))
	wantError(t, n.do(t, "POST", "/v1/lists/"+id+"/codes", adminL, "L4\nL5,x\n"), 400, "invalid_csv")
	n.do(t, "GET", "/v1/lists/"+id+"/codes/L2", adminL, nil)
	n.do(t, "GET", "/v1/cluster", n.operator, nil)
	n.do(t, "GET", "/v1/lists", n.admin, nil)
	// Wrong role, wrong and revoked tokens, a token in odd places.
	wantError(t, n.do(t, "GET", "/v1/lists", senderL, nil), 403, "forbidden")
	wantError(t, n.do(t, "GET", "/v1/lists", wrong, nil), 401, "unauthorized")
	wantError(t, n.send(t, req{method: "GET", path: "/v1/lists", authRaw: "Basic " + wrong}), 401, "unauthorized")
	wantError(t, n.send(t, req{method: "GET", path: "/v1/lists", authRaw: wrong}), 401, "unauthorized")
	n.revokeToken(t, revID)
	r := n.do(t, "GET", "/v1/lists/"+id, revoked, nil)
	wantError(t, r, 401, "unauthorized")
	if strings.Contains(string(r.body), revoked) {
		t.Fatal("a 401 answer echoes the token")
	}
	wantError(t, n.do(t, "GET", "/v1/lists/"+id, n.operator, nil), 403, "forbidden")
	wantError(t, n.do(t, "GET", "/v1/nothing", wrong, nil), 404, "not_found")

	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	logs := buf.String()
	// The capture works: request lines at debug, the import at info, the
	// token files' paths at start.
	for _, want := range []string{`"route":"lists.topup"`, `"message":"import"`, "operator.token", `"status":401`} {
		if !strings.Contains(logs, want) {
			t.Fatalf("logs lack %s; the capture is not working:\n%s", want, logs)
		}
	}
	for name, s := range secrets {
		for _, f := range secretForms(s) {
			if i := strings.Index(logs, f); i >= 0 {
				start := strings.LastIndexByte(logs[:i], '\n') + 1
				end := strings.IndexByte(logs[i:], '\n')
				if end < 0 {
					end = len(logs) - i
				}
				t.Errorf("the %s token appears in the logs: %s", name, logs[start:i+end])
			}
		}
	}
}

// TestLogsOfAMalformedRequestDoNotContainItsToken sends a request whose
// headers fasthttp cannot parse, after an Authorization header.
func TestLogsOfAMalformedRequestDoNotContainItsToken(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	lg := zerolog.New(&buf).Level(zerolog.DebugLevel)
	n := startNode(t, nodeOpts{log: &lg})

	c, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/lists HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: abc\r\n\r\n", n.admin)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [512]byte
	k, _ := c.Read(b[:])
	if !strings.HasPrefix(string(b[:k]), "HTTP/1.1 400") {
		t.Fatalf("malformed request answered %q", b[:k])
	}
	// fasthttp logs after it has answered; wait for the line, if any, to land.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(buf.String(), "error when serving connection") {
		time.Sleep(10 * time.Millisecond)
	}
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		for _, f := range secretForms(n.admin) {
			if strings.Contains(line, f) {
				t.Fatalf("the admin token appears in a log line: %s", line)
			}
		}
	}
}
