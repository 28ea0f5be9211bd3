package netio

// This file holds netio.tcp's door: the accept loop, registering a new
// connection, and refusing one over max_conns.

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"time"

	"go.uber.org/zap"
)

func (s *Source) accept() {
	defer s.wg.Done()
	defer close(s.acceptDone)
	backoff := time.Duration(0)
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and try again.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		s.admit(nc)
	}
}

// admit registers a new connection and starts its reader and owner, or
// refuses it when max_conns are open and no connection idle for
// idle_evict can be closed to make room. Registering and checking for
// shutdown happen under one lock, so nothing starts after Close.
func (s *Source) admit(nc net.Conn) {
	s.mu.Lock()
	if s.stopped || s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	var evicted idleConn
	if len(s.conns)-s.evicting >= s.opts.MaxConns {
		if evicted = s.evictLocked(time.Now()); evicted.c == nil {
			s.mu.Unlock()
			s.refuse(nc)
			return
		}
	}
	if s.tlsCfg != nil {
		nc = tls.Server(&progressConn{Conn: nc}, s.tlsCfg) // the reader runs the handshake
	}
	s.nextID++
	c := newConn(s, s.nextID, nc)
	s.conns[c.id] = c
	s.wg.Add(2)
	s.mu.Unlock()
	if evicted.c != nil {
		evicted.c.closeEvicted(evicted.since)
	}
	if s.tlsCfg == nil {
		c.served.Store(true)
		s.cnt.accepted.Add(1)
	}
	if tc, ok := rawConn(nc).(*net.TCPConn); ok && s.opts.SocketBuffer > 0 {
		if err := tc.SetReadBuffer(s.opts.SocketBuffer); err != nil {
			c.log.Warn("setting SO_RCVBUF failed", zap.Error(err))
		}
		if err := tc.SetWriteBuffer(s.opts.SocketBuffer); err != nil {
			c.log.Warn("setting SO_SNDBUF failed", zap.Error(err))
		}
	}
	c.log.Debug("connection accepted")
	go c.read()
	go c.own()
}

// evictLocked chooses the connection idle longest, if one has been idle
// for idle_evict (its reader waiting for input, nothing owed to it), to
// make room for a new one at max_conns, and marks it; it returns it, or
// no connection. s.mu is held; the caller closes it with closeEvicted
// once s.mu is released. The connection counts as gone at once
// (s.evicting), although its goroutines return a moment later. A scan
// that finds none notes when the first could be due, and makes none
// before then: a storm of new connections does not scan max_conns
// connections each.
func (s *Source) evictLocked(now time.Time) idleConn {
	if s.opts.IdleEvict <= 0 || now.Before(s.nextEvict) {
		return idleConn{}
	}
	limit := now.Add(-s.opts.IdleEvict).UnixNano()
	next := now.UnixNano() // a reader idle from now on is due idle_evict from now
	cands := s.evictScratch[:0]
	for _, c := range s.conns {
		switch t := c.idleSince.Load(); {
		case t == 0 || t == idleEvicted || c.evicted:
		case t > limit:
			next = min(next, t)
		default:
			cands = append(cands, idleConn{c, t})
		}
	}
	slices.SortFunc(cands, func(a, b idleConn) int { return cmp.Compare(a.since, b.since) })
	var evicted idleConn
	for _, ic := range cands {
		if ic.c.evict(ic.since) {
			ic.c.evicted = true
			s.evicting++
			evicted = ic
			break
		}
	}
	clear(cands)
	s.evictScratch = cands[:0]
	if evicted.c == nil {
		s.nextEvict = time.Unix(0, next).Add(s.opts.IdleEvict)
	}
	return evicted
}

// idleConn is a connection idle since a time (UnixNano), for evictLocked.
type idleConn struct {
	c     *conn
	since int64
}

// refuse tells an over-limit client why in one line and closes. The line
// is written at once (a new socket's send buffer takes it whole), before
// the write side is shut: every refused client is told, whatever the
// storm. Then the input is discarded for a moment (so the line is not
// lost to a reset, which the kernel sends for input left unread at close)
// in a goroutine of its own; when too many are lingering already, what
// has arrived is discarded and the connection closed at once, the line
// and the end of input ahead of any reset. Over TLS see refuseTLS.
func (s *Source) refuse(nc net.Conn) {
	n := s.cnt.refused.Add(1)
	if s.refuseLog.allow() {
		s.log.Warn("too many connections; refusing", zap.String("remote", nc.RemoteAddr().String()),
			zap.Int("max_conns", s.opts.MaxConns), zap.Uint64("refused_total", n))
	}
	if s.tlsCfg != nil {
		s.refuseTLS(nc)
		return
	}
	if s.opts.Ack == AckCommit {
		nc.SetWriteDeadline(time.Now().Add(refuseWrite))
		io.WriteString(nc, tooManyConns)
	}
	closeWrite(nc)
	if !s.inRefusalSlot(nc, func() { s.lingerRefused(nc) }) {
		discardReady(nc)
		nc.Close()
	}
}

// inRefusalSlot runs fn in a goroutine of its own holding one of the
// refused connections' slots (s.refusing), and then closes nc, which the
// source's stop closes too; it reports false, running nothing, when
// every slot is taken.
func (s *Source) inRefusalSlot(nc net.Conn, fn func()) bool {
	select {
	case s.refusing <- struct{}{}:
	default:
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.refusing }()
		stop := context.AfterFunc(s.ctx, func() { nc.Close() })
		defer stop()
		fn()
		nc.Close()
	}()
	return true
}

// refuseTLS refuses a connection over TLS, where the line can only be
// written after a handshake, which takes the client's round trips: it
// runs in a goroutine of its own holding one of the lingering refusals'
// slots, bounded by tlsHandshakeTimeout, so a storm of refused clients
// holds no more handshakes than that at once. Past them, and under ack:
// none (which has no line to write), the connection is closed before the
// handshake, without a word. A refused client whose handshake fails is
// closed too; it counts as refused (once), not as a protocol error.
func (s *Source) refuseTLS(nc net.Conn) {
	if s.opts.Ack != AckCommit {
		nc.Close()
		return
	}
	ok := s.inRefusalSlot(nc, func() {
		tc := tls.Server(nc, s.tlsCfg)
		tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		if !s.stopping.Load() && tc.Handshake() == nil {
			tc.SetWriteDeadline(time.Now().Add(refuseWrite))
			io.WriteString(tc, tooManyConns)
			closeWrite(tc)
			s.lingerRefused(nc) // the socket under TLS: what comes in is dropped unread
		}
	})
	if !ok {
		nc.Close()
	}
}

// lingerRefused discards a refused connection's input until the client
// closes, drain_linger passes or a second does, whichever comes first.
func (s *Source) lingerRefused(nc net.Conn) {
	nc.SetReadDeadline(time.Now().Add(min(s.opts.DrainLinger, time.Second)))
	var b [512]byte
	for {
		if _, err := nc.Read(b[:]); err != nil {
			return
		}
	}
}

// tooManyConns is the line a connection over max_conns gets.
const tooManyConns = "nack 0 too many connections\n"

// refuseWrite bounds the write of a refusal or eviction line; a new or
// idle socket's send buffer takes it at once.
const refuseWrite = 100 * time.Millisecond
