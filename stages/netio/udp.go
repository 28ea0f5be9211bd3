package netio

// This file holds netio.udp: a source of one record per datagram.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// UDPKind is the kind name netio.udp sources are registered under.
const UDPKind = "netio.udp"

// Bounds of netio.udp's fields.
const (
	DefaultUDPMaxFrame = 64 << 10
	maxUDPFrame        = 64 << 10 // a UDP datagram carries at most 65,507 bytes over IPv4
	udpSlab            = 256 << 10
)

// udpOptions are netio.udp's configuration, read once from its
// stage.Config (bound to UDPFields).
type udpOptions struct {
	Listen   string
	MaxFrame int // largest datagram in bytes; a larger one is dropped (Drops.Oversized)
	// SocketBuffer is the socket's SO_RCVBUF: what the kernel holds while
	// the reader is busy, which absorbs bursts; 0 keeps the kernel's
	// default.
	SocketBuffer int
}

// UDPFields is the configuration spec of netio.udp.
func UDPFields() []stage.Field {
	return []stage.Field{
		{Name: "listen", Type: stage.String, Required: true, Doc: "host:port to receive datagrams on (127.0.0.1:5514; :0 picks a port)"},
		{Name: "max_frame", Type: stage.Size, Default: int64(DefaultUDPMaxFrame), Range: stage.Between(1, maxUDPFrame),
			Doc: "largest datagram; a larger one is dropped and counted (drops.oversized)"},
		{Name: "socket_buffer", Type: stage.Size, Default: int64(0), Range: stage.Between(0, maxSocketBuf),
			Doc: "SO_RCVBUF, what the kernel holds for the reader to absorb bursts; 0 keeps the kernel's default " +
				"(a datagram that finds it full is dropped: drops.socket_overrun on Linux)"},
	}
}

// NewUDPSource is netio.udp's constructor: it reads cfg, bound to
// UDPFields, and returns a *UDPSource that listens once started.
func NewUDPSource(cfg stage.Config, env stage.Env) (stage.Source, error) {
	return &UDPSource{opts: udpOptions{
		Listen:       cfg.String("listen"),
		MaxFrame:     int(cfg.Size("max_frame")),
		SocketBuffer: int(cfg.Size("socket_buffer")),
	}}, nil
}

// UDPSource is a netio.udp source: each datagram is one record (a
// trailing \n or \r\n is dropped; an empty datagram is no record). A
// datagram cannot be acknowledged, so the source behaves as netio.tcp
// with ack: none: a refused record is logged (at most once a second, with
// its sender's address) and counted, and the sender is told nothing.
//
// One reader takes datagrams off the socket into slabs of memory that
// the events share (no copy), each followed in its slab by its sender's
// address (datagramSlab), and posts them to the source's port without
// ever waiting: UDP has no backpressure, and a reader that waited would
// only move the loss into the kernel. A datagram that finds the port full
// is dropped (Drops.QueueFull), whatever queue.overflow says. The port's
// workers hand the events on to the next stage, waiting for room there.
// Datagrams the kernel dropped because the socket's buffer was full are
// counted where the OS reports them (Linux: SO_RXQ_OVFL) as
// Drops.SocketOverrun; one over max_frame as Drops.Oversized; one read
// while the pipeline holds its memory limit as Drops.MemoryLimit, and one
// read while the first queue after the source is full under overflow
// reject, or refused busy further on, as Drops.QueueFull.
type UDPSource struct {
	opts udpOptions

	// Set by Start.
	rt     stage.SourceRuntime
	set    stage.Settings
	name   string
	log    *zap.Logger
	pc     *net.UDPConn
	port   *port.Port[datagram]
	ctx    context.Context // ends at Close: unblocks Emits
	cancel context.CancelFunc

	wg          sync.WaitGroup // reader and workers
	readerDone  chan struct{}
	workersDone chan struct{}

	mu                               sync.Mutex
	started, stopped, closed, ovflOK bool

	cnt        counters
	refused    atomic.Uint64
	refusalLog logLimit
	readErrLog logLimit

	// readFn and pause are readDatagram and time.Sleep; tests set them
	// (export_test.go) to make reads fail and to see the reader's waits.
	readFn func(pc *net.UDPConn, b, oob []byte) (n, oobn int, from netip.AddrPort, err error)
	pause  func(time.Duration)
}

// A read that fails without the socket being closed (ENOBUFS, ENOMEM, a
// pending socket error) is retried after a wait that doubles from
// readRetryMin up to readRetryMax while reads keep failing, and starts
// over after a read that works: retried at once, a recurring error kept
// a core busy.
const (
	readRetryMin = time.Millisecond
	readRetryMax = 100 * time.Millisecond
)

// datagram is the Value of the source's packets: a record, when it was
// read, and the slab it was read into, with where in it the sender's
// address is.
type datagram struct {
	rec  []byte
	at   time.Time
	slab *datagramSlab
	from int
}

// datagramSlab is a piece of memory the reader reads datagrams into. Each
// record is followed by its sender's address: a length byte, then the
// address's binary form (netip.AddrPort.AppendBinary). The slab is the
// Origin.To of the events made of its records, and an event's Origin.Key
// is where its sender's address is, so that a refusal names the sender
// with no allocation per datagram: an event has no room for an address,
// and the slab is allocated anyway and held as long as its events are.
type datagramSlab struct {
	s   *UDPSource
	buf []byte // written by the reader before it posts the datagram, then only read
}

// maxZone bounds the IPv6 zone (an interface name) kept with a sender's
// address: one longer is dropped, so an address takes at most addrRoom
// bytes of a slab.
const (
	maxZone  = 32
	addrRoom = 1 + 16 + maxZone + 2 // length byte, address, zone, port
)

var (
	_ source          = (*UDPSource)(nil)
	_ stage.Completer = (*datagramSlab)(nil)
)

// Complete is called once per event, by whoever finishes it: a refusal
// is the source's to count and log.
func (sl *datagramSlab) Complete(ev *stage.Event, err error) {
	if err != nil {
		sl.s.refusal(ev.Seq, err, sl.sender(ev.Origin.Key))
	}
}

// Sender names the sender of the datagram whose event's Origin.Key is
// key (see stage.Completer): its address, "" when it has none. A slab is
// never reused, and its bytes are only read once posted.
func (sl *datagramSlab) Sender(key uint64) string {
	if from := sl.sender(key); from.IsValid() {
		return from.String()
	}
	return ""
}

// sender returns the address written at at, or the zero AddrPort when
// there is none.
func (sl *datagramSlab) sender(at uint64) netip.AddrPort {
	if at >= uint64(len(sl.buf)) {
		return netip.AddrPort{}
	}
	end := int(at) + 1 + int(sl.buf[at])
	if end > len(sl.buf) {
		return netip.AddrPort{}
	}
	var from netip.AddrPort
	if from.UnmarshalBinary(sl.buf[at+1:end]) != nil {
		return netip.AddrPort{}
	}
	return from
}

// Fate says what becomes of a record that is not stored (see
// stage.Fate): a datagram's sender is told nothing, so it is lost.
func (s *UDPSource) Fate(error) stage.Fate { return stage.FateLost }

// Addr returns the address the source receives on, or nil before Start.
func (s *UDPSource) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil {
		return nil
	}
	return s.pc.LocalAddr()
}

// Start binds the socket and starts the reader and the workers (the
// stage's workers; its queue capacity is the port's).
func (s *UDPSource) Start(ctx context.Context, rt stage.SourceRuntime) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("netio.udp: started twice")
	}
	s.rt, s.set, s.name = rt, rt.Settings(), rt.Name()
	s.log = rt.Logger().With(zap.String("stage", s.name))
	var lc net.ListenConfig
	c, err := lc.ListenPacket(ctx, "udp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("netio.udp: listen on %q: %w", s.opts.Listen, err)
	}
	s.pc = c.(*net.UDPConn)
	if s.opts.SocketBuffer > 0 {
		if err := s.pc.SetReadBuffer(s.opts.SocketBuffer); err != nil {
			s.log.Warn("setting SO_RCVBUF failed", zap.Error(err))
		}
	}
	s.ovflOK = reportOverruns(s.pc)
	s.started = true
	s.port = port.New[datagram](port.Options{Concurrency: s.set.Concurrency, Capacity: s.set.Capacity, Overflow: port.Reject})
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.readerDone = make(chan struct{})
	s.workersDone = make(chan struct{})
	var workers sync.WaitGroup
	for range s.set.Workers {
		workers.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer workers.Done()
			s.work()
		}()
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		workers.Wait()
		close(s.workersDone)
	}()
	go s.read()
	s.log.Info("listening", zap.Stringer("addr", s.pc.LocalAddr()), zap.String("transport", "udp"),
		zap.Bool("socket_overruns_reported", s.ovflOK))
	return nil
}

// read is the source's one reader. Each datagram is read straight into
// the free tail of a slab; the record is that piece of the slab, so many
// datagrams share one allocation, which the GC frees when their events
// are gone. The sender's address follows the record (datagramSlab).
func (s *UDPSource) read() {
	defer s.wg.Done()
	defer close(s.readerDone)
	limit := s.opts.MaxFrame
	slabSize := max(udpSlab, 4*(limit+1))
	var slab *datagramSlab
	off := 0 // where the slab's free tail begins
	oob := make([]byte, oobSize)
	var seq uint64
	var lastOverrun uint32
	readFn, pause := s.readFn, s.pause
	if readFn == nil {
		readFn = readDatagram
	}
	if pause == nil {
		pause = time.Sleep
	}
	var retry time.Duration
	for {
		if slab == nil || len(slab.buf)-off < limit+addrRoom {
			slab, off = &datagramSlab{s: s, buf: make([]byte, slabSize)}, 0
		}
		// limit+1: a datagram that fills it is over max_frame (the kernel
		// cuts a longer one to the buffer).
		tail := slab.buf[off:]
		n, oobn, from, err := readFn(s.pc, tail[:limit+1], oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			retry = min(max(2*retry, readRetryMin), readRetryMax)
			if s.readErrLog.allow() {
				s.log.Warn("udp read failed; retrying", zap.Error(err), zap.Duration("retry_in", retry))
			}
			pause(retry)
			continue
		}
		retry = 0
		s.cnt.bytesIn.Add(uint64(n))
		if total, ok := overruns(oob[:oobn]); ok && total != lastOverrun {
			s.cnt.overrun.Add(uint64(total - lastOverrun)) // the kernel's count wraps as a uint32
			lastOverrun = total
		}
		if n > limit {
			s.cnt.oversized.Add(1)
			continue
		}
		rec := bytes.TrimSuffix(tail[:n:n], []byte("\n"))
		rec = bytes.TrimSuffix(rec, []byte("\r"))
		if len(rec) == 0 {
			continue
		}
		// The sender's address after the record. An IPv4 sender to a
		// dual-stack socket comes as ::ffff:a.b.c.d: it is kept as a.b.c.d,
		// as netio.tcp names it.
		addr := from.Addr().Unmap()
		if len(addr.Zone()) > maxZone {
			addr = addr.WithZone("")
		}
		// The free tail held limit+addrRoom bytes: the address fits after
		// the record, and AppendBinary writes it in place.
		at := off + n
		enc, _ := netip.AddrPortFrom(addr, from.Port()).AppendBinary(slab.buf[at+1 : at+1])
		slab.buf[at] = byte(len(enc))
		off = at + 1 + len(enc)
		// The door: past the pipeline's memory limit the datagram is
		// dropped and counted (Drops.MemoryLimit); under its overflow
		// block the reader stops reading until there is room, and the
		// kernel's buffer takes the loss (Drops.SocketOverrun). While
		// the first queue after the source rejects on overflow and is
		// full, it is dropped as Drops.QueueFull.
		now := time.Now()
		if s.rt.Admit(now, 1) == 0 {
			if s.overMemory() {
				s.cnt.memoryLimit.Add(1)
			} else {
				s.cnt.queueFull.Add(1)
			}
			continue
		}
		pk := port.Packet[datagram]{Key: seq + 1, N: len(rec), Value: datagram{rec: rec, at: now, slab: slab, from: at}}
		if err := s.port.TryPost(pk); err != nil {
			if errors.Is(err, port.ErrClosed) {
				return
			}
			s.cnt.queueFull.Add(1)
			continue
		}
		seq++
	}
}

// work is one of the source's workers: it makes events of the datagrams
// and hands them on, waiting for room in the next stage.
func (s *UDPSource) work() {
	pw := s.port.Join()
	defer pw.Leave()
	em := s.rt.NewEmitter()
	pks := make([]port.Packet[datagram], min(max(s.set.Batch, 1), 64))
	for {
		n, err := pw.GetBatch(s.ctx, pks)
		if err != nil {
			return
		}
		for i := range pks[:n] {
			pk := pks[i]
			pks[i] = port.Packet[datagram]{}
			d := pk.Value
			ev := s.rt.NewEventAt(d.rec, pk.Key, stage.Origin{To: d.slab, Key: uint64(d.from)}, d.at)
			_ = em.Emit(s.ctx, ev) // a refusal finishes it: Complete
		}
		em.Flush(s.ctx)
	}
}

// refusal counts record seq, refused with err, and logs it at warn at
// most once a second, with its sender (when known) and the running count:
// nobody else will hear of it.
//
// A record refused busy (a full queue further on under overflow: reject,
// a full NATS stream, or a stop that gave up on it) is counted as
// Drops.QueueFull, not as a busy nack: it was lost for want of room, as
// one the door turned away was, and the sender is told nothing either
// way, so the two belong in one count. Other refusals are nacks by class.
func (s *UDPSource) refusal(seq uint64, err error, from netip.AddrPort) {
	if stage.ErrorClass(err) == stage.ClassBusy {
		s.cnt.queueFull.Add(1)
	} else {
		s.cnt.nack(err)
	}
	n := s.refused.Add(1)
	if !s.refusalLog.allow() {
		return
	}
	remote := zap.Skip()
	if from.IsValid() {
		remote = zap.String("remote", from.String())
	}
	s.log.Warn("datagram refused; UDP tells the sender nothing",
		zap.Uint64("record", seq), remote, zap.String("reason", reason(err)), zap.Uint64("refused_total", n))
}

// StopInput closes the socket and returns once every datagram read has
// been handed on (or refused), or with ctx.Err() when ctx ends first.
func (s *UDPSource) StopInput(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.pc.Close()
	s.mu.Unlock()
	select {
	case <-s.readerDone:
	case <-ctx.Done():
		return fmt.Errorf("stage %q: stop input: %w", s.name, ctx.Err())
	}
	s.port.Close() // the workers hand on what is queued, then return
	select {
	case <-s.workersDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stage %q: stop input: %w", s.name, ctx.Err())
	}
}

// Drain stops the input if StopInput was not called and waits until every
// event the source made is finished.
func (s *UDPSource) Drain(ctx context.Context) error {
	if err := s.StopInput(ctx); err != nil {
		return err
	}
	if s.rt == nil {
		return nil // never started
	}
	return s.rt.WaitFinished(ctx) // the error names the stage
}

// Close closes the socket, stops the workers and returns once every
// goroutine of the source has returned.
func (s *UDPSource) Close() error {
	s.mu.Lock()
	if !s.started || s.closed {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.closed, s.stopped = true, true
	s.pc.Close()
	s.mu.Unlock()
	s.cancel()
	s.port.Close()
	s.wg.Wait()
	return nil
}

// Figures puts the source's port, worker pool and counters into its
// /stats entry.
func (s *UDPSource) Figures(st *stats.Stage) {
	s.mu.Lock()
	p, set := s.port, s.set // Start sets them under mu
	s.mu.Unlock()
	var ps port.Stats
	if p != nil {
		ps = p.Stats()
	}
	figures(st, p != nil, ps, port.Reject, set, &s.cnt)
}

// overMemory reports whether the door refused a datagram for the memory
// limit rather than for a full queue; a runtime that cannot say (not the
// engine's) is taken to have.
func (s *UDPSource) overMemory() bool {
	m, ok := s.rt.(interface{ OverMemoryLimit() bool })
	return !ok || m.OverMemoryLimit()
}
