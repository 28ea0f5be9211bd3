// Package b9 is benchmark B9 of docs/BENCHMARKS.md: scale-out across
// processes against a latency-bound database. A front (accept, parse)
// fills a JetStream stream with the records; then 1, 2 or 4 back
// processes (store), each with the same pinned batch and pool, drain it
// into a PostgreSQL table whose every statement takes 20 ms (a statement
// trigger that sleeps). With the database's latency, not the machine's
// cores, bounding each back, rows per second grow with the backs: this is
// the part of scaling out that one 2-core machine can show.
//
// Rows per second are measured between 10% and 90% of the rows stored, so
// that the backs' start and the last envelopes' tail do not count; CPU
// per row (backs, nats-server, PostgreSQL) over the whole drain. Runs
// alternate the order of the back counts; every run checks every record
// stored once.
package b9
