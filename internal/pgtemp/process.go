// This file starts and stops the server process (pg_ctl start and stop)
// and holds the Server's methods that change its state. Every stop goes
// through halt; a Server ends one way, Remove.

package pgtemp

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

var errPortInUse = errors.New("port in use")

// testHookStarting, when set (by a test), is called with pg_ctl start's
// process ID once it runs.
var testHookStarting func(pid int)

// startLocked runs pg_ctl start on s.port. s.mu is held.
func (s *Server) startLocked(ctx context.Context) error {
	if pid := postmasterPID(s.dataDir); pid > 0 && s.runsAsServer(pid) {
		// Not ours (livePostmaster found none with our -D): a server
		// started another way (a symlinked path, by hand), or a stale
		// file naming a process of the server's user that has the pid
		// now. PostgreSQL refuses to start on it as well; this says why
		// without running pg_ctl. (A process of another user is taken for
		// stale, by PostgreSQL too: it cannot signal it.)
		return fmt.Errorf("start server: %s/postmaster.pid names a running process (pid %d): "+
			"if it is a PostgreSQL server on this directory, use it or stop it; if not, remove the file", s.dataDir, pid)
	}
	offset := fileSize(s.logFile)
	o := []string{
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port=" + strconv.Itoa(s.port),
		"-c", "unix_socket_directories=" + `"` + strings.ReplaceAll(s.sockDir, `"`, `""`) + `"`,
	}
	if s.opts.Fast {
		o = append(o, "-c", "fsync=off", "-c", "full_page_writes=off")
	}
	for _, k := range slices.Sorted(maps.Keys(s.opts.Settings)) {
		o = append(o, "-c", k+"="+s.opts.Settings[k])
	}
	// pg_ctl hands -o to /bin/sh, so every word is quoted for it.
	for i, a := range o {
		o[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	timeout := cmp.Or(s.opts.StartTimeout, time.Minute)
	// The watchdog hears of pg_ctl start, so that should this process die
	// meanwhile it waits for the start to end before it stops the server.
	wait := waitSeconds(ctx, timeout)
	_, err := s.runStarted(ctx, func(pid int) {
		s.tellGuard("start " + strconv.Itoa(pid) + " " + wait)
		if testHookStarting != nil {
			testHookStarting(pid)
		}
	}, "pg_ctl", "start", "-D", s.dataDir, "-l", s.logFile, "-w", "-s",
		"-t", wait, "-o", strings.Join(o, " "))
	s.tellGuard("up")
	if err == nil {
		s.state = running
		return nil
	}
	// pg_ctl may have given up (or been killed with ctx) while the server
	// was still starting: make sure it is not left behind. Only a
	// postmaster on our -D: pg_ctl stop signals whatever pid the file
	// names.
	if livePostmaster(s.dataDir) > 0 {
		_ = s.halt(ctx, "immediate")
	}
	tail := readTail(s.logFile, offset)
	if strings.Contains(tail, "could not bind") || strings.Contains(tail, "already in use") {
		err = fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return fmt.Errorf("start server on 127.0.0.1:%d: %w\npostgres.log ends with:\n%s", s.port, err, indent(tail))
}

// halt stops the server that runs on the data directory, in mode (fast:
// sessions end, a checkpoint is written; immediate: as a crash would),
// and makes sure it is gone: when pg_ctl stop fails, or ctx ends first,
// the server is stopped immediately, and its postmaster killed if even
// that fails. It is the one way this package stops a server process (the
// watchdog does the same with pg_ctl stop -m immediate when its owner
// died). The error is pg_ctl's in mode. s.mu is held, or s is not shared.
func (s *Server) halt(ctx context.Context, mode string) error {
	_, err := s.run(ctx, "pg_ctl", "stop", "-D", s.dataDir, "-m", mode, "-w", "-s",
		"-t", waitSeconds(ctx, time.Minute))
	if err != nil {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = s.run(fctx, "pg_ctl", "stop", "-D", s.dataDir, "-m", "immediate", "-w", "-s", "-t", "20")
		if pid := livePostmaster(s.dataDir); pid > 0 {
			kill(pid)
		}
		err = fmt.Errorf("stop server (%s): %w", mode, err)
	}
	if s.state != closed {
		s.state = stopped
	}
	return err
}

// livePostmaster returns the PID in dataDir's postmaster.pid if that
// process is a postmaster on dataDir, else 0: a stale postmaster.pid names
// a process that may since have been reused.
func livePostmaster(dataDir string) int {
	pid := postmasterPID(dataDir)
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); pid > 0 && err == nil &&
		bytes.Contains(cmdline, []byte("\x00-D\x00"+dataDir+"\x00")) {
		return pid
	}
	return 0
}

// runsAsServer reports whether process pid is alive and runs as the
// server's OS user: one PostgreSQL would take for another postmaster.
func (s *Server) runsAsServer(pid int) bool {
	uid, ok := processUID(pid)
	if !ok || !processAlive(pid) {
		return false
	}
	if s.cred != nil {
		return uid == s.cred.Uid
	}
	return int(uid) == os.Getuid()
}

// processAlive reports whether process pid runs (a zombie does not: a
// postmaster killed under a parent that does not reap stays one).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')') // the state follows the name, which may hold ") "
	if i < 0 {
		return false
	}
	rest := bytes.TrimLeft(b[i+1:], " ")
	return !bytes.HasPrefix(rest, []byte("Z")) && !bytes.HasPrefix(rest, []byte("X"))
}

// postmasterPID reads the first line of postmaster.pid; 0 if there is none.
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// StartServer starts the server again after StopServer or Kill, on the
// same data directory and port. It does nothing if the server is running
// and returns ErrClosed after Remove. After Kill, PostgreSQL runs crash
// recovery first.
func (s *Server) StartServer(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case closed:
		return ErrClosed
	case running:
		return nil
	}
	if err := s.startLocked(ctx); err != nil {
		return fmt.Errorf("pgtemp: %w", err)
	}
	return nil
}

// StopServer stops the server with a fast shutdown (pg_ctl stop -m fast:
// sessions are ended, open transactions roll back, a checkpoint is written)
// and keeps the data directory and port for StartServer: an outage, not an
// end (that is Remove). It does nothing if the server is already stopped
// and returns ErrClosed after Remove.
func (s *Server) StopServer(ctx context.Context) error {
	return s.stopServer(ctx, "fast")
}

// Kill stops the server as a crash would (pg_ctl stop -m immediate: no
// checkpoint, sessions cut). Otherwise it behaves like StopServer.
func (s *Server) Kill(ctx context.Context) error {
	return s.stopServer(ctx, "immediate")
}

func (s *Server) stopServer(ctx context.Context, mode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case closed:
		return ErrClosed
	case stopped:
		return nil
	}
	if err := s.halt(ctx, mode); err != nil {
		return fmt.Errorf("pgtemp: %w", err)
	}
	return nil
}

// Restart is StopServer followed by StartServer, with no other state change
// in between. The port and the data are kept.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == closed {
		return ErrClosed
	}
	if s.state == running {
		if err := s.halt(ctx, "fast"); err != nil {
			return fmt.Errorf("pgtemp: restart: %w", err)
		}
	}
	if err := s.startLocked(ctx); err != nil {
		return fmt.Errorf("pgtemp: restart: %w", err)
	}
	return nil
}

// Running reports whether a server runs on the data directory, as pg_ctl
// status sees it.
func (s *Server) Running(ctx context.Context) (bool, error) {
	_, err := s.run(ctx, "pg_ctl", "status", "-D", s.dataDir)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit) && (exit.ExitCode() == 3 || exit.ExitCode() == 4):
		// 3: not running; 4: no data directory (removed).
		return false, nil
	default:
		return false, fmt.Errorf("pgtemp: %w", err)
	}
}

// Remove ends the server for good, and is the one way to: a fast
// shutdown (halt: should it fail, an immediate one, and at worst SIGKILL
// of the postmaster), then the watchdog is told and the directory's lock
// released, then the directory is deleted unless Options.Keep is set
// (Options.Path implies it: such a directory is never deleted). Later
// calls do nothing and return nil; StartServer, StopServer, Kill and
// Restart then return ErrClosed.
func (s *Server) Remove(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == closed {
		return nil
	}
	var errs []error
	if s.state == running {
		errs = append(errs, s.halt(ctx, "fast"))
	} else if livePostmaster(s.dataDir) > 0 {
		// A start cut short by its context can leave a postmaster that
		// came up after pg_ctl was killed (one on our -D: not a process
		// a stale postmaster.pid names).
		_ = s.halt(ctx, "immediate")
	}
	s.state = closed
	errs = append(errs, s.releaseGuard(), s.unlock())
	if !s.opts.Keep {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	if s.ownSock && (!s.opts.Keep || s.opts.Path != "") {
		errs = append(errs, os.RemoveAll(s.sockDir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pgtemp: %w", err)
	}
	return nil
}
