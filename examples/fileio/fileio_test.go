package fileio_test

// This file tests the two kinds with real files: many lines, and what a
// missing file does.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/examples/fileio"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func run(t *testing.T, yaml string) (*pipeline.Pipeline, error) {
	t.Helper()
	reg := stage.NewRegistry()
	if err := fileio.Register(reg); err != nil {
		t.Fatal(err)
	}
	cfg, err := pipeline.Parse("t.yaml", []byte(yaml), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return p, p.Run(ctx)
}

// Every line of a large file is written once, in order with one worker,
// and the run ends by itself with a complete drain.
func TestEveryLineWritten(t *testing.T) {
	const n = 50_000
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.txt"), filepath.Join(dir, "out.jsonl")
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := run(t, fmt.Sprintf("name: t\nstages:\n  read: {kind: file.lines, path: %q, next: write}\n  write: {kind: file.jsonl, path: %q, workers: 1, concurrency: 1}\n", in, out))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	i := 0
	for ; sc.Scan(); i++ {
		var rec struct{ Payload string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Payload != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d: %s (%v)", i, sc.Bytes(), err)
		}
	}
	if i != n {
		t.Fatalf("%d lines written, want %d", i, n)
	}
	s := p.Stats()
	if s.State != "stopped" || s.Stages[0].In != n || s.Stages[1].Out != n || s.Stages[0].InFlight != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

// A file that cannot be opened stops the pipeline from starting, and the
// error names the stage.
func TestMissingFile(t *testing.T) {
	dir := t.TempDir()
	_, err := run(t, fmt.Sprintf("name: t\nstages:\n  read: {kind: file.lines, path: %q, next: write}\n  write: {kind: file.jsonl, path: %q}\n",
		filepath.Join(dir, "none.txt"), filepath.Join(dir, "out.jsonl")))
	if err == nil || !strings.Contains(err.Error(), `stage "read"`) {
		t.Fatalf("Run: %v", err)
	}
}

// The sink finishes its events as written only once the file is synced:
// /dev/null takes the writes but refuses fsync (EINVAL on Linux), so every
// event is refused, none acknowledged.
func TestUnsyncedNotAcked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("relies on Linux refusing fsync on /dev/null")
	}
	const n = 10
	in := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(in, []byte(strings.Repeat("line\n", n)), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := run(t, fmt.Sprintf("name: t\nstages:\n  read: {kind: file.lines, path: %q, next: write}\n  write: {kind: file.jsonl, path: /dev/null}\n", in))
	s := p.Stats()
	if w := s.Stages[1]; w.In != n || w.Out != 0 || w.Errors == 0 {
		t.Fatalf("write: in %d out %d errors %d, want %d in, none out and errors", w.In, w.Out, w.Errors, n)
	}
}
