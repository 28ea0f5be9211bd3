package measure

// This file reads Linux's /proc: a process's (and its children's) CPU,
// the machine's busy and I/O-wait time, and resident memory.

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc times: 100 on Linux.
const clockTick = 100

func ticks(n uint64) time.Duration { return time.Duration(n) * time.Second / clockTick }

// statTimes returns a process's ppid, utime+stime and cutime+cstime, in
// clock ticks, from /proc/PID/stat.
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

// ProcessCPU is the CPU time (user + system) of process pid so far; 0 if
// it cannot be read.
func ProcessCPU(pid int) time.Duration {
	_, self, _, err := statTimes(pid)
	if err != nil {
		return 0
	}
	return ticks(self)
}

// TreeCPU is the CPU time of process pid and its children: its own and
// its reaped children's times, plus its live children's (a PostgreSQL
// postmaster and its backends, say). 0 if pid is not positive or cannot
// be read.
func TreeCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	_, self, reaped, err := statTimes(pid)
	if err != nil {
		return 0
	}
	total := self + reaped
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		ppid, self, _, err := statTimes(p)
		if err == nil && ppid == pid {
			total += self
		}
	}
	return ticks(total)
}

// Machine returns the CPU time all cores have spent busy (not idle, not
// waiting for I/O) and waiting for I/O, from /proc/stat.
func Machine() (busy, iowait time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	// user nice system idle iowait irq softirq steal (guest time is
	// already in user).
	var t [8]uint64
	for i := range t {
		t[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	return ticks(t[0] + t[1] + t[2] + t[5] + t[6] + t[7]), ticks(t[4])
}

// status returns fields of /proc/PID/status (VmRSS, VmHWM) in bytes; 0
// for those it cannot read.
func status(pid string, fields ...string) []int64 {
	out := make([]int64, len(fields))
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return out
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for i, f := range fields {
			if k == f {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				out[i] = kb << 10
			}
		}
	}
	return out
}

// RSS is this process's resident memory (VmRSS) in bytes.
func RSS() int64 { return status("self", "VmRSS")[0] }

// PeakRSS is this process's peak resident memory (VmHWM) in bytes.
func PeakRSS() int64 { return status("self", "VmHWM")[0] }

// ResetPeakRSS resets this process's VmHWM (Linux 4.0 and later), so that
// PeakRSS measures from now on; it reports whether it could.
func ResetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// ProcessRSS is process pid's resident memory (VmRSS) and its peak
// (VmHWM), in bytes.
func ProcessRSS(pid int) (rss, peak int64) {
	f := status(strconv.Itoa(pid), "VmRSS", "VmHWM")
	return f[0], f[1]
}
