package process

// This file tests process.json: decoding, errors and reasons, require,
// agreement with encoding/json, projection, nesting, and benchmarks.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
)

func TestJSONDecodes(t *testing.T) {
	h := mustBuild(t, "process.json", nil)
	out, done, _ := run(t, h,
		`{"id":123,"host":"web-1","level":"info","msg":"user logged in"}`,
		` {"id":9007199254740993,"f":1.5,"e":1e400,"big":18446744073709551616,"neg":-0,"a":[1,"x",null,true,{}],"o":{"k":"v\u00e9\n"},"u":"é"} `,
	)
	if len(out.calls) != 2 || done.ok != 0 || len(done.errs) != 0 {
		t.Fatalf("emitted %d, done %d ok %v errs", len(out.calls), done.ok, done.errs)
	}
	want0 := map[string]any{"id": int64(123), "host": "web-1", "level": "info", "msg": "user logged in"}
	if got := fieldMap(out.calls[0].ev); !reflect.DeepEqual(got, want0) {
		t.Errorf("fields = %#v, want %#v", got, want0)
	}
	want1 := map[string]any{
		"id": int64(9007199254740993), "f": json.Number("1.5"), "e": json.Number("1e400"),
		"big": json.Number("18446744073709551616"), "neg": int64(0),
		"a": []any{int64(1), "x", nil, true, map[string]any{}},
		"o": map[string]any{"k": "vé\n"}, "u": "é",
	}
	if got := fieldMap(out.calls[1].ev); !reflect.DeepEqual(got, want1) {
		t.Errorf("fields = %#v\nwant %#v", got, want1)
	}
	// Numbers round-trip exactly through encoding/json.
	id, _ := out.calls[1].ev.Field("id")
	b, err := json.Marshal(id)
	if err != nil || string(b) != "9007199254740993" {
		t.Errorf("id marshals to %s, %v", b, err)
	}
}

func TestJSONErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, "invalid json: unexpected end of input at offset 0"},
		{`   `, "invalid json: unexpected end of input at offset 3"},
		{`{"id":1,"msg":"hi"`, "invalid json: unexpected end of input at offset 18"},
		{`{"id":1,}`, `invalid json: expected a string key, found character '}' at offset 8`},
		{`[1,2]`, `invalid json: expected a JSON object, found character '[' at offset 0`},
		{`"x"`, `invalid json: expected a JSON object, found character '"' at offset 0`},
		{`{"a":1} {"b":2}`, `invalid json: unexpected character '{' after the object at offset 8`},
		{`{"a":01}`, `invalid json: expected ',' or '}' in an object, found character '1' at offset 6`},
		{`{"a":tru}`, `invalid json: unexpected character '}' in literal true at offset 8`},
		{`{"a":"x` + "\x01" + `"}`, `invalid json: control character 0x01 in a string at offset 7`},
		{`{"a":"\q"}`, `invalid json: invalid escape character 'q' in a string at offset 7`},
		{`{"a":"\u12G4"}`, `invalid json: invalid \u escape: character 'G' at offset 10`},
		{`{"a" 1}`, `invalid json: expected ':' after an object key, found character '1' at offset 5`},
		{`{"a":-}`, `invalid json: expected a digit, found character '}' at offset 6`},
		{`{"a":1.}`, `invalid json: expected a digit after '.', found character '}' at offset 7`},
		{`{"a":1e}`, `invalid json: expected a digit in the exponent, found character '}' at offset 7`},
		{"{\"a\":\xff}", `invalid json: unexpected byte 0xff at offset 5`},
		{strings.Repeat(`{"a":`, 600) + "1" + strings.Repeat("}", 600), "invalid json: nesting deeper than 512 at offset 2560"},
	} {
		_, err := decodeJSON([]byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("decodeJSON(%.40q) error = %v, want %s", tc.in, err, tc.want)
		}
	}
}

func TestJSONRefusesWithShortReason(t *testing.T) {
	h := mustBuild(t, "process.json", nil)
	secret := strings.Repeat("s3cr3t-", 100)
	out, done, _ := run(t, h, `{"password":"`+secret+`" oops}`, `{"ok":true}`)
	if len(out.calls) != 1 || out.calls[0].ev.Seq != 2 {
		t.Fatalf("emitted %v", out.seqs(""))
	}
	if len(done.errs) != 1 {
		t.Fatalf("errs = %v", done.errs)
	}
	reason := done.errs[0]
	if strings.Contains(reason, "s3cr3t") || strings.ContainsAny(reason, "\n\r") || len(reason) > 120 {
		t.Errorf("reason %q quotes the record or is not one short line", reason)
	}
	if done.class[1] != "invalid" {
		t.Errorf("class %q, want invalid", done.class[1])
	}
}

func TestJSONRequire(t *testing.T) {
	h := mustBuild(t, "process.json", map[string]any{"require": []string{"id", "user.name"}})
	out, done, _ := run(t, h,
		`{"id":1,"user":{"name":"a"}}`,
		`{"user":{"name":"a"}}`,
		`{"id":null,"user":{"name":"a"}}`,
		`{"id":2,"user":{}}`,
		`{"id":3,"user":"flat"}`,
		`{"id":false,"user":{"name":""}}`,
	)
	if got := out.seqs(""); !reflect.DeepEqual(got, []uint64{1, 6}) {
		t.Errorf("emitted %v, want [1 6]", got)
	}
	want := map[uint64]string{
		2: `stage "t": missing field "id"`,
		3: `stage "t": field "id" is null`,
		4: `stage "t": missing field "user.name"`,
		5: `stage "t": missing field "user.name"`,
	}
	for seq, reason := range want {
		if done.seqs[seq] != reason || done.class[seq] != "invalid" {
			t.Errorf("record %d finished with %q (%s), want %q (invalid)", seq, done.seqs[seq], done.class[seq], reason)
		}
	}
}

func TestJSONRequireBadPath(t *testing.T) {
	_, err := build(t, testRegistry, "process.json", map[string]any{"require": []string{"id", "a..b"}})
	fieldErr(t, err, "require.1", "empty part")
}

// TestJSONAgreesWithEncodingJSON checks the decoder against encoding/json
// on a corpus: same acceptance, same values.
func TestJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range jsonCorpus {
		checkJSONAgainstStd(t, []byte(in))
	}
}

var jsonCorpus = []string{
	`{}`, `{"a":{}}`, `{"a":[]}`, `{"a":[[],[{}]]}`, ` {"a" : 1 , "b" : [ 1 , 2 ] } `,
	`{"a":"\ud83d\ude00"}`, `{"a":"\ud83d"}`, `{"a":"\ud83dx"}`, `{"a":"\ude00\ud83d"}`, `{"a":"\ud83d\u0041"}`,
	`{"a":"\"\\\/\b\f\n\r\t"}`, "{\"a\":\"\xff\xfe\"}", "{\"a\":\"ok\xc3\"}", `{"a":1,"a":2}`,
	`{"a":-9223372036854775808}`, `{"a":9223372036854775808}`, `{"a":-0.0e-0}`, `{"a":0E+1}`,
	`{"a":true,"b":false,"c":null}`, `{"a":nul}`, `{"a":1}x`, `{"a":1`, `{"a"}`, `{,}`, `{"a":[1,]}`,
	`{"a":"x"` + "\t" + `}`, "{\"a\":\"x\ty\"}", `{"a":.5}`, `{"a":+1}`, `{"a":0x10}`, `{"\u00e9":"k"}`,
	`{"a":"\u0000"}`, "\ufeff{}", `{"a":1}` + "\n",
}

func checkJSONAgainstStd(t *testing.T, in []byte) {
	t.Helper()
	got, err := decodeJSON(in)
	var want map[string]any
	var stdErr error
	if trimmed := bytes.TrimLeft(in, " \t\r\n"); !json.Valid(in) || len(trimmed) == 0 || trimmed[0] != '{' {
		stdErr = errNotObject
	} else {
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.UseNumber()
		stdErr = dec.Decode(&want)
	}
	if (err == nil) != (stdErr == nil) {
		t.Fatalf("%q: decodeJSON error %v, encoding/json error %v", in, err, stdErr)
	}
	if err != nil {
		if strings.ContainsAny(err.Error(), "\n") {
			t.Fatalf("%q: error %q has a line break", in, err)
		}
		return
	}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Fatalf("%q: decodeJSON = %#v, encoding/json = %#v", in, got, want)
	}
}

var errNotObject = errors.New("not one JSON object")

// decodeJSON decodes data as process.json does without a projection and
// returns the fields as Go values.
func decodeJSON(data []byte) (map[string]any, error) {
	ev := &stage.Event{Payload: data}
	var d decoder
	if err := (&jsonHandler{}).decode(&d, ev); err != nil {
		return nil, err
	}
	m := fieldMap(ev)
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// normalize turns int64 into json.Number so the two decoders compare.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = normalize(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = normalize(e)
		}
		return a
	case int64:
		return x
	case json.Number:
		if n, err := x.Int64(); err == nil && !strings.ContainsAny(string(x), ".eE") {
			return n
		}
		return x
	}
	return v
}

// BenchmarkJSON is process.json on B3's record, decoding every field (as
// before a process.func) and only what B3's sink reads (id; the body is
// the record itself).
func BenchmarkJSON(b *testing.B) {
	payload := []byte(`{"id":123,"host":"web-7.example.com","level":"info","msg":"request handled in 12 ms status=200"}`)
	for _, c := range []struct {
		name  string
		paths []string
	}{{"all", nil}, {"projected", []string{"id"}}} {
		b.Run(c.name, func(b *testing.B) {
			h := mustBuild(b, "process.json", map[string]any{"require": []string{"id"}}).(*jsonHandler)
			h.Project(c.paths, c.paths == nil)
			// The events are made once and reused: the benchmark measures
			// the handler, not the source's allocation of events.
			const batchSize = 64
			batch := make([]*stage.Event, batchSize)
			for i := range batch {
				batch[i] = &stage.Event{Payload: payload}
			}
			out := discard{}
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			n := 0
			for b.Loop() {
				n++
				if n == batchSize {
					n = 0
					if err := h.Handle(b.Context(), batch, out); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// discard is an Emitter that drops what it is given.
type discard struct{}

func (discard) Emit(context.Context, *stage.Event) error           { return nil }
func (discard) EmitTo(context.Context, string, *stage.Event) error { return nil }
func (discard) Flush(context.Context)                              {}

// BenchmarkJSONStd is encoding/json with UseNumber, a decoder per record,
// for comparison.
func BenchmarkJSONStd(b *testing.B) {
	payload := []byte(`{"id":123,"host":"web-1","level":"info","msg":"user logged in","ts":1700000000123}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			b.Fatal(err)
		}
	}
}

// With a projection, only the wanted paths become fields (each under its
// own name), with the values a full decode gives them; the rest of the
// record is still checked.
func TestJSONProjection(t *testing.T) {
	h := mustBuild(t, "process.json", map[string]any{"require": []string{"id"}}).(*jsonHandler)
	h.Project([]string{"host", "user.name", "user", "tags", "missing.x", "$"}, false)
	out, done, _ := run(t, h,
		`{"id":1,"host":"web-1","level":"info","user":{"name":"ann","age":3},"tags":["a",{"b":1}],"big":{"x":[1,2,{"y":"\u00e9"}]}}`,
		`{"id":2,"host":"h\tx","user":"flat","junk":{"a":[1,2,tru]}}`,
		`{"host":"no id"}`,
		`{"id":3,"user":{"name":"a\u00e9\n"},"user":{"name":"second"}}`,
	)
	if got := out.seqs(""); !reflect.DeepEqual(got, []uint64{1, 4}) {
		t.Fatalf("emitted %v, want [1 4]", got)
	}
	want := map[string]any{"id": int64(1), "host": "web-1", "user.name": "ann",
		"user": map[string]any{"name": "ann", "age": int64(3)}, "tags": []any{"a", map[string]any{"b": int64(1)}}}
	if got := fieldMap(out.calls[0].ev); !reflect.DeepEqual(got, want) {
		t.Errorf("fields = %#v\nwant %#v", got, want)
	}
	// Duplicate keys: the last one wins, as without a projection.
	if got, _ := out.calls[1].ev.Field("user.name"); got != "second" {
		t.Errorf("user.name = %#v, want second", got)
	}
	if !strings.Contains(done.seqs[2], "in literal true") {
		t.Errorf("record 2 (bad JSON in a member nobody reads) finished with %q", done.seqs[2])
	}
	if done.seqs[3] != `stage "t": missing field "id"` {
		t.Errorf("record 3 finished with %q", done.seqs[3])
	}
}

// A projected string that needed unescaping, or held invalid UTF-8, is a
// copy owned by the event; a plain one aliases the payload.
func TestJSONProjectedStrings(t *testing.T) {
	h := &jsonHandler{}
	h.Project([]string{"a", "b", "c", "o"}, false)
	ev := &stage.Event{Payload: []byte("{\"a\":\"plain\",\"b\":\"x\\\"y\\u00e9\",\"c\":\"bad\xff\",\"o\":{\"k\":\"bad\xfe\"}}")}
	var d decoder
	if err := h.decode(&d, ev); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]any{"a": "plain", "b": `x"yé`, "c": "bad\ufffd", "o": map[string]any{"k": "bad\ufffd"}} {
		if got, _ := ev.Field(path); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	if v, _ := ev.Value("a"); &v.Bytes()[0] != &ev.Payload[6] {
		t.Error("a plain string was copied")
	}
}

// Decoding a light record into the fields a sink reads allocates nothing.
func TestJSONProjectionDoesNotAllocate(t *testing.T) {
	h := &jsonHandler{}
	h.Project([]string{"id", "host", "msg"}, false)
	payload := []byte(`{"id":12345,"host":"web-7.example.com","level":"info","msg":"request handled in 12 ms","tags":["a","b"]}`)
	ev := &stage.Event{Payload: payload}
	var d decoder
	allocs := testing.AllocsPerRun(200, func() {
		if err := h.decode(&d, ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per record, want 0", allocs)
	}
	full := &jsonHandler{}
	full.decode(&d, ev) // the names are interned on first sight
	allocs = testing.AllocsPerRun(200, func() { full.decode(&d, ev) })
	if allocs != 0 {
		t.Fatalf("full decode: %v allocations per record, want 0", allocs)
	}
}

func FuzzStringRun(f *testing.F) {
	for _, s := range []string{"", "abc", `abcdefgh"`, `abcdefghijklmnop\`, "é\"", "abcdefg\x1f", "abcdefghi\x80jk\"", "\x7f\x80\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, high := 0, false
		for want < len(b) && b[want] != '"' && b[want] != '\\' && b[want] >= 0x20 {
			high = high || b[want] >= 0x80
			want++
		}
		if n, h := stringRun(b); n != want || h != high {
			t.Fatalf("stringRun(%q) = %d, %v; want %d, %v", b, n, h, want, high)
		}
	})
}

// A dotted top-level key that takes a path without holding it hides, as in
// a full decode, what a shorter wanted path holds below: "a.b" is {} so
// a.b.c is missing, though "a" (also read) holds a.b.c = 0.
func TestJSONProjectionDottedKeyHides(t *testing.T) {
	for _, c := range []struct {
		data  string
		paths []string
	}{
		{`{"a.b":{},"a":{"b":{"c":0}}}`, []string{"a.b.c", "a"}},
		{`{"a":{"b":{"c":0}},"a.b":5}`, []string{"a", "a.b.c"}},
		{`{"a":{"b":{"c":{"d":0}}},"a.b":{"c":{"d":1}},"a.b.c":[]}`, []string{"a", "a.b.c.d", "a.b.x"}},
	} {
		var d decoder
		full := &stage.Event{Payload: []byte(c.data)}
		if err := (&jsonHandler{}).decode(&d, full); err != nil {
			t.Fatal(err)
		}
		h := &jsonHandler{}
		h.Project(c.paths, false)
		proj := &stage.Event{Payload: []byte(c.data)}
		if err := h.decode(&d, proj); err != nil {
			t.Fatal(err)
		}
		for _, p := range c.paths {
			v, ok := full.Field(p)
			pv, pok := proj.Field(p)
			if pok != ok || !reflect.DeepEqual(pv, v) {
				t.Errorf("%s: %s projected on %q = %#v %v, full decode %#v %v", c.data, p, c.paths, pv, pok, v, ok)
			}
		}
	}
}

// Objects and arrays nest at most maxDepth deep, the record itself
// counting as one, decoded whole or projected; the kind's doc (the
// README's reference) gives the limit.
func TestJSONNestingLimit(t *testing.T) {
	nest := func(n int) string { // n levels, the record's object included
		return `{"a":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `}`
	}
	for _, proj := range [][]string{nil, {"a"}, {"b"}} {
		h := &jsonHandler{}
		h.Project(proj, proj == nil)
		var d decoder
		if err := h.decode(&d, &stage.Event{Payload: []byte(nest(maxDepth))}); err != nil {
			t.Errorf("projected on %q: %d levels: %v", proj, maxDepth, err)
		}
		err := h.decode(&d, &stage.Event{Payload: []byte(nest(maxDepth + 1))})
		if want := "invalid json: nesting deeper than 512 at offset 516"; err == nil || err.Error() != want {
			t.Errorf("projected on %q: %d levels: %v, want %s", proj, maxDepth+1, err, want)
		}
	}
	k, ok := testRegistry.Lookup("process.json")
	if !ok || !strings.Contains(k.Doc, "nest at most "+strconv.Itoa(maxDepth)+" deep") {
		t.Errorf("process.json's doc does not give the nesting limit (%d)", maxDepth)
	}
}

// An object or array read below a top-level member ("req.headers") has
// the same type and text whether process.json decoded that path alone (a
// projection) or every member (the stages after it may read any field: a
// process.func, a queue on NATS): the text as sent, keys in their order,
// spacing and <>& kept, so that a sink stores the same for the same YAML.
func TestJSONNestedTextSameProjectedOrNot(t *testing.T) {
	rec := `{"id":1,"req":{"headers":{"z":"<a&b>",  "a":[1, 2],"m":{"y":1,"x":2}},"list":[ {"k":"v"} ,3]}}`
	paths := []string{"req.headers", "req.list", "req.headers.m", "req.list.0", "req.headers.a"}
	full, proj := &jsonHandler{}, &jsonHandler{}
	proj.Project(paths, false)
	var d1, d2 decoder
	e1, e2 := &stage.Event{Payload: []byte(rec)}, &stage.Event{Payload: []byte(rec)}
	if err := full.decode(&d1, e1); err != nil {
		t.Fatal(err)
	}
	if err := proj.decode(&d2, e2); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		v1, ok1 := e1.Value(p)
		v2, ok2 := e2.Value(p)
		if ok1 != ok2 || v1.Type() != v2.Type() || string(v1.Bytes()) != string(v2.Bytes()) {
			t.Errorf("%s: every member decoded: %v %v %q; projected: %v %v %q", p, ok1, v1.Type(), v1.Bytes(), ok2, v2.Type(), v2.Bytes())
		}
	}
	if v, _ := e1.Value("req.headers"); string(v.Bytes()) != `{"z":"<a&b>",  "a":[1, 2],"m":{"y":1,"x":2}}` {
		t.Errorf("req.headers = %v %q, want its text as sent", v.Type(), v.Bytes())
	}
}
