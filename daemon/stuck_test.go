package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// hangingFS holds every creation of a table file until released: Pebble's
// flushes neither finish nor fail, as on a disk that stopped answering.
type hangingFS struct {
	vfs.FS
	released chan struct{}
	once     sync.Once
}

func (fs *hangingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.HasSuffix(name, ".sst") {
		<-fs.released
	}
	return fs.FS.Create(name, c)
}

func (fs *hangingFS) release() { fs.once.Do(func() { close(fs.released) }) }

// TestWritesAnswerWhileTheStateIsStuck: when Pebble stalls its writes
// without reporting an error (its flush hangs), the state machine stops
// applying and nothing tells the API so; every kind of write is still
// answered, 503 unavailable with Retry-After, within the apply timeout.
// A stall that lasts makes the node not ready and refuse writes at once.
// Once the disk answers again, writes resume.
func TestWritesAnswerWhileTheStateIsStuck(t *testing.T) {
	const applyTimeout = 10 * time.Second // httpapi's
	fs := &hangingFS{FS: vfs.Default, released: make(chan struct{})}
	logs := &lockedBuffer{}
	cfg := Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", NodeID: "n1",
		LogFormat: "json", LogLevel: "warn", MemTableSize: 1 << 20, StateFS: fs}
	n, err := Start(cfg, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fs.release() // else Close waits for the stalled apply
		if err := n.Close(); err != nil {
			t.Errorf("cannot close the node: %v", err)
		}
	})
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, adminToken))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: applyTimeout + 10*time.Second}
	type answer struct {
		status     int
		retryAfter string
		body       string
		took       time.Duration
	}
	call := func(method, path, ctype string, body []byte) answer {
		req, err := http.NewRequest(method, "http://"+n.HTTPAddr()+path, bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return answer{}
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
		req.Header.Set("Content-Type", ctype)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return answer{body: err.Error(), took: time.Since(start)}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header.Get("Retry-After"), string(b), time.Since(start)}
	}
	codes := func(prefix string, count int) []byte {
		var b bytes.Buffer
		for i := range count {
			fmt.Fprintf(&b, "%s%09d\n", prefix, i)
		}
		return b.Bytes()
	}
	created := call("POST", "/v1/lists", "application/json", []byte(`{"name":"l"}`))
	var l struct{ ID string }
	if err := json.Unmarshal([]byte(created.body), &l); created.status != 201 || err != nil {
		t.Fatalf("list create: %+v (%v)", created, err)
	}
	list := l.ID
	if a := call("PUT", "/v1/messages/m", "application/json",
		[]byte(`{"name":"n","campaign":"c","campaign_type":"standard","channel":"email","doi":false}`)); a.status != 201 {
		t.Fatalf("message: %+v", a)
	}
	if a := call("PUT", "/v1/messages/m/coupon-list", "application/json", []byte(`{"list_id":"`+list+`"}`)); a.status != 200 {
		t.Fatalf("assign: %+v", a)
	}

	// Imports until Pebble stalls (two 1 MiB memtables wait for a flush
	// that hangs); the import that meets the stall must be answered too.
	var wg sync.WaitGroup
	answers := map[string]answer{}
	var mu sync.Mutex
	send := func(name, method, path, ctype string, body []byte) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := call(method, path, ctype, body)
			mu.Lock()
			answers[name] = a
			mu.Unlock()
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; !strings.Contains(logs.String(), "state writes stalled"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("Pebble has not stalled after %d imports:\n%s", i, logs)
		}
		send(fmt.Sprintf("filler import %d", i), "POST", "/v1/lists/"+list+"/codes", "text/csv", codes(fmt.Sprintf("F%d-", i), 50_000))
		time.Sleep(100 * time.Millisecond) // pace the imports; the loop polls the log
	}
	// Every kind of write, now that the state machine cannot apply.
	send("PUT message", "PUT", "/v1/messages/m2", "application/json",
		[]byte(`{"name":"n","campaign":"c","campaign_type":"standard","channel":"email","doi":false}`))
	send("create list", "POST", "/v1/lists", "application/json", []byte(`{"name":"l2"}`))
	send("import", "POST", "/v1/lists/"+list+"/codes", "text/csv", codes("I", 50_000))
	send("allocate", "POST", "/v1/sends/s1/codes", "application/json", []byte(`{"message_id":"m","recipients":["a@example.com"]}`))
	wg.Wait()
	for name, a := range answers {
		t.Logf("%s: %d after %s", name, a.status, a.took.Round(time.Millisecond))
		switch {
		case a.status == 0:
			t.Errorf("%s: no answer (%s after %s)", name, a.body, a.took)
		case a.took > applyTimeout+3*time.Second:
			t.Errorf("%s: answered %d after %s, past the apply timeout", name, a.status, a.took)
		case a.status/100 == 2 && !strings.HasPrefix(name, "filler"):
			t.Errorf("%s: answered %d while the state machine could not apply: %s", name, a.status, a.body)
		case a.status/100 != 2 && (a.status != 503 || a.retryAfter == "" || !strings.Contains(a.body, `"unavailable"`)):
			t.Errorf("%s: answered %d (Retry-After %q): %s", name, a.status, a.retryAfter, a.body)
		}
	}

	// The stall has lasted past stallLimit: the node says so, and refuses
	// writes at once instead of adding to the entries it cannot apply.
	ready, err := client.Get("http://" + n.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready.Body.Close()
	if ready.StatusCode != 503 {
		t.Errorf("/readyz answers %d while the state machine has not applied for %s", ready.StatusCode, applyTimeout)
	}
	if a := call("PUT", "/v1/messages/m2", "application/json",
		[]byte(`{"name":"n","campaign":"c","campaign_type":"standard","channel":"email","doi":false}`)); a.status != 503 ||
		!strings.Contains(a.body, "cannot write its state") {
		t.Errorf("a write during the stall answered %d: %s", a.status, a.body)
	}

	fs.release()
	deadline = time.Now().Add(30 * time.Second)
	for {
		a := call("PUT", "/v1/messages/m3", "application/json",
			[]byte(`{"name":"n","campaign":"c","campaign_type":"standard","channel":"email","doi":false}`))
		if a.status/100 == 2 {
			ready, err := client.Get("http://" + n.HTTPAddr() + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			ready.Body.Close()
			if ready.StatusCode != 200 {
				t.Errorf("/readyz answers %d once writes resumed", ready.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes have not resumed 30 s after the disk answered again: %+v", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
