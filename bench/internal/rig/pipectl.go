package rig

// This file holds finding the pipectl binary a benchmark runs as a process
// of its own: the one handed over (make bench builds it once), or one built
// with the go command when none was.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/stagedserver/seda/internal/gobuild"
)

// Pipectl returns the path of the pipectl binary that the benchmark called
// name runs. given is one built already (sedabench --pipectl, which `make
// bench` sets); it must exist, and it is returned absolute, so that a
// command started in another directory finds it too. When given is "",
// Pipectl builds cmd/pipectl into dir from root (a directory inside this
// module; "" means the current directory), saying so on log, as a
// benchmark's own test does.
func Pipectl(ctx context.Context, name, given, dir, root string, log io.Writer) (string, error) {
	if given != "" {
		abs, err := filepath.Abs(given)
		if err != nil {
			return "", fmt.Errorf("%s: pipectl %s: %w", name, given, err)
		}
		if fi, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("%s: pipectl: %w", name, err)
		} else if fi.IsDir() {
			return "", fmt.Errorf("%s: pipectl %s is a directory", name, abs)
		}
		return abs, nil
	}
	if log != nil {
		fmt.Fprintf(log, "%s: building pipectl...\n", name)
	}
	bin, err := gobuild.Pipectl(ctx, dir, gobuild.Options{Dir: root})
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return bin, nil
}
