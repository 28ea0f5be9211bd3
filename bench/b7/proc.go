package b7

// This file runs the processes of a benchmark across processes (pipectl,
// nats-server) and measures their CPU; B9 uses it too.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/internal/gobuild"
)

// Proc is one process of a benchmark run: pipectl or nats-server.
type Proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
	Addr   string        // where a netio.tcp source listens (pipectl)
	cpu0   time.Duration
}

// StartProc starts args with env added to this process's environment and
// returns once it is ready: pipectl has said where it listens (Addr) or
// that it runs, nats-server that it is ready. Its output is kept in
// logFile when that is set.
func StartProc(ctx context.Context, name string, env []string, logFile string, args ...string) (*Proc, error) {
	p := &Proc{exited: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, args[0], args[1:]...)
	gobuild.DieWithCaller(p.cmd) // a harness killed by hand leaves no server behind
	p.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	var keep io.Writer = io.Discard
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return nil, err
		}
		defer func() {
			go func() { <-p.exited; f.Close() }()
		}()
		keep = f
	}
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ready := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		var line []byte
		sent := false
		for {
			n, err := pr.Read(buf)
			keep.Write(buf[:n])
			line = append(line, buf[:n]...)
			for !sent {
				i := bytes.IndexByte(line, '\n')
				if i < 0 {
					break
				}
				l := string(line[:i])
				line = line[i+1:]
				if _, a, ok := strings.Cut(l, ") listening on "); ok {
					ready <- strings.TrimSpace(a)
					sent = true
				} else if strings.Contains(l, "Ctrl-C drains") || strings.Contains(l, "Server is ready") {
					ready <- ""
					sent = true
				}
			}
			if sent {
				line = nil
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { p.cmd.Wait(); pw.Close(); close(p.exited) }()
	select {
	case a := <-ready:
		p.Addr = a
	case <-time.After(2 * time.Minute):
		p.cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not start", name)
	}
	p.cpu0 = measure.ProcessCPU(p.cmd.Process.Pid)
	return p, nil
}

// CPU is the process's CPU time since it was ready.
func (p *Proc) CPU() time.Duration { return measure.ProcessCPU(p.cmd.Process.Pid) - p.cpu0 }

// Stop sends SIGINT and waits for the process to exit (a minute, then
// SIGKILL).
func (p *Proc) Stop() error {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
		if st := p.cmd.ProcessState; st != nil && !st.Success() {
			return fmt.Errorf("%s: %s", p.cmd.Path, st)
		}
		return nil
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		return errors.New("did not stop within a minute")
	}
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Kill kills the process at once.
func (p *Proc) Kill() { p.cmd.Process.Kill() }

// NatsURL reads the client port nats-server wrote to its ports file.
func NatsURL(dir string, pid int) (string, error) {
	f := filepath.Join(dir, fmt.Sprintf("nats-server_%d.ports", pid))
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if i := bytes.Index(b, []byte("nats://")); i >= 0 {
			u := b[i:]
			if j := bytes.IndexByte(u, '"'); j >= 0 {
				return string(u[:j]), nil
			}
		}
	}
	return "", fmt.Errorf("no client URL in %s", f)
}
