package gobuild

// This file builds pipectl for tests and benchmarks: Pipectl, ForTest,
// and Share, which builds it once per test binary.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// PipectlPackage is the import path of the pipectl command.
const PipectlPackage = "github.com/stagedserver/seda/cmd/pipectl"

// ErrNoGo is wrapped by the error Pipectl returns when the go command is
// not on PATH.
var ErrNoGo = errors.New("the go command is not on PATH")

// Options change how Pipectl builds.
type Options struct {
	// Race builds with the race detector (go build -race), as a test
	// binary built with -race should run its subprocesses.
	Race bool
	// Dir is a directory inside this module to build from; "" means the
	// current directory.
	Dir string
}

// Pipectl builds cmd/pipectl into dir and returns the binary's path. It
// builds from inside this module's source tree: o.Dir, or the current
// directory (a test's, or the repository's for the benchmarks). The go
// command's build cache makes every build after the first one cheap.
func Pipectl(ctx context.Context, dir string, o Options) (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", fmt.Errorf("build pipectl: %w: install Go (https://go.dev/dl/) or run `make test`, "+
			"which puts /usr/local/go/bin on PATH", ErrNoGo)
	}
	bin := filepath.Join(dir, "pipectl")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	args := []string{"build", "-o", bin}
	if o.Race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, PipectlPackage)...)
	cmd.Dir = o.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build pipectl: %w\n%s", err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// TB is the part of testing.TB that ForTest uses. It is spelled out here so
// that this package does not import testing outside its tests: a
// *testing.T or *testing.B satisfies it.
type TB interface {
	Helper()
	TempDir() string
	Fatal(args ...any)
}

// ForTest builds pipectl into a temporary directory of t's, within three
// minutes, and returns the binary's path; it fails t if it cannot (no go
// command, a build error). In a test binary whose TestMain runs Share, the
// binary is built once for every test that asks with the same Options.
func ForTest(t TB, o Options) string {
	t.Helper()
	if bin, ok, err := shared.get(o); ok {
		if err != nil {
			t.Fatal(err)
		}
		return bin
	}
	bin, err := build(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func build(dir string, o Options) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return Pipectl(ctx, dir, o)
}

// Main is what a TestMain runs: a *testing.M.
type Main interface{ Run() int }

// Share has ForTest build pipectl once per test binary (for each Options)
// rather than once per test, and returns m, which removes the builds after
// its tests have run. In a TestMain:
//
//	goleak.VerifyTestMain(gobuild.Share(m))
func Share(m Main) Main {
	shared.mu.Lock()
	shared.on = true
	shared.mu.Unlock()
	return sharedMain{m}
}

type sharedMain struct{ m Main }

func (s sharedMain) Run() int {
	code := s.m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	return code
}

// sharedBuilds are the builds of Share, made one at a time.
type sharedBuilds struct {
	mu    sync.Mutex
	on    bool
	dir   string
	built map[Options]result
}

var shared sharedBuilds

type result struct {
	bin string
	err error
}

// get returns the shared build for o, building it first if need be; ok is
// false when Share is not in use.
func (c *sharedBuilds) get(o Options) (bin string, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return "", false, nil
	}
	if r, ok := c.built[o]; ok {
		return r.bin, true, r.err
	}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "gobuild-"); err != nil {
			return "", true, err
		}
		c.built = map[Options]result{}
	}
	dir := filepath.Join(c.dir, strconv.Itoa(len(c.built)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", true, err
	}
	bin, err = build(dir, o)
	c.built[o] = result{bin, err}
	return bin, true, err
}
