package netio

// This file tests that a drain under ack: none ends, at EOF, the record a
// connection left unterminated.

import (
	"io"
	"testing"
	"time"
)

// A drain under ack: none whose first read is the client's EOF still ends
// the record the connection's reads left unterminated ("b" of "a\nb"):
// at EOF it is a record, and one the drain read and discarded is counted
// lost. Before, the EOF counted only when the drain had read something
// too, so "b" was neither stored nor counted.
func TestDiscardEOFEndsPartialRecord(t *testing.T) {
	s := &Source{opts: options{Ack: AckNone, Framing: Lines, MaxFrame: 1024, ReadBuffer: 4096}}
	s.bufs.New = func() any { b := make([]byte, 4096); return &b }
	c := &conn{s: s, fr: newFramer(Lines, 1024, 4096)}
	c.fr.feed([]byte("<13>a\n<13>b"), &recCount{}) // the reader's last read: "a" emitted, "b" held
	if n := c.discard(func([]byte) (int, error) { return 0, io.EOF }, time.Time{}); n != 1 {
		t.Fatalf("discard at EOF counted %d records, want the unterminated last one", n)
	}
}
