//go:build linux

package gobuild

// This file holds DieWithCaller on Linux: the parent-death signal.

import (
	"os/exec"
	"syscall"
)

// DieWithCaller makes cmd's process get SIGKILL when the process that
// starts it dies, so that a test binary killed by go test's timeout, or
// by hand, leaves no pipectl, nats-server or rsyslogd behind holding
// ports and retrying a database that its watchdog has stopped. Call it
// before cmd.Start. It does nothing where there is no parent-death signal
// (outside Linux).
//
// Linux sends the signal when the thread that started the process exits.
// Go keeps its threads unless a goroutine locked to one exits, which no
// caller here does.
func DieWithCaller(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
