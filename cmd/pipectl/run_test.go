package main

// This file tests pipectl run as a built binary on the real
// pipeline.yaml: end to end with load and PostgreSQL, kept data, start
// failures, and flags refused before anything starts.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/internal/gobuild"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

func freeAddr(t *testing.T) string { return freeAddrs(t, 1)[0] }

// freeAddrs is n free loopback addresses, distinct: each is held until all
// are picked (closed one by one, the kernel may give the same port twice).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// runProc is a `pipectl run` subprocess.
type runProc struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at its end
	out    []string    // the lines read so far
	stderr *syncBuffer
	dsn    string // from its "postgres: postgres://..." line
}

// pipelineFile writes pipeline.yaml, on free ports, into a temporary
// directory and returns its path and the data and admin addresses.
func pipelineFile(t *testing.T) (file, dataAddr, adminAddr string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 2)
	dataAddr, adminAddr = addrs[0], addrs[1]
	yaml := strings.NewReplacer("127.0.0.1:7000", dataAddr, "127.0.0.1:9464", adminAddr).Replace(string(src))
	file = filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, dataAddr, adminAddr
}

// startRun runs `pipectl run -f file args...` in dir, with DATABASE_URL
// empty, and returns once it prints that it is ready (the Ctrl-C line).
func startRun(t *testing.T, ctx context.Context, bin, dir, file string, args ...string) *runProc {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, append([]string{"run", "-f", file}, args...)...)
	gobuild.DieWithCaller(cmd)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DATABASE_URL=")
	p := &runProc{cmd: cmd, lines: make(chan string, 100), stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			for range p.lines {
			}
			cmd.Wait()
		}
	})
	timeout := time.After(90 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("pipectl run ended before it was ready:\n%s\nstderr:\n%s", strings.Join(p.out, "\n"), p.stderr.String())
			}
			p.out = append(p.out, l)
			if d, ok := strings.CutPrefix(l, "postgres: postgres://"); ok {
				p.dsn = "postgres://" + strings.Fields(d)[0]
			}
			if strings.Contains(l, "Ctrl-C drains") {
				return p
			}
		case <-timeout:
			t.Fatalf("pipectl run not ready after 90s:\n%s\nstderr:\n%s", strings.Join(p.out, "\n"), p.stderr.String())
		}
	}
}

// stop sends sig and returns the run's exit error and its whole output.
func (p *runProc) stop(t *testing.T, sig os.Signal) (string, error) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	for l := range p.lines {
		p.out = append(p.out, l)
	}
	err := p.cmd.Wait()
	return strings.Join(p.out, "\n"), err
}

// TestRunEndToEnd runs the real pipeline.yaml (on free ports) with `pipectl
// run --ephemeral`, which starts a throwaway PostgreSQL; loads 2000
// records through `pipectl load`; checks that every one was acked and is
// in the table; and stops it with SIGTERM, which must drain and exit 0.
func TestRunEndToEnd(t *testing.T) {
	bin := gobuild.ForTest(t, gobuild.Options{Race: raceBuild})
	file, dataAddr, adminAddr := pipelineFile(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startRun(t, ctx, bin, t.TempDir(), file, "--ephemeral")
	if p.dsn == "" {
		t.Fatalf("no DSN printed:\n%s", strings.Join(p.out, "\n"))
	}
	if !slices.ContainsFunc(p.out, func(l string) bool { return strings.Contains(l, "admin on http://"+adminAddr) }) {
		t.Errorf("no admin address printed:\n%s", strings.Join(p.out, "\n"))
	}

	code, loadOut, loadErr := runCLI(t, "load", "--addr", dataAddr, "--count", "2000", "--conns", "4")
	if code != 0 || !strings.Contains(loadOut, "sent 2000  acked 2000  nacked 0  unanswered 0") {
		t.Errorf("load: exit %d\n%s%s", code, loadOut, loadErr)
	}

	conn, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		t.Fatal(err)
	}
	var n, distinct, lo, hi int64
	err = conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT id), min(id), max(id) FROM events`).Scan(&n, &distinct, &lo, &hi)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2000 || distinct != 2000 || lo != 1 || hi != 2000 {
		t.Errorf("events: %d rows, %d distinct ids, from %d to %d; want 2000 rows with ids 1..2000", n, distinct, lo, hi)
	}

	code, statsOut, statsErr := runCLI(t, "stats", "--addr", adminAddr, "--interval", "0")
	if code != 0 || !strings.Contains(statsOut, "store") {
		t.Errorf("stats: exit %d\n%s%s", code, statsOut, statsErr)
	}

	all, err := p.stop(t, syscall.SIGTERM)
	if err != nil {
		t.Errorf("pipectl run after SIGTERM: %v\n%s\nstderr:\n%s", err, all, p.stderr.String())
	}
	// Every record was acked before the signal: the drain found none.
	for _, want := range []string{"draining", "drained and stopped",
		"drain: 0 stored, 0 redelivered later (NATS), 0 lost (ack: none), 0 left for clients to resend",
		"postgres: stopped and removed"} {
		if !strings.Contains(all, want) {
			t.Errorf("run's output lacks %q:\n%s", want, all)
		}
	}
}

// TestRunKeepsData runs pipeline.yaml without a DSN in a fresh working
// directory: the local database goes to the default data directory under
// it; a second run on the same directory is refused with a clear error;
// pipectl psql reads the table while the run runs, and again after Ctrl-C
// has stopped it (starting the server itself), so the data was kept.
func TestRunKeepsData(t *testing.T) {
	bin := gobuild.ForTest(t, gobuild.Options{Race: raceBuild})
	file, dataAddr, _ := pipelineFile(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	work := t.TempDir() // mode 0700: as root, pipectl must let PostgreSQL through
	p := startRun(t, ctx, bin, work, file)
	dataDir := filepath.Join(work, defaultDataDir)
	if !slices.ContainsFunc(p.out, func(l string) bool { return strings.Contains(l, "new database in "+dataDir) }) {
		t.Errorf("run does not say it made a database in %s:\n%s", dataDir, strings.Join(p.out, "\n"))
	}
	if code, out, errOut := runCLI(t, "load", "--addr", dataAddr, "--count", "300", "--conns", "2"); code != 0 {
		t.Fatalf("load: exit %d\n%s%s", code, out, errOut)
	}

	second := exec.CommandContext(ctx, bin, "run", "-f", file, "--admin", freeAddr(t))
	second.Dir = work
	second.Env = append(os.Environ(), "DATABASE_URL=")
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "only one run at a time") || !strings.Contains(string(out), dataDir) {
		t.Errorf("a second run on %s: %v\n%s\nwant a refusal that names the directory", dataDir, err, out)
	}

	// The run owns its server: db start and db stop leave it alone and
	// say who owns it.
	for _, verb := range []string{"start", "stop"} {
		code, out, errOut := runCLI(t, "db", verb, "--data-dir", dataDir)
		if code == 0 || !strings.Contains(errOut, "pid "+strconv.Itoa(p.cmd.Process.Pid)) {
			t.Errorf("db %s on a run's server: exit %d\n%s%s\nwant a refusal naming the run", verb, code, out, errOut)
		}
	}
	if code, out, _ := runCLI(t, "db", "status", "--data-dir", dataDir); code != 0 || !strings.Contains(out, "owned by pid") {
		t.Errorf("db status on a run's server: exit %d\n%s", code, out)
	}

	psql := func(what string) {
		t.Helper()
		c := exec.CommandContext(ctx, bin, "psql", "--", "-tAc", "SELECT count(*) FROM events")
		c.Dir = work
		out, err := c.Output()
		if err != nil || strings.TrimSpace(string(out)) != "300" {
			t.Errorf("pipectl psql %s: %v, %q; want 300", what, err, out)
		}
	}
	psql("while the run runs")

	all, err := p.stop(t, os.Interrupt)
	if err != nil || !strings.Contains(all, "data kept in "+dataDir) {
		t.Errorf("run after Ctrl-C: %v\n%s\nstderr:\n%s", err, all, p.stderr.String())
	}
	psql("after the run")
	if _, err := os.Stat(filepath.Join(dataDir, "data", "PG_VERSION")); err != nil {
		t.Errorf("the data directory is gone: %v", err)
	}
}

// TestRunStartFailureCauseFirst runs pipeline.yaml with its listen port
// taken: pipectl run exits 1, says why (the port in use) before what it
// does after, and says nothing of a drain, which there was none of.
func TestRunStartFailureCauseFirst(t *testing.T) {
	bin := gobuild.ForTest(t, gobuild.Options{Race: raceBuild})
	file, dataAddr, _ := pipelineFile(t)
	l, err := net.Listen("tcp", dataAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cmd := exec.Command(bin, "run", "-f", file, "--ephemeral")
	gobuild.DieWithCaller(cmd)
	cmd.Env = append(os.Environ(), "DATABASE_URL=")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out // as 2>&1 has them
	err = cmd.Run()
	all := out.String()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 1 {
		t.Fatalf("pipectl run with its port taken: %v, want exit status 1\n%s", err, all)
	}
	cause := strings.Index(all, "pipectl: stage \"accept\": start:")
	stopped := strings.Index(all, "postgres: stopped and removed")
	if cause < 0 || !strings.Contains(all[cause:], "address already in use") || stopped < cause {
		t.Errorf("want the cause (address already in use) as pipectl's first report, before the database stops:\n%s", all)
	}
	for _, no := range []string{"drain", "forced"} {
		if strings.Contains(strings.ToLower(all), no) {
			t.Errorf("the output speaks of %q after a failed start:\n%s", no, all)
		}
	}
}

// A drain under a millisecond reads "<1ms", not "0s" (an idle
// pipeline's drain takes some 300µs).
func TestRoundTook(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 283 * time.Microsecond: "<1ms", 41*time.Millisecond + 400*time.Microsecond: "41ms", 2002 * time.Millisecond: "2.002s"} {
		if got := roundTook(d); got != want {
			t.Errorf("roundTook(%s) = %q, want %q", d, got, want)
		}
	}
}

// A --stages naming no stage of the file, or an --admin off loopback
// without a token, is refused before the local PostgreSQL starts: both
// were refused only by pipeline.New, once the database had started (and,
// the first time, made its data directory). The refusal is New's, and no
// data directory is made.
func TestRunRefusesFlagsBeforePostgres(t *testing.T) {
	t.Setenv("DATABASE_URL", "") // store's dsn is empty: run would start a local PostgreSQL for it
	file, _, _ := pipelineFile(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--stages", "store,bogus"}, `--stages: no stage named "bogus"`},
		{[]string{"--admin", "0.0.0.0:0"}, `admin listen "0.0.0.0:0": not a loopback address`},
	} {
		dataDir := filepath.Join(t.TempDir(), "postgres")
		code, out, errOut := runCLI(t, append([]string{"run", "-f", file, "--data-dir", dataDir}, c.args...)...)
		if code != 1 || !strings.Contains(errOut, file+": "+c.want) {
			t.Errorf("pipectl run %q: exit %d, want 1 and %q:\n%s%s", c.args, code, c.want, out, errOut)
		}
		if strings.Contains(out, "postgres:") {
			t.Errorf("pipectl run %q spoke of PostgreSQL before refusing:\n%s", c.args, out)
		}
		if _, err := os.Stat(dataDir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("pipectl run %q: the data directory %s: %v, want none made", c.args, dataDir, err)
		}
	}
}

// Flags out of range are refused before anything starts, naming the
// flag: run --drain -5s drained with the 30s default, stats --interval
// -1s was taken for 0, top --count -1 ran forever, run --admin bogus was
// reported as the file's error once PostgreSQL had started, and --admin
// 127.0.0.1:99999 failed only when the endpoint started.
func TestFlagsOutOfRange(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such.yaml") // checked before the file
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-f", missing, "--drain", "-5s"}, "--drain -5s: want a positive duration"},
		{[]string{"run", "-f", missing, "--drain", "0s"}, "--drain 0s: want a positive duration"},
		{[]string{"run", "-f", missing, "--admin", "bogus"}, `--admin "bogus": want host:port`},
		{[]string{"run", "-f", missing, "--admin", "127.0.0.1:99999"}, `--admin "127.0.0.1:99999": the port must be a number from 1 to 65535`},
		{[]string{"run", "-f", missing, "--admin", "127.0.0.1:http"}, `--admin "127.0.0.1:http": the port must be a number`},
		{[]string{"stats", "--addr", "127.0.0.1:1", "--interval", "-1s"}, "--interval -1s: want a positive duration, or 0"},
		{[]string{"top", "--addr", "127.0.0.1:1", "--count", "-1"}, "--count -1: want the number of frames"},
	} {
		code, out, errOut := runCLI(t, c.args...)
		if code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("pipectl %q: exit %d, want 1 and an error saying %q:\n%s%s", c.args, code, c.want, out, errOut)
		}
	}
	// What the checks let through: a free port, a host:port.
	for _, admin := range []string{"127.0.0.1:0", "[::1]:9464", ":9464"} {
		if err := checkAdminFlag(admin); err != nil {
			t.Errorf("--admin %s: %v", admin, err)
		}
	}
}

// A db.postgres column of a field no decoder before it sets is a warning
// that run prints, as lint does, on stderr; the run goes on (here to fail
// to reach its database).
func TestRunWarnsOfAColumnNoDecoderSets(t *testing.T) {
	file := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(file, []byte(`name: w
stages:
  in: {kind: netio.udp, listen: 127.0.0.1:0, next: parse}
  parse: {kind: process.syslog, next: store}
  store: {kind: db.postgres, dsn: "postgres://u@127.0.0.1:1/db", on_start: fail, table: logs, columns: {host: hostname, app: app_nme}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "run", "-f", file)
	want := file + `:5:126: warning: stage "store": columns.app: field "app_nme" is never set on the events that reach it (did you mean "app_name"?)`
	if code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "not reachable (on_start: fail)") {
		t.Errorf("exit %d; want 1, the warning %q and the start's failure:\n%s%s", code, want, out, errOut)
	}
}

// A filter on a field no decoder before it sets, in a file whose store
// has no dsn, is refused before the local PostgreSQL starts: New refused
// it only once the server had started (seconds, and a data directory
// left behind). run makes lint's check first; the refusal is New's.
func TestRunRefusesAMisspeltFieldBeforePostgres(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.yaml")
	if err := os.WriteFile(file, []byte(`name: f
stages:
  in: {kind: netio.udp, listen: 127.0.0.1:0, next: parse}
  parse: {kind: process.syslog, next: keep}
  keep: {kind: process.filter, if: 'hostnme == "a"', next: store}
  store: {kind: db.postgres, dsn: "", table: logs, columns: {host: hostname}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "postgres")
	for _, args := range [][]string{{"--ephemeral"}, {"--data-dir", dataDir}} {
		code, out, errOut := runCLI(t, append([]string{"run", "-f", file}, args...)...)
		want := file + `:5:36: stage "keep": if: field "hostnme" is never set on the events that reach it (did you mean "hostname"?)`
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("pipectl run %q: exit %d, want 1 and %q:\n%s%s", args, code, want, out, errOut)
		}
		if strings.Contains(out, "postgres: starting") {
			t.Errorf("pipectl run %q started PostgreSQL before refusing the file:\n%s", args, out)
		}
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the data directory %s: %v, want none made", dataDir, err)
	}
}
