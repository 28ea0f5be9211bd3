package netio

// This file holds netio.tcp's configuration: its spec (Fields), the
// options the source runs with, read once from the spec's Config, and the
// registration of the package's kinds.

import (
	"errors"
	"time"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// Kind is the kind name netio.tcp sources are registered under.
const Kind = "netio.tcp"

// Framing is how records are cut from the byte stream.
type Framing string

const (
	Lines        Framing = "lines"         // records end with \n; a trailing \r is dropped
	OctetCounted Framing = "octet-counted" // RFC 6587 octet counting: LEN SP MSG
	// Syslog chooses per frame, as rsyslog's imtcp does: a frame that
	// starts with a digit is octet-counted, any other ends at \n.
	Syslog Framing = "syslog"
)

// AckMode says what the source writes back.
type AckMode string

const (
	AckCommit AckMode = "commit" // ack N / nack N reason once records are finished
	AckNone   AckMode = "none"   // write nothing (syslog senders)
)

// Defaults of the kind's fields.
const (
	DefaultMaxFrame         = 64 << 10
	DefaultMaxConns         = 1024
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultIdleEvict        = 5 * time.Second
	DefaultMaxPendingOutput = 1 << 20
	DefaultReadBuffer       = 64 << 10
	DefaultDrainLinger      = 2 * time.Second
	DefaultKeepAlive        = 15 * time.Second
	DefaultMaxUnacked       = 65536
	DefaultWriteTimeout     = 30 * time.Second
)

// Bounds of the fields.
const (
	maxMaxFrame    = 999_999_999 // the most an RFC 6587 length may say with 9 digits
	minReadBuffer  = 16
	maxReadBuffer  = 16 << 20
	minPendingOut  = 256
	maxSocketBuf   = 64 << 20
	maxMaxUnacked  = 1 << 24
	defaultRefuses = 64 // over-limit connections lingering at once after their refusal
)

// options are netio.tcp's configuration as the source runs with it,
// read once from its stage.Config (bound to Fields: the defaults are the
// spec's) by tcpOptions.
type options struct {
	Listen      string
	Framing     Framing
	MaxFrame    int           // largest record in bytes; larger ones are refused as too large
	MaxConns    int           // connections at once; more are refused
	IdleTimeout time.Duration // close a connection that sends nothing and is owed nothing this long; 0: never
	// IdleEvict: at MaxConns, a connection that has sent nothing and is
	// owed nothing this long is closed to make room for a new one (the
	// longest idle first); 0: never.
	IdleEvict time.Duration
	Ack       AckMode
	// MaxPendingOutput bounds the ack and nack text held in memory per
	// connection beyond what the kernel's send buffer took. Reaching it
	// does not cut the client off: finished records wait in the
	// connection's window (bounded by MaxUnacked, whose reads then pause)
	// and become text as the writes drain.
	MaxPendingOutput int
	// WriteTimeout is how long a write of acks may take nothing before
	// the client is cut off as not reading: its receive buffer and the
	// server's send buffer are full.
	WriteTimeout time.Duration
	ReadBuffer   int           // bytes per read; one read is outstanding per connection
	DrainLinger  time.Duration // after half-close on drain, discard input this long at most; 0: no linger
	SocketBuffer int           // SO_RCVBUF and SO_SNDBUF per connection; 0: kernel autotuning
	KeepAlive    time.Duration // TCP keepalive period; 0: off
	// MaxUnacked bounds a connection's records read and not yet acked
	// (under AckNone: not yet finished). At it the connection's reads
	// pause until acks move, so TCP pushes back on the client and the
	// connection's memory stays bounded even when one record is stuck
	// while later ones finish.
	MaxUnacked int
	// Admission, when positive, puts the source under admission control
	// with this p99 target from read to finish: records beyond the rate
	// the controller admits are refused busy at once, before any event is
	// made of them. 0: off, backpressure only.
	Admission time.Duration
	TLS       *tlsOptions // nil: plain TCP

	refusers int // over-limit connections lingering at once (tests lower it); no key
}

// busyReason is the nack reason of a record refused at the door.
var busyReason = reason(stage.ErrBusy)

// tcpOptions reads netio.tcp's configuration, bound to Fields, and checks
// what the spec cannot say.
func tcpOptions(cfg stage.Config) (options, error) {
	o := options{
		Listen:           cfg.String("listen"),
		Framing:          Framing(cfg.String("framing")),
		MaxFrame:         int(cfg.Size("max_frame")),
		MaxConns:         cfg.Int("max_conns"),
		IdleTimeout:      cfg.Duration("idle_timeout"),
		IdleEvict:        cfg.Duration("idle_evict"),
		Ack:              AckMode(cfg.String("ack")),
		MaxPendingOutput: int(cfg.Size("max_pending_output")),
		WriteTimeout:     cfg.Duration("write_timeout"),
		ReadBuffer:       int(cfg.Size("read_buffer")),
		DrainLinger:      cfg.Duration("drain_linger"),
		SocketBuffer:     int(cfg.Size("socket_buffer")),
		KeepAlive:        cfg.Duration("keepalive"),
		MaxUnacked:       cfg.Int("max_unacked"),
		Admission:        cfg.Object("admission").Duration("target"),
		TLS:              tlsFromConfig(cfg),
		refusers:         defaultRefuses,
	}
	if o.Ack == "" {
		// A syslog sender (rsyslog, logger) reads nothing back: acks
		// written to it would pile up in its socket until write_timeout
		// cut it off.
		o.Ack = AckCommit
		if o.Framing == Syslog {
			o.Ack = AckNone
		}
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout // the key's doc: 0 is the default
	}
	if cfg.Has("admission") && !cfg.Object("admission").Has("target") {
		return o, &stage.FieldError{Field: "admission", Err: errors.New("admission control needs a target: the p99 latency from read to finish to keep under, e.g. {target: 250ms}")}
	}
	if o.TLS != nil {
		if err := o.TLS.check(); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Fields is the configuration spec of netio.tcp.
func Fields() []stage.Field {
	return []stage.Field{
		{Name: "listen", Type: stage.String, Required: true, Doc: "host:port to accept connections on (127.0.0.1:7000; :0 picks a port)"},
		{Name: "framing", Type: stage.String, Default: string(Lines), Enum: []string{string(Lines), string(OctetCounted), string(Syslog)},
			Doc: "lines: records end with \\n (a trailing \\r is dropped); octet-counted: RFC 6587 LEN SP MSG; " +
				"syslog: each frame as it comes, as rsyslog's imtcp reads it: one that starts with a digit is octet-counted, any other ends at \\n"},
		{Name: "max_frame", Type: stage.Size, Default: int64(DefaultMaxFrame), Range: stage.Between(1, maxMaxFrame),
			Doc: "largest record; a larger one is refused (nack N too large) and skipped, the connection stays usable"},
		{Name: "max_conns", Type: stage.Int, Default: DefaultMaxConns, Range: stage.AtLeast(1),
			Doc: "connections at once; one more gets `nack 0 too many connections` and is closed, unless one idle for idle_evict is closed to make room"},
		{Name: "idle_timeout", Type: stage.Duration, Default: DefaultIdleTimeout, Doc: "close a connection that sends nothing and is owed no ack this long; 0: never"},
		{Name: "idle_evict", Type: stage.Duration, Default: DefaultIdleEvict,
			Doc: "at max_conns, a connection that has sent nothing and is owed no ack this long is closed to make room for a new one, " +
				"the longest idle first (under ack: commit it gets `nack 0 idle for D at max_conns: closed to make room`); 0: never"},
		{Name: "ack", Type: stage.String, Enum: []string{string(AckCommit), string(AckNone)},
			Doc: "commit: write `ack N` once records up to N are finished, `nack N reason` for refused ones; none: write nothing. " +
				"Unset: commit, except with framing: syslog, whose senders never read what the server writes: none"},
		{Name: "max_pending_output", Type: stage.Size, Default: int64(DefaultMaxPendingOutput), Range: stage.Between(minPendingOut, 1<<40),
			Doc: "ack and nack text held in memory per connection; at it no more is made until writes drain (the client is not cut off)"},
		{Name: "write_timeout", Type: stage.Duration, Default: DefaultWriteTimeout,
			Doc: "close a connection whose acks the client takes none of this long (it is not reading); 0: the default"},
		{Name: "max_unacked", Type: stage.Int, Default: DefaultMaxUnacked, Range: stage.Between(1, maxMaxUnacked),
			Doc: "records per connection read and not yet acked (ack: none: not yet finished); at it reads pause and TCP pushes back on the client"},
		{Name: "read_buffer", Type: stage.Size, Default: int64(DefaultReadBuffer), Range: stage.Between(minReadBuffer, maxReadBuffer),
			Doc: "bytes per read; each connection has one read outstanding, in a pooled buffer"},
		{Name: "drain_linger", Type: stage.Duration, Default: DefaultDrainLinger,
			Doc: "on drain, after half-closing, discard input this long at most so the kernel does not reset unread acks; " +
				"under ack: none, which has no acks to protect, the connection is closed at once instead (the input already arrived is read, " +
				"and its records counted lost), so a sender's next writes fail rather than being discarded"},
		{Name: "socket_buffer", Type: stage.Size, Default: int64(0), Range: stage.Between(0, maxSocketBuf),
			Doc: "SO_RCVBUF and SO_SNDBUF per connection; 0 keeps the kernel's autotuning (usually best)"},
		{Name: "keepalive", Type: stage.Duration, Default: DefaultKeepAlive, Doc: "TCP keepalive period, to find dead peers; 0: off"},
		{Name: "admission", Type: stage.Object,
			Doc:    "admission control: records beyond an admitted rate are nacked busy at once, before decoding; the rate rises while the p99 from read to finish is under the target and falls while it is over (unset: off, backpressure only)",
			Fields: []stage.Field{admissionTarget()}},
		tlsField(),
	}
}

func admissionTarget() stage.Field {
	return stage.Field{Name: "target", Type: stage.Duration, Range: stage.Between(int64(time.Millisecond), int64(time.Hour)),
		Doc: "the p99 latency from read to finish to keep under, e.g. 250ms"}
}

// Register registers the kinds netio.tcp, netio.udp and netio.http in r.
func Register(r *stage.Registry) error {
	for _, k := range []stage.Kind{{
		Name:      Kind,
		Doc:       "TCP source: frames records per connection, numbers them, and acknowledges them once finished",
		Fields:    Fields(),
		NewSource: NewSource,
	}, {
		Name: UDPKind,
		Doc: "UDP source: each datagram is one record (a trailing \\n dropped), as syslog senders send them. " +
			"Nothing can be acknowledged, so it behaves as netio.tcp with ack: none: a refused record is logged and counted. " +
			"Datagrams lost are counted in /stats' source.drops: queue_full (the stage's queue was full: UDP has no backpressure, " +
			"so a full queue drops whatever queue.overflow says; or a queue after it was full under overflow: reject, " +
			"or a stop gave up on it: a record refused busy), memory_limit (read past the pipeline's memory_limit), oversized (over max_frame) and " +
			"socket_overrun (the kernel's buffer was full; Linux reports it)",
		Fields:    UDPFields(),
		NewSource: NewUDPSource,
	}, {
		Name: HTTPKind,
		Doc: "HTTP intake: clients POST NDJSON (one record per line; empty lines skipped and not numbered; " +
			"Content-Encoding: gzip accepted) to path, and the answer comes once every record is finished: " +
			"200 {\"acked\":N}; 422 {\"acked\":N,\"nacked\":[{\"record\":K,\"reason\":\"...\"}]} (records numbered from 1); " +
			"413 when the body is over max_body (nothing taken); 503 with Retry-After when busy; 401 without the token",
		Fields:    HTTPFields(),
		NewSource: NewHTTPSource,
	}} {
		if err := r.Register(k); err != nil {
			return err
		}
	}
	return nil
}

// NewSource is netio.tcp's constructor: it reads cfg, bound to Fields,
// and returns a *Source that listens once started.
func NewSource(cfg stage.Config, env stage.Env) (stage.Source, error) {
	if env.Settings.Overflow == port.Reject {
		return nil, &stage.FieldError{Field: "queue.overflow", Err: errors.New(
			"reject does not apply to a netio.tcp source: it always applies backpressure to its sockets " +
				"(reads wait for room); put overflow: reject on the stage after it, whose full queue then nacks records as busy")}
	}
	o, err := tcpOptions(cfg)
	if err != nil {
		return nil, err // the pipeline names the stage and the field's position
	}
	return &Source{opts: o}, nil
}
