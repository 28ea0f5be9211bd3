package chanpipe

// This file holds the channel pipeline: its server, connections,
// decoding and database goroutines.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

// Defaults of Config's zero fields: the example pipeline's settings.
const (
	DefaultWorkers  = 8
	DefaultBatchMax = 2000
	DefaultLinger   = 2 * time.Millisecond
	DefaultQueueCap = 16384
	DefaultMaxFrame = 64 << 10
)

// Config configures a Server.
type Config struct {
	Listen string // host:port; "" means 127.0.0.1:0
	// Parse decodes a batch of events read from one connection and emits
	// the good ones (process.json); it finishes the bad ones itself.
	Parse stage.Handler
	// Store stores a batch and finishes its events (db.postgres). If it is
	// Start or Close (see stage.Kind), Start and Close call it.
	Store    stage.Handler
	Workers  int           // database goroutines; 0: DefaultWorkers
	BatchMax int           // records per Store call at most; 0: DefaultBatchMax
	Linger   time.Duration // wait for a batch to fill; 0: DefaultLinger
	QueueCap int           // the channel's capacity; 0: DefaultQueueCap
	MaxFrame int           // longest record; 0: DefaultMaxFrame
	Logger   *zap.Logger   // nil: no logs
}

// Server is a running channel pipeline.
type Server struct {
	cfg Config
	log *zap.Logger
	ln  net.Listener
	ch  chan *stage.Event

	ctx     context.Context // cancelled by Close when the drain is cut short
	cancel  context.CancelFunc
	readers sync.WaitGroup // accept loop and connection readers
	dbs     sync.WaitGroup
	writers sync.WaitGroup

	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
	nextID atomic.Uint64
}

// Start starts Store (if it is a Starter), the database goroutines and the
// listener.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Parse == nil || cfg.Store == nil {
		return nil, errors.New("chanpipe: Parse and Store are required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.Workers = cmpOr(cfg.Workers, DefaultWorkers)
	cfg.BatchMax = cmpOr(cfg.BatchMax, DefaultBatchMax)
	cfg.Linger = cmpOr(cfg.Linger, DefaultLinger)
	cfg.QueueCap = cmpOr(cfg.QueueCap, DefaultQueueCap)
	cfg.MaxFrame = cmpOr(cfg.MaxFrame, DefaultMaxFrame)
	s := &Server{cfg: cfg, log: cfg.Logger, ch: make(chan *stage.Event, cfg.QueueCap), conns: map[*conn]struct{}{}}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if st, ok := cfg.Store.(interface{ Start(context.Context) error }); ok {
		if err := st.Start(ctx); err != nil {
			return nil, fmt.Errorf("chanpipe: store: %w", err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		s.closeStore()
		return nil, fmt.Errorf("chanpipe: %w", err)
	}
	s.ln = ln
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for range cfg.Workers {
		s.dbs.Go(s.store)
	}
	s.readers.Go(s.accept)
	return s, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops listening and reading, lets what was read be stored and
// acked, and returns when every goroutine has; when ctx ends first, the
// connections are closed and the database calls cancelled.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.nc.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	s.ln.Close()
	s.readers.Wait()
	close(s.ch)
	done := make(chan struct{})
	go func() {
		s.dbs.Wait()
		s.writers.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
	}
	s.cancel()
	return errors.Join(err, s.closeStore())
}

func (s *Server) closeStore() error {
	if c, ok := s.cfg.Store.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

func (s *Server) accept() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &conn{s: s, nc: nc, id: s.nextID.Add(1), wake: make(chan struct{}, 1)}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.writers.Go(c.write)
		s.readers.Go(c.read)
	}
}

// store is one database goroutine: it takes a batch from the channel (the
// first record waits, the rest wait at most Linger) and stores it.
func (s *Server) store() {
	batch := make([]*stage.Event, 0, s.cfg.BatchMax)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		ev, ok := <-s.ch
		if !ok {
			return
		}
		batch = append(batch[:0], ev)
		timer.Reset(s.cfg.Linger)
	fill:
		for len(batch) < s.cfg.BatchMax {
			select {
			case ev, ok := <-s.ch:
				if !ok {
					break fill
				}
				batch = append(batch, ev)
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		if err := s.cfg.Store.Handle(s.ctx, batch, nil); err != nil {
			for _, ev := range batch {
				if !ev.Finished() {
					ev.Done(err)
				}
			}
		}
		clear(batch)
	}
}

// emitter hands decoded events to the database goroutines.
type emitter struct{ s *Server }

func (e emitter) Emit(ctx context.Context, ev *stage.Event) error {
	select {
	case e.s.ch <- ev:
		return nil
	case <-ctx.Done():
		ev.Done(ctx.Err())
		return ctx.Err()
	}
}

// Flush has nothing to do: Emit sends at once.
func (emitter) Flush(context.Context) {}

func (e emitter) EmitTo(ctx context.Context, _ string, ev *stage.Event) error {
	return e.Emit(ctx, ev)
}

// conn is one client connection. The reader numbers records and hands them
// on; Complete (from the database goroutines) records which are finished
// and queues the acks; the writer sends them.
type conn struct {
	s    *Server
	nc   net.Conn
	id   uint64
	wake chan struct{}

	mu      sync.Mutex
	base    uint64 // every record up to base is finished and acked
	done    []bool // done[i]: record base+1+i is finished
	out     []byte // replies not yet written
	eof     bool   // the reader has returned
	readErr error
}

var _ stage.Completer = (*conn)(nil)

// Complete is called once per event, by whoever finished it.
func (c *conn) Complete(ev *stage.Event, err error) {
	c.mu.Lock()
	if err != nil {
		c.out = appendNack(c.out, ev.Seq, err)
	}
	c.done[ev.Seq-c.base-1] = true
	k := 0
	for k < len(c.done) && c.done[k] {
		k++
	}
	if k > 0 {
		c.base += uint64(k)
		c.done = c.done[k:]
		c.out = append(strconv.AppendUint(append(c.out, "ack "...), c.base, 10), '\n')
	}
	c.mu.Unlock()
	c.signal()
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func appendNack(b []byte, seq uint64, err error) []byte {
	b = strconv.AppendUint(append(b, "nack "...), seq, 10)
	b = append(b, ' ')
	for _, r := range err.Error() {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		b = append(b, string(r)...)
	}
	return append(b, '\n')
}

// read frames records, decodes them in batches of what one read brought,
// and hands them on; it blocks when the channel is full.
func (c *conn) read() {
	defer func() {
		c.mu.Lock()
		c.eof = true
		c.mu.Unlock()
		c.signal()
	}()
	r := bufio.NewReaderSize(c.nc, c.s.cfg.MaxFrame+1)
	var seq uint64
	var batch []*stage.Event
	out := emitter{c.s}
	origin := stage.Origin{To: c, Key: c.id}
	for {
		batch = batch[:0]
		var err error
		for len(batch) < 256 {
			var line []byte
			line, err = r.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = r.ReadSlice('\n')
				}
				if err != nil {
					break
				}
				seq++
				c.add(seq)
				c.Complete(&stage.Event{Seq: seq}, errors.New("record too large"))
				continue
			}
			if err != nil {
				break
			}
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			if len(line) == 0 {
				continue
			}
			seq++
			c.add(seq)
			ev := &stage.Event{Payload: append([]byte(nil), line...), Seq: seq, Origin: origin}
			ev.SetArrived(time.Now())
			batch = append(batch, ev)
			if r.Buffered() == 0 {
				break
			}
		}
		if len(batch) > 0 {
			if herr := c.s.cfg.Parse.Handle(c.s.ctx, batch, out); herr != nil {
				for _, ev := range batch {
					if !ev.Finished() {
						ev.Done(herr)
					}
				}
			}
			clear(batch)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				c.mu.Lock()
				c.readErr = err
				c.mu.Unlock()
			}
			return
		}
	}
}

// add opens the slot of record seq.
func (c *conn) add(uint64) {
	c.mu.Lock()
	c.done = append(c.done, false)
	c.mu.Unlock()
}

// write sends the replies as they are queued; once the reader has returned
// and every record is acked it half-closes and the connection ends.
func (c *conn) write() {
	defer func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		c.nc.Close()
	}()
	var buf []byte
	for {
		c.mu.Lock()
		buf, c.out = c.out, buf[:0]
		finished := c.eof && len(c.done) == 0
		c.mu.Unlock()
		if len(buf) > 0 {
			if _, err := c.nc.Write(buf); err != nil {
				c.s.log.Debug("write failed", zap.Uint64("conn", c.id), zap.Error(err))
				c.drainOnError()
				return
			}
		}
		if finished {
			if tc, ok := c.nc.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
		select {
		case <-c.wake:
		case <-c.s.ctx.Done():
			return
		}
	}
}

// drainOnError waits, after the client went away, until nothing of this
// connection is in flight, so that no Complete runs after the connection
// is forgotten.
func (c *conn) drainOnError() {
	for {
		c.mu.Lock()
		finished := c.eof && len(c.done) == 0
		c.out = c.out[:0]
		c.mu.Unlock()
		if finished {
			return
		}
		select {
		case <-c.wake:
		case <-c.s.ctx.Done():
			return
		}
	}
}
