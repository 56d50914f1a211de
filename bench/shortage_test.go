package bench

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// --on-shortage (SPEC §4): the sends open with the policy, and with
// fallback the list gets the harness's fallback code first. A big send
// imports a code per recipient, so it must never see the fallback.
func TestBigSendOnShortage(t *testing.T) {
	for _, policy := range []string{ShortageReject, ShortageFallback} {
		for _, reserve := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reserve=%v", policy, reserve), func(t *testing.T) {
				api, srv := fakeServer(t)
				cfg, out, errOut := sendConfig(t, "big-send", srv, "tok")
				cfg.OnShortage, cfg.Reserve, cfg.Parallel = policy, reserve, 2
				if err := Run(context.Background(), cfg); err != nil {
					t.Fatalf("Run: %v\nstderr: %s", err, errOut)
				}
				noProblems(t, api)
				_, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
				if m["on_shortage"] != policy || m["fallbacks"] != 0.0 || m["codes"] != 10000.0 {
					t.Fatalf("result: %s", out)
				}
				if len(api.sends) != 2 {
					t.Fatalf("%d sends", len(api.sends))
				}
				for id, s := range api.sends {
					if s.onShortage != policy {
						t.Fatalf("send %s opened with on_shortage %q, want %q (reserve %v)", id, s.onShortage, policy, reserve)
					}
				}
				l := onlyList(t, api)
				if fc := l.FallbackCode; (policy == ShortageFallback) != (fc != nil && *fc == FallbackCode) {
					t.Fatalf("fallback code of the list: %v", fc)
				}
				if !strings.Contains(errOut.String(), "on_shortage="+policy) {
					t.Fatalf("summary: %s", errOut)
				}
			})
		}
	}
}

// A server that hands out the fallback while the list still has codes
// fails the check.
func TestBigSendCatchesEarlyFallback(t *testing.T) {
	api, srv := fakeServer(t)
	api.fbEarly = true
	cfg, out, _ := sendConfig(t, "big-send", srv, "tok")
	cfg.OnShortage = ShortageFallback
	err := Run(context.Background(), cfg)
	wantCheckError(t, err, out, "got the fallback code, though the list had a code for each")
}

// Without --on-shortage nothing is sent about it, and a fallback answer is
// a failed check (the run set no fallback code).
func TestBigSendDefaultPolicy(t *testing.T) {
	api, srv := fakeServer(t)
	cfg, out, errOut := sendConfig(t, "big-send", srv, "tok")
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	_, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
	if _, ok := m["on_shortage"]; ok {
		t.Fatalf("result: %s", out)
	}
	for id, s := range api.sends {
		if s.onShortage != "" {
			t.Fatalf("send %s: on_shortage %q sent without the flag", id, s.onShortage)
		}
	}
	if l := onlyList(t, api); l.FallbackCode != nil {
		t.Fatalf("list has a fallback code without the flag: %q", *l.FallbackCode)
	}
}

// small-sends under fallback on a list that runs dry: the run goes on, the
// requests after it get the fallback, and the counts check out.
func TestSmallSendsFallbackWhenDry(t *testing.T) {
	t.Parallel() // bounded by --duration, not by CPU
	for _, per := range []string{SendPerRequest, SendPerConn} {
		t.Run(per, func(t *testing.T) {
			t.Parallel()
			api, srv := fakeServer(t)
			cfg, out, errOut := sendConfig(t, "small-sends", srv, "tok")
			cfg.Codes, cfg.CodesSet = 50, true
			cfg.OnShortage, cfg.SendPer = ShortageFallback, per
			cfg.Duration = 400 * time.Millisecond
			t0 := time.Now()
			if err := Run(context.Background(), cfg); err != nil {
				t.Fatalf("Run: %v\nstderr: %s", err, errOut)
			}
			if time.Since(t0) < cfg.Duration {
				t.Fatalf("the run stopped when the list ran dry")
			}
			noProblems(t, api)
			_, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
			fb, n := m["fallbacks"].(float64), m["requests"].(float64)
			if m["ran_dry"] != true || m["on_shortage"] != ShortageFallback || fb < 1 || n != 50+fb {
				t.Fatalf("result: %s", out)
			}
			if l := onlyList(t, api); l.Used != 50 || l.Available != 0 || float64(l.FallbackUsed) != fb {
				t.Fatalf("list %+v, %v fallbacks", l, fb)
			}
			if !strings.Contains(errOut.String(), "got the fallback code") || !strings.Contains(errOut.String(), "retry=OK") {
				t.Fatalf("summary: %s", errOut)
			}
		})
	}
}

// A retried fallback recipient answered as if it had a code is caught.
func TestSmallSendsCatchesForgottenFallback(t *testing.T) {
	t.Parallel() // bounded by --duration, not by CPU
	api, srv := fakeServer(t)
	api.fbUnflag = true
	cfg, out, _ := sendConfig(t, "small-sends", srv, "tok")
	cfg.Codes, cfg.CodesSet = 30, true
	cfg.OnShortage = ShortageFallback
	cfg.Duration = 200 * time.Millisecond
	err := Run(context.Background(), cfg)
	wantCheckError(t, err, out, "not idempotent")
}

func TestValidateOnShortage(t *testing.T) {
	base := DefaultConfig()
	for _, c := range []struct {
		scenario, policy string
		ok               bool
	}{
		{"big-send", ShortageReject, true},
		{"big-send", ShortageFallback, true},
		{"small-sends", ShortageFallback, true},
		{"small-sends", "", true},
		{"big-send", "drop", false},
		{"mixed", ShortageFallback, false},
		{"import", ShortageReject, false},
	} {
		cfg := base
		cfg.Scenario, cfg.OnShortage = c.scenario, c.policy
		err := cfg.Validate()
		if (err == nil) != c.ok || err != nil && !IsUsage(err) {
			t.Errorf("%s --on-shortage %q: %v", c.scenario, c.policy, err)
		}
	}
}
