package stage

// This file tests an event's fields: paths, JSON text, setting,
// replacing and deleting, values and their coercions, no allocations,
// and records of many fields.

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFieldPaths(t *testing.T) {
	ev := &Event{Payload: []byte(`{"a":1}`)}
	ev.Set("a", map[string]any{"b": "x"})
	ev.Set("n", nil)
	ev.Set("user.id", int64(7)) // a projected path is stored under its own name
	if v, ok := ev.Field("a.b"); !ok || v != "x" {
		t.Errorf("a.b = %v %v", v, ok)
	}
	if _, ok := ev.Field("a.c"); ok {
		t.Error("a.c found")
	}
	if _, ok := ev.Field("a.b.c"); ok {
		t.Error("a.b.c found through a string")
	}
	if v, ok := ev.Field("$"); !ok || string(v.([]byte)) != `{"a":1}` {
		t.Errorf("$ = %v", v)
	}
	if v, ok := ev.Field("n"); !ok || v != nil {
		t.Errorf("n = %v %v", v, ok)
	}
	if v, ok := ev.Field("user.id"); !ok || v != int64(7) {
		t.Errorf("user.id = %v %v", v, ok)
	}
	if _, ok := ev.Field("user"); ok {
		t.Error("user found: only user.id was set")
	}
}

func TestFieldsInJSONText(t *testing.T) {
	ev := &Event{}
	ev.SetValue("u", JSONValue([]byte(`{"id":12,"big":12345678901234567890,"tags":["a"],"r":1.5}`)))
	for path, want := range map[string]any{
		"u.id":   int64(12),
		"u.big":  json.Number("12345678901234567890"),
		"u.tags": []any{"a"},
		"u.r":    json.Number("1.5"),
	} {
		if got, ok := ev.Field(path); !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v %v, want %#v", path, got, ok, want)
		}
	}
	if got, _ := ev.Field("u"); !reflect.DeepEqual(got, map[string]any{
		"id": int64(12), "big": json.Number("12345678901234567890"), "tags": []any{"a"}, "r": json.Number("1.5"),
	}) {
		t.Errorf("u = %#v", got)
	}
	ev.SetValue("bad", JSONValue([]byte(`{"x":`)))
	if _, ok := ev.Field("bad.x"); ok {
		t.Error("bad.x found in invalid JSON")
	}
}

func TestSetReplacesDeletesAndIterates(t *testing.T) {
	ev := &Event{}
	ev.Set("a", "1")
	ev.Set("b", 2)
	ev.Set("c", true)
	ev.Set("a", "one") // replaced in place
	if !ev.Delete("b") || ev.Delete("b") {
		t.Fatal("Delete b: want true, then false")
	}
	var got []string
	for name, v := range ev.Fields() {
		got = append(got, name+"="+v.String())
	}
	if want := []string{"a=one", "c=true"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
	if ev.NumFields() != 2 {
		t.Fatalf("NumFields %d", ev.NumFields())
	}
	ev.ResetFields()
	if ev.NumFields() != 0 {
		t.Fatalf("NumFields after reset %d", ev.NumFields())
	}
	for range ev.Fields() {
		t.Fatal("a field after ResetFields")
	}
}

func TestSetTextCopies(t *testing.T) {
	ev := &Event{}
	buf := []byte("hello")
	ev.SetText("a", buf)
	ev.SetText("b", []byte("world"))
	buf[0] = 'J'
	if v, _ := ev.Value("a"); string(v.Bytes()) != "hello" || v.Type() != ValueString {
		t.Fatalf("a = %q (%s), want a copy: hello", v.Bytes(), v.Type())
	}
	if v, _ := ev.Field("b"); v != "world" {
		t.Fatalf("b = %v", v)
	}
}

func TestValueOf(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, c := range []struct {
		in   any
		typ  ValueType
		text string
		back any
	}{
		{nil, ValueNull, "null", nil},
		{"s", ValueString, "s", "s"},
		{[]byte("b"), ValueString, "b", "b"},
		{7, ValueInt, "7", int64(7)},
		{uint64(math.MaxUint64), ValueAny, "18446744073709551615", uint64(math.MaxUint64)},
		{uint8(3), ValueInt, "3", int64(3)},
		{1.5, ValueFloat, "1.5", 1.5},
		{float32(0.5), ValueFloat, "0.5", 0.5},
		{true, ValueBool, "true", true},
		{json.Number("1e400"), ValueNumber, "1e400", json.Number("1e400")},
		{json.RawMessage(`[1]`), ValueJSON, "[1]", []any{int64(1)}},
		{now, ValueAny, now.Format(time.RFC3339Nano), now},
		{IntValue(4), ValueInt, "4", int64(4)},
	} {
		v := ValueOf(c.in)
		if v.Type() != c.typ || v.String() != c.text || !reflect.DeepEqual(v.Interface(), c.back) {
			t.Errorf("ValueOf(%#v) = %s %q %#v, want %s %q %#v", c.in, v.Type(), v.String(), v.Interface(), c.typ, c.text, c.back)
		}
	}
	if v := IntValue(-3); v.Int() != -3 || v.Float() != -3 || v.Bool() || v.Bytes() != nil {
		t.Errorf("IntValue accessors: %d %v %v %q", v.Int(), v.Float(), v.Bool(), v.Bytes())
	}
	if !NullValue().IsNull() || BoolValue(true).Bool() != true || ValueString.String() != "string" {
		t.Error("NullValue, BoolValue or ValueType.String")
	}
}

// Setting fields on a recycled event allocates nothing.
func TestFieldsDoNotAllocate(t *testing.T) {
	payload := []byte("<13>1 - host app - - - msg")
	ev := &Event{Payload: payload}
	ev.SetValue("host", BytesValue(payload[8:12]))
	ev.ResetFields()
	allocs := testing.AllocsPerRun(100, func() {
		ev.SetValue("host", BytesValue(payload[8:12]))
		ev.SetValue("app", BytesValue(payload[13:16]))
		ev.SetValue("pri", IntValue(13))
		ev.SetText("msg", payload[23:])
		if v, ok := ev.Value("app"); !ok || string(v.Bytes()) != "app" {
			t.Fatal("app")
		}
		ev.ResetFields()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per record, want 0", allocs)
	}
}

func TestValueMarshalJSON(t *testing.T) {
	ev := &Event{}
	ev.Set("s", "a\"b")
	ev.Set("i", 3)
	ev.Set("f", 0.5)
	ev.Set("b", false)
	ev.Set("n", nil)
	ev.SetValue("num", NumberValue([]byte("1e400")))
	ev.SetValue("o", JSONValue([]byte(`{"k":[1,2]}`)))
	ev.Set("m", map[string]any{"x": 1})
	m := map[string]Value{}
	for name, v := range ev.Fields() {
		m[name] = v
	}
	b, err := json.Marshal(m)
	if want := `{"b":false,"f":0.5,"i":3,"m":{"x":1},"n":null,"num":1e400,"o":{"k":[1,2]},"s":"a\"b"}`; err != nil || string(b) != want {
		t.Fatalf("got %s, %v; want %s", b, err, want)
	}
	if _, err := json.Marshal(FloatValue(math.NaN())); err == nil {
		t.Fatal("NaN marshalled")
	}
}

// AsInt is the one integer coercion: exact integers of every type, text
// and whole floats; nothing else.
func TestValueAsInt(t *testing.T) {
	for _, c := range []struct {
		v    Value
		want int64
		ok   bool
	}{
		{IntValue(-7), -7, true},
		{FloatValue(12), 12, true},
		{FloatValue(12.5), 0, false},
		{FloatValue(1e19), 0, false},
		{StringValue(" 42 "), 42, true},
		{StringValue("+3"), 3, true},
		{StringValue("-9223372036854775808"), math.MinInt64, true},
		{StringValue("9223372036854775808"), 0, false},
		{NumberValue([]byte("1e3")), 1000, true},
		{NumberValue([]byte("12.0")), 12, true},
		{NumberValue([]byte("1.5")), 0, false},
		// Exactly, not through a float64, which rounds.
		{NumberValue([]byte("9007199254740993.0")), 9007199254740993, true},
		{NumberValue([]byte("9.007199254740993e15")), 9007199254740993, true},
		{NumberValue([]byte("1.0000000000000001")), 0, false},
		{NumberValue([]byte("9007199254740993.5")), 0, false},
		{NumberValue([]byte("-9.223372036854775808e18")), math.MinInt64, true},
		{NumberValue([]byte("9.223372036854775808e18")), 0, false},
		{NumberValue([]byte("4500e-2")), 45, true},
		{NumberValue([]byte("4501e-2")), 0, false},
		{NumberValue([]byte("0.000e400")), 0, true},
		{NumberValue([]byte("1e400")), 0, false},
		{NumberValue([]byte("1e-400")), 0, false},
		{NumberValue([]byte("1" + strings.Repeat("0", 30) + "e-30")), 1, true},
		{NumberValue([]byte("-12.50e1")), -125, true},
		{NumberValue([]byte(".5e1")), 5, true},
		{NumberValue([]byte("5.")), 5, true},
		{StringValue("0x1p4"), 0, false},
		{StringValue("Inf"), 0, false},
		{StringValue("NaN"), 0, false},
		{StringValue("1e"), 0, false},
		{StringValue("1e+"), 0, false},
		{StringValue("."), 0, false},
		{FloatValue(-9.223372036854775808e18), math.MinInt64, true},
		{FloatValue(9.223372036854775808e18), 0, false},
		{JSONValue([]byte("7")), 7, true},
		{StringValue("x"), 0, false},
		{StringValue(""), 0, false},
		{BoolValue(true), 0, false},
		{NullValue(), 0, false},
	} {
		if got, ok := c.v.AsInt(); got != c.want || ok != c.ok {
			t.Errorf("%v (%s).AsInt() = %d, %v; want %d, %v", c.v, c.v.Type(), got, ok, c.want, c.ok)
		}
	}
	v := NumberValue([]byte("1234.5600e2"))
	if n := testing.AllocsPerRun(100, func() { v.AsInt() }); n != 0 {
		t.Errorf("AsInt allocates %v times", n)
	}
}

// Integral is AsInt's grammar without its range: an integer of any size,
// as AsInt reads them, and nothing else.
func TestValueIntegral(t *testing.T) {
	for _, c := range []struct {
		v    Value
		want bool
	}{
		{IntValue(-7), true},
		{ValueOf(uint64(1 << 63)), true},
		{ValueOf(struct{}{}), false},
		{FloatValue(1e19), true},
		{FloatValue(12.5), false},
		{FloatValue(math.Inf(1)), false},
		{FloatValue(math.NaN()), false},
		{StringValue(" 9223372036854775808 "), true},
		{StringValue("-99999999999999999999999"), true},
		{NumberValue([]byte("1e19")), true},
		{NumberValue([]byte("-1.5E+30")), true},
		{NumberValue([]byte("10000000000000000000.0")), true},
		{NumberValue([]byte("1.5e-3")), false},
		{NumberValue([]byte("1.5")), false},
		{NumberValue([]byte("1e400")), true},
		{NumberValue([]byte("1e-400")), false},
		{NumberValue([]byte("0.000e-400")), true},
		{NumberValue([]byte("4500e-2")), true},
		{NumberValue([]byte("4501e-2")), false},
		{NumberValue([]byte("1" + strings.Repeat("0", 30) + "e-30")), true},
		{StringValue("0x1p4"), false},
		{StringValue("Inf"), false},
		{StringValue("1e"), false},
		{StringValue("."), false},
		{StringValue("x"), false},
		{BoolValue(true), false},
		{NullValue(), false},
	} {
		if got := c.v.Integral(); got != c.want {
			t.Errorf("%v (%s).Integral() = %v, want %v", c.v, c.v.Type(), got, c.want)
		}
	}
}

// An event of many fields keeps an index of their names (past
// indexFrom): setting, replacing, finding (as given, and below a stored
// prefix), deleting and resetting give what the list alone gave, in
// order. Each set once scanned the whole list, so a record of n fields
// cost n².
func TestManyFields(t *testing.T) {
	ev := &Event{}
	const n = 3 * indexFrom
	for i := range n {
		ev.Set(fmt.Sprint("f", i), int64(i))
	}
	ev.Set("obj", map[string]any{"x": "deep"})
	ev.Set("f5", int64(-5)) // replaced in place
	check := func(when string, deleted int) {
		t.Helper()
		for i := range n {
			v, ok := ev.Value(fmt.Sprint("f", i))
			want := int64(i)
			if i == 5 {
				want = -5
			}
			if i == deleted {
				if ok {
					t.Errorf("%s: f%d found after its Delete", when, i)
				}
				continue
			}
			if !ok || v.Int() != want {
				t.Errorf("%s: f%d = %v, %v; want %d", when, i, v, ok, want)
			}
		}
		if v, ok := ev.Value("obj.x"); !ok || v.String() != "deep" {
			t.Errorf("%s: obj.x = %v, %v", when, v, ok)
		}
		if _, ok := ev.Value("nope"); ok {
			t.Errorf("%s: a field never set found", when)
		}
	}
	check("set", -1)
	if ev.NumFields() != n+1 {
		t.Fatalf("%d fields, want %d", ev.NumFields(), n+1)
	}
	if !ev.Delete("f10") || ev.Delete("f10") {
		t.Fatal("Delete of f10: want true, then false")
	}
	check("after a Delete", 10)
	ev.Set("late", true) // rebuilds the index
	check("after a set that follows a Delete", 10)
	if v, ok := ev.Value("late"); !ok || !v.Bool() {
		t.Errorf("late = %v, %v", v, ok)
	}
	var names []string
	for name := range ev.Fields() {
		names = append(names, name)
	}
	if len(names) != n+1 || names[0] != "f0" || names[9] != "f9" || names[10] != "f11" || names[n-1] != "obj" || names[n] != "late" {
		t.Errorf("order after a Delete: %v", names)
	}
	ev.ResetFields()
	if _, ok := ev.Value("f1"); ok || ev.NumFields() != 0 {
		t.Error("fields left after ResetFields")
	}
	ev.Set("again", int64(1))
	if v, ok := ev.Value("again"); !ok || v.Int() != 1 {
		t.Errorf("after ResetFields: again = %v, %v", v, ok)
	}
}
