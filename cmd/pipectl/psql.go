package main

// This file holds `pipectl psql`: psql on the local PostgreSQL that
// pipectl run keeps, starting the server for the session if it is down.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/internal/pgtemp"
)

func newPsqlCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "psql [--data-dir DIR] [-- PSQL-ARGS...]",
		Short: "Open psql on the local PostgreSQL that pipectl run keeps",
		Long: `Psql opens psql on the local database that pipectl run starts when a db
stage has no dsn (the data in --data-dir, default ` + defaultDataDir + `).
When it runs (a run's, or the shared one of pipectl db start), psql
connects to it; otherwise it starts the server for the session and stops
it when psql exits. Arguments
after -- go to psql:

  pipectl psql -- -c 'SELECT count(*) FROM events'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPsql(cmd.Context(), dataDir, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the local PostgreSQL's directory, as given to pipectl run")
	return cmd
}

func runPsql(ctx context.Context, dataDir string, args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	psql, err := findPsql()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dataDir, "data", "PG_VERSION")); err != nil {
		return fmt.Errorf("no local database in %s: pipectl run makes one there when a db stage has no dsn (see --data-dir)", dataDir)
	}
	dsn, running := pgtemp.RunningDSN(dataDir, "postgres")
	if !running {
		srv, err := pgtemp.Start(ctx, pgtemp.Options{Path: dataDir, GrantSearch: true})
		if errors.Is(err, pgtemp.ErrInUse) {
			// A run took it meanwhile, or is stopping: it may be up now.
			dsn, running = pgtemp.RunningDSN(dataDir, "postgres")
		}
		switch {
		case running:
		case err != nil:
			return fmt.Errorf("start the local PostgreSQL in %s: %w", dataDir, err)
		default:
			fmt.Fprintf(stderr, "pipectl psql: started the local PostgreSQL in %s for this session; it stops when psql exits\n", dataDir)
			defer func() {
				sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if serr := srv.Remove(sctx); serr != nil {
					err = errors.Join(err, fmt.Errorf("stop the local PostgreSQL: %w", serr))
				}
			}()
			dsn = srv.DSN()
		}
	}
	c := exec.CommandContext(ctx, psql, append([]string{dsn}, args...)...)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	// psql handles Ctrl-C itself (it cancels the query); this process
	// must outlive it to stop the server it may have started.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGQUIT)
	defer signal.Stop(sig)
	err = c.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return &exitError{code: max(ee.ExitCode(), 1)}
	}
	return err
}

// findPsql returns the psql next to the server binaries pgtemp uses, else
// the one on PATH.
func findPsql() (string, error) {
	if dir, err := pgtemp.FindBinDir(); err == nil {
		if p := filepath.Join(dir, "psql"); fileExists(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("psql")
	if err != nil {
		return "", errors.New("psql not found: install it with `apt-get install -y postgresql-client`")
	}
	return p, nil
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}
