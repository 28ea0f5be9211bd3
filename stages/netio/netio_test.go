package netio_test

// This file tests netio.tcp end to end on loopback (acks and nacks,
// framings, connections and timeouts, the drain, stats, registration),
// and holds the test rig the package's other tests use.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait is how long any one step of a test may take before it fails; it
// bounds the tests, and is never a measurement.
const wait = 15 * time.Second

// rig is a netio source feeding a handler stage.
type rig struct {
	t      *testing.T
	src    *netio.Source // a netio.tcp source (newRig)
	source stage.Source  // the source, whatever its kind
	in     engine.Lifecycle
	sink   engine.Lifecycle
	logs   *observer.ObservedLogs

	mu   sync.Mutex
	got  []string // payloads the sink saw
	gate chan struct{}
}

var errBad = errors.New("bad record")

// badReason is errBad as the client reads it: named by the stage that
// refused it.
const badReason = `stage "sink": bad record`

// finish is the default sink: records containing "bad" are refused.
func (r *rig) finish(ctx context.Context, b []*stage.Event, _ stage.Emitter) error {
	r.mu.Lock()
	for _, ev := range b {
		r.got = append(r.got, string(ev.Payload))
	}
	r.mu.Unlock()
	for _, ev := range b {
		if bytes.Contains(ev.Payload, []byte("bad")) {
			ev.Done(errBad)
		} else {
			ev.Done(nil)
		}
	}
	return nil
}

func (r *rig) payloads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// newSource builds a source of the kind from values (keys as in a
// pipeline file) the one way the pipeline does: bound to the kind's spec,
// which fills in the defaults, then the kind's constructor. The test-only
// key reloadKey sets how often a TLS source looks at its files.
func newSource(kind string, values map[string]any) (stage.Source, error) {
	reg := stage.NewRegistry()
	if err := netio.Register(reg); err != nil {
		return nil, err
	}
	k, _ := reg.Lookup(kind)
	vals := map[string]any{}
	var reload time.Duration
	for key, v := range values {
		if key == reloadKey {
			reload = v.(time.Duration)
			continue
		}
		vals[key] = v
	}
	cfg, err := stage.Bind(k.Fields, stage.NewConfig(vals))
	if err != nil {
		return nil, err
	}
	src, err := k.NewSource(cfg, stage.Env{Stage: "in", Settings: stage.Settings{Name: "in", Kind: kind}.WithDefaults()})
	if err == nil && reload != 0 {
		netio.SetTLSReload(src, reload)
	}
	return src, err
}

// reloadKey is newSource's test-only key: how often TLS files are looked
// at for changes.
const reloadKey = "test: tls reload"

// withReload returns values with reloadKey set to d.
func withReload(values map[string]any, d time.Duration) map[string]any {
	values[reloadKey] = d
	return values
}

// listening returns values with listen set to a loopback port when it is
// unset.
func listening(values map[string]any) map[string]any {
	if values == nil {
		values = map[string]any{}
	}
	if _, ok := values["listen"]; !ok {
		values["listen"] = "127.0.0.1:0"
	}
	return values
}

func newRig(t *testing.T, values map[string]any, sinkSet stage.Settings, h stage.HandlerFunc) *rig {
	t.Helper()
	src, err := newSource(netio.Kind, listening(values))
	if err != nil {
		t.Fatal(err)
	}
	r := startRig(t, src, stage.Settings{Name: "in", Kind: netio.Kind, Workers: 2, Concurrency: 2, Capacity: 64}, sinkSet, h)
	r.src = src.(*netio.Source)
	return r
}

// startRig starts src in a source stage with settings srcSet, feeding a
// sink stage running h (nil: rig.finish).
func startRig(t *testing.T, src stage.Source, srcSet, sinkSet stage.Settings, h stage.HandlerFunc) *rig {
	t.Helper()
	return startRigMem(t, src, srcSet, sinkSet, h, nil)
}

// startRigMem is startRig with the source's events counted against the
// memory limit m (nil: none).
func startRigMem(t *testing.T, src stage.Source, srcSet, sinkSet stage.Settings, h stage.HandlerFunc, m *engine.Memory) *rig {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	r := &rig{t: t, source: src, logs: logs}
	if h == nil {
		h = r.finish
	}
	if sinkSet.Name == "" {
		sinkSet.Name = "sink"
	}
	_, r.in = engine.NewSourceStage(srcSet, src, log)
	_, r.sink = engine.NewHandlerStage(sinkSet, h, log)
	r.in.Connect(r.sink.Stage(), nil)
	r.in.UseMemory(m)
	ctx := context.Background()
	if err := r.sink.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The sink's workers wait for events before any record can come: a
	// worker not yet started on a busy machine would leave the queue a
	// place fuller than a test counts on (under admission or overflow
	// reject, one more record refused).
	poll.Until(t, "the sink's workers waiting for events", func() bool {
		p := r.sink.Stage().Stats().Pool
		return p.Workers > 0 && p.Waiting == p.Workers
	})
	if err := r.in.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	t.Cleanup(func() { // runs before stop: the figures as the test left them
		if t.Failed() {
			t.Logf("at the failure: source stage %+v; sink stage %+v", r.in.Stage().Stats(), r.sink.Stage().Stats())
		}
	})
	return r
}

// stop shuts the rig down the way the pipeline does: stop input, drain,
// close the queues, close.
func (r *rig) stop() {
	if r.gate != nil {
		select {
		case <-r.gate:
		default:
			close(r.gate)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r.source.StopInput(ctx); err != nil {
		r.t.Errorf("StopInput: %v", err)
	}
	if err := r.source.Drain(ctx); err != nil {
		r.t.Errorf("Drain: %v", err)
	}
	r.sink.CloseQueue()
	r.sink.Wait()
	if err := r.in.Close(); err != nil {
		r.t.Errorf("close: %v", err)
	}
	if err := r.sink.Close(); err != nil {
		r.t.Errorf("close: %v", err)
	}
}

func (r *rig) dial(f wire.Framing, onReply func(wire.Reply)) *wire.Client {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := wire.DialOptions(ctx, r.src.Addr().String(), wire.Options{Framing: f, OnReply: onReply})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// waitLog waits until a log entry whose message contains msg appears.
func (r *rig) waitLog(msg string) observer.LoggedEntry {
	r.t.Helper()
	var found observer.LoggedEntry
	poll.Until(r.t, fmt.Sprintf("a log entry %q", msg), func() bool {
		for _, e := range r.logs.All() {
			if strings.Contains(e.Message, msg) {
				found = e
				return true
			}
			for _, f := range e.Context {
				if f.Key == "reason" && strings.Contains(f.String, msg) {
					found = e
					return true
				}
			}
		}
		return false
	})
	return found
}

func fieldOf(e observer.LoggedEntry, key string) (zapcore.Field, bool) {
	for _, f := range e.Context {
		if f.Key == key {
			return f, true
		}
	}
	return zapcore.Field{}, false
}

// waitEOF waits until the server closed c's connection cleanly.
func waitEOF(t *testing.T, c *wire.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Fatal("the server did not close the connection")
	}
	if err := c.Err(); err != io.EOF {
		t.Fatalf("connection ended with %v, want EOF", err)
	}
}

func TestAcksInOrderOverConnections(t *testing.T) {
	r := newRig(t, map[string]any{}, stage.Settings{Workers: 4, Concurrency: 2, Batch: 16}, nil)
	const conns, records = 4, 500
	var wg sync.WaitGroup
	for i := range conns {
		var replies []wire.Reply // read by the reader goroutine, then by us after Done
		c := r.dial(wire.Lines, func(rp wire.Reply) { replies = append(replies, rp) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; n <= records; n++ {
				rec := fmt.Sprintf("conn %d record %d", i, n)
				if n%50 == 7 {
					rec += " bad"
				}
				if seq, err := c.Send([]byte(rec)); err != nil || seq != uint64(n) {
					t.Errorf("send %d: seq %d, %v", n, seq, err)
					return
				}
				if n%100 == 0 {
					c.Flush()
				}
			}
			if err := c.CloseWrite(); err != nil {
				t.Error(err)
				return
			}
			if err := c.WaitTimeout(wait); err != nil {
				t.Error(err)
			}
			<-c.Done()
			if err := c.Err(); err != io.EOF {
				t.Errorf("conn %d: ended with %v, want EOF after the last ack", i, err)
			}
			if c.Acked() != records {
				t.Errorf("conn %d: acked %d, want %d", i, c.Acked(), records)
			}
			var nacked []uint64
			for _, rp := range replies {
				if rp.Nack {
					if rp.Reason != badReason {
						t.Errorf("conn %d: nack %d reason %q", i, rp.N, rp.Reason)
					}
					nacked = append(nacked, rp.N)
				}
			}
			if len(nacked) != records/50 {
				t.Errorf("conn %d: nacks %v, want every 50th from 7", i, nacked)
			}
			for k, n := range nacked {
				if n != uint64(50*k+7) {
					t.Errorf("conn %d: nack #%d is record %d, want %d", i, k, n, 50*k+7)
				}
			}
		}()
	}
	wg.Wait()
	if got := len(r.payloads()); got != conns*records {
		t.Fatalf("sink saw %d records, want %d", got, conns*records)
	}
}

func TestTooLargeLineIsNackedAndSkipped(t *testing.T) {
	r := newRig(t, map[string]any{"max_frame": int64(16), "read_buffer": int64(16)}, stage.Settings{Workers: 1}, nil)
	c := r.dial(wire.Lines, nil)
	raw := "short\n" + strings.Repeat("x", 100) + "\n\nnext\r\n" + strings.Repeat("y", 16) + "\r\n" + strings.Repeat("z", 17) + "\nlast"
	c.SendRaw([]byte(raw), 6)
	c.CloseWrite()
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	waitEOF(t, c)
	nacks := c.Nacks()
	if len(nacks) != 2 || nacks[0] != (wire.Reply{Nack: true, N: 2, Reason: "too large"}) ||
		nacks[1] != (wire.Reply{Nack: true, N: 5, Reason: "too large"}) {
		t.Fatalf("nacks %v, want records 2 and 5 too large", nacks)
	}
	if c.Acked() != 6 {
		t.Fatalf("acked %d, want 6", c.Acked())
	}
	want := []string{"short", "next", strings.Repeat("y", 16), "last"}
	if got := r.payloads(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sink saw %q, want %q", got, want)
	}
}

func TestOctetCounted(t *testing.T) {
	r := newRig(t, map[string]any{"framing": string(netio.OctetCounted), "max_frame": int64(32), "read_buffer": int64(16)}, stage.Settings{Workers: 1}, nil)
	var order []string
	c := r.dial(wire.OctetCounted, func(rp wire.Reply) { order = append(order, rp.String()) })
	long := strings.Repeat("l", 30) // spans two 16-byte reads
	c.Send([]byte("hello"))
	c.SendRaw([]byte("40 "+strings.Repeat("x", 40)), 1) // too large, skipped
	c.Send([]byte(long))
	c.Send([]byte("bad"))
	c.Send([]byte("split \n frame with spaces"))
	c.Flush()
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	// A bad length: a protocol error that closes this connection only.
	c.SendRaw([]byte("abc hello"), 1)
	c.Flush()
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	waitEOF(t, c)
	const badFrame = "bad frame: byte 'a' where a frame length digit or space was expected"
	want := "ack 1|nack 2 too large|nack 4 " + badReason + "|ack 5|nack 6 " + badFrame + "|ack 6"
	if got := strings.Join(order, "|"); got != want {
		// acks may coalesce differently; what must hold is the set of
		// nacks and the final ack.
		if fmt.Sprint(c.Nacks()) != "[nack 2 too large nack 4 "+badReason+" nack 6 "+badFrame+"]" || c.Acked() != 6 {
			t.Fatalf("replies %s, want %s", got, want)
		}
	}
	if got := r.payloads(); fmt.Sprint(got) != fmt.Sprint([]string{"hello", long, "bad", "split \n frame with spaces"}) {
		t.Fatalf("sink saw %q", got)
	}
	e := r.waitLog("protocol error")
	if f, _ := fieldOf(e, "record"); f.Integer != 6 {
		t.Fatalf("protocol error logged for record %d, want 6", f.Integer)
	}
	if _, ok := fieldOf(e, "conn"); !ok {
		t.Fatal("protocol error logged without the connection id")
	}
	// Another connection is unaffected.
	c2 := r.dial(wire.OctetCounted, nil)
	c2.Send([]byte("again"))
	c2.Flush()
	if err := c2.WaitTimeout(wait); err != nil || c2.Acked() != 1 {
		t.Fatalf("second connection: acked %d, %v", c2.Acked(), err)
	}
	src := r.in.Stage().Stats().Source
	if src == nil {
		t.Fatal("no source counters in the stage's stats")
	}
	wantNacks := stats.Nacks{TooLarge: 1, Invalid: 1, Other: 1} // "bad record" is the sink's plain error
	if src.Nacks != wantNacks || src.ProtocolErrors["bad_frame"] != 1 || src.Connections.Accepted != 2 {
		t.Fatalf("source counters %+v", *src)
	}
}

// A connection whose input ends inside an octet-counted frame has that
// frame dropped, with a warning naming the record number it would have
// taken and the bytes; the records before it are acked.
func TestInputEndsInsideAFrame(t *testing.T) {
	r := newRig(t, map[string]any{"framing": string(netio.OctetCounted)}, stage.Settings{Workers: 1}, nil)
	c := r.dial(wire.OctetCounted, nil)
	c.Send([]byte("one"))
	c.Send([]byte("two"))
	c.SendRaw([]byte("10 cut"), 0)
	c.Flush()
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitTimeout(wait); err != nil || c.Acked() != 2 {
		t.Fatalf("acked %d, %v", c.Acked(), err)
	}
	e := r.waitLog("input ended inside a frame")
	if f, _ := fieldOf(e, "record"); f.Integer != 3 {
		t.Errorf("logged record %d, want 3", f.Integer)
	}
	if f, _ := fieldOf(e, "bytes"); f.Integer != 3 { // of the frame's 10: "cut"
		t.Errorf("logged %d bytes, want 3", f.Integer)
	}
}

// A connection that ends right after a frame's length ("10 " and no
// byte of the message) drops the frame with the same warning as one cut
// inside its message.
func TestInputEndsAfterAFrameHeader(t *testing.T) {
	r := newRig(t, map[string]any{"framing": string(netio.OctetCounted)}, stage.Settings{Workers: 1}, nil)
	c := r.dial(wire.OctetCounted, nil)
	c.Send([]byte("one"))
	c.SendRaw([]byte("10 "), 0)
	c.Flush()
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitTimeout(wait); err != nil || c.Acked() != 1 {
		t.Fatalf("acked %d, %v", c.Acked(), err)
	}
	e := r.waitLog("input ended inside a frame")
	if f, _ := fieldOf(e, "record"); f.Integer != 2 {
		t.Errorf("logged record %d, want 2", f.Integer)
	}
	if f, ok := fieldOf(e, "bytes"); !ok || f.Integer != 0 {
		t.Errorf("logged %d bytes (%v), want 0", f.Integer, ok)
	}
}

// framing: syslog reads what rsyslog sends with @@host:port (lines) and
// logger --octet-count sends (octet-counted) on one connection, and a line
// that starts with digits not followed by a space (a sender without <PRI>
// writing a date first) as a line: no protocol error, and the lines after
// it are read (a bad count closed the connection, and they were lost).
func TestSyslogFramingOverTCP(t *testing.T) {
	r := newRig(t, map[string]any{"framing": string(netio.Syslog), "ack": string(netio.AckNone), "read_buffer": int64(16)}, stage.Settings{Workers: 1}, nil)
	nc, err := net.Dial("tcp", r.src.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const in = "<13>Nov 28 22:37:48 vm viarsys: hello\n" + "54 <13>Nov 28 22:37:43 vm myapp[15004]: hello 3164 oc pid" +
		"<13>last line\r\n\n" + "12x <13>a line after all\n" + "2026-12-07T14:41:06Z host a: two\n" + "<13>after\n"
	if _, err := io.WriteString(nc, in); err != nil {
		t.Fatal(err)
	}
	want := []string{"<13>Nov 28 22:37:48 vm viarsys: hello", "<13>Nov 28 22:37:43 vm myapp[15004]: hello 3164 oc pid", "<13>last line",
		"12x <13>a line after all", "2026-12-07T14:41:06Z host a: two", "<13>after"}
	poll.Until(t, "every record read", func() bool { return len(r.payloads()) >= len(want) })
	if got := r.payloads(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sink saw %q, want %q", got, want)
	}
	nc.Close()
	poll.Until(t, "the connection closed", func() bool { return r.in.Stage().Stats().Source.Connections.Closed == 1 })
	src := r.in.Stage().Stats().Source
	if len(src.ProtocolErrors) != 0 || src.Nacks.Invalid != 0 || int(src.BytesIn) != len(in) {
		t.Fatalf("source counters %+v; want no protocol error, no nack, %d bytes in", *src, len(in))
	}
}

func TestMaxConns(t *testing.T) {
	r := newRig(t, map[string]any{"max_conns": 2}, stage.Settings{Workers: 1}, nil)
	var cs []*wire.Client
	for range 2 {
		c := r.dial(wire.Lines, nil)
		c.Send([]byte("hello"))
		c.Flush()
		if err := c.WaitTimeout(wait); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	over := r.dial(wire.Lines, nil)
	waitEOF(t, over)
	if n := over.Nacks(); len(n) != 1 || n[0] != (wire.Reply{Nack: true, N: 0, Reason: "too many connections"}) {
		t.Fatalf("refused connection got %v", n)
	}
	r.waitLog("too many connections")
	for _, c := range cs {
		c.Send([]byte("still here"))
		c.Flush()
		if err := c.WaitTimeout(wait); err != nil || c.Acked() != 2 {
			t.Fatalf("acked %d, %v", c.Acked(), err)
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	r := newRig(t, map[string]any{"idle_timeout": 50 * time.Millisecond}, stage.Settings{Workers: 1}, nil)
	silent := r.dial(wire.Lines, nil)
	waitEOF(t, silent)
	e := r.waitLog("idle")
	if _, ok := fieldOf(e, "remote"); !ok {
		t.Fatal("idle close logged without the remote address")
	}
}

func TestIdleTimeoutSparesConnectionsOwedAcks(t *testing.T) {
	gate := make(chan struct{})
	var r *rig
	r = newRig(t, map[string]any{"idle_timeout": 20 * time.Millisecond}, stage.Settings{Workers: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate
			return r.finish(ctx, b, out)
		})
	r.gate = gate
	c := r.dial(wire.Lines, nil)
	c.Send([]byte("slow"))
	c.Flush()
	// The record waits in the sink far longer than idle_timeout; once it is
	// in flight the connection must not be closed as idle.
	poll.Until(t, "no longer: r.in.Stage().InFlight() == 0", func() bool { return !(r.in.Stage().InFlight() == 0) })
	time.Sleep(100 * time.Millisecond) // several idle periods pass
	close(gate)
	if err := c.WaitTimeout(wait); err != nil || c.Acked() != 1 {
		t.Fatalf("acked %d, %v", c.Acked(), err)
	}
}

// A client that stops reading is cut off once a write of its acks takes
// nothing for write_timeout (its receive buffer and the server's send
// buffer are full), with a log line naming it; meanwhile a reading client
// is served, and the deaf one's pending output stays bounded.
func TestClientNotReadingIsCutOff(t *testing.T) {
	const maxPending = 256
	// Two reasons in turn, so that consecutive nacks do not make one range.
	longErr := [2]error{
		errors.New("refused because " + strings.Repeat("this reason is long ", 8)),
		errors.New("refused as " + strings.Repeat("this reason is long too ", 7)),
	}
	r := newRig(t, map[string]any{"max_pending_output": int64(maxPending), "socket_buffer": int64(4096), "write_timeout": 300 * time.Millisecond},
		stage.Settings{Workers: 2, Concurrency: 2},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			for _, ev := range b {
				if bytes.HasPrefix(ev.Payload, []byte("deaf")) {
					ev.Done(longErr[ev.Payload[len(ev.Payload)-1]&1])
				} else {
					ev.Done(nil)
				}
			}
			return nil
		})
	deaf, err := net.Dial("tcp", r.src.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.Close()
	deaf.(*net.TCPConn).SetReadBuffer(4096)
	deaf.SetDeadline(time.Now().Add(wait))
	const records = 20000 // ~3.5MB of nacks: far more than the socket buffers hold
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var b bytes.Buffer
		for i := range records {
			fmt.Fprintf(&b, "deaf %d\n", i)
		}
		deaf.Write(b.Bytes()) // fails once the server cuts it off; that is the point
	}()

	good := r.dial(wire.Lines, nil)
	for i := range 1000 {
		good.Send(fmt.Appendf(nil, "good %d", i))
	}
	good.Flush()
	if err := good.WaitTimeout(wait); err != nil || good.Acked() != 1000 {
		t.Fatalf("the reading client: acked %d, %v", good.Acked(), err)
	}

	e := r.waitLog("not reading")
	if _, ok := fieldOf(e, "remote"); !ok {
		t.Fatal("cut-off logged without the remote address")
	}
	if f, _ := fieldOf(e, "conn"); f.Integer != 1 {
		t.Fatalf("cut-off logged for conn %d, want 1", f.Integer)
	}
	if f, ok := fieldOf(e, "pending_output"); !ok || f.Integer <= 0 || f.Integer > maxPending {
		t.Fatalf("cut-off logged with pending_output %d (%v), want 1 to %d", f.Integer, ok, maxPending)
	}
	if why, _ := fieldOf(e, "reason"); !strings.Contains(why.String, "write_timeout 300ms") {
		t.Fatalf("cut-off reason %q does not name write_timeout", why.String)
	}
	// The deaf client now reads: it finds its connection ended before all
	// its nacks arrived.
	n, err := io.Copy(io.Discard, deaf)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("deaf client read %d bytes, then %v", n, err)
	}
	if n > 100*records {
		t.Fatalf("deaf client read %d bytes: was it cut off?", n)
	}
	wg.Wait()
	if p := netio.PendingPeak(r.src); p > maxPending+netio.MaxLine {
		t.Fatalf("%d bytes of output pending at once; max_pending_output is %d", p, maxPending)
	}
	if n := len(r.logs.FilterMessage("closing connection").All()); n != 1 {
		t.Fatalf("%d connections closed early, want only the deaf one", n)
	}
}

// A client on ack: commit whose records are refused each for a reason of
// its own (a byte offset in the text, as process.json's are) while its
// first record is held downstream, so that none can be acked, makes its
// window hold no more than MaxHeldReasons bytes of reasons however many
// such records wait; the nacks past it give the error class. (A client
// that never reads its replies makes its window hold them the same way.)
func TestUnackedReasonsBounded(t *testing.T) {
	const records = 5000
	gate := make(chan struct{})
	r := newRig(t, nil, stage.Settings{Workers: 2, Concurrency: 2},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			var first *stage.Event
			for _, ev := range b {
				if string(ev.Payload) == "rec 0" {
					first = ev
					continue
				}
				ev.Done(stage.WithClass(fmt.Errorf("bad record at offset %d: %s", ev.Seq, strings.Repeat("x", 60)), stage.ErrInvalid))
			}
			if first != nil { // held: the other worker takes the rest
				<-gate
				first.Done(nil)
			}
			return nil
		})
	r.gate = gate
	c, err := net.Dial("tcp", r.src.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	var b bytes.Buffer
	for i := range records {
		fmt.Fprintf(&b, "rec %d\n", i)
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "every record read and all but the first finished", func() bool {
		_, read, outstanding := netio.ReasonBytes(r.source)
		return read == records && outstanding == 1
	})
	if held, _, _ := netio.ReasonBytes(r.source); held > netio.MaxHeldReasons {
		t.Fatalf("the window holds %d bytes of reasons, over %d", held, netio.MaxHeldReasons)
	}
	// Every record but the first is nacked: those finished first with
	// their own reasons, the others with their class.
	close(gate)
	c.(*net.TCPConn).CloseWrite()
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	var own, class int
	var acked uint64
	for _, line := range strings.Split(strings.TrimSuffix(string(all), "\n"), "\n") {
		rep, err := wire.ParseReply([]byte(line))
		if err != nil || rep.N <= acked {
			t.Fatalf("reply %q after ack %d: %v", line, acked, err)
		}
		switch {
		case !rep.Nack:
			acked = rep.N
		case rep.Reason == stage.ClassInvalid:
			class += int(rep.Last() - rep.N + 1)
		case rep.N == rep.Last() && strings.HasPrefix(rep.Reason, fmt.Sprintf(`stage "sink": bad record at offset %d: `, rep.N)):
			own++
		default:
			t.Fatalf("reply %q", line)
		}
	}
	if acked != records || own+class != records-1 || own == 0 || class == 0 {
		t.Fatalf("acked %d; %d nacks with their own reason, %d with the class", acked, own, class)
	}
}

// A client that reads its replies all along but sends one read's worth of
// tiny records, every other one refused, gets every nack, in order, and
// the acks: far more nack text than max_pending_output is produced by one
// read (the nacks are not consecutive, so each is a line of its own), and
// the source holds back the text instead of cutting the client off.
// Meanwhile the text pending never passes max_pending_output (plus a line).
func TestBurstOfNacksToReadingClient(t *testing.T) {
	const (
		maxPending = 4 << 10
		records    = 4 << 10 // "bad" and "ok" padded to 28 bytes, in turn: 112KiB, two reads
	)
	r := newRig(t, map[string]any{"max_pending_output": int64(maxPending)}, stage.Settings{Workers: 2, Concurrency: 2, Batch: 512}, nil)
	var nacked []wire.Reply // by the client's reader, then by us after Done
	acks := 0
	c := r.dial(wire.Lines, func(rp wire.Reply) {
		if rp.Nack {
			nacked = append(nacked, rp)
		} else {
			acks++
		}
	})
	// Few, long records: the bytes (two reads) make the burst, and each
	// record costs the race detector's sink as much as a short one, so
	// 32K records of four bytes took up to 14 s under load.
	if err := c.SendRaw(bytes.Repeat([]byte(padded("bad")+padded("ok")), records/2), records); err != nil {
		t.Fatal(err)
	}
	c.Send([]byte("good"))
	c.CloseWrite()
	// The wire client ends the connection with an error on a reply out of
	// order: a nack for a record already acked or nacked, an ack that does
	// not move forward.
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	waitEOF(t, c)
	if c.Acked() != records+1 || len(nacked) != records/2 || c.Nacked() != records/2 {
		t.Fatalf("acked %d of %d, %d nack lines for %d records, want %d", c.Acked(), records+1, len(nacked), c.Nacked(), records/2)
	}
	for i, n := range nacked {
		if n != (wire.Reply{Nack: true, N: uint64(2*i + 1), Reason: badReason}) {
			t.Fatalf("nack #%d is %v, want record %d's", i+1, n, 2*i+1)
		}
	}
	if p := netio.PendingPeak(r.src); p > maxPending+netio.MaxLine {
		t.Fatalf("%d bytes of output pending at once; max_pending_output is %d", p, maxPending)
	}
	// One burst of nacks is far more than one output's worth: it went out
	// in many acks.
	if acks < records/2*len("nack 10000 bad record\n")/maxPending/2 {
		t.Fatalf("%d acks for %d nacks with max_pending_output %d: was the output bounded?", acks, records/2, maxPending)
	}
	if e := r.logs.FilterMessage("closing connection").All(); len(e) != 0 {
		t.Fatalf("a reading client was cut off: %v", e[0].Context)
	}
}

// A burst of consecutive records refused for one reason goes out as range
// nacks that together cover it exactly, in order, in far fewer lines than
// records, under the same max_pending_output.
func TestBurstOfNacksIsRanges(t *testing.T) {
	const (
		maxPending = 4 << 10
		records    = 4 << 10 // "bad" padded to 32 bytes each: 128KiB, two reads
	)
	r := newRig(t, map[string]any{"max_pending_output": int64(maxPending)}, stage.Settings{Workers: 2, Concurrency: 2, Batch: 512}, nil)
	var lines []wire.Reply
	c := r.dial(wire.Lines, func(rp wire.Reply) {
		if rp.Nack {
			lines = append(lines, rp)
		}
	})
	// Few, long records, as in TestBurstOfNacksToReadingClient.
	if err := c.SendRaw(bytes.Repeat([]byte("bad"+strings.Repeat(".", 28)+"\n"), records), records); err != nil {
		t.Fatal(err)
	}
	c.Send([]byte("good"))
	c.CloseWrite()
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	waitEOF(t, c)
	if c.Acked() != records+1 || c.Nacked() != records {
		t.Fatalf("acked %d of %d, %d nacked of %d", c.Acked(), records+1, c.Nacked(), records)
	}
	next := uint64(1)
	for _, n := range lines {
		if n.N != next || n.Reason != badReason {
			t.Fatalf("nack %v, want one from record %d, %s", n, next, badReason)
		}
		next = n.Last() + 1
	}
	if next != records+1 || len(lines) >= records/2 {
		t.Fatalf("%d nack lines covering records 1 to %d, want fewer than %d covering 1 to %d", len(lines), next-1, records/2, records)
	}
}

func TestWriteTimeoutField(t *testing.T) {
	if _, err := newSource(netio.Kind, map[string]any{"listen": "127.0.0.1:0", "write_timeout": -time.Second}); err == nil ||
		!strings.Contains(err.Error(), "write_timeout") {
		t.Fatalf("write_timeout -1s: %v", err)
	}
	for v, want := range map[time.Duration]time.Duration{0: netio.DefaultWriteTimeout, time.Second: time.Second} {
		src, err := buildSource(map[string]any{"listen": "127.0.0.1:0", "write_timeout": v}, stage.Env{Stage: "in"})
		if err != nil {
			t.Fatal(err)
		}
		if o := netio.OptionsOf(src); o.WriteTimeout != want {
			t.Fatalf("write_timeout %s: %s, want %s", v, o.WriteTimeout, want)
		}
	}
}

func TestOverflowRejectNacksBusy(t *testing.T) {
	gate := make(chan struct{})
	var r *rig
	r = newRig(t, map[string]any{}, stage.Settings{Workers: 1, Concurrency: 1, Capacity: 1, Overflow: port.Reject},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate
			return r.finish(ctx, b, out)
		})
	r.gate = gate
	c := r.dial(wire.Lines, nil)
	const records = 50
	for i := range records {
		c.Send(fmt.Appendf(nil, "rec %d", i))
	}
	c.Flush()
	poll.Until(t, "no longer: r.in.Stage().Stats().In < records", func() bool { return !(r.in.Stage().Stats().In < records) })
	close(gate)
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	if c.Acked() != records {
		t.Fatalf("acked %d, want %d", c.Acked(), records)
	}
	nacks, busy := c.Nacks(), int(c.Nacked())
	if busy == 0 || busy > records-1 {
		t.Fatalf("%d busy nacks; the sink holds one event and queues one", busy)
	}
	for _, n := range nacks {
		if n.Reason != "busy" {
			t.Fatalf("nack %v, want reason busy", n)
		}
	}
	if got := len(r.payloads()) + busy; got != records {
		t.Fatalf("sink saw %d and %d were busy: %d, want %d", len(r.payloads()), busy, got, records)
	}
}

func TestDrainAcksEverythingReadThenHalfCloses(t *testing.T) {
	r := newRig(t, map[string]any{"drain_linger": wait}, stage.Settings{Workers: 2, Concurrency: 2}, nil)
	c := r.dial(wire.Lines, nil)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // send until the server stops us
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			c.Send(fmt.Appendf(nil, "rec %d", i))
			if i%10 == 0 {
				if c.Flush() != nil {
					return
				}
			}
		}
	}()
	poll.Until(t, "no longer: c.Acked() < 200", func() bool { return !(c.Acked() < 200) })
	// The client closes once it has read the server's EOF: that ends the
	// server's linger.
	go func() {
		<-c.Done()
		stop.Store(true)
		wg.Wait()
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r.src.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.src.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	wg.Wait()
	if err := c.Err(); err != io.EOF {
		t.Fatalf("client saw %v, want EOF after its last ack", err)
	}
	read := r.in.Stage().Stats().In
	if read < 200 || c.Acked() != read {
		t.Fatalf("server read %d records, client acked %d: want every record read acked", read, c.Acked())
	}
	if n := c.Nacks(); len(n) != 0 {
		t.Fatalf("nacks %v", n)
	}
	if r.src.Conns() != 0 {
		t.Fatalf("%d connections open after drain", r.src.Conns())
	}
}

func TestAckNoneWritesNothing(t *testing.T) {
	r := newRig(t, map[string]any{"ack": string(netio.AckNone)}, stage.Settings{Workers: 1}, nil)
	replies := 0
	c := r.dial(wire.Lines, func(wire.Reply) { replies++ })
	for i := range 100 {
		c.Send(fmt.Appendf(nil, "rec %d", i))
	}
	c.Send([]byte("a bad one"))
	c.CloseWrite()
	waitEOF(t, c)
	if replies != 0 {
		t.Fatalf("%d replies under ack: none", replies)
	}
	if got := len(r.payloads()); got != 101 {
		t.Fatalf("sink saw %d records, want 101", got)
	}
	if r.in.Stage().InFlight() != 0 {
		t.Fatalf("%d events unfinished", r.in.Stage().InFlight())
	}
}

func TestGaugesAndStats(t *testing.T) {
	r := newRig(t, map[string]any{}, stage.Settings{Workers: 1}, nil)
	c := r.dial(wire.Lines, nil)
	c.Send([]byte("x"))
	c.Flush()
	if err := c.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	// The source publishes its Out when its emitter's flush returns, which
	// may be after the sink finished the record and the ack went out; and
	// an event counts as completed (InFlight) once its origin has been
	// told, that is after the ack may have gone out.
	st := r.in.Stage().Stats()
	poll.Until(t, "the source's out to count the record, and nothing in flight", func() bool {
		st = r.in.Stage().Stats()
		return st.Out != 0 && st.InFlight == 0
	})
	if st.Queue.Capacity != 64 || st.Pool.Workers != 2 || st.Pool.Concurrency != 2 || st.Queue.Overflow != "block" {
		t.Fatalf("stats %+v", st)
	}
	if st.In != 1 || st.Out != 1 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRegister(t *testing.T) {
	reg := stage.NewRegistry()
	if err := netio.Register(reg); err != nil {
		t.Fatal(err)
	}
	k, ok := reg.Lookup(netio.Kind)
	if !ok || k.NewSource == nil {
		t.Fatal("netio.tcp not registered as a source")
	}
	names := map[string]bool{}
	for _, f := range k.Fields {
		if f.Doc == "" {
			t.Errorf("field %s has no doc", f.Name)
		}
		names[f.Name] = true
	}
	for _, n := range []string{"listen", "framing", "max_frame", "max_conns", "idle_timeout", "ack", "max_pending_output", "write_timeout", "read_buffer", "drain_linger", "max_unacked"} {
		if !names[n] {
			t.Errorf("no field %s", n)
		}
	}
	_, err := buildSource(map[string]any{"listen": "127.0.0.1:0", "framing": "json"}, stage.Env{Stage: "in"})
	var fe *stage.FieldError
	if !errors.As(err, &fe) || fe.Field != "framing" || strings.Contains(err.Error(), `stage "in"`) { // the pipeline adds the stage name
		t.Fatalf("bad framing: %v", err)
	}
	_, err = buildSource(nil, stage.Env{Stage: "in"})
	if !errors.As(err, &fe) || fe.Field != "listen" {
		t.Fatalf("no listen: %v", err)
	}
	src, err := buildSource(map[string]any{"listen": "127.0.0.1:0", "idle_timeout": time.Duration(0)}, stage.Env{Stage: "in"})
	if err != nil {
		t.Fatal(err)
	}
	if o := netio.OptionsOf(src); o.IdleTimeout != 0 || o.MaxFrame != netio.DefaultMaxFrame || o.Ack != netio.AckCommit ||
		o.MaxUnacked != netio.DefaultMaxUnacked {
		t.Fatalf("options %+v", o)
	}
}

func TestListenError(t *testing.T) {
	src, _ := newSource(netio.Kind, map[string]any{"listen": "256.0.0.1:1"})
	_, in := engine.NewSourceStage(stage.Settings{Name: "in"}, src, nil)
	err := in.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), `stage "in"`) {
		t.Fatalf("start: %v", err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCloseWithEventsInFlight(t *testing.T) {
	gate := make(chan struct{})
	var r *rig
	r = newRig(t, map[string]any{}, stage.Settings{Workers: 1, Capacity: 4},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate
			return r.finish(ctx, b, out)
		})
	r.gate = gate
	c := r.dial(wire.Lines, nil)
	for i := range 10000 { // more than the sink holds: netio workers block emitting
		c.Send(fmt.Appendf(nil, "rec %d", i))
	}
	c.Flush()
	poll.Until(t, "no longer: r.in.Stage().Stats().In < 5", func() bool { return !(r.in.Stage().Stats().In < 5) })
	// Close at once: every goroutine of the source returns although the
	// sink still holds events (goleak checks), and the events finishing
	// afterwards are ignored.
	if err := r.in.Close(); err != nil {
		t.Fatal(err)
	}
	close(gate)
	<-c.Done()
	if c.Acked() == 10000 {
		t.Fatal("everything acked although the source was closed with events in flight")
	}
}

// buildSource binds values to the kind's spec, as the pipeline does, and
// calls the kind's constructor.
func buildSource(values map[string]any, env stage.Env) (stage.Source, error) {
	cfg, err := stage.Bind(netio.Fields(), stage.NewConfig(values))
	if err != nil {
		return nil, err
	}
	return netio.NewSource(cfg, env)
}

// Records framed in place hold views of their read buffer: a buffer goes
// back for reuse only once every event made of it is finished. Here one
// sink worker holds the first batch while the other gets through
// thousands of records read later (reusing buffers): the held payloads
// are intact when it looks at them.
func TestFramedInPlaceBuffersOutliveLaterReads(t *testing.T) {
	const n = 3000
	release := make(chan struct{})
	var first atomic.Bool
	var seen atomic.Int64
	var mu sync.Mutex
	got := map[string]int{}
	h := func(ctx context.Context, b []*stage.Event, _ stage.Emitter) error {
		if first.CompareAndSwap(false, true) {
			select {
			case <-release:
			case <-time.After(wait):
				t.Error("never released")
			}
		}
		mu.Lock()
		for _, ev := range b {
			got[string(ev.Payload)]++
		}
		mu.Unlock()
		seen.Add(int64(len(b)))
		for _, ev := range b {
			ev.Done(nil)
		}
		return nil
	}
	r := newRig(t, map[string]any{"framing": string(netio.Lines), "ack": string(netio.AckNone), "read_buffer": int64(512)},
		stage.Settings{Workers: 2, Concurrency: 2, Batch: 8}, h)
	nc, err := net.Dial("tcp", r.src.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var all bytes.Buffer
	for i := range n {
		fmt.Fprintf(&all, "record %05d %s\n", i, strings.Repeat("x", i%40))
	}
	go nc.Write(all.Bytes())
	poll.Until(t, "no longer: seen.Load() < n/2", func() bool { return !(seen.Load() < n/2) })
	close(release)
	poll.Until(t, "no longer: seen.Load() < n", func() bool { return !(seen.Load() < n) })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("%d distinct payloads, want %d", len(got), n)
	}
	for i := range n {
		if p := fmt.Sprintf("record %05d %s", i, strings.Repeat("x", i%40)); got[p] != 1 {
			t.Fatalf("record %d seen %d times intact", i, got[p])
		}
	}
}

// A syslog sender reads nothing back, so framing: syslog defaults to ack:
// none; an ack given explicitly still wins.
func TestSyslogFramingDefaultsToAckNone(t *testing.T) {
	for _, c := range []struct {
		values map[string]any
		want   netio.AckMode
	}{
		{map[string]any{"listen": "127.0.0.1:0", "framing": "syslog"}, netio.AckNone},
		{map[string]any{"listen": "127.0.0.1:0", "framing": "syslog", "ack": "commit"}, netio.AckCommit},
		{map[string]any{"listen": "127.0.0.1:0", "framing": "octet-counted"}, netio.AckCommit},
		{map[string]any{"listen": "127.0.0.1:0"}, netio.AckCommit},
	} {
		src, err := buildSource(c.values, stage.Env{Stage: "in"})
		if err != nil {
			t.Fatal(err)
		}
		if got := netio.OptionsOf(src).Ack; got != c.want {
			t.Errorf("%v: ack %q, want %q", c.values, got, c.want)
		}
	}
}

// yamlPipeline builds the pipeline of the YAML src (read as p.yaml, with
// no environment) from netio's kinds and test.sink, a sink that finishes
// every event: a netio stage as a user's file reaches it.
func yamlPipeline(t *testing.T, src string) (*pipeline.Pipeline, error) {
	t.Helper()
	reg := stage.NewRegistry()
	if err := netio.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(stage.Kind{Name: "test.sink", Doc: "finishes events", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
				for _, ev := range b {
					ev.Done(nil)
				}
				return nil
			}), nil
		}}); err != nil {
		t.Fatal(err)
	}
	pc, err := pipeline.Parse("p.yaml", []byte(src), reg, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.New(pc, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
}

// padded is s, dots up to 27 bytes, and a line end: 28 bytes.
func padded(s string) string {
	return s + strings.Repeat(".", 27-len(s)) + "\n"
}
