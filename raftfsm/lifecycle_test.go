package raftfsm

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Focused tests of issue 17 (SPEC §4) for what the model test reaches
// poorly: encodings, big requests, far dates and the usage ring's edges.

// TestOldVersionBytesUnchanged: a command or record without the new
// fields is written byte for byte as before issue 17 (bytes taken from the
// release before it), so logs, snapshots and digests of older nodes stay
// the same; each still decodes to the same value.
func TestOldVersionBytesUnchanged(t *testing.T) {
	rs := RecipientBlock(nil).AppendRecipient([]byte("r1")).AppendRecipient([]byte("r2"))
	for _, c := range []struct {
		name string
		cmd  Command
		want string
	}{
		{"CreateList", &CreateList{Tenant: "acme", ID: 7, Name: "spring", Dedupe: true, Threshold: 5, At: 1700000000000000000},
			"04010461636d650706737072696e6701058080d0e2c6bfce972f"},
		{"UpdateList", &UpdateList{Tenant: "acme", ID: 7, SetName: true, Name: "x", SetThreshold: true, Threshold: 3},
			"05010461636d65070101780103"},
		{"ImportCommit v1", &ImportCommit{Tenant: "acme", Upload: UploadID{1, 2}, Chunks: 2, List: 7, At: 9,
			Create: &CreateList{Tenant: "acme", ID: 7, Name: "n", Dedupe: true, At: 9}},
			"08010461636d6501020000000000000000000000000000020712010461636d6507016e010012"},
		{"ImportCommit v2", &ImportCommit{Tenant: "acme", Upload: UploadID{1, 2}, Chunks: 2, List: 7, At: 9, Request: [32]byte{5},
			Create: &CreateList{Tenant: "acme", ID: 7, Name: "n", At: 9}},
			"08020461636d6501020000000000000000000000000000020712010461636d6507016e0000120500000000000000000000000000000000000000000000000000000000000000"},
		{"OpenSend", &OpenSend{Tenant: "acme", Send: "s", Message: "m", HasExpected: true, Expected: 40, At: 11},
			"0d010461636d650173016d012816"},
		{"Allocate", &Allocate{Tenant: "acme", Send: "s", Message: "m", Recipients: rs, At: 12},
			"0e010461636d650173016d1806027231027232"},
		{"Reserve", &Reserve{Tenant: "acme", Send: "s", Message: "m", Need: 9, At: 13},
			"0f010461636d650173016d091a"},
	} {
		got := Encode(c.cmd)
		if hex.EncodeToString(got) != c.want {
			t.Errorf("%s: encoded %x, want %s (the bytes before issue 17)", c.name, got, c.want)
			continue
		}
		back, err := Decode(got)
		if err != nil || !reflect.DeepEqual(back, c.cmd) {
			t.Errorf("%s: decoded %+v %v, want %+v", c.name, back, err, c.cmd)
		}
	}

	// Records: the plain ones keep their bytes, and read back the same.
	l := &ListMeta{ID: 7, Tenant: "acme", Name: "spring", Dedupe: true, Threshold: 5, CreatedAt: 77, Batches: 3, Cursor: 12,
		Reserved: 4, WarnDays: DefaultWarnDays}
	checkRecord(t, "ListMeta", l.marshal(), "01070461636d6506737072696e6701059a01030c04", func(v []byte) (any, error) { return unmarshalList(v) }, l)
	s := &Send{Tenant: "acme", ID: "s", Num: 3, Message: "m", List: 7, Closed: true, Reserved: 2, Assigned: 5, CreatedAt: 88}
	checkRecord(t, "Send", s.marshal(), "010461636d65017303016d07010205b001", func(v []byte) (any, error) { return unmarshalSend(v) }, s)
	a := &Alert{ID: 4, Tenant: "acme", List: 7, ListName: "spring", Threshold: 5, Available: 2, At: 99}
	checkRecord(t, "Alert", a.marshal(), "01040461636d650706737072696e670502c601", func(v []byte) (any, error) { return unmarshalAlert(v) }, a)
	b := &assignBatch{Send: 3, List: 7, At: 55, FirstSeq: 10, Runs: []posRun{{2, 2}},
		Recips: [][]byte{[]byte("r1"), []byte("r2")}, Codes: [][]byte{[]byte("C1"), []byte("C2")}}
	checkRecord(t, "assignBatch", b.marshal(nil), "0103076e0a02010202027231024331027232024332",
		func(v []byte) (any, error) { return unmarshalBatch(v) }, b)
}

func checkRecord(t *testing.T, name string, got []byte, want string, decode func([]byte) (any, error), value any) {
	t.Helper()
	if want != "" && hex.EncodeToString(got) != want {
		t.Errorf("%s: stored as %x, want %s", name, got, want)
		return
	}
	back, err := decode(got)
	if err != nil || !reflect.DeepEqual(back, value) {
		t.Errorf("%s: read back %+v %v, want %+v", name, back, err, value)
	}
}

// TestNewVersionsRoundTrip: the commands and records with the new fields
// take their new version and read back to the same value; bodies a newer
// version would write differently are refused (one encoding per value).
func TestNewVersionsRoundTrip(t *testing.T) {
	rs := RecipientBlock(nil).AppendRecipient([]byte("r1"))
	life := CreateList{Tenant: "acme", ID: 7, Name: "n", Dedupe: true, At: 9, FallbackCode: "WELCOME5", HasExpiry: true,
		ExpiresAt: 1800000000000000000, SetWarnDays: true, WarnDays: 0}
	for _, c := range []struct {
		name    string
		cmd     Command
		version byte
	}{
		{"CreateList with a fallback code", &CreateList{Tenant: "a", ID: 1, Name: "n", FallbackCode: "FB"}, 2},
		{"CreateList with an expiry", &CreateList{Tenant: "a", ID: 1, Name: "n", HasExpiry: true, ExpiresAt: -5}, 2},
		{"CreateList with warning days", &CreateList{Tenant: "a", ID: 1, Name: "n", SetWarnDays: true, WarnDays: 7}, 2},
		{"UpdateList clearing the fallback code", &UpdateList{Tenant: "a", ID: 1, SetFallback: true}, 2},
		{"UpdateList clearing the expiry", &UpdateList{Tenant: "a", ID: 1, SetExpiry: true}, 2},
		{"UpdateList of everything", &UpdateList{Tenant: "a", ID: 1, SetName: true, Name: "x", SetThreshold: true, Threshold: 2,
			SetFallback: true, FallbackCode: "FB", SetExpiry: true, HasExpiry: true, ExpiresAt: 1 << 62, SetWarnDays: true,
			WarnDays: math.MaxUint32}, 2},
		{"ImportCommit v3 without a request", &ImportCommit{Tenant: "acme", Upload: UploadID{3}, Chunks: 1, List: 7, At: 9,
			Create: &life}, 3},
		{"ImportCommit v3 with a request", &ImportCommit{Tenant: "acme", Upload: UploadID{3}, Chunks: 1, List: 7, At: 9,
			Create: &life, Request: [32]byte{1, 2, 3}}, 3},
		{"OpenSend setting reject", &OpenSend{Tenant: "a", Send: "s", SetOnShortage: true, OnShortage: ShortageReject}, 2},
		{"OpenSend setting fallback", &OpenSend{Tenant: "a", Send: "s", SetOnShortage: true, OnShortage: ShortageFallback}, 2},
		{"Allocate under fallback", &Allocate{Tenant: "a", Send: "s", Recipients: rs, OnShortage: ShortageFallback}, 2},
		{"Reserve under fallback", &Reserve{Tenant: "a", Send: "s", Need: 3, OnShortage: ShortageFallback}, 2},
		{"Release", &Release{Tenant: "a", Send: "s", Recipients: rs, At: 77}, 1},
		{"Tick", &Tick{At: -1}, 1},
	} {
		got := Encode(c.cmd)
		if got[1] != c.version {
			t.Errorf("%s: version %d, want %d", c.name, got[1], c.version)
		}
		back, err := Decode(got)
		if err != nil || !reflect.DeepEqual(back, c.cmd) {
			t.Errorf("%s: decoded %+v %v, want %+v", c.name, back, err, c.cmd)
			continue
		}
		if again := Encode(back); string(again) != string(got) {
			t.Errorf("%s: re-encoded %x, want %x", c.name, again, got)
		}
	}

	// Bodies of a new version that hold only what the old version says,
	// or what no version may.
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"CreateList v2 without a lifecycle", append(cmdVersion(Encode(&CreateList{Tenant: "a", ID: 1, Name: "n"}), 2), 0, 0, 0, 0, 0)},
		{"UpdateList v2 setting nothing", append(cmdVersion(Encode(&UpdateList{Tenant: "a", ID: 1}), 2), 0, 0, 0, 0, 0, 0, 0)},
		{"Allocate v2 under reject", append(cmdVersion(Encode(&Allocate{Tenant: "a", Send: "s", Recipients: rs}), 2), 0)},
		{"Reserve v2 under reject", append(cmdVersion(Encode(&Reserve{Tenant: "a", Send: "s", Need: 1}), 2), 0)},
		{"OpenSend v2 with an unknown policy", append(cmdVersion(Encode(&OpenSend{Tenant: "a", Send: "s"}), 2), 2)},
		{"ImportCommit v3 without its list", append(cmdVersion(Encode(&ImportCommit{Tenant: "a", Upload: UploadID{1}, List: 1,
			Request: [32]byte{1}}), 3), 1, 'F', 0, 0, 0, 0)},
		{"Tick with trailing bytes", append(Encode(&Tick{At: 5}), 0)},
	} {
		if cmd, err := Decode(c.data); err == nil {
			t.Errorf("%s: decoded %+v from %x, want an error", c.name, cmd, c.data)
		} else if !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want errCorrupt", c.name, err)
		}
	}

	// Records of the new versions.
	l := &ListMeta{ID: 7, Tenant: "acme", Name: "spring", Batches: 4, Cursor: 2, FallbackCode: "FB", HasExpiry: true,
		ExpiresAt: 123, WarnDays: 0, Warned: true, Released: 3, FallbackUsed: 9,
		Usage: UsageRing{Day: 20000, Counts: [usageDays]uint64{1: 5, 31: 1 << 40}}}
	if v := l.marshal(); v[0] != listMetaVersion {
		t.Errorf("ListMeta with lifecycle stored as version %d", v[0])
	}
	checkRecord(t, "ListMeta v2", l.marshal(), "", func(v []byte) (any, error) { return unmarshalList(v) }, l)
	used := &ListMeta{ID: 7, Tenant: "acme", WarnDays: DefaultWarnDays, Usage: UsageRing{Day: 3, Counts: [usageDays]uint64{3: 1}}}
	checkRecord(t, "ListMeta with usage only", used.marshal(), "", func(v []byte) (any, error) { return unmarshalList(v) }, used)
	s := &Send{Tenant: "acme", ID: "s", Num: 3, Message: "m", List: 7, OnShortage: ShortageFallback}
	checkRecord(t, "Send v2", s.marshal(), "", func(v []byte) (any, error) { return unmarshalSend(v) }, s)
	a := &Alert{ID: 4, Tenant: "acme", List: 7, ListName: "spring", Available: 2, At: 99, Type: AlertExpirySoon, ExpiresAt: 1234}
	checkRecord(t, "Alert v2", a.marshal(), "", func(v []byte) (any, error) { return unmarshalAlert(v) }, a)
	fb := &assignBatch{Send: 3, List: 7, At: 55, FirstSeq: 10, Runs: []posRun{}, Fallback: true,
		Recips: [][]byte{[]byte("r1"), []byte("r2")}, Codes: [][]byte{[]byte("FB"), []byte("FB")}}
	checkRecord(t, "fallback batch", fb.marshal(nil), "", func(v []byte) (any, error) { return unmarshalBatch(v) }, fb)
	if fb.positionOf(1) != 0 {
		t.Errorf("a fallback batch has positions")
	}
	// A version 2 record must be what version 2 is for.
	sendV2 := append(recVersion((&Send{Tenant: "a", ID: "s"}).marshal(), 2), 0)
	if _, err := unmarshalSend(sendV2); !errors.Is(err, errCorrupt) {
		t.Errorf("a send of version 2 under reject: %v, want errCorrupt", err)
	}
	alertV2 := append(recVersion((&Alert{ID: 1}).marshal(), 2), 0, 0)
	if _, err := unmarshalAlert(alertV2); !errors.Is(err, errCorrupt) {
		t.Errorf("a low_stock alert of version 2: %v, want errCorrupt", err)
	}
	runs := recVersion((&assignBatch{Send: 1, Runs: []posRun{{0, 1}}, Recips: [][]byte{{'r'}}, Codes: [][]byte{{'c'}}}).marshal(nil), 2)
	if _, err := unmarshalBatch(runs); !errors.Is(err, errCorrupt) {
		t.Errorf("a fallback batch with positions: %v, want errCorrupt", err)
	}
}

// cmdVersion sets an encoded command's version byte.
func cmdVersion(b []byte, v byte) []byte {
	b = append([]byte(nil), b...)
	b[1] = v
	return b
}

// recVersion sets a stored record's version byte.
func recVersion(b []byte, v byte) []byte {
	b = append([]byte(nil), b...)
	b[0] = v
	return b
}

// TestImportCommitV3CreatesListWithLifecycle: a create-and-import whose
// list has a fallback code, an expiry and warning days makes the list with
// them, also across a restart; a retry answers the same.
func TestImportCommitV3CreatesListWithLifecycle(t *testing.T) {
	tf := newTestFSM(t)
	tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme", At: 1})
	expires := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	create := &CreateList{Tenant: "acme", ID: 9, Name: "winter", Dedupe: true, At: 5, FallbackCode: "WELCOME5",
		HasExpiry: true, ExpiresAt: expires, SetWarnDays: true, WarnDays: 0}
	tf.mustApply(&ImportChunk{Tenant: "acme", Upload: UploadID{4}, Chunk: 0, Codes: block("A", "B", "A"), NewList: true})
	commit := &ImportCommit{Tenant: "acme", Upload: UploadID{4}, Chunks: 1, List: 9, At: 5, Create: create}
	if Encode(commit)[1] != 3 {
		t.Fatalf("commit written as version %d, want 3", Encode(commit)[1])
	}
	res := tf.mustApply(commit).(ImportResult)
	if res != (ImportResult{List: 9, Imported: 2, Duplicates: 1, Size: 2}) {
		t.Fatalf("import: %+v", res)
	}
	check := func(when string) {
		t.Helper()
		v, ok := tf.f.List("acme", 9)
		if !ok {
			t.Fatalf("%s: no list", when)
		}
		if v.FallbackCode != "WELCOME5" || !v.HasExpiry || v.ExpiresAt != expires || v.WarnDays != 0 || v.Warned ||
			v.Added != 2 || v.Available != 2 || !v.Dedupe || v.Name != "winter" {
			t.Fatalf("%s: list %+v", when, v)
		}
	}
	check("after the commit")
	if again := tf.mustApply(commit).(ImportResult); again != res {
		t.Fatalf("retried commit answered %+v, want %+v", again, res)
	}
	tf = tf.reopen()
	check("after a restart")

	// Without warning days the list takes the default, 7.
	tf.mustApply(&ImportChunk{Tenant: "acme", Upload: UploadID{5}, Chunk: 0, Codes: block("C"), NewList: true})
	tf.mustApply(&ImportCommit{Tenant: "acme", Upload: UploadID{5}, Chunks: 1, List: 10, At: 6,
		Create: &CreateList{Tenant: "acme", ID: 10, Name: "w", Dedupe: true, At: 6, HasExpiry: true, ExpiresAt: expires}})
	if v, _ := tf.f.List("acme", 10); v.WarnDays != DefaultWarnDays || !v.HasExpiry {
		t.Fatalf("list without warning days: %+v", v)
	}
}

// TestUsageRing: the ring counts codes per UTC day over 32 days. A new day
// clears the slots of the days skipped (however many); a clock that steps
// back counts toward its own day while the ring still holds it, and is
// dropped beyond.
func TestUsageRing(t *testing.T) {
	day := DayOf(time.Date(2025, 6, 10, 23, 59, 59, 0, time.UTC).UnixNano())
	if next := DayOf(time.Date(2025, 6, 11, 0, 0, 0, 0, time.UTC).UnixNano()); next != day+1 {
		t.Fatalf("midnight UTC starts day %d, want %d", next, day+1)
	}
	if DayOf(-1) != -1 || DayOf(0) != 0 || DayOf(-nsPerDay) != -1 || DayOf(-nsPerDay-1) != -2 {
		t.Fatalf("days before 1970: %d %d %d %d", DayOf(-1), DayOf(0), DayOf(-nsPerDay), DayOf(-nsPerDay-1))
	}
	var r UsageRing
	for d := int64(0); d < 10; d++ {
		r.add(day+d, uint64(d+1)) // 1, 2, ..., 10
	}
	// The 7 days ending on day+9: 4+5+...+10.
	if got := r.Last7(day + 9); got != 49 {
		t.Fatalf("Last7 = %d, want 49", got)
	}
	if got := r.Last7(day + 3); got != 1+2+3+4 {
		t.Fatalf("Last7 of an earlier day = %d, want 10", got)
	}
	if got := r.Last7(day + 12); got != 7+8+9+10 {
		t.Fatalf("Last7 three days on = %d, want 34", got)
	}
	// The clock steps back two days: counted on that day.
	r.add(day+7, 100)
	if got := r.Last7(day + 9); got != 149 {
		t.Fatalf("after a step back: Last7 = %d, want 149", got)
	}
	// 31 days back is still in the ring; 32 is not.
	r.add(day+9-31, 1000)
	r.add(day+9-32, 5000)
	if got := r.Sum(day-100, day+9); got != 55+100+1000 {
		t.Fatalf("the ring holds %d, want %d", got, 55+100+1000)
	}
	// A day 20 ahead: the ring now spans day-2..day+29, so the count 31
	// days back is out and the days between are empty.
	r.add(day+29, 7)
	if got := r.Sum(day-100, day+29); got != 7+55+100 {
		t.Fatalf("after 20 days the ring holds %d, want %d", got, 7+55+100)
	}
	if got := r.Last7(day + 29); got != 7 {
		t.Fatalf("Last7 after a gap = %d, want 7", got)
	}
	// A jump past the whole ring leaves only the new day.
	r.add(day+29+500, 3)
	if got := r.Sum(math.MinInt64/2, math.MaxInt64/2); got != 3 {
		t.Fatalf("after a long gap the ring holds %d, want 3", got)
	}
	if r.Last7(day+29) != 0 {
		t.Fatalf("days older than the ring still counted")
	}
}

// TestForecast: the fields of a forecast, from the list's counts, a send's
// hold and the usage of the last 7 days.
func TestForecast(t *testing.T) {
	tf := orcFixture(t, 100)
	start := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	f := tf.f
	fc, err := f.Forecast("acme", 7, 30, "", start)
	want := Forecast{Recipients: 30, Needed: 30, Available: 100, Enough: true}
	if err != nil || fc != want {
		t.Fatalf("unused list: %+v %v, want %+v", fc, err, want)
	}
	// 14 codes over two days, 10 days before a later "now": out of the window.
	orcAlloc(tf, "old", start, recipients("o", 0, 7)...)
	orcAlloc(tf, "old", start+nsPerDay, recipients("o", 7, 7)...)
	// A send holding 20, then 21 codes over the last 7 days.
	tf.mustApply(&OpenSend{Tenant: "acme", Send: "held", Message: "msg", HasExpected: true, Expected: 20, At: start + 2*nsPerDay})
	for d := int64(0); d < 3; d++ {
		orcAlloc(tf, "new", start+(10+d)*nsPerDay, recipients(fmt.Sprint("n", d), 0, 7)...)
	}
	now := start + 12*nsPerDay + nsPerDay/2
	fc, err = f.Forecast("acme", 7, 30, "", now)
	want = Forecast{Recipients: 30, Needed: 30, Available: 100 - 14 - 20 - 21, Reserved: 20, Enough: true,
		UsedLast7Days: 21, UsedPerDay: 3, RunsOutAt: now + 15*nsPerDay}
	if err != nil || fc != want {
		t.Fatalf("forecast: %+v %v, want %+v", fc, err, want)
	}
	// With the send's hold: 30 - 20 needed.
	fc, err = f.Forecast("acme", 7, 30, "held", now)
	want.Needed = 10
	if err != nil || fc != want {
		t.Fatalf("forecast with a hold: %+v %v, want %+v", fc, err, want)
	}
	// A hold above the recipients needs nothing.
	if fc, _ := f.Forecast("acme", 7, 5, "held", now); fc.Needed != 0 || fc.Shortfall != 0 || !fc.Enough {
		t.Fatalf("forecast below the hold: %+v", fc)
	}
	// More than there is: a shortfall.
	if fc, _ := f.Forecast("acme", 7, 100, "", now); fc.Shortfall != 100-45 || fc.Enough {
		t.Fatalf("forecast beyond the stock: %+v", fc)
	}
	// A send of another list, an unknown send, another tenant, an unknown list.
	tf.mustApply(&CreateList{Tenant: "acme", ID: 8, Name: "other", Dedupe: true, At: 3})
	for name, err := range map[string]error{
		"send of another list": second(f.Forecast("acme", 8, 1, "held", now)),
		"unknown send":         second(f.Forecast("acme", 7, 1, "nope", now)),
		"another tenant":       second(f.Forecast("other", 7, 1, "", now)),
		"unknown list":         second(f.Forecast("acme", 99, 1, "", now)),
	} {
		if err != ErrNotFound {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	// Expiry: not enough once expired, however many codes.
	expires := now + nsPerDay
	tf.mustApply(&UpdateList{Tenant: "acme", ID: 7, SetExpiry: true, HasExpiry: true, ExpiresAt: expires})
	if fc, _ := f.Forecast("acme", 7, 1, "", now); !fc.HasExpiry || fc.ExpiresAt != expires || fc.Expired || !fc.Enough {
		t.Fatalf("before expiry: %+v", fc)
	}
	if fc, _ := f.Forecast("acme", 7, 1, "", expires); !fc.Expired || fc.Enough || fc.Shortfall != 0 {
		t.Fatalf("at expiry: %+v", fc)
	}
	// A week without use: no rate, no estimate.
	if fc, _ := f.Forecast("acme", 7, 1, "", now+7*nsPerDay); fc.UsedLast7Days != 0 || fc.UsedPerDay != 0 || fc.RunsOutAt != 0 {
		t.Fatalf("a week later: %+v", fc)
	}
}

func second[T any](_ T, err error) error { return err }

func recipients(prefix string, from, n int) []string {
	var rs []string
	for i := from; i < from+n; i++ {
		rs = append(rs, fmt.Sprintf("%s%d@example.com", prefix, i))
	}
	return rs
}

// TestForecastFarAhead: a large stock used slowly runs out centuries from
// now, beyond what a unix-ns time can hold; the estimate must not wrap
// around to a time in the past.
func TestForecastFarAhead(t *testing.T) {
	tf := orcFixture(t, 20000)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	orcAlloc(tf, "s", now, "one@example.com") // 1 code in 7 days: 19,999 available last 139,993 days
	fc, err := tf.f.Forecast("acme", 7, 1, "", now)
	if err != nil {
		t.Fatal(err)
	}
	if fc.RunsOutAt <= now {
		t.Fatalf("runs out at %d (%s), before now %d: the estimate wrapped", fc.RunsOutAt,
			time.Unix(0, fc.RunsOutAt).UTC(), now)
	}
	if fc.RunsOutAt != math.MaxInt64 {
		t.Fatalf("runs out at %s, want the latest time there is (%d)", time.Unix(0, fc.RunsOutAt).UTC(), int64(math.MaxInt64))
	}
}

// TestExpiryWarningWithALongLead: warning days far beyond the expiry (a
// lead of centuries) mean the warning is due at once, not never.
func TestExpiryWarningWithALongLead(t *testing.T) {
	tf := orcFixture(t, 10)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	expires := now + 30*nsPerDay
	for _, days := range []uint32{106752, 200000, math.MaxUint32} {
		tf.mustApply(&UpdateList{Tenant: "acme", ID: 7, SetExpiry: true, HasExpiry: true, ExpiresAt: expires + int64(days),
			SetWarnDays: true, WarnDays: days})
		if !tf.f.TickDue(now) {
			t.Fatalf("%d warning days, expiry in 30 days: no Tick due", days)
		}
		before := len(tf.f.PendingAlerts())
		tf.mustApply(&Tick{At: now})
		if got := len(tf.f.PendingAlerts()); got != before+1 {
			t.Fatalf("%d warning days: the Tick recorded %d alerts, want 1", days, got-before)
		}
	}
	// A lead that ends exactly now is due; one that ends a nanosecond
	// later is not yet.
	tf.mustApply(&UpdateList{Tenant: "acme", ID: 7, SetExpiry: true, HasExpiry: true, ExpiresAt: now + 2*nsPerDay,
		SetWarnDays: true, WarnDays: 2})
	if !tf.f.TickDue(now) {
		t.Fatal("the window starting now: no Tick due")
	}
	tf.mustApply(&UpdateList{Tenant: "acme", ID: 7, SetExpiry: true, HasExpiry: true, ExpiresAt: now + 2*nsPerDay + 1})
	if tf.f.TickDue(now) {
		t.Fatal("the window starting in a nanosecond: a Tick due")
	}
}

// TestBigFallbackAllocation: one request far beyond the stock, under
// fallback, across many batches: the codes there are go to the first
// recipients in request order, the fallback code to the rest; the answer,
// a retry, the send's assignments and the counts agree, also after a
// restart. Releases then return the drawn codes to the end of the list in
// release order, and a resend hands them out in that order before falling
// back again.
func TestBigFallbackAllocation(t *testing.T) {
	tf := orcFixture(t, 300)
	tf.mustApply(&UpdateList{Tenant: "acme", ID: 7, SetFallback: true, FallbackCode: "WELCOME5"})
	rs := recipients("r", 0, 700)
	req := &Allocate{Tenant: "acme", Send: "big", Message: "msg", Recipients: orcBlock(rs), At: 100, OnShortage: ShortageFallback}
	res := tf.mustApply(req).(*AllocResult)
	wantCode := func(i int) string {
		if i < 300 {
			return fmt.Sprintf("K%05d", i)
		}
		return "WELCOME5"
	}
	checkAnswer := func(what string, res *AllocResult, fresh int) {
		t.Helper()
		if res.New != fresh || res.Available != 0 || len(res.Codes) != 700 || len(res.Fallback) != 700 {
			t.Fatalf("%s: new %d available %d, %d codes, %d marks", what, res.New, res.Available, len(res.Codes), len(res.Fallback))
		}
		for i := range rs {
			if string(res.Codes[i]) != wantCode(i) || res.Fallback[i] != (i >= 300) {
				t.Fatalf("%s: recipient %d got %q (fallback %v), want %q", what, i, res.Codes[i], res.Fallback[i], wantCode(i))
			}
		}
	}
	checkAnswer("first answer", res, 700)
	checkAnswer("retry", tf.mustApply(req).(*AllocResult), 0)

	checkState := func(when string, used, avail, fallbacks, released uint64, assigned uint64) {
		t.Helper()
		v, _ := tf.f.List("acme", 7)
		s, _ := tf.f.Send("acme", "big")
		if v.Used != used || v.Available != avail || v.FallbackUsed != fallbacks || v.Released != released ||
			v.Added != 300 || s.Assigned != assigned || s.OnShortage != ShortageFallback {
			t.Fatalf("%s: list used %d available %d fallback_used %d released %d added %d; send assigned %d %s", when,
				v.Used, v.Available, v.FallbackUsed, v.Released, v.Added, s.Assigned, s.OnShortage)
		}
	}
	checkState("after the allocation", 300, 0, 400, 0, 700)
	var n int
	tf.f.EachAssignment("acme", "big", func(a *Assignment) error {
		if a.Recipient != rs[n] || a.Code != wantCode(n) || a.Fallback != (n >= 300) || a.ReleasedAt != 0 {
			t.Fatalf("assignment %d: %+v", n, a)
		}
		n++
		return nil
	})
	if n != 700 {
		t.Fatalf("%d assignments listed, want 700", n)
	}
	// The process's counters (for metrics): the retry gave nothing.
	if tf.f.FallbacksGiven() != 400 || tf.f.CodesAllocated() != 300 {
		t.Fatalf("counters: %d fallbacks given, %d codes allocated", tf.f.FallbacksGiven(), tf.f.CodesAllocated())
	}
	tf = tf.reopen()
	checkState("after a restart", 300, 0, 400, 0, 700)
	checkAnswer("retry after a restart", tf.mustApply(req).(*AllocResult), 0)

	// Release 10 drawn codes in reverse order, 10 fallbacks and 3 strangers.
	var rel []string
	for i := 14; i >= 5; i-- {
		rel = append(rel, rs[i])
	}
	rel = append(rel, rs[400:410]...)
	rel = append(rel, "x@example.com", "y@example.com", rs[5], "z@example.com")
	got := tf.mustApply(&Release{Tenant: "acme", Send: "big", Recipients: orcBlock(rel), At: 200}).(ReleaseResult)
	if got != (ReleaseResult{Released: 20, NotAssigned: 3}) {
		t.Fatalf("release: %+v", got)
	}
	checkState("after the release", 290, 10, 390, 10, 680)
	if tf.f.CodesReleased() != 10 { // a released fallback returns no code
		t.Fatalf("counter: %d codes released, want 10", tf.f.CodesReleased())
	}
	again := tf.mustApply(&Release{Tenant: "acme", Send: "big", Recipients: orcBlock(rel), At: 201}).(ReleaseResult)
	if again != (ReleaseResult{NotAssigned: 3, AlreadyReleased: 20}) {
		t.Fatalf("the same release again: %+v", again)
	}
	if info, err := tf.f.CodeState("acme", 7, []byte("K00009")); err != nil || info.State.String() != "available" || info.Assignment != nil {
		t.Fatalf("a released code: %+v %v, want available", info, err)
	}

	// The resend: the bounced fallback recipients first, then the others.
	resend := append(append([]string(nil), rs[400:410]...), rs[5:15]...)
	res = tf.mustApply(&Allocate{Tenant: "acme", Send: "big", Recipients: orcBlock(resend), At: 300}).(*AllocResult)
	for i, r := range resend {
		want := "WELCOME5"
		if i < 10 {
			want = fmt.Sprintf("K%05d", 14-i) // the copies, in release order
		}
		if string(res.Codes[i]) != want || res.Fallback[i] != (i >= 10) {
			t.Fatalf("resend: %s got %q (fallback %v), want %q", r, res.Codes[i], res.Fallback[i], want)
		}
	}
	checkState("after the resend", 300, 0, 400, 10, 700)
	if tf.f.FallbacksGiven() != 10 || tf.f.CodesAllocated() != 10 {
		t.Fatalf("counters since the restart: %d fallbacks given, %d codes allocated", tf.f.FallbacksGiven(), tf.f.CodesAllocated())
	}
	info, err := tf.f.CodeState("acme", 7, []byte("K00009"))
	if err != nil || info.Assignment == nil || info.Assignment.Recipient != rs[405] || info.Assignment.Position != 305 {
		t.Fatalf("a code handed out again: %+v %v, want its new assignment (%s at position 305)", info, err, rs[405])
	}
	h, _ := tf.f.RecipientHistory("acme", []byte(rs[9]))
	if len(h) != 2 || h[0].Code != "K00009" || h[0].ReleasedAt != 200 || h[1].Code != "WELCOME5" || !h[1].Fallback || h[1].ReleasedAt != 0 {
		t.Fatalf("history of a resent recipient: %+v", h)
	}
	before := tf.f.Digest()
	tf = tf.reopen()
	if tf.f.Digest() != before {
		t.Fatal("a restart changed the digest")
	}
	checkState("after a second restart", 300, 0, 400, 10, 700)
}

// TestReleaseAfterTheListIsDeleted: a list whose released codes came back
// as copies can be deleted (its copies go with it, and a restart loads the
// rest); a later release of the send answers and returns nothing.
func TestReleaseAfterTheListIsDeleted(t *testing.T) {
	tf := orcFixture(t, 3)
	orcAlloc(tf, "s", 100, "a@x", "b@x", "c@x")
	if got := tf.mustApply(&Release{Tenant: "acme", Send: "s", Recipients: orcBlock([]string{"b@x"}), At: 110}).(ReleaseResult); got.Released != 1 {
		t.Fatalf("release: %+v", got)
	}
	tf.mustApply(&AssignList{Tenant: "acme", Message: "msg"}) // unassigned: the list may go
	tf.mustApply(&DeleteList{Tenant: "acme", ID: 7})
	tf = tf.reopen()
	got := tf.mustApply(&Release{Tenant: "acme", Send: "s", Recipients: orcBlock([]string{"a@x", "b@x"}), At: 120}).(ReleaseResult)
	if got != (ReleaseResult{Released: 1, AlreadyReleased: 1}) {
		t.Fatalf("release after the delete: %+v", got)
	}
	s, _ := tf.f.Send("acme", "s")
	if s.Assigned != 1 {
		t.Fatalf("send assigned %d, want 1", s.Assigned)
	}
	h, _ := tf.f.RecipientHistory("acme", []byte("a@x"))
	if len(h) != 1 || h[0].Code != "K00000" || h[0].ReleasedAt != 120 {
		t.Fatalf("history of a@x: %+v", h)
	}
	before := tf.f.Digest()
	if tf = tf.reopen(); tf.f.Digest() != before {
		t.Fatal("a restart changed the digest")
	}
}

// TestExpirySoonInAFullOutbox: when the outbox is full, a new alert drops
// the oldest pending alert of its own list and type: a list's expiry_soon
// is not pushed out by its own low_stock crossings, and a re-armed
// expiry_soon replaces the one still pending.
func TestExpirySoonInAFullOutbox(t *testing.T) {
	tf := newTestFSM(t)
	alertSetup(tf)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	tf.mustApply(&UpdateList{Tenant: "acme", ID: 7, SetExpiry: true, HasExpiry: true, ExpiresAt: now + nsPerDay})
	tf.mustApply(&Tick{At: now})
	first := tf.f.PendingAlerts()
	if len(first) != 1 || first[0].Type != AlertExpirySoon || first[0].ExpiresAt != now+nsPerDay || first[0].At != now ||
		first[0].Available != 10 || first[0].ListName != "spring" {
		t.Fatalf("after the Tick: %+v", first)
	}
	if tf.f.TickDue(now + 1) {
		t.Fatal("a warned list still wants a Tick")
	}
	toggle := [][]byte{
		Encode(&UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: 1}),
		Encode(&UpdateList{Tenant: "acme", ID: 7, SetThreshold: true, Threshold: 1000}),
	}
	for sent := 1; sent <= MaxPendingAlerts; {
		var cmds [][]byte
		for ; sent <= MaxPendingAlerts && len(cmds) < 1000; sent++ {
			cmds = append(cmds, toggle...)
		}
		tf.mustApply(&Batch{Commands: cmds})
	}
	// 4096 low_stock crossings after the expiry_soon: the oldest low_stock
	// (id 2) went for the last one, the expiry_soon stays.
	ids := pendingIDs(tf.f)
	if len(ids) != MaxPendingAlerts || ids[0] != 1 || ids[1] != 3 || ids[len(ids)-1] != MaxPendingAlerts+1 {
		t.Fatalf("full outbox: %d alerts, %v ... %v", len(ids), ids[:3], ids[len(ids)-1])
	}
	// A new expiry re-arms the warning; its alert replaces the pending one.
	tf.mustApply(&UpdateList{Tenant: "acme", ID: 7, SetExpiry: true, HasExpiry: true, ExpiresAt: now + 2*nsPerDay})
	tf.mustApply(&Tick{At: now + 10})
	got := tf.f.PendingAlerts()
	last := got[len(got)-1]
	if len(got) != MaxPendingAlerts || got[0].ID != 3 || last.Type != AlertExpirySoon || last.ExpiresAt != now+2*nsPerDay {
		t.Fatalf("after a re-armed warning: %d alerts, first %+v, last %+v", len(got), got[0], last)
	}
	if again := tf.reopen().f.PendingAlerts(); !reflect.DeepEqual(again, tf.f.PendingAlerts()) {
		t.Fatal("the outbox differs after a restart")
	}
}

// TestReadersDuringReleases (run with -race): readers look codes up, list
// a send's assignments and recipients' histories, and ask forecasts while
// the writer allocates (partly under fallback), releases and resends. What
// a reader may rely on: a code's lookup is of that code, with an
// assignment of that code when assigned; a send never shows a recipient
// with two live assignments; the counts a forecast reads are a list's.
func TestReadersDuringReleases(t *testing.T) {
	tf := orcFixture(t, 60) // fewer than the recipients: some get the fallback code
	f := tf.f
	tf.mustApply(&UpdateList{Tenant: "acme", ID: 7, SetFallback: true, FallbackCode: "WELCOME5"})
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 20)
	fail := func(format string, args ...any) {
		select {
		case errs <- fmt.Sprintf(format, args...):
		default:
		}
	}
	for k := 0; k < 3; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(k)))
			for !stop.Load() {
				switch rng.Intn(4) {
				case 0:
					code := fmt.Sprintf("K%05d", rng.Intn(60))
					info, err := f.CodeState("acme", 7, []byte(code))
					if err != nil || info.Code != code {
						fail("CodeState(%s): %+v %v", code, info, err)
					} else if info.Assignment != nil && info.Assignment.Code != code {
						fail("CodeState(%s): the assignment of %q", code, info.Assignment.Code)
					}
				case 1:
					live := map[string]bool{}
					f.EachAssignment("acme", fmt.Sprintf("s%d", rng.Intn(3)), func(a *Assignment) error {
						if a.ReleasedAt == 0 {
							if live[a.Recipient] {
								fail("send %s: %s has two live assignments", a.Send, a.Recipient)
							}
							live[a.Recipient] = true
						}
						if a.Fallback != (a.Code == "WELCOME5") {
							fail("assignment %+v: fallback mark and code disagree", a)
						}
						return nil
					})
				case 2:
					h, err := f.RecipientHistory("acme", []byte(fmt.Sprintf("r%d@x", rng.Intn(50))))
					live := map[string]bool{}
					for _, a := range h {
						if a.ReleasedAt == 0 {
							if live[a.Send] {
								fail("history: %s has two live assignments in %s", a.Recipient, a.Send)
							}
							live[a.Send] = true
						}
					}
					if err != nil {
						fail("RecipientHistory: %v", err)
					}
				case 3:
					fc, err := f.Forecast("acme", 7, 10, "", now)
					if err != nil || fc.Available+fc.Reserved > 60 {
						fail("Forecast: %+v %v", fc, err)
					}
					f.TickDue(now)
				}
			}
		}(k)
	}
	rng := rand.New(rand.NewSource(99))
	for op := 0; op < 400; op++ {
		send := fmt.Sprintf("s%d", rng.Intn(3))
		var rs []string
		for k := rng.Intn(8) + 1; k > 0; k-- {
			rs = append(rs, fmt.Sprintf("r%d@x", rng.Intn(50)))
		}
		at := now + int64(op)*1000
		if rng.Intn(2) == 0 {
			tf.mustApply(&Allocate{Tenant: "acme", Send: send, Message: "msg", Recipients: orcBlock(rs), At: at,
				OnShortage: ShortageFallback})
		} else if _, ok := f.Send("acme", send); ok {
			tf.mustApply(&Release{Tenant: "acme", Send: send, Recipients: orcBlock(rs), At: at})
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if v, _ := f.List("acme", 7); v.Released == 0 || f.FallbacksGiven() == 0 || v.Added != v.Available+v.Reserved+v.Used+v.Withdrawn {
		t.Fatalf("at the end: %+v", v)
	}
}

// TestShortageAndAlertNames: the policy and alert type names of the API.
func TestShortageAndAlertNames(t *testing.T) {
	for _, name := range []string{"reject", "fallback"} {
		if s, ok := ParseShortage(name); !ok || s.String() != name {
			t.Errorf("ParseShortage(%q) = %v %v", name, s, ok)
		}
	}
	for _, bad := range []string{"", "Reject", "FALLBACK", "none"} {
		if _, ok := ParseShortage(bad); ok {
			t.Errorf("ParseShortage(%q) accepted", bad)
		}
	}
	if AlertLowStock.String() != "low_stock" || AlertExpirySoon.String() != "expiry_soon" {
		t.Errorf("alert types: %s, %s", AlertLowStock, AlertExpirySoon)
	}
}
