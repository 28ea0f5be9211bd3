// Package b10 is benchmark B10 of docs/BENCHMARKS.md, the soak: the
// example pipeline (B3's, as `pipectl run` in its own process, against a
// real PostgreSQL) runs for a long time (20 minutes) at half its
// sustained rate, with 5% of the records malformed and 1% of the
// connections dropped abruptly, while the process's RSS, goroutines and
// open files are sampled. Flat is the target: their least-squares slopes
// over the last two thirds are reported. Every acked id is checked in the
// table, no malformed record may be acked, and the process must stay up
// and drain cleanly.
package b10
