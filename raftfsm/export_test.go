package raftfsm

import "github.com/hashicorp/raft"

// The FSM's API for this package's tests alone.

// ApplyCommand applies one encoded command outside Raft; index must grow
// with every call.
func (f *FSM) ApplyCommand(index uint64, data []byte) *Response {
	return f.ApplyBatch([]*raft.Log{{Index: index, Type: raft.LogCommand, Data: data}})[0].(*Response)
}

// HasAssignment reports whether recipient r has a code in the tenant's send
// (any goroutine; what the last applied entry left).
func (f *FSM) HasAssignment(tenant, send string, r []byte) (bool, error) {
	n, err := f.CountUnassigned(tenant, send, [][]byte{r})
	return n == 0, err
}
