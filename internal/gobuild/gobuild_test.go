package gobuild

import (
	"context"
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
