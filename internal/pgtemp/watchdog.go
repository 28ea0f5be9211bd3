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
// are directories to delete. On stdin, "done" means the server was stopped
// in order; "start PID SECONDS" that pg_ctl start runs as PID, waiting for
// the server up to SECONDS, and "up" that it has returned. End of file
// without "done" means this process died: the watchdog stops the server.
// A pg_ctl start under way goes on without this process, and the server
// it brings up would come after that stop (and outlive everything), so
// the watchdog first waits for it to end: while it runs and is no zombie
// (its new parent may never reap it), for its SECONDS and 10 more at most.
const guardScript = `trap '' INT HUP
ctl=
while read -r l; do
	case $l in
	done) exit 0 ;;
	"start "*) ctl=${l#start } ;;
	up) ctl= ;;
	esac
done
if [ -n "$ctl" ]; then
	pid=${ctl%% *}
	n=$(( ${ctl#* } * 10 + 100 ))
	while [ $n -gt 0 ] && kill -0 "$pid" 2>/dev/null; do
		case $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) in Z*|X*) break ;; esac
		sleep 0.1
		n=$((n - 1))
	done
fi
"$0" stop -D "$1" -m immediate -s >/dev/null 2>&1
shift
[ $# -gt 0 ] && rm -rf -- "$@"
exit 0`

// tellGuard writes a line to the watchdog, if there is one. s.mu is held.
func (s *Server) tellGuard(line string) {
	if s.guardIn != nil {
		_, _ = io.WriteString(s.guardIn, line+"\n") // it died: nothing to tell
	}
}

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
