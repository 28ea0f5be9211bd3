//go:build linux

package gobuild

// This file tests that a process started through DieWithCaller dies with
// the process that started it.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/stagedserver/seda/internal/poll"
)

// TestDieWithCaller: a process started through DieWithCaller is killed
// when the process that started it dies without cleaning up, as a test
// binary killed by go test's timeout does.
func TestDieWithCaller(t *testing.T) {
	if os.Getenv("GOBUILD_TEST_ORPHAN") == "1" {
		sleep, err := exec.LookPath("sleep")
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		cmd := exec.Command(sleep, "600")
		DieWithCaller(cmd)
		if err := cmd.Start(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(cmd.Process.Pid)
		os.Exit(7) // no cleanup, no Wait: as a killed test binary
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDieWithCaller$")
	cmd.Env = append(os.Environ(), "GOBUILD_TEST_ORPHAN=1")
	out, err := cmd.Output()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 7 {
		t.Fatalf("test process: %v\n%s", err, out)
	}
	var pid int
	if _, err := fmt.Sscan(string(out), &pid); err != nil {
		t.Fatalf("test process printed %q: %v", out, err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) }) // when the test fails
	poll.Until(t, fmt.Sprintf("sleep (pid %d) to die with the test process that started it", pid), func() bool {
		return dead(pid)
	})
}

// dead reports whether process pid has exited: it is gone, or a zombie
// that nobody has reaped yet.
func dead(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name, which may hold ") ".
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || bytes.HasPrefix(bytes.TrimLeft(b[i+1:], " "), []byte("Z")) || bytes.HasPrefix(bytes.TrimLeft(b[i+1:], " "), []byte("X"))
}
