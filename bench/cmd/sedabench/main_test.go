package main

// This file tests the command: choosing benchmarks, the suite's entries,
// RESULTS.md's sections, a tiny run, and missed targets.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	all := suite()
	got, err := selectBenchmarks(all, []string{"B2", "b1"})
	if err != nil || len(got) != 2 || got[0].Name != "b2" || got[1].Name != "b1" {
		t.Errorf("select b2,b1: %v, %v", got, err)
	}
	if _, err := selectBenchmarks(all, []string{"b99"}); err == nil || !strings.Contains(err.Error(), "b1, b2") {
		t.Errorf("unknown benchmark: %v", err)
	}
	if got, _ := selectBenchmarks(all, nil); len(got) != len(all) {
		t.Errorf("no --only: %d benchmarks", len(got))
	}
}

// TestSuite checks the registrations: names unique and lower case, a
// title and a Run each.
func TestSuite(t *testing.T) {
	seen := map[string]bool{}
	for _, b := range suite() {
		if b.Name == "" || b.Name != strings.ToLower(b.Name) || seen[b.Name] || b.Title == "" || b.Run == nil {
			t.Errorf("bad registration %+v", b)
		}
		seen[b.Name] = true
	}
}

// TestResultsSections checks that a benchmark's section of RESULTS.md is
// replaced in place, other sections and text kept, and that new sections
// keep the suite's order.
func TestResultsSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	all := suite()
	b1, b2 := all[0], all[1]
	steps := []struct {
		b    *benchmark
		body string
	}{{b2, "b2 first\n"}, {b1, "b1 first\n"}, {b2, "b2 second\n"}}
	for _, s := range steps {
		if err := updateResults(path, all, s.b, s.body); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if !strings.HasPrefix(text, "# Benchmark results") {
		t.Errorf("no heading:\n%s", text)
	}
	i1, i2 := strings.Index(text, "b1 first"), strings.Index(text, "b2 second")
	if i1 < 0 || i2 < 0 || i1 > i2 || strings.Contains(text, "b2 first") {
		t.Errorf("sections wrong:\n%s", text)
	}
	if strings.Count(text, "<!-- bench:b2:begin -->") != 1 || strings.Count(text, "## "+b2.Title) != 1 {
		t.Errorf("b2's section repeated:\n%s", text)
	}
}

// TestCommand runs B1 through the command, tiny, with its own flags, and
// checks the section it writes.
func TestCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	cmd := newCommand(suite())
	var out, log bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&log)
	cmd.SetArgs([]string{"--only", "b1", "--runs", "1", "--b1-items", "2000", "--b1-cases", "1P1W", "--b1-guard-tries", "1", "--results", path})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{"<!-- bench:b1:begin -->", "## B1: ", "| 1P1W |", "Command: `sedabench ", "<!-- bench:b1:end -->"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
	if strings.Contains(text, "| 2P2W |") {
		t.Errorf("--b1-cases ignored:\n%s", text)
	}
	if !strings.Contains(out.String(), "results written to") {
		t.Errorf("output: %s", out.String())
	}
}

// TestMisses checks that every target a section marks as missed
// (report.Met(false)) is listed, from table rows and from sentences, and
// that met targets are not.
func TestMisses(t *testing.T) {
	body := "| case | ratio | target | met |\n| --- | --- | --- | --- |\n" +
		"| 1P1W | 1.20 | ≥ 1.0 | yes |\n" +
		"| 2P2W-Batch64 | 4.80 | ≥ 5.0 | **no** |\n\n" +
		"Ratio pipeline / channels (medians): **1.41** (target ≥ 1.5: **no**)\n" +
		"| acked / sustained | 0.78 (target ≥ 0.90: **no**) |\n"
	got := misses("bx", body)
	want := []string{
		"bx: 2P2W-Batch64 | 4.80 | ≥ 5.0",
		"bx: Ratio pipeline / channels (medians): **1.41** (target ≥ 1.5: no)",
		"bx: acked / sustained | 0.78 (target ≥ 0.90: no)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("misses:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := misses("bx", "| 1P1W | 1.20 | ≥ 1.0 | yes |\n"); len(got) != 0 {
		t.Errorf("met target listed: %v", got)
	}
}

// TestStrict runs the command on two stand-in benchmarks, one of which
// misses a target: the missed one is listed after every section, and
// --strict makes the command fail while its absence does not.
func TestStrict(t *testing.T) {
	fake := func(name, body string) *benchmark {
		return &benchmark{Name: name, Title: name, Run: func(context.Context, options) (string, error) { return body, nil }}
	}
	all := []*benchmark{
		fake("bm", "| case | met |\n| --- | --- |\n| slow case | **no** |\n"),
		fake("bk", "| case | met |\n| --- | --- |\n| fast case | yes |\n"),
	}
	for _, strict := range []bool{false, true} {
		cmd := newCommand(all)
		var out, log bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&log)
		args := []string{"--dry-run"}
		if strict {
			args = append(args, "--strict")
		}
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(context.Background())
		if strict != (err != nil) {
			t.Errorf("strict %v: error %v", strict, err)
		}
		text := out.String()
		i := strings.Index(text, "Targets missed (1):\n  bm: slow case\n")
		if i < 0 || i < strings.Index(text, "fast case") || strings.Contains(text[i:], "fast case") {
			t.Errorf("strict %v: output:\n%s", strict, text)
		}
	}
	cmd := newCommand(all[1:])
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--dry-run", "--strict"})
	if err := cmd.ExecuteContext(context.Background()); err != nil || !strings.Contains(out.String(), "Every measured target met.") {
		t.Errorf("all met: %v\n%s", err, out.String())
	}
}

// TestPipectlFlag checks that --pipectl, which `make bench` sets to the
// pipectl it built, reaches every benchmark's options, and that without it
// they get "" (each then builds its own).
func TestPipectlFlag(t *testing.T) {
	for _, args := range [][]string{{"--dry-run", "--pipectl", "/opt/bin/pipectl"}, {"--dry-run"}} {
		var got []string
		b := &benchmark{Name: "bp", Title: "bp", Run: func(_ context.Context, o options) (string, error) {
			got = append(got, o.Pipectl)
			return "body\n", nil
		}}
		cmd := newCommand([]*benchmark{b})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
		want := ""
		if len(args) > 1 {
			want = args[2]
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%v: the benchmark got pipectl %q, want %q", args, got, want)
		}
	}
}
