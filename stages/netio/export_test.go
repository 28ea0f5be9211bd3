package netio

// This file exports what the tests of package netio_test look at inside.

import (
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"time"

	"github.com/stagedserver/seda/stage"
)

// PendingPeak returns the most ack and nack text any of s's connections
// had pending at once, in bytes.
func PendingPeak(s *Source) int { return int(s.pendingPeak.Load()) }

// Truncated returns how many of s's connections ended inside a frame.
func Truncated(src stage.Source) uint64 {
	c := &src.(*Source).cnt
	c.protoMu.Lock()
	defer c.protoMu.Unlock()
	return c.proto[causeTruncatedFrame]
}

// MaxLine is the longest reply line the source writes.
const MaxLine = maxRangeLine

// SetTLSReload sets how often a TLS source (netio.tcp, netio.http) looks
// at its files for changes, before it starts; the spec has no key for it.
func SetTLSReload(src stage.Source, d time.Duration) {
	var o *tlsOptions
	switch s := src.(type) {
	case *Source:
		o = s.opts.TLS
	case *HTTPSource:
		o = s.opts.TLS
	}
	if o != nil {
		o.ReloadEvery = d
	}
}

// OptionsOf returns the options a netio.tcp source runs with.
func OptionsOf(src stage.Source) options { return src.(*Source).opts }

// SetRefusers sets how many refused connections may linger at once
// (discarding their input after the refusal) before Start; the others
// are closed at once once told.
func SetRefusers(src stage.Source, n int) { src.(*Source).opts.refusers = n }

// SetUDPRead makes s read through read (given the real read, to delegate
// to) and wait through pause, before Start.
func SetUDPRead(s *UDPSource, read func(real UDPReadFunc, pc *net.UDPConn, b, oob []byte) (int, int, netip.AddrPort, error), pause func(time.Duration)) {
	s.readFn = func(pc *net.UDPConn, b, oob []byte) (int, int, netip.AddrPort, error) {
		return read(readDatagram, pc, b, oob)
	}
	s.pause = pause
}

// UDPReadFunc reads one datagram into b and its control messages into
// oob, and returns its sender.
type UDPReadFunc = func(pc *net.UDPConn, b, oob []byte) (n, oobn int, from netip.AddrPort, err error)

// SetOnEvict makes s call f as it closes a connection evicted at
// max_conns, before Start.
func SetOnEvict(src stage.Source, f func()) { src.(*Source).onEvict = f }

// HeldByCaller reports whether s's lock stays held for a second: held
// by the caller, as against taken for a moment by another goroutine (a
// connection removing itself).
func HeldByCaller(src stage.Source) bool {
	s := src.(*Source)
	for end := time.Now().Add(time.Second); time.Now().Before(end); runtime.Gosched() {
		if s.mu.TryLock() {
			s.mu.Unlock()
			return false
		}
	}
	return true
}

// ReasonBytes returns the bytes of nack reasons s's connections' windows
// hold, the records they have read and how many of those are not yet
// finished.
func ReasonBytes(src stage.Source) (held int, read uint64, outstanding int) {
	s := src.(*Source)
	s.mu.Lock()
	conns := s.connList()
	s.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		held += c.win.held
		read += c.win.next
		outstanding += c.outstanding
		c.mu.Unlock()
	}
	return held, read, outstanding
}

// MaxHeldReasons is the most nack reason text a connection's window holds.
const MaxHeldReasons = maxHeldReasons

// HTTPConns returns how many connections s holds now.
func HTTPConns(s *HTTPSource) int { return int(s.open.Load()) }

// SetHTTPStall sets how long netio.http waits for the next piece of a
// body before it cuts the request off, before Start.
func SetHTTPStall(s *HTTPSource, d time.Duration) { s.stall = d }

// HTTPReading returns how many requests of s are reading their bodies.
func HTTPReading(s *HTTPSource) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reading)
}

// SetWaiting makes s call f with each request as it starts waiting for its
// records to finish, before Start.
func SetWaiting(s *HTTPSource, f func(*http.Request)) { s.waiting = f }

// SetBodyRead makes s call f with each request whose body it has read,
// before it makes the request's records into events.
func SetBodyRead(s *HTTPSource, f func(*http.Request)) { s.bodyRead = f }
