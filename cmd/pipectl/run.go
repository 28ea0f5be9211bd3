package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/pipeline"
)

type runFlags struct {
	file   string
	keepDB bool
	admin  string
	drain  time.Duration
}

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
${DATABASE_URL}) is given one throwaway PostgreSQL server, started on a
free port on 127.0.0.1 and removed on exit; --keep-db keeps its data
directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPipeline(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "pipeline.yaml", "the pipeline file")
	fl.BoolVar(&f.keepDB, "keep-db", false, "keep the throwaway PostgreSQL's data directory on exit")
	fl.StringVar(&f.admin, "admin", "", "admin endpoint address, overriding the file's admin.listen")
	fl.DurationVar(&f.drain, "drain", 0, "drain deadline, overriding the file's (default 30s)")
	return cmd
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

	// Signals are caught from here on, so that one arriving while
	// PostgreSQL or the stages start cancels the start instead of killing
	// the process halfway.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	startDone := make(chan struct{})
	var interrupted bool
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		select {
		case <-sig:
			interrupted = true
			cancelStart()
		case <-startDone:
		}
	}()
	endStart := func() {
		close(startDone)
		watch.Wait()
	}

	if need := throwawayStages(cfg); len(need) > 0 {
		srv, err := startThrowawayDB(startCtx, f.keepDB, out)
		if err != nil {
			endStart()
			return err
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if rerr := srv.Remove(rctx); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove the throwaway PostgreSQL: %w", rerr))
			} else if f.keepDB {
				fmt.Fprintf(out, "postgres: stopped; data kept in %s\n", srv.DataDir())
			} else {
				fmt.Fprintln(out, "postgres: stopped and removed")
			}
		}()
		names := make([]string, len(need))
		for i, sc := range need {
			sc.Config.Set("dsn", srv.DSN())
			names[i] = sc.Name
		}
		fmt.Fprintf(out, "postgres: %s (throwaway, for %s)\n", pipeline.Redact(srv.DSN()), strings.Join(names, ", "))
	}

	drain := cfg.Drain
	if f.drain > 0 {
		drain = f.drain
	}
	if drain <= 0 {
		drain = pipeline.DefaultDrain
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, DrainTimeout: drain, AdminListen: f.admin})
	if err != nil {
		endStart()
		return reportConfigErrors(errw, err)
	}
	if err := p.Start(startCtx); err != nil {
		endStart()
		_, serr := p.Stop(context.Background())
		if interrupted {
			return errors.Join(errors.New("interrupted while starting"), serr)
		}
		return errors.Join(err, serr)
	}
	endStart()

	fmt.Fprintf(out, "pipeline %s: running\n", p.Name())
	for _, sc := range cfg.Stages {
		if st := p.Stage(sc.Name); st != nil {
			if src, ok := st.Source().(interface{ Addr() net.Addr }); ok && src.Addr() != nil {
				fmt.Fprintf(out, "  %s (%s) listening on %s\n", sc.Name, sc.Kind, src.Addr())
			}
		}
	}
	if a := p.AdminAddr(); a != "" {
		fmt.Fprintf(out, "  admin on http://%s/stats  (pipectl top --addr %s)\n", a, a)
	}
	fmt.Fprintln(out, "  Ctrl-C drains and stops; a second Ctrl-C stops at once")

	if !interrupted {
		select {
		case <-ctx.Done():
		case s := <-sig:
			fmt.Fprintf(out, "%s: draining (up to %s; send another signal to stop at once)\n", s, drain)
		}
	}
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case s := <-sig:
			fmt.Fprintf(out, "%s: stopping at once\n", s)
			cancel()
		case <-stopped:
		}
	}()
	rep, err := p.Stop(dctx)
	close(stopped)
	wg.Wait()
	if err != nil {
		return err
	}
	if rep.Abandoned > 0 {
		return fmt.Errorf("pipeline %s: %d events abandoned", p.Name(), rep.Abandoned)
	}
	fmt.Fprintf(out, "pipeline %s: drained and stopped in %s\n", p.Name(), rep.Took.Round(time.Millisecond))
	return nil
}

// startThrowawayDB starts the one throwaway PostgreSQL of a run.
func startThrowawayDB(ctx context.Context, keep bool, out io.Writer) (*pgtemp.Server, error) {
	fmt.Fprintln(out, "postgres: starting a throwaway server (dsn is empty)...")
	srv, err := pgtemp.Start(ctx, pgtemp.Options{Keep: keep})
	if err != nil {
		return nil, fmt.Errorf("start a throwaway PostgreSQL: %w", err)
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
