package codec_test

// This file tests the envelope encoding: round trips, plain and
// compressed, its bounds, garbage refused, with a fuzzer and a benchmark.

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/stage"
)

// decodeAll decodes an envelope into events of back, as the consumer does.
func decodeAll(t testing.TB, back *engine.Stage, data []byte) []*stage.Event {
	t.Helper()
	data, at, err := codec.Open(data, nil, 64<<20, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*stage.Event
	names := map[string]string{}
	for i := range len(at) - 1 {
		seq, payload, fields := codec.RecordHead(data[at[i]:at[i+1]])
		ev := back.NewEvent(payload, seq, stage.Origin{})
		codec.DecodeFields(ev, fields, names)
		evs = append(evs, ev)
	}
	return evs
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprint("compress=", compress), func(t *testing.T) { testRoundTrip(t, compress) })
	}
}

func testRoundTrip(t *testing.T, compress bool) {
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	ev := src.NewEventAt([]byte(`{"id":7}`), 42, stage.Origin{}, time.Unix(0, 1234567890))
	ev.SetValue("s", stage.StringValue("héllo"))
	ev.SetValue("i", stage.IntValue(-1<<62))
	ev.SetValue("f", stage.FloatValue(math.Pi))
	ev.SetValue("b", stage.BoolValue(true))
	ev.SetValue("n", stage.NumberValue([]byte("1e400")))
	ev.SetValue("j", stage.JSONValue([]byte(`{"a":[1,2]}`)))
	ev.SetValue("z", stage.NullValue())
	ev.Set("any", []int{1, 2})
	later := src.NewEventAt([]byte("second"), 43, stage.Origin{}, time.Unix(0, 2234567890))
	b := codec.NewBuilder(10, 1<<20, 1<<20, compress, nil)
	for _, e := range []*stage.Event{ev, later} {
		if ok, err := b.Add(e); !ok || err != nil {
			t.Fatalf("add: %v %v", ok, err)
		}
	}
	data, trace, evs := b.Take("p", "p/host/1")
	if len(evs) != 2 || !b.Empty() {
		t.Fatalf("%d events", len(evs))
	}
	back, _ := engine.NewSourceStage(stage.Settings{Name: "back"}, nil, nil)
	got := decodeAll(t, back, data)
	if len(got) != 2 || string(got[0].Payload) != `{"id":7}` || got[0].Seq != 42 || string(got[1].Payload) != "second" || got[1].Seq != 43 {
		t.Fatalf("decoded %d events: %q/%d", len(got), got[0].Payload, got[0].Seq)
	}
	for name, want := range ev.Fields() {
		v, ok := got[0].Value(name)
		if name == "any" {
			if !ok || v.Type() != stage.ValueJSON || string(v.Bytes()) != "[1,2]" {
				t.Errorf("any: %v %s", v.Type(), v.Bytes())
			}
			continue
		}
		if !ok || v.Type() != want.Type() || v.String() != want.String() {
			t.Errorf("%s: got %v %q, want %v %q", name, v.Type(), v.String(), want.Type(), want.String())
		}
	}
	if got[1].NumFields() != 0 {
		t.Errorf("the second event has %d fields", got[1].NumFields())
	}
	tr, ok := codec.ParseTrace(trace)
	if !ok || tr.Pipeline != "p" || tr.Publisher != "p/host/1" || tr.Events != 2 || tr.Arrived.UnixNano() != 1234567890 {
		t.Errorf("trace: %+v %v", tr, ok)
	}
	if compress != (data[0] == codec.VersionS2) {
		t.Errorf("version %d", data[0])
	}
	// A dead letter is an envelope of one record.
	plain, at, _ := codec.Open(data, nil, 64<<20, 1<<20, nil)
	dl := decodeAll(t, back, codec.DeadData(plain[at[1]:at[2]]))
	if len(dl) != 1 || string(dl[0].Payload) != "second" || dl[0].Seq != 43 {
		t.Errorf("dead letter: %d events", len(dl))
	}
	for _, e := range append(append(got, dl...), ev, later) {
		e.Done(nil)
	}
}

func TestEnvelopeLimits(t *testing.T) {
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	mk := func(n int) *stage.Event { return src.NewEvent(make([]byte, n), 1, stage.Origin{}) }
	defer func() {}()
	b := codec.NewBuilder(3, 100, 1000, false, nil)
	var evs []*stage.Event
	for range 3 {
		e := mk(10)
		evs = append(evs, e)
		if ok, _ := b.Add(e); !ok {
			t.Fatal("an event under both limits did not fit")
		}
	}
	e := mk(1)
	evs = append(evs, e)
	if ok, _ := b.Add(e); ok {
		t.Error("a fourth event fitted an envelope of at most 3")
	}
	b.Take("p", "f")
	big := mk(200)
	evs = append(evs, big)
	if ok, _ := b.Add(big); !ok {
		t.Error("an event over max bytes did not fit an empty envelope")
	}
	e = mk(1)
	evs = append(evs, e)
	if ok, _ := b.Add(e); ok {
		t.Error("an event fitted an envelope over its max bytes")
	}
	data, _, got := b.Take("p", "f")
	if len(got) != 1 || len(data) < 200 {
		t.Errorf("%d events, %d bytes", len(got), len(data))
	}
	for _, e := range evs {
		e.Done(nil)
	}
}

// An event that alone takes more than an envelope of one may (maxOne,
// under the server's max_payload) is refused as too large, also when it
// would compress under it: Open refuses data that decompresses to more.
func TestEnvelopeOfOneOverMaxOne(t *testing.T) {
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	for _, compress := range []bool{false, true} {
		b := codec.NewBuilder(10, 100, 1000, compress, nil)
		huge := src.NewEvent(make([]byte, 2000), 1, stage.Origin{}) // zeros: S2 makes them a few bytes
		fits, err := b.Add(huge)
		if !fits || stage.ErrorClass(err) != stage.ClassTooLarge || !b.Empty() {
			t.Errorf("compress %v: an event of 2000 bytes against maxOne 1000: fits %v, err %v (class %q), empty %v",
				compress, fits, err, stage.ErrorClass(err), b.Empty())
		}
		ok := src.NewEvent(make([]byte, 900), 2, stage.Origin{})
		if fits, err := b.Add(ok); !fits || err != nil {
			t.Errorf("compress %v: an event of 900 bytes against maxOne 1000: fits %v, err %v", compress, fits, err)
		}
		huge.Done(nil)
		ok.Done(nil)
	}
}

// Open refuses a compressed message that says it decompresses to more
// than maxPlain before allocating anything: six bytes must not cost
// 4 GiB.
func TestOpenBoundsTheDecompressedSize(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := codec.Open([]byte{codec.VersionS2, 0xff, 0xff, 0xff, 0xff, 0x0f}, nil, 1<<20, 1<<20, nil)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, codec.ErrUndecodable) {
		t.Errorf("a message saying it decompresses to 4 GiB: err %v, want undecodable", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("opening a 6-byte message allocated %d bytes", got)
	}

	// A real envelope: refused under a bound below its data, taken at it.
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	ev := src.NewEvent(make([]byte, 5000), 1, stage.Origin{})
	defer ev.Done(nil)
	b := codec.NewBuilder(10, 1<<20, 1<<20, true, nil)
	if _, err := b.Add(ev); err != nil {
		t.Fatal(err)
	}
	data, _, _ := b.Take("p", "f")
	plain, _, err := codec.Open(data, nil, 1<<20, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := codec.Open(data, nil, len(plain)-1, 1<<20, nil); !errors.Is(err, codec.ErrUndecodable) {
		t.Errorf("%d bytes of data under a bound of %d: err %v, want undecodable", len(plain), len(plain)-1, err)
	}
	if _, _, err := codec.Open(data, nil, len(plain), 1<<20, nil); err != nil {
		t.Errorf("%d bytes of data under a bound of as many: %v", len(plain), err)
	}
}

// Open refuses a message of more events than maxEvents, compressed or
// not, and takes one of exactly as many, as a Builder of that bound
// makes: a message of records of a few bytes must not become hundreds
// of thousands of events.
func TestOpenBoundsTheEvents(t *testing.T) {
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	for _, compress := range []bool{false, true} {
		b := codec.NewBuilder(8, 1<<20, 1<<20, compress, nil)
		for i := range 8 {
			ev := src.NewEvent(nil, uint64(i+1), stage.Origin{})
			if fits, err := b.Add(ev); !fits || err != nil {
				t.Fatalf("event %d: fits %v, %v", i+1, fits, err)
			}
			defer ev.Done(nil)
		}
		data, _, _ := b.Take("p", "f")
		if _, at, err := codec.Open(data, nil, 1<<20, 8, nil); err != nil || len(at) != 9 {
			t.Errorf("compress %v: 8 events under a bound of 8: %d, %v", compress, len(at)-1, err)
		}
		_, _, err := codec.Open(data, nil, 1<<20, 7, nil)
		if !errors.Is(err, codec.ErrUndecodable) || !strings.Contains(err.Error(), "more than 7 events") {
			t.Errorf("compress %v: 8 events under a bound of 7: %v, want undecodable, more than 7 events", compress, err)
		}
	}
}

func TestDecodeRefusesGarbage(t *testing.T) {
	for _, data := range [][]byte{
		nil, {2, 0, 0}, {3}, {3, 1}, {3, 1, 5, 'a'}, {3, 1, 0, 1, 1, 'a', 99}, {3, 1, 0, 1, 1, 'a', byte(stage.ValueInt)},
		{3, 1, 0, 7}, {3, 1, 0, 0, 1}, {3, 1, 0, 1, 1, 'a', byte(stage.ValueFloat), 1, 2},
		{4}, {4, 200, 1, 2}, append([]byte{4}, s2.Encode(nil, []byte{1, 5, 'a'})...),
	} {
		if _, _, err := codec.Open(data, nil, 64<<20, 1<<20, nil); !errors.Is(err, codec.ErrUndecodable) {
			t.Errorf("%v: err %v, want undecodable", data, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	ev := src.NewEvent([]byte("p"), 1, stage.Origin{})
	ev.SetValue("a", stage.StringValue("x"))
	ev.SetValue("b", stage.IntValue(3))
	ev.SetValue("c", stage.FloatValue(1.5))
	for _, compress := range []bool{false, true} {
		b := codec.NewBuilder(10, 1<<20, 1<<20, compress, nil)
		b.Add(ev)
		b.Add(ev)
		data, _, _ := b.Take("p", "f")
		f.Add(data)
	}
	ev.Done(nil)
	f.Add([]byte{3, 0, 0, 0})
	f.Add([]byte{codec.VersionS2, 0xff, 0xff, 0xff, 0xff, 0x0f}) // says 4 GiB
	f.Fuzz(func(t *testing.T, data []byte) {
		data, at, err := codec.Open(data, nil, 1<<20, 1<<20, nil)
		if err != nil {
			return
		}
		names := map[string]string{}
		for i := range len(at) - 1 {
			seq, payload, fields := codec.RecordHead(data[at[i]:at[i+1]])
			e := src.NewEvent(payload, seq, stage.Origin{})
			codec.DecodeFields(e, fields, names)
			e.Done(nil)
		}
	})
}

// BenchmarkEnvelope is the cost per event of packing and unpacking an
// envelope of B3's records with the fields process.json sets.
func BenchmarkEnvelope(b *testing.B) {
	for _, compress := range []bool{false, true} {
		b.Run(fmt.Sprint("compress=", compress), func(b *testing.B) { benchEnvelope(b, compress) })
	}
}

func benchEnvelope(b *testing.B, compress bool) {
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	back, _ := engine.NewSourceStage(stage.Settings{Name: "back"}, nil, nil)
	evs := make([]*stage.Event, 1000)
	for i := range evs {
		evs[i] = src.NewEvent(fmt.Appendf(nil, `{"id":%d,"host":"web-1","level":"info","msg":"GET /index.html 200"}`, i), uint64(i), stage.Origin{})
		evs[i].SetValue("id", stage.IntValue(int64(i)))
	}
	names := map[string]string{}
	var at []int
	b.ResetTimer()
	for range b.N / len(evs) {
		eb := codec.NewBuilder(len(evs), 1<<20, 1<<20, compress, nil)
		for _, ev := range evs {
			eb.Add(ev)
		}
		data, _, _ := eb.Take("p", "f")
		var plain []byte
		plain, at, _ = codec.Open(data, at, 64<<20, 1<<20, nil)
		b.ReportMetric(float64(len(data))/float64(len(evs)), "bytes/event")
		for i := range len(at) - 1 {
			seq, payload, fields := codec.RecordHead(plain[at[i]:at[i+1]])
			e := back.NewEvent(payload, seq, stage.Origin{})
			codec.DecodeFields(e, fields, names)
			e.Done(nil)
		}
	}
}
