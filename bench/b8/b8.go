package b8

// This file runs B8: light rows stored by the pipeline and its
// contenders, side by side, every run checked by checksum.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/bench/b4"
	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/internal/loadgen"
)

// Contender names.
const (
	Pipeline = "pipeline" // the README's syslog pipeline, as written
	Copy     = "copy"     // 4 parallel psql \copy
	Rsyslog  = "rsyslog"  // rsyslogd imtcp → ompgsql
	JSON     = "json"     // the example JSON pipeline (B3's), for its CPU per record
)

// Targets of docs/BENCHMARKS.md (issue 23's): the pipeline's rows/s over
// each contender's, and its CPU per record.
var targets = map[string]float64{Copy: 0.55, Rsyslog: 10}

// TargetCPU is the pipeline process's CPU per record that B8 aims at, and
// TargetJSONCPU the JSON path's.
const (
	TargetCPU     = 1000 * time.Nanosecond
	TargetJSONCPU = 1300 * time.Nanosecond
)

// TargetPGRatio is the most PostgreSQL's CPU per row may be when the
// pipeline feeds it, over what it is when psql \copy does (the median of
// the per-run ratios).
const TargetPGRatio = 1.2

// table is where every syslog contender stores its rows: the README's
// pipeline writes to syslog, and the others are given the same.
const table = "syslog"

// Config sizes the benchmark; the zero value is the full B8.
type Config struct {
	Records int // messages per run; 0: 1,000,000
	Conns   int // TCP connections (and psql processes); 0: 4
	Runs    int // alternating repetitions; 0: 3
	// Contenders to run; nil means all four. The pipeline always runs.
	Contenders []string
	// Root is the module's directory (README.md, cmd/pipectl); "" means
	// the one `go env GOMOD` names.
	Root string
	// Pipectl is a pipectl binary to run; "" builds one from Root.
	Pipectl string
	// DSN of an existing server (its superuser, trust authentication) to
	// use instead of a throwaway one; PostgreSQL's CPU is then not
	// measured.
	DSN string
	// Settle is how long the table must stop growing, once the senders
	// are done, before the rows are counted; 0: 1s.
	Settle time.Duration
	// Profile records where the pipeline process's CPU goes during its
	// first run (perf record, where perf is installed): the hottest
	// functions land in Result.Profile and Result.ProfileInclusive.
	Profile bool
	Log     io.Writer // progress; nil: none
}

func (c *Config) fill() {
	c.Records = cmp.Or(c.Records, 1_000_000)
	c.Conns = cmp.Or(c.Conns, 4)
	c.Runs = cmp.Or(c.Runs, 3)
	if c.Settle == 0 {
		c.Settle = time.Second
	}
	if len(c.Contenders) == 0 {
		c.Contenders = []string{Pipeline, Copy, Rsyslog, JSON}
	}
	if !slices.Contains(c.Contenders, Pipeline) {
		c.Contenders = append([]string{Pipeline}, c.Contenders...)
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Sample is one run of one contender.
type Sample struct {
	Rows       int64
	Elapsed    time.Duration // the first byte sent to the last row stored (copy: the psql processes' run)
	RowsPerSec float64
	ProcCPU    time.Duration // the contender's process: pipectl, rsyslogd, or the psql processes together
	PGCPU      time.Duration // the postmaster and its children
	// OtherCPU is the rest of the machine's busy CPU over the run: the
	// sender (this process) and whatever else runs here.
	OtherCPU time.Duration
}

// CPUPerRecord is the contender's process CPU per row stored.
func (s Sample) CPUPerRecord() time.Duration {
	if s.Rows == 0 {
		return 0
	}
	return s.ProcCPU / time.Duration(s.Rows)
}

// Result is what Run measured.
type Result struct {
	Config    Config
	Samples   map[string][]Sample // by contender, in run order
	PGVersion string
	Rsyslog   string // rsyslogd's version line
	// Load is the machine's load average (1 min) before and after.
	LoadBefore, LoadAfter string
	// Profile is the pipeline process's hottest functions by self time,
	// ProfileInclusive its own functions by inclusive time (perf report),
	// when Config.Profile was set and perf is installed.
	Profile, ProfileInclusive []string
}

// Run runs B8 and returns its figures; every run is checked (every row
// stored once, exact), and a failed check is an error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.fill()
	res := &Result{Config: cfg, Samples: map[string][]Sample{}, LoadBefore: loadAvg()}
	dir, err := os.MkdirTemp("", "b8-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if cfg.Root == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil || len(bytes.TrimSpace(out)) == 0 || string(bytes.TrimSpace(out)) == os.DevNull {
			return nil, fmt.Errorf("b8: not inside the module (go env GOMOD: %v); set Config.Root", err)
		}
		cfg.Root = filepath.Dir(string(bytes.TrimSpace(out)))
	}
	h := &harness{cfg: cfg, dir: dir, res: res}
	readme, err := os.ReadFile(filepath.Join(cfg.Root, "README.md"))
	if err != nil {
		return nil, fmt.Errorf("b8: %w", err)
	}
	if h.yaml, err = ReadmePipeline(readme, "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if h.pipectl, err = rig.Pipectl(ctx, "b8", cfg.Pipectl, dir, cfg.Root, cfg.Log); err != nil {
		return nil, err
	}
	if slices.Contains(cfg.Contenders, Rsyslog) {
		if h.rsyslogd, err = findRsyslog(); err != nil {
			return nil, err
		}
		out, _ := exec.CommandContext(ctx, h.rsyslogd, "-v").Output()
		res.Rsyslog, _, _ = strings.Cut(string(out), "\n")
		res.Rsyslog, _, _ = strings.Cut(res.Rsyslog, " compiled with")
		res.Rsyslog = strings.Join(strings.Fields(res.Rsyslog), " ")
	}

	h.dsn = cfg.DSN
	if h.dsn == "" {
		srv, pid, err := rig.StartPostgres(ctx, "b8", cfg.Log)
		if err != nil {
			return nil, err
		}
		defer srv.Remove(context.WithoutCancel(ctx))
		h.dsn, h.pgPID = srv.DSN(), pid
	}
	if h.db, err = pgx.Connect(ctx, h.dsn); err != nil {
		return nil, fmt.Errorf("b8: connect: %w", err)
	}
	defer h.db.Close(context.WithoutCancel(ctx))
	if err := h.db.QueryRow(ctx, "SHOW server_version").Scan(&res.PGVersion); err != nil {
		return nil, fmt.Errorf("b8: %w", err)
	}

	fmt.Fprintf(cfg.Log, "b8: building %d messages over %d connections...\n", cfg.Records, cfg.Conns)
	copyDir := ""
	if slices.Contains(cfg.Contenders, Copy) {
		copyDir = dir
	}
	if h.work, err = newWorkload(cfg.Records, cfg.Conns, copyDir, true); err != nil {
		return nil, err
	}
	for r := range cfg.Runs {
		// Rotate the order so that no contender always runs first (cold)
		// or after the same neighbour.
		order := append(slices.Clone(cfg.Contenders[r%len(cfg.Contenders):]), cfg.Contenders[:r%len(cfg.Contenders)]...)
		for _, c := range order {
			s, err := h.run(ctx, c, r)
			if err != nil {
				return nil, fmt.Errorf("b8: run %d, %s: %w", r+1, c, err)
			}
			res.Samples[c] = append(res.Samples[c], s)
			fmt.Fprintf(cfg.Log, "b8: run %d %-8s %8d rows %10.0f rows/s  %s  cpu %.2f µs/rec  pg %.2f µs/rec\n",
				r+1, c, s.Rows, s.RowsPerSec, s.Elapsed.Round(time.Millisecond), us(s.CPUPerRecord()), us(perRow(s.PGCPU, s.Rows)))
		}
	}
	res.LoadAfter = loadAvg()
	return res, nil
}

type harness struct {
	cfg      Config
	dir      string
	res      *Result
	dsn      string
	pgPID    int
	db       *pgx.Conn
	yaml     string // the README's pipeline, listening on a free port
	pipectl  string
	rsyslogd string
	work     *workload
	profiled bool
}

// stopTimeout bounds stopping a contender's process.
const stopTimeout = 2 * time.Minute

func (h *harness) run(ctx context.Context, c string, r int) (Sample, error) {
	if c == JSON {
		return h.runJSON(ctx, r)
	}
	if _, err := h.db.Exec(ctx, "DROP TABLE IF EXISTS "+ident(table)); err != nil {
		return Sample{}, err
	}
	if c != Pipeline { // the pipeline creates its own (create: true), with the same columns
		if _, err := h.db.Exec(ctx, "CREATE TABLE "+ident(table)+" (host text, app text, msg text)"); err != nil {
			return Sample{}, err
		}
	}
	// Write out what earlier runs left dirty, so that its checkpoint is
	// not charged to this run.
	if _, err := h.db.Exec(ctx, "CHECKPOINT"); err != nil {
		return Sample{}, err
	}
	switch c {
	case Copy:
		return h.runCopy(ctx)
	case Pipeline, Rsyslog:
	default:
		return Sample{}, fmt.Errorf("unknown contender %q", c)
	}
	var srv *child
	var err error
	if c == Pipeline {
		file := filepath.Join(h.dir, "syslog.yaml")
		if err := os.WriteFile(file, []byte(h.yaml), 0o600); err != nil {
			return Sample{}, err
		}
		cmd := exec.CommandContext(ctx, h.pipectl, "run", "-f", file, "--admin", "127.0.0.1:0")
		// The DSN reaches the file's ${DATABASE_URL} through the
		// environment, as the README runs it.
		cmd.Env = append(os.Environ(), "DATABASE_URL="+h.dsn)
		srv, err = startChild(ctx, "pipectl run", cmd, pipectlListening, "")
	} else {
		srv, err = startRsyslog(ctx, h.rsyslogd, h.dir, h.dsn, table)
	}
	if err != nil {
		return Sample{}, err
	}
	var prof *b4.PerfRecorder
	if c == Pipeline && h.cfg.Profile && !h.profiled {
		h.profiled = true
		if prof, err = b4.StartPerf(ctx, srv.pid(), h.dir); err != nil {
			srv.stop(ctx)
			return Sample{}, err
		}
	}
	m := h.begin(srv.pid())
	start := time.Now()
	sendErr := make(chan error, 1)
	go func() { sendErr <- send(ctx, srv.Addr(), h.work.streams) }()
	end, pgAtEnd, err := h.waitStored(ctx, sendErr, srv)
	s := m.end(end.Sub(start))
	if pgAtEnd > 0 {
		s.PGCPU = pgAtEnd - m.pg
	}
	if prof != nil {
		self, incl, perr := prof.Stop(ctx, 25)
		err = errors.Join(err, perr)
		h.res.Profile, h.res.ProfileInclusive = self, incl
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err = errors.Join(err, srv.stop(sctx)); err != nil {
		return s, err
	}
	if err := h.verify(ctx); err != nil {
		return s, err
	}
	return s, nil
}

// meter reads the CPU counters at the start of a run.
type meter struct {
	h              *harness
	pid            int
	proc, pg, busy time.Duration
	rows           int64
}

func (h *harness) begin(pid int) meter {
	busy, _ := measure.Machine()
	return meter{h: h, pid: pid, proc: measure.ProcessCPU(pid), pg: measure.TreeCPU(h.pgPID), busy: busy, rows: int64(h.cfg.Records)}
}

func (m meter) end(el time.Duration) Sample {
	busy, _ := measure.Machine()
	s := Sample{Rows: m.rows, Elapsed: el, ProcCPU: measure.ProcessCPU(m.pid) - m.proc, PGCPU: measure.TreeCPU(m.h.pgPID) - m.pg}
	s.OtherCPU = max(0, busy-m.busy-s.ProcCPU-s.PGCPU)
	if el > 0 {
		s.RowsPerSec = float64(m.rows) / el.Seconds()
	}
	return s
}

// send writes each stream over a connection of its own, all at once,
// and closes them.
func send(ctx context.Context, addr string, streams [][]byte) error {
	var wg sync.WaitGroup
	errs := make([]error, len(streams))
	for i, s := range streams {
		wg.Go(func() {
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				errs[i] = err
				return
			}
			defer nc.Close()
			stop := context.AfterFunc(ctx, func() { nc.Close() })
			defer stop()
			for off := 0; off < len(s); {
				n, err := nc.Write(s[off:min(len(s), off+256<<10)])
				off += n
				if err != nil {
					errs[i] = fmt.Errorf("connection %d: %w after %d of %d bytes", i+1, err, off, len(s))
					return
				}
			}
			if tc, ok := nc.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitStored returns when the last row was stored: it polls the table's
// size and, once the senders are done and the size has not moved for
// Settle, counts the rows; the time returned is the size's last change,
// and so is PostgreSQL's CPU returned (measure.TreeCPU then), so that the
// count, a scan of every row that psql's figure does not pay, is left out.
// It fails when the rows are still short after the table has not grown
// for a minute, or when the contender's process exits.
func (h *harness) waitStored(ctx context.Context, sendErr <-chan error, srv *child) (time.Time, time.Duration, error) {
	var size int64
	last := time.Now()
	var pg time.Duration
	sent := false
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-sendErr:
			if err != nil {
				return last, pg, fmt.Errorf("send: %w", err)
			}
			sent = true
		case <-srv.exited:
			return last, pg, fmt.Errorf("%s exited during the run (%v)%s", srv.name, srv.waitErr, srv.output())
		case <-ctx.Done():
			return last, pg, ctx.Err()
		case <-tick.C:
		}
		var n int64
		if err := h.db.QueryRow(ctx, "SELECT pg_relation_size($1)", table).Scan(&n); err != nil {
			if strings.Contains(err.Error(), "does not exist") { // the pipeline has not created it yet
				continue
			}
			return last, pg, err
		}
		now := time.Now()
		if n != size {
			size, last, pg = n, now, measure.TreeCPU(h.pgPID)
			continue
		}
		if !sent || now.Sub(last) < h.cfg.Settle {
			continue
		}
		var rows int64
		if err := h.db.QueryRow(ctx, "SELECT count(*) FROM "+ident(table)).Scan(&rows); err != nil {
			return last, pg, err
		}
		if rows >= int64(h.cfg.Records) {
			return last, pg, nil
		}
		if now.Sub(last) > time.Minute {
			return last, pg, fmt.Errorf("table %s holds %d rows, want %d, and has not grown for a minute", table, rows, h.cfg.Records)
		}
	}
}

// verify checks that the table holds every row sent, exactly.
func (h *harness) verify(ctx context.Context) error {
	var got checksum
	var sum string
	if err := h.db.QueryRow(ctx, checksumSQL(table)).Scan(&got.rows, &sum); err != nil {
		return fmt.Errorf("checksum: %w", err)
	}
	if _, ok := got.sum.SetString(sum, 10); !ok {
		return fmt.Errorf("checksum: bad sum %q", sum)
	}
	if got.rows != h.work.want.rows || got.sum.Cmp(&h.work.want.sum) != 0 {
		return fmt.Errorf("table %s is not what was sent: %s, want %s", table, got.String(), h.work.want.String())
	}
	return nil
}

// runCopy loads the rows with Conns psql \copy processes at once.
func (h *harness) runCopy(ctx context.Context) (Sample, error) {
	backends, _ := rig.ClientBackends(h.pgPID)
	pg0 := measure.TreeCPU(h.pgPID)
	busy0, _ := measure.Machine()
	cmds := make([]*exec.Cmd, len(h.work.files))
	outs := make([]bytes.Buffer, len(cmds))
	start := time.Now()
	for i, f := range h.work.files {
		cmds[i] = exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", h.dsn,
			"-c", `\copy `+ident(table)+` (host, app, msg) FROM '`+f+`'`)
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
		if err := cmds[i].Start(); err != nil {
			return Sample{}, fmt.Errorf("psql: %w", err)
		}
	}
	var err error
	var cpu time.Duration
	for i, cmd := range cmds {
		if werr := cmd.Wait(); werr != nil {
			err = errors.Join(err, fmt.Errorf("psql \\copy: %w: %s", werr, outs[i].String()))
			continue
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	el := time.Since(start)
	pg, werr := rig.SettledCPU(ctx, h.pgPID, backends)
	err = errors.Join(err, werr)
	busy, _ := measure.Machine()
	s := Sample{Rows: int64(h.cfg.Records), Elapsed: el, RowsPerSec: float64(h.cfg.Records) / el.Seconds(),
		ProcCPU: cpu, PGCPU: pg - pg0}
	s.OtherCPU = max(0, busy-busy0-s.ProcCPU-s.PGCPU)
	if err != nil {
		return s, err
	}
	return s, h.verify(ctx)
}

// runJSON runs the example JSON pipeline (B3's) in its own process, fed
// JSON records over Conns connections with acks after commit.
func (h *harness) runJSON(ctx context.Context, r int) (Sample, error) {
	jtable := fmt.Sprintf("b8_json_%d", r+1)
	if err := rig.CreateTable(ctx, h.dsn, jtable); err != nil {
		return Sample{}, err
	}
	defer rig.DropTable(context.WithoutCancel(ctx), h.dsn, jtable)
	if _, err := h.db.Exec(ctx, "CHECKPOINT"); err != nil {
		return Sample{}, err
	}
	file := filepath.Join(h.dir, "json.yaml")
	if err := os.WriteFile(file, []byte(rig.PipelineYAML), 0o600); err != nil {
		return Sample{}, err
	}
	cmd := exec.CommandContext(ctx, h.pipectl, "run", "-f", file)
	cmd.Env = append(os.Environ(), "B3_LISTEN=127.0.0.1:0", "B3_DSN="+h.dsn, "B3_TABLE="+jtable, "B3_OVERFLOW=block")
	srv, err := startChild(ctx, "pipectl run (json)", cmd, pipectlListening, "")
	if err != nil {
		return Sample{}, err
	}
	m := h.begin(srv.pid())
	lr, err := loadgen.Run(ctx, loadgen.Config{Addr: srv.Addr(), Conns: h.cfg.Conns, Records: h.cfg.Records, CollectIDs: true})
	s := m.end(0)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err = errors.Join(err, srv.stop(sctx)); err != nil {
		return s, err
	}
	if err := lr.Err(); err != nil {
		return s, err
	}
	if lr.Acked != uint64(h.cfg.Records) || lr.Nacked != 0 {
		return s, fmt.Errorf("%d records: %d acked, %d nacked %v", h.cfg.Records, lr.Acked, lr.Nacked, lr.Nacks)
	}
	rows, err := rig.CheckStored(ctx, h.dsn, jtable, lr.AckedIDs)
	if err != nil {
		return s, err
	}
	if rows != int64(h.cfg.Records) {
		return s, fmt.Errorf("table %s holds %d rows, want %d", jtable, rows, h.cfg.Records)
	}
	s.Elapsed, s.RowsPerSec = lr.Elapsed, lr.AckedPerSec()
	return s, nil
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func us(d time.Duration) float64 { return float64(d) / 1e3 }

func perRow(d time.Duration, rows int64) time.Duration {
	if rows == 0 {
		return 0
	}
	return d / time.Duration(rows)
}

// loadAvg is /proc/loadavg's first three figures.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
