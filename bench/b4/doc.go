// Package b4 is benchmark B4 of docs/BENCHMARKS.md: overload. It measures the
// rate the example pipeline sustains (windowed clients, as in B3), then
// offers Factor times that rate for Duration to the same pipeline with its
// store queue under `overflow: reject`, sampling the process's RSS every
// second. It reports the peak RSS and whether it grew with time, the acked
// rows per second against the sustained maximum, the nacks sent, and
// checks that every acked row is in the table.
//
// The pipeline runs inside the benchmark's process next to the load
// client, so RSS includes the client's (bounded) buffers.
package b4
