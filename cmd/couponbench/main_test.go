package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestFailoverFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"failover"}, "failover needs --spawn-cluster 3 or more"},
		{[]string{"failover", "--spawn-cluster", "2"}, "failover needs --spawn-cluster 3 or more"},
		{[]string{"failover", "--spawn-cluster", "3", "--kills", "0"}, "--kills must be >= 1"},
		{[]string{"failover", "--spawn-cluster", "3", "--target", "follower"}, "--target follower does not apply"},
		{[]string{"failover", "--spawn-cluster", "3", "--kills", "x"}, "invalid value"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		if code := run(c.args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut.String(), c.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "  failover ") || !strings.Contains(out.String(), "-kills N") {
		t.Errorf("--help: exit %d\n%s", code, out.String())
	}
}
