package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	// A write to a closed stdout or stderr (pipectl run | head, or tee
	// killed by the Ctrl-C meant for the drain) must fail, not end the
	// process: the line is dropped and the drain goes on. A Go program
	// that does not ask for SIGPIPE dies of it on such a write to fd 1 or
	// 2; one that asks gets EPIPE from the write instead. Nobody reads the
	// channel: a signal that finds it full is dropped. Child processes
	// (PostgreSQL, psql) keep the default disposition.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	os.Exit(execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// exitError carries an exit status out of a command whose failure has
// already been reported (lint findings, unacked records).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// execute runs pipectl with args and returns the process exit status.
func execute(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	out := &closedWriter{w: stdout}
	root := newRootCmd(stdin, out, stderr)
	root.SetArgs(args)
	return exitStatus(root.Execute(), out, stderr)
}

// exitStatus is the exit status of a command that ended with err, having
// written to out; a failure not reported yet is reported on stderr.
func exitStatus(err error, out *closedWriter, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if out.closed.Load() {
		// Whoever read the output has what it wanted (pipectl stats |
		// head -1): no failure, and nowhere to say one.
		return 0
	}
	fmt.Fprintln(stderr, "pipectl:", err)
	return 1
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "pipectl",
		Short:         "Run, check, watch and load staged pipelines",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newRunCmd(),
		newLintCmd(),
		newGraphCmd(),
		newStatsCmd(),
		newTopCmd(),
		newLoadCmd(),
		newDocCmd(),
		newVersionCmd(),
		newPsqlCmd(),
		newDBCmd(),
		newScaleCmd(),
	)
	return root
}

// closedWriter is stdout, noting when a write finds it closed (EPIPE):
// an EPIPE from elsewhere (a server that reset the connection) is a
// failure like any other.
type closedWriter struct {
	w      io.Writer
	closed atomic.Bool
}

func (c *closedWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	if errors.Is(err, syscall.EPIPE) {
		c.closed.Store(true)
	}
	return n, err
}

// stdoutFile is the file under stdout, when it is one (top asks whether it
// is a terminal).
func stdoutFile(w io.Writer) (*os.File, bool) {
	if c, ok := w.(*closedWriter); ok {
		w = c.w
	}
	f, ok := w.(*os.File)
	return f, ok
}
