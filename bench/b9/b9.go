package b9

// This file runs B9: 1, 2 or 4 back processes draining a stream into a
// latency-bound database.

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/bench/b7"
	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/internal/loadgen"
)

// Config sizes the benchmark; the zero value is the full B9.
type Config struct {
	Records int           // records per run; 0: 120,000
	Backs   []int         // back counts; nil: 1, 2, 4
	Runs    int           // alternating repetitions; 0: 3
	Sleep   time.Duration // a statement's latency; 0: 20ms
	Batch   int           // the store's batch, pinned; 0: 100
	Workers int           // the store's workers and connections per back, pinned; 0: 2
	Root    string        // the module's directory; "": the one `go env GOMOD` names
	Pipectl string        // a pipectl binary to run; "": build one from Root
	DSN     string        // an existing PostgreSQL instead of a throwaway one (its CPU then unmeasured)
	Log     io.Writer     // progress; nil: none
	LogDir  string        // keep each process's output here, when set
}

func (c *Config) fill() {
	c.Records = cmp.Or(c.Records, 120_000)
	if len(c.Backs) == 0 {
		c.Backs = []int{1, 2, 4}
	}
	c.Runs = cmp.Or(c.Runs, 3)
	c.Sleep = cmp.Or(c.Sleep, 20*time.Millisecond)
	c.Batch = cmp.Or(c.Batch, 100)
	c.Workers = cmp.Or(c.Workers, 2)
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Sample is one drain by one count of backs.
type Sample struct {
	Backs      int
	Rows       int64
	Window     time.Duration // from 10% to 90% of the rows stored
	RowsPerSec float64       // 80% of the rows over Window
	Back       time.Duration // CPU of all the backs over the drain
	Nats       time.Duration // nats-server's
	PG         time.Duration // PostgreSQL's
}

// PerRow is d per row stored.
func (s Sample) PerRow(d time.Duration) float64 {
	if s.Rows == 0 {
		return 0
	}
	return float64(d) / float64(s.Rows) / 1e3
}

// Result is what Run measured.
type Result struct {
	Config  Config
	Samples map[int][]Sample // by back count
	Cores   int
}

const yaml = `name: b9
nats: {url: "${NATS_URL}"}
stages:
  accept:
    kind: netio.tcp
    listen: 127.0.0.1:0
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
    columns: {id: id, body: $}
    types: {id: bigint}
    key: [id]
    conflict: ignore
    batch: {max: %d, linger: 5ms}
    workers: %d
    max_conns: %d
    queue: {transport: nats, stream: b9_store, capacity: %d}
`

type harness struct {
	cfg        Config
	dir, file  string
	dsn        string
	pgPID      int
	db         *pgx.Conn
	pipectl    string
	natsServer string
}

// Run runs B9.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	res := &Result{Config: cfg, Samples: map[int][]Sample{}, Cores: runtime.NumCPU()}
	dir, err := os.MkdirTemp("", "b9-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if cfg.Root == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil || len(bytes.TrimSpace(out)) == 0 || string(bytes.TrimSpace(out)) == os.DevNull {
			return nil, fmt.Errorf("b9: not inside the module (go env GOMOD: %v); set Config.Root", err)
		}
		cfg.Root = filepath.Dir(string(bytes.TrimSpace(out)))
	}
	h := &harness{cfg: cfg, dir: dir, file: filepath.Join(dir, "b9.yaml")}
	if h.pipectl, err = rig.Pipectl(ctx, "b9", cfg.Pipectl, dir, cfg.Root, cfg.Log); err != nil {
		return nil, err
	}
	fmt.Fprintln(cfg.Log, "b9: building nats-server...")
	h.natsServer = filepath.Join(dir, "nats-server")
	build := exec.CommandContext(ctx, "go", "build", "-o", h.natsServer, "github.com/nats-io/nats-server/v2")
	build.Dir = cfg.Root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("b9: go build nats-server: %w\n%s", err, out)
	}
	y := fmt.Sprintf(yaml, cfg.Batch, cfg.Workers, cfg.Workers, 4*cfg.Batch)
	if err := os.WriteFile(h.file, []byte(y), 0o600); err != nil {
		return nil, err
	}
	h.dsn = cfg.DSN
	if h.dsn == "" {
		srv, pid, err := rig.StartPostgres(ctx, "b9", cfg.Log)
		if err != nil {
			return nil, err
		}
		defer srv.Remove(context.WithoutCancel(ctx))
		h.dsn, h.pgPID = srv.DSN(), pid
	}
	if h.db, err = pgx.Connect(ctx, h.dsn); err != nil {
		return nil, fmt.Errorf("b9: connect: %w", err)
	}
	defer h.db.Close(context.WithoutCancel(ctx))
	for r := range cfg.Runs {
		order := slices.Clone(cfg.Backs)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, m := range order {
			s, err := h.run(ctx, m, r)
			if err != nil {
				return nil, fmt.Errorf("b9: run %d, %d backs: %w", r+1, m, err)
			}
			res.Samples[m] = append(res.Samples[m], s)
			fmt.Fprintf(cfg.Log, "b9: run %d, %d backs: %8.0f rows/s  cpu/row: backs %.1f µs, nats %.1f µs, pg %.1f µs\n",
				r+1, m, s.RowsPerSec, s.PerRow(s.Back), s.PerRow(s.Nats), s.PerRow(s.PG))
		}
	}
	return res, nil
}

func (h *harness) logFile(r, m int, name string) string {
	if h.cfg.LogDir == "" {
		return ""
	}
	return filepath.Join(h.cfg.LogDir, fmt.Sprintf("b9-%d-%dbacks-%s.log", r+1, m, name))
}

// run fills the stream through a front, then drains it with m backs.
func (h *harness) run(ctx context.Context, m, r int) (Sample, error) {
	if err := rig.ExecSQL(ctx, h.dsn,
		"DROP TABLE IF EXISTS events",
		"CREATE TABLE events (id bigint PRIMARY KEY, body jsonb)",
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION b9_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(%g); RETURN NULL; END $$`, h.cfg.Sleep.Seconds()),
		"CREATE TRIGGER slow BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION b9_slow()",
		"CHECKPOINT"); err != nil {
		return Sample{}, err
	}
	store := filepath.Join(h.dir, fmt.Sprintf("nats-%d-%d", r, m))
	defer os.RemoveAll(store)
	var procs []*b7.Proc
	defer func() {
		for _, p := range procs {
			p.Kill()
		}
	}()
	ns, err := b7.StartProc(ctx, "nats-server", nil, h.logFile(r, m, "nats"), h.natsServer,
		"-js", "-sd", store, "-a", "127.0.0.1", "-p", "-1", "-ports_file_dir", h.dir)
	if err != nil {
		return Sample{}, err
	}
	procs = append(procs, ns)
	url, err := b7.NatsURL(h.dir, ns.Pid())
	if err != nil {
		return Sample{}, err
	}
	env := []string{"DATABASE_URL=" + h.dsn, "NATS_URL=" + url}
	front, err := b7.StartProc(ctx, "front", env, h.logFile(r, m, "front"), h.pipectl, "run", "-f", h.file,
		"--stages", "accept,parse", "--admin", "127.0.0.1:0")
	if err != nil {
		return Sample{}, err
	}
	lr, err := loadgen.Run(ctx, loadgen.Config{Addr: front.Addr, Conns: 16, Records: h.cfg.Records})
	if err == nil {
		err = lr.Err()
	}
	if err == nil && lr.Acked != uint64(h.cfg.Records) {
		err = fmt.Errorf("%d of %d records acked", lr.Acked, h.cfg.Records)
	}
	if serr := front.Stop(); err == nil {
		err = serr
	}
	if err != nil {
		return Sample{}, fmt.Errorf("filling the stream: %w", err)
	}

	nats0, pg0 := ns.CPU(), measure.TreeCPU(h.pgPID)
	backs := make([]*b7.Proc, m)
	starting := make(chan error, m)
	for i := range backs {
		go func() {
			var err error
			backs[i], err = b7.StartProc(ctx, "back", env, h.logFile(r, m, fmt.Sprint("back", i+1)), h.pipectl, "run", "-f", h.file,
				"--stages", "store", "--admin", "127.0.0.1:0")
			starting <- err
		}()
	}
	for range backs {
		if serr := <-starting; serr != nil && err == nil {
			err = serr
		}
	}
	for _, b := range backs {
		if b != nil {
			procs = append(procs, b)
		}
	}
	if err != nil {
		return Sample{}, err
	}
	n := int64(h.cfg.Records)
	var rows int64
	var t10, t90 time.Time
	for deadline := time.Now().Add(10 * time.Minute); rows < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return Sample{}, fmt.Errorf("%d of %d rows stored after 10 minutes", rows, n)
		}
		if err := h.db.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&rows); err != nil {
			return Sample{}, err
		}
		now := time.Now()
		if t10.IsZero() && rows >= n/10 {
			t10 = now
		}
		if t90.IsZero() && rows >= n*9/10 {
			t90 = now
		}
	}
	s := Sample{Backs: m, Rows: rows, Window: t90.Sub(t10), Nats: ns.CPU() - nats0, PG: measure.TreeCPU(h.pgPID) - pg0}
	s.RowsPerSec = float64(n*8/10) / s.Window.Seconds()
	for _, b := range backs {
		s.Back += b.CPU()
	}
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(); err != nil {
			return s, fmt.Errorf("stop: %w", err)
		}
	}
	procs = nil
	var distinct int64
	if err := h.db.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM events").Scan(&rows, &distinct); err != nil {
		return s, err
	}
	if rows != n || distinct != n {
		return s, fmt.Errorf("stored %d rows (%d distinct), want %d", rows, distinct, n)
	}
	return s, nil
}
