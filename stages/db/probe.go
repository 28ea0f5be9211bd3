package db

// This file holds the probe: how a write PostgreSQL has not answered for
// seconds tells a silent network from a slow server, so that the stage
// reads down long before write_timeout gives the write up.
//
// A network cut silently fails nothing: the write waits for its
// write_timeout (1 m by default), and until then the runtime sees only a
// call that runs long (degraded), so /readyz answered 200 for a minute
// while a stopped server reads down within seconds. A write that has
// waited probeAfter has the server probed on a new connection of the
// probe's own (a dial, the login, SELECT 1, within probeTimeout): a probe
// that gets no answer is the stage's failure (stage.ReportAttempt), which
// makes it down after the runtime's 2 s; one the server answers, even
// with an error, is no failure: the server is there, and a write waiting
// on a lock or a slow statement is slow, not out. After a failed probe,
// one answered is reported as a success, so that a hiccup (or a login
// slower than probeTimeout) does not hold the stage down until the
// write ends.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

const (
	// probeAfter is how long a write waits for PostgreSQL before the
	// server is probed, and then again each time so long while it waits
	// (half of write_timeout when that is shorter). A healthy write of a
	// group (4 MiB) takes well under a second.
	probeAfter = 5 * time.Second
	// probeTimeout bounds one probe: the dial, TLS, the login and
	// SELECT 1, which a server that answers at all does in milliseconds.
	probeTimeout = 3 * time.Second
)

// watch is one write's probe timer (Sink.watch).
type watch struct {
	t     *time.Timer
	fired sync.WaitGroup // the timer's function, once it fires
}

// watch arranges for the server to be probed while the write whose
// context is wctx waits for an answer past s.probeAfter. Until then it
// costs a timer; stop ends it once the write has ended.
func (s *Sink) watch(wctx context.Context) *watch {
	w := &watch{}
	w.fired.Add(1)
	w.t = time.AfterFunc(s.probeAfter, func() {
		defer w.fired.Done()
		// When the write began, read here: a write that ends in time
		// reads no clock for its watch.
		s.probeWhile(wctx, time.Now().Add(-s.probeAfter))
	})
	return w
}

// stop ends the watch of a write that has ended, its context cancelled:
// a probe under way is cut short, and stop returns once it has.
func (w *watch) stop() {
	if !w.t.Stop() {
		w.fired.Wait()
	}
}

// probeWhile probes the server, s.probeAfter after each probe ends, until
// wctx, the write's context, ends. One probe at a time runs per stage: a
// write whose turn comes while another's probe runs leaves it to speak
// for the stage.
func (s *Sink) probeWhile(wctx context.Context, began time.Time) {
	for {
		if s.probing.CompareAndSwap(false, true) {
			err := s.probe(wctx)
			s.probing.Store(false)
			switch {
			case wctx.Err() != nil:
				// The write ended (or the stage stops): the probe was cut
				// short, which says nothing of the server.
				return
			case err != nil:
				err = fmt.Errorf("PostgreSQL at %s did not answer a probe on a new connection while a write has waited %s for it: %w",
					stage.Redact(s.dsn), time.Since(began).Round(100*time.Millisecond), s.scrub(err))
				s.log.Warn("a write waits for PostgreSQL, which does not answer a probe either", zap.String("stage", s.name), zap.Error(err))
				s.probeFailed.Store(true)
				stage.ReportAttempt(wctx, err)
				s.probesFailed.Add(1) // counted once reported (tests read it)
			default:
				if s.probeFailed.CompareAndSwap(true, false) {
					// The server answers again: what the failed probe
					// said no longer holds (a hiccup, a login slower than
					// probeTimeout). The write still waiting reads as a
					// long call (degraded), not as an outage, until it
					// ends.
					stage.ReportAttempt(wctx, nil)
				}
				s.probesAnswered.Add(1) // counted once reported (tests read it)
			}
		}
		if !sleep(wctx, s.probeAfter) {
			return
		}
	}
}

// probe connects to the server on a new connection (the sink's dialer, so
// that Close ends it) and runs SELECT 1, within probeTimeout. It returns
// nil when the server answered, even with an error (a SQLSTATE: too many
// connections, a password refused, a server starting up): a server that
// answers is there, and its writes fail or go through on their own. What
// it returns otherwise is no answer: a timeout, a refused or reset
// connection.
func (s *Sink) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, &s.poolCfg.ConnConfig.Config)
	if err == nil {
		_, err = pc.Exec(ctx, "SELECT 1").ReadAll()
		_ = pc.Close(ctx)
	}
	if sqlState(err) != "" {
		return nil
	}
	return err
}
