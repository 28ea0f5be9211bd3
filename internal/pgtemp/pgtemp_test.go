// This file tests servers end to end: start, restart and stop, failures
// to start, a death, a local database's directory (Options.Path) in its
// good and bad cases, and detached servers.

package pgtemp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/poll"
)

func start(t *testing.T, ctx context.Context, o pgtemp.Options) *pgtemp.Server {
	t.Helper()
	srv, err := pgtemp.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Remove(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return srv
}

func query(t *testing.T, ctx context.Context, dsn, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func exec1(t *testing.T, ctx context.Context, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// livePID is srv's postmaster PID, which must be there.
func livePID(t *testing.T, srv *pgtemp.Server) int {
	t.Helper()
	pid := srv.PostmasterPID()
	if pid <= 0 {
		t.Fatalf("no postmaster.pid in %s", srv.DataDir())
	}
	return pid
}

// gone reports whether the postmaster pid is dead and no other postmaster
// runs on dataDir (it runs as `postgres -D DATADIR …`).
func gone(pid int, dataDir string) bool {
	if !pgtemp.Dead(pid) {
		return false
	}
	arg := []byte("\x00-D\x00" + dataDir + "\x00")
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		if b, _ := os.ReadFile(p + "/cmdline"); bytes.Contains(b, arg) && !pgtemp.Dead(pid) {
			return false
		}
	}
	return true
}

func TestStartRestartStop(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := start(t, ctx, pgtemp.Options{Fast: true, Settings: map[string]string{"max_connections": "20"}})

	want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", srv.Port())
	if srv.DSN() != want {
		t.Errorf("DSN() = %q, want %q", srv.DSN(), want)
	}
	if got := query(t, ctx, srv.DSN(), "SELECT 1::text"); got != "1" {
		t.Fatalf("SELECT 1 = %q", got)
	}
	for setting, want := range map[string]string{
		"max_connections": "20", "fsync": "off", "synchronous_commit": "on", "listen_addresses": "127.0.0.1",
	} {
		if got := query(t, ctx, srv.DSN(), "SHOW "+setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	exec1(t, ctx, srv.DSN(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before restart')")

	port, pid := srv.Port(), livePID(t, srv)
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if srv.Port() != port {
		t.Fatalf("port changed across Restart: %d, then %d", port, srv.Port())
	}
	poll.Until(t, "the old postmaster to exit after Restart", func() bool { return pgtemp.Dead(pid) })
	if got := query(t, ctx, srv.DSN(), "SELECT v FROM kept"); got != "before restart" {
		t.Errorf("after Restart: %q", got)
	}

	// A crash and crash recovery keep committed rows too.
	exec1(t, ctx, srv.DSN(), "INSERT INTO kept VALUES ('before kill')")
	if err := srv.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, srv.DSN()); err == nil {
		t.Fatal("connected to a killed server")
	}
	if err := srv.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	if got := query(t, ctx, srv.DSN(), "SELECT string_agg(v, ',' ORDER BY v) FROM kept"); got != "before kill,before restart" {
		t.Errorf("after Kill and StartServer: %q", got)
	}

	// Remove is the one way to end it: the server is gone, and so is
	// its directory.
	pid = livePID(t, srv)
	if err := srv.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Remove(ctx); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	poll.Until(t, "the postmaster to exit after Remove", func() bool { return gone(pid, srv.DataDir()) })
	if err := srv.StartServer(ctx); !errors.Is(err, pgtemp.ErrClosed) {
		t.Errorf("StartServer after Remove = %v, want ErrClosed", err)
	}
	if _, err := os.Stat(srv.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory left after Remove: %v", err)
	}
}

func TestStartFailureReportsLog(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	parent := t.TempDir()
	if os.Geteuid() == 0 {
		// initdb runs as the postgres OS user, which must reach the directory.
		for _, d := range []string{parent, filepath.Dir(parent)} {
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err := pgtemp.Start(ctx, pgtemp.Options{Dir: parent, Settings: map[string]string{"shared_buffers": "plenty"}})
	if err == nil {
		t.Fatal("Start succeeded with shared_buffers=plenty")
	}
	if !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Errorf("error does not carry the server log: %v", err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("failed Start left %v in %s", left, parent)
	}
}

func TestStartPortTaken(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = pgtemp.Start(ctx, pgtemp.Options{Port: l.Addr().(*net.TCPAddr).Port})
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("Start on a taken port = %v, want an error naming it", err)
	}
}

func TestBinDirNotFound(t *testing.T) {
	_, err := pgtemp.Start(context.Background(), pgtemp.Options{BinDir: t.TempDir()})
	if !errors.Is(err, pgtemp.ErrNotFound) || !strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Errorf("Start with an empty BinDir = %v, want ErrNotFound with install advice", err)
	}
}

// TestProcessDeath checks that a server whose owner dies without Remove
// (a panicking test, a timeout) is stopped and deleted by the watchdog.
func TestProcessDeath(t *testing.T) {
	if os.Getenv("PGTEMP_TEST_ORPHAN") == "1" {
		orphan()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcessDeath$")
	cmd.Env = append(os.Environ(), "PGTEMP_TEST_ORPHAN=1")
	out, err := cmd.Output()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 7 {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var pid int
	var dir, dataDir string
	if _, err := fmt.Sscan(string(out), &pid, &dir, &dataDir); err != nil {
		t.Fatalf("child printed %q: %v", out, err)
	}
	poll.Until(t, fmt.Sprintf("the watchdog to stop postmaster %d and delete %s", pid, dir), func() bool {
		return gone(pid, dataDir) && !exists(dir)
	})
}

func orphan() {
	srv, err := pgtemp.Start(context.Background(), pgtemp.Options{Fast: true})
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(srv.PostmasterPID(), srv.Dir(), srv.DataDir())
	os.Exit(7)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestOwnerDiesWhileStarting: a process that dies while its pg_ctl start
// runs (which goes on without it) leaves no server behind. The watchdog
// waits for that start to end before it stops the server; it stopped at
// once, found none, and the server came up after it, owned by nobody.
func TestOwnerDiesWhileStarting(t *testing.T) {
	if path := os.Getenv("PGTEMP_TEST_DIES_STARTING"); path != "" {
		pgtemp.SetStartingHook(func(pid int) {
			fmt.Println(pid)
			os.Exit(7) // no cleanup: as a killed process
		})
		_, err := pgtemp.Start(context.Background(), pgtemp.Options{Path: path, GrantSearch: true, Fast: true})
		fmt.Println(err)
		os.Exit(1)
	}
	path := filepath.Join(t.TempDir(), "db")
	t.Cleanup(func() { _, _ = pgtemp.StopDetached(context.Background(), path) }) // what a failure leaves
	cmd := exec.Command(os.Args[0], "-test.run=^TestOwnerDiesWhileStarting$")
	cmd.Env = append(os.Environ(), "PGTEMP_TEST_DIES_STARTING="+path)
	out, err := cmd.Output()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 7 {
		t.Fatalf("owner: %v\n%s", err, out)
	}
	var ctl int
	if _, err := fmt.Sscan(string(out), &ctl); err != nil {
		t.Fatalf("owner printed %q: %v", out, err)
	}
	dataDir := filepath.Join(path, "data")
	poll.Until(t, fmt.Sprintf("pg_ctl start (pid %d) to end and the watchdog to let the directory go", ctl), func() bool {
		in, err := pgtemp.Inspect(path, "")
		return err == nil && pgtemp.Dead(ctl) && in.Owner == ""
	})
	if !gone(0, dataDir) {
		t.Fatalf("a server runs on %s, owned by nobody", dataDir)
	}
}

// TestPath checks a local database that keeps its data: a second server
// on the same directory is refused while the first runs, Remove keeps the
// directory, and the next Start reuses the data.
func TestPath(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// As root this parent (mode 0700) is not searchable by the postgres OS
	// user: Start must make it so.
	path := filepath.Join(t.TempDir(), "local", "db")
	o := pgtemp.Options{Path: path, GrantSearch: true, Fast: true}
	srv := start(t, ctx, o)
	if !srv.Created() || srv.Dir() != path {
		t.Errorf("first Start: Created %v, Dir %s; want a new data directory in %s", srv.Created(), srv.Dir(), path)
	}
	if os.Geteuid() == 0 && len(srv.Granted()) == 0 {
		t.Errorf("as root, Start granted search permission on nothing above %s", path)
	}
	exec1(t, ctx, srv.DSN(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('first run')")
	if dsn, ok := pgtemp.RunningDSN(path, "postgres"); !ok || dsn != srv.DSN() {
		t.Errorf("RunningDSN = %q, %v; want %q", dsn, ok, srv.DSN())
	}

	_, err := pgtemp.Start(ctx, o)
	if !errors.Is(err, pgtemp.ErrInUse) || !strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second Start on %s = %v, want ErrInUse naming the directory and this process", path, err)
	}

	if err := srv.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := pgtemp.RunningDSN(path, "postgres"); ok {
		t.Error("RunningDSN finds a server after Remove")
	}
	if !exists(filepath.Join(path, "data", "PG_VERSION")) {
		t.Fatalf("Remove deleted the data directory of %s", path)
	}

	port := srv.Port()
	srv = start(t, ctx, o)
	if srv.Port() != port || srv.PreviousPort() != 0 {
		t.Errorf("second run on port %d (previous %d); want the stored port %d again", srv.Port(), srv.PreviousPort(), port)
	}
	if srv.Created() || len(srv.Granted()) != 0 {
		t.Errorf("second run: Created %v, Granted %v; want the data reused and nothing more to grant", srv.Created(), srv.Granted())
	}
	if got := query(t, ctx, srv.DSN(), "SELECT v FROM kept"); got != "first run" {
		t.Errorf("second run reads %q", got)
	}
}

// A start cancelled while initdb runs (a signal during pipectl's first
// run) leaves no data directory: it left a half-built one with PG_VERSION
// in it, which every later start reused and failed on (database
// "postgres" does not exist). The error does not carry initdb's output
// either, some 80 lines of progress. The next start initialises the
// directory properly.
func TestPathInitdbCancelled(t *testing.T) {
	defer goleak.VerifyNone(t)
	path := filepath.Join(t.TempDir(), "db")
	o := pgtemp.Options{Path: path, GrantSearch: true, Fast: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var initialising string
	pgtemp.SetInitdbHook(func(_ int, dir string) {
		// Cancel once initdb has begun to write the data directory.
		initialising = dir
		poll.Until(t, "initdb writes PG_VERSION", func() bool { return exists(filepath.Join(dir, "PG_VERSION")) })
		cancel()
	})
	_, err := pgtemp.Start(ctx, o)
	pgtemp.SetInitdbHook(nil)
	if err == nil {
		t.Fatal("Start succeeded with its context cancelled during initdb")
	}
	if initialising == "" {
		t.Fatal("initdb never ran")
	}
	if strings.Contains(err.Error(), "The files belonging to this database system") {
		t.Errorf("the error of a cancelled start carries initdb's output:\n%v", err)
	}
	if left, _ := os.ReadDir(path); len(left) > 0 {
		for _, e := range left {
			if e.Name() == "data" || strings.Contains(e.Name(), "initdb") {
				t.Errorf("a start cancelled during initdb left %s in %s", e.Name(), path)
			}
		}
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel2()
	srv := start(t, ctx2, o)
	if !srv.Created() {
		t.Error("the start after a cancelled one reused a data directory")
	}
	if got := query(t, ctx2, srv.DSN(), "SELECT current_database()"); got != "postgres" {
		t.Errorf("current_database() = %q", got)
	}
}

// A data directory that an initdb cut short left behind (in place, as
// initdb ran before it had a directory of its own) has PG_VERSION, and was
// taken for data: the server started on it and every client failed
// (database "postgres" does not exist). Start and Inspect refuse it,
// saying it is unfinished and to remove it, and leave it as it is. It is
// made here from a finished one that no server seems to have run on (no
// postmaster.opts): first with the postmaster.pid of initdb's standalone
// backend, killed (a negative PID), then without the database initdb
// makes last. A directory a server has run on is never taken for one.
func TestPathInitdbUnfinished(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "db")
	o := pgtemp.Options{Path: path, GrantSearch: true, Fast: true}
	srv, err := pgtemp.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(path, "data")
	opts, err := os.ReadFile(filepath.Join(data, "postmaster.opts"))
	if err != nil {
		t.Fatalf("a server ran on %s and left no postmaster.opts: %v", data, err)
	}
	if err := os.Remove(filepath.Join(data, "postmaster.opts")); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtemp.Inspect(path, ""); err != nil {
		t.Fatalf("Inspect of a finished data directory: %v", err)
	}

	refused := func(why string) {
		t.Helper()
		want := []string{data + ": incomplete data directory: initdb did not finish it (" + why, "rm -r " + data}
		srv, err := pgtemp.Start(ctx, o)
		if err == nil {
			_ = srv.Remove(ctx)
			t.Fatalf("Start on an unfinished data directory (%s) succeeded", why)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Start = %v, want an error saying %q", err, w)
			}
		}
		if _, err := pgtemp.Inspect(path, ""); err == nil || !strings.Contains(err.Error(), want[0]) {
			t.Errorf("Inspect = %v, want the directory refused as unfinished (%s)", err, why)
		}
		if !exists(filepath.Join(data, "PG_VERSION")) || !exists(filepath.Join(data, "base", "1")) {
			t.Fatal("the unfinished data directory was deleted")
		}
	}

	// No process has this ID (it is above Linux's pid_max).
	pidFile := filepath.Join(data, "postmaster.pid")
	if err := os.WriteFile(pidFile, []byte("-2147483647\n"+data+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // the backend's file is its OS user's, as the data directory is
		fi, err := os.Stat(data)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(pidFile, int(ownerOf(fi)), -1); err != nil {
			t.Fatal(err)
		}
	}
	refused("initdb's standalone backend, process 2147483647, died in it")
	if err := os.Remove(pidFile); err != nil {
		t.Fatal(err)
	}

	base, err := os.ReadDir(filepath.Join(data, "base"))
	if err != nil {
		t.Fatal(err)
	}
	// initdb makes template1 (base/1), then template0, then postgres: the
	// directory with the highest number, left out as if initdb never got
	// that far.
	last := -1
	for _, e := range base {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > last {
			last = n
		}
	}
	if len(base) != 3 || last < 0 {
		t.Fatalf("base/ of a new data directory holds %d entries, want template1, template0 and postgres", len(base))
	}
	if err := os.RemoveAll(filepath.Join(data, "base", strconv.Itoa(last))); err != nil {
		t.Fatal(err)
	}
	refused("base/ holds 2 of the 3 databases initdb makes")

	// Had a server run on it, the directory would be data, whatever it
	// lacked: the user's, not initdb's.
	if err := os.WriteFile(filepath.Join(data, "postmaster.opts"), opts, 0o600); err != nil {
		t.Fatal(err)
	}
	if in, err := pgtemp.Inspect(path, ""); err != nil || !in.Exists {
		t.Errorf("Inspect of a directory a server has run on = %+v, %v; want it taken for data", in, err)
	}
}

// Inspect during an initdb run in place (data/ made beforehand, empty)
// finds a half-built directory that the process holding the lock is
// making: it reports that process, not an unfinished directory.
func TestInspectDuringInitdbInPlace(t *testing.T) {
	defer goleak.VerifyNone(t)
	path := filepath.Join(t.TempDir(), "db")
	data := filepath.Join(path, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // PostgreSQL runs as postgres here, and must own its data
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(data, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	var in pgtemp.Info
	var inErr error
	pgtemp.SetInitdbHook(func(_ int, dir string) {
		poll.Until(t, "initdb writes PG_VERSION", func() bool { return exists(filepath.Join(dir, "PG_VERSION")) })
		in, inErr = pgtemp.Inspect(path, "")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := start(t, ctx, pgtemp.Options{Path: path, GrantSearch: true, Fast: true})
	pgtemp.SetInitdbHook(nil)
	if !srv.Created() {
		t.Fatal("initdb did not run")
	}
	if inErr != nil || in.Owner == "" {
		t.Errorf("Inspect during initdb = %+v, %v; want no error and the owner named", in, inErr)
	}
}

// TestPathNotReachable checks that as root, without GrantSearch, a
// directory the postgres OS user cannot reach is refused by name.
func TestPathNotReachable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root runs PostgreSQL as another OS user")
	}
	parent := t.TempDir() // mode 0700
	_, err := pgtemp.Start(context.Background(), pgtemp.Options{Path: filepath.Join(parent, "db")})
	if err == nil || !strings.Contains(err.Error(), "not searchable") || !strings.Contains(err.Error(), filepath.Dir(parent)) {
		t.Errorf("Start = %v, want an error naming %s as not searchable", err, filepath.Dir(parent))
	}
}

// TestPathNotDataDir checks that a data/ that is neither empty nor a
// PostgreSQL data directory is refused, and left alone.
func TestPathNotDataDir(t *testing.T) {
	path := t.TempDir()
	junk := filepath.Join(path, "data", "notes.txt")
	if err := os.MkdirAll(filepath.Dir(junk), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := pgtemp.Start(context.Background(), pgtemp.Options{Path: path, GrantSearch: true})
	if err == nil || !strings.Contains(err.Error(), "no PostgreSQL data directory") {
		t.Errorf("Start = %v, want a refusal of %s", err, filepath.Dir(junk))
	}
	if !exists(junk) {
		t.Error("Start deleted a file it did not make")
	}
}

// TestPathNotOwnDir checks that an existing directory holding anything but
// a local database's files is refused by name and left as it was: as
// root, Start handed it (a home directory, a project) to the postgres OS
// user.
func TestPathNotOwnDir(t *testing.T) {
	path := t.TempDir()
	mine := filepath.Join(path, "notes.txt")
	if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pgtemp.Start(context.Background(), pgtemp.Options{Path: path, GrantSearch: true})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `holds "notes.txt"`) {
		t.Errorf("Start = %v, want a refusal naming %s and notes.txt", err, path)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if ownerOf(before) != ownerOf(after) || before.Mode() != after.Mode() {
		t.Errorf("Start changed %s: owner or mode %v → %v", path, before.Mode(), after.Mode())
	}
	entries, _ := os.ReadDir(path)
	if len(entries) != 1 {
		t.Errorf("Start left %d entries in %s, want notes.txt only", len(entries), path)
	}

	// A home directory's hidden files are data.
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".bashrc"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pgtemp.Start(context.Background(), pgtemp.Options{Path: home, GrantSearch: true}); err == nil || !strings.Contains(err.Error(), `holds ".bashrc"`) {
		t.Errorf("Start in a directory holding .bashrc = %v, want a refusal", err)
	}

	// A mount point's lost+found, a placeholder and a snapshot directory
	// are no obstacle.
	mount := t.TempDir()
	for _, d := range []string{"lost+found", ".snapshot"} {
		if err := os.Mkdir(filepath.Join(mount, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(mount, ".gitkeep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start(t, ctx, pgtemp.Options{Path: mount, GrantSearch: true, Fast: true})
}

// TestPathShellSafe checks that a path /bin/sh would read inside pg_ctl's
// double quotes is refused before anything runs: "$(touch x)" ran touch.
func TestPathShellSafe(t *testing.T) {
	parent := t.TempDir()
	for _, name := range []string{"$(touch ran)", "a`touch ran`", `a"b`, `a\b`, "$HOME"} {
		path := filepath.Join(parent, name, "db")
		_, err := pgtemp.Start(context.Background(), pgtemp.Options{Path: path, GrantSearch: true, Fast: true})
		if err == nil || !strings.Contains(err.Error(), "/bin/sh") {
			t.Errorf("Start on %q = %v, want a refusal", path, err)
		}
		if exists(filepath.Join(parent, name)) {
			t.Errorf("Start on %q made a directory", path)
		}
		_, err = pgtemp.Start(context.Background(), pgtemp.Options{Dir: filepath.Join(parent, name), Fast: true})
		if err == nil || !strings.Contains(err.Error(), "/bin/sh") {
			t.Errorf("Start in Dir %q = %v, want a refusal", name, err)
		}
	}
	for _, dir := range []string{".", parent} {
		if exists(filepath.Join(dir, "ran")) {
			t.Errorf("a command in a path ran (%s/ran exists)", dir)
		}
	}
}

// TestPathPortTaken checks that a local database whose stored port another
// program has taken moves to a free one, says so, and stores the new one.
func TestPathPortTaken(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := pgtemp.Options{Path: filepath.Join(t.TempDir(), "db"), GrantSearch: true, Fast: true}
	srv := start(t, ctx, o)
	port := srv.Port()
	if err := srv.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("take the stored port %d: %v", port, err)
	}
	defer l.Close()
	srv = start(t, ctx, o)
	if srv.Port() == port || srv.PreviousPort() != port {
		t.Fatalf("with port %d taken: port %d, previous %d; want a new port and %d as previous", port, srv.Port(), srv.PreviousPort(), port)
	}
	in, err := pgtemp.Inspect(o.Path, "")
	if err != nil || in.Port != srv.Port() || !in.Running || in.Owner == "" {
		t.Errorf("Inspect = %+v, %v; want running on %d and owned by this process", in, err, srv.Port())
	}
}

// TestDetached checks a local database that no process owns: started by a
// process that then dies of SIGKILL, it runs on; Start refuses to take it
// over (ErrRunning) and StartDetached leaves it alone; StopDetached stops
// it and keeps its data and port, and the next StartDetached takes the
// port again.
func TestDetached(t *testing.T) {
	if os.Getenv("PGTEMP_TEST_DETACH") != "" {
		// The child, before any t.TempDir: it dies of SIGKILL, so a
		// directory of its own would never be removed.
		detach(os.Getenv("PGTEMP_TEST_DETACH"))
		return
	}
	path := filepath.Join(t.TempDir(), "shared")
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if _, err := pgtemp.StopDetached(context.Background(), path); err != nil {
			t.Error(err)
		}
	})
	cmd := exec.Command(os.Args[0], "-test.run=^TestDetached$")
	cmd.Env = append(os.Environ(), "PGTEMP_TEST_DETACH="+path)
	out, err := cmd.Output()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != -1 || !strings.HasPrefix(string(out), "postgres://") {
		t.Fatalf("the child should start the server, print its DSN and die of SIGKILL: %v\n%s", err, out)
	}
	dsn := strings.TrimSpace(string(out))

	in, err := pgtemp.Inspect(path, "")
	if err != nil || !in.Running || in.Owner != "" || in.DSN != dsn {
		t.Fatalf("after its starter died: Inspect = %+v, %v; want it running, owned by no one, at %s", in, err, dsn)
	}
	exec1(t, ctx, dsn, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('shared')")

	_, err = pgtemp.Start(ctx, pgtemp.Options{Path: path, GrantSearch: true})
	if !errors.Is(err, pgtemp.ErrRunning) {
		t.Errorf("Start on a detached server's directory = %v, want ErrRunning", err)
	}
	d, err := pgtemp.StartDetached(ctx, pgtemp.Options{Path: path, GrantSearch: true})
	if err != nil || d.Started || d.PID != in.PID {
		t.Errorf("StartDetached again = %+v, %v; want the running server (pid %d) left alone", d, err, in.PID)
	}

	stopped, err := pgtemp.StopDetached(ctx, path)
	if err != nil || !stopped.Running {
		t.Fatalf("StopDetached = %+v, %v", stopped, err)
	}
	// pg_ctl stop returns once postmaster.pid is gone, a moment before the
	// process is.
	poll.Until(t, "the postmaster to exit after StopDetached", func() bool {
		return gone(in.PID, filepath.Join(in.Path, "data"))
	})
	if in, err := pgtemp.Inspect(path, ""); err != nil || in.Running || in.Port != stopped.Port || in.DSN != dsn {
		t.Errorf("after StopDetached: Inspect = %+v, %v; want stopped with the port kept", in, err)
	}
	if again, err := pgtemp.StopDetached(ctx, path); err != nil || again.Running {
		t.Errorf("a second StopDetached = %+v, %v; want nothing to stop", again, err)
	}

	d, err = pgtemp.StartDetached(ctx, pgtemp.Options{Path: path, GrantSearch: true})
	if err != nil || !d.Started || d.Created || d.DSN != dsn {
		t.Fatalf("StartDetached after a stop = %+v, %v; want the data and port of before (%s)", d, err, dsn)
	}
	if got := query(t, ctx, dsn, "SELECT v FROM kept"); got != "shared" {
		t.Errorf("after a restart the table holds %q", got)
	}
}

// detach is TestDetached's child: it starts the server, prints its DSN
// and kills itself.
func detach(path string) {
	d, err := pgtemp.StartDetached(context.Background(), pgtemp.Options{Path: path, GrantSearch: true, Fast: true})
	if err != nil || !d.Started || !d.Created {
		fmt.Println("StartDetached:", d, err)
		os.Exit(1)
	}
	fmt.Println(d.DSN)
	os.Stdout.Sync()
	p, _ := os.FindProcess(os.Getpid())
	p.Kill()
	select {}
}

// A postmaster.pid that names a running process that is not a server of
// this directory (here a sleep: a stale file whose pid was reused; or a
// server started through a symlinked path, or by hand) makes Start fail
// saying so, and nothing is signalled: pg_ctl start used to fail on the
// file, and the halt after it sent that process SIGQUIT.
func TestStartRefusesALiveStrangerInPostmasterPID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "db")
	o := pgtemp.Options{Path: path, Fast: true, GrantSearch: true}
	srv := start(t, ctx, o)
	port, dataDir := srv.Port(), srv.DataDir()
	if err := srv.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	// The server's OS user: postgres as root, else ourselves.
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	writePID := func(pid int) { // as a crashed server leaves it
		t.Helper()
		file := filepath.Join(dataDir, "postmaster.pid")
		pidFile := fmt.Sprintf("%d\n%s\n1700000000\n%d\n/tmp\n127.0.0.1\n  1234   5678\nready   \n", pid, dataDir, port)
		if err := os.WriteFile(file, []byte(pidFile), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(file, uid, gid); err != nil {
			t.Fatal(err)
		}
	}

	// A process of the server's OS user: PostgreSQL would take it for
	// another postmaster. Refused, and not signalled.
	stranger := exec.Command("sleep", "600")
	runAs(stranger, uid, gid)
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stranger.Process.Kill(); stranger.Wait() }()
	writePID(stranger.Process.Pid)
	s, err := pgtemp.Start(ctx, o)
	if err == nil {
		s.Remove(ctx)
		t.Fatal("Start succeeded with a live stranger in postmaster.pid")
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("names a running process (pid %d)", stranger.Process.Pid)) {
		t.Errorf("Start: %v, want it to name the process", err)
	}
	if pgtemp.Dead(stranger.Process.Pid) {
		t.Fatal("Start signalled the process postmaster.pid names")
	}

	// A process of another user (init's, root's) is a stale file's
	// leftover, as PostgreSQL takes it (it cannot signal it): the server
	// starts, as after a crash where pids came round again.
	writePID(1)
	s = start(t, ctx, o)
	if got := query(t, ctx, s.DSN(), "SELECT 'up'"); got != "up" {
		t.Fatalf("query: %q", got)
	}
}

// An empty data directory made beforehand as a symlink to another disk
// (or a mount point) is initialised in place: initdb's temporary sibling
// cannot be renamed onto it ("not a directory"), which failed every start.
func TestPathEmptyDataSymlink(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "db")
	target := filepath.Join(base, "big", "pgdata")
	for _, d := range []string{target, path} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(target, filepath.Join(path, "data")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // PostgreSQL runs as postgres here, and must own its data
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range []string{target, filepath.Dir(target)} {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgtemp.Start(ctx, pgtemp.Options{Path: path, GrantSearch: true, Fast: true})
	if err != nil {
		t.Fatalf("Start with data linked to an empty directory: %v", err)
	}
	defer srv.Remove(context.Background())
	if !srv.Created() {
		t.Error("the linked directory was not initialised")
	}
	if _, err := os.Stat(filepath.Join(target, "PG_VERSION")); err != nil {
		t.Errorf("no cluster in the link's target: %v", err)
	}
}
