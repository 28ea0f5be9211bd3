//go:build !linux

package measure

// This file stands in for proc_linux.go on other systems: the figures
// that come from Linux's /proc are 0 here.

import "time"

// ProcessCPU is the CPU time of process pid so far (0: not on Linux).
func ProcessCPU(pid int) time.Duration { return 0 }

// TreeCPU is the CPU time of process pid and its children (0: not on Linux).
func TreeCPU(pid int) time.Duration { return 0 }

// Machine is the busy and I/O-wait time of all cores (0: not on Linux).
func Machine() (busy, iowait time.Duration) { return 0, 0 }

// RSS is this process's resident memory in bytes (0: not on Linux).
func RSS() int64 { return 0 }

// PeakRSS is this process's peak resident memory in bytes (0: not on Linux).
func PeakRSS() int64 { return 0 }

// ResetPeakRSS reports false: the peak cannot be reset here.
func ResetPeakRSS() bool { return false }

// ProcessRSS is process pid's resident memory and its peak, in bytes (0:
// not on Linux).
func ProcessRSS(pid int) (rss, peak int64) { return 0, 0 }
