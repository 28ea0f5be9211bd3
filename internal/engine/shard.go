package engine

// This file holds a stage's shards (shard_by): the mailboxes that keep
// the events of one key in the order the stage received them, between the
// port and the workers, and which worker holds which shard.

import (
	"bytes"
	"context"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// ShardCount is how many virtual shards (mailboxes) a stage with shard_by
// has. Keys are spread over them by a hash of their values, so one hot key
// holds up only the keys that share its shard (1/256 of them), and the
// spread over the workers stays even with any number of workers (a worker
// claims whichever shards are runnable).
const ShardCount = 256

// shards are the mailboxes of a stage with shard_by, and the intake that
// fills them. The port stays the stage's queue (its capacity, overflow,
// depth, backpressure and run slots are unchanged); events leave it in
// its FIFO order into the mailboxes, one intake at a time, each event into
// the shard its key hashes to. A worker claims runnable shards (a shard
// with events that no worker holds, in the order they became runnable),
// takes up to a batch from one or several, and holds them until its
// handler has returned and its emitter has flushed; then it releases
// them, and a shard with events left becomes runnable again, at the tail.
// So the events of one key are handled by one worker at a time, in the
// order read, whatever the batch size, the number of workers and the
// retries inside a handler.
//
// The mailboxes hold at most a bound (see bound): once they do, the
// intake stops taking from the port, so the port fills and backpressure
// (or overflow: reject) works as without shard_by.
type shards struct {
	paths []string     // the shard_by fields
	seed  maphash.Seed // the stage's: equal keys hash alike within a run

	mu       sync.Mutex
	boxes    [ShardCount]mailbox
	runq     [ShardCount]uint8 // runnable shards, a ring: each at most once
	runHead  int
	runLen   int
	queued   int // events in the mailboxes
	held     int // shards a worker holds
	limit    int // the bound the intake last waited for
	roomWant bool
	// recent counts the events each shard received lately, halved every
	// spreadWindow events: the key spread /stats shows.
	recent    [ShardCount]uint32
	recentSum uint32

	// token is the intake: a worker holds it while it takes a batch from
	// the port and puts it into the mailboxes, so that they are filled in
	// the port's order. room wakes the intake holder when the mailboxes
	// fall below their bound.
	token chan struct{}
	room  chan struct{}
	idle  atomic.Int32 // workers waiting for the intake (for /stats' waiting)

	// done is an ended context: GetBatch with it gives a worker's run
	// slot up without taking anything (see workSharded).
	done context.Context
}

// mailbox is one shard's events, oldest first, in a ring that grows.
type mailbox struct {
	ring     []*stage.Event
	head, n  int
	held     bool // a worker holds the shard: it is not runnable
	runnable bool // it is in runq
}

// spreadWindow is how many events the key spread counts before halving
// its counts: /stats shows the spread of about the last 2 windows.
const spreadWindow = 8192

func newShards(paths []string) *shards {
	sh := &shards{
		paths: paths,
		seed:  maphash.MakeSeed(),
		token: make(chan struct{}, 1),
		room:  make(chan struct{}, 1),
	}
	sh.token <- struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sh.done = ctx
	return sh
}

// index returns the shard of ev's key: a hash of the text of its shard_by
// fields' values (a missing field counts as null), a number's in one form
// however it was written, so that a key goes to one shard as it goes to
// one row: an integer as its decimal digits (stage.Value.AsInt: 7, "7",
// 7.0 and 7e0 alike), any other number as the shortest text of its
// float64 (7.5, "7.50" and 75e-1 alike). Two numbers that differ past
// float64's precision share a shard, which costs nothing but spread.
// scratch is the caller's buffer, returned grown.
func (sh *shards) index(ev *stage.Event, scratch []byte) (uint8, []byte) {
	key := scratch[:0]
	for _, p := range sh.paths {
		v, _ := ev.Value(p)
		if i, ok := v.AsInt(); ok {
			key = strconv.AppendInt(key, i, 10)
		} else if f, ok := shardFloat(v); ok {
			key = strconv.AppendFloat(key, f, 'g', -1, 64)
		} else {
			key = v.AppendText(key)
		}
		key = append(key, 0)
	}
	return uint8(maphash.Bytes(sh.seed, key)), key
}

// shardFloat returns v as a finite float64, and whether it is one: a
// Float, or the text of a String, Number or JSON value (spaces around it
// ignored) that is a decimal number. It allocates nothing for a text that
// is none (most keys): only digits, a point, signs and exponents are
// handed to strconv.
func shardFloat(v stage.Value) (float64, bool) {
	var f float64
	switch v.Type() {
	case stage.ValueFloat:
		f = v.Float()
	case stage.ValueString, stage.ValueNumber, stage.ValueJSON:
		b := bytes.TrimSpace(v.Bytes())
		if !decimalText(b) {
			return 0, false
		}
		var err error
		// The text is read, not kept: no copy to make it a string.
		if f, err = strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	return f, !math.IsInf(f, 0) && !math.IsNaN(f)
}

// decimalText reports whether b is a decimal number as strconv.ParseFloat
// reads one: [+-] digits [. digits] [(e|E) [+-] digits], with a digit
// before or after the point. Only such a text is parsed, so a key that
// is none (a date, 555-1234, 1.2.3) costs no failed parse: ParseFloat's
// error allocates.
func decimalText(b []byte) bool {
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	digits := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		digits++
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		exp := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
		if i == exp {
			return false
		}
	}
	return i == len(b)
}

// bound is the most events the mailboxes hold before the intake stops
// taking from the port: two batches (a worker's and the next), at least
// 64, and no more than the port holds.
func bound(batch, capacity int) int {
	return min(max(2*batch, 64), max(capacity, 1))
}

// put appends evs, in order, to their shards' mailboxes (idx[i] is evs[i]'s
// shard); a shard that was empty and is not held becomes runnable.
func (sh *shards) put(evs []*stage.Event, idx []uint8) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i, ev := range evs {
		k := idx[i]
		b := &sh.boxes[k]
		b.push(ev)
		sh.queued++
		if !b.held && !b.runnable {
			sh.pushRunnable(k)
		}
		sh.countLocked(k)
	}
}

// note counts events of the given shards for the key spread, without
// queueing them (an inline stage's).
func (sh *shards) note(idx []uint8) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, k := range idx {
		sh.countLocked(k)
	}
}

// holding adds d to the shards held (an inline stage's locks).
func (sh *shards) holding(d int) {
	sh.mu.Lock()
	sh.held += d
	sh.mu.Unlock()
}

// countLocked counts one event of shard k for the key spread.
func (sh *shards) countLocked(k uint8) {
	sh.recent[k]++
	sh.recentSum++
	if sh.recentSum >= 2*spreadWindow {
		var sum uint32
		for i := range sh.recent {
			sh.recent[i] /= 2
			sum += sh.recent[i]
		}
		sh.recentSum = sum
	}
}

// claim takes up to len(dst) events from runnable shards, oldest runnable
// first, and holds those shards (appending them to held) until release.
// A shard is held even when events of it are left over (the batch was
// full): they wait for the holder's release. It returns how many events it
// put in dst.
func (sh *shards) claim(dst []*stage.Event, held []uint8) (int, []uint8) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := 0
	for n < len(dst) && sh.runLen > 0 {
		k := sh.runq[sh.runHead]
		sh.runHead = (sh.runHead + 1) % ShardCount
		sh.runLen--
		b := &sh.boxes[k]
		b.runnable, b.held = false, true
		sh.held++
		held = append(held, k)
		n += b.pop(dst[n:])
	}
	sh.queued -= n
	if sh.roomWant && sh.queued < sh.limit {
		sh.roomWant = false
		select {
		case sh.room <- struct{}{}:
		default:
		}
	}
	return n, held
}

// release gives the held shards back: one with events left becomes
// runnable, at the tail.
func (sh *shards) release(held []uint8) {
	if len(held) == 0 {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, k := range held {
		b := &sh.boxes[k]
		b.held = false
		sh.held--
		if b.n > 0 {
			sh.pushRunnable(k)
		}
	}
}

func (sh *shards) pushRunnable(k uint8) {
	sh.runq[(sh.runHead+sh.runLen)%ShardCount] = k
	sh.runLen++
	sh.boxes[k].runnable = true
}

// enter takes the intake, then waits until the mailboxes hold fewer than
// limit events, and returns how many more they may take. It returns 0,
// not holding the intake, when take ends first.
func (sh *shards) enter(take context.Context, limit int) int {
	sh.idle.Add(1)
	defer sh.idle.Add(-1)
	select {
	case <-sh.token:
	case <-take.Done():
		return 0
	}
	for {
		sh.mu.Lock()
		sh.limit = limit
		if sh.queued < limit {
			sh.roomWant = false
			room := limit - sh.queued
			sh.mu.Unlock()
			return room
		}
		sh.roomWant = true
		sh.mu.Unlock()
		select {
		case <-sh.room:
		case <-take.Done():
			sh.leave()
			return 0
		}
	}
}

// leave gives the intake back.
func (sh *shards) leave() { sh.token <- struct{}{} }

// depth returns the events in the mailboxes, and those of them in
// runnable shards (what a free worker could take now).
func (sh *shards) depth() (queued, runnable int) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := 0; i < sh.runLen; i++ {
		runnable += sh.boxes[sh.runq[(sh.runHead+i)%ShardCount]].n
	}
	return sh.queued, runnable
}

// figures returns the shards as /stats shows them.
func (sh *shards) figures() *stats.Shards {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	f := &stats.Shards{By: sh.paths, Count: ShardCount, Queued: sh.queued, Held: sh.held}
	if sh.recentSum > 0 {
		var most uint32
		for _, c := range sh.recent {
			most = max(most, c)
		}
		f.Busiest = float64(most) / float64(sh.recentSum)
	}
	return f
}

// push appends ev, growing the ring when it is full.
func (b *mailbox) push(ev *stage.Event) {
	if b.n == len(b.ring) {
		r := make([]*stage.Event, max(8, 2*len(b.ring)))
		m := copy(r, b.ring[b.head:])
		copy(r[m:], b.ring[:b.head])
		b.ring, b.head = r, 0
	}
	b.ring[(b.head+b.n)%len(b.ring)] = ev
	b.n++
}

// pop moves up to len(dst) events, oldest first, into dst.
func (b *mailbox) pop(dst []*stage.Event) int {
	n := min(len(dst), b.n)
	for i := range n {
		dst[i] = b.ring[b.head]
		b.ring[b.head] = nil
		b.head = (b.head + 1) % len(b.ring)
	}
	b.n -= n
	if b.n == 0 {
		b.head = 0
	}
	return n
}

// initShards sets up shard_by for a new handler stage: mailboxes for a
// stage with a port, locks for an inline one.
func (s *Stage) initShards() {
	if len(s.set.ShardBy) == 0 || s.handler == nil {
		return
	}
	s.shards = newShards(s.set.ShardBy)
	if s.port == nil {
		s.locks = new(shardLocks)
	}
}

// shardFigures adds the shards to a stage's /stats figures: the mailboxes'
// events to the queue's depth, and the key spread.
func (s *Stage) shardFigures(st *stats.Stage) {
	if s.shards == nil {
		return
	}
	f := s.shards.figures()
	st.Queue.Depth += f.Queued
	st.Shards = f
	if s.port != nil {
		// Workers waiting for the intake wait for events as those parked
		// in the port do.
		st.Pool.Waiting += int(s.shards.idle.Load())
	}
}

// shardsQueued returns the events in the stage's mailboxes.
func (s *Stage) shardsQueued() int {
	if s.shards == nil {
		return 0
	}
	q, _ := s.shards.depth()
	return q
}

// waitingDepth is the depth the pool controller judges: the events a
// worker given a free run slot could take. With shard_by, events in a
// shard that a worker holds wait for that worker, not for a free one, and
// the port's wait for room in the mailboxes once they are full: so it is
// the runnable events, plus the port's depth while the mailboxes have
// room. Without, the port's depth.
func (s *Stage) waitingDepth(ps port.Stats) int {
	if s.shards == nil {
		return ps.Depth
	}
	queued, runnable := s.shards.depth()
	d := runnable
	if queued < bound(int(s.batchNow.Load()), ps.Capacity) {
		d += ps.Depth
	}
	return d
}
