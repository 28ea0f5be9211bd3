package gobuild

// This file tests building pipectl, the error without a go command, and
// that Share builds once and removes its builds.

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestPipectl builds pipectl and runs `pipectl version`.
func TestPipectl(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := ForTest(t, Options{})
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pipectl") {
		t.Fatalf("pipectl version: %v\n%s", err, out)
	}
}

// TestNoGo checks the error when the go command is missing.
func TestNoGo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Pipectl(context.Background(), t.TempDir(), Options{})
	if err == nil || !strings.Contains(err.Error(), "make test") {
		t.Fatalf("without go on PATH: %v", err)
	}
}

// mainFunc is a Main that runs a function.
type mainFunc func() int

func (f mainFunc) Run() int { return f() }

// TestShare: under Share, tests asking with the same Options get one build,
// and the builds are removed when the tests have run.
func TestShare(t *testing.T) {
	var first, second, race string
	code := Share(mainFunc(func() int {
		first, second = ForTest(t, Options{}), ForTest(t, Options{})
		race = ForTest(t, Options{Race: true})
		return 7
	})).Run()
	shared.mu.Lock()
	shared.on, shared.dir, shared.built = false, "", nil
	shared.mu.Unlock()
	if code != 7 || first != second || first == race {
		t.Errorf("exit %d; builds %q, %q and (race) %q: want the first two the same", code, first, second, race)
	}
	if _, err := os.Stat(first); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the shared build is still there after the run: %v", err)
	}
}
