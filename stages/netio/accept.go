package netio

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"go.uber.org/zap"
)

// This file holds netio.tcp's door: the accept loop, registering a new
// connection, and refusing one over max_conns.

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
// refuses it when max_conns are open. Registering and checking for
// shutdown happen under one lock, so nothing starts after Close.
func (s *Source) admit(nc net.Conn) {
	s.mu.Lock()
	if s.stopped || s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if len(s.conns) >= s.opts.MaxConns {
		s.mu.Unlock()
		s.refuse(nc)
		return
	}
	if s.tlsCfg != nil {
		nc = tls.Server(nc, s.tlsCfg) // the reader runs the handshake
	}
	s.nextID++
	c := newConn(s, s.nextID, nc)
	s.conns[c.id] = c
	s.wg.Add(2)
	s.mu.Unlock()
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

// refuse tells an over-limit client why in one line and closes. The line
// is written, the write side shut and the input discarded briefly (so the
// line is not lost to a reset), in a goroutine of its own; when too many
// are being refused already, the connection is simply closed.
func (s *Source) refuse(nc net.Conn) {
	s.cnt.refused.Add(1)
	s.log.Warn("too many connections; refusing", zap.String("remote", nc.RemoteAddr().String()),
		zap.Int("max_conns", s.opts.MaxConns))
	if s.tlsCfg != nil { // no handshake, so no words: just close
		nc.Close()
		return
	}
	select {
	case s.refusing <- struct{}{}:
	default:
		nc.Close()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.refusing }()
		stop := context.AfterFunc(s.ctx, func() { nc.Close() })
		defer stop()
		deadline := time.Now().Add(min(s.opts.DrainLinger, time.Second))
		nc.SetDeadline(deadline)
		if s.opts.Ack == AckCommit {
			io.WriteString(nc, "nack 0 too many connections\n")
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		var b [512]byte
		for {
			if _, err := nc.Read(b[:]); err != nil {
				break
			}
		}
		nc.Close()
	}()
}
