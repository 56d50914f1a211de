package main

// Release of undelivered codes across kill -9 (SPEC §4 "Release of
// undelivered codes": a released code goes back to its list as available,
// each assignment is released at most once; §2: a 2xx is durable, a retry
// gets the same answer). A release too big for one Raft entry is applied in
// chunks: a crash between them leaves a prefix of the request released, and
// the retry finishes it. Acceptance test (e) of issue 17.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	relCodes    = 101_000 // the list: R00000000000 ... in import order
	relAssigned = 100_000 // recipients of the send; relCodes-relAssigned codes keep waiting
	relFirst    = 10_000  // released first: recipients 0, 10, 20, ...
	relBig      = 50_000  // then in one request: recipients i with i%10 in 1..5
	relRecipLen = 240     // bytes per recipient: the big release is ~12 MB, a dozen Raft entries
	relSend     = "rel"
	relMessage  = "m-rel"
)

// relRecipient is relRecipLen bytes long.
func relRecipient(i int) string {
	s := fmt.Sprintf("rel-%07d@", i)
	return s + strings.Repeat("mailbox.", relRecipLen/8)[:relRecipLen-len(s)-len("example")] + "example"
}

func init() {
	if len(relRecipient(0)) != relRecipLen || len(relRecipient(relAssigned-1)) != relRecipLen {
		panic("test helper: release recipients have the wrong length")
	}
}

// releaseJSON is the answer of POST /v1/sends/{id}/release.
type releaseJSON struct {
	Released        uint64 `json:"released"`
	NotAssigned     uint64 `json:"not_assigned"`
	AlreadyReleased uint64 `json:"already_released"`
}

// relAllocate allocates recipients (JSON) and answers their codes in order.
func relAllocate(t *testing.T, p *proc, admin string, recips []string) []string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"message_id": relMessage, "recipients": recips})
	var r allocJSON
	p.must(200, &r, "POST", "/v1/sends/"+relSend+"/codes", admin, "application/json", body)
	if len(r.Assignments) != len(recips) {
		t.Fatalf("allocation of %d recipients: %d assignments", len(recips), len(r.Assignments))
	}
	out := make([]string, len(recips))
	for i, a := range r.Assignments {
		if a.Recipient != recips[i] || a.Fallback {
			t.Fatalf("allocation: assignment %d is %+v, want a code for %q", i, a, recips[i])
		}
		out[i] = a.Code
	}
	return out
}

// relListCounts checks the counts of the list after released codes went
// back to it: used and available as given, released, nothing reserved or
// withdrawn, and the identity of SPEC §1.
func relListCounts(t *testing.T, what string, l lifecycleList, used, available, released uint64) {
	t.Helper()
	if !l.countsAddUp() || l.Added != relCodes || l.Used != used || l.Available != available ||
		l.Released != released || l.Reserved != 0 || l.Withdrawn != 0 || l.FallbackUsed != 0 {
		t.Fatalf("%s: list %+v, want used %d, available %d, released %d", what, l, used, available, released)
	}
}

// TestKill9MidChunkedRelease: a send of 100,000 recipients; 10,000 of them
// released; then a release of 50,000 others in one text/plain request of
// about 12 MB, killed with kill -9 at a random point (while it is applied
// in chunks, or before or after). After the restart a prefix of the big
// request is released and the rest is not; the retry of the same request
// releases the rest (released + already_released == 50,000). The list's
// counts follow, and a new allocation hands out the codes still waiting in
// import order first and then exactly the 60,000 returned codes, each once,
// in the order of their releases: no code held by two live assignments.
func TestKill9MidChunkedRelease(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	start := time.Now()
	// The subject is the disk across a kill, with 25 MB of recipients: the
	// plain binary (fallback_test.go runs the release path under -race).
	p := newProcOf(t, fastBinary(t))
	p.Start()
	admin := p.Token("admin.token")
	listID := p.createList(admin, "release", codesCSV("R", 0, relCodes))
	p.messageOnList(admin, relMessage, "Release", listID)

	// The send: recipient i gets code i of the import.
	recips := make([]string, relAssigned)
	for i := range recips {
		recips[i] = relRecipient(i)
	}
	codeOf := make(map[string]string, relAssigned) // recipient -> its first code
	for from := 0; from < relAssigned; from += 25_000 {
		for i, c := range relAllocate(t, p, admin, recips[from:from+25_000]) {
			if c != code("R", from+i) {
				t.Fatalf("recipient #%d got %s, want %s (import order)", from+i, c, code("R", from+i))
			}
			codeOf[recips[from+i]] = c
		}
	}
	relListCounts(t, "after the send", p.lifecycleList(admin, listID), relAssigned, relCodes-relAssigned, 0)
	sent := time.Since(start)

	// The first release, as JSON.
	var first, big []string
	for i, rc := range recips {
		switch i % 10 {
		case 0:
			first = append(first, rc)
		case 1, 2, 3, 4, 5:
			big = append(big, rc)
		}
	}
	if len(first) != relFirst || len(big) != relBig {
		panic("test plan: wrong release sizes")
	}
	firstBody, _ := json.Marshal(map[string]any{"recipients": first})
	var rel releaseJSON
	p.must(200, &rel, "POST", "/v1/sends/"+relSend+"/release", admin, "application/json", firstBody)
	if rel != (releaseJSON{Released: relFirst}) {
		t.Fatalf("first release: %+v", rel)
	}
	relListCounts(t, "after the first release", p.lifecycleList(admin, listID), relAssigned-relFirst, relCodes-relAssigned+relFirst, relFirst)
	if st := p.codeState(admin, listID, codeOf[first[7]]); st != "available" {
		t.Fatalf("a released code is %q, want available", st)
	}

	// The big release, killed when the list's released count reaches a
	// random target: mid-way through its chunks, or (a target past the
	// end) once it answered.
	bigBody := []byte(strings.Join(big, "\n") + "\n")
	if len(bigBody) < 8<<20 {
		panic("test plan: the big release must span several Raft entries")
	}
	target := uint64(relFirst + 1 + rng.IntN(relBig+relBig/4))
	type outcome struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan outcome, 1)
	go func() {
		st, b, err := p.try("POST", "/v1/sends/"+relSend+"/release", admin, "text/plain", bytes.NewReader(bigBody))
		done <- outcome{st, b, err}
	}()
	var seen uint64
	var answered *outcome
	for answered == nil && seen < target {
		select {
		case o := <-done:
			answered = &o
			continue
		default:
		}
		st, b, err := p.try("GET", "/v1/lists/"+listID, admin, "", nil)
		var l lifecycleList
		if err == nil && st == 200 && json.Unmarshal(b, &l) == nil {
			seen = l.Released
		}
		time.Sleep(time.Millisecond)
	}
	p.Kill9()
	if answered == nil {
		o := <-done
		answered = &o
	}
	t.Logf("kill -9 with target %d: released count last seen %d; the big release answered %d %v %.200s",
		target, seen, answered.status, answered.err, answered.body)
	if answered.err == nil && answered.status != 200 {
		t.Fatalf("the big release answered %d: %s", answered.status, answered.body)
	}

	// After the restart: a prefix of the big request is released (all of
	// it if it answered 200), nothing else changed.
	killed := time.Since(start)
	p.restart()
	restarted := time.Since(start)
	l := p.lifecycleList(admin, listID)
	cut := int(l.Released) - relFirst
	if cut < 0 || cut > relBig || l.Released < seen || answered.err == nil && cut != relBig {
		t.Fatalf("after kill -9: released %d (last seen %d before it, big release answered: %v)", l.Released, seen, answered.err == nil)
	}
	relListCounts(t, "after kill -9", l, relAssigned-l.Released, relCodes-relAssigned+l.Released, l.Released)
	exp := p.exportAssignments(admin, relSend)
	if len(exp) != relAssigned {
		t.Fatalf("after kill -9 the send exports %d assignments, want %d", len(exp), relAssigned)
	}
	wantReleased := map[string]bool{}
	for _, rc := range first {
		wantReleased[rc] = true
	}
	for _, rc := range big[:cut] {
		wantReleased[rc] = true
	}
	for _, a := range exp {
		if a.Code != codeOf[a.Recipient] || a.Fallback || (a.ReleasedAt != nil) != wantReleased[a.Recipient] {
			t.Fatalf("after kill -9 (%d of the big release released): export has %+v; its code was %s, released: want %v",
				cut, a, codeOf[a.Recipient], wantReleased[a.Recipient])
		}
	}
	t.Logf("after the restart %d of the %d recipients of the big release are released", cut, relBig)

	// The retry finishes the release.
	p.must(200, &rel, "POST", "/v1/sends/"+relSend+"/release", admin, "text/plain", bigBody)
	if rel.Released+rel.AlreadyReleased != relBig || rel.AlreadyReleased != uint64(cut) || rel.NotAssigned != 0 {
		t.Fatalf("retry of the big release after %d were released: %+v", cut, rel)
	}
	// Releasing again changes nothing; a recipient without a code is
	// counted as such.
	p.must(200, &rel, "POST", "/v1/sends/"+relSend+"/release", admin, "application/json", firstBody)
	if rel != (releaseJSON{AlreadyReleased: relFirst}) {
		t.Fatalf("second release of the first batch: %+v", rel)
	}
	p.must(200, &rel, "POST", "/v1/sends/"+relSend+"/release", admin, "text/plain", []byte(big[0]+"\nnobody@example.com\n"))
	if rel != (releaseJSON{NotAssigned: 1, AlreadyReleased: 1}) {
		t.Fatalf("release of a released recipient and an unknown one: %+v", rel)
	}
	const returned = relFirst + relBig
	relListCounts(t, "after the retry", p.lifecycleList(admin, listID), relAssigned-returned, relCodes-relAssigned+returned, returned)
	s, _, err := p.sendStateOf(admin, relSend)
	if err != nil || s.Assigned != relAssigned-returned {
		t.Fatalf("send after the releases: %+v %v, want %d assigned", s, err, relAssigned-returned)
	}
	if st := p.codeState(admin, listID, codeOf[big[relBig-1]]); st != "available" {
		t.Fatalf("the last code released is %q, want available", st)
	}

	// New recipients get the codes still waiting, in import order, then
	// the returned ones in the order of their releases: the first release's
	// codes, then the big release's.
	waiting := relCodes - relAssigned
	fresh := make([]string, waiting+returned)
	for i := range fresh {
		fresh[i] = fmt.Sprintf("new-%06d@example.com", i)
	}
	retried := time.Since(start)
	got := relAllocate(t, p, admin, fresh)
	for i := range waiting {
		if got[i] != code("R", relAssigned+i) {
			t.Fatalf("new recipient #%d got %s, want %s (codes never handed out come first)", i, got[i], code("R", relAssigned+i))
		}
	}
	codesOf := func(rs []string) []string {
		out := make([]string, len(rs))
		for i, rc := range rs {
			out[i] = codeOf[rc]
		}
		slices.Sort(out)
		return out
	}
	sorted := func(cs []string) []string { cs = slices.Clone(cs); slices.Sort(cs); return cs }
	if !slices.Equal(sorted(got[waiting:waiting+relFirst]), codesOf(first)) {
		t.Fatalf("the %d new recipients after the waiting codes did not get exactly the codes of the first release", relFirst)
	}
	if !slices.Equal(sorted(got[waiting+relFirst:]), codesOf(big)) {
		t.Fatalf("the last %d new recipients did not get exactly the codes of the big release", relBig)
	}
	relListCounts(t, "after the new allocation", p.lifecycleList(admin, listID), relCodes, 0, returned)
	s, _, err = p.sendStateOf(admin, relSend)
	if err != nil || s.Assigned != relCodes {
		t.Fatalf("send after the new allocation: %+v %v, want %d assigned", s, err, relCodes)
	}

	// The export: every assignment ever made, the released ones marked;
	// the live ones hold every code of the list once, and no recipient has
	// two.
	exp = p.exportAssignments(admin, relSend)
	if len(exp) != relAssigned+len(fresh) {
		t.Fatalf("the send exports %d assignments, want %d", len(exp), relAssigned+len(fresh))
	}
	liveCode := map[string]string{} // code -> recipient
	liveRc := map[string]string{}   // recipient -> code
	var released int
	for _, a := range exp {
		if a.ReleasedAt != nil {
			released++
			if !strings.HasPrefix(a.Recipient, "rel-") || codeOf[a.Recipient] != a.Code {
				t.Fatalf("export: released %+v, its code was %q", a, codeOf[a.Recipient])
			}
			continue
		}
		if other, dup := liveCode[a.Code]; dup {
			t.Fatalf("export: code %s held by two live assignments, %q and %q", a.Code, other, a.Recipient)
		}
		if other, dup := liveRc[a.Recipient]; dup {
			t.Fatalf("export: %q has two live assignments, %s and %s", a.Recipient, other, a.Code)
		}
		liveCode[a.Code], liveRc[a.Recipient] = a.Recipient, a.Code
	}
	if released != returned || len(liveCode) != relCodes {
		t.Fatalf("export: %d released and %d live assignments, want %d and %d", released, len(liveCode), returned, relCodes)
	}
	for i, rc := range fresh {
		if liveRc[rc] != got[i] {
			t.Fatalf("export: %q has %q live, the allocation answered %q", rc, liveRc[rc], got[i])
		}
	}
	// A code handed out again is looked up with its new assignment.
	reused := codeOf[first[0]]
	var look struct {
		State      string `json:"state"`
		Assignment struct {
			Recipient string `json:"recipient"`
		} `json:"assignment"`
	}
	p.must(200, &look, "GET", "/v1/lists/"+listID+"/codes/"+reused, admin, "", nil)
	if look.State != "assigned" || look.Assignment.Recipient != liveCode[reused] {
		t.Fatalf("lookup of %s: %+v, want assigned to %q", reused, look, liveCode[reused])
	}
	p.Stop()
	if logs := p.Logs.String(); strings.Contains(logs, "WARNING: DATA RACE") {
		logs = logs[strings.Index(logs, "WARNING: DATA RACE"):]
		t.Errorf("the race detector reported a data race in coupond:\n%s", logs[:min(len(logs), 6000)])
	}
	t.Logf("send done at %s, kill at %s, restarted at %s, release retried at %s, total %s", sent.Round(time.Millisecond),
		killed.Round(time.Millisecond), restarted.Round(time.Millisecond), retried.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
