package netio

// This file holds a source's counters for /stats and the rate limit of its
// log lines.

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// Causes of protocol errors, the keys of stats.Source.ProtocolErrors.
const (
	causeBadFrame     = "bad_frame"     // a bad octet count (octet-counted, syslog)
	causeTLSHandshake = "tls_handshake" // a TLS handshake failed: no TLS, no or a bad client certificate
	causeBadRequest   = "bad_request"   // HTTP: not a POST to path, a bad encoding, a body cut short
	causeUnauthorized = "unauthorized"  // HTTP: the token is missing or wrong
	// causeTruncatedFrame: a client's input ended inside a frame (the
	// connection was ending anyway; the frame is dropped).
	causeTruncatedFrame = "truncated_frame"
)

// counters are a source's stats.Source, kept with atomics so that
// the paths that count pay one atomic add.
type counters struct {
	accepted, closed, refused atomic.Uint64
	nacks                     [5]atomic.Uint64 // by classIndex
	bytesIn                   atomic.Uint64
	queueFull, oversized      atomic.Uint64
	overrun                   atomic.Uint64
	memoryLimit               atomic.Uint64 // UDP: dropped past the pipeline's memory limit

	protoMu sync.Mutex
	proto   map[string]uint64
}

// classIndex maps stage.ErrorClass names to counters.nacks.
func classIndex(class string) int {
	switch class {
	case stage.ClassBusy:
		return 0
	case stage.ClassInvalid:
		return 1
	case stage.ClassTooLarge:
		return 2
	case stage.ClassDatabase:
		return 3
	}
	return 4
}

// nack counts a record refused with err.
func (c *counters) nack(err error) { c.nacks[classIndex(stage.ErrorClass(err))].Add(1) }

// nackClass counts a record the source refused itself.
func (c *counters) nackClass(class string) { c.nacks[classIndex(class)].Add(1) }

// nackClassN counts n records the source refused itself.
func (c *counters) nackClassN(class string, n uint64) { c.nacks[classIndex(class)].Add(n) }

// protocolError counts one protocol error of cause and returns the count
// of that cause so far.
func (c *counters) protocolError(cause string) uint64 {
	c.protoMu.Lock()
	defer c.protoMu.Unlock()
	if c.proto == nil {
		c.proto = map[string]uint64{}
	}
	c.proto[cause]++
	return c.proto[cause]
}

func (c *counters) snapshot() stats.Source {
	c.protoMu.Lock()
	proto := make(map[string]uint64, len(c.proto))
	for k, v := range c.proto {
		proto[k] = v
	}
	c.protoMu.Unlock()
	return stats.Source{
		Connections:    stats.Conns{Accepted: c.accepted.Load(), Closed: c.closed.Load(), Refused: c.refused.Load()},
		ProtocolErrors: proto,
		Nacks: stats.Nacks{Busy: c.nacks[0].Load(), Invalid: c.nacks[1].Load(), TooLarge: c.nacks[2].Load(),
			Database: c.nacks[3].Load(), Other: c.nacks[4].Load()},
		BytesIn: c.bytesIn.Load(),
		Drops: stats.Drops{QueueFull: c.queueFull.Load(), Oversized: c.oversized.Load(), SocketOverrun: c.overrun.Load(),
			MemoryLimit: c.memoryLimit.Load()},
	}
}

// figures puts a source's port (its stats ps, when started), worker pool
// and counters into its /stats entry.
func figures(st *stats.Stage, started bool, ps port.Stats, o port.Overflow, set stage.Settings, c *counters) {
	st.Queue = stats.Queue{Overflow: o.String()}
	if started {
		st.Queue.Depth, st.Queue.Capacity = ps.Depth, ps.Capacity
		st.Pool = stats.Pool{Workers: set.Workers, Concurrency: set.Concurrency,
			Running: ps.Running, Blocked: ps.Blocked, Waiting: ps.Waiting}
	}
	ss := c.snapshot()
	st.Source = &ss
}

// source is a stage.Source with the optional methods of stage.Kind that
// this package's sources have, for compile-time checks.
type source interface {
	stage.Source
	Addr() net.Addr
	Figures(st *stats.Stage)
	Fate(err error) stage.Fate
}

// batchCompleter is a stage.Completer with CompleteAll.
type batchCompleter interface {
	stage.Completer
	CompleteAll(evs []*stage.Event, err error)
}

// logLimit lets one log line through a second: a flood of bad clients or
// refused records leaves a trace without flooding the log. The lines
// carry running counts, so what is skipped is not lost from view.
type logLimit struct {
	next atomic.Int64 // unix ns before which nothing is logged
}

// allow reports whether a line may be logged now.
func (l *logLimit) allow() bool {
	now := time.Now().UnixNano()
	next := l.next.Load()
	return now >= next && l.next.CompareAndSwap(next, now+int64(time.Second))
}
