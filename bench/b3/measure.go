package b3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stagedserver/seda/internal/pgtemp"
)

// StartPostgres starts the throwaway PostgreSQL a benchmark runs against:
// PostgreSQL's durable defaults, room for 200 connections. It returns the
// server (the caller removes it) and its postmaster's PID, for
// PostgresCPU. name prefixes the progress line written to log.
func StartPostgres(ctx context.Context, name string, log io.Writer) (*pgtemp.Server, int, error) {
	fmt.Fprintf(log, "%s: starting a throwaway PostgreSQL (durable defaults)...\n", name)
	srv, err := pgtemp.Start(ctx, pgtemp.Options{Settings: map[string]string{"max_connections": "200"}})
	if err != nil {
		return nil, 0, err
	}
	pid, err := PostmasterPID(srv.DataDir())
	if err != nil {
		srv.Remove(context.WithoutCancel(ctx))
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	return srv, pid, nil
}

// clockTick is USER_HZ, the unit of /proc/PID/stat times: 100 on Linux.
const clockTick = 100

// processCPU is this process's CPU time (user + system) so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// PostmasterPID reads the PID of the server on dataDir from its
// postmaster.pid.
func PostmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	pid, err := strconv.Atoi(strings.TrimSpace(string(line)))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid: %w", err)
	}
	return pid, nil
}

// statTimes returns a process's ppid, utime+stime and cutime+cstime, in
// clock ticks.
func statTimes(pid int) (ppid int, self, children uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return 0, 0, 0, errors.New("short stat")
	}
	ppid, _ = strconv.Atoi(f[1])
	n := func(k int) uint64 { v, _ := strconv.ParseUint(f[k-3], 10, 64); return v }
	return ppid, n(14) + n(15), n(16) + n(17), nil
}

// PostgresCPU is the CPU time of the postmaster pid and all its children:
// the postmaster's own and its reaped children's times, plus the live
// children's.
func PostgresCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	_, self, reaped, err := statTimes(pid)
	if err != nil {
		return 0
	}
	ticks := self + reaped
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		ppid, self, _, err := statTimes(p)
		if err == nil && ppid == pid {
			ticks += self
		}
	}
	return time.Duration(ticks) * time.Second / clockTick
}

// ProcessCPU is the CPU time (user + system) of process pid so far.
func ProcessCPU(pid int) time.Duration {
	_, self, _, err := statTimes(pid)
	if err != nil {
		return 0
	}
	return time.Duration(self) * time.Second / clockTick
}

// resetPeakRSS resets this process's VmHWM (Linux 4.0 and later); it
// reports whether it could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// procStatus returns a field of /proc/self/status in bytes (VmHWM, VmRSS).
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return kb << 10
	}
	return 0
}

// PeakRSS is this process's VmHWM in bytes.
func PeakRSS() int64 { return procStatus("VmHWM") }

// RSS is this process's VmRSS in bytes.
func RSS() int64 { return procStatus("VmRSS") }

// ResetPeakRSS resets VmHWM so that PeakRSS measures from now on.
func ResetPeakRSS() bool { return resetPeakRSS() }
