// This file tests the watchdog's guard script against a zombie pg_ctl
// start.

package pgtemp

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stagedserver/seda/internal/poll"
)

// TestGuardScriptSkipsAZombieStart: the watchdog, whose owner died while
// a pg_ctl start ran, waits for that start to end, but not for a zombie
// that its new parent never reaps (kill -0 finds it alive): it stops the
// server once the process is a zombie, long before its wait runs out.
func TestGuardScriptSkipsAZombieStart(t *testing.T) {
	dir := t.TempDir()
	stopped := filepath.Join(dir, "stopped")
	// pg_ctl stand-in: records that the server was stopped.
	ctl := filepath.Join(dir, "pg_ctl")
	if err := os.WriteFile(ctl, []byte("#!/bin/sh\necho \"$@\" > "+stopped+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A zombie: a child of this process that exited and is not waited for.
	z := exec.Command("true")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the child to become a zombie", func() bool { return !processAlive(z.Process.Pid) })
	defer z.Wait()

	guard := exec.Command("/bin/sh", "-c", guardScript, ctl, filepath.Join(dir, "data"))
	in, err := guard.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := guard.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { guard.Process.Kill(); guard.Wait() }() // gone already, unless the test failed
	// A start with a wait of 1000 s: without the zombie check the
	// watchdog would wait that long.
	if _, err := in.Write([]byte("start " + strconv.Itoa(z.Process.Pid) + " 1000\n")); err != nil {
		t.Fatal(err)
	}
	in.Close() // the owner died
	poll.Until(t, "the watchdog to stop the server", func() bool {
		b, err := os.ReadFile(stopped)
		return err == nil && len(b) > 0
	})
	if b, _ := os.ReadFile(stopped); string(b) != "stop -D "+filepath.Join(dir, "data")+" -m immediate -s\n" {
		t.Fatalf("pg_ctl ran with %q", b)
	}
}
