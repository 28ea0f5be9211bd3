package b7

// This file runs B7: the split pipeline across processes against one
// process, alternating, measuring every process's CPU.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/internal/loadgen"
)

// Contenders.
const (
	Single   = "single"   // accept -> parse -> store in one pipectl process
	Split    = "split"    // front (accept, parse) -> JetStream -> back (store)
	Embedded = "embedded" // one pipectl process, the store's queue on its embedded JetStream
)

// Contenders lists them in the order of a run.
var Contenders = []string{Single, Split, Embedded}

// Config sizes the benchmark; the zero value is the full B7.
type Config struct {
	Records int // records per run; 0: 200,000
	Conns   int // client connections; 0: 16
	Runs    int // alternating repetitions; 0: 3
	// Root is the module's directory; "" means the one `go env GOMOD`
	// names.
	Root string
	// Pipectl is a pipectl binary to run; "" builds one from Root.
	Pipectl string
	// DSN of an existing PostgreSQL (superuser, trust) instead of a
	// throwaway one; its CPU is then not measured.
	DSN string
	Log io.Writer // progress; nil: none
	// Contenders to run, in this order (reversed every other run); nil:
	// all of Contenders.
	Contenders []string
	// LogDir, when set, keeps each process's output there, one file per
	// contender, run and process.
	LogDir string
}

func (c *Config) fill() {
	c.Records = cmp.Or(c.Records, 200_000)
	c.Conns = cmp.Or(c.Conns, 16)
	c.Runs = cmp.Or(c.Runs, 3)
	if len(c.Contenders) == 0 {
		c.Contenders = Contenders
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Sample is one run of one contender. CPU times are of the whole run.
type Sample struct {
	Rows       int64
	Elapsed    time.Duration // first record sent to last row stored
	RowsPerSec float64
	Front      time.Duration // single, embedded: the one pipectl process; split: the front
	Back       time.Duration // split: the back
	Nats       time.Duration // split: nats-server
	PG         time.Duration // PostgreSQL (postmaster and children), less Poll
	Poll       time.Duration // PostgreSQL's backend serving the benchmark's own queries (the end-of-run row counts)
}

// Pipeline is the CPU of the pipeline's own processes (front, back,
// nats-server), without PostgreSQL.
func (s Sample) Pipeline() time.Duration { return s.Front + s.Back + s.Nats }

// PerRow is d per row stored.
func (s Sample) PerRow(d time.Duration) time.Duration {
	if s.Rows == 0 {
		return 0
	}
	return d / time.Duration(s.Rows)
}

// Result is what Run measured.
type Result struct {
	Config    Config
	Samples   map[string][]Sample
	PGVersion string
	Cores     int
}

// yaml is the pipeline every contender runs; the first %s is the nats
// section, the second the store stage's queue. Everything else is the
// same, so that the difference is the hop.
const yaml = `name: b7
nats: %s
stages:
  accept:
    kind: netio.tcp
    listen: 127.0.0.1:0
    workers: 4
    concurrency: 2
    queue: {capacity: 8192}
    next: parse
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: ${DATABASE_URL}
    table: events
    create: true
    columns: {id: id, body: $}
    types: {id: bigint}
    key: [id]
    conflict: ignore
    batch: {max: 2000, linger: 2ms}
    workers: 8
    concurrency: 2
    queue: %s
`

const (
	localQueue = `{capacity: 16384}`
	natsQueue  = `{transport: nats, stream: b7_store, capacity: 16384}`
	natsRemote = `{url: "${NATS_URL}"}`
	natsEmbed  = `{embedded: {store_dir: "${NATS_STORE}"}}`
)

// Run runs B7; every run is checked (every record stored once).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	res := &Result{Config: cfg, Samples: map[string][]Sample{}}
	dir, err := os.MkdirTemp("", "b7-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if cfg.Root == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil || len(bytes.TrimSpace(out)) == 0 || string(bytes.TrimSpace(out)) == os.DevNull {
			return nil, fmt.Errorf("b7: not inside the module (go env GOMOD: %v); set Config.Root", err)
		}
		cfg.Root = filepath.Dir(string(bytes.TrimSpace(out)))
	}
	h := &harness{cfg: cfg, dir: dir}
	if h.pipectl, err = rig.Pipectl(ctx, "b7", cfg.Pipectl, dir, cfg.Root, cfg.Log); err != nil {
		return nil, err
	}
	fmt.Fprintln(cfg.Log, "b7: building nats-server...")
	h.natsServer = filepath.Join(dir, "nats-server")
	build := exec.CommandContext(ctx, "go", "build", "-o", h.natsServer, "github.com/nats-io/nats-server/v2")
	build.Dir = cfg.Root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("b7: go build nats-server: %w\n%s", err, out)
	}
	for _, c := range []struct{ name, nats, queue string }{
		{Single, natsRemote, localQueue}, {Split, natsRemote, natsQueue}, {Embedded, natsEmbed, natsQueue},
	} {
		f := filepath.Join(dir, c.name+".yaml")
		if err := os.WriteFile(f, fmt.Appendf(nil, yaml, c.nats, c.queue), 0o600); err != nil {
			return nil, err
		}
	}
	h.dsn = cfg.DSN
	if h.dsn == "" {
		srv, pid, err := rig.StartPostgres(ctx, "b7", cfg.Log)
		if err != nil {
			return nil, err
		}
		defer srv.Remove(context.WithoutCancel(ctx))
		h.dsn, h.pgPID = srv.DSN(), pid
	}
	if h.db, err = pgx.Connect(ctx, h.dsn); err != nil {
		return nil, fmt.Errorf("b7: connect: %w", err)
	}
	defer h.db.Close(context.WithoutCancel(ctx))
	if err := h.db.QueryRow(ctx, "SHOW server_version").Scan(&res.PGVersion); err != nil {
		return nil, fmt.Errorf("b7: %w", err)
	}
	res.Cores = cores()
	for r := range cfg.Runs {
		order := slices.Clone(cfg.Contenders)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, c := range order {
			s, err := h.run(ctx, c, r)
			if err != nil {
				return nil, fmt.Errorf("b7: run %d, %s: %w", r+1, c, err)
			}
			res.Samples[c] = append(res.Samples[c], s)
			fmt.Fprintf(cfg.Log, "b7: run %d %-6s %8d rows %9.0f rows/s  cpu/row: front %.1f µs, back %.1f µs, nats %.1f µs, pg %.1f µs (+%.1f polling)\n",
				r+1, c, s.Rows, s.RowsPerSec, us(s.PerRow(s.Front)), us(s.PerRow(s.Back)), us(s.PerRow(s.Nats)), us(s.PerRow(s.PG)), us(s.PerRow(s.Poll)))
		}
	}
	return res, nil
}

type harness struct {
	cfg        Config
	contender  string // the contender and round running, for LogDir's names
	round      int
	dir        string
	dsn        string
	pgPID      int
	db         *pgx.Conn
	pipectl    string
	natsServer string
}

// start starts one process of a run, its output kept in LogDir when set.
func (h *harness) start(ctx context.Context, name string, env []string, args ...string) (*Proc, error) {
	logFile := ""
	if h.cfg.LogDir != "" {
		logFile = filepath.Join(h.cfg.LogDir, fmt.Sprintf("%s-%d-%s.log", h.contender, h.round, name))
	}
	return StartProc(ctx, name, env, logFile, args...)
}

func (h *harness) run(ctx context.Context, c string, r int) (Sample, error) {
	h.contender, h.round = c, r+1
	if _, err := h.db.Exec(ctx, "DROP TABLE IF EXISTS events"); err != nil {
		return Sample{}, err
	}
	if _, err := h.db.Exec(ctx, "CHECKPOINT"); err != nil {
		return Sample{}, err
	}
	file := filepath.Join(h.dir, c+".yaml")
	env := []string{"DATABASE_URL=" + h.dsn}
	var procs []*Proc
	defer func() {
		for _, p := range procs {
			p.Kill()
		}
	}()
	var front, back, ns *Proc
	var err error
	if c == Split {
		store := filepath.Join(h.dir, fmt.Sprintf("nats-%d", r))
		defer os.RemoveAll(store)
		if ns, err = h.start(ctx, "nats-server", nil, h.natsServer, "-js", "-sd", store, "-a", "127.0.0.1", "-p", "-1", "-ports_file_dir", h.dir); err != nil {
			return Sample{}, err
		}
		procs = append(procs, ns)
		url, err := NatsURL(h.dir, ns.cmd.Process.Pid)
		if err != nil {
			return Sample{}, err
		}
		env = append(env, "NATS_URL="+url)
		if back, err = h.start(ctx, "back", env, h.pipectl, "run", "-f", file, "--stages", "store", "--admin", "127.0.0.1:0"); err != nil {
			return Sample{}, err
		}
		procs = append(procs, back)
		if front, err = h.start(ctx, "front", env, h.pipectl, "run", "-f", file, "--stages", "accept,parse", "--admin", "127.0.0.1:0"); err != nil {
			return Sample{}, err
		}
	} else {
		if c == Embedded {
			store := filepath.Join(h.dir, fmt.Sprintf("embedded-%d", r))
			defer os.RemoveAll(store)
			env = append(env, "NATS_STORE="+store)
		}
		if front, err = h.start(ctx, "pipectl", env, h.pipectl, "run", "-f", file, "--admin", "127.0.0.1:0"); err != nil {
			return Sample{}, err
		}
	}
	procs = append(procs, front)
	// A store behind a queue starts in the background: its table is made
	// once it has connected. The run begins when it has.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		var made bool
		if err := h.db.QueryRow(ctx, "SELECT to_regclass('events') IS NOT NULL").Scan(&made); err != nil {
			return Sample{}, err
		}
		if made {
			break
		}
		if time.Now().After(deadline) {
			return Sample{}, errors.New("the store made no table within a minute")
		}
	}
	// PostgreSQL's CPU is counted for its processes less the backend of
	// this connection: the count(*) polled below for the end of the run
	// is the benchmark's work, not the pipeline's. Under the split it
	// runs while the back drains the stream (the front acks once a record
	// is in JetStream), and a count of a 200,000-row table every few
	// milliseconds cost PostgreSQL about 2.5 µs per row: most of what
	// was once charged to the split.
	var self int
	if err := h.db.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&self); err != nil {
		return Sample{}, err
	}
	pg0, self0 := measure.TreeCPU(h.pgPID), measure.ProcessCPU(self)
	start := time.Now()
	lr, err := loadgen.Run(ctx, loadgen.Config{Addr: front.Addr, Conns: h.cfg.Conns, Records: h.cfg.Records})
	if err == nil {
		err = lr.Err()
	}
	if err == nil && lr.Acked != uint64(h.cfg.Records) {
		err = fmt.Errorf("%d of %d records acked", lr.Acked, h.cfg.Records)
	}
	if err != nil {
		return Sample{}, err
	}
	// The split acks once a record is in JetStream: the run ends when the
	// last row is stored.
	rows, err := h.awaitRows(ctx, start)
	if err != nil {
		return Sample{}, err
	}
	el := time.Since(start)
	poll := measure.ProcessCPU(self) - self0
	s := Sample{Rows: rows, Elapsed: el, RowsPerSec: float64(rows) / el.Seconds(), Front: front.CPU(),
		PG: measure.TreeCPU(h.pgPID) - pg0 - poll, Poll: poll}
	if back != nil {
		s.Back, s.Nats = back.CPU(), ns.CPU()
	}
	for i := len(procs) - 1; i >= 0; i-- { // front first
		if err := procs[i].Stop(); err != nil {
			return s, fmt.Errorf("stop: %w", err)
		}
	}
	procs = nil
	var distinct int64
	if err := h.db.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM events").Scan(&rows, &distinct); err != nil {
		return s, err
	}
	if rows != int64(h.cfg.Records) || distinct != rows {
		return s, fmt.Errorf("stored %d rows (%d distinct), want %d", rows, distinct, h.cfg.Records)
	}
	return s, nil
}

// awaitRows polls the table's row count until every record is stored (or
// five minutes pass) and returns the last count. Each count reads the
// whole table, so the polls are paced by the rate since the last one:
// half the time the rows left should take, between 5 and 250 ms.
func (h *harness) awaitRows(ctx context.Context, start time.Time) (int64, error) {
	want := int64(h.cfg.Records)
	var rows, before int64
	at := start
	for deadline := time.Now().Add(5 * time.Minute); ; {
		if err := h.db.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&rows); err != nil {
			return 0, err
		}
		now := time.Now()
		if rows >= want || now.After(deadline) {
			return rows, nil
		}
		wait := 5 * time.Millisecond
		if rows > before {
			wait = now.Sub(at) * time.Duration(want-rows) / time.Duration(rows-before) / 2
		}
		before, at = rows, now
		time.Sleep(min(max(wait, 5*time.Millisecond), 250*time.Millisecond))
	}
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }
