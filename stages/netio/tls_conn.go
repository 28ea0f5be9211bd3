package netio

// This file holds progressConn, the socket under a netio.tcp TLS
// connection, which keeps write_timeout's rule below TLS.

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// progressConn is the socket under a TLS connection of netio.tcp. A write
// cut by its deadline leaves crypto/tls unable to write again, so the
// rule write_timeout sets, that a client taking some of each write is
// served however slowly, is kept here, below TLS: a write that the
// kernel takes part of within the time the deadline allowed gets that
// time again, and only one that takes nothing that long fails.
type progressConn struct {
	net.Conn
	mu      sync.Mutex
	timeout time.Duration // what the last write deadline allowed; 0: none
	noWait  atomic.Bool   // reads take what has arrived and never wait (readNow)
}

// Read reads from the socket, or, once noWait is set, reads what has
// arrived without waiting (a drain under ack: none).
func (c *progressConn) Read(b []byte) (int, error) {
	if c.noWait.Load() {
		return readNow(c.Conn, b)
	}
	return c.Conn.Read(b)
}

// SetWriteDeadline sets the socket's deadline and keeps how long it
// allows.
func (c *progressConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.timeout = 0
	if !t.IsZero() {
		c.timeout = time.Until(t)
	}
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines as absolute ones: the handshake's
// bound is not given again on progress (a client reading the server's
// handshake slowly would hold its slot for ever).
func (c *progressConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.timeout = 0
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// Write writes b, giving the deadline's time again after each write that
// the kernel took part of before it ran out.
func (c *progressConn) Write(b []byte) (int, error) {
	n := 0
	for {
		m, err := c.Conn.Write(b[n:])
		n += m
		c.mu.Lock()
		d := c.timeout
		c.mu.Unlock()
		if err == nil || m == 0 || d <= 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if err := c.Conn.SetWriteDeadline(time.Now().Add(d)); err != nil {
			return n, err
		}
	}
}
