package rig

// This file holds the throwaway PostgreSQL a benchmark runs against, and
// the reading of its CPU: the postmaster, its client backends, and a figure
// settled once they have exited.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/stagedserver/seda/bench/measure"
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

// ClientBackends returns the PIDs of pgPID's client backends (the
// children whose process title names a client: "127.0.0.1(port)" or
// "[local]"), and how many of its children have exited and not been
// reaped yet (zombies). Nil and 0 when /proc cannot be read.
func ClientBackends(pgPID int) (pids map[int]bool, zombies int) {
	if pgPID <= 0 {
		return nil, 0
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, 0
	}
	pids = map[int]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		i := bytes.LastIndexByte(stat, ')')
		if err != nil || i < 0 {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces.
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pgPID) {
			continue
		}
		if f[0] == "Z" {
			zombies++
			continue
		}
		title, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if bytes.Contains(title, []byte("(")) || bytes.Contains(title, []byte("[local]")) {
			pids[pid] = true
		}
	}
	return pids, zombies
}

// SettledCPU returns PostgreSQL's CPU (measure.TreeCPU of pgPID) once
// the client backends of pgPID that are not in before have exited and
// been reaped. A client sees its session end before its backend has
// exited, and for a moment after that the backend's CPU is in neither its
// own times nor the postmaster's children's: B3 once read 0.1 s for psql
// \copy of a million rows, and a read just after the backend left /proc
// showed 50 ms of 860. So the figure is the largest of the readings over
// 200 ms after the backends are gone (the true figure only grows). It
// gives up after 10 s (an error).
func SettledCPU(ctx context.Context, pgPID int, before map[int]bool) (time.Duration, error) {
	deadline := time.Now().Add(10 * time.Second)
	var best time.Duration
	var gone time.Time
	for {
		best = max(best, measure.TreeCPU(pgPID))
		pids, left := ClientBackends(pgPID)
		for pid := range pids {
			if !before[pid] {
				left++
			}
		}
		now := time.Now()
		switch {
		case left > 0:
			gone = time.Time{}
		case gone.IsZero():
			gone = now
		case now.Sub(gone) >= 200*time.Millisecond:
			return best, nil
		}
		if now.After(deadline) {
			return best, fmt.Errorf("%d PostgreSQL backends not gone 10 s after their clients ended", left)
		}
		select {
		case <-ctx.Done():
			return best, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
