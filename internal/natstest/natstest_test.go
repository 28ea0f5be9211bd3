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
	s := Start(t, Options{})
	if p, low := portOf(t, s), ephemeralLow(); p < lowestPort || p >= low {
		t.Errorf("port %d; want one from %d below the kernel's range, which begins at %d", p, lowestPort, low)
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
