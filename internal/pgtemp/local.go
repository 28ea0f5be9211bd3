// This file is a local database's directory (Options.Path): its lock, its
// stored port, and finding the server that runs on it.

package pgtemp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrInUse is wrapped by the error Start returns when Options.Path is
// locked by another server, running or being stopped, and by the error
// StartDetached and StopDetached return when a process owns the server
// there.
var ErrInUse = errors.New("in use by another server")

// ErrRunning is wrapped by the error Start returns when a server that no
// process owns (StartDetached's, or one started by hand) already runs on
// Options.Path: use it (Inspect gives its DSN), or stop it first.
var ErrRunning = errors.New("a PostgreSQL server already runs on it")

// lockName is the lock file in an Options.Path directory. It holds the
// process ID and command line of the holder, for the error a second
// Start reports.
const lockName = "pgtemp.lock"

// portName is the file in an Options.Path directory that keeps the port
// its server listens on, so that the next start takes it again.
const portName = "port"

// lockWait is how long taking a directory's lock waits for a holder that
// is only looking (Inspect holds it for a moment).
const lockWait = time.Second

// openPath makes and locks the directory of Options.Path, and makes it
// reachable by the server's OS user. On failure nothing stays locked.
func (s *Server) openPath(ctx context.Context) (err error) {
	dir, err := filepath.Abs(s.opts.Path)
	if err != nil {
		return err
	}
	if err := shellSafe(dir); err != nil {
		return err
	}
	s.dir = dir
	s.setPaths()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); errors.Is(err, fs.ErrExist) {
		if err := ownDir(dir); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if s.lock, err = lockDir(ctx, dir); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = s.unlock()
		}
	}()
	reuse, err := hasDataDir(s.dataDir)
	if err != nil {
		return err
	}
	if reuse {
		s.binForData()
	}
	if s.cred == nil {
		return nil
	}
	if err := s.reach(ctx, dir); err != nil {
		return err
	}
	// The server's OS user owns the directory (not what is in it: the lock
	// file stays the caller's).
	return os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid))
}

// ownEntries are the names a local database's directory holds: what
// setPaths, setup and the lock and port files make.
var ownEntries = map[string]bool{
	"data": true, "postgres.log": true, "sock": true,
	lockName: true, portName: true, portName + ".new": true,
}

// notData are names a directory may hold besides a local database's
// files without being somebody's: a mount point's lost+found, a
// placeholder, a file system's snapshot directory. Other hidden files
// (.ssh, .bashrc) are data: a home directory is refused.
var notData = map[string]bool{"lost+found": true, ".gitkeep": true, ".keep": true, ".snapshot": true, ".snapshots": true}

// ownDir checks that dir, which exists, is empty or a local database's
// directory (notData aside). Anything else is somebody's: Start would
// fill it with a cluster's files, and as root hand it to the server's OS
// user.
func ownDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !ownEntries[e.Name()] && !notData[e.Name()] && !isInitdbDir(e.Name()) {
			return fmt.Errorf("%s holds %q, so it is not a local database's directory: "+
				"give a new or empty directory (a database's directory holds data, postgres.log, sock, %s and %s)",
				dir, e.Name(), lockName, portName)
		}
	}
	return nil
}

// shellSafe refuses a path that pg_ctl cannot pass on: it hands -D and -l
// to /bin/sh inside double quotes, where $, `, " and \ are not literal, so
// such a path would start a server somewhere else, or run a command.
func shellSafe(path string) error {
	if i := strings.IndexAny(path, "$`\"\\\n"); i >= 0 {
		return fmt.Errorf("%q holds %q, which /bin/sh reads as special inside the double quotes pg_ctl puts the path in: choose a path without $, `, \", \\ or a newline", path, path[i:i+1])
	}
	return nil
}

// binForData takes the binaries of the PostgreSQL version that made the
// data directory, when they are installed and Options.BinDir is not set;
// otherwise PostgreSQL says what is wrong.
func (s *Server) binForData() {
	if s.opts.BinDir != "" {
		return
	}
	if v, err := os.ReadFile(filepath.Join(s.dataDir, "PG_VERSION")); err == nil {
		if d := filepath.Join("/usr/lib/postgresql", strings.TrimSpace(string(v)), "bin"); hasTools(d) {
			s.bin = d
		}
	}
}

// unlock releases the directory's lock, if s holds it (the watchdog may
// hold it on until it exits).
func (s *Server) unlock() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// lockDir takes the lock of dir, waiting up to lockWait for a holder that
// may only be looking, and writes this process into it.
func lockDir(ctx context.Context, dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockWait)
	for {
		err = tryLock(f, true)
		if !errors.Is(err, errLocked) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("%s is %w (%s)", dir, ErrInUse, holder(dir))
		}
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	cmdline, _ := os.ReadFile("/proc/self/cmdline")
	who := fmt.Sprintf("pid %d: %s", os.Getpid(), strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(who+"\n"), 0)
	}
	return f, nil
}

// holder is what dir's lock file says of the process that holds it.
func holder(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, lockName))
	if who := strings.TrimSpace(string(b)); who != "" {
		return who
	}
	return "unknown process"
}

// readPort returns the port stored in dir, or 0.
func readPort(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, portName))
	if err != nil {
		return 0
	}
	p, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || p <= 0 || p > 65535 {
		return 0
	}
	return p
}

// writePort stores port in dir, for the next start.
func writePort(dir string, port int) error {
	if readPort(dir) == port {
		return nil
	}
	tmp := filepath.Join(dir, portName+".new")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
		return fmt.Errorf("store the port: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, portName)); err != nil {
		return fmt.Errorf("store the port: %w", err)
	}
	return nil
}

// hasDataDir reports whether dir is a PostgreSQL data directory; a
// directory that is neither that nor empty is an error, since initdb
// would refuse it, and so is one that initdb did not finish.
func hasDataDir(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		if err := initdbFinished(dir); err != nil {
			return false, err
		}
		return true, nil
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case len(entries) > 0:
		return false, fmt.Errorf("%s is not empty and holds no PostgreSQL data directory (no PG_VERSION): move it away", dir)
	}
	return false, nil
}

// initdbDatabases is how many databases initdb makes: template1, template0
// and postgres, each a directory of base/ with a PG_VERSION of its own.
const initdbDatabases = 3

// initdbFinished refuses a data directory that an initdb cut short left
// behind (when initdb still ran in place; see Server.initdb): PG_VERSION
// is among the first files initdb writes, and the server started on such
// a directory only to fail, every time, on what it lacks (database
// "postgres" does not exist).
//
// A directory a server has run on is data, whatever it holds: the
// postmaster writes postmaster.opts at each start, and initdb runs none.
// Of one that no server has run on, initdb makes template1, template0 and
// postgres, in that order, and the standalone backend that makes them
// holds postmaster.pid with its process ID negated until it exits: fewer
// than the three databases in base/, or such a postmaster.pid left by a
// backend that is gone (killed while it copied postgres or committed it),
// is an initdb that did not finish. As no server ran on it, it holds no
// one's data; still, nothing is deleted here: the user removes it. What
// cannot be read proves nothing, and is left for the server to judge.
func initdbFinished(dir string) error {
	if _, err := os.Lstat(filepath.Join(dir, "postmaster.opts")); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	entries, err := os.ReadDir(filepath.Join(dir, "base"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	n := 0
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, "base", e.Name(), "PG_VERSION")); err == nil && e.IsDir() {
			n++
		}
	}
	why := ""
	switch pid := postmasterPID(dir); {
	case n < initdbDatabases:
		why = fmt.Sprintf("base/ holds %d of the %d databases initdb makes: template1, template0, postgres", n, initdbDatabases)
	case pid < 0 && !processAlive(-pid):
		why = fmt.Sprintf("initdb's standalone backend, process %d, died in it (postmaster.pid)", -pid)
	default:
		return nil
	}
	return fmt.Errorf("%s: %w: initdb did not finish it (%s), as when initdb is cut short, and no server has run on it; "+
		"remove it (rm -r %s), and the next start makes a new one", dir, errUnfinished, why, dir)
}

// errUnfinished is wrapped by initdbFinished's error.
var errUnfinished = errors.New("incomplete data directory")

// Created reports whether Start made a new data directory (always, without
// Options.Path); false means the data of an earlier run is reused.
func (s *Server) Created() bool { return s.created || s.opts.Path == "" }

// Granted returns the directories that Start gave the server's OS user
// search permission on (Options.GrantSearch).
func (s *Server) Granted() []string { return s.granted }

// PreviousPort returns, with Options.Path, the port stored there that
// Start could not take again because another program listens on it (the
// server then took a free one, now stored instead); 0 otherwise.
func (s *Server) PreviousPort() int { return s.movedFrom }

// RunningDSN returns the URL of the "postgres" database of the server that
// runs on the directory path (an Options.Path), as user, read from its
// postmaster.pid; ok is false when no server runs there.
func RunningDSN(path, user string) (string, bool) {
	path, err := filepath.Abs(path)
	if err != nil {
		return "", false
	}
	port, pid := runningPort(filepath.Join(path, "data"))
	if pid == 0 {
		return "", false
	}
	return dsn(user, port, "postgres"), true
}

// runningPort returns the port and postmaster PID of the server that
// runs on dataDir, from its postmaster.pid; pid is 0 when none runs.
func runningPort(dataDir string) (port, pid int) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, 0
	}
	// Lines: PID, data directory, start time, port, socket directory, ...
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, 0
	}
	port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	if pid = livePostmaster(dataDir); port <= 0 || pid == 0 {
		return 0, 0
	}
	return port, pid
}
