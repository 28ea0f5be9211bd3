package main

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
