package netio_test

// This file tests netio.udp on loopback: datagrams as records, drops
// counted, registration, the drain, read errors and refusals.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stats"
)

func newUDPRig(t *testing.T, values map[string]any, srcSet, sinkSet stage.Settings, h stage.HandlerFunc) (*rig, *netio.UDPSource) {
	t.Helper()
	src, err := newSource(netio.UDPKind, listening(values))
	if err != nil {
		t.Fatal(err)
	}
	srcSet.Name, srcSet.Kind = "in", netio.UDPKind
	if srcSet.Workers == 0 {
		srcSet.Workers, srcSet.Concurrency, srcSet.Capacity = 2, 2, 64
	}
	return startRig(t, src, srcSet, sinkSet, h), src.(*netio.UDPSource)
}

func dialUDP(t *testing.T, addr net.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, addr.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Each datagram is one record, its trailing line end dropped; an empty
// one is none; one over max_frame is dropped and counted; a refused one
// is logged and counted, as under ack: none.
func TestUDPDatagramsAreRecords(t *testing.T) {
	r, src := newUDPRig(t, map[string]any{"max_frame": int64(16)}, stage.Settings{}, stage.Settings{Workers: 1}, nil)
	c := dialUDP(t, src.Addr())
	sent := -(34 - 17) // the one over max_frame is read as far as max_frame+1
	for _, d := range []string{"<13>one\n", "two\r\n", "", "\n", "this one is far over sixteen bytes", "a bad one", "exactly 16 bytes"} {
		n, err := c.Write([]byte(d))
		if err != nil {
			t.Fatal(err)
		}
		sent += n
	}
	poll.Until(t, "4 records", func() bool { return len(r.payloads()) == 4 })
	got := r.payloads()
	want := "<13>one|two|a bad one|exactly 16 bytes"
	if g := strings.Join(sortedCopy(got), "|"); g != strings.Join(sortedCopy(strings.Split(want, "|")), "|") {
		t.Fatalf("sink saw %q, want %q", got, want)
	}
	poll.Until(t, "the refusal to be counted", func() bool { return r.in.Stage().Stats().Source.Nacks.Other == 1 })
	st := r.in.Stage().Stats().Source
	if st.Drops != (stats.Drops{Oversized: 1}) || st.BytesIn != uint64(sent) || st.Connections != (stats.Conns{}) {
		t.Fatalf("source counters %+v, want 1 oversized and %d bytes read", *st, sent)
	}
	e := r.waitLog("datagram refused")
	if f, _ := fieldOf(e, "reason"); f.String != badReason {
		t.Errorf("refusal logged with reason %q", f.String)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// A flood into a stalled pipeline loses datagrams, and every one lost is
// counted: what the sink saw plus the drops is what was sent.
func TestUDPDropsAreCounted(t *testing.T) {
	gate := make(chan struct{})
	var r *rig
	r, src := newUDPRig(t, map[string]any{"socket_buffer": int64(4096)}, stage.Settings{Workers: 1, Concurrency: 1, Capacity: 8},
		stage.Settings{Workers: 1, Concurrency: 1, Capacity: 4, Batch: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate
			return r.finish(ctx, b, out)
		})
	r.gate = gate
	c := dialUDP(t, src.Addr())
	// Fill the stalled pipeline one datagram at a time (each is read before
	// the next is sent, so the socket never overflows) until one finds the
	// queue full. A flood alone need not do it: on one processor the sender
	// can run the whole flood before the reader runs, and the reader then
	// finds only the few datagrams the socket kept, which all fit.
	fills, filled := 0, 0
	for r.in.Stage().Stats().Source.Drops.QueueFull == 0 {
		if fills == 1000 {
			t.Fatalf("%d datagrams into a stalled pipeline and none found its queue full", fills)
		}
		n, _ := fmt.Fprintf(c, "fill %d", fills)
		fills++
		filled += n
		poll.Until(t, "the datagram to be read", func() bool {
			return r.in.Stage().Stats().Source.BytesIn == uint64(filled)
		})
	}
	const flood = 2000
	for i := range flood {
		if _, err := fmt.Fprintf(c, "flood %d", i); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	// The kernel reports its drops with the next datagram it delivers, so
	// the count adds up only once a datagram arrives after the last one
	// dropped. Send a marker whenever the pipeline is idle (every
	// datagram read is finished, and no byte was read since the last look)
	// and the count does not add up: a marker sent while the socket is
	// still full may be dropped too, and then a later one reports it. (A
	// marker sent at every look overflowed the socket again, and the drops
	// of the last markers were never reported: the count stayed short.)
	markers := 0
	var st *stats.Source
	var lastBytes uint64
	poll.Until(t, "every datagram seen or counted as dropped", func() bool {
		st = r.in.Stage().Stats().Source
		if uint64(len(r.payloads()))+st.Drops.QueueFull+st.Drops.SocketOverrun == uint64(fills+flood+markers) {
			return true
		}
		if r.in.Stage().InFlight() == 0 && st.BytesIn == lastBytes {
			fmt.Fprintf(c, "marker %d", markers)
			markers++
		}
		lastBytes = st.BytesIn
		return false
	})
	if st.Drops.QueueFull == 0 {
		t.Errorf("no datagram found the queue full: %+v", st.Drops)
	}
	t.Logf("sent %d: seen %d, queue_full %d, socket_overrun %d (%s)", fills+flood+markers, len(r.payloads()),
		st.Drops.QueueFull, st.Drops.SocketOverrun, runtime.GOOS)
}

func TestUDPRegister(t *testing.T) {
	reg := stage.NewRegistry()
	if err := netio.Register(reg); err != nil {
		t.Fatal(err)
	}
	k, ok := reg.Lookup(netio.UDPKind)
	if !ok || k.NewSource == nil {
		t.Fatal("netio.udp is not registered as a source")
	}
	if _, err := newSource(netio.UDPKind, map[string]any{"listen": "127.0.0.1:0", "max_frame": int64(1 << 20)}); err == nil ||
		!strings.Contains(err.Error(), "max_frame") {
		t.Errorf("max_frame of 1MiB accepted: %v", err)
	}
	if _, err := newSource(netio.UDPKind, map[string]any{}); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("no listen accepted: %v", err)
	}
}

// Drain waits for every datagram the source made an event of: with one
// held in the sink it fails when its context ends, saying what is left,
// and returns once the sink lets it go.
func TestUDPDrainWaitsForUnfinished(t *testing.T) {
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	var r *rig
	r, src := newUDPRig(t, map[string]any{}, stage.Settings{}, stage.Settings{Workers: 1, Batch: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-gate
			return r.finish(ctx, b, out)
		})
	r.gate = gate
	if _, err := dialUDP(t, src.Addr()).Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := src.Drain(ctx); err == nil || !strings.Contains(err.Error(), "1 events unfinished") {
		t.Fatalf("Drain with a datagram held: %v, want 1 unfinished", err)
	}
	close(gate)
	ctx2, cancel2 := context.WithTimeout(context.Background(), wait)
	defer cancel2()
	if err := src.Drain(ctx2); err != nil {
		t.Fatalf("Drain once the sink let go: %v", err)
	}
	if got := r.payloads(); len(got) != 1 || got[0] != "held" {
		t.Fatalf("sink saw %q", got)
	}
}

// A read that fails without the socket closing is retried after a wait
// that doubles up to a cap and starts over after a read that works; the
// datagrams after the failures still arrive. Retried at once, a recurring
// error kept a core busy.
func TestUDPReadErrorsBackOff(t *testing.T) {
	src, err := newSource(netio.UDPKind, listening(nil))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var pauses []time.Duration
	fails := 10
	netio.SetUDPRead(src.(*netio.UDPSource), func(read netio.UDPReadFunc, pc *net.UDPConn, b, oob []byte) (int, int, netip.AddrPort, error) {
		mu.Lock()
		if fails > 0 {
			fails--
			mu.Unlock()
			return 0, 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvmsg", syscall.ENOBUFS)}
		}
		mu.Unlock()
		return read(pc, b, oob)
	}, func(d time.Duration) {
		mu.Lock()
		pauses = append(pauses, d)
		mu.Unlock()
	})
	r := startRig(t, src, stage.Settings{Name: "in", Kind: netio.UDPKind, Workers: 1, Concurrency: 1, Capacity: 64}, stage.Settings{Workers: 1}, nil)
	c := dialUDP(t, src.(*netio.UDPSource).Addr())
	send := func(d string) {
		if _, err := c.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	send("a")
	poll.Until(t, "record a", func() bool { return len(r.payloads()) == 1 })
	mu.Lock()
	fails = 2 // the reader waits in a read now: these follow the next one
	mu.Unlock()
	send("b")
	send("c")
	poll.Until(t, "records b and c", func() bool { return len(r.payloads()) == 3 })
	ms := time.Millisecond
	want := []time.Duration{ms, 2 * ms, 4 * ms, 8 * ms, 16 * ms, 32 * ms, 64 * ms, 100 * ms, 100 * ms, 100 * ms, ms, 2 * ms}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(pauses, want) {
		t.Errorf("the reader waited %v, want %v", pauses, want)
	}
	r.waitLog("udp read failed; retrying")
}

// A refused datagram's warning names its sender, as netio.tcp's names
// the connection's remote address, over IPv4 and over IPv6.
func TestUDPRefusalNamesSender(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(listen, func(t *testing.T) {
			if listen[0] == '[' {
				if ln, err := net.ListenPacket("udp6", listen); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			r, src := newUDPRig(t, map[string]any{"listen": listen}, stage.Settings{}, stage.Settings{Workers: 1}, nil)
			c := dialUDP(t, src.Addr())
			if _, err := c.Write([]byte("a bad one")); err != nil { // the rig's sink refuses it
				t.Fatal(err)
			}
			e := r.waitLog("datagram refused")
			if f, _ := fieldOf(e, "remote"); f.String != c.LocalAddr().String() {
				t.Errorf("refusal logged with remote %q, want the sender %q", f.String, c.LocalAddr())
			}
			if f, _ := fieldOf(e, "reason"); f.String != badReason {
				t.Errorf("refusal logged with reason %q", f.String)
			}
		})
	}
}

// A datagram's event finished twice (a handler's bug) is logged by the
// runtime with its sender's address: netio.udp's Origin.Key is a place in
// a buffer, which alone says nothing to a reader.
func TestUDPDoubleDoneNamesSender(t *testing.T) {
	twice := func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
		for _, ev := range b {
			ev.Done(nil)
			ev.Done(nil)
		}
		return nil
	}
	r, src := newUDPRig(t, nil, stage.Settings{}, stage.Settings{Workers: 1}, twice)
	c := dialUDP(t, src.Addr())
	if _, err := c.Write([]byte("once")); err != nil {
		t.Fatal(err)
	}
	e := r.waitLog("event finished twice (Done called again); ignored")
	if f, _ := fieldOf(e, "sender"); f.String != c.LocalAddr().String() {
		t.Errorf("second Done logged with sender %q, want %q (%v)", f.String, c.LocalAddr(), e.ContextMap())
	}
}

// A datagram refused busy after the door (a full queue further on under
// overflow: reject) is lost as one the door turned away is: the sender
// is told nothing, so it is counted in drops.queue_full, not as a busy
// nack no one received. Other refusals stay nacks by class.
func TestUDPBusyRefusalIsAQueueFullDrop(t *testing.T) {
	r, src := newUDPRig(t, nil, stage.Settings{}, stage.Settings{Workers: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			for _, ev := range b {
				switch {
				case strings.Contains(string(ev.Payload), "busy"):
					ev.Done(stage.ErrBusy) // as the emitter finishes one that found a reject queue full
				case strings.Contains(string(ev.Payload), "bad"):
					ev.Done(errBad)
				default:
					ev.Done(nil)
				}
			}
			return nil
		})
	c := dialUDP(t, src.Addr())
	for _, d := range []string{"a busy one", "a bad one", "another busy one", "fine"} {
		if _, err := c.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	var st *stats.Source
	poll.Until(t, "the 3 refusals counted", func() bool {
		st = r.in.Stage().Stats().Source
		return st.Drops.QueueFull+st.Nacks.Busy+st.Nacks.Other == 3
	})
	if st.Drops != (stats.Drops{QueueFull: 2}) || st.Nacks != (stats.Nacks{Other: 1}) {
		t.Fatalf("drops %+v, nacks %+v; want 2 queue_full drops and 1 other nack", st.Drops, st.Nacks)
	}
}
