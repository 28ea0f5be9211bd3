package pipeline

import (
	"fmt"
	"strings"
	"testing"
)

func TestGraph(t *testing.T) {
	cfg := mustParse(t, `name: g
stages:
  in:
    kind: test.source
    listen: x
    queue: {capacity: 10}
    next: split
  split:
    kind: test.route
    routes: [{if: a, next: out}, {if: b, next: side}]
    next: side
  side:
    kind: test.handler
    inline: true
    next: out
  out:
    kind: test.sink
    table: t
`, nil)
	for _, tc := range []struct{ format, want string }{
		{"dot", `digraph "g" {
	rankdir=LR;
	node [shape=box];
	n0 [label="in\ntest.source\nqueue 10"];
	n1 [label="split\ntest.route\nqueue 8192"];
	n2 [label="side\ntest.handler\n(inline)", style=dashed];
	n3 [label="out\ntest.sink\nqueue 32768"];
	n0 -> n1;
	n1 -> n2;
	n1 -> n3 [style=dashed];
	n2 -> n3;
}
`},
		{"mermaid", `flowchart LR
	n0["in<br/>test.source<br/>queue 10"]
	n1["split<br/>test.route<br/>queue 8192"]
	n2["side<br/>test.handler<br/>(inline)"]
	n3["out<br/>test.sink<br/>queue 32768"]
	n0 --> n1
	n1 --> n2
	n1 -.-> n3
	n2 --> n3
`},
	} {
		var b strings.Builder
		if err := cfg.Graph(&b, tc.format); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.format, b.String(), tc.want)
		}
	}
	if err := cfg.Graph(&strings.Builder{}, "svg"); err == nil || !strings.Contains(err.Error(), `unknown format "svg"`) {
		t.Errorf("unknown format: %v", err)
	}
}

// TestGraphHandBuilt draws a Config built in code, without Routes, and
// escapes names that would break the output.
func TestGraphHandBuilt(t *testing.T) {
	cfg := &Config{Name: `a "b"`, Stages: []*StageConfig{
		{Name: `x"y`, Kind: "k<1>", Next: "z"},
		{Name: "z", Kind: "k"},
	}}
	var b strings.Builder
	if err := cfg.Graph(&b, "dot"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`digraph "a \"b\"" {`, `n0 [label="x\"y\nk<1>\nqueue 8192"];`, "n0 -> n1;"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dot output lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := cfg.Graph(&b, "mermaid"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`n0["x#quot;y<br/>k#lt;1#gt;<br/>queue 8192"]`, "n0 --> n1"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("mermaid output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestCycles(t *testing.T) {
	// 0 -> 1 -> 2 -> 0, 2 -> 3 -> 3 (no self edges in the graph), 4 -> 5 -> 4
	g := [][]edge{{{to: 1}}, {{to: 2}}, {{to: 0}, {to: 3}}, {}, {{to: 5}}, {{to: 4}}}
	got := cycles(g)
	want := "[[0 1 2] [4 5]]"
	if s := fmt.Sprint(got); s != want {
		t.Fatalf("cycles = %s, want %s", s, want)
	}
	// A long chain does not exhaust the stack.
	long := make([][]edge, 100000)
	for i := range long {
		long[i] = []edge{{to: (i + 1) % len(long)}}
	}
	if c := cycles(long); len(c) != 1 || len(c[0]) != len(long) {
		t.Fatalf("long cycle: %d cycles", len(c))
	}
}
