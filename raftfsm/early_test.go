package raftfsm

import (
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/raft"
)

// TestEarlyAnswersComeBeforeTheCommit: the commands of a batch entry that
// SetEarlyAnswers claims are answered one by one while the entry is
// applied, before its Pebble batch is committed, with the responses the
// entry's future gets; a client that reads its assignment right after its
// answer sees it through every reader, waiting for the commit if need be,
// and the settled index it reads covers the entry.
func TestEarlyAnswersComeBeforeTheCommit(t *testing.T) {
	tf := newTestFSM(t)
	alertSetup(tf)
	const n = 3
	cmds := make([][]byte, n)
	for i := range cmds {
		cmds[i] = Encode(&Allocate{Tenant: "acme", Send: fmt.Sprintf("s%d", i), Message: "m",
			Recipients: recipientBlock("r", i, 1), At: 10})
	}
	entry := Encode(&Batch{Commands: cmds})
	tf.index++
	index := tf.index

	var answers []*Response
	var appliedAtAnswer []uint64
	readErrs := make(chan error, 5)
	tf.f.SetEarlyAnswers(func(e []byte) func(int, *Response) {
		if unsafe.SliceData(e) != unsafe.SliceData(entry) {
			return nil
		}
		return func(i int, r *Response) {
			answers = append(answers, r)
			appliedAtAnswer = append(appliedAtAnswer, tf.f.AppliedIndex())
			if i == 0 {
				code := string(r.Value.(*AllocResult).Codes[0])
				for _, read := range clientReads(tf.f, "s0", "r0", code) {
					go func() { readErrs <- read() }()
				}
				go func() {
					if got := tf.f.SettledIndex(); got < index {
						readErrs <- fmt.Errorf("settled index %d after an early answer of entry %d", got, index)
						return
					}
					readErrs <- nil
				}()
			}
			if i == n-1 {
				// Not a timing assertion: it gives the readers started above
				// the time to run into the batch before it is committed.
				time.Sleep(30 * time.Millisecond)
			}
		}
	})
	out := tf.f.ApplyBatch([]*raft.Log{{Index: index, Type: raft.LogCommand, Data: entry}})

	if len(answers) != n {
		t.Fatalf("%d early answers, want %d", len(answers), n)
	}
	for i, at := range appliedAtAnswer {
		if at >= index {
			t.Errorf("answer %d given with the entry already committed (applied index %d)", i, at)
		}
	}
	final := out[0].(*Response).Value.(*BatchResponse).Responses
	for i := range final {
		if final[i] != answers[i] {
			t.Errorf("command %d: early answer %+v, future's %+v", i, answers[i], final[i])
		}
	}
	for range 5 {
		if err := <-readErrs; err != nil {
			t.Error(err)
		}
	}

	// An entry nobody here claims is answered through its future only.
	answers = nil
	r := tf.mustApply(&Batch{Commands: [][]byte{
		Encode(&Allocate{Tenant: "acme", Send: "s9", Message: "m", Recipients: recipientBlock("r", 9, 1), At: 11}),
		Encode(&Allocate{Tenant: "acme", Send: "s8", Message: "m", Recipients: recipientBlock("r", 8, 1), At: 11}),
	}}).(*BatchResponse)
	if len(answers) != 0 || len(r.Responses) != 2 || r.Responses[0].Err != nil {
		t.Fatalf("unclaimed entry: %d early answers, responses %+v", len(answers), r.Responses)
	}
}

// clientReads are the reads of an assignment a client can make once its
// allocation is answered; each reports what it missed.
func clientReads(f *FSM, send, recipient, code string) []func() error {
	return []func() error{
		func() error {
			h, err := f.RecipientHistory("acme", []byte(recipient))
			if err != nil || len(h) != 1 || h[0].Code != code || h[0].Send != send {
				return fmt.Errorf("history of %s: %+v, %v; want %s in %s", recipient, h, err, code, send)
			}
			return nil
		},
		func() error {
			info, err := f.CodeState("acme", 7, []byte(code))
			if err != nil || info.Assignment == nil || info.Assignment.Recipient != recipient {
				return fmt.Errorf("lookup of %s: %+v, %v; want it assigned to %s", code, info, err, recipient)
			}
			return nil
		},
		func() error {
			var got []string
			err := f.EachAssignment("acme", send, func(a *Assignment) error {
				got = append(got, a.Recipient+"="+a.Code)
				return nil
			})
			if err != nil || len(got) != 1 || got[0] != recipient+"="+code {
				return fmt.Errorf("assignments of %s: %v, %v; want %s=%s", send, got, err, recipient, code)
			}
			return nil
		},
		func() error {
			has, err := f.HasAssignment("acme", send, []byte(recipient))
			if err != nil || !has {
				return fmt.Errorf("%s has no assignment in %s (%v)", recipient, send, err)
			}
			return nil
		},
	}
}
