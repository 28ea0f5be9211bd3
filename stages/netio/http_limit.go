package netio

import (
	"net"
	"sync"
	"sync/atomic"
)

// This file holds netio.http's bound on connections (max_conns).

// limitListener accepts at most cap(slots) connections at once: at the
// limit, Accept waits for one to close before it takes the next from the
// kernel, whose backlog (and then the client's SYN retries) holds the
// rest. Each idle connection costs a file descriptor and a goroutine, so
// without a bound clients that open connections and sit idle could take
// every descriptor the process has.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{} // closed by Close: Accept stops waiting
	closeOnce sync.Once
	open      atomic.Int64 // connections holding a slot
	peak      atomic.Int64 // the most at once, for tests
	waiting   atomic.Bool  // Accept is waiting for a slot, for tests
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.waiting.Store(true)
		select {
		case l.slots <- struct{}{}:
			l.waiting.Store(false)
		case <-l.done:
			l.waiting.Store(false)
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	n := l.open.Add(1)
	for {
		p := l.peak.Load()
		if n <= p || l.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return &limitConn{Conn: c, l: l}, nil
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back when it is first closed.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		<-c.l.slots
	})
	return err
}
