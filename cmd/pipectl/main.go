package main

// This file holds pipectl's entry point: the root command with its
// subcommands, and the exit status, where a write to a closed stdout is
// no failure.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	return exitStatus(root.Execute(), stderr)
}

// exitStatus is the exit status of a command that ended with err; a
// failure not reported yet is reported on stderr.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if onlyClosedStdout(err) {
		// The command failed only because whoever read its output stopped
		// reading (pipectl stats | head -1): they have what they wanted,
		// and there is nowhere to say more. Any other failure (a drain cut
		// short while run's stdout was closed, say) is said on stderr and
		// fails, or a supervisor would see success.
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

// closedWriter is stdout, marking the error of a write that finds it
// closed (EPIPE) as a *stdoutClosedError, so that exitStatus can tell it
// from an EPIPE from elsewhere (a server that reset the connection),
// which is a failure like any other.
type closedWriter struct{ w io.Writer }

func (c *closedWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	if errors.Is(err, syscall.EPIPE) {
		err = &stdoutClosedError{err: err}
	}
	return n, err
}

// stdoutClosedError is the error of a write to a closed stdout.
type stdoutClosedError struct{ err error }

func (e *stdoutClosedError) Error() string { return "stdout: " + e.err.Error() }
func (e *stdoutClosedError) Unwrap() error { return e.err }

// onlyClosedStdout reports whether err is nothing but writes to a closed
// stdout, possibly wrapped or joined: a join that also holds another
// failure is that failure.
func onlyClosedStdout(err error) bool {
	switch e := err.(type) {
	case nil:
		return false
	case *stdoutClosedError:
		return true
	case interface{ Unwrap() []error }:
		errs := e.Unwrap()
		for _, x := range errs {
			if !onlyClosedStdout(x) {
				return false
			}
		}
		return len(errs) > 0
	case interface{ Unwrap() error }:
		return onlyClosedStdout(e.Unwrap())
	}
	return false
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
