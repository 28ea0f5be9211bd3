package netio

// This file holds netio.tcp's workers: each takes a completed read from
// the source's port, frames it into records with the connection's framer,
// numbers them, refuses what is refused at the door, and emits the rest
// as events.

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"go.uber.org/zap"
)

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
	spanning := c.spanAdmitted
	c.fr.feed(data, w)
	if rerr == io.EOF {
		if dropped, truncated := c.fr.end(w); truncated {
			c.mu.Lock()
			next := c.win.next + uint64(len(w.recs)) + 1 // the number the frame would have taken
			c.mu.Unlock()
			// A client can end every connection this way: counted with
			// the protocol errors, logged at most once a second per
			// stage, with the running count.
			if n := s.cnt.protocolError(causeTruncatedFrame); s.truncLog.allow() {
				c.log.Warn("input ended inside a frame; dropped it", zap.Uint64("record", next), zap.Int("bytes", dropped),
					zap.Uint64("truncated_total", n))
			}
		}
	}
	// A record admitted as it outgrew a read (below) is not asked
	// again at its end: the door admitted it, and its bytes have been
	// charged since. It is the first this read ends, if it ends here.
	exempt := 0
	if spanning && (len(w.recs) > 0 || rerr == io.EOF) {
		c.spanAdmitted = false
		if len(w.recs) > 0 && w.recs[0].kind == recData {
			exempt = 1
		}
	}
	var arrived time.Time
	h := c.fr.held()
	if h > 0 && !c.spanAdmitted {
		// A record outgrew a read: the door is asked for it now, before
		// its bytes are charged (the memory limit counts them from here
		// on). Refused, it is skipped to its end, unbuffered, and nacked
		// busy. Such a read holds nothing else: the record spans it.
		arrived = time.Now()
		if s.rt.Admit(arrived, 1) == 1 {
			c.spanAdmitted = true
		} else {
			c.fr.refuse(w)
			h = c.fr.held()
		}
	}
	if h != c.partSeen {
		// Before the door is asked for the read's records: a record
		// ended here is charged as its event from now, not twice.
		c.holdPart(h)
	}
	if len(w.recs) == 0 {
		w.slab = nil
		return
	}
	if cap(w.slab)-len(w.slab) > len(w.slab) {
		// The slab was sized for the whole read, and the records took
		// less than half of it (the rest empty lines, or a record refused
		// as too large): the events hold it, and memory_limit counts only
		// their records, so they get a slab of their size.
		w.slab = append(make([]byte, 0, len(w.slab)), w.slab...)
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
	if arrived.IsZero() {
		arrived = time.Now() // one clock reading per read, not per record
	}
	// The door: under admission control the records past the admitted
	// rate, and past the pipeline's memory limit all of them, are refused
	// busy here, before any event is made of them. Under memory_limit's
	// overflow block the door waits instead, and this connection's reader
	// with it (it reads again once this read is framed), and the others'
	// once the port is full: TCP pushes back.
	admit := events
	if events > exempt {
		if admit = exempt + s.rt.Admit(arrived, events-exempt); admit < events {
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
					c.win.finish(first+uint64(i), busyReason, stage.ClassBusy)
				}
			case recTooLarge:
				c.win.finish(first+uint64(i), "too large", stage.ClassTooLarge)
			case recBusy:
				c.win.finish(first+uint64(i), busyReason, stage.ClassBusy)
			case recBadFrame:
				c.win.finish(first+uint64(i), badReason, stage.ClassInvalid)
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
	views, viewBytes := w.views(admit)
	if views > 0 {
		// Counted before the first event exists: one may be finished
		// before the next is made.
		lb = lentBufs.Get().(*lentBuf)
		lb.c, lb.buf = c, buf
		lb.refs.Store(int64(views))
		lent = true
	}
	nth, nview := 0, 0
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
				if nview++; nview == views {
					// The rest of the lent buffer is held as long as
					// its events are: the last of them is charged it
					// (the memory limit), a close enough account.
					s.rt.Hold(ev, len(*buf)-viewBytes)
				}
			} else {
				ev = s.rt.NewEventAt(w.slab[r.a:r.b:r.b], seq, origin, arrived)
			}
			_ = w.em.Emit(s.ctx, ev) // a refusal finishes ev with Done(err): a nack
		case recTooLarge:
			s.cnt.nackClass(stage.ClassTooLarge)
			// A client can send nothing else: at most one line a second
			// per stage, with the running count.
			if n := s.tooLarge.Add(1); s.tooLargeLog.allow() {
				c.log.Info("record too large; refused and skipped", zap.Uint64("record", seq), zap.Int("max_frame", s.opts.MaxFrame),
					zap.Uint64("too_large_total", n))
			}
		case recBusy:
			s.cnt.nackClass(stage.ClassBusy)
			if s.opts.Ack == AckNone {
				c.logRefusal(seq, stage.ErrBusy)
			}
		case recBadFrame:
			s.cnt.nackClass(stage.ClassInvalid)
			s.protocolError(c.log, causeBadFrame, c.fr.err(), zap.Uint64("record", seq))
		}
	}
	w.em.Flush(s.ctx)
	w.slab = nil
}

// views counts the events of this read that will be made of views of the
// read buffer (its admitted records framed in place), and their bytes.
func (w *worker) views(admit int) (n, bytes int) {
	nth := 0
	for _, r := range w.recs {
		if r.kind != recData {
			continue
		}
		if nth++; nth > admit {
			break
		}
		if r.inBuf {
			n++
			bytes += r.b - r.a
		}
	}
	return n, bytes
}
