// Package b7 is benchmark B7 of docs/BENCHMARKS.md: the ingest pipeline
// split across processes (front: accept and parse; JetStream; back:
// store) against the same pipeline in one process, on the same machine,
// alternating. Both store the same records (B3's JSON records over TCP,
// acked) in the same PostgreSQL; a run ends when the last row is stored.
// It reports rows per second and CPU per row, the split's by part (front,
// back, nats-server, PostgreSQL), so that its overhead is plain, and from
// those per-row costs a worked estimate of what N front and M back
// machines would carry.
//
// nats-server runs as a process of its own, built from its Go module (the
// version go.mod pins), with a fresh file store each run; pipectl is built
// from the module too. On one 2-core machine the split cannot scale out:
// B7 measures what the hop through JetStream costs.
package b7
