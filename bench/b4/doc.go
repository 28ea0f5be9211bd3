// Package b4 is benchmark B4 of docs/BENCHMARKS.md: overload. The pipeline
// under test is the example pipeline run by `pipectl run` in its own
// process (built from cmd/pipectl unless Config.Pipectl names a binary),
// so that the memory measured is the pipeline's alone and not the load
// client's.
//
// Right before the overload, against the same setup, it measures the rate
// the pipeline sustains (windowed clients, store queue under `overflow:
// block`, as in B3); then it offers Factor times that rate for Duration to
// a fresh pipeline process whose store queue is under `overflow: reject`,
// sampling the process's RSS (/proc/PID/status) and its store queue depth
// (the admin endpoint's /stats) every second. It reports the peak RSS and
// whether it grew with time, the acked rows per second against the
// sustained maximum, the nacks sent, the CPU of the pipeline, PostgreSQL
// and the client over each run, and checks that every acked row is in the
// table: the client keeps the acked ids in a bitmap indexed by id, and the
// table's ids are read back into another.
package b4
