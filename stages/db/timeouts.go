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
	"net"
	"time"

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
	d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepIdle, Interval: keepInterval, Count: keepCount}}
	pc.ConnConfig.DialFunc = d.DialContext
	return nil
}

// writeContext bounds one write by write_timeout. The function it returns
// cancels the context and, when the deadline ended the write, says so in
// the write's error (still transient: the batch is retried, on another
// connection, since pgx closes one whose call was cut short).
func (s *Sink) writeContext(ctx context.Context) (context.Context, func(error) error) {
	wctx, cancel := context.WithTimeoutCause(ctx, s.writeTimeout, errWriteTimeout)
	return wctx, func(err error) error {
		timedOut := err != nil && context.Cause(wctx) == errWriteTimeout
		cancel()
		if timedOut {
			return fmt.Errorf("no answer from PostgreSQL in %s (write_timeout), connection dropped: %w", s.writeTimeout, err)
		}
		return err
	}
}

// Ending the backend of a write that broke unanswered (fence).
const (
	// ourBackend is the backend $1 if it is one of this database and
	// user: behind a pooler the PID a connection was given need not be a
	// backend's, and another's must be neither ended nor waited for.
	ourBackend = "FROM pg_stat_activity WHERE pid = $1 AND datname = current_database() AND usename = session_user"
	// terminateSQL ends it, runningSQL tells whether it is still there.
	terminateSQL = "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) " + ourBackend + ") AS ended"
	runningSQL   = "SELECT EXISTS (SELECT 1 " + ourBackend + ")"
	// fencePoll is the longest wait between looks at a backend ending.
	fencePoll = 50 * time.Millisecond
)

// fence ends backend pid, which ran a write whose connection broke before
// PostgreSQL answered, and returns once it is gone: the write's bytes may
// still be on their way to it, and run after the retry has committed and
// after newer writes of its keys, which its stale rows would overwrite.
// A backend that is gone has run or rolled back all it will.
//
// It ends the backend with pg_terminate_backend from another connection,
// which any role may do to its own sessions, and waits (write_timeout at
// most) until pg_stat_activity no longer lists it; an error (retried by
// attempt) when it cannot. Should PostgreSQL refuse to end it, fence says
// so in the log (once) and waits for the backend to end on its own, and
// after write_timeout lets the retry go: the stale write may then still
// run later (doc.go).
func (s *Sink) fence(ctx context.Context, pid uint32) error {
	fctx, cancel := context.WithTimeoutCause(ctx, s.writeTimeout, errWriteTimeout)
	defer cancel()
	fail := func(what string, err error) error {
		if context.Cause(fctx) == errWriteTimeout {
			return fmt.Errorf("%s backend %d, whose write got no answer: no answer from PostgreSQL in %s (write_timeout): %w",
				what, pid, s.writeTimeout, err)
		}
		return fmt.Errorf("%s backend %d, whose write got no answer: %w", what, pid, err)
	}
	conn, err := s.pool.Acquire(fctx)
	if err != nil {
		return fail("ending", err)
	}
	defer conn.Release()
	var ended int
	refused := conn.QueryRow(fctx, terminateSQL, pid).Scan(&ended)
	if refused != nil && sqlState(refused) == "" {
		return fail("ending", refused)
	}
	if refused != nil && s.fenceRefused.CompareAndSwap(false, true) {
		s.log.Warn("PostgreSQL refused to end the backend of a write that got no answer; "+
			"waiting for it to end on its own (write_timeout at most) before retrying, "+
			"so a delayed write may still run after newer ones",
			zap.String("stage", s.name), zap.Uint32("pid", pid), zap.Error(refused))
	}
	for d := time.Millisecond; ; d = min(2*d, fencePoll) {
		var running bool
		if err := conn.QueryRow(fctx, runningSQL, pid).Scan(&running); err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case refused != nil && fctx.Err() != nil:
				return nil // waited write_timeout, as documented: the retry goes on
			}
			return fail("waiting for", err)
		}
		if !running {
			return nil
		}
		if !sleep(fctx, d) {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case refused != nil:
				return nil // waited write_timeout, as documented: the retry goes on
			}
			return fmt.Errorf("backend %d, whose write got no answer, still runs %s after it was ended (write_timeout)", pid, s.writeTimeout)
		}
	}
}
