package db

// This file holds the stage's client-side timeouts: how long a write may
// go unanswered before its connection is given up and the batch retried,
// the fence that ends such a write's backend before the retry, and the
// TCP keepalive that finds idle pooled connections dead.
//
// A network that goes silent (a partition, a middlebox that drops its
// state, a host gone) sends no error: without a deadline a worker would
// wait for PostgreSQL's answer for ever. PostgreSQL's statement_timeout
// does not help there: the server's answer is lost with everything else,
// and a server waiting for COPY data does not check it at all.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

const (
	// DefaultWriteTimeout bounds one write when neither write_timeout nor
	// statement_timeout is set: far above any healthy COPY of a group
	// (4 MiB), short enough that a silent network costs a worker a
	// minute, not a TCP retransmission timeout (15 min) or for ever.
	DefaultWriteTimeout = 60 * time.Second
	// writeTimeoutGrace is added to statement_timeout when write_timeout
	// is unset, so that PostgreSQL's own timeout answers first when the
	// server is slow and the client's deadline acts only when nothing
	// answers.
	writeTimeoutGrace = 5 * time.Second
	// TCP keepalive of the stage's connections: an idle pooled connection
	// whose peer went silent is found dead after about keepIdle +
	// keepCount*keepInterval (30 s), before a write picks it.
	keepIdle     = 15 * time.Second
	keepInterval = 5 * time.Second
	keepCount    = 3
)

// errWriteTimeout is the cause of a write's context ended by write_timeout.
var errWriteTimeout = errors.New("write_timeout")

// writeTimeoutField is the spec of write_timeout, listed in Fields.
func writeTimeoutField() stage.Field {
	return stage.Field{Name: "write_timeout", Type: stage.Duration, Range: stage.AtLeast(0),
		Doc: "longest wait for PostgreSQL to answer one write (a COPY or INSERT, the wait for a connection included); " +
			"then the connection is dropped and the batch retried, so a silent network never holds a worker; " +
			"0: statement_timeout + 5s when that is set, else 1m"}
}

// setTimeouts applies write_timeout, and the dialer with TCP keepalive,
// to s and pc. The connect timeout is the DSN's connect_timeout, or
// defaultConnectTimeout (set by New).
func (s *Sink) setTimeouts(cfg stage.Config, pc *pgxpool.Config) error {
	st, wt := cfg.Duration("statement_timeout"), cfg.Duration("write_timeout")
	switch {
	case wt > 0 && st > 0 && wt <= st:
		return &stage.FieldError{Field: "write_timeout", Err: fmt.Errorf(
			"%s is not longer than statement_timeout %s: PostgreSQL's own timeout should answer first", wt, st)}
	case wt > 0:
		s.writeTimeout = wt
	case st > 0:
		s.writeTimeout = st + writeTimeoutGrace
	default:
		s.writeTimeout = DefaultWriteTimeout
	}
	s.probeAfter = min(probeAfter, s.writeTimeout/2)
	d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepIdle, Interval: keepInterval, Count: keepCount}}
	s.socks.init()
	pc.ConnConfig.DialFunc = s.socks.dialer(d)
	return nil
}

// errSinkClosed fails a dial once Close has begun.
var errSinkClosed = errors.New("db.postgres: the sink is closed")

// sockets are the TCP connections the sink's dialer made and that are
// still open: its sessions', and those pgx makes to send a cancel
// request. They are tracked so that Close can end them.
//
// A write cut short (a forced stop cancels its ctx, or write_timeout)
// leaves pgx closing its connection in the background: it sends a cancel
// request over a new connection and waits for the server to close that
// one, then sends Terminate and reads the session's socket until the
// server closes it, up to 15 s in all; the pool's Close waits for it. On
// a network gone silent nothing answers, and a forced Stop with a 1 s
// deadline took 16 s. Close ends those sockets instead (shut), once the
// idle sessions have been told goodbye.
type sockets struct {
	mu      sync.Mutex
	open    map[*socket]struct{}
	shut    atomic.Bool
	closing context.Context // done once shut: dials under way give up
	cancel  context.CancelFunc
}

// init makes ss ready to track, and after close ready again (a Start
// that failed ends its sockets as Close does, and the sink may be
// started again).
func (ss *sockets) init() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.open = map[*socket]struct{}{}
	ss.closing, ss.cancel = context.WithCancel(context.Background())
	ss.shut.Store(false)
}

// dialer returns d's DialContext, tracking the connections it makes.
func (ss *sockets) dialer(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ss.shut.Load() {
			return nil, errSinkClosed
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(ss.closing, cancel)()
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if ss.shut.Load() {
			_ = c.Close()
			return nil, errSinkClosed
		}
		sc := &socket{Conn: c, set: ss}
		ss.open[sc] = struct{}{}
		return sc, nil
	}
}

// close ends every socket still open and every dial under way, and makes
// later dials fail. A socket that has sent nothing yet is ended right
// after its first write instead: a cancel request dialed just before is
// still sent, since the server reads it before it sees the close.
func (ss *sockets) close() {
	ss.mu.Lock()
	ss.shut.Store(true)
	ss.cancel()
	var ended []*socket
	for c := range ss.open {
		if c.wrote.Load() {
			ended = append(ended, c)
		}
	}
	ss.mu.Unlock()
	for _, c := range ended {
		_ = c.Close()
	}
}

// socket is a connection the sink's dialer made.
type socket struct {
	net.Conn
	set   *sockets
	wrote atomic.Bool
}

// Write writes p, and ends the socket after it once the sink is closing
// (sockets.close). wrote is set before shut is read, and close sets shut
// before it reads wrote, so one of the two sees the other's and ends it.
func (c *socket) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.wrote.Store(true)
	if c.set.shut.Load() {
		_ = c.Close()
	}
	return n, err
}

// Close closes the connection and stops tracking it. pgx may close a
// socket twice (the sink's release closes a broken session's, and pgx's
// background close does too); the second close only returns an error,
// which pgx ignores.
func (c *socket) Close() error {
	c.set.mu.Lock()
	delete(c.set.open, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// writeContext bounds one write by write_timeout, and has the server
// probed while the write waits past probeAfter (probe.go). The function it
// returns cancels the context, ends the probing and, when the deadline
// ended the write, says so in the write's error (still transient: the
// batch is retried, on another connection, since pgx closes one whose
// call was cut short).
func (s *Sink) writeContext(ctx context.Context) (context.Context, func(error) error) {
	wctx, cancel := context.WithTimeoutCause(ctx, s.writeTimeout, errWriteTimeout)
	w := s.watch(wctx)
	return wctx, func(err error) error {
		timedOut := err != nil && context.Cause(wctx) == errWriteTimeout
		cancel()
		w.stop()
		if timedOut {
			return fmt.Errorf("no answer from PostgreSQL in %s (write_timeout), connection dropped: %w", s.writeTimeout, err)
		}
		return err
	}
}

// Ending the backend of a write that broke unanswered (fence).
const (
	// ourBackend is the backend $1 if it is one of this database and
	// user, on the server that ran the write ($2, its start time; NULL:
	// not known): behind a pooler the PID a connection was given need not
	// be a backend's, another user's session must be neither ended nor
	// waited for, and after a restart (a container's new PID namespace)
	// the PID may be a new session's.
	ourBackend = "FROM pg_stat_activity WHERE pid = $1 AND datname = current_database() AND usename = session_user" +
		" AND ($2::bigint IS NULL OR " + serverStartSQL + " = $2::bigint)"
	// serverStartSQL is when the server started, in microseconds since
	// 1970: a number, which reads alike whatever the session's DateStyle
	// and protocol (a timestamp in text under the simple protocol, as
	// behind pgbouncer, depends on DateStyle).
	serverStartSQL = "(extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint"
	// terminateSQL ends it, runningSQL tells whether it is still there.
	terminateSQL = "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) " + ourBackend + ") AS ended"
	runningSQL   = "SELECT EXISTS (SELECT 1 " + ourBackend + ")"
	// fencePoll is the longest wait between looks at a backend ending.
	fencePoll = 50 * time.Millisecond
	// serverStartKey is where a connection keeps its server's start time
	// (PgConn.CustomData), noted when it connects (noteServerStart).
	serverStartKey = "seda.server_start"
)

// backend is the server session a write ran on: its PID, and when its
// server started (serverStartSQL; 0: not known).
type backend struct {
	pid         uint32
	serverStart int64
}

// noteServerStart is the pool's AfterConnect: it notes when the server
// started, for the fence to tell a backend of that server from a later
// session with the same PID. Without it the fence matches by PID alone,
// so its failure fails the connection only when the connection broke:
// then the pool drops it instead of handing it to a write. The query is
// bounded by write_timeout: the pool runs AfterConnect past the bounds of
// connect_timeout and of the Acquire waiting for it, so a link that went
// silent after the login would hold the pool's slot until TCP gives up.
func (s *Sink) noteServerStart(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, s.writeTimeout)
	defer cancel()
	var t int64
	err := conn.QueryRow(ctx, "SELECT "+serverStartSQL).Scan(&t)
	switch {
	case err == nil:
		conn.PgConn().CustomData()[serverStartKey] = t
	case conn.PgConn().IsClosed():
		return fmt.Errorf("reading when the server started: %w", err)
	}
	return nil
}

// fence ends backend b, which ran a write whose connection broke before
// PostgreSQL answered, and returns once it is gone: the write's bytes may
// still be on their way to it, and run after the retry has committed and
// after newer writes of its keys, which its stale rows would overwrite.
// A backend that is gone has run or rolled back all it will.
//
// It ends the backend with pg_terminate_backend from another connection,
// which any role may do to its own sessions, and waits (write_timeout at
// most) until pg_stat_activity no longer lists it; an error (retried by
// attempt) when it cannot reach PostgreSQL. Should PostgreSQL refuse to
// end it or to show it (a role without the right), fence says so in the
// log (once) and waits write_timeout, then lets the retry go: the stale
// write may then still run later (doc.go). A PID past int4 is a pooler's,
// never a backend's: there is nothing to end.
func (s *Sink) fence(ctx context.Context, b backend) error {
	if b.pid > math.MaxInt32 {
		return nil
	}
	pid := int32(b.pid)
	var start *int64
	if b.serverStart != 0 {
		start = &b.serverStart
	}
	fctx, cancel := context.WithTimeoutCause(ctx, s.writeTimeout, errWriteTimeout)
	defer cancel()
	fail := func(what string, err error) error {
		if context.Cause(fctx) == errWriteTimeout {
			return fmt.Errorf("%s backend %d, whose write got no answer: no answer from PostgreSQL in %s (write_timeout): %w",
				what, pid, s.writeTimeout, err)
		}
		return fmt.Errorf("%s backend %d, whose write got no answer: %w", what, pid, err)
	}
	// refused: PostgreSQL answered that the role may not end the backend,
	// or see it: said once, then write_timeout waited out.
	refused := func(err error) error {
		if s.fenceRefused.CompareAndSwap(false, true) {
			s.log.Warn("PostgreSQL refused to end or to show the backend of a write that got no answer; "+
				"waiting write_timeout before retrying, so a delayed write may still run after newer ones",
				zap.String("stage", s.name), zap.Int32("pid", pid), zap.Error(s.scrub(err)))
		}
		<-fctx.Done()
		return ctx.Err()
	}
	conn, err := s.pool.Acquire(fctx)
	if err != nil {
		return fail("ending", err)
	}
	defer conn.Release()
	var ended int
	if err := conn.QueryRow(fctx, terminateSQL, pid, start).Scan(&ended); err != nil {
		if sqlState(err) == "" {
			return fail("ending", err)
		}
		return refused(err)
	}
	for d := time.Millisecond; ; d = min(2*d, fencePoll) {
		var running bool
		if err := conn.QueryRow(fctx, runningSQL, pid, start).Scan(&running); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if sqlState(err) != "" {
				return refused(err)
			}
			return fail("waiting for", err)
		}
		if !running {
			return nil
		}
		if !sleep(fctx, d) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("backend %d, whose write got no answer, still runs %s after it was ended (write_timeout)", pid, s.writeTimeout)
		}
	}
}
