package faultproxy

// This file holds the Proxy: its listener, its links, and the faults a
// test sets on them.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dialTimeout bounds the proxy's dial of the target; a link whose dial
// fails is reset, as a refused connection would be.
const dialTimeout = 5 * time.Second

// Stats are the proxy's counters since New.
type Stats struct {
	Accepted  uint64 // connections accepted from clients
	Dialed    uint64 // connections made to the target
	Reset     uint64 // links ended by an RST (Reset, Heal, Close, a failed dial)
	Open      int    // links now open
	BytesUp   uint64 // bytes forwarded to the target
	BytesDown uint64 // bytes forwarded to the clients
}

// Proxy forwards the TCP connections it accepts to a target, through the
// faults a test sets. Its methods may be called from any goroutine.
type Proxy struct {
	target string
	ln     net.Listener

	mu     sync.Mutex
	links  map[*link]struct{}
	gate   chan struct{} // closed: links forward; open: a partition or a stall holds them
	closed bool
	wg     sync.WaitGroup // the accept loop and every link's goroutines

	accepted, dialed, resets, up, down atomic.Uint64
}

// New starts a proxy listening on 127.0.0.1 (a free port) that forwards
// to target (host:port). Close stops it.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{target: target, ln: ln, links: map[*link]struct{}{}, gate: open}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address clients dial: 127.0.0.1:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := len(p.links)
	p.mu.Unlock()
	return Stats{Accepted: p.accepted.Load(), Dialed: p.dialed.Load(), Reset: p.resets.Load(), Open: open,
		BytesUp: p.up.Load(), BytesDown: p.down.Load()}
}

// Reset ends every open link with an RST to both its ends and returns how
// many it ended. Forwarding is otherwise unchanged: under a partition new
// connections are still held.
func (p *Proxy) Reset() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resetLocked()
}

// Partition stops forwarding: no byte read after it returns reaches the
// other end, the open links are held, and new connections are accepted
// and held without a byte from the target (it is not dialed). Heal ends
// it.
func (p *Proxy) Partition() { p.hold() }

// Heal ends a partition as a middlebox that lost its state would: every
// link held is reset (both ends get an RST), then forwarding resumes for
// the connections that come next. It returns how many links it reset.
func (p *Proxy) Heal() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.resetLocked() // before the gate opens: no held byte may leak out
	p.openLocked()
	return n
}

// Stall stops forwarding as Partition does; Resume ends it, and the links
// held go on with the bytes they held, delivered late.
func (p *Proxy) Stall() { p.hold() }

// Resume ends a stall (or a partition) without resetting anything: held
// links forward again, and held new connections reach the target.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.openLocked()
}

// Close stops listening, resets every link and waits for the proxy's
// goroutines to return. Later calls do nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	p.resetLocked()
	p.openLocked()
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already held
	}
}

func (p *Proxy) openLocked() {
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

func (p *Proxy) resetLocked() int {
	n := len(p.links)
	for l := range p.links {
		l.reset()
		delete(p.links, l)
	}
	return n
}

// await waits until l may forward; false when l ended first.
func (p *Proxy) await(l *link) bool {
	for {
		p.mu.Lock()
		g := p.gate
		p.mu.Unlock()
		select {
		case <-l.done:
			return false
		case <-g:
		}
		select {
		case <-l.done:
			return false
		default:
		}
		p.mu.Lock()
		open := g == p.gate // not held again meanwhile
		p.mu.Unlock()
		if open {
			return true
		}
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		p.accepted.Add(1)
		l := &link{p: p, client: c.(*net.TCPConn), done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.reset()
			return
		}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go l.serve()
	}
}

// link is one client connection and, once dialed, its connection to the
// target.
type link struct {
	p      *Proxy
	client *net.TCPConn

	mu     sync.Mutex
	server *net.TCPConn // nil until dialed
	ended  bool
	done   chan struct{} // closed when the link ends
}

// serve dials the target once the link may forward, then copies both
// ways until both directions end or the link is reset.
func (l *link) serve() {
	defer l.p.wg.Done()
	defer l.end()
	if !l.p.await(l) {
		return
	}
	c, err := net.DialTimeout("tcp", l.p.target, dialTimeout)
	if err != nil {
		l.p.remove(l, true)
		return
	}
	l.p.dialed.Add(1)
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	l.server = c.(*net.TCPConn)
	l.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pump(l.client, l.server, &l.p.up) }()
	go func() { defer wg.Done(); l.pump(l.server, l.client, &l.p.down) }()
	wg.Wait()
}

// pump copies src to dst through the gate. An EOF is passed on as a
// half-close once the gate allows; any other error resets the link.
func (l *link) pump(src, dst *net.TCPConn, count *atomic.Uint64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !l.p.await(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				l.p.remove(l, true)
				return
			}
			count.Add(uint64(n))
		}
		if err == nil {
			continue
		}
		if !l.p.await(l) {
			return
		}
		if errors.Is(err, io.EOF) {
			_ = dst.CloseWrite()
			return
		}
		l.p.remove(l, true)
		return
	}
}

// end closes the link (gracefully, if it was not reset) and forgets it.
func (l *link) end() { l.p.remove(l, false) }

// remove forgets l and closes it: with an RST when rst.
func (p *Proxy) remove(l *link, rst bool) {
	p.mu.Lock()
	_, known := p.links[l]
	delete(p.links, l)
	p.mu.Unlock()
	if rst && known {
		l.reset()
		return
	}
	l.close()
}

// reset ends the link with an RST to both ends.
func (l *link) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.p.resets.Add(1)
	_ = l.client.SetLinger(0)
	if l.server != nil {
		_ = l.server.SetLinger(0)
	}
	l.closeLocked()
}

func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended {
		l.closeLocked()
	}
}

func (l *link) closeLocked() {
	l.ended = true
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
	close(l.done)
}
