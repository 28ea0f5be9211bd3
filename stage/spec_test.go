package stage

// This file tests specs and configs: Register's checks of kinds and
// specs, byte sizes, Config's getters, Bind, formatting values, and the
// default capacity.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/port"
)

func nopHandler(Config, Env) (Handler, error) {
	return HandlerFunc(func(context.Context, []*Event, Emitter) error { return nil }), nil
}

func TestRegisterRejectsBadKinds(t *testing.T) {
	r := NewRegistry()
	if err := r.Register(Kind{Name: "x.ok", NewHandler: nopHandler, Fields: []Field{{Name: "a", Type: String}}}); err != nil {
		t.Fatal(err)
	}
	cases := map[string]Kind{
		"already registered": {Name: "x.ok", NewHandler: nopHandler},
		"no name":            {NewHandler: nopHandler},
		"exactly one":        {Name: "x.none"},
		"declared twice":     {Name: "x.dup", NewHandler: nopHandler, Fields: []Field{{Name: "a"}, {Name: "a"}}},
		"common to every":    {Name: "x.common", NewHandler: nopHandler, Fields: []Field{{Name: "workers", Type: Int}}},
		"sub-fields":         {Name: "x.obj", NewHandler: nopHandler, Fields: []Field{{Name: "o", Type: Object}}},
	}
	for want, k := range cases {
		err := r.Register(k)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v", want, err)
		}
	}
	if ks := r.Kinds(); len(ks) != 1 || ks[0].Name != "x.ok" {
		t.Errorf("kinds %v", ks)
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{"0": 0, "65536": 65536, "64KiB": 65536, "64kib": 65536, "2MB": 2000000, "1 MiB": 1 << 20, "3GiB": 3 << 30, "10B": 10}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "KiB", "-1", "1.5MiB", "64XB", "99999999999999999999", "9000000000GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}

func TestConfigAccessors(t *testing.T) {
	c := NewConfig(map[string]any{"s": "x", "n": 3, "l": []string{"a"}, "p": [][2]string{{"k", "v"}}})
	c.SetDefault("n", 9)
	c.SetDefault("d", "def")
	if c.String("s") != "x" || c.Int("n") != 3 || c.String("d") != "def" || len(c.Strings("l")) != 1 || c.Pairs("p")[0][1] != "v" {
		t.Fatalf("config %+v", c)
	}
	if !c.Has("n") || c.Has("d") {
		t.Fatal("Has should tell given values from defaults")
	}
}

// A getter never quietly returns zero: an unknown name or the wrong type
// is a bug in the kind, and panics with a message that names the field.
func TestConfigGettersFailLoudly(t *testing.T) {
	spec := []Field{
		{Name: "s", Type: String},
		{Name: "n", Type: Int, Default: 7},
		{Name: "o", Type: Object, Fields: []Field{{Name: "d", Type: Duration, Default: 2 * time.Second}}},
	}
	bound, err := Bind(spec, NewConfig(map[string]any{"s": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if bound.Int("n") != 7 || bound.Object("o").Duration("d") != 2*time.Second || bound.String("s") != "x" {
		t.Fatalf("defaults not filled: %+v", bound)
	}
	unset, _ := Bind(spec, NewConfig(nil))
	if unset.String("s") != "" {
		t.Fatal("a declared, absent field without a default reads as zero")
	}
	cases := map[string]func(){
		`no field "typo"`:             func() { bound.String("typo") },
		`field "s" is a string, read`: func() { bound.Int("s") },
		`no field "x"`:                func() { bound.Has("x") },
		`no value for "m"`:            func() { NewConfig(nil).Int("m") },
		`holds a string, read as`:     func() { NewConfig(map[string]any{"m": "1"}).Int("m") },
		`no field "dd"`:               func() { bound.Object("o").Duration("dd") },
	}
	for want, fn := range cases {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), want) {
					t.Errorf("want a panic with %q, got %v", want, r)
				}
			}()
			fn()
		}()
	}
}

// Bind checks given values against the spec, as the loader does a file.
func TestBindChecksValues(t *testing.T) {
	spec := []Field{
		{Name: "mode", Type: String, Default: "a", Enum: []string{"a", "b"}},
		{Name: "n", Type: Int, Range: Between(1, 10)},
		{Name: "size", Type: Size, Range: AtLeast(16)},
		{Name: "req", Type: String, Required: true},
		{Name: "o", Type: ObjectList, Fields: []Field{{Name: "d", Type: Duration, Range: AtLeast(int64(time.Millisecond))}}},
	}
	_, err := Bind(spec, NewConfig(map[string]any{
		"mode": "c", "n": 11, "size": int64(8), "extra": 1, "o": []Config{NewConfig(map[string]any{"d": time.Microsecond})},
	}))
	for _, want := range []string{
		`mode: want a or b, got "c"`,
		"n: 11 is out of range: want 1 to 10",
		"size: 8 is out of range: want at least 16",
		"extra: unknown key",
		"req: required",
		"o.0.d: 1µs is out of range: want at least 1ms",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

// Bind refuses a secret field's value as it refuses any, saying what the
// field allows, but never quotes the value: a Config built in code is
// checked by Bind alone, and its error is logged (before, a refused DSN
// or token was quoted whole).
func TestBindHidesRefusedSecrets(t *testing.T) {
	spec := []Field{
		{Name: "dsn", Type: String, Secret: true, Enum: []string{"x", "y"}},
		{Name: "pin", Type: Int, Secret: true, Range: Between(1, 5)},
		{Name: "keys", Type: StringList, Secret: true, Enum: []string{"k1", "k2"}},
	}
	_, err := Bind(spec, NewConfig(map[string]any{"dsn": "SECRET1", "pin": 12345, "keys": []string{"k1", "SECRET3"}}))
	if err == nil {
		t.Fatal("Bind took refused secrets")
	}
	for _, leak := range []string{"SECRET1", "12345", "SECRET3"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("Bind's error shows %q: %v", leak, err)
		}
	}
	for _, want := range []string{"dsn: want x or y (the value is not shown", "pin: out of range: want 1 to 5 (the value",
		"keys: item 1: want k1 or k2 (the value"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

// A broken spec is the kind author's error, found by Register.
func TestRegisterChecksSpec(t *testing.T) {
	cases := map[string][]Field{
		"wrong type for an int field: want a Go int": {{Name: "n", Type: Int, Default: "64"}},
		"want a Go int64 (bytes)":                    {{Name: "s", Type: Size, Default: 64}},
		"out of range":                               {{Name: "n", Type: Int, Default: 0, Range: AtLeast(1)}},
		`want a or b, got "c"`:                       {{Name: "m", Type: String, Default: "c", Enum: []string{"a", "b"}}},
		"an enum applies to":                         {{Name: "n", Type: Int, Enum: []string{"1"}}},
		"a range applies to":                         {{Name: "m", Type: String, Range: AtLeast(1)}},
		"required field has no":                      {{Name: "m", Type: String, Required: true, Default: "x"}},
		"range min 5 is above its max":               {{Name: "n", Type: Int, Range: Between(5, 1)}},
	}
	for want, fs := range cases {
		err := NewRegistry().Register(Kind{Name: "x.k", NewHandler: nopHandler, Fields: fs})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v", want, err)
		}
	}
}

func TestFormatValues(t *testing.T) {
	f := Field{Type: Size}
	for v, want := range map[int64]string{65536: "64KiB", 1 << 20: "1MiB", 1000: "1000", 0: "0", 3 << 30: "3GiB"} {
		if got := f.FormatValue(v); got != want {
			t.Errorf("FormatValue(%d) = %q, want %q", v, got, want)
		}
	}
	for d, want := range map[time.Duration]string{5 * time.Minute: "5m", 2 * time.Second: "2s", 250 * time.Millisecond: "250ms", 0: "0s", time.Hour: "1h", 90 * time.Second: "1m30s"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// The default queue holds two of the largest auto batches (see
// port.DefaultCapacity): the two facts are kept in two packages.
func TestDefaultCapacityHoldsTwoAutoBatches(t *testing.T) {
	if port.DefaultCapacity != 2*MaxAutoBatch {
		t.Fatalf("port.DefaultCapacity %d, want 2*MaxAutoBatch = %d", port.DefaultCapacity, 2*MaxAutoBatch)
	}
	s := Settings{Terminal: true}.WithDefaults()
	if s.Capacity != 2*MaxAutoSinkBatch || s.Batch != MaxAutoSinkBatch {
		t.Fatalf("a terminal stage's defaults: capacity %d, batch %d; want %d, %d", s.Capacity, s.Batch, 2*MaxAutoSinkBatch, MaxAutoSinkBatch)
	}
}
