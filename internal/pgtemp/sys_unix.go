//go:build unix

// This file is what a server needs of a Unix system: credentials, process
// groups, signals and file locks.

package pgtemp

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// supported says whether Start can run a server here: it needs /bin/sh,
// Unix sockets, process groups and (as root) another user's credentials.
const supported = true

// credential is an OS user's uid and gid, for running PostgreSQL as them.
type credential = syscall.Credential

// procAttr makes a child run as cred (nil: as this process) and, with
// ownGroup, in a process group of its own.
func procAttr(cred *credential, ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: ownGroup}
}

// kill sends SIGKILL to pid.
func kill(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

// errLocked is returned by tryLock when another process holds the lock.
var errLocked = unix.EWOULDBLOCK

// tryLock takes a flock on f without waiting: an exclusive one, or a
// shared one to see whether anyone holds it exclusively.
func tryLock(f *os.File, exclusive bool) error {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	return unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
}

// processUID returns the user ID process pid runs as (its /proc entry's
// owner); false when there is no such process.
func processUID(pid int) (uint32, bool) {
	fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		return 0, false
	}
	return fi.Sys().(*syscall.Stat_t).Uid, true
}
