package pipeline

// This file tests Config.Graph: the edges it draws, for loaded and
// hand-built configs and every Ref field, and cycles.

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
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

// TestGraphDrawsEveryRefField draws a kind registered here whose own Ref
// fields (a string, a list, and a route-like list of objects) name stages:
// each is an edge, labelled with its field, and a next (the stage's or a
// route's) is not labelled. A Config built in code with the kind's spec
// bound and no Routes gets the same edges.
func TestGraphDrawsEveryRefField(t *testing.T) {
	reg := loaderRegistry(t)
	hnd := func(stage.Config, stage.Env) (stage.Handler, error) { return nil, errors.New("fake") }
	spill := []stage.Field{
		{Name: "spill", Type: stage.String, Ref: true, Doc: "where events go when the main way is full"},
		{Name: "copies", Type: stage.StringList, Ref: true, Doc: "stages that get a copy"},
		{Name: "ways", Type: stage.ObjectList, Doc: "conditional ways", Fields: []stage.Field{
			{Name: "if", Type: stage.String, Doc: "condition"},
			{Name: "next", Type: stage.String, Ref: true, Doc: "target"},
		}},
	}
	if err := reg.Register(stage.Kind{Name: "test.spill", Doc: "A kind with Ref fields of its own.", NewHandler: hnd, Fields: spill}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("p.yaml", []byte(`name: g
stages:
  in: {kind: test.source, listen: x, next: a}
  a:
    kind: test.spill
    next: main
    spill: over
    copies: [audit, main]
    ways: [{if: x, next: side}]
  main: {kind: test.sink, table: t}
  over: {kind: test.sink, table: t}
  audit: {kind: test.sink, table: t}
  side: {kind: test.sink, table: t}
`), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	const dotEdges = `	n0 -> n1;
	n1 -> n2 [label="copies"];
	n1 -> n3 [style=dashed, label="spill"];
	n1 -> n4 [style=dashed, label="copies"];
	n1 -> n5 [style=dashed];
}
`
	const mermaidEdges = `	n0 --> n1
	n1 -->|"copies"| n2
	n1 -.->|"spill"| n3
	n1 -.->|"copies"| n4
	n1 -.-> n5
`
	check := func(what string, cfg *Config) {
		t.Helper()
		for _, tc := range []struct{ format, want string }{{"dot", dotEdges}, {"mermaid", mermaidEdges}} {
			var b strings.Builder
			if err := cfg.Graph(&b, tc.format); err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(b.String(), tc.want) {
				t.Errorf("%s, %s: edges:\n%s\nwant them to end:\n%s", what, tc.format, b.String(), tc.want)
			}
		}
	}
	check("loaded", cfg)

	// Built in code: the kind's spec bound to the stage's Config, no Routes.
	bound, err := stage.Bind(spill, stage.NewConfig(map[string]any{
		"spill": "over", "copies": []string{"audit", "main"},
		"ways": []stage.Config{stage.NewConfig(map[string]any{"if": "x", "next": "side"})},
	}))
	if err != nil {
		t.Fatal(err)
	}
	hand := &Config{Name: "g"}
	for _, sc := range cfg.Stages {
		c := *sc
		c.Routes = nil
		if c.Name == "a" {
			c.Config = bound
		}
		hand.Stages = append(hand.Stages, &c)
	}
	check("built in code", hand)
}
