package b8

// This file runs a contender's server as a process of its own.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stagedserver/seda/internal/gobuild"
)

// child is a contender's server in a process of its own: pipectl run or
// rsyslogd. Its output is kept (the last lines) for error messages, and
// watched for the line that tells where it listens.
type child struct {
	name string
	cmd  *exec.Cmd

	exited  chan struct{} // closed once the process has exited; waitErr is set then
	waitErr error

	mu    sync.Mutex
	out   []byte        // the last 16 KiB of stdout and stderr together
	addr  string        // where it takes input, once known
	ready chan struct{} // closed once addr is known
	match func(line string) (addr string, ok bool)
	line  []byte // output's unfinished line
}

// startChild runs cmd and waits until match finds the listen address in
// a line of its output (or, with match nil, until addr accepts a TCP
// connection).
func startChild(ctx context.Context, name string, cmd *exec.Cmd, match func(string) (string, bool), addr string) (*child, error) {
	c := &child{name: name, cmd: cmd, exited: make(chan struct{}), ready: make(chan struct{}), match: match}
	cmd.Stdout, cmd.Stderr = c, c
	cmd.WaitDelay = 5 * time.Second
	gobuild.DieWithCaller(cmd) // a harness killed by hand leaves no server behind
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("b8: start %s: %w", name, err)
	}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	if match == nil {
		go c.dialUntilUp(ctx, addr)
	}
	t := time.NewTimer(2 * time.Minute)
	defer t.Stop()
	var why error
	select {
	case <-c.ready:
		return c, nil
	case <-c.exited:
		why = fmt.Errorf("it exited before it was ready (%v)", c.waitErr)
	case <-t.C:
		why = errors.New("not ready within 2 minutes")
	case <-ctx.Done():
		why = ctx.Err()
	}
	cmd.Process.Kill()
	<-c.exited
	return nil, fmt.Errorf("b8: %s: %w%s", name, why, c.output())
}

// dialUntilUp marks the child ready once addr accepts a connection.
func (c *child) dialUntilUp(ctx context.Context, addr string) {
	for {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			nc.Close()
			c.mu.Lock()
			c.addr = addr
			close(c.ready)
			c.mu.Unlock()
			return
		}
		select {
		case <-c.exited:
			return
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Write takes the child's output.
func (c *child) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, b...)
	if len(c.out) > 16<<10 {
		c.out = c.out[len(c.out)-16<<10:]
	}
	if c.match == nil || c.addr != "" {
		return len(b), nil
	}
	c.line = append(c.line, b...)
	for {
		i := bytes.IndexByte(c.line, '\n')
		if i < 0 {
			break
		}
		if a, ok := c.match(string(c.line[:i])); ok {
			c.addr = a
			close(c.ready)
			c.line = nil
			break
		}
		c.line = c.line[i+1:]
	}
	return len(b), nil
}

func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "\noutput of " + c.name + ":\n" + string(c.out)
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// Addr is where the child takes input.
func (c *child) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// stop sends SIGTERM and waits for the process to exit; an exit other
// than a clean one is an error.
func (c *child) stop(ctx context.Context) error {
	var err error
	if serr := c.cmd.Process.Signal(syscall.SIGTERM); serr != nil && !errors.Is(serr, os.ErrProcessDone) {
		err = serr
	}
	select {
	case <-c.exited:
	case <-ctx.Done():
		c.cmd.Process.Kill()
		<-c.exited
		err = errors.Join(err, errors.New("it did not stop in time"))
	}
	if err = errors.Join(err, c.waitErr); err != nil {
		return fmt.Errorf("b8: stop %s: %w%s", c.name, err, c.output())
	}
	return nil
}

// pipectlListening matches pipectl run's "  accept (netio.tcp) listening on ADDR".
func pipectlListening(line string) (string, bool) {
	_, a, ok := strings.Cut(line, ") listening on ")
	if !ok || !strings.HasPrefix(strings.TrimSpace(line), "accept ") {
		return "", false
	}
	return strings.TrimSpace(a), true
}
