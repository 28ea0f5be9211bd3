// Package pgtemp starts a throwaway PostgreSQL server on the local machine:
// the one helper behind database tests (through package pgtesting) and
// behind `pipectl run` when a db stage has no DSN.
//
// Start runs initdb in a fresh temporary directory, then `pg_ctl start -w`
// with the server listening on 127.0.0.1 only, on a free TCP port, with its
// own unix socket directory, and trust authentication for the superuser
// ("postgres" unless Options.User says otherwise). The server's log goes to
// postgres.log in that directory; when a start fails the error carries the
// tail of it.
//
//	srv, err := pgtemp.Start(ctx, pgtemp.Options{})
//	if err != nil {
//		return err
//	}
//	defer srv.Remove(context.Background()) // the one way to end it
//	conn, err := pgx.Connect(ctx, srv.DSN())
//
// # Binaries
//
// initdb, pg_ctl and postgres are taken from Options.BinDir, else from the
// first directory on PATH that holds all three (after resolving symbolic
// links), else from /usr/lib/postgresql/*/bin, highest version first. When
// none is found Start returns an error wrapping ErrNotFound that says how to
// install them.
//
// # Running as root
//
// PostgreSQL refuses to run as root. When the calling process is root,
// initdb, pg_ctl and the server run as the OS user "postgres" (created with
// useradd --system if it does not exist), and the temporary directory is
// given to that user. Options.Dir, if set, must then be searchable by it.
// Otherwise everything runs as the calling user.
//
// # Local databases
//
// With Options.Path, Start uses that directory itself rather than a fresh
// temporary one, and the database outlives the process: this is what
// `pipectl run` starts when a db stage has no DSN. The directory holds
// data/ (PGDATA), postgres.log, sock/, port and pgtemp.lock. Start creates
// it if missing, runs initdb only if there is no data directory yet
// (Created reports which; initdb runs into data.initdb-PID, renamed to
// data/ only once it succeeded, so that a start cut short leaves no
// half-built data directory; an empty data/ made beforehand, a symlink or
// a mount point, cannot be renamed onto, so initdb runs into it in place,
// and a start killed during that initdb leaves it half-built, refused as
// below), and otherwise starts the server on the data
// that is there, with the binaries of the PostgreSQL version that made it
// when they are installed. A half-built one that an initdb cut short left
// in place before then (no server has run on it, and it lacks databases
// initdb makes, or initdb's backend died in it) is refused, with an error
// that says to remove it; Start deletes nothing there. The server's port is stored in the file port
// and taken again by the next start, so that a DSN stays valid across
// runs; only when another program listens on it does the server move to
// a free port (PreviousPort reports the move). Remove never deletes such a
// directory.
//
// Start takes an exclusive lock (flock) on pgtemp.lock, held until Remove
// and shared with the watchdog, so a second server on the same directory
// fails at once with an error wrapping ErrInUse that names the holder. A
// server that no process owns on the data directory is refused
// (ErrRunning), never stopped. RunningDSN finds the server that runs on a
// directory, for a client such as psql.
//
// As root, the server's OS user must be able to pass through every
// directory above Path: /root and directories made by mktemp or
// os.MkdirTemp (mode 0700) do not let it. With Options.GrantSearch, Start
// adds an ACL entry giving that user, and only it, search permission (x:
// no listing, no reading) on each such directory and reports them through
// Granted; without it Start fails and names the directory.
//
// # Detached servers
//
// StartDetached starts the server of an Options.Path directory with no
// owner: no watchdog, and the lock released once it runs. It runs until
// StopDetached, whatever becomes of the processes that use it: this is
// `pipectl db start`, the database that several pipeline processes share.
// Inspect tells a directory's state: running or not, the port, and the
// process that owns the server if one does.
//
// # Lifetime
//
// A Server is running, stopped or closed. StopServer and Kill make an
// outage, for tests: they stop the server and keep its data directory and
// port, so that StartServer (or Restart) brings the same database back. A
// Server ends one way: Remove stops it for good and deletes its directory
// unless Options.Keep is set; it is idempotent. Every stop is the same
// procedure: pg_ctl stop in the mode asked (fast; immediate for Kill, as
// a crash would), and when that fails an immediate stop, and at last
// SIGKILL of the postmaster.
//
// The server must not outlive the process that started it even when that
// process dies without calling Remove (a panicking test, a test timeout, a
// SIGKILL). Start therefore also starts a small watchdog shell that holds
// the read end of a pipe from this process: when the pipe closes without
// the line that Remove writes, the watchdog stops the server with
// `pg_ctl stop -m immediate` and deletes the directory (unless Keep or
// Path). It hears of each pg_ctl start too: should the process die while
// one runs (pg_ctl goes on without it), the watchdog waits for it to end
// before it stops the server, which would otherwise come up after the
// stop, owned by nobody. The watchdog is a child process, not a
// goroutine, so nothing of it is left for goleak to see. A detached server has none: nothing ends
// it but StopDetached.
package pgtemp
