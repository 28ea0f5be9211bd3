package faultproxy

// This file tests the Proxy against an echo server on loopback: it
// forwards, and each fault (reset, partition, stall, target down) and
// Close do what they say.

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/internal/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo is a target that echoes what it reads and records, per connection,
// what it read and how the connection ended.
type echo struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	got  []*bytes.Buffer
	errs []error // nil: still open; io.EOF: closed cleanly
}

func newEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			i := len(e.got)
			e.got, e.errs = append(e.got, &bytes.Buffer{}), append(e.errs, nil)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					e.mu.Lock()
					e.got[i].Write(buf[:n])
					if err != nil {
						e.errs[i] = err
					}
					e.mu.Unlock()
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						e.mu.Lock()
						e.errs[i] = err
						e.mu.Unlock()
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

// conn returns what target connection i read and how it ended (nil: open).
func (e *echo) conn(i int) (string, error, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i >= len(e.got) {
		return "", nil, false
	}
	return e.got[i].String(), e.errs[i], true
}

func start(t *testing.T) (*echo, *Proxy) {
	t.Helper()
	e := newEcho(t)
	p, err := New(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return e, p
}

func dial(t *testing.T, p *Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(poll.Limit))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, buf, err)
	}
}

// readErr reads c until it fails and returns the error.
func readErr(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(poll.Limit))
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		return io.EOF
	}
	return err
}

func TestForwards(t *testing.T) {
	e, p := start(t)
	c := dial(t, p)
	roundTrip(t, c, "hello")
	roundTrip(t, c, "again")
	c.CloseWrite()
	if err := readErr(c); !errors.Is(err, io.EOF) {
		t.Errorf("client after its half-close: %v, want EOF", err)
	}
	poll.Until(t, "the target to see the close", func() bool {
		got, err, ok := e.conn(0)
		return ok && err != nil && got == "helloagain"
	})
	if _, err, _ := e.conn(0); !errors.Is(err, io.EOF) {
		t.Errorf("target saw %v, want EOF", err)
	}
	poll.Until(t, "the link to go", func() bool { return p.Stats().Open == 0 })
	if s := p.Stats(); s.Accepted != 1 || s.Dialed != 1 || s.BytesUp != 10 || s.BytesDown != 10 || s.Reset != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestReset(t *testing.T) {
	e, p := start(t)
	c := dial(t, p)
	roundTrip(t, c, "hello")
	if n := p.Reset(); n != 1 {
		t.Errorf("Reset ended %d links, want 1", n)
	}
	if err := readErr(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client: %v, want connection reset", err)
	}
	poll.Until(t, "the target to see the reset", func() bool { _, err, _ := e.conn(0); return err != nil })
	if _, err, _ := e.conn(0); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("target: %v, want connection reset", err)
	}
	roundTrip(t, dial(t, p), "after") // new connections go through
}

// TestPartitionHeal: under a partition no byte crosses and a new
// connection is accepted but the target never dialed for it; Heal resets
// both links, and the next connection goes through.
func TestPartitionHeal(t *testing.T) {
	e, p := start(t)
	c := dial(t, p)
	roundTrip(t, c, "before")
	p.Partition()
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	held := dial(t, p)
	if _, err := held.Write([]byte("never")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the held connection to be accepted", func() bool { return p.Stats().Open == 2 })
	if n := p.Heal(); n != 2 {
		t.Errorf("Heal reset %d links, want 2", n)
	}
	for _, cl := range []net.Conn{c, held} {
		if err := readErr(cl); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client after heal: %v, want connection reset", err)
		}
	}
	poll.Until(t, "the target to see the reset", func() bool { _, err, _ := e.conn(0); return err != nil })
	got, err, _ := e.conn(0)
	if got != "before" || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("target read %q and ended with %v; want only \"before\", then a reset", got, err)
	}
	// A pump counts its bytes after the write that delivers them: the
	// client may read "before" back before it is counted.
	poll.Until(t, "the 6 bytes of \"before\" counted each way", func() bool {
		s := p.Stats()
		return s.BytesUp >= 6 && s.BytesDown >= 6
	})
	if s := p.Stats(); s.Dialed != 1 || s.BytesUp != 6 || s.BytesDown != 6 {
		t.Errorf("stats %+v: want the target dialed once, 6 bytes each way", s)
	}
	roundTrip(t, dial(t, p), "after")
}

// TestStallResume: bytes written during a stall, on an open connection
// and on one made during it, arrive after Resume, in order.
func TestStallResume(t *testing.T) {
	e, p := start(t)
	c := dial(t, p)
	roundTrip(t, c, "a")
	p.Stall()
	if _, err := c.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	fresh := dial(t, p)
	if _, err := fresh.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the new connection to be accepted", func() bool { return p.Stats().Open == 2 })
	p.Resume()
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(poll.Limit))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "late" {
		t.Fatalf("after resume: %q, %v", buf, err)
	}
	buf = buf[:3]
	fresh.SetReadDeadline(time.Now().Add(poll.Limit))
	if _, err := io.ReadFull(fresh, buf); err != nil || string(buf) != "new" {
		t.Fatalf("new connection after resume: %q, %v", buf, err)
	}
	if got, err, _ := e.conn(0); got != "alate" || err != nil {
		t.Errorf("target read %q, %v", got, err)
	}
	if s := p.Stats(); s.Reset != 0 || s.Dialed != 2 {
		t.Errorf("stats %+v: want nothing reset, two dials", s)
	}
}

// TestTargetDown: a link whose target refuses is reset.
func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr()) // the reset may come before connect returns
	if err == nil {
		defer c.Close()
		err = readErr(c)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client: %v, want connection reset", err)
	}
}

// TestClose: Close resets the links, held ones too, and returns once the
// proxy's goroutines have (goleak checks).
func TestClose(t *testing.T) {
	_, p := start(t)
	c := dial(t, p)
	roundTrip(t, c, "x")
	p.Partition()
	held := dial(t, p)
	poll.Until(t, "the held connection to be accepted", func() bool { return p.Stats().Open == 2 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []net.Conn{c, held} {
		if err := readErr(cl); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client after Close: %v, want connection reset", err)
		}
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Error("the proxy still accepts after Close")
	}
	p.Close()
}
