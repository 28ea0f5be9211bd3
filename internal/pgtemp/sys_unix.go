//go:build unix

package pgtemp

import (
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

// tryLock takes an exclusive flock on f without waiting.
func tryLock(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }
