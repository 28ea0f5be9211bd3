package loadgen

// This file holds a load run: its configuration, its result, and Run,
// which dials the connections and gathers what they measured.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagedserver/seda/internal/wire"
)

// Defaults of Config's zero fields.
const (
	DefaultConns      = 64
	DefaultWindow     = 1000
	DefaultAckTimeout = 2 * time.Minute
	// MaxFirstNacks is how many nacks Result.FirstNacks keeps.
	MaxFirstNacks = 5
)

// dialTimeout bounds each connection's dial.
const dialTimeout = 10 * time.Second

// Config says what load to offer. Records or Duration (or both: whichever
// ends first) must be set.
type Config struct {
	Addr     string        // host:port of the server
	Conns    int           // connections; 0 means DefaultConns
	Records  int           // records in all, spread evenly over the connections; 0: until Duration
	Duration time.Duration // stop sending after this long; 0: until Records are sent
	// Rate is the records per second offered over all connections; 0 means
	// as fast as the windows allow.
	Rate float64
	// Window is the most records a connection has sent and not yet seen
	// acked or nacked; 0 means DefaultWindow.
	Window int
	// StartID is the id of the first record; ids run from it upwards. With
	// Records, the last id must not pass the largest int64; with Duration
	// alone, sending stops before it would.
	StartID int64
	// Size pads each record's msg so that the record is at least Size
	// bytes; 0 leaves Record's size (about 90 bytes).
	Size int
	// Record, if set, makes the record with the given id (appended to
	// b, without the newline) instead of PaddedRecord: for loads whose
	// records repeat keys (B11's upserts). Size is then not applied.
	Record func(b []byte, id int64) []byte
	// Framing is the server's framing; "" means wire.Lines.
	Framing wire.Framing
	// Acked, if set, counts the acked records while the run goes: a
	// caller reads it for a progress display.
	Acked *atomic.Uint64
	// AckTimeout bounds the wait for the acks still owed once sending has
	// stopped, and for the server's close after the half-close, together;
	// 0 means DefaultAckTimeout.
	AckTimeout time.Duration
	// CollectIDs keeps the ids of the acked (not nacked) records in
	// Result.AckedIDs.
	CollectIDs bool
	// OnAck, if set, is called with the id of every acked (not nacked)
	// record, from the reader of the record's connection: calls for
	// different connections run concurrently. It lets a caller keep the
	// acked ids compactly (a bitmap indexed by id-StartID) instead of
	// CollectIDs' slice.
	OnAck func(id int64)
	// PerSecond fills Result.Seconds: records sent, acked and nacked in
	// each second, and the latency of those acked.
	PerSecond bool
	// Malformed is the fraction of records sent malformed (JSON cut
	// short, see MalformedRecord) instead of Record's; which ids, is
	// IsMalformed's deterministic choice. A server should nack them.
	Malformed float64
	// DropConns is the fraction of connections dropped abruptly: halfway
	// through (half the Duration, or half the connection's records),
	// such a connection is closed without half-closing or waiting for
	// what it is owed. Which ones, is a deterministic choice by StartID
	// and index. Its records unanswered then are counted in
	// Result.Unanswered, not as an error.
	DropConns float64
}

// IsMalformed reports whether the record with id is sent malformed under
// cfg.Malformed.
func (cfg *Config) IsMalformed(id int64) bool {
	return cfg.Malformed > 0 && unit(uint64(id)) < cfg.Malformed
}

// drops reports whether connection idx is dropped under cfg.DropConns.
func (cfg *Config) drops(idx int) bool {
	return cfg.DropConns > 0 && unit(uint64(cfg.StartID)*0x9e3779b97f4a7c15^uint64(idx)^0x5bd1e995) < cfg.DropConns
}

// unit maps x to [0, 1) by splitmix64's finalizer.
func unit(x uint64) float64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// MalformedRecord appends a malformed record with id to b: the start of
// Record's JSON, cut short.
func MalformedRecord(b []byte, id int64) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, id, 10)
	return append(b, `,"host":"web`...)
}

// Second is one second of a run (Config.PerSecond), from the first send.
type Second struct {
	Sent, Acked, Nacked uint64
	// Latency holds the latencies of the records acked in that second.
	Latency Histogram
}

// Result is what a run measured.
type Result struct {
	Sent, Acked, Nacked uint64
	// Elapsed runs from the first record sent to the last reply read.
	Elapsed time.Duration
	// Latency holds, for every acked record, the time from writing it to
	// reading the ack that covers it.
	Latency Histogram
	// Nacks counts the nacks by reason.
	Nacks map[string]uint64
	// FirstNacks are the first nacks (MaxFirstNacks at most), by
	// connection.
	FirstNacks []Nack
	// AckedIDs are the ids of the acked records (with Config.CollectIDs).
	AckedIDs []int64
	// Timeline holds the records acked in each second of the run, from the
	// first send.
	Timeline []uint64
	// Seconds is the run second by second, with Config.PerSecond.
	Seconds []Second
	// Conns is how many connections the run made.
	Conns int
	// Errors are the failures of connections (at most one each).
	Errors []error
	// Refused counts the connections the server refused (their errors
	// wrap ErrRefused). Refusals counts those it answered with `nack 0
	// REASON` first, by reason; the others were closed before any reply.
	Refused  int
	Refusals map[string]int
	// Malformed counts the records sent malformed (Config.Malformed).
	Malformed uint64
	// Dropped counts the connections dropped abruptly (Config.DropConns);
	// Unanswered, the records they had sent and not seen answered when
	// they were dropped: Sent = Acked + Nacked + Unanswered.
	Dropped    int
	Unanswered uint64
}

// ErrRefused is wrapped by the error of a connection the server refused:
// it answered `nack 0 REASON` (netio.tcp at max_conns: "too many
// connections"), or it closed the connection before any reply, which is
// how a server refuses one it has no room to answer.
var ErrRefused = errors.New("refused by the server")

// Nack is a nack a connection received.
type Nack struct {
	Conn   int    // the connection's index, from 0
	Record uint64 // the record's number on the connection, from 1; 0: about the connection
	// Through is the last record of a range nack (records Record to
	// Through refused for one reason); 0 for a single record's.
	Through uint64
	Reason  string
}

func (n Nack) String() string {
	if n.Through > n.Record {
		return fmt.Sprintf("conn %d records %d-%d: %s", n.Conn, n.Record, n.Through, n.Reason)
	}
	return fmt.Sprintf("conn %d record %d: %s", n.Conn, n.Record, n.Reason)
}

// AckedPerSec is Acked over Elapsed.
func (r *Result) AckedPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Acked) / r.Elapsed.Seconds()
}

// Err joins the connections' errors; nil when every connection ended
// cleanly with nothing owed.
func (r *Result) Err() error { return errors.Join(r.Errors...) }

// Record appends the benchmark's JSON record with the given id to b: about
// 90 bytes, without the newline.
func Record(b []byte, id int64) []byte { return PaddedRecord(b, id, 0) }

// PaddedRecord is Record with its msg padded with dots so that the record
// is at least size bytes.
func PaddedRecord(b []byte, id int64, size int) []byte {
	start := len(b)
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"host":"web-`...)
	b = strconv.AppendInt(b, id%64, 10)
	b = append(b, `.example.com","level":"`...)
	// The index is taken unsigned: a negative id (a caller's StartID, or
	// ids past the largest int64 wrapping round) must not index below 0.
	b = append(b, levels[uint64(id)%uint64(len(levels))]...)
	b = append(b, `","msg":"request handled in `...)
	b = strconv.AppendInt(b, id%997, 10)
	b = append(b, ` ms status=200`...)
	for len(b)-start+2 < size {
		b = append(b, '.')
	}
	return append(b, `"}`...)
}

var levels = [...]string{"info", "info", "info", "warn", "debug", "error"}

// IDs returns the ids a run with cfg sends when every record is sent
// (Records set): for files and checks that need the same rows.
func IDs(cfg Config) []int64 {
	ids := make([]int64, cfg.Records)
	for i := range ids {
		ids[i] = cfg.StartID + int64(i)
	}
	return ids
}

// Run offers the load and returns when every connection has finished:
// sending is over and every record sent was acked or nacked, the server
// closed, AckTimeout passed, or ctx ended. A connection's failure ends that
// connection only; it is reported in Result.Errors. Run's own error is for
// a bad Config or when no connection could be made.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Addr == "" {
		return nil, errors.New("loadgen: Addr is empty")
	}
	if cfg.Records <= 0 && cfg.Duration <= 0 {
		return nil, errors.New("loadgen: set Records or Duration")
	}
	if cfg.Conns <= 0 {
		cfg.Conns = DefaultConns
	}
	if cfg.Records > 0 && cfg.Conns > cfg.Records {
		cfg.Conns = cfg.Records
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.Framing == "" {
		cfg.Framing = wire.Lines
	}
	if cfg.Records > 0 && cfg.StartID > math.MaxInt64-int64(cfg.Records-1) {
		return nil, fmt.Errorf("loadgen: StartID %d: the ids of %d records would pass %d", cfg.StartID, cfg.Records, int64(math.MaxInt64))
	}
	if cfg.Size > 64<<20 {
		return nil, fmt.Errorf("loadgen: Size %d is over 64MiB", cfg.Size)
	}
	conns := make([]*conn, cfg.Conns)
	for i := range conns {
		n := 0
		if cfg.Records > 0 {
			n = cfg.Records / cfg.Conns
			if i < cfg.Records%cfg.Conns {
				n++
			}
		}
		c := &conn{
			cfg: &cfg, idx: i, quota: uint64(n),
			sentAt: make([]int64, cfg.Window), wake: make(chan struct{}, 1),
			nacks: map[string]uint64{}, drop: cfg.drops(i),
		}
		c.maxSeq = c.lastSeq()
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		cl, err := wire.DialOptions(dctx, cfg.Addr, wire.Options{Framing: cfg.Framing, OnReply: c.reply, KeepNacks: 16})
		cancel()
		if err != nil {
			for _, c := range conns[:i] {
				c.cl.Close()
			}
			return nil, fmt.Errorf("loadgen: conn %d: %w", i, err)
		}
		c.cl = cl
		conns[i] = c
	}

	acked := cfg.Acked
	if acked == nil {
		acked = new(atomic.Uint64)
	}
	base := acked.Load()
	start := time.Now()
	var stopTimeline = make(chan struct{})
	var timeline []uint64
	ps := &perSecond{}
	var tlWG sync.WaitGroup
	tlWG.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := base
		var lastSent, lastNacked uint64
		tick := func() {
			now := acked.Load()
			timeline = append(timeline, now-last)
			last = now
			if cfg.PerSecond {
				sent, nacked := ps.sent.Load(), ps.nacked.Load()
				ps.counts = append(ps.counts, [2]uint64{sent - lastSent, nacked - lastNacked})
				lastSent, lastNacked = sent, nacked
			}
		}
		for {
			select {
			case <-stopTimeline:
				tick()
				return
			case <-t.C:
				tick()
			}
		}
	})

	var wg sync.WaitGroup
	for _, c := range conns {
		c.start, c.acked = start, acked
		if cfg.PerSecond {
			c.ps, c.secLat = ps, new(Histogram)
		}
		wg.Go(func() { c.run(ctx) })
	}
	wg.Wait()
	close(stopTimeline)
	tlWG.Wait()

	res := &Result{Conns: len(conns), Nacks: map[string]uint64{}, Refusals: map[string]int{}, Timeline: timeline}
	if cfg.PerSecond {
		res.Seconds = ps.seconds(timeline)
	}
	var last time.Time
	for _, c := range conns {
		res.Sent += c.sent
		res.Acked += c.nAcked
		res.Nacked += c.nNacked
		res.Latency.Merge(&c.lat)
		res.Malformed += c.malformed
		if c.dropped {
			res.Dropped++
			res.Unanswered += c.sent - c.nAcked - c.nNacked
		}
		for k, v := range c.nacks {
			res.Nacks[k] += v
		}
		for _, n := range c.first {
			if len(res.FirstNacks) < MaxFirstNacks {
				res.FirstNacks = append(res.FirstNacks, n)
			}
		}
		res.AckedIDs = append(res.AckedIDs, c.ids...)
		if c.err != nil {
			res.Errors = append(res.Errors, fmt.Errorf("conn %d: %w", c.idx, c.err))
		}
		if errors.Is(c.err, ErrRefused) {
			res.Refused++
			if c.refusal != "" {
				res.Refusals[c.refusal]++
			}
		}
		if c.lastReply.After(last) {
			last = c.lastReply
		}
	}
	if !last.IsZero() {
		res.Elapsed = last.Sub(start)
	}
	return res, nil
}

// perSecond gathers Config.PerSecond's figures.
type perSecond struct {
	sent, nacked atomic.Uint64 // running totals, sampled every second
	counts       [][2]uint64   // sent and nacked per second (the sampler's)

	mu  sync.Mutex
	lat []Histogram // by second of the ack
}

// add merges h, the latencies of records acked in second sec, and resets h.
func (p *perSecond) add(sec int, h *Histogram) {
	if h.n == 0 {
		return
	}
	p.mu.Lock()
	for len(p.lat) <= sec {
		p.lat = append(p.lat, Histogram{})
	}
	p.lat[sec].Merge(h)
	p.mu.Unlock()
	*h = Histogram{}
}

// seconds joins the counts with the latencies, second by second.
func (p *perSecond) seconds(acked []uint64) []Second {
	n := max(len(acked), len(p.counts), len(p.lat))
	out := make([]Second, n)
	for i := range out {
		if i < len(acked) {
			out[i].Acked = acked[i]
		}
		if i < len(p.counts) {
			out[i].Sent, out[i].Nacked = p.counts[i][0], p.counts[i][1]
		}
		if i < len(p.lat) {
			out[i].Latency = p.lat[i]
		}
	}
	return out
}
