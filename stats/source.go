package stats

// This file holds a network source's own counters.

import "time"

// Source are a network source's counters, totals since it started.
type Source struct {
	Connections Conns `json:"connections"`
	// ProtocolErrors counts connections (or requests, datagrams) closed
	// or refused for breaking the protocol, by cause: "bad_frame",
	// "tls_handshake", "bad_request", ...
	ProtocolErrors map[string]uint64 `json:"protocol_errors"`
	Nacks          Nacks             `json:"nacks"`
	BytesIn        uint64            `json:"bytes_in"` // bytes read from clients (after TLS, before gzip)
	Drops          Drops             `json:"drops"`
	// TLS describes the certificate the source presents, when it has
	// TLS: so that an alert may come before it expires.
	TLS *SourceTLS `json:"tls,omitempty"`
}

// SourceTLS is the certificate a source presents to new connections
// (the one loaded last).
type SourceTLS struct {
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// Conns counts a source's connections.
type Conns struct {
	Accepted uint64 `json:"accepted"`
	Closed   uint64 `json:"closed"`
	Refused  uint64 `json:"refused"` // over max_conns, a failed TLS handshake (a bad token is protocol_errors.unauthorized)
}

// Nacks counts records refused, by error class (stage.ErrorClass).
type Nacks struct {
	Busy     uint64 `json:"busy"`
	Invalid  uint64 `json:"invalid"`
	TooLarge uint64 `json:"too_large"`
	Database uint64 `json:"database"`
	Other    uint64 `json:"other"`
}

// Drops counts records lost without a refusal anyone is told of: what a
// datagram source cannot nack.
type Drops struct {
	QueueFull     uint64 `json:"queue_full"`     // no room in the source's queue, or refused busy further on (a queue that rejects on overflow was full)
	Oversized     uint64 `json:"oversized"`      // over max_frame
	SocketOverrun uint64 `json:"socket_overrun"` // dropped by the kernel, a full socket buffer (where the OS reports it)
	MemoryLimit   uint64 `json:"memory_limit"`   // refused at the door: the pipeline held its memory_limit
}
