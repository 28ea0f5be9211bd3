package db

// This file holds the stage's client-side timeouts: how long a write may
// go unanswered before its connection is given up and the batch retried,
// and the TCP keepalive that finds idle pooled connections dead.
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
