package raftfsm

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
)

type raftLog struct {
	index    uint64
	data     []byte
	appended int64 // the leader's AppendedAt (unix ns); 0 = unset
}

func toRaftLogs(in []*raftLog) []*raft.Log {
	out := make([]*raft.Log, len(in))
	for i, l := range in {
		out[i] = &raft.Log{Index: l.index, Type: raft.LogCommand, Data: l.data}
		if l.appended != 0 {
			out[i].AppendedAt = time.Unix(0, l.appended)
		}
	}
	return out
}

type nopCloser struct{ io.Reader }

func (nopCloser) Close() error { return nil }

type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Errorf(string, ...interface{}) {}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}
