package natsq

// This file tests a queue on a real NATS server from publish to ack:
// dead letters, full streams, envelopes, in-progress, streams and
// consumers; and holds the split front-and-back rig the other tests use.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 30 * time.Second

// acks records the completions of the events a test source made.
type acks struct {
	mu   sync.Mutex
	errs map[uint64]error
	done chan struct{}
	want int
}

func newAcks(want int) *acks {
	return &acks{errs: map[uint64]error{}, done: make(chan struct{}), want: want}
}

func (a *acks) Complete(ev *stage.Event, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs[ev.Seq] = err
	if len(a.errs) == a.want {
		close(a.done)
	}
}

func (a *acks) wait(t *testing.T) map[uint64]error {
	t.Helper()
	select {
	case <-a.done:
	case <-time.After(wait):
		a.mu.Lock()
		defer a.mu.Unlock()
		t.Fatalf("%d of %d events finished after %s", len(a.errs), a.want, wait)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.errs
}

// sink records the events it stores and finishes them with what fail
// returns (nil: stored).
type sink struct {
	mu   sync.Mutex
	seen map[string]int // payload -> times handled
	fail func(ev *stage.Event) error
}

func (s *sink) Handle(ctx context.Context, batch []*stage.Event, _ stage.Emitter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range batch {
		var err error
		if s.fail != nil {
			err = s.fail(ev)
		}
		if err == nil {
			s.seen[string(ev.Payload)]++
		}
		ev.Done(err)
	}
	return nil
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// waitCount waits until s has stored n distinct payloads.
func waitCount(t *testing.T, s *sink, n int) {
	t.Helper()
	poll.Until(t, fmt.Sprintf("%d events stored", n), func() bool { return s.count() >= n })
	if got := s.count(); got != n {
		t.Fatalf("stored %d of %d", got, n)
	}
}

// split is one queue seen from a publishing and a consuming side, each
// with its own client, as two processes would have.
type split struct {
	src              *engine.Stage
	pub, cons, store engine.Lifecycle
	sink             *sink
	consQueue        *Queue
	stopped          sync.Once
}

func newSplit(t *testing.T, url string, qc QueueConfig, set stage.Settings, s *sink) *split {
	t.Helper()
	cfg := Config{URL: url}
	return newSplitClients(t, NewClient(cfg, "test", nil), NewClient(cfg, "test", nil), qc, set, s, nil)
}

// newSplitClients is newSplit with the clients of the publishing and the
// consuming side given (the same one: a single process), and, if mem is not
// nil, a memory limit both sides' events count against (one process's).
func newSplitClients(t *testing.T, front, back *Client, qc QueueConfig, set stage.Settings, s *sink, mem *engine.Memory) *split {
	t.Helper()
	set.Name, set.Kind = "store", "test.sink"
	sp := &split{sink: s}
	var srcLife engine.Lifecycle
	sp.src, srcLife = engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	_, sp.pub = engine.NewHandlerStage(set, front.Queue("store", qc, set.Overflow, set.Capacity).Publisher(), nil)
	srcLife.Connect(sp.pub.Stage(), nil)
	srcLife.UseMemory(mem)
	_, sp.store = engine.NewHandlerStage(set, s, nil)
	sp.consQueue = back.Queue("store", qc, set.Overflow, set.Capacity)
	_, sp.cons = engine.NewSourceStage(stage.Settings{Name: "store"}, sp.consQueue.Consumer(), nil)
	sp.cons.Connect(sp.store.Stage(), nil)
	sp.cons.UseMemory(mem)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, st := range []engine.Lifecycle{sp.store, sp.pub, sp.cons} {
		if err := st.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { sp.stop(t) })
	return sp
}

// stop drains as the pipeline does: the consumer stops pulling, the
// queues close in order, the consumer settles what it took.
func (sp *split) stop(t *testing.T) { sp.stopped.Do(func() { sp.stopOnce(t) }) }

func (sp *split) stopOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := sp.cons.StopInput(ctx); err != nil {
		t.Errorf("stop input: %v", err)
	}
	for _, st := range []engine.Lifecycle{sp.pub, sp.store} {
		st.CloseQueue()
		st.Wait()
	}
	if err := sp.cons.Drain(ctx); err != nil {
		t.Errorf("drain: %v", err)
	}
	for _, st := range []engine.Lifecycle{sp.cons, sp.pub, sp.store} {
		st.Abort()
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

// send makes n events with fields and hands them to the publisher.
func (sp *split) send(t *testing.T, from, n int, a *acks) {
	t.Helper()
	out := sp.src.NewEmitter()
	ctx := context.Background()
	for i := from; i < from+n; i++ {
		ev := sp.src.NewEvent(fmt.Appendf(nil, `{"id":%d}`, i), uint64(i), stage.Origin{To: a})
		ev.Set("id", int64(i))
		ev.Set("big", json18())
		ev.Set("name", fmt.Sprint("n", i))
		if err := out.Emit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	out.Flush(ctx)
}

func json18() any { return map[string]any{"n": 1.5, "list": []any{"a", true, nil}} }

func TestPublishConsumeAck(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	s := &sink{seen: map[string]int{}}
	var mu sync.Mutex
	var fields []map[string]any
	s.fail = func(ev *stage.Event) error {
		mu.Lock()
		m := map[string]any{}
		for name, v := range ev.Fields() {
			m[name] = v.Interface()
		}
		fields = append(fields, m)
		mu.Unlock()
		return nil
	}
	sp := newSplit(t, srv.URL(), QueueConfig{Stream: "t_ack"}, stage.Settings{Batch: 16}, s)
	const n = 500
	a := newAcks(n)
	sp.send(t, 1, n, a)
	for seq, err := range a.wait(t) {
		if err != nil {
			t.Fatalf("event %d: %v", seq, err)
		}
	}
	// Every event acked by the publisher is in the stream or stored.
	waitCount(t, s, n)
	mu.Lock()
	f := fields[0]
	mu.Unlock()
	if _, ok := f["id"].(int64); !ok {
		t.Errorf("id decoded as %T, want int64", f["id"])
	}
	if big, ok := f["big"].(map[string]any); !ok || fmt.Sprint(big["n"]) != "1.5" {
		t.Errorf("big = %#v", f["big"])
	}
	// Acked messages leave the work stream.
	js := natstest.JetStream(t, srv.URL())
	waitStream(t, js, "t_ack", 0)
}

func waitStream(t *testing.T, js jetstream.JetStream, name string, msgs uint64) {
	t.Helper()
	poll.Until(t, fmt.Sprintf("stream %s to hold %d messages", name, msgs), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		str, err := js.Stream(ctx, name)
		var si *jetstream.StreamInfo
		if err == nil {
			si, err = str.Info(ctx)
		}
		return err == nil && si.State.Msgs == msgs
	})
}

// getMsg returns message seq of stream.
func getMsg(t *testing.T, js jetstream.JetStream, stream string, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	str, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := str.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// payloadsOf decodes a dead letter's events' payloads.
func payloadsOf(t *testing.T, data []byte) []string {
	t.Helper()
	data, at, err := codec.Open(data, nil, 64<<20, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ps []string
	for i := range len(at) - 1 {
		_, p, _ := codec.RecordHead(data[at[i]:at[i+1]])
		ps = append(ps, string(p))
	}
	return ps
}

// TestPoisonGoesToDeadLetters: an event that keeps failing for a reason
// that may pass makes its whole envelope come back (the other events are
// handled again), and at max_deliver it alone is dead-lettered.
func TestPoisonGoesToDeadLetters(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		if id, _ := ev.Field("id"); id == int64(3) {
			return errors.New("poison")
		}
		return nil
	}}
	qc := QueueConfig{Stream: "t_dead", MaxDeliver: 2, Backoff: 10 * time.Millisecond}
	sp := newSplit(t, srv.URL(), qc, stage.Settings{Batch: 8}, s)
	a := newAcks(5)
	sp.send(t, 1, 5, a)
	a.wait(t)
	js := natstest.JetStream(t, srv.URL())
	waitStream(t, js, "t_dead_dead", 1)
	waitStream(t, js, "t_dead", 0)
	m := getMsg(t, js, "t_dead_dead", 1)
	if m.Header.Get(codec.HdrClass) != DeadMaxDeliver || m.Header.Get(codec.HdrReason) == "" || m.Header.Get(codec.HdrIndex) != "2" {
		t.Errorf("dead letter headers: %v", m.Header)
	}
	if tr, ok := traceOf(m.Header); !ok || tr.Events != 5 {
		t.Errorf("dead letter trace: %+v", tr)
	}
	if ps := payloadsOf(t, m.Data); len(ps) != 1 || ps[0] != `{"id":3}` {
		t.Errorf("dead letter payloads %q", ps)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) != 4 || s.seen[`{"id":1}`] != 2 {
		t.Errorf("stored %v; want ids 1, 2, 4 and 5, each twice (the envelope came back once)", s.seen)
	}
}

func TestFullStreamRejects(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	cfg := Config{URL: srv.URL()}
	front := NewClient(cfg, "test", nil)
	q := front.Queue("store", QueueConfig{Stream: "t_full", MaxMsgs: 10, EnvelopeEvents: 1}, port.Reject, 64)
	src, srcLife := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	_, pub := engine.NewHandlerStage(stage.Settings{Name: "store", Overflow: port.Reject}, q.Publisher(), nil)
	srcLife.Connect(pub.Stage(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	a := newAcks(25)
	out := src.NewEmitter()
	for i := 1; i <= 25; i++ {
		out.Emit(ctx, src.NewEvent([]byte("x"), uint64(i), stage.Origin{To: a}))
	}
	out.Flush(ctx)
	busy, ok := 0, 0
	for _, err := range a.wait(t) {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, stage.ErrBusy):
			busy++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if ok != 10 || busy != 15 {
		t.Errorf("acked %d, busy %d; want 10 and 15", ok, busy)
	}
	if st := q.Stats(); st.Full != 15 || st.Published != 10 {
		t.Errorf("stats %+v", st)
	}
	pub.CloseQueue()
	pub.Wait()
	pub.Close()
	q.Wait()
}

// TestRefusedGoesToDeadLettersAtOnce: events refused for good are
// dead-lettered one by one, each with its reason, at the first delivery;
// the rest of their envelope is stored once.
func TestRefusedGoesToDeadLettersAtOnce(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	var mu sync.Mutex
	tries := map[int64]int{}
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		v, _ := ev.Field("id")
		id := v.(int64)
		if id != 2 && id != 4 {
			return nil
		}
		mu.Lock()
		tries[id]++
		mu.Unlock()
		return stage.WithClass(fmt.Errorf("no such column value %d", id), stage.ErrDatabase)
	}}
	sp := newSplit(t, srv.URL(), QueueConfig{Stream: "t_refused", MaxDeliver: 5}, stage.Settings{Batch: 8}, s)
	a := newAcks(5)
	sp.send(t, 1, 5, a)
	a.wait(t)
	js := natstest.JetStream(t, srv.URL())
	waitStream(t, js, "t_refused_dead", 2)
	waitStream(t, js, "t_refused", 0)
	got := map[string]string{}
	for seq := uint64(1); seq <= 2; seq++ {
		m := getMsg(t, js, "t_refused_dead", seq)
		if m.Header.Get(codec.HdrClass) != DeadRefused {
			t.Errorf("dead letter %d: class %q", seq, m.Header.Get(codec.HdrClass))
		}
		ps := payloadsOf(t, m.Data)
		if len(ps) != 1 {
			t.Fatalf("dead letter %d holds %d events", seq, len(ps))
		}
		got[ps[0]] = m.Header.Get(codec.HdrReason)
	}
	for _, id := range []int{2, 4} {
		if r := got[fmt.Sprintf(`{"id":%d}`, id)]; !strings.Contains(r, fmt.Sprint("value ", id)) {
			t.Errorf("record %d: reason %q", id, r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if tries[2] != 1 || tries[4] != 1 {
		t.Errorf("the refused events were handled %v times, want once each", tries)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range []int{1, 3, 5} {
		if n := s.seen[fmt.Sprintf(`{"id":%d}`, id)]; n != 1 {
			t.Errorf("record %d stored %d times", id, n)
		}
	}
}

// TestUndecodableGoesToDeadLetters: a message not in the envelope
// encoding is dead-lettered as it is.
func TestUndecodableGoesToDeadLetters(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	s := &sink{seen: map[string]int{}}
	sp := newSplit(t, srv.URL(), QueueConfig{Stream: "t_garbage"}, stage.Settings{Batch: 8}, s)
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := js.Publish(ctx, subject("t_garbage"), []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	a := newAcks(1)
	sp.send(t, 1, 1, a)
	a.wait(t)
	waitStream(t, js, "t_garbage_dead", 1)
	waitStream(t, js, "t_garbage", 0)
	m := getMsg(t, js, "t_garbage_dead", 1)
	if m.Header.Get(codec.HdrClass) != DeadUndecodable || string(m.Data) != "not an envelope" || m.Header.Get(codec.HdrIndex) != "" {
		t.Errorf("dead letter %q: %v", m.Data, m.Header)
	}
}

// TestTooManyEventsGoesToDeadLetters: a message of the server's
// max_payload (1 MiB here) may say it holds hundreds of thousands of
// records of 3 bytes each, while no publisher puts more than
// envelope_events in one; the consumer made an event of each at once,
// none charged to memory_limit (empty payloads). It is undecodable: it
// goes to the dead-letter stream whole, naming the stage and its stream
// sequence, and no event is made of it.
func TestTooManyEventsGoesToDeadLetters(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	s := &sink{seen: map[string]int{}}
	sp := newSplit(t, srv.URL(), QueueConfig{Stream: "t_many"}, stage.Settings{Batch: 64}, s)
	data := []byte{codec.Version}
	for len(data)+3 < 1<<20-8<<10 {
		data = append(data, 1, 0, 0) // record 1, empty payload, no fields
	}
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := js.Publish(ctx, subject("t_many")+".1", data); err != nil {
		t.Fatal(err)
	}
	waitStream(t, js, "t_many_dead", 1)
	waitStream(t, js, "t_many", 0)
	m := getMsg(t, js, "t_many_dead", 1)
	want := fmt.Sprintf(`stage "store": t_many message 1: undecodable message: more than %d events`, minMaxEvents)
	if m.Header.Get(codec.HdrClass) != DeadUndecodable || !strings.HasPrefix(m.Header.Get(codec.HdrReason), want) || len(m.Data) != len(data) {
		t.Errorf("dead letter of %d bytes: %v; want the message whole, class undecodable, reason %q", len(m.Data), m.Header, want)
	}
	if n := sp.consQueue.Stats().Taken; n != 0 {
		t.Errorf("one message of %d bytes became %d events", len(data), n)
	}
}

// An envelope of more events than this process's envelope_events, from
// a front on a higher setting (a rolling change), is taken, not refused:
// the bound has a floor of 65,536.
func TestEnvelopeFromAnotherSettingIsTaken(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	s := &sink{seen: map[string]int{}}
	sp := newSplit(t, srv.URL(), QueueConfig{Stream: "t_other", EnvelopeEvents: 100}, stage.Settings{Batch: 64}, s)
	const n = 2000
	data := []byte{codec.Version}
	for range n {
		data = append(data, 1, 1, 'x', 0) // record 1, payload "x", no fields
	}
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := js.Publish(ctx, subject("t_other")+".1", data); err != nil {
		t.Fatal(err)
	}
	waitStream(t, js, "t_other", 0)
	if st := sp.consQueue.Stats(); st.Taken != n || st.DeadLettered != 0 {
		t.Errorf("an envelope of %d events under envelope_events 100: %d taken, %d dead-lettered", n, st.Taken, st.DeadLettered)
	}
}

// TestInProgressKeepsEnvelope: events held by the stage longer than
// ack_wait are not delivered again: the consumer tells JetStream they are
// in progress.
func TestInProgressKeepsEnvelope(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	release := make(chan struct{})
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		<-release
		return nil
	}}
	cfg := Config{URL: srv.URL()}
	back := NewClient(cfg, "test", nil)
	qc := QueueConfig{Stream: "t_progress", AckWait: time.Second}
	sp := newSplitClients(t, NewClient(cfg, "test", nil), back, qc, stage.Settings{Batch: 8}, s, nil)
	a := newAcks(3)
	sp.send(t, 1, 3, a)
	a.wait(t)
	q := sp.consQueue
	// Three rounds of InProgress: the envelope has been held three times
	// a third of ack_wait at least, past ack_wait.
	poll.Until(t, "three rounds of InProgress", func() bool { return q.st.inProgress.Load() >= 3 })
	close(release)
	waitStream(t, natstest.JetStream(t, srv.URL()), "t_progress", 0)
	st := q.Stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) != 3 || st.Taken != 3 || st.Redelivered != 0 {
		t.Errorf("stored %v, taken %d, redelivered %d; want each once", s.seen, st.Taken, st.Redelivered)
	}
}

// TestUnchangedStreamIsLeftAlone: a process that finds its streams as
// configured does not update them (each process of a split pipeline
// ensures them when it starts); a changed limit still updates the stream.
func TestUnchangedStreamIsLeftAlone(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	advisories, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	qc := QueueConfig{Stream: "t_same"}
	for range 2 {
		newSplit(t, srv.URL(), qc, stage.Settings{}, &sink{seen: map[string]int{}}).stop(t)
	}
	qc.MaxMsgs = 12345
	newSplit(t, srv.URL(), qc, stage.Settings{}, &sink{seen: map[string]int{}}).stop(t)
	// The server sends its advisories in order: a stream created last
	// marks the end of what the splits did.
	js := natstest.JetStream(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "t_marker"}); err != nil {
		t.Fatal(err)
	}
	var updated []string
	for {
		m, err := advisories.NextMsg(wait)
		if err != nil {
			t.Fatalf("no advisory of t_marker's creation: %v", err)
		}
		name := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		if strings.Contains(m.Subject, ".UPDATED.") {
			updated = append(updated, name)
		}
		if name == "t_marker" {
			break
		}
	}
	if !slices.Equal(updated, []string{"t_same"}) {
		t.Errorf("streams updated %q, want t_same once (max_msgs changed), and no update of an unchanged stream", updated)
	}
}

// TestTakeMsg: an envelope's message goes to seda.STREAM.N with its
// Nats-Msg-Id and Seda-Trace.
func TestTakeMsg(t *testing.T) {
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	b := codec.NewBuilder(10, 1<<20, 1<<20, true, nil)
	for i := range 3 {
		ev := src.NewEvent([]byte("x"), uint64(i), stage.Origin{})
		defer ev.Done(nil)
		b.Add(ev)
	}
	m, evs := takeMsg(b, "s", "p", "p/host/1", "id-1")
	tr, ok := traceOf(m.Header)
	if m.Subject != "seda.s.3" || len(evs) != 3 || m.Header.Get(nats.MsgIdHdr) != "id-1" || !ok || tr.Events != 3 || tr.Publisher != "p/host/1" {
		t.Errorf("subject %q, %d events, headers %v", m.Subject, len(evs), m.Header)
	}
}

// A stage renamed (or another stage) on a stream that already has a
// stage's consumer is refused with the old consumer named and what to do;
// the server's error alone said only "multiple non-filtered consumers not
// allowed on workqueue stream".
func TestSecondConsumerNamesTheFirst(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	newSplit(t, srv.URL(), QueueConfig{Stream: "t_renamed"}, stage.Settings{Batch: 8}, &sink{seen: map[string]int{}})
	c := NewClient(Config{URL: srv.URL()}, "test", nil)
	_, src := engine.NewSourceStage(stage.Settings{Name: "store2"}, c.Queue("store2", QueueConfig{Stream: "t_renamed"}, 0, 64).Consumer(), nil)
	_, store := engine.NewHandlerStage(stage.Settings{Name: "sink", Kind: "test.sink"}, &sink{seen: map[string]int{}}, nil)
	src.Connect(store.Stage(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := src.Start(ctx)
	if err == nil {
		src.StopInput(ctx)
		src.Close()
		t.Fatal("a second stage's consumer started on a work-queue stream")
	}
	if !strings.Contains(err.Error(), "already has the consumer store,") || !strings.Contains(err.Error(), "nats consumer rm t_renamed") {
		t.Errorf("second consumer: %v, want the first one named and what to do", err)
	}
}
