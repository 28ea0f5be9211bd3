package pipeline

// This file tests NewLogger: the levels and formats it takes, and those
// it refuses.

import (
	"testing"
)

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
