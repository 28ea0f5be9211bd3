package rig_test

// This file tests finding pipectl: a binary handed over, a missing one,
// and building one.

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/bench/internal/rig"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestPipectlGiven checks that a binary handed over is used, made
// absolute, and that nothing is built: the go command is not on PATH, and
// the log stays empty.
func TestPipectlGiven(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pipectl"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	t.Setenv("PATH", t.TempDir())
	var log bytes.Buffer
	bin, err := rig.Pipectl(context.Background(), "bx", "pipectl", t.TempDir(), "", &log)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "pipectl"); !filepath.IsAbs(bin) || !sameFile(t, bin, want) {
		t.Errorf("Pipectl = %q, want %q, absolute", bin, want)
	}
	if log.Len() != 0 {
		t.Errorf("log: %q, want nothing (no build)", log.String())
	}
}

// TestPipectlGivenMissing checks that a binary handed over that does not
// exist is an error naming the benchmark, not a build.
func TestPipectlGivenMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := rig.Pipectl(context.Background(), "bx", filepath.Join(t.TempDir(), "nope"), t.TempDir(), "", nil)
	if err == nil || !strings.HasPrefix(err.Error(), "bx: pipectl") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing binary: %v", err)
	}
}

// TestPipectlBuilds checks that without a binary handed over, Pipectl
// builds one, says so, and the result runs.
func TestPipectlBuilds(t *testing.T) {
	var log bytes.Buffer
	bin, err := rig.Pipectl(context.Background(), "bx", "", t.TempDir(), "", &log)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("built %q: %v %v", bin, fi, err)
	}
	if !strings.Contains(log.String(), "bx: building pipectl") {
		t.Errorf("log: %q", log.String())
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}
