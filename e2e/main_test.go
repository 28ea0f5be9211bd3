package e2e

// This file holds what the e2e tests share: TestMain, the shared
// PostgreSQL, and helpers to build and run pipelines (in process and as
// pipectl), read their stats, and query what they stored.

import (
	"bufio"
	"context"
	"encoding/json"
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
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/gobuild"
	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/db"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stages/process"
	"github.com/stagedserver/seda/stats"
)

// pg is the PostgreSQL server the tests share; tests that stop or restart
// PostgreSQL start a private one with pgtesting.NewServer.
var pg = pgtesting.Cluster{Options: pgtemp.Options{Fast: true}}

func TestMain(m *testing.M) { goleak.VerifyTestMain(gobuild.Share(pg.Wrap(m))) }

// wait bounds every wait of a test that is not a whole run.
const wait = 30 * time.Second

// registry returns a registry with netio, process (json, syslog, filter,
// route) and db, plus whatever extra registers (test kinds).
func registry(t testing.TB, extra ...func(*stage.Registry) error) *stage.Registry {
	t.Helper()
	r := stage.NewRegistry()
	for _, reg := range append([]func(*stage.Registry) error{netio.Register, process.Register, db.Register}, extra...) {
		if err := reg(r); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// env is a lookupEnv for pipeline.Parse over a map.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// parse loads a pipeline written in the test; ${DSN} and friends come from
// vars.
func parse(t testing.TB, reg *stage.Registry, yaml string, vars map[string]string) *pipeline.Config {
	t.Helper()
	cfg, err := pipeline.Parse(t.Name()+".yaml", []byte(yaml), reg, env(vars))
	if err != nil {
		t.Fatalf("parse:\n%v\n--- yaml:\n%s", err, yaml)
	}
	return cfg
}

// running is an in-process pipeline started by startPipeline.
type running struct {
	p    *pipeline.Pipeline
	addr string // the netio source's address
	stop func() pipeline.StopReport
}

// startPipeline builds and starts the pipeline described by yaml and
// stops it when the test ends (if the test has not stopped it). src names
// the netio stage whose address is wanted.
func startPipeline(t testing.TB, reg *stage.Registry, yaml string, vars map[string]string, log *zap.Logger, src string) *running {
	t.Helper()
	cfg := parse(t, reg, yaml, vars)
	if log == nil {
		log = zap.NewNop()
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: log, DrainTimeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("pipeline.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("pipeline.Start: %v", err)
	}
	r := &running{p: p}
	var once sync.Once
	var rep pipeline.StopReport
	r.stop = func() pipeline.StopReport {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			var err error
			rep, err = p.Stop(ctx)
			if err != nil {
				t.Errorf("pipeline.Stop: %v", err)
			}
		})
		return rep
	}
	t.Cleanup(func() { r.stop() })
	if src != "" {
		r.addr = sourceAddr(t, p, src)
	}
	return r
}

func sourceAddr(t testing.TB, p *pipeline.Pipeline, name string) string {
	t.Helper()
	a := p.Addr(name)
	if a == nil {
		t.Fatalf("stage %q has no address (no such stage, or not listening)", name)
	}
	return a.String()
}

// stageStats returns the /stats figures of the stage called name.
func stageStats(t testing.TB, p *pipeline.Pipeline, name string) stats.Stage {
	t.Helper()
	st, ok := p.StageStats(name)
	if !ok {
		t.Fatalf("no stage %q", name)
	}
	return st
}

// connect opens a connection to dsn, closed when the test ends.
func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// withConn runs fn on a connection to dsn that is closed when fn returns:
// for the checks made again and again, some against a server about to be
// killed, where connect's connection for the whole test would not do.
func withConn(t testing.TB, dsn string, fn func(ctx context.Context, c *pgx.Conn)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close(ctx)
	fn(ctx, c)
}

func exec1(t testing.TB, dsn, sql string) {
	t.Helper()
	withConn(t, dsn, func(ctx context.Context, c *pgx.Conn) {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	})
}

// counts returns count(*) and count(distinct id) of table.
func counts(t testing.TB, dsn, table string) (rows, distinct int64) {
	t.Helper()
	withConn(t, dsn, func(ctx context.Context, c *pgx.Conn) {
		if err := c.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM "+table).Scan(&rows, &distinct); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
	})
	return rows, distinct
}

// storedIDs returns the ids in table.
func storedIDs(t testing.TB, dsn, table string) map[int64]bool {
	t.Helper()
	ids := map[int64]bool{}
	withConn(t, dsn, func(ctx context.Context, c *pgx.Conn) {
		rows, err := c.Query(ctx, "SELECT id FROM "+table)
		if err != nil {
			t.Fatalf("select ids: %v", err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids[id] = true
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	})
	return ids
}

// syncBuffer is a strings.Builder for one writer and any readers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a `pipectl run` subprocess.
type proc struct {
	cmd   *exec.Cmd
	out   *syncBuffer // stdout and stderr
	addr  string      // the netio source's address, from its "listening on" line
	admin string      // the admin endpoint, from its "admin on" line
	done  chan struct{}
	err   error // Wait's result, once done is closed
}

// startPipectl runs `pipectl run -f file` and waits until it prints that
// the pipeline is running and where its source listens. It is killed when
// the test ends if it still runs.
func startPipectl(t testing.TB, bin, file string, args ...string) *proc {
	t.Helper()
	p := launchPipectl(t, bin, file, args...)
	if p.addr == "" {
		t.Fatalf("pipectl printed no listening address:\n%s", p.out)
	}
	return p
}

// launchPipectl is startPipectl for a process that may run no source (a
// back process of a split pipeline, run with --stages).
func launchPipectl(t testing.TB, bin, file string, args ...string) *proc {
	t.Helper()
	return launchPipectlIn(t, "", nil, bin, file, args...)
}

// launchPipectlIn is launchPipectl in the working directory dir ("": this
// one) with the environment env (nil: this process's).
func launchPipectlIn(t testing.TB, dir string, env []string, bin, file string, args ...string) *proc {
	t.Helper()
	p := &proc{out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"run", "-f", file}, args...)...)
	p.cmd.Dir, p.cmd.Env = dir, env
	gobuild.DieWithCaller(p.cmd)
	p.cmd.Stderr = p.out
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var copied sync.WaitGroup
	copied.Add(1)
	go func() {
		defer copied.Done()
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.out, line)
			if i := strings.Index(line, "listening on "); i >= 0 && p.addr == "" {
				p.addr = strings.TrimSpace(line[i+len("listening on "):])
			}
			if i := strings.Index(line, "admin on http://"); i >= 0 && p.admin == "" {
				rest := line[i+len("admin on http://"):]
				if j := strings.Index(rest, "/"); j >= 0 {
					p.admin = rest[:j]
				}
			}
			// pipectl prints this last, after the addresses.
			if strings.Contains(line, "Ctrl-C drains") && !signalled {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		if !signalled {
			close(ready)
		}
	}()
	go func() {
		copied.Wait() // Wait must not run before the pipe is read to its end
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case <-ready:
	case <-time.After(2 * wait):
		t.Fatalf("pipectl did not start in %s:\n%s", 2*wait, p.out)
	}
	select {
	case <-p.done:
		t.Fatalf("pipectl exited at start (%v):\n%s", p.err, p.out)
	default:
	}
	return p
}

// signal sends sig to the subprocess.
func (p *proc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to d for the subprocess to exit and returns its exit code.
func (p *proc) wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("pipectl still running %s later:\n%s", d, p.out)
	}
	return p.cmd.ProcessState.ExitCode()
}

// peakRSS returns VmHWM (peak resident set) of a running process, in KiB.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// getStats fetches /stats from an admin endpoint.
func getStats(client *http.Client, admin string) (pipeline.Stats, error) {
	var s pipeline.Stats
	resp, err := client.Get("http://" + admin + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

// writeFile writes a pipeline file into a temporary directory.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jsonRecord is the record the tests send: an id and some payload.
func jsonRecord(id int64) []byte {
	return fmt.Appendf(nil, `{"id":%d,"msg":"record %d","n":%d}`, id, id, id%97)
}
