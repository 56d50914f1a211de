package raftfsm

import (
	"context"
	"fmt"
)

// CompactAll flushes the memtable and rewrites every table of the state
// down to the last level, so a value overwritten before the call (a
// recipient an erasure replaced) is left in no table Pebble keeps; Pebble
// then deletes the tables it replaced. It is slow on a big state (it reads
// and writes all of it) and meant for an erasure, not for routine use;
// ctx ends the wait (a node closing), not a compaction under way.
func (f *FSM) CompactAll(ctx context.Context) error {
	// Every key starts with a printable prefix byte (keys.go), so these
	// bounds cover them all.
	if err := f.db.Compact(ctx, []byte{0}, []byte{0xff}, false); err != nil {
		return fmt.Errorf("cannot compact state: %w", err)
	}
	return nil
}
