// This file runs a local database that no process owns, for `pipectl db`:
// StartDetached, StopDetached and Inspect.

package pgtemp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Info is what Inspect finds in a local database's directory (an
// Options.Path).
type Info struct {
	Path    string // absolute
	Exists  bool   // it holds a data directory
	Running bool   // a server runs on it
	PID     int    // the postmaster's, while Running
	// Port is the running server's, else the one stored for the next
	// start; 0 when there is none.
	Port int
	// DSN is the URL of the "postgres" database at Port; "" without one.
	DSN string
	// Owner names the process that holds the directory, as "pid N:
	// COMMAND LINE": the process whose server it is (Start with
	// Options.Path; the server stops when that process ends), or one
	// starting or stopping a server there. "" when none does: a running
	// server is then StartDetached's (or was started by hand), and stops
	// only with StopDetached.
	Owner string
}

// Inspect reports on the local database in path: whether a server runs
// there, on which port, and whether a process owns it. It changes nothing
// and starts nothing; user is the superuser named in the DSN ("" means
// "postgres").
func Inspect(path, user string) (Info, error) {
	dir, err := filepath.Abs(path)
	if err != nil {
		return Info{}, fmt.Errorf("pgtemp: %w", err)
	}
	data := filepath.Join(dir, "data")
	in := Info{Path: dir}
	if in.Exists, err = hasDataDir(data); err != nil {
		// A directory in which the process that holds the lock runs
		// initdb in place (an empty data/ made beforehand) is half-built
		// for a while: it is being made, not left unfinished.
		if !errors.Is(err, errUnfinished) || !locked(dir) {
			return Info{}, fmt.Errorf("pgtemp: %w", err)
		}
	}
	in.Port, in.PID = runningPort(data)
	in.Running = in.PID > 0
	if !in.Running {
		in.Port = readPort(dir)
	}
	if in.Port > 0 {
		in.DSN = dsn(cmp.Or(user, "postgres"), in.Port, "postgres")
	}
	if locked(dir) {
		in.Owner = holder(dir)
	}
	return in, nil
}

// locked reports whether a process holds the lock of the local database
// in dir: a shared lock is refused while one holds the exclusive one.
func locked(dir string) bool {
	f, err := os.Open(filepath.Join(dir, lockName))
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(tryLock(f, false), errLocked)
}

// Detached is what StartDetached did.
type Detached struct {
	Info
	// Started is false when a server that no process owns was running
	// there already: StartDetached then left it as it was.
	Started bool
	Created bool     // initdb made a new data directory (Server.Created)
	Granted []string // as Server.Granted
	// PreviousPort is the stored port that another program had taken, so
	// that the server took a new one (Server.PreviousPort); 0 otherwise.
	PreviousPort int
}

// StartDetached starts the local database in o.Path (required) as a
// server that no process owns: it has no watchdog and, once started, no
// process holds its directory's lock, so it runs until StopDetached (or a
// reboot), whatever becomes of this process or any other. It takes the
// port stored in o.Path, as Start does. When such a server runs there
// already it is left alone and reported (Started false). When a process
// owns the server there (Start with o.Path), the error wraps ErrInUse and
// names it.
func StartDetached(ctx context.Context, o Options) (Detached, error) {
	if o.Path == "" {
		return Detached{}, errors.New("pgtemp: StartDetached needs Options.Path")
	}
	s, err := newServer(ctx, o)
	if err != nil {
		return Detached{}, fmt.Errorf("pgtemp: %w", err)
	}
	if err := s.openPath(ctx); err != nil {
		return Detached{}, fmt.Errorf("pgtemp: %w", err)
	}
	if livePostmaster(s.dataDir) == 0 {
		if err := s.setup(ctx, false); err != nil {
			_ = s.unlock()
			return Detached{}, fmt.Errorf("pgtemp: %w", err)
		}
	}
	started := s.state == running
	// From here on nothing of this process holds the server.
	if err := s.unlock(); err != nil {
		return Detached{}, fmt.Errorf("pgtemp: %w", err)
	}
	in, err := Inspect(s.dir, s.user)
	if err != nil {
		return Detached{}, err
	}
	return Detached{Info: in, Started: started, Created: s.created, Granted: s.granted, PreviousPort: s.movedFrom}, nil
}

// StopDetached stops the server that no process owns in path, with a fast
// shutdown (Server.Remove's halt), and keeps its data and stored port. It
// reports what it found first: Info.Running false means there was nothing
// to stop. When a process owns the server there, it is left running and
// the error wraps ErrInUse and names that process: the server stops when
// it ends.
func StopDetached(ctx context.Context, path string) (Info, error) {
	in, err := Inspect(path, "")
	if err != nil || !in.Exists {
		return in, err
	}
	s, err := newServer(ctx, Options{Path: in.Path})
	if err != nil {
		return in, fmt.Errorf("pgtemp: %w", err)
	}
	s.dir = in.Path
	s.setPaths()
	if s.lock, err = lockDir(ctx, s.dir); err != nil {
		return in, fmt.Errorf("pgtemp: %w: it stops when that process ends", err)
	}
	defer s.unlock()
	if livePostmaster(s.dataDir) == 0 {
		in.Running = false
		return in, nil
	}
	s.binForData()
	sock := socketDir(s.dataDir)
	s.state = running
	if err := s.halt(ctx, "fast"); err != nil {
		return in, fmt.Errorf("pgtemp: %w", err)
	}
	// A socket directory of its own, made because the path was too long
	// for a socket in it (see setup), goes with the server.
	if ownSocketDir(sock) {
		_ = os.RemoveAll(sock)
	}
	return in, nil
}

// ownSocketDir reports whether dir, read from a postmaster.pid, names a
// socket directory setup makes: /tmp/pgtemp-sock-* (or under os.TempDir),
// nothing else. The file is the server's user's to write, and a prefix
// alone let "/tmp/pgtemp-sock-x/../../etc" through to a RemoveAll run as
// root.
func ownSocketDir(dir string) bool {
	if dir == "" || dir != filepath.Clean(dir) {
		return false
	}
	parent, name := filepath.Split(dir)
	parent = filepath.Clean(parent)
	if !strings.HasPrefix(name, "pgtemp-sock-") || parent != filepath.Clean(os.TempDir()) && parent != "/tmp" {
		return false
	}
	fi, err := os.Lstat(dir)
	return err == nil && fi.IsDir() // not a symlink to elsewhere
}

// socketDir is the socket directory in dataDir's postmaster.pid (its fifth
// line), or "".
func socketDir(dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 5 {
		return ""
	}
	return strings.TrimSpace(lines[4])
}
