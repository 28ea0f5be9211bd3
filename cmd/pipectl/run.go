package main

// This file holds `pipectl run`: load, build and run a pipeline until a
// signal, starting a local PostgreSQL when a store needs one.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/natsq"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
)

type runFlags struct {
	file      string
	dataDir   string
	ephemeral bool
	keepDB    bool
	admin     string
	drain     time.Duration
	stages    []string
}

// defaultDataDir is where pipectl run keeps its local PostgreSQL, under
// the working directory, and where pipectl psql looks for it.
const defaultDataDir = ".pipectl/postgres"

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [-f pipeline.yaml]",
		Short: "Run a pipeline until SIGINT or SIGTERM, then drain it",
		Long: `Run loads the pipeline file, starts its stages (sinks first, sources last)
and runs until SIGINT or SIGTERM. The first signal drains: the sources stop
taking input, every queued event is processed and committed and every ack
written, within the drain deadline. A second signal stops at once. The exit
status is 0 after a clean drain.

Every db.postgres stage whose dsn is empty (pipeline.yaml's dsn is
${DATABASE_URL}) is given one local PostgreSQL server on 127.0.0.1, whose
data persists in --data-dir (default ` + defaultDataDir + ` under the working
directory) and which keeps its port from run to run. When pipectl db start
runs that server (on its own, shared), run uses it and leaves it running
when it ends. Otherwise run starts it itself and owns it: Ctrl-C stops it
cleanly (never deleting the data), and so does the death of the run, even
by kill -9; one run at a time may own a data directory, and pipectl psql
opens it. --ephemeral gives the run a throwaway server in a temporary
directory instead, removed on exit.

As root, PostgreSQL runs as the OS user postgres; when a directory above
--data-dir does not let that user through (mode 0700, as /root and mktemp
directories are), run gives it search permission there, and only that,
through an ACL entry, and says so.

--stages a,b runs only those stages: a pipeline split across processes
(and machines) runs the same file in each, with different --stages and
--admin. A route between a stage that runs and one that does not must
lead to a stage whose queue is on NATS JetStream (queue: {transport: nats,
stream: NAME}); run and lint refuse any other. A queue on an embedded NATS
server (nats.embedded) reaches other processes only through its listen:
without one, run and lint warn of a split that crosses it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.ephemeral && cmd.Flags().Changed("data-dir") {
				return errors.New("--data-dir and --ephemeral exclude each other: an ephemeral database lives in a temporary directory")
			}
			// The flags are checked before anything starts: a bad --admin
			// was reported as the file's error, and only once PostgreSQL
			// had started; a negative --drain drained with the default.
			if cmd.Flags().Changed("drain") && f.drain <= 0 {
				return fmt.Errorf("--drain %s: want a positive duration such as 30s", f.drain)
			}
			if f.admin != "" {
				if err := checkAdminFlag(f.admin); err != nil {
					return err
				}
			}
			f.stages = givenStages(cmd, f.stages)
			return runPipeline(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "pipeline.yaml", "the pipeline file")
	fl.StringVar(&f.dataDir, "data-dir", defaultDataDir, "where the local PostgreSQL keeps its data (when a db stage has no dsn)")
	fl.BoolVar(&f.ephemeral, "ephemeral", false, "use a throwaway PostgreSQL, removed on exit, instead of the one in --data-dir")
	fl.BoolVar(&f.keepDB, "keep-db", false, "with --ephemeral, keep the throwaway PostgreSQL's directory on exit")
	_ = fl.MarkHidden("keep-db")
	fl.StringVar(&f.admin, "admin", "", "admin endpoint address, overriding the file's admin.listen")
	fl.DurationVar(&f.drain, "drain", 0, "drain deadline, overriding the file's (default 30s)")
	fl.StringSliceVar(&f.stages, "stages", nil, "run only these stages (comma-separated); the others run in other processes, joined by queues on NATS")
	return cmd
}

// checkAdminFlag checks run's --admin: host:port, with a port from 0 (any
// free port) to 65535, as net.Listen takes it.
func checkAdminFlag(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--admin %q: want host:port such as 127.0.0.1:9464", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("--admin %q: the port must be a number from 1 to 65535 (0: any free port)", addr)
	}
	return nil
}

// runPipeline is pipectl run. Progress lines go to out; the pipeline logs
// to stderr through its own logger.
func runPipeline(ctx context.Context, f runFlags, out, errw io.Writer) (err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	cfg, err := pipeline.Load(f.file, reg)
	if err != nil {
		return reportConfigErrors(errw, err)
	}
	for _, w := range cfg.Warnings(reg) {
		fmt.Fprintln(errw, w.Error())
	}
	// What New would refuse before building a stage (--stages naming no
	// stage, --admin off loopback without a token, ...) is refused before
	// the local PostgreSQL starts, which takes seconds and, for a new data
	// directory, leaves one behind. New refuses it in the same words.
	opts := pipeline.Options{Registry: reg, AdminListen: f.admin, Stages: f.stages}
	if err := pipeline.Check(cfg, opts); err != nil {
		return reportConfigErrors(errw, err)
	}
	for _, w := range embeddedSplitWarnings(cfg, f.stages) {
		fmt.Fprintln(errw, w.Error())
	}
	need := running(throwawayStages(cfg), f.stages)
	if len(need) > 0 {
		// What New refuses once the stages are built (a kind's check of
		// its fields, a filter on a field no decoder before it sets) is
		// refused before the local PostgreSQL starts too: lint's check,
		// which builds the stages with a stand-in dsn and closes them.
		// Its warnings are New's, printed once New has run below.
		if _, err := buildCheck(ctx, cfg, opts); err != nil {
			return reportConfigErrors(errw, err)
		}
	}

	// Signals are caught from here on, so that one arriving while
	// PostgreSQL starts cancels the start instead of killing the process
	// halfway; RunWithSignals takes them over once the pipeline starts.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)

	if len(need) > 0 {
		db, dberr := openLocalDB(ctx, sig, f, out)
		if dberr != nil {
			return dberr
		}
		// err is run's result (not a variable of this block): a failure to
		// stop the database joins it.
		defer func() { err = errors.Join(err, db.close(out)) }()
		names := make([]string, len(need))
		for i, sc := range need {
			sc.Config.Set("dsn", db.dsn)
			names[i] = sc.Name
		}
		fmt.Fprintf(out, "postgres: %s (%s; for %s)\n", stage.Redact(db.dsn), db.what, strings.Join(names, ", "))
	}

	drain := cfg.Drain
	if f.drain > 0 {
		drain = f.drain
	}
	if drain <= 0 {
		drain = pipeline.DefaultDrain
	}
	opts.DrainTimeout = drain
	p, err := pipeline.New(cfg, opts)
	if err != nil {
		return reportConfigErrors(errw, err)
	}
	for _, w := range p.Warnings() {
		fmt.Fprintln(errw, w.Error())
	}
	// The Go runtime collects harder as the heap nears the records' limit
	// and half as much again, unless the user set GOMEMLIMIT.
	pipeline.SetGoMemoryLimit(p)
	started := false
	err = p.RunWithSignals(ctx, pipeline.SignalOptions{
		Signals: sig,
		Started: func() { started = true; printRunning(out, p, cfg) },
		Draining: func(s os.Signal) {
			fmt.Fprintf(out, "%s: draining (up to %s; send another signal to stop at once)\n", s, drain)
		},
		Forcing: func(s os.Signal) { fmt.Fprintf(out, "%s: stopping at once\n", s) },
	})
	if err != nil && !started {
		// A failure to start: its cause comes first, before what stopping
		// the local database prints.
		fmt.Fprintln(errw, "pipectl:", err)
		return &exitError{code: 1}
	}
	if err != nil {
		return err
	}
	rep, _ := p.Stop(context.Background()) // the report of the stop RunWithSignals made
	if rep.Abandoned > 0 {
		return fmt.Errorf("pipeline %s: %d events abandoned; drain: %s", p.Name(), rep.Abandoned, rep.Fates)
	}
	fmt.Fprintf(out, "pipeline %s: drained and stopped in %s; drain: %s\n", p.Name(), roundTook(rep.Took), rep.Fates)
	return nil
}

// printRunning prints the addresses of a pipeline that has started.
func printRunning(out io.Writer, p *pipeline.Pipeline, cfg *pipeline.Config) {
	fmt.Fprintf(out, "pipeline %s: running\n", p.Name())
	for _, sc := range cfg.Stages {
		if a := p.Addr(sc.Name); a != nil {
			fmt.Fprintf(out, "  %s (%s) listening on %s\n", sc.Name, sc.Kind, a)
		}
	}
	for _, st := range p.Stats().Stages {
		if ns, ok := natsq.StatsOf(st); ok {
			role := "consuming from"
			if st.Remote {
				role = "publishing to"
			}
			fmt.Fprintf(out, "  %s (%s) %s NATS stream %s\n", st.Name, st.Kind, role, ns.Stream)
		}
	}
	if m := p.Stats().Memory; m != nil {
		basis := m.Basis
		if basis != "memory_limit" {
			basis = "default: a quarter of " + basis
		}
		fmt.Fprintf(out, "  memory_limit %s of records held (%s; overflow %s); Go memory limit %s\n",
			mib(m.LimitBytes), basis, m.Overflow, mib(m.GoLimitBytes))
	}
	if a := p.AdminAddr(); a != "" {
		fmt.Fprintf(out, "  admin on http://%s/  (the dashboard; /stats, /metrics; pipectl top --addr %s)\n", a, a)
	}
	fmt.Fprintln(out, "  Ctrl-C drains and stops; a second Ctrl-C stops at once")
}

// localDB is the local PostgreSQL a run uses: one it started (srv), or
// the shared one that pipectl db start runs (srv nil), which the run
// leaves running.
type localDB struct {
	srv       *pgtemp.Server
	dsn, what string
	dir       string
	ephemeral bool
	keep      bool
}

// openLocalDB gives a run its local PostgreSQL. With f.ephemeral, a
// throwaway server. Otherwise the shared server on f.dataDir when one runs
// (pipectl db start), else a server of the run's own there, stopped when
// the run ends. A signal on sig cancels a start.
func openLocalDB(ctx context.Context, sig <-chan os.Signal, f runFlags, out io.Writer) (*localDB, error) {
	if !f.ephemeral {
		in, err := pgtemp.Inspect(f.dataDir, "")
		if err != nil {
			return nil, err
		}
		if in.Running && in.Owner == "" {
			return sharedDB(in), nil
		}
	}
	srv, err := startLocalDB(ctx, sig, f, out)
	if errors.Is(err, pgtemp.ErrRunning) {
		// pipectl db start won the race for the directory: use its server.
		if in, ierr := pgtemp.Inspect(f.dataDir, ""); ierr == nil && in.Running && in.Owner == "" {
			return sharedDB(in), nil
		}
	}
	if err != nil {
		return nil, err
	}
	db := &localDB{srv: srv, dsn: srv.DSN(), dir: srv.Dir(), ephemeral: f.ephemeral, keep: f.keepDB, what: "throwaway"}
	switch {
	case f.ephemeral:
	case srv.Created():
		db.what = "local, new database in " + srv.Dir() + ", stopped when this run ends"
	default:
		db.what = "local, data of earlier runs in " + srv.Dir() + ", stopped when this run ends"
	}
	if p := srv.PreviousPort(); p != 0 {
		fmt.Fprintf(out, "postgres: port %d is taken by another program; moved to %d (stored for the next runs)\n", p, srv.Port())
	}
	return db, nil
}

func sharedDB(in pgtemp.Info) *localDB {
	return &localDB{dsn: in.DSN, dir: in.Path,
		what: "shared: pipectl db start's server in " + in.Path + ", left running when this run ends"}
}

// close stops the server the run started, and says what became of it.
func (db *localDB) close(out io.Writer) error {
	if db.srv == nil {
		fmt.Fprintln(out, "postgres: left as it is (the shared server; pipectl db stop stops it)")
		return nil
	}
	rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch err := db.srv.Remove(rctx); {
	case err != nil:
		return fmt.Errorf("stop the local PostgreSQL: %w", err)
	case !db.ephemeral:
		fmt.Fprintf(out, "postgres: stopped; data kept in %s (pipectl psql opens it)\n", db.dir)
	case db.keep:
		fmt.Fprintf(out, "postgres: stopped; data kept in %s\n", db.srv.DataDir())
	default:
		fmt.Fprintln(out, "postgres: stopped and removed")
	}
	return nil
}

// startLocalDB starts the one local PostgreSQL of a run, in f.dataDir or,
// with f.ephemeral, a throwaway one; a signal on sig cancels the start.
func startLocalDB(ctx context.Context, sig <-chan os.Signal, f runFlags, out io.Writer) (*pgtemp.Server, error) {
	o := pgtemp.Options{Keep: f.keepDB}
	what := "a throwaway server"
	if !f.ephemeral {
		o = pgtemp.Options{Path: f.dataDir, GrantSearch: true}
		what = "the local server in " + f.dataDir
	}
	fmt.Fprintf(out, "postgres: starting %s (dsn is empty)...\n", what)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var interrupted os.Signal
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case interrupted = <-sig:
			cancel()
		case <-done:
		}
	})
	srv, err := pgtemp.Start(ctx, o)
	close(done)
	wg.Wait()
	if err == nil && interrupted != nil {
		err = errors.Join(ctx.Err(), srv.Remove(context.Background()))
	}
	switch {
	case interrupted != nil:
		return nil, fmt.Errorf("%s while starting %s: %w", interrupted, what, err)
	case errors.Is(err, pgtemp.ErrUnsupported):
		return nil, fmt.Errorf("%w\ngive the db stages your PostgreSQL server's URL: pipeline.yaml's dsn is ${DATABASE_URL}, so "+
			"set DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/DBNAME", err)
	case errors.Is(err, pgtemp.ErrInUse):
		return nil, fmt.Errorf("the local PostgreSQL's data directory is taken: %w\n"+
			"only one run at a time may own it: stop the other run, or give this one its own --data-dir (or --ephemeral); "+
			"for runs that share one database, start it on its own with pipectl db start, and every run uses it", err)
	case err != nil:
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	for _, d := range srv.Granted() {
		fmt.Fprintf(out, "postgres: gave OS user postgres search permission (x, an ACL entry) on %s so that it reaches its data\n", d)
	}
	return srv, nil
}

// reportConfigErrors prints a pipeline's Errors one per line
// (FILE:LINE:COL: message) and returns an exitError; other errors are
// returned as they are.
func reportConfigErrors(w io.Writer, err error) error {
	var errs pipeline.Errors
	if !errors.As(err, &errs) {
		return err
	}
	for _, e := range errs {
		fmt.Fprintln(w, e.Error())
	}
	return &exitError{code: 1}
}

// roundTook rounds a drain's time for people: to the millisecond, and
// under one as "<1ms" (rounded, an idle pipeline's 300µs read "0s").
func roundTook(d time.Duration) string {
	if d > 0 && d < time.Millisecond {
		return "<1ms"
	}
	return d.Round(time.Millisecond).String()
}
