package pgtemp

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
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
// Stop or Remove has been called.
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
	// Port is the TCP port on 127.0.0.1; 0 means a free port picked by Start.
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
	// temporary one made in Dir: a local database that keeps its data. It
	// is created if missing and initialised (initdb) only if it holds no
	// data directory yet; otherwise the data there is reused. It is locked
	// for as long as the server runs, so that a second Start on it fails
	// with an error wrapping ErrInUse, and it is never deleted (Keep is
	// implied). See "Local databases" in the package doc.
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
	// directory, and the directories given search permission.
	lock    *os.File
	created bool
	granted []string

	mu    sync.Mutex
	state state
	guard *exec.Cmd
	// guardIn is the write end of the watchdog's stdin; see the package doc.
	guardIn io.WriteCloser
}

// FindBinDir returns the directory holding initdb, pg_ctl and postgres: the
// first one found on PATH (symbolic links resolved), else the highest
// version under /usr/lib/postgresql/*/bin. The error wraps ErrNotFound and
// says how to install them.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if p, err := filepath.EvalSymlinks(p); err == nil && hasTools(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		return -compareVersions(filepath.Base(filepath.Dir(a)), filepath.Base(filepath.Dir(b)))
	})
	for _, d := range dirs {
		if hasTools(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w on PATH or in /usr/lib/postgresql/*/bin: %s", ErrNotFound, installHint)
}

func hasTools(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// compareVersions orders "9.6" < "15" < "16.1" numerically, part by part.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if c := cmp.Compare(x, y); c != 0 {
			return c
		}
	}
	return strings.Compare(a, b)
}

// Start creates a data directory with initdb and starts a server on it. It
// returns once the server accepts connections. On failure nothing is left
// running and, unless o.Keep is set, the directory is removed; the error
// then carries the tail of the server's log. The caller owns the returned
// Server and must call Remove (or Stop) when done.
func Start(ctx context.Context, o Options) (*Server, error) {
	if !supported {
		return nil, fmt.Errorf("pgtemp: %w", ErrUnsupported)
	}
	bin := o.BinDir
	if bin == "" {
		var err error
		if bin, err = FindBinDir(); err != nil {
			return nil, fmt.Errorf("pgtemp: %w", err)
		}
	} else if !hasTools(bin) {
		return nil, fmt.Errorf("pgtemp: %w in %s: %s", ErrNotFound, bin, installHint)
	}
	for name := range o.Settings {
		if !validSettingName(name) {
			return nil, fmt.Errorf("pgtemp: invalid setting name %q", name)
		}
		if strings.EqualFold(name, "port") {
			return nil, errors.New("pgtemp: set the port with Options.Port, not Options.Settings")
		}
	}
	s := &Server{opts: o, bin: bin, user: cmp.Or(o.User, "postgres"), port: o.Port, env: childEnv()}
	if os.Geteuid() == 0 {
		s.osUser = cmp.Or(o.OSUser, "postgres")
		cred, err := osUserCredential(ctx, s.osUser)
		if err != nil {
			return nil, fmt.Errorf("pgtemp: %w", err)
		}
		s.cred = cred
	}
	if o.Path != "" {
		s.opts.Keep = true
		if err := s.openPath(ctx); err != nil {
			return nil, fmt.Errorf("pgtemp: %w", err)
		}
	} else {
		parent := cmp.Or(o.Dir, os.TempDir())
		parent, err := filepath.Abs(parent)
		if err != nil {
			return nil, fmt.Errorf("pgtemp: %w", err)
		}
		if s.dir, err = os.MkdirTemp(parent, "pgtemp-"); err != nil {
			return nil, fmt.Errorf("pgtemp: %w", err)
		}
	}
	s.dataDir = filepath.Join(s.dir, "data")
	s.logFile = filepath.Join(s.dir, "postgres.log")
	if err := s.setup(ctx); err != nil {
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

func (s *Server) setup(ctx context.Context) error {
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
	if err := s.startGuard(); err != nil {
		return err
	}
	if err := s.initdb(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A port picked here may be taken by someone else before the server
	// binds it; pick another then, but never once the port has been handed
	// out (StartServer keeps it).
	for attempt := 1; ; attempt++ {
		if s.opts.Port == 0 {
			p, err := freePort()
			if err != nil {
				return err
			}
			s.port = p
		}
		err := s.startLocked(ctx)
		if err == nil || s.opts.Port != 0 || attempt == 3 || !errors.Is(err, errPortInUse) {
			return err
		}
	}
}

// The watchdog's script. $0 is pg_ctl, $1 the data directory, and the rest
// are directories to delete. A line on stdin means the server was stopped
// in order; end of file without one means this process died.
const guardScript = `trap '' INT HUP
if read -r _; then exit 0; fi
"$0" stop -D "$1" -m immediate -s >/dev/null 2>&1
shift
[ $# -gt 0 ] && rm -rf -- "$@"
exit 0`

// initdb makes the data directory, unless Options.Path names a directory
// that already has one.
func (s *Server) initdb(ctx context.Context) error {
	if s.opts.Path != "" {
		reuse, err := hasDataDir(s.dataDir)
		if err != nil || reuse {
			return err
		}
	}
	_, err := s.run(ctx, "initdb", "-D", s.dataDir, "-U", s.user, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		if s.cred != nil && strings.Contains(err.Error(), "Permission denied") {
			err = fmt.Errorf("%w\n(PostgreSQL runs as OS user %q here: %s and its parents must be searchable by it)",
				err, s.osUser, s.dir)
		}
		return err
	}
	s.created = true
	return nil
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

var errPortInUse = errors.New("port in use")

// startLocked runs pg_ctl start on s.port. s.mu is held.
func (s *Server) startLocked(ctx context.Context) error {
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
	_, err := s.run(ctx, "pg_ctl", "start", "-D", s.dataDir, "-l", s.logFile, "-w", "-s",
		"-t", waitSeconds(ctx, timeout), "-o", strings.Join(o, " "))
	if err == nil {
		s.state = running
		return nil
	}
	// pg_ctl may have given up (or been killed with ctx) while the server
	// was still starting: make sure it is not left behind.
	s.forceStop(ctx)
	tail := readTail(s.logFile, offset)
	if strings.Contains(tail, "could not bind") || strings.Contains(tail, "already in use") {
		err = fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return fmt.Errorf("start server on 127.0.0.1:%d: %w\npostgres.log ends with:\n%s", s.port, err, indent(tail))
}

// stopLocked runs pg_ctl stop in the given mode, then makes sure the server
// is gone even if that failed. s.mu is held.
func (s *Server) stopLocked(ctx context.Context, mode string) error {
	_, err := s.run(ctx, "pg_ctl", "stop", "-D", s.dataDir, "-m", mode, "-w", "-s",
		"-t", waitSeconds(ctx, time.Minute))
	if err != nil {
		s.forceStop(ctx)
		err = fmt.Errorf("stop server (%s): %w", mode, err)
	}
	s.state = stopped
	return err
}

// forceStop stops whatever server runs on the data directory, immediately,
// and kills the postmaster if even that fails.
func (s *Server) forceStop(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, _ = s.run(ctx, "pg_ctl", "stop", "-D", s.dataDir, "-m", "immediate", "-w", "-s", "-t", "20")
	if pid := livePostmaster(s.dataDir); pid > 0 {
		kill(pid)
	}
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

// PostmasterPID returns the process ID of the server's postmaster, read
// from the first line of the data directory's postmaster.pid; 0 when there
// is none (the server is stopped). The file may outlive a crash, so the
// process need not exist.
func (s *Server) PostmasterPID() int { return postmasterPID(s.dataDir) }

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

// StartServer starts the server again after StopServer or Kill, on the
// same data directory and port. It does nothing if the server is running
// and returns ErrClosed after Stop. After Kill, PostgreSQL runs crash
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
// and keeps the data directory and port for StartServer. It does nothing if
// the server is already stopped and returns ErrClosed after Stop.
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
	if err := s.stopLocked(ctx, mode); err != nil {
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
		if err := s.stopLocked(ctx, "fast"); err != nil {
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

// Stop stops the server for good (a fast shutdown) and ends its watchdog;
// the directory stays until Remove. Later calls return nil; StartServer
// then returns ErrClosed. If the fast shutdown fails the server is stopped
// immediately, or its postmaster killed, and the error is returned.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == closed {
		return nil
	}
	var err error
	if s.state == running {
		err = s.stopLocked(ctx, "fast")
	} else if postmasterPID(s.dataDir) > 0 {
		// A start cut short by its context can leave a postmaster that came
		// up after pg_ctl was killed.
		s.forceStop(ctx)
	}
	s.state = closed
	err = errors.Join(err, s.releaseGuard())
	if s.lock != nil {
		err = errors.Join(err, s.lock.Close())
		s.lock = nil
	}
	if err != nil {
		return fmt.Errorf("pgtemp: %w", err)
	}
	return nil
}

// Remove calls Stop, then deletes the directory unless Options.Keep is set
// (Options.Path implies it: such a directory is never deleted). It may be
// called more than once.
func (s *Server) Remove(ctx context.Context) error {
	errs := []error{s.Stop(ctx)}
	if !s.opts.Keep {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	if s.ownSock && (!s.opts.Keep || s.opts.Path != "") {
		errs = append(errs, os.RemoveAll(s.sockDir))
	}
	return errors.Join(errs...)
}

// run runs one of the PostgreSQL programs as the server's OS user. The
// error wraps *exec.ExitError and carries the program's output.
func (s *Server) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = "/"
	cmd.Env = s.env
	cmd.SysProcAttr = procAttr(s.cred, false)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// pg_ctl start leaves a server behind; it must not hold our pipe, and
	// does not (its output goes to the log), but never hang on it.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		if o := indent(out.String()); o != "" {
			err = fmt.Errorf("%w\n%s", err, o)
		}
		if name == "pg_ctl" {
			name += " " + args[0]
		}
		return out.String(), fmt.Errorf("%s: %w", name, err)
	}
	return out.String(), nil
}

// childEnv is the environment of the PostgreSQL programs: ours without PG*
// variables, which would override what the command lines say, and with the
// C locale, which always exists.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// osUserCredential returns the credential of the named OS user, creating a
// system user of that name if there is none.
func osUserCredential(ctx context.Context, name string) (*credential, error) {
	u, err := user.Lookup(name)
	if _, ok := errors.AsType[user.UnknownUserError](err); ok {
		out, uerr := exec.CommandContext(ctx, "useradd", "--system", "--user-group",
			"--no-create-home", "--home-dir", "/var/lib/postgresql", "--shell", "/bin/sh", name).CombinedOutput()
		// Another process may have created it meanwhile: look again either way.
		if u, err = user.Lookup(name); err != nil {
			return nil, fmt.Errorf("PostgreSQL refuses to run as root and OS user %q does not exist; "+
				"creating it with useradd failed (%w): %s; create it, for instance with "+
				"`apt-get install -y postgresql`, or run as a user other than root", name, uerr, bytes.TrimSpace(out))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("look up OS user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("OS user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("OS user %q: gid %q: %w", name, u.Gid, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("OS user %q is root, which PostgreSQL refuses to run as", name)
	}
	return &credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitSeconds is the -t argument of pg_ctl: d, or less if ctx ends sooner.
func waitSeconds(ctx context.Context, d time.Duration) string {
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readTail returns the last lines (at most 4 KiB) written to path after
// offset.
func readTail(path string, offset int64) string {
	const most = 4 << 10
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	if size := fileSize(path); size-offset > most {
		offset = size - most
	}
	b, err := io.ReadAll(io.NewSectionReader(f, offset, most+1))
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	s := string(b)
	if len(b) == most {
		if _, rest, ok := strings.Cut(s, "\n"); ok {
			s = rest
		}
	}
	if s = strings.TrimSpace(s); s == "" {
		return "(empty)"
	}
	return s
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
