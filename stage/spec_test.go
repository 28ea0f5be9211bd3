package stage

import (
	"context"
	"strings"
	"testing"
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
	c := NewConfig(map[string]any{"s": "x", "n": 3, "l": []string{"a"}, "p": []Pair{{"k", "v"}}})
	c.SetDefault("n", 9)
	c.SetDefault("d", "def")
	if c.String("s") != "x" || c.Int("n") != 3 || c.String("d") != "def" || len(c.Strings("l")) != 1 || c.Pairs("p")[0].Value != "v" {
		t.Fatalf("config %+v", c)
	}
	if !c.Has("n") || c.Has("d") {
		t.Fatal("Has should tell given values from defaults")
	}
	if c.Int("s") != 0 || c.Bool("missing") {
		t.Fatal("wrong-typed or missing values should read as zero")
	}
}

func TestLatencyQuantiles(t *testing.T) {
	var l latency
	l.init()
	for i := 0; i < 99; i++ {
		l.observe(1_000_000) // 1 ms
	}
	l.observe(100_000_000) // 100 ms
	q := l.quantiles(0.5, 0.99, 1)
	if q[0] < 1 || q[0] > 1.2 || q[1] > 1.2 || q[2] < 100 || q[2] > 120 {
		t.Fatalf("quantiles %v", q)
	}
	for _, ns := range []int64{-5, 0, 7, 8, 9, 1 << 40, 1<<63 - 1} {
		if b := bucketOf(ns); b < 0 || b >= numBuckets || (ns > 0 && bucketUpper(b) < float64(ns)) {
			t.Errorf("bucketOf(%d) = %d (upper %v)", ns, b, bucketUpper(b))
		}
	}
}
