package netio

// This file tests the TLS connection's writes: a write that makes
// progress gets time again, and closeNow sends no alert.

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/certtest"
)

// trickleConn is a socket whose kernel takes at most take bytes per
// write before the deadline runs out: a client reading slowly.
type trickleConn struct {
	net.Conn
	take      int
	written   int
	deadlines []time.Duration
}

func (c *trickleConn) Write(b []byte) (int, error) {
	n := min(len(b), c.take)
	c.written += n
	if n < len(b) {
		return n, &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	return n, nil
}

func (c *trickleConn) SetDeadline(time.Time) error { return nil }

func (c *trickleConn) SetWriteDeadline(t time.Time) error {
	c.deadlines = append(c.deadlines, time.Until(t).Round(time.Second))
	return nil
}

// Under TLS, a write the kernel takes part of before its deadline gets
// the deadline's time again, until all is taken: crypto/tls cannot go on
// after a cut write, and a 16 KiB record drained by a slow reader ended
// the connection. A write that takes nothing fails as before.
func TestProgressConnGivesTimeAgainOnProgress(t *testing.T) {
	tc := &trickleConn{take: 100}
	pc := &progressConn{Conn: tc}
	if err := pc.SetWriteDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := pc.Write(make([]byte, 1000))
	if n != 1000 || err != nil || tc.written != 1000 {
		t.Fatalf("Write = %d, %v (the kernel took %d), want all 1000", n, err, tc.written)
	}
	if len(tc.deadlines) != 10 || tc.deadlines[9] != 30*time.Second {
		t.Fatalf("deadlines set %v, want 30s, then 30s again after each of the 9 partial writes", tc.deadlines)
	}

	tc.take = 0
	n, err = pc.Write(make([]byte, 10))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write taken nothing of: %d, %v; want 0 and the deadline's error", n, err)
	}

	// SetDeadline (the handshake's bound) is absolute: not given again.
	tc.take = 3
	if err := pc.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := pc.Write(make([]byte, 10)); n != 3 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("under SetDeadline: %d, %v; want 3 and the deadline's error", n, err)
	}

	// Without a deadline, a partial write's error is returned as it is.
	tc.take = 3
	if err := pc.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n, err := pc.Write(make([]byte, 10)); n != 3 || err == nil {
		t.Fatalf("without a deadline: %d, %v; want 3 and the error", n, err)
	}
}

// closeNow closes the socket under a TLS connection without TLS's
// close_notify alert: tls.Conn.Close waits up to 5 s to hand it to a peer
// that does not read, and killLocked calls it holding the connection's
// lock, which every worker finishing one of its events needs.
func TestCloseNowSendsNoAlert(t *testing.T) {
	ca := certtest.NewCA(t, t.TempDir(), "test")
	pair := ca.Server(t, "server")
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	sRaw, cRaw := net.Pipe() // unbuffered: a write waits for the peer's read
	server := tls.Server(&progressConn{Conn: sRaw}, &tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true})
	client := tls.Client(cRaw, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	done := make(chan error, 1)
	go func() { done <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The peer reads what comes next on the wire: with tls.Conn.Close,
	// the alert; with closeNow, the end.
	type read struct {
		n   int
		err error
	}
	got := make(chan read, 1)
	go func() {
		n, err := cRaw.Read(make([]byte, 64))
		got <- read{n, err}
	}()
	closeNow(server)
	if r := <-got; r.n != 0 || !errors.Is(r.err, io.EOF) {
		t.Fatalf("the peer read %d bytes, then %v; want the end, no alert", r.n, r.err)
	}
}
