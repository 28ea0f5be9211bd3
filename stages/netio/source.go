package netio

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// Source is a netio.tcp source: a TCP listener whose connections' reads
// complete into the source's own port, where a pool of workers frames them
// into events, and whose acknowledgements are completions on the same
// port. See the package documentation.
type Source struct {
	opts options

	// Set by Start.
	rt     stage.SourceRuntime
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
	refusing   chan struct{} // semaphore: over-limit connections being refused
	changed    chan struct{} // a connection went away; Drain looks again

	mu       sync.Mutex
	conns    map[uint64]*conn
	nextID   uint64
	started  bool
	stopped  bool // StopInput called
	draining bool
	closed   bool

	stopping atomic.Bool // readers stop at their next read

	readsPaused atomic.Int64 // connections whose reads wait for acks (max_unacked)

	// The most ack text any connection had pending at once, in bytes:
	// fillLocked keeps it at most max_pending_output (tests check it).
	pendingPeak atomic.Int64

	cnt counters // /stats' "source"

	// Under ack: none, refusals are logged at most once a second, and so
	// are protocol errors.
	refused    atomic.Uint64 // records refused under ack: none
	refusalLog logLimit
	protoLog   logLimit
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
	s.log = rt.Logger().With(zap.String("stage", s.name))
	if s.opts.TLS != nil {
		certs, err := newCertStore(*s.opts.TLS, s.log)
		if err != nil {
			return fmt.Errorf("netio: %w", err)
		}
		s.certs, s.tlsCfg = certs, certs.serverConfig()
	}
	if s.opts.Admission > 0 {
		rt.StartAdmission(s.opts.Admission)
	}
	lc := net.ListenConfig{KeepAlive: s.opts.KeepAlive}
	if s.opts.KeepAlive == 0 {
		lc.KeepAlive = -1
	}
	ln, err := lc.Listen(ctx, "tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("netio: listen on %q: %w", s.opts.Listen, err)
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
	s.refusing = make(chan struct{}, defaultRefuses)
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
// kernel reset it and destroys the acks in flight. A connection is
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
// /stats entry.
func (s *Source) Figures(st *stats.Stage) {
	s.mu.Lock()
	p, set := s.port, s.set // Start sets them under mu
	s.mu.Unlock()
	var ps port.Stats
	if p != nil {
		ps = p.Stats()
	}
	figures(st, p != nil, ps, port.Block, set, &s.cnt)
}

// ReadsPaused returns how many connections have their reads paused
// because max_unacked of their records are read and not yet acked.
func (s *Source) ReadsPaused() int { return int(s.readsPaused.Load()) }

// Conns returns how many connections are open.
func (s *Source) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Source) connList() []*conn {
	cs := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		cs = append(cs, c)
	}
	return cs
}

func (s *Source) accept() {
	defer s.wg.Done()
	defer close(s.acceptDone)
	backoff := time.Duration(0)
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and try again.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		s.admit(nc)
	}
}

// admit registers a new connection and starts its reader and owner, or
// refuses it when max_conns are open. Registering and checking for
// shutdown happen under one lock, so nothing starts after Close.
func (s *Source) admit(nc net.Conn) {
	s.mu.Lock()
	if s.stopped || s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if len(s.conns) >= s.opts.MaxConns {
		s.mu.Unlock()
		s.refuse(nc)
		return
	}
	if s.tlsCfg != nil {
		nc = tls.Server(nc, s.tlsCfg) // the reader runs the handshake
	}
	s.nextID++
	c := newConn(s, s.nextID, nc)
	s.conns[c.id] = c
	s.wg.Add(2)
	s.mu.Unlock()
	if s.tlsCfg == nil {
		c.served.Store(true)
		s.cnt.accepted.Add(1)
	}
	if tc, ok := rawConn(nc).(*net.TCPConn); ok && s.opts.SocketBuffer > 0 {
		if err := tc.SetReadBuffer(s.opts.SocketBuffer); err != nil {
			c.log.Warn("setting SO_RCVBUF failed", zap.Error(err))
		}
		if err := tc.SetWriteBuffer(s.opts.SocketBuffer); err != nil {
			c.log.Warn("setting SO_SNDBUF failed", zap.Error(err))
		}
	}
	c.log.Debug("connection accepted")
	go c.read()
	go c.own()
}

// refuse tells an over-limit client why in one line and closes. The line
// is written, the write side shut and the input discarded briefly (so the
// line is not lost to a reset), in a goroutine of its own; when too many
// are being refused already, the connection is simply closed.
func (s *Source) refuse(nc net.Conn) {
	s.cnt.refused.Add(1)
	s.log.Warn("too many connections; refusing", zap.String("remote", nc.RemoteAddr().String()),
		zap.Int("max_conns", s.opts.MaxConns))
	if s.tlsCfg != nil { // no handshake, so no words: just close
		nc.Close()
		return
	}
	select {
	case s.refusing <- struct{}{}:
	default:
		nc.Close()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.refusing }()
		stop := context.AfterFunc(s.ctx, func() { nc.Close() })
		defer stop()
		deadline := time.Now().Add(min(s.opts.DrainLinger, time.Second))
		nc.SetDeadline(deadline)
		if s.opts.Ack == AckCommit {
			io.WriteString(nc, "nack 0 too many connections\n")
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		var b [512]byte
		for {
			if _, err := nc.Read(b[:]); err != nil {
				break
			}
		}
		nc.Close()
	}()
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

// worker is one of the source's pool: it takes read completions from the
// port and frames them into events.
type worker struct {
	s   *Source
	pw  *port.Worker[item]
	em  stage.Emitter
	pks []port.Packet[item]

	// Scratch for one read: what the framer found. A record that lies
	// in the read (data) is framed in place when inPlace; any other is
	// copied into slab.
	recs    []rec
	slab    []byte
	data    []byte
	inPlace bool
}

type rec struct {
	kind  recKind
	a, b  int  // bounds in slab, or in data when inBuf
	inBuf bool // framed in place: a view of the read buffer
}

var _ recSink = (*worker)(nil)

func (w *worker) add(k recKind, b []byte) {
	if w.inPlace && len(b) > 0 {
		// A record the framer took from this read rather than from what
		// it kept of an earlier one: a view of the read buffer.
		off := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(w.data)))
		if off < uintptr(len(w.data)) {
			w.recs = append(w.recs, rec{kind: k, a: int(off), b: int(off) + len(b), inBuf: true})
			return
		}
	}
	a := len(w.slab)
	w.slab = append(w.slab, b...)
	w.recs = append(w.recs, rec{kind: k, a: a, b: len(w.slab)})
}

// lentBuf is a read buffer whose records were framed in place: the events
// made of them hold views of it, and it goes back to the source's pool
// when the last of them is finished. It is their Origin.To, and passes
// each completion on to the connection.
type lentBuf struct {
	c    *conn
	buf  *[]byte
	refs atomic.Int64 // events holding a view of buf, not yet finished
}

var lentBufs = sync.Pool{New: func() any { return new(lentBuf) }}

var _ batchCompleter = (*lentBuf)(nil)

func (l *lentBuf) Complete(ev *stage.Event, err error) {
	evs := [1]*stage.Event{ev}
	l.CompleteAll(evs[:], err)
}

// CompleteAll passes a run of completions on to the connection, and gives
// the buffer back when they were its last events.
func (l *lentBuf) CompleteAll(evs []*stage.Event, err error) {
	c := l.c
	c.CompleteAll(evs, err)
	if l.refs.Add(-int64(len(evs))) == 0 {
		c.s.putBuf(l.buf)
		l.c, l.buf = nil, nil
		lentBufs.Put(l)
	}
}

func (w *worker) run() {
	defer w.s.wg.Done()
	defer w.pw.Leave()
	for {
		n, err := w.pw.GetBatch(w.s.ctx, w.pks)
		if err != nil {
			return
		}
		for i := range w.pks[:n] {
			pk := w.pks[i]
			w.pks[i] = port.Packet[item]{}
			w.frame(pk.Value.c, pk.Value.buf, pk.N, pk.Err)
		}
	}
}

// frame turns one completed read into events: it frames the bytes with
// the connection's framer, numbers the records, emits the events and then
// lets the reader issue its next read.
func (w *worker) frame(c *conn, buf *[]byte, n int, rerr error) {
	s := w.s
	lent := false
	defer func() {
		if !lent {
			s.putBuf(buf)
		}
		w.data = nil
		c.readNext <- struct{}{} // capacity 1, and the reader waits for it: never blocks
	}()
	c.mu.Lock()
	alive := c.state.alive()
	c.mu.Unlock()
	if !alive {
		return
	}
	data := (*buf)[:n]
	s.cnt.bytesIn.Add(uint64(n))
	// A read that fills at least half the buffer is framed in place: its
	// records are views of the buffer, which their events hold until the
	// last is finished (lentBuf), so no record is copied. A shorter read
	// is copied into one allocation of its own and the buffer goes back
	// at once, so that a few small records never pin a whole buffer: a
	// record stuck downstream pins at most twice what it would copied.
	w.inPlace = n >= len(*buf)/2
	w.data = data
	if w.inPlace {
		w.slab = nil // only records that span reads are copied
	} else {
		// A record is at most what is buffered plus what was read.
		w.slab = make([]byte, 0, len(data)+c.fr.buffered())
	}
	w.recs = w.recs[:0]
	c.fr.feed(data, w)
	if rerr == io.EOF {
		if dropped := c.fr.end(w); dropped > 0 {
			c.log.Warn("input ended inside a frame; dropped it", zap.Int("bytes", dropped))
		}
	}
	if len(w.recs) == 0 {
		w.slab = nil
		return
	}
	events, refused, bad := 0, false, false
	badReason := ""
	for _, r := range w.recs {
		switch r.kind {
		case recData:
			events++
		case recBadFrame:
			bad = true
			refused = true
			badReason = "bad frame"
			if err := c.fr.err(); err != nil {
				badReason = reason(fmt.Errorf("bad frame: %w", err))
			}
		default:
			refused = true
		}
	}
	arrived := time.Now() // one clock reading per read, not per record
	// Under admission control the records past the admitted rate are
	// refused busy here, at the door: no event is made of them.
	admit := events
	if s.opts.Admission > 0 {
		if admit = s.rt.Admit(arrived, events); admit < events {
			refused = true
			s.cnt.nackClassN(stage.ClassBusy, uint64(events-admit))
		}
	}
	c.mu.Lock()
	var first uint64
	if s.opts.Ack == AckCommit {
		first = c.win.reserve(len(w.recs))
	} else { // numbers only: nothing is acked, so nothing is tracked
		first = c.win.next + 1
		c.win.next += uint64(len(w.recs))
	}
	c.outstanding += admit
	if s.opts.Ack == AckCommit {
		nth := 0
		for i, r := range w.recs {
			switch r.kind {
			case recData:
				if nth++; nth > admit {
					c.win.finish(first+uint64(i), busyReason)
				}
			case recTooLarge:
				c.win.finish(first+uint64(i), "too large")
			case recBadFrame:
				c.win.finish(first+uint64(i), badReason)
			}
		}
	}
	if bad {
		c.to(connEnding) // the reader reads no more; the owner closes once the acks are out
	}
	if refused && s.opts.Ack == AckCommit && c.win.ready() {
		c.cond.Broadcast() // the owner writes the nacks
	}
	c.mu.Unlock()

	origin := stage.Origin{To: c, Key: c.id}
	var lb *lentBuf
	if views := w.views(admit); views > 0 {
		// Counted before the first event exists: one may be finished
		// before the next is made.
		lb = lentBufs.Get().(*lentBuf)
		lb.c, lb.buf = c, buf
		lb.refs.Store(int64(views))
		lent = true
	}
	nth := 0
	for i, r := range w.recs {
		seq := first + uint64(i)
		switch r.kind {
		case recData:
			if nth++; nth > admit {
				if nth == admit+1 && s.opts.Ack == AckNone {
					s.refused.Add(uint64(events - admit - 1))
					c.logRefusal(seq, stage.ErrBusy)
				}
				continue
			}
			var ev *stage.Event
			if r.inBuf {
				ev = s.rt.NewEventAt(data[r.a:r.b:r.b], seq, stage.Origin{To: lb, Key: c.id}, arrived)
			} else {
				ev = s.rt.NewEventAt(w.slab[r.a:r.b:r.b], seq, origin, arrived)
			}
			_ = w.em.Emit(s.ctx, ev) // a refusal finishes ev with Done(err): a nack
		case recTooLarge:
			s.cnt.nackClass(stage.ClassTooLarge)
			c.log.Info("record too large; refused and skipped", zap.Uint64("record", seq), zap.Int("max_frame", s.opts.MaxFrame))
		case recBadFrame:
			s.cnt.nackClass(stage.ClassInvalid)
			s.protocolError(c.log, causeBadFrame, c.fr.err(), zap.Uint64("record", seq))
		}
	}
	w.em.Flush(s.ctx)
	w.slab = nil
}

// views counts the events of this read that will be made of views of the
// read buffer: its admitted records framed in place.
func (w *worker) views(admit int) int {
	n, nth := 0, 0
	for _, r := range w.recs {
		if r.kind != recData {
			continue
		}
		if nth++; nth > admit {
			break
		}
		if r.inBuf {
			n++
		}
	}
	return n
}
