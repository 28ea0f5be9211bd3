package natsq

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stage"
)

func TestEncodingRoundTrip(t *testing.T) {
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
	m, err := encodeEvent(ev, "seda.x", "p", "p/host/1", "id-1")
	if err != nil {
		t.Fatal(err)
	}
	payload, fields, err := splitMessage(m.Data)
	if err != nil || string(payload) != `{"id":7}` {
		t.Fatalf("payload %q, %v", payload, err)
	}
	back, _ := engine.NewSourceStage(stage.Settings{Name: "back"}, nil, nil)
	got := back.NewEvent(payload, 1, stage.Origin{})
	if err := decodeFields(got, fields, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range ev.Fields() {
		v, ok := got.Value(name)
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
	if seq, at := traceOf(m.Header); seq != 42 || at.UnixNano() != 1234567890 {
		t.Errorf("trace: seq %d, arrived %v", seq, at)
	}
	ev.Done(nil)
	got.Done(nil)
}

func TestDecodeRefusesGarbage(t *testing.T) {
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	for _, data := range [][]byte{nil, {1, 0}, {2, 5, 'a'}, {2, 0, 1, 1, 'a', 99}, {2, 0, 1, 1, 'a', byte(stage.ValueInt)}, {2, 0, 0, 7}} {
		payload, fields, err := splitMessage(data)
		if err == nil {
			ev := src.NewEvent(payload, 1, stage.Origin{})
			err = decodeFields(ev, fields, map[string]string{})
			ev.Done(nil)
		}
		if !errors.Is(err, errUndecodable) {
			t.Errorf("%v: err %v, want undecodable", data, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	src, _ := engine.NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	ev := src.NewEvent([]byte("p"), 1, stage.Origin{})
	ev.SetValue("a", stage.StringValue("x"))
	ev.SetValue("b", stage.IntValue(3))
	m, _ := encodeEvent(ev, "s", "p", "f", "id")
	ev.Done(nil)
	f.Add(m.Data)
	f.Add([]byte{2, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		payload, fields, err := splitMessage(data)
		if err != nil {
			return
		}
		e := src.NewEvent(payload, 1, stage.Origin{})
		_ = decodeFields(e, fields, map[string]string{})
		e.Done(nil)
	})
}
