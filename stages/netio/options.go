package netio

import (
	"errors"
	"fmt"
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
	defaultRefuses = 64 // over-limit connections being refused at once
)

// Options configure a Source. New fills zero fields with the defaults of
// the kind's spec, except IdleTimeout and KeepAlive, where 0 means none
// (the YAML defaults are 5m and 15s), and DrainLinger, where a negative
// value means no linger.
type Options struct {
	Listen      string        // host:port to listen on; required
	Framing     Framing       // Lines (default) or OctetCounted
	MaxFrame    int           // largest record in bytes; larger ones are refused as too large
	MaxConns    int           // connections at once; more are refused
	IdleTimeout time.Duration // close a connection that sends nothing and is owed nothing this long; 0: never
	Ack         AckMode       // AckCommit (default) or AckNone
	// MaxPendingOutput bounds the ack and nack text held in memory per
	// connection beyond what the kernel's send buffer took. Reaching it
	// does not cut the client off: finished records wait in the
	// connection's window (bounded by MaxUnacked, whose reads then pause)
	// and become text as the writes drain.
	MaxPendingOutput int
	// WriteTimeout is how long a write of acks may take nothing before
	// the client is cut off as not reading: its receive buffer and the
	// server's send buffer are full. 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	ReadBuffer   int           // bytes per read; one read is outstanding per connection
	DrainLinger  time.Duration // after half-close on drain, discard input this long at most
	SocketBuffer int           // SO_RCVBUF and SO_SNDBUF per connection; 0: kernel autotuning
	KeepAlive    time.Duration // TCP keepalive period; 0: off
	// MaxUnacked bounds a connection's records read and not yet acked
	// (under AckNone: not yet finished). At it the connection's reads
	// pause until acks move, so TCP pushes back on the client and the
	// connection's memory stays bounded even when one record is stuck
	// while later ones finish. 0 means DefaultMaxUnacked.
	MaxUnacked int
}

func (o *Options) fill() error {
	if o.Listen == "" {
		return &stage.FieldError{Field: "listen", Err: errors.New("required: host:port to listen on")}
	}
	if o.Framing == "" {
		o.Framing = Lines
	}
	if o.Framing != Lines && o.Framing != OctetCounted {
		return &stage.FieldError{Field: "framing", Err: fmt.Errorf("%q: want lines or octet-counted", o.Framing)}
	}
	if o.Ack == "" {
		o.Ack = AckCommit
	}
	if o.Ack != AckCommit && o.Ack != AckNone {
		return &stage.FieldError{Field: "ack", Err: fmt.Errorf("%q: want commit or none", o.Ack)}
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxPendingOutput == 0 {
		o.MaxPendingOutput = DefaultMaxPendingOutput
	}
	if o.ReadBuffer == 0 {
		o.ReadBuffer = DefaultReadBuffer
	}
	if o.MaxUnacked == 0 {
		o.MaxUnacked = DefaultMaxUnacked
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.DrainLinger == 0 {
		o.DrainLinger = DefaultDrainLinger
	} else if o.DrainLinger < 0 {
		o.DrainLinger = 0
	}
	switch {
	case o.MaxFrame < 1 || o.MaxFrame > maxMaxFrame:
		return &stage.FieldError{Field: "max_frame", Err: fmt.Errorf("%d: want 1 to %d bytes", o.MaxFrame, maxMaxFrame)}
	case o.MaxConns < 1:
		return &stage.FieldError{Field: "max_conns", Err: fmt.Errorf("%d: want at least 1", o.MaxConns)}
	case o.IdleTimeout < 0:
		return &stage.FieldError{Field: "idle_timeout", Err: fmt.Errorf("%s: want 0 (none) or more", o.IdleTimeout)}
	case o.MaxPendingOutput < minPendingOut:
		return &stage.FieldError{Field: "max_pending_output", Err: fmt.Errorf("%d: want at least %d bytes", o.MaxPendingOutput, minPendingOut)}
	case o.ReadBuffer < minReadBuffer || o.ReadBuffer > maxReadBuffer:
		return &stage.FieldError{Field: "read_buffer", Err: fmt.Errorf("%d: want %d to %d bytes", o.ReadBuffer, minReadBuffer, maxReadBuffer)}
	case o.SocketBuffer < 0 || o.SocketBuffer > maxSocketBuf:
		return &stage.FieldError{Field: "socket_buffer", Err: fmt.Errorf("%d: want 0 (kernel autotuning) to %d bytes", o.SocketBuffer, maxSocketBuf)}
	case o.MaxUnacked < 1 || o.MaxUnacked > maxMaxUnacked:
		return &stage.FieldError{Field: "max_unacked", Err: fmt.Errorf("%d: want 1 to %d records", o.MaxUnacked, maxMaxUnacked)}
	case o.WriteTimeout < 0:
		return &stage.FieldError{Field: "write_timeout", Err: fmt.Errorf("%s: want more than 0", o.WriteTimeout)}
	case o.KeepAlive < 0:
		return &stage.FieldError{Field: "keepalive", Err: fmt.Errorf("%s: want 0 (off) or more", o.KeepAlive)}
	}
	return nil
}

// Fields is the configuration spec of netio.tcp.
func Fields() []stage.Field {
	return []stage.Field{
		{Name: "listen", Type: stage.String, Required: true, Doc: "host:port to accept connections on (127.0.0.1:7000; :0 picks a port)"},
		{Name: "framing", Type: stage.String, Default: "lines", Doc: "lines: records end with \\n (a trailing \\r is dropped); octet-counted: RFC 6587 LEN SP MSG"},
		{Name: "max_frame", Type: stage.Size, Default: "64KiB", Doc: "largest record; a larger one is refused (nack N too large) and skipped, the connection stays usable"},
		{Name: "max_conns", Type: stage.Int, Default: "1024", Doc: "connections at once; one more gets `nack 0 too many connections` and is closed"},
		{Name: "idle_timeout", Type: stage.Duration, Default: "5m", Doc: "close a connection that sends nothing and is owed no ack this long; 0: never"},
		{Name: "ack", Type: stage.String, Default: "commit", Doc: "commit: write `ack N` once records up to N are finished, `nack N reason` for refused ones; none: write nothing"},
		{Name: "max_pending_output", Type: stage.Size, Default: "1MiB", Doc: "ack and nack text held in memory per connection; at it no more is made until writes drain (the client is not cut off)"},
		{Name: "write_timeout", Type: stage.Duration, Default: "30s", Doc: "close a connection whose acks the client takes none of this long (it is not reading); 0: the default"},
		{Name: "max_unacked", Type: stage.Int, Default: "65536", Doc: "records per connection read and not yet acked (ack: none: not yet finished); at it reads pause and TCP pushes back on the client"},
		{Name: "read_buffer", Type: stage.Size, Default: "64KiB", Doc: "bytes per read; each connection has one read outstanding, in a pooled buffer"},
		{Name: "drain_linger", Type: stage.Duration, Default: "2s", Doc: "on drain, after half-closing, discard input this long at most so the kernel does not reset unread acks"},
		{Name: "socket_buffer", Type: stage.Size, Default: "0", Doc: "SO_RCVBUF and SO_SNDBUF per connection; 0 keeps the kernel's autotuning (usually best)"},
		{Name: "keepalive", Type: stage.Duration, Default: "15s", Doc: "TCP keepalive period, to find dead peers; 0: off"},
	}
}

// Register registers the netio.tcp kind in r.
func Register(r *stage.Registry) error {
	return r.Register(stage.Kind{
		Name:      Kind,
		Doc:       "TCP source: frames records per connection, numbers them, and acknowledges them once finished",
		Fields:    Fields(),
		NewSource: NewSource,
	})
}

// NewSource is the kind's constructor: it reads the configuration into
// Options and returns New's Source.
func NewSource(cfg stage.Config, env stage.Env) (stage.Source, error) {
	if env.Settings.Overflow == port.Reject {
		return nil, &stage.FieldError{Field: "queue.overflow", Err: errors.New(
			"reject does not apply to a netio.tcp source: it always applies backpressure to its sockets " +
				"(reads wait for room); put overflow: reject on the stage after it, whose full queue then nacks records as busy")}
	}
	o := optionsFromConfig(cfg)
	// The pipeline names the stage and its position in the error.
	return New(o)
}

// optionsFromConfig reads cfg, whose defaults the loader filled in. A
// configuration built by hand without them gets New's defaults.
func optionsFromConfig(cfg stage.Config) Options {
	o := Options{
		Listen:           cfg.String("listen"),
		Framing:          Framing(cfg.String("framing")),
		MaxFrame:         int(min(cfg.Size("max_frame"), maxMaxFrame+1)),
		MaxConns:         cfg.Int("max_conns"),
		IdleTimeout:      DefaultIdleTimeout,
		Ack:              AckMode(cfg.String("ack")),
		MaxPendingOutput: int(min(cfg.Size("max_pending_output"), 1<<40)),
		ReadBuffer:       int(min(cfg.Size("read_buffer"), maxReadBuffer+1)),
		DrainLinger:      DefaultDrainLinger,
		SocketBuffer:     int(min(cfg.Size("socket_buffer"), maxSocketBuf+1)),
		KeepAlive:        DefaultKeepAlive,
		MaxUnacked:       cfg.Int("max_unacked"),
	}
	if v, ok := cfg.Value("write_timeout"); ok {
		o.WriteTimeout, _ = v.(time.Duration) // 0: the default
	}
	if v, ok := cfg.Value("idle_timeout"); ok {
		o.IdleTimeout, _ = v.(time.Duration)
	}
	if v, ok := cfg.Value("keepalive"); ok {
		o.KeepAlive, _ = v.(time.Duration)
	}
	if v, ok := cfg.Value("drain_linger"); ok {
		d, _ := v.(time.Duration)
		if o.DrainLinger = d; d == 0 {
			o.DrainLinger = -1 // written as 0: no linger
		}
	}
	return o
}
