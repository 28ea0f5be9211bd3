package netio

// This file holds netio.http's TLS connections, whose handshake runs on
// their first read so that a failed one is counted and logged.

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

// tlsListener hands http.Server connections whose TLS handshake runs on
// their first read, in the server's goroutine for the connection, so that
// a failed handshake is counted (refused, protocol error tls_handshake)
// and logged here rather than lost in the server's error log.
type tlsListener struct {
	net.Listener
	s *HTTPSource
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.s.tlsCfg), s: l.s}, nil
}

// tlsConn is a server TLS connection that shakes hands on its first read.
type tlsConn struct {
	*tls.Conn
	s      *HTTPSource
	once   sync.Once
	err    error
	served atomic.Bool
}

func (c *tlsConn) Read(p []byte) (int, error) {
	c.once.Do(c.handshake)
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}

func (c *tlsConn) handshake() {
	ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
	defer cancel()
	if c.err = c.HandshakeContext(ctx); c.err == nil {
		c.served.Store(true)
		c.s.cnt.accepted.Add(1)
		return
	}
	s := c.s
	s.cnt.refused.Add(1)
	n := s.cnt.protocolError(causeTLSHandshake)
	if s.protoLog.allow() {
		s.log.Warn("TLS handshake failed; closing the connection", zap.String("remote", c.RemoteAddr().String()),
			zap.String("cause", causeTLSHandshake), zap.Error(c.err), zap.Uint64("protocol_errors", n))
	}
}
