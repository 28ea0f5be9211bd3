package e2e

// This file runs nats-server as a process of its own for the e2e tests,
// built from the version go.mod pins, with a file store.

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stagedserver/seda/internal/gobuild"
	"github.com/stagedserver/seda/internal/poll"
)

// natsServerProc is nats-server as a process of its own, built from the
// module go.mod pins (as `make nats-server` runs it), with a file store.
// The e2e tests run every pipeline as processes of their own, and the
// NATS server too: an operator's machine kills and restarts it apart from
// them, and its code runs without the race detector, as the pipectl
// processes' does. (In the race-built test process, a data race inside
// nats-server 2.15.2, a stream update against a consumer being created,
// failed a test after every record had been checked: docs/DESIGN.md,
// testing.)
type natsServerProc struct {
	bin, dir string
	port     int
	cmd      *exec.Cmd
	out      *syncBuffer
	done     chan struct{}
}

// buildNatsServer builds nats-server into a directory of t.
func buildNatsServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

// startNatsServer starts nats-server on a loopback port of its choosing
// (-p -1: no port picked here and freed, which a test running beside this
// one could take first) with its store in a directory of t, waits until it
// takes connections, and kills it when t ends. Restarts keep the port.
func startNatsServer(t *testing.T) *natsServerProc {
	t.Helper()
	s := &natsServerProc{bin: buildNatsServer(t), dir: t.TempDir(), port: -1}
	s.start(t)
	t.Cleanup(s.kill)
	return s
}

func (s *natsServerProc) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// start starts the server on its port (the first time, one it chooses)
// and store, and waits until it is ready.
func (s *natsServerProc) start(t *testing.T) {
	t.Helper()
	s.cmd = exec.Command(s.bin, "-js", "-sd", s.dir, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port))
	s.out = &syncBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	gobuild.DieWithCaller(s.cmd)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	s.done = done
	go func() { s.cmd.Wait(); close(done) }()
	out := s.out
	poll.Until(t, "nats-server to be ready", func() bool {
		return strings.Contains(out.String(), "Server is ready")
	})
	if s.port < 0 {
		m := listening.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("nats-server printed no client port:\n%s", out)
		}
		s.port, _ = strconv.Atoi(m[1])
	}
}

// listening finds the client port in nats-server's log.
var listening = regexp.MustCompile(`Listening for client connections on 127\.0\.0\.1:(\d+)`)

// kill kills the server with SIGKILL and waits until it is gone; on a
// stopped server it does nothing.
func (s *natsServerProc) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// restart stops the server as an operator would (SIGTERM: it shuts down
// cleanly), then starts it again on the same port and store.
func (s *natsServerProc) restart(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done
	s.start(t)
}
