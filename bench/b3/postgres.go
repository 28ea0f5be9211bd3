package b3

import (
	"context"
	"fmt"
	"io"

	"github.com/stagedserver/seda/internal/pgtemp"
)

// StartPostgres starts the throwaway PostgreSQL a benchmark runs against:
// PostgreSQL's durable defaults, room for 200 connections. It returns the
// server (the caller removes it) and its postmaster's PID, for
// measure.TreeCPU. name prefixes the progress line written to log.
func StartPostgres(ctx context.Context, name string, log io.Writer) (*pgtemp.Server, int, error) {
	fmt.Fprintf(log, "%s: starting a throwaway PostgreSQL (durable defaults)...\n", name)
	srv, err := pgtemp.Start(ctx, pgtemp.Options{Settings: map[string]string{"max_connections": "200"}})
	if err != nil {
		return nil, 0, err
	}
	pid := srv.PostmasterPID()
	if pid == 0 {
		srv.Remove(context.WithoutCancel(ctx))
		return nil, 0, fmt.Errorf("%s: the throwaway PostgreSQL has no postmaster.pid", name)
	}
	return srv, pid, nil
}
