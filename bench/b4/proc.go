package b4

// This file runs B4's pipeline as `pipectl run` in a process of its own
// and reads its figures.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/internal/gobuild"
)

// pipectlProc is `pipectl run` serving the example pipeline in its own
// process.
type pipectlProc struct {
	cmd  *exec.Cmd
	http *http.Client

	waitWG  sync.WaitGroup
	exited  chan struct{} // closed when the process has exited (waitErr set)
	waitErr error

	mu     sync.Mutex
	addr   string        // the accept stage's listen address
	admin  string        // the admin endpoint's address
	ready  chan struct{} // closed once addr and admin are known
	line   []byte        // stdout's unfinished line
	tail   []string      // the last lines of stdout
	stderr bytes.Buffer  // its first 8 KiB
}

const tailLines = 20

// startPipectl writes the example pipeline for table (store queue under
// overflow; admission control on its source with that target when it is
// positive) into dir and runs it with bin, on free loopback ports; it
// returns once the pipeline is running and has printed its addresses.
func startPipectl(ctx context.Context, bin, dir, dsn, table, overflow string, admission time.Duration) (*pipectlProc, error) {
	file := filepath.Join(dir, table+".yaml")
	yaml := rig.PipelineYAML
	if admission > 0 {
		yaml = strings.Replace(yaml, "    listen: ${B3_LISTEN}\n", fmt.Sprintf("    listen: ${B3_LISTEN}\n    admission: {target: %s}\n", admission), 1)
	}
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		return nil, fmt.Errorf("b4: write the pipeline file: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, "run", "-f", file, "--admin", "127.0.0.1:0", "--drain", "2m")
	gobuild.DieWithCaller(cmd) // a harness killed by hand leaves no pipeline behind
	// The DSN goes through the environment, not the file or the command
	// line.
	cmd.Env = append(os.Environ(), "B3_LISTEN=127.0.0.1:0", "B3_DSN="+dsn, "B3_TABLE="+table, "B3_OVERFLOW="+overflow)
	cmd.WaitDelay = 5 * time.Second
	p := &pipectlProc{
		cmd:    cmd,
		http:   &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		exited: make(chan struct{}),
		ready:  make(chan struct{}),
	}
	cmd.Stdout, cmd.Stderr = stdoutWriter{p}, stderrWriter{p}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("b4: start pipectl: %w", err)
	}
	p.waitWG.Go(func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	})
	t := time.NewTimer(2 * time.Minute)
	defer t.Stop()
	var why error
	select {
	case <-p.ready:
		return p, nil
	case <-p.exited:
		why = errors.New("pipectl exited before it was running")
	case <-t.C:
		why = errors.New("pipectl did not start within 2 minutes")
	case <-ctx.Done():
		why = ctx.Err()
	}
	cmd.Process.Kill()
	p.waitWG.Wait()
	return nil, fmt.Errorf("b4: %w (%v)%s", why, p.waitErr, p.output())
}

// output is the last lines pipectl wrote, for error messages.
func (p *pipectlProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "\nstdout:\n" + strings.Join(p.tail, "\n") + "\nstderr:\n" + p.stderr.String()
}

// stdoutWriter takes pipectl's stdout: it keeps the last lines and picks
// up the addresses from "  accept (netio.tcp) listening on ADDR" and
// "  admin on http://ADDR/stats  (...)", which comes after the listen
// lines.
type stdoutWriter struct{ p *pipectlProc }

func (w stdoutWriter) Write(b []byte) (int, error) {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line = append(p.line, b...)
	for {
		i := bytes.IndexByte(p.line, '\n')
		if i < 0 {
			break
		}
		line := string(p.line[:i])
		p.line = p.line[:copy(p.line, p.line[i+1:])]
		p.tail = append(p.tail, line)
		if len(p.tail) > tailLines {
			p.tail = p.tail[1:]
		}
		if strings.HasPrefix(strings.TrimSpace(line), "accept ") {
			if _, a, ok := strings.Cut(line, " listening on "); ok {
				p.addr = strings.TrimSpace(a)
			}
		}
		if _, a, ok := strings.Cut(line, "admin on http://"); ok && p.addr != "" && p.admin == "" {
			p.admin, _, _ = strings.Cut(a, "/")
			close(p.ready)
		}
	}
	if len(p.line) > 64<<10 {
		p.line = p.line[:0]
	}
	return len(b), nil
}

// stderrWriter keeps the first 8 KiB of pipectl's stderr.
type stderrWriter struct{ p *pipectlProc }

func (w stderrWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if room := 8<<10 - w.p.stderr.Len(); room > 0 {
		w.p.stderr.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

func (p *pipectlProc) pid() int { return p.cmd.Process.Pid }

// Addr is where the pipeline takes records.
func (p *pipectlProc) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Stop sends SIGTERM (pipectl drains and exits) and waits; a drain that
// does not end cleanly, with exit status 0, is an error.
func (p *pipectlProc) Stop(ctx context.Context) error {
	defer p.http.CloseIdleConnections()
	var err error
	if serr := p.cmd.Process.Signal(syscall.SIGTERM); serr != nil && !errors.Is(serr, os.ErrProcessDone) {
		err = fmt.Errorf("signal: %w", serr)
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		p.cmd.Process.Kill()
		<-p.exited
		err = errors.Join(err, errors.New("it did not drain in time"))
	}
	p.waitWG.Wait()
	if err = errors.Join(err, p.waitErr); err != nil {
		return fmt.Errorf("b4: pipectl run: %w%s", err, p.output())
	}
	return nil
}

// storeDepth reads the store stage's queue depth from /stats.
func (p *pipectlProc) storeDepth(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+"/stats", nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Stages []struct {
			Name  string `json:"name"`
			Queue struct {
				Depth int `json:"depth"`
			} `json:"queue"`
		} `json:"stages"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return 0, fmt.Errorf("b4: /stats: %w", err)
	}
	for _, s := range st.Stages {
		if s.Name == "store" {
			return s.Queue.Depth, nil
		}
	}
	return 0, errors.New("b4: /stats has no stage store")
}

// heapStats reads the Go heap's figures from /metrics into s (each 0 if
// absent): go_memstats_heap_alloc_bytes, go_memstats_next_gc_bytes, and
// go_memstats_heap_sys_bytes less go_memstats_heap_released_bytes.
func (p *pipectlProc) heapStats(ctx context.Context, s *MemSample) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+"/metrics", nil)
	if err != nil {
		return
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var sys, released uint64
	dst := map[string]*uint64{
		"go_memstats_heap_alloc_bytes ":    &s.HeapLive,
		"go_memstats_next_gc_bytes ":       &s.HeapGoal,
		"go_memstats_heap_sys_bytes ":      &sys,
		"go_memstats_heap_released_bytes ": &released,
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		for prefix, d := range dst {
			if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				*d = uint64(f)
			}
		}
	}
	if sys > released {
		s.HeapHeld = sys - released
	}
}
