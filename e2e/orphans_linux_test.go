//go:build linux

package e2e

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes cmd's process get SIGKILL when this test process dies,
// so that a test binary killed by go test's timeout, or by hand, leaves no
// pipectl, nats-server or rsyslogd behind holding ports and retrying a
// database that its watchdog has stopped. Call it before cmd.Start.
//
// Linux sends the signal when the thread that started the process exits.
// Go keeps its threads unless a goroutine locked to one exits, and no
// test here locks one.
func dieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
