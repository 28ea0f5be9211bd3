// This file starts a server: Options, Start, and the Server's fixed facts
// (its directory, port and DSN).

package pgtemp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNotFound is wrapped by the error Start returns when initdb, pg_ctl and
// postgres cannot be found.
var ErrNotFound = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found")

// ErrUnsupported is wrapped by the error Start returns on systems other
// than Unix (Windows): the server is run through /bin/sh and pg_ctl, with
// Unix sockets. There, use an existing PostgreSQL server instead.
var ErrUnsupported = fmt.Errorf("a local PostgreSQL server can be started on Unix only (Linux, macOS, the BSDs), not on %s: "+
	"use an existing server instead: %w", runtime.GOOS, errors.ErrUnsupported)

// ErrClosed is returned by StartServer, Restart, StopServer and Kill once
// Remove has been called.
var ErrClosed = errors.New("pgtemp: server closed")

const installHint = "install them with `apt-get install -y postgresql` (Debian, Ubuntu), " +
	"or run `make test` or `make run`, which install them through scripts/ensure-postgres.sh"

// Options configure Start. The zero value is valid: a server for user
// "postgres" on a free port in a directory under os.TempDir(), with
// PostgreSQL's durable defaults.
type Options struct {
	// Dir is where the server's temporary directory is made; "" means
	// os.TempDir().
	Dir string
	// BinDir holds initdb, pg_ctl and postgres; "" means search PATH, then
	// /usr/lib/postgresql/*/bin.
	BinDir string
	// User is the database superuser, authenticated by trust; "" means
	// "postgres".
	User string
	// OSUser is the operating-system user PostgreSQL runs as when the calling
	// process is root; "" means "postgres". It is ignored otherwise.
	OSUser string
	// Port is the TCP port on 127.0.0.1; 0 means the port stored in Path
	// when there is one (see Path), else a free port picked by Start.
	// Either way the port stays the same across StopServer and StartServer.
	Port int
	// Fast sets fsync=off and full_page_writes=off: quick, and not durable
	// across an operating-system crash. synchronous_commit is left on, so a
	// commit still waits for its WAL write.
	Fast bool
	// Settings are extra server settings such as max_connections or
	// shared_buffers, passed as `-c name=value`. They are applied after the
	// ones Start sets (Fast included), so they win; "port" is refused (see
	// Port).
	Settings map[string]string
	// StartTimeout bounds each start of the server (pg_ctl -t); 0 means 60s.
	// The context passed to Start or StartServer bounds it as well.
	StartTimeout time.Duration
	// Keep leaves the directory in place when the server is removed.
	Keep bool
	// Path, when set, is the server's directory itself instead of a fresh
	// temporary one made in Dir: a local database that keeps its data and
	// its port. It is created if missing and initialised (initdb) only if
	// it holds no data directory yet; otherwise the data there is reused.
	// An existing Path must be empty or hold only what Start puts there
	// (data, postgres.log, sock, the lock and port files; lost+found,
	// .gitkeep, .keep and snapshot directories aside), and no path may
	// hold $, `, ", \ or a newline (pg_ctl hands it to /bin/sh).
	// The port the server listens on is stored in it and taken again by
	// the next start. It is locked for as long as the server runs, so that
	// a second Start on it fails with an error wrapping ErrInUse, and it is
	// never deleted (Keep is implied). See "Local databases" in the
	// package doc.
	Path string
	// GrantSearch applies with Path when the calling process is root: the
	// OS user the server runs as gets search permission (x, through an
	// ACL entry for that user only) on each directory above Path that it
	// cannot pass through, such as /root or a 0700 temporary directory.
	// Without it such a Path fails with an error that names the
	// directory.
	GrantSearch bool
}

type state int

const (
	stopped state = iota
	running
	closed
)

// Server is a throwaway PostgreSQL server. Its methods may be called from
// several goroutines; state changes are serialised.
type Server struct {
	opts    Options
	bin     string
	user    string
	osUser  string
	cred    *credential // nil: run as the calling user
	env     []string
	dir     string
	dataDir string
	sockDir string
	ownSock bool // sockDir lies outside dir, whose path is too long for a socket
	logFile string
	port    int // set before Start returns, then fixed

	// With Options.Path: the directory's lock (held while the server may
	// run; shared with the watchdog), whether Start made a new data
	// directory, the directories given search permission, and the stored
	// port that could not be taken again.
	lock      *os.File
	created   bool
	granted   []string
	movedFrom int

	mu    sync.Mutex
	state state
	guard *exec.Cmd
	// guardIn is the write end of the watchdog's stdin; see the package doc.
	guardIn io.WriteCloser
}

// Start creates a data directory with initdb and starts a server on it. It
// returns once the server accepts connections. On failure nothing is left
// running and, unless o.Keep is set, the directory is removed; the error
// then carries the tail of the server's log. The caller owns the returned
// Server and must call Remove when done.
func Start(ctx context.Context, o Options) (*Server, error) {
	s, err := newServer(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("pgtemp: %w", err)
	}
	if o.Path != "" {
		if err := s.openPath(ctx); err != nil {
			return nil, fmt.Errorf("pgtemp: %w", err)
		}
		if pid := livePostmaster(s.dataDir); pid > 0 {
			_ = s.unlock()
			return nil, fmt.Errorf("pgtemp: %s: %w (pid %d) that no process owns (StartDetached's, or started by hand): "+
				"use it, or stop it first", s.dataDir, ErrRunning, pid)
		}
	} else {
		parent, err := filepath.Abs(cmp.Or(o.Dir, os.TempDir()))
		if err != nil {
			return nil, fmt.Errorf("pgtemp: %w", err)
		}
		if err := shellSafe(parent); err != nil {
			return nil, fmt.Errorf("pgtemp: %w", err)
		}
		if s.dir, err = os.MkdirTemp(parent, "pgtemp-"); err != nil {
			return nil, fmt.Errorf("pgtemp: %w", err)
		}
		s.setPaths()
	}
	if err := s.setup(ctx, true); err != nil {
		// A fresh context: the caller's may be what ended the start.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := errors.Join(err, s.Remove(cctx)); !s.opts.Keep {
			return nil, fmt.Errorf("pgtemp: %w", err)
		}
		return nil, fmt.Errorf("pgtemp: %w\n(kept: %s)", err, s.dir)
	}
	return s, nil
}

// newServer checks o and finds what every server needs: the binaries, the
// OS user and the programs' environment. It starts nothing.
func newServer(ctx context.Context, o Options) (*Server, error) {
	if !supported {
		return nil, ErrUnsupported
	}
	bin := o.BinDir
	if bin == "" {
		var err error
		if bin, err = FindBinDir(); err != nil {
			return nil, err
		}
	} else if !hasTools(bin) {
		return nil, fmt.Errorf("%w in %s: %s", ErrNotFound, bin, installHint)
	}
	for name := range o.Settings {
		if !validSettingName(name) {
			return nil, fmt.Errorf("invalid setting name %q", name)
		}
		if strings.EqualFold(name, "port") {
			return nil, errors.New("set the port with Options.Port, not Options.Settings")
		}
	}
	s := &Server{opts: o, bin: bin, user: cmp.Or(o.User, "postgres"), port: o.Port, env: childEnv()}
	if o.Path != "" {
		s.opts.Keep = true
	}
	if os.Geteuid() == 0 {
		s.osUser = cmp.Or(o.OSUser, "postgres")
		cred, err := osUserCredential(ctx, s.osUser)
		if err != nil {
			return nil, err
		}
		s.cred = cred
	}
	return s, nil
}

// setPaths sets the paths inside s.dir.
func (s *Server) setPaths() {
	s.dataDir = filepath.Join(s.dir, "data")
	s.logFile = filepath.Join(s.dir, "postgres.log")
}

// setup makes the socket directory, starts the watchdog when guarded,
// runs initdb if need be and starts the server.
func (s *Server) setup(ctx context.Context, guarded bool) error {
	s.sockDir = filepath.Join(s.dir, "sock")
	// A unix socket path is limited to 107 bytes on Linux.
	if len(s.sockDir)+len("/.s.PGSQL.65535") > 107 {
		d, err := os.MkdirTemp("/tmp", "pgtemp-sock-")
		if err != nil {
			return err
		}
		s.sockDir, s.ownSock = d, true
	} else if err := os.Mkdir(s.sockDir, 0o700); err != nil && !(s.opts.Path != "" && errors.Is(err, os.ErrExist)) {
		return err
	}
	if s.cred != nil {
		for _, d := range []string{s.dir, s.sockDir} {
			if err := os.Chown(d, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return err
			}
		}
	}
	if guarded {
		if err := s.startGuard(); err != nil {
			return err
		}
	}
	if err := s.initdb(ctx); err != nil {
		return err
	}
	stored := 0
	if s.opts.Path != "" && s.opts.Port == 0 {
		stored = readPort(s.dir)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A port picked here may be taken by someone else before the server
	// binds it; pick another then, but never once the port has been handed
	// out (StartServer keeps it). A stored port taken by another program
	// is given up the same way, and the move reported (PreviousPort).
	for attempt := 1; ; attempt++ {
		switch {
		case s.opts.Port != 0:
		case attempt == 1 && stored != 0:
			s.port = stored
		default:
			p, err := freePort()
			if err != nil {
				return err
			}
			s.port = p
		}
		err := s.startLocked(ctx)
		if err == nil {
			if stored != 0 && s.port != stored {
				s.movedFrom = stored
			}
			if s.opts.Path != "" {
				return writePort(s.dir, s.port)
			}
			return nil
		}
		if s.opts.Port != 0 || attempt == 3 || !errors.Is(err, errPortInUse) {
			return err
		}
	}
}

// initdb makes the data directory, unless Options.Path names a directory
// that already has one.
//
// initdb runs into a temporary sibling of the data directory, which is
// renamed into place only once initdb has succeeded: an initdb cut short
// (a signal during the first run, killed through ctx) left a half-built
// data directory with PG_VERSION in it, which every later start took for
// the data of an earlier run and failed on ("database "postgres" does not
// exist"). What a cut-short initdb leaves is removed, now or, should this
// process die first, by the next start.
func (s *Server) initdb(ctx context.Context) error {
	if s.opts.Path != "" {
		reuse, err := hasDataDir(s.dataDir)
		if err != nil || reuse {
			return err
		}
	}
	// The directory is locked (Options.Path) or fresh: whatever temporary
	// directory is there was left by a process that died in initdb.
	if err := removeInitdbDirs(s.dir); err != nil {
		return err
	}
	tmp := s.dataDir + initdbSuffix + strconv.Itoa(os.Getpid())
	into := tmp
	if _, err := os.Lstat(s.dataDir); err == nil {
		// An empty data directory made beforehand (a symlink to another
		// disk, a mount point) cannot be renamed onto: initdb runs into
		// it, as it always did, and it is emptied should initdb fail.
		into = s.dataDir
	}
	_, err := s.runStarted(ctx, func(pid int) {
		if testHookInitdb != nil {
			testHookInitdb(pid, into)
		}
	}, "initdb", "-D", into, "-U", s.user, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if err == nil && into == tmp {
		err = os.Rename(tmp, s.dataDir)
	}
	if err != nil {
		if into == tmp {
			err = errors.Join(err, os.RemoveAll(tmp))
		} else {
			err = errors.Join(err, emptyDir(into))
		}
		if s.cred != nil && strings.Contains(err.Error(), "Permission denied") {
			err = fmt.Errorf("%w\n(PostgreSQL runs as OS user %q here: %s and its parents must be searchable by it)",
				err, s.osUser, s.dir)
		}
		return err
	}
	s.created = true
	return nil
}

// emptyDir removes what dir holds, and leaves dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// initdbSuffix and a process ID follow the data directory's name in that
// of the temporary directory initdb runs into.
const initdbSuffix = ".initdb-"

// testHookInitdb, when set (by a test), is called with initdb's process ID
// and the directory it initialises once it runs.
var testHookInitdb func(pid int, dir string)

// isInitdbDir reports whether name is that of initdb's temporary directory.
func isInitdbDir(name string) bool { return strings.HasPrefix(name, "data"+initdbSuffix) }

// removeInitdbDirs removes the temporary directories of initdbs cut short
// in dir.
func removeInitdbDirs(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if isInitdbDir(e.Name()) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// PostmasterPID returns the process ID of the server's postmaster, read
// from the first line of the data directory's postmaster.pid; 0 when there
// is none (the server is stopped). The file may outlive a crash, so the
// process need not exist.
func (s *Server) PostmasterPID() int { return postmasterPID(s.dataDir) }

// DSN returns the URL of the "postgres" database as the superuser, over
// TCP: postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
func (s *Server) DSN() string { return s.DSNFor("postgres") }

// DSNFor returns the URL of the named database, like DSN.
func (s *Server) DSNFor(database string) string { return dsn(s.user, s.port, database) }

func dsn(user string, port int, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(user),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Dir returns the server's temporary directory, which holds data/ (the
// data directory) and postgres.log.
func (s *Server) Dir() string { return s.dir }

// DataDir returns the data directory (PGDATA).
func (s *Server) DataDir() string { return s.dataDir }

func validSettingName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
