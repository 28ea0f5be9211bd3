package netio

// This file holds the netio.tcp source: its life (Start, StopInput,
// Drain, Close) and what it shows (Addr, Figures, gauges).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// Source is a netio.tcp source: a TCP listener whose connections' reads
// complete into the source's own port, where a pool of workers frames them
// into events, and whose acknowledgements each connection's owner writes
// as its events finish. See the package documentation.
type Source struct {
	opts options

	// Set by Start.
	rt     stage.SourceRuntime
	hold   readingHolder // rt's count of records' starts held (conn.holdPart)
	set    stage.Settings
	name   string
	log    *zap.Logger
	ln     net.Listener
	port   *port.Port[item]
	ctx    context.Context // ends at Close: unblocks Posts and Emits
	cancel context.CancelFunc
	bufs   sync.Pool   // *[]byte of opts.ReadBuffer bytes
	certs  *certStore  // with TLS
	tlsCfg *tls.Config // with TLS: what connections are served with

	wg         sync.WaitGroup // every goroutine: accept, workers, readers, owners, refusers
	acceptDone chan struct{}
	refusing   chan struct{} // semaphore: over-limit connections lingering after their refusal
	changed    chan struct{} // a connection went away; Drain looks again

	mu       sync.Mutex
	conns    map[uint64]*conn
	nextID   uint64
	started  bool
	stopped  bool // StopInput called
	draining bool
	closed   bool

	stopping atomic.Bool // readers stop at their next read

	// Eviction at max_conns (accept.go), under mu: connections evicted
	// and not yet removed, the earliest an idle one can be due, scratch.
	evicting     int
	nextEvict    time.Time
	evictScratch []idleConn
	onEvict      func() // tests': called as an evicted connection is closed

	readsPaused atomic.Int64 // connections whose reads wait for acks (max_unacked)

	// The most ack text any connection had pending at once, in bytes:
	// fillLocked keeps it at most max_pending_output (tests check it).
	pendingPeak atomic.Int64

	cnt counters // /stats' "source"

	// Under ack: none, refusals are logged at most once a second, and so
	// are protocol errors, records over max_frame and frames cut short:
	// a client can cause any of them as often as it likes.
	refused     atomic.Uint64 // records refused under ack: none
	tooLarge    atomic.Uint64 // records over max_frame
	refusalLog  logLimit
	protoLog    logLimit
	refuseLog   logLimit // connections refused at max_conns
	evictLog    logLimit // idle connections evicted at max_conns
	tooLargeLog logLimit
	truncLog    logLimit
}

var _ source = (*Source)(nil)

// item is the Value of the source's packets: the OVERLAPPED of a read
// completed into buf (the packet's N bytes; its Err io.EOF at the end of
// input). Acks do not come through the port: finishing an event wakes its
// connection's owner (conn.Complete).
type item struct {
	c   *conn
	buf *[]byte
}

// readingHolder is the part of the runtime that counts, against the
// pipeline's memory limit, the bytes of records read of which there is
// no event yet: netio.tcp's records that outgrow a read, netio.http's
// bodies. The engine's runtime has it; another (a test's) may not.
type readingHolder interface {
	HoldReading(n int)
	ReleaseReading(n int)
}

// noReading is the readingHolder of a runtime without one: it counts
// nothing.
type noReading struct{}

func (noReading) HoldReading(int)    {}
func (noReading) ReleaseReading(int) {}

// readingOf returns rt's readingHolder, or one that counts nothing.
func readingOf(rt stage.SourceRuntime) readingHolder {
	if h, ok := rt.(readingHolder); ok {
		return h
	}
	return noReading{}
}

// Fate says what becomes of a record that is not stored (see
// stage.Fate): under ack: commit the client is nacked, or sees its
// connection close with the record unacked, and resends it; under ack:
// none nobody is told and it is lost.
func (s *Source) Fate(error) stage.Fate {
	if s.opts.Ack == AckNone {
		return stage.FateLost
	}
	return stage.FateResend
}

// Addr returns the address the source listens on, or nil before Start.
func (s *Source) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Start binds the listener, starts the worker pool (rt's workers and
// concurrency; its queue capacity is the port's) and the accept loop, and
// returns once connections are accepted. queue.overflow does not apply
// (NewSource refuses reject): reads always wait for room in the port,
// which is how TCP flow control pushes back on the clients.
func (s *Source) Start(ctx context.Context, rt stage.SourceRuntime) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("netio: started twice")
	}
	s.rt, s.set, s.name = rt, rt.Settings(), rt.Name()
	s.hold = readingOf(rt)
	s.log = rt.Logger().With(zap.String("stage", s.name))
	if s.opts.TLS != nil {
		certs, err := newCertStore(*s.opts.TLS, s.log)
		if err != nil {
			return fmt.Errorf("netio: %w", err)
		}
		s.certs, s.tlsCfg = certs, certs.serverConfig()
	}
	lc := net.ListenConfig{KeepAlive: s.opts.KeepAlive}
	if s.opts.KeepAlive == 0 {
		lc.KeepAlive = -1
	}
	ln, err := lc.Listen(ctx, "tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("netio: listen on %q: %w", s.opts.Listen, err)
	}
	// Once nothing can fail: a source whose Start failed is never closed,
	// and only Close stops the admission controller's goroutine.
	if s.opts.Admission > 0 {
		rt.StartAdmission(s.opts.Admission)
	}
	s.started = true
	s.ln = ln
	if s.certs != nil {
		s.certs.start()
	}
	s.port = port.New[item](port.Options{Concurrency: s.set.Concurrency, Capacity: s.set.Capacity, Overflow: port.Block})
	s.ctx, s.cancel = context.WithCancel(context.Background())
	size := s.opts.ReadBuffer
	s.bufs.New = func() any { b := make([]byte, size); return &b }
	s.conns = map[uint64]*conn{}
	s.acceptDone = make(chan struct{})
	s.refusing = make(chan struct{}, s.opts.refusers)
	s.changed = make(chan struct{}, 1)
	for range s.set.Workers {
		w := &worker{s: s, pw: s.port.Join(), em: rt.NewEmitter(), pks: make([]port.Packet[item], min(s.set.Batch, 16))}
		s.wg.Add(1)
		go w.run()
	}
	s.wg.Add(1)
	go s.accept()
	s.log.Info("listening", zap.Stringer("addr", ln.Addr()), zap.String("framing", string(s.opts.Framing)),
		zap.String("ack", string(s.opts.Ack)), zap.Bool("tls", s.certs != nil),
		zap.Bool("mutual_tls", s.opts.TLS != nil && s.opts.TLS.ClientCA != ""))
	return nil
}

// StopInput closes the listener and stops every connection's reads (a
// read deadline in the past unblocks them); what was already read is
// framed. It returns once every record read has been emitted or refused,
// or with ctx.Err() when ctx ends first. Connections stay open: their acks
// are still owed.
func (s *Source) StopInput(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.stopping.Store(true)
	s.ln.Close()
	conns := s.connList()
	s.mu.Unlock()
	past := time.Unix(1, 0)
	for _, c := range conns {
		c.nc.SetReadDeadline(past)
		c.mu.Lock()
		c.cond.Broadcast() // a reader paused by max_unacked sees stopping
		c.mu.Unlock()
	}
	select {
	case <-s.acceptDone:
	case <-ctx.Done():
		return fmt.Errorf("stage %q: stop input: %w", s.name, ctx.Err())
	}
	for _, c := range conns {
		select {
		case <-c.readerDone:
		case <-ctx.Done():
			return fmt.Errorf("stage %q: stop input: %w", s.name, ctx.Err())
		}
	}
	return nil
}

// Drain stops input if StopInput was not called, then waits until every
// event the source made is finished (SourceRuntime.WaitFinished) and each
// connection's acks are written. Then each connection is half-closed (its
// write side shut) and its input discarded until the client closes or
// drain_linger passes, since closing a socket with unread input makes the
// kernel reset it and destroys the acks in flight (under ack: none, with
// no acks to protect, it reads only what has arrived and closes at once:
// see conn.finish). A connection is
// drained as soon as it owes nothing, so one whose records are all
// finished is not held back by the others. Drain returns once every
// connection is closed, or with ctx.Err() when ctx ends first; Close then
// closes what is left.
func (s *Source) Drain(ctx context.Context) error {
	s.mu.Lock()
	stopped, started := s.stopped, s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	if !stopped {
		if err := s.StopInput(ctx); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.draining = true
	conns := s.connList()
	s.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		c.to(connEnding)
		c.mu.Unlock()
	}
	if err := s.rt.WaitFinished(ctx); err != nil {
		return err // it names the stage
	}
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-s.changed:
		case <-ctx.Done():
			return fmt.Errorf("stage %q: drain: %d connections still open: %w", s.name, n, ctx.Err())
		}
	}
}

// Close closes the listener and every connection at once, stops the
// workers, and returns once every goroutine of the source has returned.
// Events still in flight may finish later; their completions are ignored.
func (s *Source) Close() error {
	s.mu.Lock()
	if !s.started || s.closed {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.stopping.Store(true)
	s.ln.Close()
	conns := s.connList()
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.abort()
	}
	s.port.Close()
	s.wg.Wait()
	if s.certs != nil {
		s.certs.close()
	}
	return nil
}

// Figures puts the source's port, worker pool and counters into its
// /stats entry, and with TLS its certificate (see certStore.figures).
func (s *Source) Figures(st *stats.Stage) {
	s.mu.Lock()
	p, set, certs := s.port, s.set, s.certs // Start sets them under mu
	s.mu.Unlock()
	var ps port.Stats
	if p != nil {
		ps = p.Stats()
	}
	figures(st, p != nil, ps, port.Block, set, &s.cnt)
	certs.figures(st)
}

// ReadsPaused returns how many connections have their reads paused
// because max_unacked of their records are read and not yet acked.
func (s *Source) ReadsPaused() int { return int(s.readsPaused.Load()) }

// Conns returns how many connections are open (not counting those closed
// to make room whose goroutines are still returning).
func (s *Source) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns) - s.evicting
}

func (s *Source) connList() []*conn {
	cs := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		cs = append(cs, c)
	}
	return cs
}

// protocolError counts a connection closed for a protocol error and logs
// it at warn, with its cause and what was wrong (log names the peer), at
// most once a second with the running count.
func (s *Source) protocolError(log *zap.Logger, cause string, err error, fs ...zap.Field) {
	n := s.cnt.protocolError(cause)
	if !s.protoLog.allow() {
		return
	}
	log.Warn("protocol error; closing the connection",
		append(fs, zap.String("cause", cause), zap.Error(err), zap.Uint64("protocol_errors", n))...)
}

// notePending records n bytes of ack text pending on a connection.
func (s *Source) notePending(n int) {
	for {
		p := s.pendingPeak.Load()
		if int64(n) <= p || s.pendingPeak.CompareAndSwap(p, int64(n)) {
			return
		}
	}
}

func (s *Source) getBuf() *[]byte  { return s.bufs.Get().(*[]byte) }
func (s *Source) putBuf(b *[]byte) { s.bufs.Put(b) }
