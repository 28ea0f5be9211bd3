package netio

// This file holds a netio.tcp connection: its reader, its owner that
// writes the acks, and its state.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// conn is one client connection. Three goroutines touch it: its reader
// (one read outstanding at a time), the source's workers (framing its
// reads, which they receive in order), and its owner, which turns finished
// records into acks, writes them, and closes the connection when it owes
// nothing more. Whoever finishes one of its events calls Complete, which
// records the verdict in the window and wakes the owner.
//
// Output is bounded without waiting on the client: the owner turns
// finished records into ack text only while the text pending (out and
// what is left of its current write) is under max_pending_output. The
// rest stays in the window, itself bounded by max_unacked, and the owner
// turns it into text as its writes drain. A client is cut off only when a
// write takes nothing for write_timeout.
type conn struct {
	s      *Source
	id     uint64
	nc     net.Conn
	remote string
	log    *zap.Logger

	fr         framer        // the worker framing this connection's current read owns it
	readNext   chan struct{} // a worker framed the last read: issue the next
	readerDone chan struct{} // closed when the reader has returned
	served     atomic.Bool   // counted as accepted: plain TCP at once, TLS once its handshake succeeded
	// Owned with fr: whether the record fr holds the start of was
	// admitted at the door as it outgrew a read (its end is not asked
	// again), and the bytes of it last charged (holdPart).
	spanAdmitted bool
	partSeen     int
	// idleSince is when the reader began waiting for input (UnixNano), 0
	// while it is not waiting, idleEvicted once the connection is evicted
	// (see Source.evictLocked): the reader and the evicter hand it over
	// by compare-and-swap, so a read that completes is never evicted.
	idleSince atomic.Int64
	evicted   bool // chosen by evictLocked; s.mu guards it

	mu          sync.Mutex
	cond        sync.Cond // the owner and a paused reader wait on it
	state       connState
	reader      readerState
	win         window
	outstanding int    // events emitted and not finished
	out, spare  []byte // ack text to write; the owner's last buffer, for reuse
	writing     int    // bytes of the owner's current write the kernel has not taken (to within a chunk)
	partHeld    int    // bytes of a record's start charged to the memory limit (holdPart)
	partGone    bool   // removed: partHeld is released, and nothing more is charged
}

// connState is where a connection is in its life; conn.mu guards it. The
// owner acts on it, everyone else only moves it on, through conn.to, which
// allows these transitions and ignores any other:
//
//	connOpen    -> connEnding   input is over: the client's FIN, a protocol error, or Drain
//	connEnding  -> connClosing  the owner: nothing is owed and the reader has returned
//	connClosing -> connClosed   the owner: half-closed, lingered, closed
//	connOpen, connEnding -> connDead   kill: a read or write failed, idle, not reading its acks
//	any but connClosed   -> connAborted   Close
//
// connClosed, connDead and connAborted are final. StopInput does not move
// a connection: its reader returns, and the connection stays open, owing
// acks, until Drain ends it.
type connState uint8

const (
	connOpen    connState = iota // reading (or stopped by StopInput); acks flow
	connEnding                   // no more input; finish once nothing is owed
	connClosing                  // the owner half-closes and lingers; nothing is owed
	connClosed                   // closed in order
	connDead                     // closed early; completions still counted, acks dropped
	connAborted                  // Close: the owner returns at once
)

var connStateNames = [...]string{"open", "ending", "closing", "closed", "dead", "aborted"}

func (s connState) String() string { return connStateNames[s] }

// alive reports whether the connection still owes the client its acks.
func (s connState) alive() bool { return s == connOpen || s == connEnding }

// canGo reports whether s may move to next.
func (s connState) canGo(next connState) bool {
	switch next {
	case connEnding:
		return s == connOpen
	case connClosing:
		return s == connEnding
	case connClosed:
		return s == connClosing
	case connDead:
		return s.alive()
	case connAborted:
		return s != connClosed && s != connAborted
	}
	return false
}

// to moves the connection to next if the transition is allowed, wakes
// whoever waits on it, and reports whether it moved. c.mu is held.
func (c *conn) to(next connState) bool {
	if !c.state.canGo(next) {
		return false
	}
	c.state = next
	c.cond.Broadcast()
	return true
}

// readerState is what the connection's reader is doing; conn.mu guards it.
type readerState uint8

const (
	readerReading readerState = iota // reading, or about to
	readerPaused                     // waiting for acks to move (max_unacked)
	readerGone                       // returned; its last read is framed
)

var _ batchCompleter = (*conn)(nil)

func newConn(s *Source, id uint64, nc net.Conn) *conn {
	c := &conn{
		s:          s,
		id:         id,
		nc:         nc,
		remote:     nc.RemoteAddr().String(),
		fr:         newFramer(s.opts.Framing, s.opts.MaxFrame, s.opts.ReadBuffer),
		readNext:   make(chan struct{}, 1),
		readerDone: make(chan struct{}),
	}
	c.cond.L = &c.mu
	c.log = s.log.With(zap.Uint64("conn", id), zap.String("remote", c.remote))
	return c
}

// owedLocked reports whether the connection owes the client anything.
func (c *conn) owedLocked() bool {
	return c.outstanding > 0 || len(c.out) > 0 || c.writing > 0 ||
		(c.s.opts.Ack == AckCommit && c.win.ready())
}

// read is the connection's reader: one read outstanding at a time, into a
// pooled buffer taken only once input is there (the zero-byte-read trick
// of IOCP servers, so idle connections hold no buffer). A completed read
// is posted to the source's port, and the next one waits until a worker
// has framed it: a stalled pipeline stops the reads and TCP pushes back on
// the client.
func (c *conn) read() {
	s := c.s
	defer s.wg.Done()
	defer close(c.readerDone)
	defer func() {
		c.mu.Lock()
		c.reader = readerGone
		c.cond.Broadcast()
		c.mu.Unlock()
	}()
	if tc, ok := c.nc.(*tls.Conn); ok && !c.handshake(tc) {
		return
	}
	// Over TLS the reader reads at once: the socket being readable says
	// nothing of what the TLS layer holds decrypted already.
	var rc syscall.RawConn
	if sc, ok := c.nc.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	for {
		var deadline time.Time
		now := time.Now()
		if s.opts.IdleTimeout > 0 {
			deadline = now.Add(s.opts.IdleTimeout)
		}
		c.nc.SetReadDeadline(deadline)
		// StopInput sets stopping and then a deadline in the past: looking
		// after setting ours means one of the two sees the other.
		if s.stopping.Load() {
			return
		}
		if !c.idleSince.CompareAndSwap(0, now.UnixNano()) {
			return // evicted
		}
		err := waitReadable(rc)
		if err != nil && errors.Is(err, syscall.ECONNRESET) && c.fr.buffered() == 0 {
			// A reset between records cut nothing off: it closes as a
			// shut does, quietly (a load balancer's health check resets
			// every probe). One that cuts a record off is a failed read
			// (TestResetDropsTheUnfinishedRecord). The framer is the
			// reader's to look at here: the last read is framed
			// (readNext), and the next is not issued.
			err = io.EOF
		}
		var buf *[]byte
		n := 0
		if err == nil {
			buf = s.getBuf()
			n, err = c.nc.Read(*buf)
		}
		if c.idleSince.Swap(0) == idleEvicted {
			if buf != nil {
				s.putBuf(buf)
			}
			return // closed to make room at max_conns
		}
		if err != nil && n == 0 && err != io.EOF {
			if buf != nil {
				s.putBuf(buf)
			}
			if !c.readFailed(err) {
				return
			}
			continue // idle, but acks are owed: keep waiting
		}
		var perr error
		if err == io.EOF {
			perr = io.EOF
		}
		if buf == nil { // EOF seen while waiting: post it with an empty buffer
			buf = s.getBuf()
		}
		pk := port.Packet[item]{Key: c.id, N: n, Err: perr, Value: item{c: c, buf: buf}}
		if e := s.port.Post(s.ctx, pk); e != nil {
			s.putBuf(buf)
			return // closing
		}
		select {
		case <-c.readNext:
		case <-s.ctx.Done():
			return
		}
		if err != nil {
			if err == io.EOF {
				c.mu.Lock()
				c.to(connEnding)
				c.mu.Unlock()
				c.log.Debug("client closed its side")
				return
			}
			if !c.readFailed(err) {
				return
			}
		}
		if !c.waitForRoom() {
			return
		}
	}
}

// idleEvicted is conn.idleSince once the connection is evicted.
const idleEvicted = -1

// evict marks the connection for closing, to make room for a new one at
// max_conns, if it is still idle since since (its reader waiting for
// input) and owes nothing, and reports whether it did. Source.evictLocked
// calls it, with s.mu held; closeEvicted, called once s.mu is released,
// tells the client and closes.
func (c *conn) evict(since int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != connOpen || c.reader != readerReading || c.owedLocked() ||
		!c.idleSince.CompareAndSwap(since, idleEvicted) {
		return false
	}
	c.to(connDead) // the owner writes nothing more; it returns once the reader has
	return true
}

// closeEvicted closes a connection evict marked. Under ack: commit the
// client is told why first, in a `nack 0` line, written for at most
// refuseWrite: nothing is owed, so the owner is not writing, but a client
// that does not read may have left the send buffer full. It runs without
// s.mu, so such a client holds up only the accept loop, and only that
// long; closeNow sends no TLS close_notify, which could wait 5 s.
func (c *conn) closeEvicted(since int64) {
	s := c.s
	if s.onEvict != nil {
		s.onEvict()
	}
	idle := time.Since(time.Unix(0, since)).Round(time.Millisecond)
	if s.opts.Ack == AckCommit {
		c.nc.SetWriteDeadline(time.Now().Add(refuseWrite))
		fmt.Fprintf(c.nc, "nack 0 idle for %s at max_conns: closed to make room\n", idle)
	}
	closeNow(c.nc)
	if s.evictLog.allow() {
		c.log.Info("idle connection closed to make room at max_conns", zap.Duration("idle", idle),
			zap.Duration("idle_evict", s.opts.IdleEvict), zap.Int("max_conns", s.opts.MaxConns))
	}
}

// unackedLocked is how many of the connection's records count against
// max_unacked: read and not yet acked, or under ack: none (where nothing
// is acked) emitted and not yet finished.
func (c *conn) unackedLocked() int {
	if c.s.opts.Ack == AckCommit {
		return int(c.win.next - c.win.acked)
	}
	return c.outstanding
}

// waitForRoom is the reader's check before its next read. It reports
// false when the reader is to return: the connection is no longer open (a
// protocol error ended its input, or it was closed) or StopInput stopped
// the input. While max_unacked records are read and
// not yet acked, it waits for acks to move instead of reading: the
// kernel's receive buffer fills and TCP pushes back on the client, so a
// record stuck downstream while later ones finish does not let the
// connection's window, nack reasons and read slabs grow without bound.
func (c *conn) waitForRoom() bool {
	s := c.s
	c.mu.Lock()
	defer c.mu.Unlock()
	paused := false
	for c.state == connOpen && !s.stopping.Load() && c.unackedLocked() >= s.opts.MaxUnacked {
		if !paused {
			paused = true
			s.readsPaused.Add(1)
			c.log.Debug("reads paused: max_unacked records read and not yet acked",
				zap.Int("unacked", c.unackedLocked()), zap.Int("max_unacked", s.opts.MaxUnacked),
				zap.Uint64("acked", c.win.acked))
		}
		c.reader = readerPaused
		c.cond.Wait() // fillLocked, Complete (ack: none), to and StopInput wake it
	}
	c.reader = readerReading
	if paused {
		s.readsPaused.Add(-1)
		c.log.Debug("reads resumed", zap.Int("unacked", c.unackedLocked()))
	}
	return c.state == connOpen && !s.stopping.Load()
}

// readFailed handles a read error; it reports whether to keep reading.
func (c *conn) readFailed(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if c.s.stopping.Load() {
			return false // StopInput
		}
		c.mu.Lock()
		owed := c.owedLocked()
		c.mu.Unlock()
		if owed {
			return true
		}
		c.kill(fmt.Sprintf("idle for %s", c.s.opts.IdleTimeout), nil)
		return false
	}
	c.kill("read failed", err) // unless already closed
	return false
}

// Complete is called once per event, by whoever finishes it, from any
// goroutine. It never blocks: it records the completion under the
// connection's lock and wakes the owner, which turns what is finished into
// acks. (It must never wait for room anywhere: a database worker waiting
// on a full netio port while netio's workers wait on the full database
// queue would deadlock.)
func (c *conn) Complete(ev *stage.Event, err error) {
	evs := [1]*stage.Event{ev}
	c.CompleteAll(evs[:], err)
}

// CompleteAll is Complete for a run of events finished together
// (see stage.Completer): one lock for the lot.
func (c *conn) CompleteAll(evs []*stage.Event, err error) {
	if err != nil {
		for _, ev := range evs {
			c.s.cnt.nack(err)
			if c.s.opts.Ack == AckNone {
				c.logRefusal(ev.Seq, err)
			}
		}
	}
	c.mu.Lock()
	c.outstanding -= len(evs)
	wake := c.outstanding == 0 || (c.reader == readerPaused && c.unackedLocked() < c.s.opts.MaxUnacked)
	if c.s.opts.Ack == AckCommit && c.state.alive() {
		r, class := "", ""
		if err != nil {
			r, class = wireReason(err), stage.ErrorClass(err)
		}
		for _, ev := range evs {
			c.win.finish(ev.Seq, r, class)
		}
		wake = wake || c.win.ready()
	}
	if wake {
		// The owner, waiting with nothing to write, fills and writes what
		// is ready; one already awake fills before it waits again, so a
		// broadcast that finds no one waiting loses nothing.
		c.cond.Broadcast()
	}
	c.mu.Unlock()
}

// logRefusal leaves a trace of a record refused under ack: none, where the
// client is told nothing: a warning naming the connection, the record and
// the reason, at most one a second per stage, with the running count of
// refusals so the lines skipped are not lost from view.
func (c *conn) logRefusal(seq uint64, err error) {
	s := c.s
	n := s.refused.Add(1)
	if !s.refusalLog.allow() {
		return
	}
	c.log.Warn("record refused; ack: none tells the client nothing",
		zap.Uint64("record", seq), zap.String("reason", reason(err)),
		zap.Uint64("refused_total", n))
}

// fillLocked turns finished records into ack and nack text while the
// connection's pending output (out, and what the kernel has not taken of
// the owner's current write) is under max_pending_output, and never takes
// it past that. Records beyond stay in the window, unacked, so the reader
// pauses at max_unacked; the owner calls fillLocked again after each
// chunk it writes. Reaching the bound therefore defers text, it does not
// cut the client off: a client that reads its acks gets every one, however
// many nacks one read of its produced.
func (c *conn) fillLocked() {
	if !c.state.alive() || c.s.opts.Ack != AckCommit {
		return
	}
	pending := len(c.out) + c.writing
	if pending >= c.s.opts.MaxPendingOutput {
		return
	}
	acked := c.win.acked
	c.out = c.win.advance(c.out, c.s.opts.MaxPendingOutput-pending)
	if c.win.acked != acked {
		c.s.notePending(len(c.out) + c.writing)
		c.cond.Broadcast() // the owner has output; a reader paused at max_unacked may read
	}
}

// writeChunk is the most the owner hands the kernel in one write.
const writeChunk = 16 << 10

// own is the connection's owner: it writes the acks as they come and,
// once the connection is ending (the client's FIN, a protocol error, or
// Drain), nothing more is owed and the reader has returned, half-closes,
// lingers, closes and removes the connection. A dead connection is removed
// once its reader has returned and its events are finished; an aborted
// one at once.
func (c *conn) own() {
	s := c.s
	defer s.wg.Done()
	defer c.remove()
	c.mu.Lock()
	for {
		c.fillLocked() // what a full output left in the window
		switch {
		case c.state == connAborted:
			c.mu.Unlock()
			return
		case c.state == connDead:
			if c.reader == readerGone && c.outstanding == 0 {
				c.mu.Unlock()
				return
			}
		case len(c.out) > 0:
			buf := c.out
			c.out, c.spare = c.spare[:0], nil
			c.writing = len(buf)
			c.mu.Unlock()
			err := c.write(buf)
			c.mu.Lock()
			switch { // before writing is cleared: the log counts what was left
			case err == nil || !c.state.alive():
			case errors.Is(err, os.ErrDeadlineExceeded):
				c.killLocked(fmt.Sprintf("client is not reading its acks: the kernel took nothing for write_timeout %s "+
					"with its send buffer full; %d bytes of acks and nacks pending", s.opts.WriteTimeout, len(c.out)+c.writing), nil)
			default:
				c.killLocked("write failed", err)
			}
			c.writing = 0
			c.spare = buf[:0]
			continue
		case c.state == connEnding && c.reader == readerGone && !c.owedLocked():
			c.to(connClosing)
			c.mu.Unlock()
			c.finish()
			return
		}
		c.cond.Wait()
	}
}

// write writes buf in chunks, so that writing counts what the kernel has
// not taken yet (to within a chunk) and, after each chunk, the window can
// produce the next lines into out while buf drains. Each write has
// write_timeout to take something: one that times out having taken part of
// its chunk is given another write_timeout for the rest, so a slow reader
// is served and only a client that takes nothing that long is cut off. It
// returns the write's error, os.ErrDeadlineExceeded when it stalled.
//
// Over TLS a write cut by its deadline cannot be resumed (crypto/tls
// fails every later write), so the same rule is kept below TLS, by the
// socket it writes to (progressConn): there the deadline runs out only
// when the kernel took nothing for write_timeout, and the next write
// returns TLS's error at once.
func (c *conn) write(buf []byte) error {
	for off := 0; off < len(buf); {
		c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
		n, err := c.nc.Write(buf[off:min(len(buf), off+writeChunk)])
		off += n
		c.mu.Lock()
		c.writing = len(buf) - off
		c.fillLocked()
		c.mu.Unlock()
		if err != nil && (n == 0 || !errors.Is(err, os.ErrDeadlineExceeded)) {
			return err
		}
	}
	return nil
}

// finish shuts the write side (the client reads EOF after its last ack),
// discards input until the client closes or drain_linger passes, and
// closes.
//
// Under ack: none it does not linger. The linger is there so that the
// reset a close with unread input sends cannot destroy acks in flight,
// and under ack: none there are none: lingering only took in, and threw
// away, whatever a client that keeps sending sent meanwhile, while its
// writes went on succeeding. finish reads (and counts) the input that has
// already arrived, without waiting, and closes at once, so the client's
// next writes fail and a sender with a queue of its own (rsyslog) keeps
// what it had not sent. Where input cannot be read without waiting
// (outside Unix) it lingers as under ack: commit.
func (c *conn) finish() {
	closeWrite(c.nc)
	var discarded uint64
	switch {
	case c.s.opts.Ack == AckNone && canReadNow:
		discarded = c.readReady()
	case c.s.opts.DrainLinger > 0:
		discarded = c.linger()
	}
	c.mu.Lock()
	closed := c.to(connClosed) // unless Close aborted it meanwhile
	c.mu.Unlock()
	c.nc.Close()
	if closed && discarded > 0 {
		c.discarded(discarded) // under ack: none
	}
	c.log.Debug("connection closed")
}

// errDiscarded is the refusal of the records a connection's client sent
// after the source stopped taking input, read and discarded as the
// connection closed on drain.
var errDiscarded = errors.New("sent after the source stopped taking input: read and discarded on drain")

// linger reads and discards input until the client closes or drain_linger
// passes, and returns what discard returns.
func (c *conn) linger() uint64 {
	c.nc.SetReadDeadline(time.Now().Add(c.s.opts.DrainLinger))
	return c.discard(c.nc.Read, time.Time{})
}

// readReady reads and discards the input that has arrived, without
// waiting for more, and returns what discard returns. It reads for
// drain_linger at most, should a client send as fast as it is read. Over
// TLS the socket under it reads so, and a TLS record only partly arrived
// is not read.
func (c *conn) readReady() uint64 {
	c.nc.SetReadDeadline(time.Time{}) // StopInput's, in the past, would fail every read
	read := func(b []byte) (int, error) { return readNow(c.nc, b) }
	if tc, ok := c.nc.(*tls.Conn); ok {
		if pc, ok := tc.NetConn().(*progressConn); ok {
			pc.noWait.Store(true)
			read = tc.Read
		}
	}
	return c.discard(read, time.Now().Add(c.s.opts.DrainLinger))
}

// discard reads with read until it fails (or, when until is set, until
// then) and drops what it read. What it reads is not dropped unseen: its
// bytes count in bytes_in and, under ack: none, where the client will
// never learn of its loss otherwise, it is framed on from where the
// connection's reads stopped (completing a record the client had only
// partly sent then), and discard returns how many records it held. (Under
// ack: commit those records were never acked, and the client sends them
// again.) The reader has returned and its last read is framed, so the
// framer is discard's.
func (c *conn) discard(read func([]byte) (int, error), until time.Time) uint64 {
	s := c.s
	buf := s.getBuf()
	defer s.putBuf(buf)
	var cnt recCount
	count := s.opts.Ack == AckNone
	for {
		n, err := read(*buf)
		if n > 0 {
			s.cnt.bytesIn.Add(uint64(n))
			if count {
				c.fr.feed((*buf)[:n], &cnt)
			}
		}
		if err == nil && !until.IsZero() && time.Now().After(until) {
			return cnt.n
		}
		if err != nil {
			if err == io.EOF && count {
				// An unterminated last line is a record, the one the
				// reads before the drain left (when this read is the
				// EOF alone) as well as one read here.
				c.fr.end(&cnt)
			}
			return cnt.n
		}
	}
}

// recCount counts the records a framer finds (those too large too: they
// would have been refused) and keeps none of them.
type recCount struct{ n uint64 }

func (r *recCount) add(k recKind, _ []byte) {
	if k != recBadFrame {
		r.n++
	}
}

// discarded accounts for n records the linger read and discarded under
// ack: none. Each becomes an event refused with errDiscarded, so that the
// drain report counts it lost (the source's Fate) and /stats counts it in
// the stage's in and errors, and the loss is logged at warn, naming the
// connection: the client was told nothing. The events are made with no
// Completer: the connection's window and counts are done with and have
// no part in them.
func (c *conn) discarded(n uint64) {
	s := c.s
	c.mu.Lock()
	first := c.win.next + 1 // the numbers the records would have taken
	c.mu.Unlock()
	origin := stage.Origin{Key: c.id}
	for i := range n {
		s.rt.NewEvent(nil, first+i, origin).Done(errDiscarded)
	}
	c.log.Warn("records sent during the drain read and discarded; ack: none tells the client nothing",
		zap.Uint64("records", n), zap.Uint64("first_record", first), zap.Duration("drain_linger", s.opts.DrainLinger))
}

// kill closes the connection at once; events still in flight are counted
// as they finish, and their acks are dropped.
func (c *conn) kill(why string, err error) {
	c.mu.Lock()
	c.killLocked(why, err)
	c.mu.Unlock()
}

func (c *conn) killLocked(why string, err error) {
	if !c.to(connDead) {
		return // closed already
	}
	pending := len(c.out) + c.writing
	c.out = nil
	closeNow(c.nc)
	// c.log names the connection id and the remote address.
	fs := []zap.Field{zap.String("reason", why), zap.Uint64("records", c.win.next), zap.Uint64("acked", c.win.acked),
		zap.Int("in_flight", c.outstanding), zap.Int("pending_output", pending)}
	if err != nil {
		fs = append(fs, zap.Error(err))
	}
	c.log.Warn("closing connection", fs...)
}

// abort is Close's: the socket is closed and the owner returns at once.
func (c *conn) abort() {
	c.mu.Lock()
	c.to(connAborted)
	c.mu.Unlock()
	closeNow(c.nc)
}

// closeNow closes nc at once. A TLS connection's Close first sends a
// close_notify alert, waiting up to 5 s for the peer to take it: killLocked
// holds c.mu, so a client that did not read held every worker finishing
// one of its events that long. The socket under it is closed instead.
func closeNow(nc net.Conn) {
	rawConn(nc).Close()
}

// holdPart makes n the bytes of the start of a record that spans reads
// charged to the memory limit for the connection (the framer's held),
// charging or releasing the difference; once the connection is removed
// it charges nothing. The worker framing the connection's read calls it,
// when the figure changed (partSeen): never for a record within a read.
func (c *conn) holdPart(n int) {
	c.partSeen = n
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.partGone {
		return
	}
	switch d := n - c.partHeld; {
	case d > 0:
		c.s.hold.HoldReading(d)
	case d < 0:
		c.s.hold.ReleaseReading(-d)
	}
	c.partHeld = n
}

func (c *conn) remove() {
	s := c.s
	c.mu.Lock()
	c.partGone = true
	if c.partHeld > 0 { // closed mid-record: what it held of it is let go
		s.hold.ReleaseReading(c.partHeld)
		c.partHeld = 0
	}
	c.mu.Unlock()
	if c.served.Load() {
		s.cnt.closed.Add(1)
	}
	s.mu.Lock()
	delete(s.conns, c.id)
	if c.evicted {
		s.evicting--
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}
