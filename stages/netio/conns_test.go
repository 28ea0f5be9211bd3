package netio_test

// This file tests max_conns on netio.tcp, plain and TLS: a refused
// connection is told why, idle ones are evicted to make room, and one
// owed acks never is.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// newConnsRig starts a netio.tcp source with values in which at most
// refusers refused connections linger at once.
func newConnsRig(t *testing.T, values map[string]any, refusers int) *rig {
	t.Helper()
	src, err := newSource(netio.Kind, listening(values))
	if err != nil {
		t.Fatal(err)
	}
	netio.SetRefusers(src, refusers)
	r := startRig(t, src, stage.Settings{Name: "in", Kind: netio.Kind, Workers: 2, Concurrency: 2, Capacity: 64},
		stage.Settings{Workers: 1}, nil)
	r.src = src.(*netio.Source)
	return r
}

// firstLine reads nc's first line (or what came before the end).
func firstLine(nc net.Conn) string {
	nc.SetReadDeadline(time.Now().Add(wait))
	line, _ := bufio.NewReader(nc).ReadString('\n')
	return line
}

// At max_conns, every connection refused is told so in a `nack 0` line
// before the close, however many are refused at once: past the few that
// may linger, the rest are told and closed at once. Each refused client
// sends a record first, so input is waiting unread when it is closed.
func TestMaxConnsAlwaysNacks(t *testing.T) {
	r := newConnsRig(t, map[string]any{"max_conns": 2, "idle_evict": time.Duration(0), "drain_linger": wait}, 1)
	for range 2 {
		c := r.dial(wire.Lines, nil)
		c.Send([]byte("hello"))
		c.Flush()
		if err := c.WaitTimeout(wait); err != nil || c.Acked() != 1 {
			t.Fatalf("acked %d, %v", c.Acked(), err)
		}
	}
	const refused = 100
	lines := make([]string, refused)
	var wg sync.WaitGroup
	for i := range refused {
		wg.Go(func() {
			nc, err := net.Dial("tcp", r.src.Addr().String())
			if err != nil {
				lines[i] = err.Error()
				return
			}
			defer nc.Close()
			io.WriteString(nc, strings.Repeat(fmt.Sprintf("record of client %d\n", i), 100))
			lines[i] = firstLine(nc)
		})
	}
	wg.Wait()
	for i, l := range lines {
		if l != "nack 0 too many connections\n" {
			t.Errorf("refused client %d got %q, want `nack 0 too many connections`", i, l)
		}
	}
	if st := r.in.Stage().Stats(); st.Source == nil || st.Source.Connections.Refused != refused {
		t.Fatalf("source counters %+v, want %d refused", st.Source, refused)
	}
}

// 1024 idle sockets (the default max_conns) do not lock a new client out
// for idle_timeout: once they have been idle for idle_evict, the one idle
// longest is closed, told why, to make room.
func TestIdleConnectionsMakeRoom(t *testing.T) {
	r := newConnsRig(t, map[string]any{"idle_evict": 50 * time.Millisecond}, 64)
	addr := r.src.Addr().String()
	const idle = netio.DefaultMaxConns
	got := make(chan string, idle) // what an idle socket read before its end
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	for range idle {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		wg.Go(func() {
			b, _ := io.ReadAll(nc)
			got <- string(b)
		})
	}
	poll.Until(t, fmt.Sprintf("%d connections open", idle), func() bool { return r.src.Conns() == idle })

	// A new client is let in and served.
	c, tries := admitNew(t, addr)
	defer c.Close()
	if msg := <-got; !strings.HasPrefix(msg, "nack 0 idle for ") || !strings.HasSuffix(msg, " at max_conns: closed to make room\n") {
		t.Fatalf("the evicted socket read %q, want a `nack 0 idle for ...` line, then the end", msg)
	}
	r.waitLog("idle connection closed to make room")
	if n := r.src.Conns(); n > idle {
		t.Fatalf("%d connections open, max_conns %d", n, idle)
	}
	t.Logf("admitted at try %d", tries)
}

// admitNew connects to addr at max_conns until a client is let in (its
// first tries may come before any socket has been idle for idle_evict,
// and be refused) and served a record, and returns it with the tries it
// took.
func admitNew(t *testing.T, addr string) (*wire.Client, int) {
	t.Helper()
	var c *wire.Client
	tries := 0
	poll.Until(t, "a new client admitted and acked", func() bool {
		tries++
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		cl, err := wire.Dial(ctx, addr, wire.Lines)
		if err != nil {
			t.Fatal(err)
		}
		cl.Send([]byte("hello"))
		cl.Flush()
		if err := cl.WaitTimeout(wait); err == nil && cl.Acked() == 1 {
			c = cl
			return true
		}
		if n := cl.Nacks(); len(n) != 1 || n[0].N != 0 || n[0].Reason != "too many connections" {
			t.Fatalf("a refused try got %v (%v), want `nack 0 too many connections`", n, cl.Err())
		}
		cl.Close()
		return false
	})
	return c, tries
}

// A connection owed acks is never evicted, however long it has sent
// nothing: at max_conns the new one is refused instead.
func TestOwedConnectionIsNotEvicted(t *testing.T) {
	gate := make(chan struct{})
	var r *rig
	r = newRig(t, map[string]any{"max_conns": 1, "idle_evict": time.Millisecond}, stage.Settings{Workers: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate
			return r.finish(ctx, b, out)
		})
	r.gate = gate
	owed := r.dial(wire.Lines, nil)
	owed.Send([]byte("slow"))
	owed.Flush()
	poll.Until(t, "the record in flight", func() bool { return r.in.Stage().InFlight() > 0 })
	time.Sleep(20 * time.Millisecond) // idle_evict passes many times over, and nothing is evicted
	over := r.dial(wire.Lines, nil)
	waitEOF(t, over)
	if n := over.Nacks(); len(n) != 1 || n[0] != (wire.Reply{Nack: true, N: 0, Reason: "too many connections"}) {
		t.Fatalf("the new connection got %v, want `nack 0 too many connections`", n)
	}
	close(gate)
	if err := owed.WaitTimeout(wait); err != nil || owed.Acked() != 1 {
		t.Fatalf("the owed connection: acked %d, %v", owed.Acked(), err)
	}
}

// An idle connection evicted at max_conns is told and closed without the
// source's lock held: a client that does not read can hold that write up
// (and over TLS, a close_notify alert up to 5 s), and with the lock held
// nothing else could connect, close or stop meanwhile.
func TestEvictionHoldsNoLock(t *testing.T) {
	src, err := newSource(netio.Kind, listening(map[string]any{"max_conns": 1, "idle_evict": time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	locked := make(chan bool, 1)
	netio.SetOnEvict(src, func() {
		select {
		case locked <- netio.HeldByCaller(src):
		default: // a later eviction (a refused try, closed, evicted in turn)
		}
	})
	r := startRig(t, src, stage.Settings{Name: "in", Kind: netio.Kind, Workers: 2, Concurrency: 2, Capacity: 64},
		stage.Settings{Workers: 1}, nil)
	r.src = src.(*netio.Source)
	addr := r.src.Addr().String()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	poll.Until(t, "the idle connection open", func() bool { return r.src.Conns() == 1 })
	c, _ := admitNew(t, addr)
	defer c.Close()
	if <-locked {
		t.Fatal("the evicted connection was closed with the source's lock held")
	}
	if msg := firstLine(idle); !strings.HasPrefix(msg, "nack 0 idle for ") {
		t.Fatalf("the evicted socket read %q, want a `nack 0 idle for ...` line", msg)
	}
}

// tlsFirstLine dials addr over TLS trusting roots and returns the first
// line the server writes, or the handshake's error.
func tlsFirstLine(addr string, roots *x509.CertPool) (string, error) {
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		return "", err
	}
	defer tc.Close()
	return firstLine(tc), nil
}

// Over TLS too, a connection refused at max_conns is told so, after its
// handshake, and counted as refused, not as a protocol error.
func TestMaxConnsTLSNacks(t *testing.T) {
	f := newTLSFiles(t)
	r := newConnsRig(t, map[string]any{"max_conns": 1, "idle_evict": time.Duration(0),
		"tls": stage.NewConfig(map[string]any{"cert": f.server.CertFile, "key": f.server.KeyFile})}, 4)
	addr := r.src.Addr().String()
	c, err := dialTLS(t, addr, f.ca.Pool(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Send([]byte("hello"))
	c.Flush()
	if err := c.WaitTimeout(wait); err != nil || c.Acked() != 1 {
		t.Fatalf("acked %d, %v", c.Acked(), err)
	}
	for i := range 3 {
		if l, err := tlsFirstLine(addr, f.ca.Pool()); l != "nack 0 too many connections\n" {
			t.Fatalf("refused client %d got %q (%v), want `nack 0 too many connections`", i, l, err)
		}
	}
	st := r.in.Stage().Stats().Source
	if st.Connections.Refused != 3 || st.Connections.Accepted != 1 || len(st.ProtocolErrors) != 0 {
		t.Fatalf("source counters %+v", *st)
	}
}

// The handshakes of clients refused over TLS hold the slots of lingering
// refusals: with the only slot held by a client that never sends its
// hello, the next refused client is closed before its handshake, without
// a word; once the first goes, refused clients are told again.
func TestMaxConnsTLSHandshakesBounded(t *testing.T) {
	f := newTLSFiles(t)
	r := newConnsRig(t, map[string]any{"max_conns": 1, "idle_evict": time.Duration(0),
		"tls": stage.NewConfig(map[string]any{"cert": f.server.CertFile, "key": f.server.KeyFile})}, 1)
	addr := r.src.Addr().String()
	c, err := dialTLS(t, addr, f.ca.Pool(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Send([]byte("hello"))
	c.Flush()
	if err := c.WaitTimeout(wait); err != nil || c.Acked() != 1 {
		t.Fatalf("acked %d, %v", c.Acked(), err)
	}
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// The door refuses one connection at a time, taking its slot before it
	// accepts the next: once the silent one is counted, its slot is taken.
	poll.Until(t, "the silent client refused", func() bool {
		return r.in.Stage().Stats().Source.Connections.Refused == 1
	})
	if l, err := tlsFirstLine(addr, f.ca.Pool()); err == nil || l != "" {
		t.Fatalf("with the slot held, a refused client got %q (%v), want a close before the handshake", l, err)
	}
	silent.Close()
	poll.Until(t, "a refused client told once the slot is free", func() bool {
		l, _ := tlsFirstLine(addr, f.ca.Pool())
		return l == "nack 0 too many connections\n"
	})
}
