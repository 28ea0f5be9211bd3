package pipeline

import (
	"strings"
	"testing"
)

// Redact is stage.Redact: the cases live in package stage.
func TestRedact(t *testing.T) {
	in := `stage "db": connect to postgres://u:hunter2@h/db: refused (host=h password='hunter 2')`
	want := `stage "db": connect to postgres://u:xxxxx@h/db: refused (host=h password=xxxxx`
	if got := Redact(in); got != want || strings.Contains(got, "hunter") {
		t.Errorf("Redact(%q)\n = %q\nwant %q", in, got, want)
	}
}

func TestNewLogger(t *testing.T) {
	for _, lc := range []LogConfig{{}, {Level: "debug", Format: "json"}, {Level: "warn", Format: "console"}} {
		if _, err := NewLogger(lc); err != nil {
			t.Errorf("NewLogger(%+v): %v", lc, err)
		}
	}
	for _, lc := range []LogConfig{{Level: "loud"}, {Format: "xml"}} {
		if _, err := NewLogger(lc); err == nil {
			t.Errorf("NewLogger(%+v) accepted it", lc)
		}
	}
}
