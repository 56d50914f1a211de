package bench

import (
	"reflect"
	"testing"
	"time"
)

// TestTimingsWithDefaults: a zero field takes its default, a set one stays,
// and every field has a default (a new one without would wait zero).
func TestTimingsWithDefaults(t *testing.T) {
	got := Timings{KillWaitMin: time.Millisecond}.withDefaults()
	want := DefaultTimings()
	want.KillWaitMin = time.Millisecond
	if got != want {
		t.Fatalf("withDefaults: %+v, want %+v", got, want)
	}
	d := reflect.ValueOf(DefaultTimings())
	for i := range d.NumField() {
		if d.Field(i).IsZero() {
			t.Fatalf("Timings.%s has no default", d.Type().Field(i).Name)
		}
	}
}
