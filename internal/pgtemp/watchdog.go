// This file keeps a server from outliving the process that started it:
// the watchdog, a shell that stops the server when its owner dies.

package pgtemp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// The watchdog's script. $0 is pg_ctl, $1 the data directory, and the rest
// are directories to delete. A line on stdin means the server was stopped
// in order; end of file without one means this process died.
const guardScript = `trap '' INT HUP
if read -r _; then exit 0; fi
"$0" stop -D "$1" -m immediate -s >/dev/null 2>&1
shift
[ $# -gt 0 ] && rm -rf -- "$@"
exit 0`

func (s *Server) startGuard() error {
	args := []string{"-c", guardScript, filepath.Join(s.bin, "pg_ctl"), s.dataDir}
	if !s.opts.Keep {
		args = append(args, s.dir)
	}
	if s.ownSock && (!s.opts.Keep || s.opts.Path != "") {
		args = append(args, s.sockDir)
	}
	cmd := exec.Command("/bin/sh", args...)
	cmd.Dir = "/"
	cmd.Env = s.env
	// Its own process group, so that a Ctrl-C meant for this process does
	// not also stop the watchdog.
	cmd.SysProcAttr = procAttr(s.cred, true)
	if s.lock != nil {
		// The watchdog holds the directory's lock too, so that the lock
		// outlives this process until the server it guards is stopped.
		cmd.ExtraFiles = []*os.File{s.lock}
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	s.guard, s.guardIn = cmd, in
	return nil
}

// releaseGuard tells the watchdog that the server was stopped in order,
// and waits for it to exit. s.mu is held.
func (s *Server) releaseGuard() error {
	if s.guard == nil {
		return nil
	}
	_, werr := io.WriteString(s.guardIn, "done\n")
	_ = s.guardIn.Close()
	err := s.guard.Wait()
	s.guard, s.guardIn = nil, nil
	if err := errors.Join(werr, err); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	return nil
}
