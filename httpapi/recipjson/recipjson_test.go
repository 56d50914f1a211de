package recipjson

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseAllocationJSON(t *testing.T) {
	f := func(body string, wantMsg *string, want []string, wantErr bool) {
		t.Helper()
		msg, rs, err := Parse([]byte(body), 3)
		if (err != nil) != wantErr {
			t.Fatalf("%s: err %v, want error %v", body, err, wantErr)
		}
		if err != nil {
			return
		}
		if (msg == nil) != (wantMsg == nil) || (msg != nil && *msg != *wantMsg) {
			t.Fatalf("%s: message %v, want %v", body, msg, wantMsg)
		}
		got := []string{}
		for _, r := range rs {
			got = append(got, string(r))
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: recipients %q, want %q", body, got, want)
		}
	}
	m := "m1"
	f(`{"recipients":["a","b"]}`, nil, []string{"a", "b"}, false)
	f(` { "message_id" : "m1" , "recipients" : [ "a" ] } `, &m, []string{"a"}, false)
	f(`{"recipients":[],"message_id":null}`, nil, []string{}, false)
	f(`{"recipients":["a\"b","\u00e9\ud83d\ude00","x\/y\\z\n"]}`, nil, []string{"a\"b", "é😀", "x/y\\z\n"}, false)
	f(`{}`, nil, []string{}, false)
	f(`{"recipients":["a","b","c","d"]}`, nil, nil, true) // past max
	f(`{"recipients":["a"],"extra":1}`, nil, nil, true)
	f(`{"recipients":["a"]} x`, nil, nil, true)
	f(`{"recipients":["a"],"recipients":["b"]}`, nil, nil, true)
	f(`{"recipients":[1]}`, nil, nil, true)
	f(`{"recipients":"a"}`, nil, nil, true)
	f(`{"recipients":["a`, nil, nil, true)
	f("{\"recipients\":[\"a\x01\"]}", nil, nil, true)
	f("{\"recipients\":[\"\xff\"]}", nil, nil, true)
	f(`{"recipients":["a",]}`, nil, nil, true)
	f(`{"message_id":5,"recipients":["a"]}`, nil, nil, true)
	f(`[]`, nil, nil, true)
	f(``, nil, nil, true)
}

func TestParseRequestFields(t *testing.T) {
	fb := `{"on_shortage":"fallback","message_id":"m","recipients":["a"]}`
	r, err := ParseRequest([]byte(fb), 3, MessageID|OnShortage)
	if err != nil || r.OnShortage == nil || *r.OnShortage != "fallback" || r.MessageID == nil || *r.MessageID != "m" || len(r.Recipients) != 1 {
		t.Fatalf("%s: %+v, %v", fb, r, err)
	}
	r, err = ParseRequest([]byte(`{"on_shortage":null,"recipients":["a"]}`), 3, MessageID|OnShortage)
	if err != nil || r.OnShortage != nil {
		t.Fatalf("null on_shortage: %+v, %v", r, err)
	}
	for _, c := range []struct {
		body     string
		optional Fields
	}{
		{fb, MessageID}, // allocation without the policy: unknown field
		{`{"message_id":"m","recipients":["a"]}`, 0}, // a release takes recipients only
		{`{"on_shortage":"reject","on_shortage":"fallback","recipients":["a"]}`, OnShortage},
		{`{"on_shortage":1,"recipients":["a"]}`, OnShortage},
	} {
		if _, err := ParseRequest([]byte(c.body), 3, c.optional); err == nil {
			t.Fatalf("%s with fields %b: accepted", c.body, c.optional)
		}
	}
	if r, err := ParseRequest([]byte(`{"recipients":["x","y"]}`), 3, 0); err != nil || len(r.Recipients) != 2 {
		t.Fatalf("a release body: %+v, %v", r, err)
	}
}

// FuzzParseAllocationJSON checks the parser against encoding/json on every
// body both accept.
func FuzzParse(f *testing.F) {
	f.Add(`{"message_id":"m","recipients":["a","b\u00e9"]}`)
	f.Add(`{"recipients":["\ud800x"]}`)
	f.Fuzz(func(t *testing.T, body string) {
		msg, rs, err := Parse([]byte(body), 1000)
		if err != nil {
			return
		}
		var ref struct {
			MessageID  *string  `json:"message_id"`
			Recipients []string `json:"recipients"`
		}
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ref); err != nil {
			t.Fatalf("we accept %q, encoding/json does not: %v", body, err)
		}
		if len(ref.Recipients) != len(rs) {
			t.Fatalf("%q: %d recipients, encoding/json %d", body, len(rs), len(ref.Recipients))
		}
		for i := range rs {
			if string(rs[i]) != ref.Recipients[i] {
				t.Fatalf("%q: recipient %d %q, encoding/json %q", body, i, rs[i], ref.Recipients[i])
			}
		}
		if (msg == nil) != (ref.MessageID == nil) || (msg != nil && *msg != *ref.MessageID) {
			t.Fatalf("%q: message differs", body)
		}
	})
}
