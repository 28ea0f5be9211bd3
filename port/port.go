package port

// This file holds the Port: its queue, run slots, Post, and the packet and
// options types.

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
)

// Packet is one completion: what a Windows completion packet carries.
type Packet[T any] struct {
	Key uint64 // completion key: which source this is (a connection, a client); never interpreted
	// N is the bytes transferred (or a count): the port adds it up as
	// the bytes queued (Stats.Bytes), which Options.MaxBytes bounds; it
	// is never interpreted otherwise.
	N     int
	Value T     // the work item (the role of OVERLAPPED)
	Err   error // the failure of the operation this packet completes, if any
}

// Overflow says what Post does when the queue is full.
type Overflow int

const (
	Block  Overflow = iota // Post waits for room (backpressure)
	Reject                 // Post fails at once with ErrFull (admission control)
)

// String returns "block" or "reject".
func (o Overflow) String() string {
	switch o {
	case Block:
		return "block"
	case Reject:
		return "reject"
	}
	return "overflow(?)"
}

// Options configure a Port. The zero Options is valid: Concurrency
// GOMAXPROCS, Capacity DefaultCapacity (8192), Overflow Block, no bound
// in bytes.
type Options struct {
	Concurrency int      // workers running at once; 0 means runtime.GOMAXPROCS(0)
	Capacity    int      // packets queued at most; 0 means DefaultCapacity
	Overflow    Overflow // what Post does when the queue is full
	// MaxBytes, when positive, makes the queue full also once the N of
	// its packets add up to MaxBytes or more: a post finds room while
	// fewer bytes are queued, so one packet larger than MaxBytes still
	// enters an empty queue, and the queue passes MaxBytes by one packet
	// at most.
	MaxBytes int64
}

// DefaultCapacity is the queue capacity used when Options.Capacity is 0,
// and so a stage's queue capacity when its settings leave it 0 (one fact,
// one name). It is room for two of the largest batches a stage's batching
// controller takes (4096, stage.MaxAutoBatch), so that a worker taking a
// whole batch leaves as much queued for the next: with 1024 a database
// sink's transactions stayed smaller than they could be, and B5 measured
// the untuned pipeline at three quarters of the tuned one, against on a
// par with 8192. The ring is allocated up front: a port of packets of one
// pointer takes 320 KiB at this capacity.
const DefaultCapacity = 8192

var (
	// ErrClosed is returned by Post and TryPost after Close, and by Get and
	// GetBatch once a closed port has delivered everything queued
	// (Windows: ERROR_ABANDONED_WAIT_0).
	ErrClosed = errors.New("port: closed")
	// ErrFull is returned by TryPost, and by Post under Overflow Reject,
	// when the queue is at capacity.
	ErrFull = errors.New("port: queue full")
)

// Stats is a snapshot of a port's gauges and running totals.
type Stats struct {
	Depth       int    // packets queued
	Capacity    int    // packets queued at most
	Bytes       int64  // the N of the packets queued, added up
	MaxBytes    int64  // Options.MaxBytes; 0: no bound in bytes
	Concurrency int    // the run-slot limit now (SetConcurrency changes it)
	Running     int    // workers holding a run slot (over-limit take-backs included)
	Waiting     int    // workers parked in Get/GetBatch
	Blocked     int    // workers inside Blocking
	Posted      uint64 // packets accepted
	Delivered   uint64 // packets handed to workers
	Rejected    uint64 // posts refused with ErrFull
}

// Port is a completion port: a bounded FIFO queue of packets and a limit on
// how many of its workers run at once. All methods are safe for concurrent
// use; a Worker belongs to one goroutine.
type Port[T any] struct {
	mu sync.Mutex

	// ring holds queued packets; head indexes the oldest, depth counts them.
	ring  []Packet[T]
	head  int
	depth int
	// bytes adds up the N of the queued packets; a post finds room while
	// it is under byteLimit (Options.MaxBytes, or no limit).
	bytes, byteLimit int64

	conc     int
	overflow Overflow
	closed   bool

	running int
	blocked int

	// waiters is a LIFO stack of parked workers: the last to park is woken
	// first, so a few goroutines stay hot and the rest stay parked.
	waiters []*Worker[T]
	// slotWaiters are workers parked in Acquire, oldest first: they hold
	// packets already and wait for a run slot only, so a freed slot goes
	// to them before any packet is handed out.
	slotWaiters []*Worker[T]
	// posters is a FIFO list of Posts waiting for room under Overflow Block.
	posters posterList[T]
	// posterPool recycles poster records: blocked Posts allocate nothing.
	posterPool sync.Pool

	posted, delivered, rejected uint64
}

// New returns an open port configured by o; the zero Options is valid.
// Like CreateIoCompletionPort it only makes the queue: workers come from
// Join.
func New[T any](o Options) *Port[T] {
	if o.Concurrency <= 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	if o.Capacity <= 0 {
		o.Capacity = DefaultCapacity
	}
	limit := o.MaxBytes
	if limit <= 0 {
		limit = math.MaxInt64
	}
	return &Port[T]{
		ring:      make([]Packet[T], o.Capacity),
		byteLimit: limit,
		conc:      o.Concurrency,
		overflow:  o.Overflow,
	}
}

// Post queues pk behind every packet queued before it. When the queue is
// full it waits for room under Overflow Block, in line behind Posts already
// waiting (no later Post or TryPost overtakes them), and fails with ErrFull
// under Overflow Reject. It returns ErrClosed after Close, also when Close
// is called while it waits, and ctx.Err() when ctx is done before or while
// it waits; in each of these cases pk was not queued.
func (p *Port[T]) Post(ctx context.Context, pk Packet[T]) error {
	// A small wrapper the compiler inlines, so that pk stays in the
	// caller's frame and is copied once, into the ring, instead of being
	// spilled from registers and copied again.
	return p.post(ctx, &pk)
}

func (p *Port[T]) post(ctx context.Context, pk *Packet[T]) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	if !p.closed && p.depth < len(p.ring) && p.bytes < p.byteLimit && p.posters.len == 0 {
		// The common case, enqueueLocked inlined: room and nobody ahead.
		i := p.head + p.depth
		if i >= len(p.ring) {
			i -= len(p.ring)
		}
		p.ring[i].set(pk)
		p.depth++
		p.bytes += int64(pk.N)
		p.posted++
		// The port is open, so dispatchLocked can only hand out packets,
		// which needs a free run slot: with every slot taken (workers
		// parked beyond Concurrency) skip the call.
		if len(p.waiters) > 0 && p.running < p.conc {
			p.dispatchLocked()
		}
		p.mu.Unlock()
		return nil
	}
	if err := p.enqueueLocked(pk); err != ErrFull || p.overflow == Reject {
		if err == ErrFull {
			p.rejected++
		}
		p.mu.Unlock()
		return err
	}
	// Wait for room. A Get that frees room moves our packet into the ring
	// itself (keeping blocked posters in FIFO order) and then signals us.
	pw := p.getPoster()
	pw.pk = *pk
	p.posters.pushBack(pw)
	p.mu.Unlock()

	var err error
	select {
	case err = <-pw.done:
	case <-ctx.Done():
		p.mu.Lock()
		if pw.queued {
			p.posters.remove(pw)
			p.mu.Unlock()
			err = ctx.Err()
		} else {
			// Resolved while we were cancelled: honour what happened.
			p.mu.Unlock()
			err = <-pw.done
		}
	}
	p.putPoster(pw)
	return err
}

// TryPost queues pk if there is room and never waits, whatever the
// Overflow: ErrFull when the queue is full or Posts are waiting for room
// (counted as Rejected), ErrClosed after Close.
func (p *Port[T]) TryPost(pk Packet[T]) error {
	p.mu.Lock()
	err := p.enqueueLocked(&pk)
	if err == ErrFull {
		p.rejected++
	}
	p.mu.Unlock()
	return err
}

// enqueueLocked appends pk if the port is open and has room, then releases
// waiting workers.
func (p *Port[T]) enqueueLocked(pk *Packet[T]) error {
	if p.closed {
		return ErrClosed
	}
	// Blocked posters go first: a new post may not overtake them.
	if !p.roomLocked() || p.posters.len > 0 {
		return ErrFull
	}
	p.push(pk, true)
	if len(p.waiters) > 0 && p.running < p.conc { // as in post
		p.dispatchLocked()
	}
	return nil
}

// push appends *pk to the ring; fresh says that *pk was just written (a
// packet passed to Post or TryPost), so that it is copied with set.
func (p *Port[T]) push(pk *Packet[T], fresh bool) {
	i := p.head + p.depth
	if i >= len(p.ring) {
		i -= len(p.ring)
	}
	if fresh {
		p.ring[i].set(pk)
	} else {
		p.ring[i] = *pk
	}
	p.depth++
	p.bytes += int64(pk.N)
	p.posted++
}

// set copies *pk to *s field by field. The caller has just written *pk,
// often a field at a time; a field-by-field copy reads it back in the
// widths it was written, which the CPU forwards from its store buffer,
// where a block copy's wider loads straddle those stores and stall until
// they reach the cache. A packet written long before (PostBatch's slice,
// a waiting poster's record) is copied whole: one write-barrier check
// instead of one per pointer field.
func (s *Packet[T]) set(pk *Packet[T]) {
	s.Key = pk.Key
	s.N = pk.N
	s.Value = pk.Value
	s.Err = pk.Err
}

// takeLocked moves up to len(buf) queued packets into buf, refills the ring
// from blocked posters and returns how many it moved.
func (p *Port[T]) takeLocked(buf []Packet[T]) int {
	n := min(len(buf), p.depth)
	// At most two runs of the ring, each moved with one copy and cleared
	// (dropping references for the GC) with one clear.
	for k := 0; k < n; {
		seg := p.ring[p.head:min(p.head+n-k, len(p.ring))]
		copy(buf[k:], seg)
		clear(seg)
		k += len(seg)
		p.head += len(seg)
		if p.head == len(p.ring) {
			p.head = 0
		}
	}
	for i := range buf[:n] {
		p.bytes -= int64(buf[i].N)
	}
	p.depth -= n
	p.delivered += uint64(n)
	p.refillLocked()
	return n
}

// refillLocked moves packets of blocked posters into the room a Get made,
// oldest poster first, and releases those posters.
func (p *Port[T]) refillLocked() {
	for p.posters.len > 0 && p.roomLocked() {
		pw := p.posters.popFront()
		p.push(&pw.pk, false)
		pw.done <- nil
	}
}

// dispatchLocked hands queued packets to parked workers, newest waiter
// first, while run slots are free. On a closed, empty port it wakes every
// waiter with ErrClosed.
func (p *Port[T]) dispatchLocked() {
	for len(p.slotWaiters) > 0 && p.running < p.conc {
		w := p.slotWaiters[0]
		p.slotWaiters[0] = nil
		p.slotWaiters = p.slotWaiters[1:]
		w.parked, w.slotOnly = false, false
		p.running++
		w.holding = true
		w.wake <- struct{}{}
	}
	for len(p.waiters) > 0 && p.depth > 0 && p.running < p.conc {
		w := p.popWaiter()
		w.n = p.takeLocked(w.buf)
		p.running++
		w.holding = true
		w.wake <- struct{}{}
	}
	if p.closed && p.depth == 0 {
		for len(p.waiters) > 0 {
			w := p.popWaiter()
			w.n = 0
			w.wake <- struct{}{}
		}
	}
}

func (p *Port[T]) popWaiter() *Worker[T] {
	last := len(p.waiters) - 1
	w := p.waiters[last]
	p.waiters[last] = nil
	p.waiters = p.waiters[:last]
	w.parked = false
	return w
}

// Close refuses new posts with ErrClosed, fails Posts waiting for room with
// ErrClosed, and lets workers drain what is queued; once the queue is empty,
// Get returns ErrClosed and parked workers are woken. Close is idempotent.
func (p *Port[T]) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for p.posters.len > 0 {
		p.posters.popFront().done <- ErrClosed
	}
	p.dispatchLocked()
}

// Stats returns a consistent snapshot of the port's gauges and totals. It
// takes the port's lock briefly and allocates nothing, so it may be polled
// while the port is busy.
func (p *Port[T]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		Depth:       p.depth,
		Capacity:    len(p.ring),
		Bytes:       p.bytes,
		MaxBytes:    p.maxBytes(),
		Concurrency: p.conc,
		Running:     p.running,
		Waiting:     len(p.waiters) + len(p.slotWaiters),
		Blocked:     p.blocked,
		Posted:      p.posted,
		Delivered:   p.delivered,
		Rejected:    p.rejected,
	}
}

// Join binds a new worker to the port. The worker holds no run slot until
// its first Get returns a packet. Joining a closed port works: the worker
// drains what is queued and then gets ErrClosed.
func (p *Port[T]) Join() *Worker[T] {
	w := &Worker[T]{p: p, wake: make(chan struct{}, 1)}
	w.buf = w.one[:]
	return w
}

// Worker is one pool worker bound to a port. Its methods must be called
// from one goroutine at a time.
type Worker[T any] struct {
	p        *Port[T]
	wake     chan struct{} // its own wake signal: a parked worker waits here
	one      [1]Packet[T]  // Get's buffer, so Get allocates nothing
	buf      []Packet[T]   // where a waker puts the packets it hands over
	n        int           // packets handed over by the waker; 0 means closed
	holding  bool          // holds a run slot
	parked   bool          // on the port's waiter stack, or its slot waiters
	slotOnly bool          // parked in Acquire
	left     bool
}

// Get returns the oldest queued packet, waiting while the queue is empty or
// all run slots are taken; among waiting workers the one that started
// waiting last is served first. Calling Get gives up the slot the worker
// held; returning a packet takes one. It returns ErrClosed once the port is
// closed and drained, an error after Leave, and ctx.Err() when ctx is done
// before a packet is handed over (nothing is dequeued then).
func (w *Worker[T]) Get(ctx context.Context) (pk Packet[T], err error) {
	// A small wrapper the compiler inlines: getOne writes the packet
	// straight into the caller's result, one copy out of the ring.
	err = w.getOne(ctx, &pk)
	return pk, err
}

// getOne is Get: the fast path takes the oldest packet straight from the
// ring into *out; otherwise it waits as get does, through w.one.
func (w *Worker[T]) getOne(ctx context.Context, out *Packet[T]) error {
	p := w.p
	if ctx.Err() == nil {
		p.mu.Lock()
		if !w.left && p.depth > 0 && p.running-b2i(w.holding) < p.conc && len(p.slotWaiters) == 0 {
			// Keep our slot (release and retake) and take one packet.
			if !w.holding {
				w.holding = true
				p.running++
			}
			h := p.head
			*out = p.ring[h]
			p.ring[h] = Packet[T]{} // drop references for the GC
			h++
			if h == len(p.ring) {
				h = 0
			}
			p.head = h
			p.depth--
			p.bytes -= int64(out.N)
			p.delivered++
			if p.posters.len > 0 {
				p.refillLocked()
			}
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
	}
	n, err := w.get(ctx, w.one[:])
	if n == 0 {
		return err
	}
	*out = w.one[0]
	w.one[0] = Packet[T]{}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// GetBatch is Get for up to len(buf) packets: it waits as Get does for the
// first and then takes whatever else is queued, oldest first, up to
// len(buf), without waiting for more. It returns how many packets it put in
// buf (counted one by one in Stats.Delivered), and fails at once when buf is
// empty. Errors are Get's.
func (w *Worker[T]) GetBatch(ctx context.Context, buf []Packet[T]) (int, error) {
	if len(buf) == 0 {
		return 0, errors.New("port: GetBatch with an empty buffer")
	}
	return w.get(ctx, buf)
}

func (w *Worker[T]) get(ctx context.Context, buf []Packet[T]) (int, error) {
	p := w.p
	p.mu.Lock()
	if w.left {
		p.mu.Unlock()
		return 0, errors.New("port: Get after Leave")
	}
	if w.holding {
		w.holding = false
		p.running--
		if len(p.slotWaiters) > 0 {
			// A worker waiting in Acquire holds packets already: the
			// slot is its, before this worker takes more.
			p.dispatchLocked()
		}
	}
	if err := ctx.Err(); err != nil {
		p.dispatchLocked() // our slot is free: let a parked worker have it
		p.mu.Unlock()
		return 0, err
	}
	if p.depth > 0 && p.running < p.conc {
		n := p.takeLocked(buf)
		p.running++
		w.holding = true
		p.mu.Unlock()
		return n, nil
	}
	if p.closed && p.depth == 0 {
		p.dispatchLocked() // wake workers held back by the limit: nothing is left
		p.mu.Unlock()
		return 0, ErrClosed
	}
	// Our released slot may let a parked worker run (it can only matter
	// when the port was over its limit).
	p.dispatchLocked()
	w.buf = buf
	w.parked = true
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()

	select {
	case <-w.wake:
	case <-ctx.Done():
		p.mu.Lock()
		if w.parked {
			p.removeWaiter(w)
			p.mu.Unlock()
			w.buf = w.one[:]
			return 0, ctx.Err()
		}
		// A waker got to us first; take what it handed over.
		p.mu.Unlock()
		<-w.wake
	}
	n := w.n
	w.buf = w.one[:]
	if n == 0 {
		return 0, ErrClosed
	}
	return n, nil
}

func (p *Port[T]) removeWaiter(w *Worker[T]) {
	list := &p.waiters
	if w.slotOnly {
		list = &p.slotWaiters
	}
	for i, x := range *list {
		if x == w {
			copy((*list)[i:], (*list)[i+1:])
			(*list)[len(*list)-1] = nil
			*list = (*list)[:len(*list)-1]
			break
		}
	}
	w.parked, w.slotOnly = false, false
}

// Acquire takes a run slot for a worker that holds none, waiting while
// every slot is taken, as a thread does on its way back from a completion
// it took before its slot was gone. It is for a worker that holds packets
// without a slot: one that went on waiting for more (a GetBatch that
// lingers for a fuller batch gives its slot up meanwhile, and its last
// call may end on its context with none) and must not run its handler
// beyond the limit. Such workers are given a freed slot before packets
// are handed to parked workers, oldest first. A worker that holds a slot
// returns at once. It fails with ctx.Err() when ctx ends first (no slot
// taken) and after Leave; a closed port still has slots to give.
func (w *Worker[T]) Acquire(ctx context.Context) error {
	p := w.p
	p.mu.Lock()
	switch {
	case w.left:
		p.mu.Unlock()
		return errors.New("port: Acquire after Leave")
	case w.holding:
		p.mu.Unlock()
		return nil
	case p.running < p.conc:
		p.running++
		w.holding = true
		p.mu.Unlock()
		return nil
	}
	if err := ctx.Err(); err != nil {
		p.mu.Unlock()
		return err
	}
	w.parked, w.slotOnly = true, true
	p.slotWaiters = append(p.slotWaiters, w)
	p.mu.Unlock()
	select {
	case <-w.wake:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		if w.parked {
			p.removeWaiter(w)
			p.mu.Unlock()
			return ctx.Err()
		}
		p.mu.Unlock() // a slot was handed over first: keep it
		<-w.wake
		return nil
	}
}

// Blocking runs fn without a run slot, so that another worker may run while
// fn blocks (on a database call, a disk write); Windows notices a blocked
// thread by itself, Go code has to say so. When fn returns, or panics, the
// worker takes its slot back at once, even if that puts the port over its
// limit; no parked worker is released until the count is below the limit
// again. A worker that holds no slot (before its first Get) takes none.
func (w *Worker[T]) Blocking(fn func()) {
	p := w.p
	p.mu.Lock()
	had := w.holding
	if had {
		w.holding = false
		p.running--
	}
	p.blocked++
	p.dispatchLocked()
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.blocked--
		if had {
			w.holding = true
			p.running++
		}
		p.mu.Unlock()
	}()
	fn()
}

// Leave unbinds the worker and gives up its run slot. It is idempotent;
// Get after Leave fails.
func (w *Worker[T]) Leave() {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.left {
		return
	}
	w.left = true
	if w.holding {
		w.holding = false
		p.running--
		p.dispatchLocked()
	}
}
