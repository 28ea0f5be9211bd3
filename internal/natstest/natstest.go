package natstest

// This file runs a NATS server with JetStream in the test process:
// Start, Stop, Restart, and a plain client to look at its streams.

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readyWait bounds how long Start and Restart wait for the server to take
// connections.
const readyWait = 30 * time.Second

// Options configure a test server; the zero value is a JetStream server
// with a file store and the server's default limits.
type Options struct {
	// MaxPayload, when positive, is the largest message the server takes.
	MaxPayload int32
	// Debug sends the server's log to t.Log.
	Debug bool
}

// Server is a running in-process NATS server. Its methods are safe for
// concurrent use.
type Server struct {
	t    testing.TB
	opts Options
	dir  string // JetStream store, kept across restarts
	port int

	mu  sync.Mutex
	srv *server.Server // nil while stopped
}

// Start starts a server for t and shuts it down when t ends. It fails t
// if the server does not start.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{t: t, opts: o, dir: t.TempDir()}
	var err error
	for range 20 { // another process may have taken the port picked
		if s.port, err = candidatePort(); err != nil {
			break
		}
		if err = s.start(); !errors.Is(err, errPortTaken) {
			break
		}
	}
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() error {
	// At once if the port is taken: the server would wait readyWait for
	// its listener, so that Restart tried once, for readyWait, and failed.
	if err := probe(s.port); err != nil {
		return err
	}
	opts := &server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.dir,
		NoSigs:     true,
		NoLog:      !s.opts.Debug,
		MaxPayload: s.opts.MaxPayload,
		// The e2e tests restart the server on its port at once.
		HTTPPort: 0,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("new server: %w", err)
	}
	if s.opts.Debug {
		srv.SetLogger(testLogger{s.t}, true, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(readyWait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("server not ready after %s", readyWait)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

// URL returns the server's client URL (nats://127.0.0.1:PORT); it stays
// the same across restarts.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// StoreDir returns the directory of the JetStream file store.
func (s *Server) StoreDir() string { return s.dir }

// Stop shuts the server down and waits until it is gone. Calling it again,
// or on a stopped server, does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart stops the server (if it runs) and starts it again on the same
// port with the same store. It fails the test if the server does not come
// back; the port may have been taken meanwhile, so it retries for a while.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for deadline := time.Now().Add(readyWait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = s.start(); err == nil {
			return
		}
	}
	s.t.Fatalf("natstest: restart: %v", err)
}

// Server returns the running nats-server, for tests that inspect it; nil
// while stopped.
func (s *Server) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// JetStream connects a plain client to the server at url, for a test to
// look at or change its streams behind the pipeline's back; the
// connection (js.Conn()) is closed when the test ends.
func JetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

type testLogger struct{ t testing.TB }

func (l testLogger) Noticef(format string, v ...any) { l.t.Logf("nats: "+format, v...) }
func (l testLogger) Warnf(format string, v ...any)   { l.t.Logf("nats WARN: "+format, v...) }
func (l testLogger) Fatalf(format string, v ...any)  { l.t.Logf("nats FATAL: "+format, v...) }
func (l testLogger) Errorf(format string, v ...any)  { l.t.Logf("nats ERROR: "+format, v...) }
func (l testLogger) Debugf(format string, v ...any)  { l.t.Logf("nats DEBUG: "+format, v...) }
func (l testLogger) Tracef(format string, v ...any)  { l.t.Logf("nats TRACE: "+format, v...) }
