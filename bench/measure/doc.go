// Package measure reads what the benchmarks report besides throughput:
// CPU time (this process, another process, a process and its children,
// the whole machine) and resident memory (RSS and its peak).
//
// CPU time of this process works on every system (getrusage on Unix,
// GetProcessTimes on Windows). The other figures come from /proc and are
// read on Linux only; elsewhere they are 0 (and ResetPeakRSS reports
// false), which the benchmarks print as missing rather than fail on.
package measure
