package netio_test

// This file tests the sources' doors past the pipeline's memory limit:
// netio.tcp nacks busy (or, under overflow block, stops reading),
// netio.http answers 503 with Retry-After, netio.udp drops and counts.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// memLimit is the limit of these tests: records of recSize bytes, three
// of them past it.
const (
	memLimit = 1000
	recSize  = 400
)

// record returns a record of recSize bytes naming i.
func record(i int) []byte {
	b := bytes.Repeat([]byte("x"), recSize)
	copy(b, fmt.Sprintf("r%d ", i))
	return b
}

// gatedSink returns a handler that waits for gate, then finishes as the
// rig does.
func gatedSink(r **rig, gate chan struct{}) stage.HandlerFunc {
	return func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
		<-gate
		return (*r).finish(ctx, b, out)
	}
}

// newMemTCPRig is a netio.tcp rig whose events count against m, feeding
// a sink held at gate.
func newMemTCPRig(t *testing.T, m *engine.Memory, values map[string]any) (*rig, chan struct{}) {
	t.Helper()
	src, err := newSource(netio.Kind, listening(values))
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var r *rig
	r = startRigMem(t, src, stage.Settings{Name: "in", Kind: netio.Kind, Workers: 2, Concurrency: 2, Capacity: 64},
		stage.Settings{Workers: 1, Concurrency: 1, Capacity: 64, Batch: 1}, gatedSink(&r, gate), m)
	r.src, r.gate = src.(*netio.Source), gate
	return r, gate
}

// Past the memory limit netio.tcp nacks what it reads busy at once,
// without making events of it; the records held are acked once
// finished, and every record is answered.
func TestMemoryLimitTCPNacksBusy(t *testing.T) {
	m := engine.NewMemory(memLimit, false, "test")
	r, gate := newMemTCPRig(t, m, nil)
	c := r.dial(wire.Lines, nil)
	for i := range 3 {
		c.Send(record(i))
	}
	c.Flush()
	poll.Until(t, "three records held", func() bool { return m.Held() >= 3*recSize })
	const more = 5
	for i := range more {
		c.Send(record(3 + i))
	}
	c.Flush()
	src := r.in.Stage()
	poll.Until(t, "the refusals counted", func() bool {
		return m.Stats().Refused == more && src.Stats().Source.Nacks.Busy == more
	})
	if st := src.Stats(); st.In != 3 || st.Source.Nacks.Busy != more || st.HeldBytes < 3*recSize {
		t.Fatalf("source stats: in %d, busy %d, held %d; want 3 made, %d busy, %d held", st.In, st.Source.Nacks.Busy, st.HeldBytes, more, 3*recSize)
	}
	close(gate)
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	if c.Acked() != 3+more {
		t.Fatalf("answered up to %d, want %d", c.Acked(), 3+more)
	}
	// The refused records of a read are answered by one range nack: the
	// nacks cover records 4..8 in order, every one busy.
	next := uint64(4)
	for _, n := range c.Nacks() {
		if n.Reason != "busy" || n.N != next {
			t.Fatalf("nack %+v, want busy from record %d", n, next)
		}
		next = n.Last() + 1
	}
	if next != 4+more || c.Nacked() != more {
		t.Fatalf("nacks %+v cover up to %d (%d records), want busy for records 4..8", c.Nacks(), next-1, c.Nacked())
	}
	if got := len(r.payloads()); got != 3 {
		t.Fatalf("the sink saw %d records, want 3", got)
	}
	poll.Until(t, "nothing held", func() bool { return m.Held() == 0 })
}

// Under memory_limit's overflow block netio.tcp stops reading past the
// limit instead: nothing is refused, and what waited is read and acked
// once the records held are finished.
func TestMemoryLimitTCPBlockStopsReading(t *testing.T) {
	m := engine.NewMemory(memLimit, true, "test")
	r, gate := newMemTCPRig(t, m, nil)
	c := r.dial(wire.Lines, nil)
	for i := range 3 {
		c.Send(record(i))
	}
	c.Flush()
	poll.Until(t, "three records held", func() bool { return m.Held() >= 3*recSize })
	const more = 5
	for i := range more {
		c.Send(record(3 + i))
	}
	c.Flush()
	poll.Until(t, "the door waiting", m.Waiting)
	if st := r.in.Stage().Stats(); st.In != 3 || st.Source.Nacks.Busy != 0 {
		t.Fatalf("while waiting: %d made, %d busy; want 3 and none", st.In, st.Source.Nacks.Busy)
	}
	close(gate)
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	if c.Acked() != 3+more || len(c.Nacks()) != 0 {
		t.Fatalf("acked up to %d with nacks %v, want %d acked", c.Acked(), c.Nacks(), 3+more)
	}
	if got := len(r.payloads()); got != 3+more {
		t.Fatalf("the sink saw %d records, want %d", got, 3+more)
	}
	if st := m.Stats(); st.Refused != 0 || st.Waits == 0 {
		t.Fatalf("memory stats %+v: want waits, no refusals", st)
	}
}

// Past the memory limit netio.http answers 503 with Retry-After, and
// makes no event of the request's records.
func TestMemoryLimitHTTP503(t *testing.T) {
	src, err := newSource(netio.HTTPKind, listening(nil))
	if err != nil {
		t.Fatal(err)
	}
	m := engine.NewMemory(memLimit, false, "test")
	gate := make(chan struct{})
	var r *rig
	r = startRigMem(t, src, stage.Settings{Name: "in", Kind: netio.HTTPKind, Workers: 1, Concurrency: 1, Capacity: 64},
		stage.Settings{Workers: 1, Concurrency: 1, Capacity: 64, Batch: 1}, gatedSink(&r, gate), m)
	r.gate = gate
	url := "http://" + src.(*netio.HTTPSource).Addr().String() + "/"
	c := &http.Client{}
	body := bytes.Join([][]byte{record(0), record(1), record(2), nil}, []byte("\n"))
	var wg sync.WaitGroup
	var first answer
	wg.Add(1)
	go func() {
		defer wg.Done()
		first = post(t, c, url, body, nil)
	}()
	poll.Until(t, "three records held", func() bool { return m.Held() >= 3*recSize })
	if a := post(t, c, url, body, nil); a.status != http.StatusServiceUnavailable || a.retryAfter != "1" {
		t.Fatalf("past the memory limit: %+v, want 503 with Retry-After 1", a)
	}
	close(gate)
	wg.Wait()
	poll.Until(t, "the busy nacks counted", func() bool { return r.in.Stage().Stats().Source.Nacks.Busy == 3 })
	if first.status != http.StatusOK || first.Acked != 3 {
		t.Fatalf("the request held: %+v, want 200 with 3 acked", first)
	}
	if st := r.in.Stage().Stats(); st.In != 3 || st.Source.Nacks.Busy != 3 || m.Stats().Refused != 3 {
		t.Fatalf("made %d, busy %d, refused %d; want 3 each", st.In, st.Source.Nacks.Busy, m.Stats().Refused)
	}
}

// Past the memory limit netio.udp drops what it reads, counted as
// Drops.MemoryLimit.
func TestMemoryLimitUDPDrops(t *testing.T) {
	src, err := newSource(netio.UDPKind, listening(nil))
	if err != nil {
		t.Fatal(err)
	}
	m := engine.NewMemory(memLimit, false, "test")
	gate := make(chan struct{})
	var r *rig
	r = startRigMem(t, src, stage.Settings{Name: "in", Kind: netio.UDPKind, Workers: 1, Concurrency: 1, Capacity: 64},
		stage.Settings{Workers: 1, Concurrency: 1, Capacity: 64, Batch: 1}, gatedSink(&r, gate), m)
	r.gate = gate
	c := dialUDP(t, src.(*netio.UDPSource).Addr())
	sent := 0
	send := func(i int) {
		n, err := c.Write(record(i))
		if err != nil {
			t.Fatal(err)
		}
		sent += n
		// Each is read before the next is sent: the socket never
		// overflows.
		poll.Until(t, "the datagram read", func() bool { return r.in.Stage().Stats().Source.BytesIn == uint64(sent) })
	}
	for i := range 3 {
		send(i)
	}
	poll.Until(t, "three records held", func() bool { return m.Held() >= 3*recSize })
	for i := range 2 {
		send(3 + i)
	}
	// The drop is counted just after the bytes read.
	poll.Until(t, "two drops past the memory limit", func() bool { return r.in.Stage().Stats().Source.Drops.MemoryLimit == 2 })
	if st := r.in.Stage().Stats(); st.In != 3 {
		t.Fatalf("made %d events, want 3", st.In)
	}
	close(gate)
	poll.Until(t, "the three held finished", func() bool { return len(r.payloads()) == 3 && m.Held() == 0 })
}

// While the queue after netio.udp rejects on overflow and is full, the
// door drops what the source reads, counted as Drops.QueueFull (not
// MemoryLimit: the pipeline is under its limit).
func TestUDPDoorDropsWhileRejectingQueueIsFull(t *testing.T) {
	src, err := newSource(netio.UDPKind, listening(nil))
	if err != nil {
		t.Fatal(err)
	}
	m := engine.NewMemory(1<<30, false, "test")
	gate := make(chan struct{})
	var r *rig
	r = startRigMem(t, src, stage.Settings{Name: "in", Kind: netio.UDPKind, Workers: 1, Concurrency: 1, Capacity: 64},
		stage.Settings{Workers: 1, Concurrency: 1, Capacity: 2, Overflow: port.Reject, Batch: 1}, gatedSink(&r, gate), m)
	r.gate = gate
	c := dialUDP(t, src.(*netio.UDPSource).Addr())
	send := func(i int) {
		if _, err := c.Write(record(i)); err != nil {
			t.Fatal(err)
		}
	}
	// One held by the sink's worker, two queued: the queue is full.
	send(0)
	poll.Until(t, "the sink's worker holding one", func() bool { return r.sink.Stage().Stats().In == 1 })
	send(1)
	send(2)
	poll.Until(t, "the sink's queue full", func() bool { return r.sink.Stage().Stats().Queue.Depth == 2 })
	send(3)
	send(4)
	poll.Until(t, "two drops at the door", func() bool { return r.in.Stage().Stats().Source.Drops.QueueFull == 2 })
	st := r.in.Stage().Stats()
	if st.Source.Drops.MemoryLimit != 0 || st.In != 3 {
		t.Fatalf("memory_limit drops %d, events made %d; want 0 and 3", st.Source.Drops.MemoryLimit, st.In)
	}
	if rej := r.sink.Stage().Stats().Rejected; rej != 2 {
		t.Fatalf("the sink's queue counts %d rejected, want the 2 refused at the door", rej)
	}
	close(gate)
	poll.Until(t, "the three held finished", func() bool { return len(r.payloads()) == 3 })
}

// A short read is copied out of the read buffer into a slab its events
// hold. The slab was sized for the whole read, so a one-byte record
// followed by 30,000 empty lines kept 30 KB alive, of which memory_limit
// counted one byte; now the slab is cut to the records it holds.
func TestShortReadPinsOnlyItsRecords(t *testing.T) {
	m := engine.NewMemory(memLimit, false, "test")
	src, err := newSource(netio.Kind, listening(nil))
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var r *rig
	r = startRigMem(t, src, stage.Settings{Name: "in", Kind: netio.Kind, Workers: 1, Concurrency: 1, Capacity: 64},
		stage.Settings{Workers: 1, Concurrency: 1, Capacity: 1024, Batch: 1}, gatedSink(&r, gate), m)
	r.src, r.gate = src.(*netio.Source), gate
	c := r.dial(wire.Lines, nil)
	chunk := append([]byte("x\n"), bytes.Repeat([]byte("\n"), 30000)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 200
	for i := range n {
		c.SendRaw(chunk, 1)
		c.Flush()
		// One read at a time: the next is sent once this one's record is made.
		poll.Until(t, "the record made", func() bool { return r.in.Stage().Stats().In == uint64(i+1) })
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// 200 events held at the gate, with their records: some 100 KB. The
	// slabs of whole reads were 6 MB.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 2<<20 {
		t.Errorf("the live heap grew %d KiB for %d held one-byte records (memory_limit held %d bytes)", grown>>10, n, m.Held())
	}
}

// A netio.http request holds its body and little else: nothing per
// record that is acked. It kept a 32-byte piece and a 16-byte result per
// record, so a body of one-byte lines held 24 times its size, and
// max_requests times max_body bounded nothing.
func TestHTTPRequestHoldsItsBodyOnly(t *testing.T) {
	const maxBody = 1 << 20
	gate := make(chan struct{})
	var r *rig
	src, err := newSource(netio.HTTPKind, listening(map[string]any{"max_body": int64(maxBody)}))
	if err != nil {
		t.Fatal(err)
	}
	r = startRig(t, src, stage.Settings{Name: "in", Kind: netio.HTTPKind, Workers: 1, Concurrency: 1, Capacity: 64},
		stage.Settings{Workers: 1, Concurrency: 1, Capacity: 16, Batch: 1}, gatedSink(&r, gate))
	r.gate = gate
	body := bytes.Repeat([]byte("1\n"), maxBody/2) // 512Ki one-byte records, max_body exactly
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	done := make(chan answer, 1)
	go func() {
		done <- post(t, http.DefaultClient, "http://"+src.(*netio.HTTPSource).Addr().String()+"/", body, nil)
	}()
	poll.Until(t, "the request's records waiting at the sink", func() bool { return r.sink.Stage().Stats().Queue.Depth >= 16 })
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc) - int64(len(body)) // less the client's copy
	if held > 2*maxBody {
		t.Errorf("one request of %d MiB holds %d MiB, over twice max_body", maxBody>>20, held>>20)
	}
	close(gate)
	if a := <-done; a.status != http.StatusOK || a.Acked != maxBody/2 {
		t.Fatalf("answered %d, %d acked (%s %s), want 200 and all %d", a.status, a.Acked, a.Error, a.nacks(), maxBody/2)
	}
}
