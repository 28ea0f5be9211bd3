package main

// This file tests pipectl db: one local PostgreSQL shared by two
// pipelines, which outlives either of them and comes back with its data.

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/internal/gobuild"
)

// TestDBShared runs the local PostgreSQL with pipectl db start and two
// pipelines on it (pipeline.yaml on two sets of ports, as the syslog
// example beside make run): both use it; kill -9 of one leaves it up for
// the other; the other's SIGTERM drains and leaves it running; db stop
// stops it, and db start brings it back on the same URL with the data.
func TestDBShared(t *testing.T) {
	bin := gobuild.ForTest(t, gobuild.Options{Race: raceBuild})
	dir := filepath.Join(t.TempDir(), "db") // as root: db start grants the postgres user its way in
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() { runCLI(t, "db", "stop", "--data-dir", dir) })

	if code, out, errOut := runCLI(t, "db", "status", "--data-dir", dir); code != 3 || !strings.Contains(out, "no local database") {
		t.Errorf("db status before any start: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runCLI(t, "db", "start", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "a new database, shared") {
		t.Fatalf("db start: exit %d\n%s%s", code, out, errOut)
	}
	code, url, errOut := runCLI(t, "db", "url", "--data-dir", dir)
	url = strings.TrimSpace(url)
	if code != 0 || !strings.HasPrefix(url, "postgres://postgres@127.0.0.1:") {
		t.Fatalf("db url: exit %d, %q %s", code, url, errOut)
	}

	fileA, dataA, _ := pipelineFile(t)
	fileB, dataB, _ := pipelineFile(t)
	a := startRun(t, ctx, bin, t.TempDir(), fileA, "--data-dir", dir)
	b := startRun(t, ctx, bin, t.TempDir(), fileB, "--data-dir", dir)
	for _, p := range []*runProc{a, b} {
		if p.dsn != url {
			t.Errorf("a run uses %q, not the shared server's %q:\n%s", p.dsn, url, strings.Join(p.out, "\n"))
		}
	}
	load := func(addr, idStart string) {
		t.Helper()
		code, out, errOut := runCLI(t, "load", "--addr", addr, "--count", "500", "--conns", "2", "--id-start", idStart)
		if code != 0 {
			t.Fatalf("load on %s: exit %d\n%s%s", addr, code, out, errOut)
		}
	}
	load(dataA, "1")
	load(dataB, "1001")

	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range a.lines {
	}
	_ = a.cmd.Wait()
	if code, out, _ := runCLI(t, "db", "status", "--data-dir", dir); code != 0 || !strings.Contains(out, "shared") {
		t.Fatalf("db status after kill -9 of a run: exit %d\n%s", code, out)
	}
	load(dataB, "2001")
	all, err := b.stop(t, syscall.SIGTERM)
	if err != nil || !strings.Contains(all, "drained and stopped") || !strings.Contains(all, "postgres: left as it is") {
		t.Errorf("the second run after SIGTERM: %v\n%s", err, all)
	}
	if n := countEvents(t, ctx, url); n != 1500 {
		t.Errorf("%d rows stored, want 1500", n)
	}

	if code, out, errOut := runCLI(t, "db", "stop", "--data-dir", dir); code != 0 || !strings.Contains(out, "stopped (pid") {
		t.Fatalf("db stop: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "db", "status", "--data-dir", dir); code != 3 || !strings.Contains(out, "stopped") {
		t.Errorf("db status after db stop: exit %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "db", "url", "--data-dir", dir); code != 1 {
		t.Errorf("db url of a stopped server: exit %d, want 1", code)
	}
	if code, out, errOut := runCLI(t, "db", "start", "--data-dir", dir); code != 0 || !strings.Contains(out, url) {
		t.Fatalf("db start again: exit %d\n%s%s; want %s again", code, out, errOut, url)
	}
	if n := countEvents(t, ctx, url); n != 1500 {
		t.Errorf("after a restart, %d rows; want 1500", n)
	}
}

func countEvents(t *testing.T, ctx context.Context, dsn string) int64 {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
