package main

// This file holds what the package's tests share: TestMain (goleak, a
// shared build of pipectl), runCLI and the golden files.

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagedserver/seda/internal/gobuild"
	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(gobuild.Share(m))
}

// runCLI runs pipectl in-process and returns its exit status, stdout and
// stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

func TestVersionFlag(t *testing.T) {
	code, out, _ := runCLI(t, "--version")
	_, cmdOut, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "pipectl github.com/stagedserver/seda ") || out != cmdOut {
		t.Errorf("pipectl --version: exit %d, %q; want the same line as pipectl version (%q)", code, out, cmdOut)
	}
}
