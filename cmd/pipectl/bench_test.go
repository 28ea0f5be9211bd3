package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchSelect(t *testing.T) {
	all := benchmarks()
	got, err := selectBenchmarks(all, []string{"B2", "b1"})
	if err != nil || len(got) != 2 || got[0].Name != "b2" || got[1].Name != "b1" {
		t.Errorf("select b2,b1: %v, %v", got, err)
	}
	if _, err := selectBenchmarks(all, []string{"b9"}); err == nil || !strings.Contains(err.Error(), "b1, b2") {
		t.Errorf("unknown benchmark: %v", err)
	}
	if got, _ := selectBenchmarks(all, nil); len(got) != len(all) {
		t.Errorf("no --only: %d benchmarks", len(got))
	}
}

// TestBenchResultsSections checks that a benchmark's section of
// RESULTS.md is replaced in place, other sections and text kept, and that
// new sections keep the suite's order.
func TestBenchResultsSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	b1, b2 := benchmarks()[0], benchmarks()[1]
	steps := []struct {
		b    benchmark
		body string
	}{{b2, "b2 first\n"}, {b1, "b1 first\n"}, {b2, "b2 second\n"}}
	for _, s := range steps {
		if err := updateResults(path, s.b, s.body); err != nil {
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
