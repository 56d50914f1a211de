package daemon_test

import (
	"strings"
	"testing"

	"github.com/coupond/coupond/daemon"
)

// TestMemTableSizeConfig: --state-memtable-size and its variable, at its
// bounds and one past them.
func TestMemTableSizeConfig(t *testing.T) {
	f := func(args []string, env map[string]string, want int64, wantErr string) {
		t.Helper()
		var stderr strings.Builder
		c, err := daemon.ParseConfig(append([]string{"--data", t.TempDir()}, args...), func(k string) string { return env[k] }, &stderr)
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("%v %v: %v", args, env, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Fatalf("%v %v: error %v, want one with %q", args, env, err, wantErr)
		case wantErr == "" && c.MemTableSize != want:
			t.Fatalf("%v %v: memtable size %d, want %d", args, env, c.MemTableSize, want)
		}
	}
	f(nil, nil, daemon.DefaultMemTableSize, "")
	f([]string{"--state-memtable-size", "1MiB"}, nil, 1<<20, "")
	f([]string{"--state-memtable-size", "1GiB"}, nil, 1<<30, "")
	f(nil, map[string]string{"COUPOND_STATE_MEMTABLE_SIZE": "8MiB"}, 8<<20, "")
	f([]string{"--state-memtable-size", "2MiB"}, map[string]string{"COUPOND_STATE_MEMTABLE_SIZE": "8MiB"}, 2<<20, "")
	f([]string{"--state-memtable-size", "1048575"}, nil, 0, "between 1 MiB and 1024 MiB")
	f([]string{"--state-memtable-size", "1073741825"}, nil, 0, "between 1 MiB and 1024 MiB")
	f([]string{"--state-memtable-size", "lots"}, nil, 0, "--state-memtable-size")
}
