package natstest

// This file tests the server's port: outside the range the kernel hands
// out, and a Restart that finds it taken waits for it rather than
// failing.

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func portOf(t *testing.T, s *Server) int {
	t.Helper()
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The server's port is below the ports the kernel gives connections and
// listeners of its own choosing: one of those (a database client's, a
// browser's, in any process) took a port the kernel had chosen for the
// server once Restart had stopped it, and the restart failed.
func TestPortIsOutsideTheKernelsRange(t *testing.T) {
	low, high := ephemeralRange()
	if n, _ := portsOutside(low, high); n == 0 {
		t.Skipf("the kernel's range %d-%d leaves no port from %d to %d", low, high, lowestPort, highestPort)
	}
	s := Start(t, Options{})
	if p := portOf(t, s); p < lowestPort || p > highestPort || (low <= p && p <= high) {
		t.Errorf("port %d; want one from %d to %d outside the kernel's range %d-%d", p, lowestPort, highestPort, low, high)
	}
}

// The ports picked are those from lowestPort to highestPort outside the
// kernel's range, whatever the range: one that begins below lowestPort
// (1024-60999: above it only), just above it (20001-60999: one below,
// the rest above), or the usual one.
func TestPortsOutside(t *testing.T) {
	for _, c := range []struct{ low, high, n, first, last int }{
		{32768, 60999, 12768 + 4536, 20000, 65535},
		{1024, 60999, 4536, 61000, 65535},
		{20001, 60999, 1 + 4536, 20000, 65535},
		{20000, 65535, 0, 0, 0},
		{1024, 65535, 0, 0, 0},
	} {
		n, at := portsOutside(c.low, c.high)
		if n != c.n {
			t.Errorf("range %d-%d: %d ports, want %d", c.low, c.high, n, c.n)
			continue
		}
		if n == 0 {
			continue
		}
		if at(0) != c.first || at(n-1) != c.last {
			t.Errorf("range %d-%d: ports %d..%d, want %d..%d", c.low, c.high, at(0), at(n-1), c.first, c.last)
		}
		for i := range n {
			if p := at(i); c.low <= p && p <= c.high {
				t.Fatalf("range %d-%d: port %d (the %d-th) is in it", c.low, c.high, p, i)
			}
		}
	}
}

// A start that finds the port taken says so at once (errPortTaken), so
// that Restart tries again until the port is free: the server's own
// listen error went unseen, its start waited readyWait for a listener,
// and Restart gave up after that one try. Once the port is free the
// server comes back on it, with its streams.
func TestRestartWaitsForItsPort(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), readyWait)
	defer cancel()
	js := JetStream(t, s.URL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "kept", Subjects: []string{"kept"}}); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	// What a socket of another process does, holding the port.
	held, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(portOf(t, s))))
	if err != nil {
		t.Fatal(err)
	}
	err = s.start()
	held.Close()
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("start with the port held: %v; want %v", err, errPortTaken)
	}
	s.Restart()
	if s.Server() == nil {
		t.Fatal("no server after Restart")
	}
	if _, err := JetStream(t, s.URL()).Stream(ctx, "kept"); err != nil {
		t.Errorf("stream after Restart: %v", err)
	}
}
