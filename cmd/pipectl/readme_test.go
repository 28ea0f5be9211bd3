package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/pipeline"
)

const repoRoot = "../.."

// TestReadmeGenerated fails when README.md's reference or embedding
// example differs from what `pipectl doc --update README.md` (make docs)
// writes.
func TestReadmeGenerated(t *testing.T) {
	path := filepath.Join(repoRoot, "README.md")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	secs, err := readmeSections(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	want, err := replaceSections(string(old), secs)
	if err != nil {
		t.Fatal(err)
	}
	if want != string(old) {
		t.Errorf("README.md's generated sections are out of date: run `make docs`")
	}
}

// TestReadmeSyslogExample checks that the syslog pipeline the README shows
// loads and builds.
func TestReadmeSyslogExample(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(text), "<!-- syslog:begin -->\n```yaml\n")
	yaml, _, ok2 := strings.Cut(rest, "```\n<!-- syslog:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no syslog example between its markers")
	}
	reg, err := newRegistry()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pipeline.Parse("README.md#syslog", []byte(yaml), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(throwawayStages(cfg)) != 1 {
		t.Fatal("the syslog example's store should take a throwaway PostgreSQL")
	}
	for _, sc := range throwawayStages(cfg) {
		sc.Config.Set("dsn", lintDSN)
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestReplaceSections(t *testing.T) {
	secs := []generatedSection{{"<!-- a:begin -->", "<!-- a:end -->", "new"}}
	got, err := replaceSections("x\n<!-- a:begin -->\nold\nlines\n<!-- a:end -->\ny\n", secs)
	if err != nil || got != "x\n<!-- a:begin -->\nnew\n<!-- a:end -->\ny\n" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := replaceSections("no markers", secs); err == nil {
		t.Error("no error without markers")
	}
}
