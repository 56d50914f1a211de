package raftfsm

import (
	"errors"
	"testing"
)

// TestNextCodeAndLiveAssignment: NextCode follows the next allocation
// (withdrawn codes skipped, a release's copy last) and changes no count;
// LiveAssignment answers a recipient's code in a send until it is
// released, also a fallback, and nothing for another tenant's send.
func TestNextCodeAndLiveAssignment(t *testing.T) {
	tf := orcFixture(t, 3)
	next := func(want string) {
		t.Helper()
		before := tf.f.Digest()
		v0, _ := tf.f.List("acme", 7)
		code, ok, err := tf.f.NextCode("acme", 7)
		if err != nil || ok != (want != "") || code != want {
			t.Fatalf("NextCode: %q %v %v, want %q", code, ok, err, want)
		}
		v1, _ := tf.f.List("acme", 7)
		if tf.f.Digest() != before || v0.Available != v1.Available || v0.Used != v1.Used {
			t.Fatal("NextCode changed the state")
		}
	}
	next("K00000")
	tf.mustApply(&Withdraw{Tenant: "acme", List: 7, Codes: CodeBlock(nil).AppendCode([]byte("K00000"))})
	next("K00001")
	orcAlloc(tf, "s1", 10, "a@x")
	next("K00002")
	orcAlloc(tf, "s1", 11, "b@x")
	next("")
	if _, _, err := tf.f.NextCode("other", 7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant's list: %v, want ErrNotFound", err)
	}

	live := func(send, r, want string) {
		t.Helper()
		a, ok, err := tf.f.LiveAssignment("acme", send, []byte(r))
		if err != nil || ok != (want != "") || a.Code != want || (ok && (a.List != 7 || a.Send != send || a.Recipient != r)) {
			t.Fatalf("LiveAssignment(%s, %s): %+v %v %v, want %q", send, r, a, ok, err, want)
		}
	}
	live("s1", "a@x", "K00001")
	live("s1", "b@x", "K00002")
	live("s1", "c@x", "")
	tf.mustApply(&Release{Tenant: "acme", Send: "s1", Recipients: orcBlock([]string{"a@x"}), At: 12})
	live("s1", "a@x", "")
	next("K00001") // the copy the release put at the end
	orcAlloc(tf, "s1", 13, "a@x")
	live("s1", "a@x", "K00001")
	next("")

	tf.mustApply(&UpdateList{Tenant: "acme", ID: 7, SetFallback: true, FallbackCode: "WELCOME"})
	tf.mustApply(&Allocate{Tenant: "acme", Send: "s2", Message: "msg", Recipients: orcBlock([]string{"a@x"}), At: 14, OnShortage: ShortageFallback})
	a, ok, err := tf.f.LiveAssignment("acme", "s2", []byte("a@x"))
	if err != nil || !ok || a.Code != "WELCOME" || !a.Fallback {
		t.Fatalf("a fallback assignment: %+v %v %v", a, ok, err)
	}
	live("s1", "a@x", "K00001") // each send its own
	if _, _, err := tf.f.LiveAssignment("other", "s1", []byte("a@x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant's send: %v, want ErrNotFound", err)
	}
	tf = tf.reopen()
	live("s1", "a@x", "K00001")
}
