//go:build !unix

// This file stands in for sys_unix.go where there is no Unix: Start
// refuses to run there.

package pgtemp

import (
	"errors"
	"os"
	"syscall"
)

// supported is false: the server is started through /bin/sh and pg_ctl
// with Unix sockets and process groups, which this system lacks. Start
// says so; the rest of the package builds so that its callers do.
const supported = false

type credential struct{ Uid, Gid uint32 }

func procAttr(*credential, bool) *syscall.SysProcAttr { return nil }

func kill(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

var errLocked = errors.New("locked")

func tryLock(*os.File, bool) error { return errors.ErrUnsupported }

func processUID(int) (uint32, bool) { return 0, false }
