package db

// This file tests the conversion of decoded values for their columns:
// JSON integers into a boolean column, and integers out of range.

import (
	"context"
	"testing"

	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/process"
)

// decoded returns events with seqs 1, 2, ... whose fields process.json
// decoded from payloads, as a pipeline's decoder would, so that the sink
// sees the value types the decoder gives (an integer as an Int).
func decoded(t *testing.T, rec *recorder, payloads ...string) []*stage.Event {
	t.Helper()
	reg := stage.NewRegistry()
	if err := process.Register(reg); err != nil {
		t.Fatal(err)
	}
	kind, _ := reg.Lookup("process.json")
	cfg, err := stage.Bind(kind.Fields, stage.NewConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	h, err := kind.NewHandler(cfg, stage.Env{Stage: "parse"})
	if err != nil {
		t.Fatal(err)
	}
	var batch []*stage.Event
	for i, p := range payloads {
		batch = append(batch, src.NewEvent([]byte(p), uint64(i+1), stage.Origin{To: rec, Key: 1}))
	}
	if err := h.Handle(context.Background(), batch, discard{}); err != nil {
		t.Fatal(err)
	}
	for _, ev := range batch {
		if ev.Finished() {
			t.Fatalf("process.json refused record %d", ev.Seq)
		}
	}
	return batch
}

// discard is the emitter of decoded: the decoded events stay with it.
type discard struct{}

func (discard) Emit(context.Context, *stage.Event) error           { return nil }
func (discard) EmitTo(context.Context, string, *stage.Event) error { return nil }
func (discard) Flush(context.Context)                              {}

// TestJSONIntegerIntoBoolean: process.json gives a JSON integer as an
// Int, and 0 and 1 from it go into a boolean column as false and true,
// as they do when they come as text or as a json.Number; other integers
// are refused, naming the column.
func TestJSONIntegerIntoBoolean(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			db := connect(t, dsn)
			s := startSink(t, config(dsn, map[string]any{"method": method,
				"columns": [][2]string{{"id", "id"}, {"b", "b"}}, "types": [][2]string{{"id", "bigint"}, {"b", "boolean"}}}))
			rec := &recorder{}
			batch := decoded(t, rec, `{"id":1,"b":1}`, `{"id":2,"b":0}`, `{"id":3,"b":"1"}`, `{"id":4,"b":true}`, `{"id":5,"b":2}`)
			if v, _ := batch[0].Value("b"); v.Type() != stage.ValueInt {
				t.Fatalf("process.json gave b as %s, want an Int", v.Type())
			}
			handle(t, s, batch)
			acked, nacked := rec.results()
			if want := `stage "store": record 5: column "b" (field b): int64 "2" is not a boolean`; acked != 4 || len(nacked) != 1 ||
				nacked[5] == nil || nacked[5].Error() != want {
				t.Fatalf("acked %d, nacked %v; want record 5 nacked with %s", acked, nacked, want)
			}
			var got string
			if err := db.QueryRow(context.Background(), "SELECT string_agg(id || ':' || b, ' ' ORDER BY id) FROM events").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if want := "1:true 2:false 3:true 4:true"; got != want {
				t.Fatalf("stored %s, want %s", got, want)
			}
		})
	}
}

// TestIntegerOutOfRangeNamesColumnType: an integer past a smallint or
// integer column's range is refused naming the column and its type, in
// COPY's binary and text formats and under method insert: one beyond
// int64 was refused as "out of range for bigint", whatever the column's
// type; one within int64 went to PostgreSQL in the text format and under
// insert, whose cast refused it naming no column there.
func TestIntegerOutOfRangeNamesColumnType(t *testing.T) {
	for _, v := range []struct{ name, method, amount string }{
		{"copy-binary", "copy", "bigint"}, {"copy-text", "copy", "numeric"}, {"insert", "insert", "bigint"},
	} {
		t.Run(v.name, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			exec(t, connect(t, dsn), "CREATE TABLE events (id bigint PRIMARY KEY, s smallint, i integer, amount "+v.amount+")")
			s := startSink(t, config(dsn, map[string]any{"create": false, "method": v.method,
				"columns": [][2]string{{"id", "id"}, {"s", "s"}, {"i", "i"}, {"amount", "amount"}}}))
			rec := &recorder{}
			handle(t, s, decoded(t, rec, `{"id":1,"s":32767,"i":-2147483648}`, `{"id":2,"s":9223372036854775808}`,
				`{"id":3,"i":"1e19"}`, `{"id":4,"s":32768}`, `{"id":5,"i":-2147483649}`, `{"id":6,"i":-18446744073709551616}`))
			acked, nacked := rec.results()
			if acked != 1 || len(nacked) != 5 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			for seq, want := range map[uint64]string{
				2: `stage "store": record 2: column "s" (field s): json.Number "9223372036854775808" is out of range for smallint`,
				3: `stage "store": record 3: column "i" (field i): string "1e19" is out of range for integer`,
				4: `stage "store": record 4: column "s" (field s): 32768 is out of range for smallint`,
				5: `stage "store": record 5: column "i" (field i): -2147483649 is out of range for integer`,
				6: `stage "store": record 6: column "i" (field i): json.Number "-18446744073709551616" is out of range for integer`,
			} {
				if err := nacked[seq]; err == nil || err.Error() != want || stage.ErrorClass(err) != "invalid" {
					t.Errorf("record %d nacked with %v, want %s", seq, err, want)
				}
			}
		})
	}
}

// TestIntegerOutOfRange: an integer too large for an int64 is refused for
// an integer column as out of range for bigint, not as "not an integer",
// which read as a syntax error: digits, an integral float, and a JSON
// number with an exponent or a fraction whose value is integral (1e19,
// which was "not an integer"); a number that is no integer, and text that
// is none, are refused as before.
func TestIntegerOutOfRange(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, config(dsn, map[string]any{"columns": [][2]string{{"id", "id"}, {"n", "n"}},
		"types": [][2]string{{"id", "bigint"}, {"n", "bigint"}}}))
	rec := &recorder{}
	handle(t, s, decoded(t, rec, `{"id":1,"n":9223372036854775807}`, `{"id":2,"n":9223372036854775808}`, `{"id":3,"n":"-9223372036854775809"}`,
		`{"id":4,"n":1e19}`, `{"id":5,"n":-1.5E+30}`, `{"id":6,"n":1.5e-3}`, `{"id":7,"n":9.2e18}`))
	acked, nacked := rec.results()
	if acked != 2 || len(nacked) != 5 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
	for seq, want := range map[uint64]string{
		2: `stage "store": record 2: column "n" (field n): json.Number "9223372036854775808" is out of range for bigint`,
		3: `stage "store": record 3: column "n" (field n): string "-9223372036854775809" is out of range for bigint`,
		4: `stage "store": record 4: column "n" (field n): json.Number "1e19" is out of range for bigint`,
		5: `stage "store": record 5: column "n" (field n): json.Number "-1.5E+30" is out of range for bigint`,
		6: `stage "store": record 6: column "n" (field n): json.Number "1.5e-3" is not an integer`,
	} {
		if err := nacked[seq]; err == nil || err.Error() != want {
			t.Errorf("record %d nacked with %v, want %s", seq, err, want)
		}
	}
	for _, c := range []struct {
		v    stage.Value
		want string
	}{
		{stage.FloatValue(1e19), `float64 "1e+19" is out of range for bigint`},
		{stage.FloatValue(-1e30), `float64 "-1e+30" is out of range for bigint`},
		{stage.FloatValue(1e300), `float64 "1e+300" is out of range for bigint`},
		{stage.NumberValue([]byte("1e19")), `json.Number "1e19" is out of range for bigint`},
		{stage.NumberValue([]byte("10000000000000000000.000")), `json.Number "10000000000000000000.000" is out of range for bigint`},
		{stage.NumberValue([]byte("0.00001e24")), `json.Number "0.00001e24" is out of range for bigint`},
		{stage.NumberValue([]byte("1e999999999999")), `json.Number "1e999999999999" is out of range for bigint`},
		{stage.StringValue("-1E19"), `string "-1E19" is out of range for bigint`},
		{stage.NumberValue([]byte("1.5e-3")), `json.Number "1.5e-3" is not an integer`},
		{stage.NumberValue([]byte("1.00000000000000000001e19")), `json.Number "1.00000000000000000001e19" is not an integer`},
		{stage.NumberValue([]byte("1e-999999999999")), `json.Number "1e-999999999999" is not an integer`},
		{stage.StringValue("1e"), `string "1e" is not an integer`},
		{stage.StringValue("e19"), `string "e19" is not an integer`},
		{stage.StringValue("0x10"), `string "0x10" is not an integer`},
		{stage.ValueOf(uint64(1) << 63), `uint64 "9223372036854775808" is out of range for bigint`},
		{stage.StringValue(" +99999999999999999999 "), `string " +99999999999999999999 " is out of range for bigint`},
		{stage.StringValue("12a"), `string "12a" is not an integer`},
		{stage.StringValue("-"), `string "-" is not an integer`},
		{stage.FloatValue(1.5), `float64 "1.5" is not an integer`},
	} {
		if _, err := toInt(c.v, binInt8); err == nil || err.Error() != c.want {
			t.Errorf("toInt(%v): %v, want %s", c.v, err, c.want)
		}
	}
}
