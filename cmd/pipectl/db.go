// This file is pipectl db: the local PostgreSQL run on its own, shared by
// every pipeline process that uses its data directory.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/stage"
)

func newDBCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "db start|stop|status|url [--data-dir DIR]",
		Short: "Run the local PostgreSQL on its own, shared by several pipeline processes",
		Long: `Db runs the local PostgreSQL that pipectl run uses when a db stage has no
dsn (the data in --data-dir, default ` + defaultDataDir + `) on its own, owned by
no pipeline process:

  pipectl db start    start it in the background; it runs until pipectl db stop,
                      whatever becomes of the processes that use it
  pipectl db stop     stop it (a fast shutdown); the data and the port stay
  pipectl db status   say whether it runs, on which port, and who owns it
                      (exit status 0 when it runs, 3 when it does not)
  pipectl db url      print its URL, for DATABASE_URL (exit status 1 when it
                      does not run)

Every pipectl run on the same --data-dir then uses it and leaves it running
when it ends: a pipeline split over several processes (README: Across
processes), or a second pipeline beside make run, share one database, and
killing any of them leaves it up. Without it, pipectl run starts a server
of its own there and stops it when it ends (see pipectl run --help).

The server keeps its port across starts (stored in --data-dir), so a URL
copied once stays valid; only when another program has taken the port
does it move, and start says so.`,
		Example: `  pipectl db start
  export DATABASE_URL=$(pipectl db url)
  pipectl db stop`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"start", "stop", "status", "url"},
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			switch args[0] {
			case "start":
				return dbStart(cmd.Context(), dataDir, out)
			case "stop":
				return dbStop(cmd.Context(), dataDir, out)
			case "status":
				return dbStatus(dataDir, out)
			case "url":
				return dbURL(dataDir, out)
			}
			return fmt.Errorf("db %s: want start, stop, status or url", args[0])
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the local PostgreSQL's directory, as given to pipectl run")
	return cmd
}

func dbStart(ctx context.Context, dataDir string, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	d, err := pgtemp.StartDetached(ctx, pgtemp.Options{Path: dataDir, GrantSearch: true})
	if errors.Is(err, pgtemp.ErrInUse) {
		return fmt.Errorf("db start: %w\na pipectl run owns the local PostgreSQL there and stops it when it ends: "+
			"stop that run first, then pipectl db start (the run can then be started again, and uses it)", err)
	}
	if err != nil {
		return fmt.Errorf("db start: %w", err)
	}
	for _, g := range d.Granted {
		fmt.Fprintf(out, "postgres: gave OS user postgres search permission (x, an ACL entry) on %s so that it reaches its data\n", g)
	}
	if d.PreviousPort != 0 {
		fmt.Fprintf(out, "postgres: port %d is taken by another program; moved to %d (stored for the next starts)\n", d.PreviousPort, d.Port)
	}
	switch {
	case !d.Started:
		fmt.Fprintf(out, "postgres: already running in %s (pid %d), shared\n", d.Path, d.PID)
	case d.Created:
		fmt.Fprintf(out, "postgres: started in %s (pid %d), a new database, shared\n", d.Path, d.PID)
	default:
		fmt.Fprintf(out, "postgres: started in %s (pid %d) on the data of earlier runs, shared\n", d.Path, d.PID)
	}
	fmt.Fprintf(out, "postgres: %s\n", d.DSN)
	fmt.Fprintln(out, "  pipectl run uses it when DATABASE_URL is empty; it runs until pipectl db stop")
	return nil
}

func dbStop(ctx context.Context, dataDir string, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	in, err := pgtemp.StopDetached(ctx, dataDir)
	if errors.Is(err, pgtemp.ErrInUse) {
		return fmt.Errorf("db stop: %w (that process started it with pipectl run; Ctrl-C there drains and stops it)", err)
	}
	switch {
	case err != nil:
		return fmt.Errorf("db stop: %w", err)
	case !in.Exists:
		fmt.Fprintf(out, "postgres: no local database in %s\n", in.Path)
	case !in.Running:
		fmt.Fprintf(out, "postgres: not running in %s\n", in.Path)
	default:
		fmt.Fprintf(out, "postgres: stopped (pid %d); data kept in %s, port %d kept for the next start\n", in.PID, in.Path, in.Port)
	}
	return nil
}

// dbStatus prints the state of the local database; the exit status is 3
// when it does not run, as an init script's status is.
func dbStatus(dataDir string, out io.Writer) error {
	in, err := pgtemp.Inspect(dataDir, "")
	if err != nil {
		return fmt.Errorf("db status: %w", err)
	}
	fmt.Fprint(out, statusText(in))
	if !in.Running {
		return &exitError{code: 3}
	}
	return nil
}

func statusText(in pgtemp.Info) string {
	var b strings.Builder
	switch {
	case !in.Exists:
		fmt.Fprintf(&b, "postgres: no local database in %s (pipectl db start or pipectl run makes one)\n", in.Path)
		return b.String()
	case !in.Running:
		fmt.Fprintf(&b, "postgres: stopped; data in %s", in.Path)
		if in.Port > 0 {
			fmt.Fprintf(&b, ", port %d kept for the next start", in.Port)
		}
		b.WriteString("\n")
		return b.String()
	case in.Owner == "":
		fmt.Fprintf(&b, "postgres: running (pid %d), shared: owned by no pipeline process; pipectl db stop stops it\n", in.PID)
	default:
		fmt.Fprintf(&b, "postgres: running (pid %d), owned by %s, which stops it when it ends\n", in.PID, in.Owner)
	}
	fmt.Fprintf(&b, "  data: %s\n  url:  %s\n", in.Path, stage.Redact(in.DSN))
	return b.String()
}

func dbURL(dataDir string, out io.Writer) error {
	in, err := pgtemp.Inspect(dataDir, "")
	if err != nil {
		return fmt.Errorf("db url: %w", err)
	}
	if !in.Running {
		return fmt.Errorf("db url: the local PostgreSQL in %s is not running: pipectl db start starts it", in.Path)
	}
	_, err = fmt.Fprintln(out, in.DSN)
	return err
}
