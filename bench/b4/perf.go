package b4

// This file records a process's CPU with perf(1) and reads back its
// hottest functions.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// PerfRecorder is perf(1) recording a process's CPU samples.
type PerfRecorder struct {
	cmd  *exec.Cmd
	data string
	out  bytes.Buffer
}

// perfInstalled reports whether perf(1) is on PATH: without it there is
// no profile run.
func perfInstalled() bool {
	_, err := exec.LookPath("perf")
	return err == nil
}

// StartPerf starts `perf record` on pid, writing into dir; nil (and no
// error) when perf is not installed.
func StartPerf(ctx context.Context, pid int, dir string) (*PerfRecorder, error) {
	bin, err := exec.LookPath("perf")
	if err != nil {
		return nil, nil
	}
	r := &PerfRecorder{data: filepath.Join(dir, "perf.data")}
	r.cmd = exec.CommandContext(ctx, bin, "record", "-q", "-g", "-F", "499", "-p", strconv.Itoa(pid), "-o", r.data)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	r.cmd.WaitDelay = 10 * time.Second
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("b4: perf record: %w", err)
	}
	return r, nil
}

// Stop ends the recording and returns the hottest functions by self
// time ("12.34% [.] runtime.mallocgc") and the project's functions by
// inclusive time ("40.13% 0.19% [.] .../process.(*jsonHandler).Handle"),
// at most n of each, as perf report prints them.
func (r *PerfRecorder) Stop(ctx context.Context, n int) (self, inclusive []string, err error) {
	r.cmd.Process.Signal(os.Interrupt)
	// perf ends by the signal it was sent once it has written its data:
	// its exit status tells nothing, perf report does.
	werr := r.cmd.Wait()
	report := func(keep func(string) bool, args ...string) ([]string, error) {
		args = append([]string{"report", "-i", r.data, "--stdio", "--sort", "sym", "-q", "-g", "none", "--percent-limit", "0.5"}, args...)
		out, err := exec.CommandContext(ctx, "perf", args...).Output()
		if err != nil {
			return nil, fmt.Errorf("b4: perf report: %w (perf record: %v: %s)", err, werr, bytes.TrimSpace(r.out.Bytes()))
		}
		var top []string
		for line := range strings.SplitSeq(string(out), "\n") {
			if line = strings.Join(strings.Fields(line), " "); line != "" && keep(line) && len(top) < n {
				top = append(top, line)
			}
		}
		return top, nil
	}
	if self, err = report(func(string) bool { return true }, "--no-children"); err != nil {
		return nil, nil, err
	}
	// The pipeline's own functions, below the goroutines' entry points.
	inclusive, err = report(func(l string) bool {
		return strings.Contains(l, "stagedserver/seda/") && !strings.Contains(l, "gowrap") && !strings.Contains(l, ").run")
	}, "--children")
	return self, inclusive, err
}
