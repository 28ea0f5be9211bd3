package loadgen

// This file holds one connection of a load run: its writer, paced by the
// window, and the handling of the replies its wire client reads.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stagedserver/seda/internal/wire"
)

// conn is one connection: a writer (the goroutine of run) and the wire
// client's reader, which calls reply.
type conn struct {
	cfg   *Config
	idx   int
	cl    *wire.Client
	quota uint64 // records to send; 0: until Duration
	// maxSeq is the last record whose id is at most the largest int64:
	// a Duration run stops there rather than wrap its ids round.
	maxSeq uint64
	start  time.Time
	acked  *atomic.Uint64 // all connections' acked records: the timeline, Config.Acked

	// sentAt[seq%Window] is when record seq was written (ns since start).
	// The writer fills a slot only once the reader is done with it: seq
	// is only sent when seq-Window is answered. The wire client's lock
	// orders the writer's store before the reader's load.
	sentAt []int64
	ackSeq atomic.Uint64 // highest seq acked, cumulative
	wake   chan struct{} // the reader made room in the window

	sent      uint64 // the writer's
	malformed uint64 // the writer's: records sent malformed
	drop      bool   // Config.DropConns chose this connection
	dropped   bool   // it was dropped (set before the reader is read)

	// The reader's (reply), read after the client is done. The wire
	// client checks the replies and knows what is settled; these are what
	// it does not keep: which records of an ack's range were nacked (not
	// acked, so without a latency), and counts by reason.
	nAcked    uint64
	nNacked   uint64
	nacked    wire.Runs // records nacked and not yet passed by an ack
	nacks     map[string]uint64
	first     []Nack // the first MaxFirstNacks
	lat       Histogram
	ids       []int64
	lastReply time.Time
	replied   bool   // any reply came: an ack or a nack
	refusal   string // the reason of a `nack 0`: the server refused the connection
	err       error

	// With Config.PerSecond: the latencies of the current second, merged
	// into ps when the second is over.
	ps     *perSecond
	sec    int
	secLat *Histogram
}

func (c *conn) id(seq uint64) int64 {
	return c.cfg.StartID + int64(c.idx) + int64(seq-1)*int64(c.cfg.Conns)
}

// lastSeq is the last record the connection can send before its id would
// pass the largest int64; 0 when even its first id would.
func (c *conn) lastSeq() uint64 {
	if c.cfg.StartID > math.MaxInt64-int64(c.idx) {
		return 0
	}
	// Unsigned, so that a negative StartID cannot overflow the room left.
	room := uint64(math.MaxInt64) - uint64(c.cfg.StartID+int64(c.idx))
	return room/uint64(c.cfg.Conns) + 1
}

func (c *conn) run(ctx context.Context) {
	if c.ps != nil {
		defer func() { c.ps.add(c.sec, c.secLat) }()
	}
	werr := c.write(ctx)
	if errors.Is(werr, errDrop) {
		// Abruptly: no half-close, no wait for what is owed. Close
		// returns once the reader has, so its counts can be read.
		c.cl.Close()
		c.dropped = true
		return
	}
	// One deadline bounds the whole wait for what is owed: the acks, then
	// the server's close. Waiting AckTimeout for each waited twice as
	// long as asked, and acks read in the second wait contradicted the
	// first's "unsettled" error; what is still unsettled at the end is
	// reported once, below.
	deadline := time.Now().Add(c.cfg.AckTimeout)
	if werr == nil {
		c.waitAcks(ctx, deadline)
		werr = ctx.Err()
	}
	// Half-close: the server finishes what it owes, then closes; the
	// reader returns at its EOF (or the deadline).
	if err := c.cl.CloseWrite(); err != nil && werr == nil {
		werr = err
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	timedOut := false
	select {
	case <-c.cl.Done():
	case <-t.C:
		timedOut = true
	case <-ctx.Done():
	}
	c.cl.Close()
	rerr := c.cl.Err()
	if errors.Is(rerr, io.EOF) || errors.Is(rerr, net.ErrClosed) {
		rerr = nil
	}
	if rerr == nil {
		// Every record the client sent is settled (acked or nacked), or
		// this says how many are not.
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.cl.Wait(expired); err != nil {
			rerr = fmt.Errorf("records neither acked nor nacked: %w", err)
			if timedOut {
				// The deadline passed with records owed: the wire client's
				// error is then only the close above ("use of closed
				// network connection"), which reads as if the server had
				// closed it. Say what happened instead.
				rerr = &AckTimeoutError{Unanswered: c.sent - c.nAcked - c.nNacked, Sent: c.sent, Timeout: c.cfg.AckTimeout}
			}
		}
	}
	c.err = errors.Join(werr, rerr)
	switch {
	case c.refusal != "":
		c.err = fmt.Errorf("%w: nack 0 %s", ErrRefused, c.refusal)
	case c.err != nil && !c.replied && ClosedByServer(c.err):
		c.err = fmt.Errorf("%w: closed before any reply (%w)", ErrRefused, c.err)
	}
}

// AckTimeoutError is the error of a connection that still had records
// neither acked nor nacked when AckTimeout passed: the server did not
// answer them in time (it did not close the connection).
type AckTimeoutError struct {
	Unanswered, Sent uint64
	Timeout          time.Duration // Config.AckTimeout
}

func (e *AckTimeoutError) Error() string {
	return fmt.Sprintf("records neither acked nor nacked: %d of %d sent had no answer within the ack timeout (%s)",
		e.Unanswered, e.Sent, e.Timeout)
}

// ClosedByServer reports whether a connection's error is the server
// closing it (end of file, a reset, a broken pipe) rather than something
// about this client.
func ClosedByServer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// waitAcks waits until every record sent is answered, the connection ends,
// the deadline passes or ctx ends.
func (c *conn) waitAcks(ctx context.Context, deadline time.Time) {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	_ = c.cl.Wait(wctx) // run reports what is left unsettled
}

// errDrop ends the writer of a connection Config.DropConns chose.
var errDrop = errors.New("dropped")

func (c *conn) write(ctx context.Context) error {
	var line []byte
	perConn := c.cfg.Rate / float64(c.cfg.Conns)
	var deadline, dropAt time.Time
	if c.cfg.Duration > 0 {
		deadline = c.start.Add(c.cfg.Duration)
		dropAt = c.start.Add(c.cfg.Duration / 2)
	}
	for {
		if c.drop && c.sent > 0 && ((!dropAt.IsZero() && !time.Now().Before(dropAt)) || (c.quota > 0 && c.sent >= max(c.quota/2, 1))) {
			if err := c.cl.Flush(); err != nil {
				return err
			}
			return errDrop
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-c.cl.Done():
			return c.cl.Err()
		default:
		}
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		if (c.quota > 0 && c.sent >= c.quota) || c.sent >= c.maxSeq {
			break
		}
		// How many may go now: room in the window, the rate's allowance,
		// what is left of the quota.
		n := uint64(c.cfg.Window) - (c.sent - c.ackSeq.Load())
		if perConn > 0 {
			due := uint64(now.Sub(c.start).Seconds()*perConn) + 1
			if due <= c.sent {
				// Sleep until the next record is due (or the deadline).
				next := c.start.Add(time.Duration(float64(c.sent) / perConn * float64(time.Second)))
				wait := next.Sub(now)
				if !deadline.IsZero() {
					wait = min(wait, deadline.Sub(now))
				}
				sleep(ctx, max(wait, 2*time.Millisecond)) // coarse: fewer wake-ups, little jitter
				continue
			}
			n = min(n, due-c.sent)
		}
		if c.quota > 0 {
			n = min(n, c.quota-c.sent)
		}
		n = min(n, c.maxSeq-c.sent)
		if n == 0 {
			select {
			case <-c.wake:
			case <-c.cl.Done():
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond): // re-check the deadline
			}
			continue
		}
		ts := int64(now.Sub(c.start))
		for range n {
			c.sentAt[(c.sent+1)%uint64(len(c.sentAt))] = ts
			if id := c.id(c.sent + 1); c.cfg.IsMalformed(id) {
				line = MalformedRecord(line[:0], id)
				c.malformed++
			} else if c.cfg.Record != nil {
				line = c.cfg.Record(line[:0], id)
			} else {
				line = PaddedRecord(line[:0], id, c.cfg.Size)
			}
			if _, err := c.cl.Send(line); err != nil {
				return err
			}
			c.sent++
		}
		if c.ps != nil {
			c.ps.sent.Add(n)
		}
		if err := c.cl.Flush(); err != nil {
			return err
		}
	}
	return c.cl.Flush()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// reply handles one reply; the wire client has checked it against what was
// sent.
func (c *conn) reply(r wire.Reply) {
	now := time.Now()
	c.lastReply = now
	first := !c.replied
	c.replied = true
	if r.Nack && len(c.first) < MaxFirstNacks {
		c.first = append(c.first, Nack{Conn: c.idx, Record: r.N, Through: r.Through, Reason: r.Reason})
	}
	if r.Nack {
		if r.N == 0 {
			// About the connection, not a record (Nacks counts records):
			// refused when it is the first reply (Refusals counts it),
			// else the server ending it (idle), kept in FirstNacks.
			if first {
				c.refusal = r.Reason
			}
			return
		}
		k := r.Records() // a range nack refuses many
		c.nacked.Add(r.N, r.Last())
		c.nNacked += k
		c.nacks[r.Reason] += k
		if c.ps != nil {
			c.ps.nacked.Add(k)
		}
		c.wakeWriter()
		return
	}
	prev := c.ackSeq.Load()
	ts := int64(now.Sub(c.start))
	var k uint64
	runs := c.nacked.All() // in order, above prev
	for seq := prev + 1; seq <= r.N; seq++ {
		if len(runs) > 0 && seq >= runs[0].First {
			seq = runs[0].Last // nacked: no latency, not acked
			runs = runs[1:]
			continue
		}
		k++
		lat := time.Duration(ts - c.sentAt[seq%uint64(len(c.sentAt))])
		c.lat.Record(lat)
		if c.ps != nil {
			if sec := int(ts / int64(time.Second)); sec != c.sec {
				c.ps.add(c.sec, c.secLat)
				c.sec = sec
			}
			c.secLat.Record(lat)
		}
		if c.cfg.CollectIDs {
			c.ids = append(c.ids, c.id(seq))
		}
		if c.cfg.OnAck != nil {
			c.cfg.OnAck(c.id(seq))
		}
	}
	c.nacked.Forget(r.N)
	c.nAcked += k
	c.acked.Add(k)
	c.ackSeq.Store(r.N)
	c.wakeWriter()
}

func (c *conn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
