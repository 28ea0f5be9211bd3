// Package b8 is benchmark B8 of docs/BENCHMARKS.md: light rows. One
// million RFC 5424 messages, octet-counted (RFC 6587), over 4 TCP
// connections, are stored as (host, app, msg) rows by three
// contenders, side by side on one throwaway PostgreSQL with its durable
// defaults, alternating, each into a fresh table:
//
//   - pipeline: the README's syslog pipeline exactly as written (its YAML
//     is read from README.md; only the listen address is moved to a free
//     port and the admin endpoint to 127.0.0.1:0), run by `pipectl run`
//     in a process of its own, so its CPU is its own;
//   - copy: four `psql \copy` processes at once, each loading a quarter of
//     the same rows from a file: the ceiling;
//   - rsyslog: rsyslogd (Debian's rsyslog and rsyslog-pgsql) with imtcp
//     into ompgsql, batches of 1000 rows, 4 action workers.
//
// The pipeline and rsyslog take the messages with nothing acknowledged
// (ack: none; syslog senders read no acks), so a run ends when the table
// stops growing and holds every row: the benchmark polls the table's size
// and, once the senders are done and the size has settled, counts and
// checksums the rows. Every row must be exact: the count and an
// order-independent sum of the md5 of each row's three columns must equal
// what was sent, or the run fails.
//
// A fourth contender, json, measures the JSON path the same way: the
// example pipeline (netio.tcp lines → process.json inline → db.postgres,
// ack: commit; rig.PipelineYAML, B3's) in its own `pipectl run`, fed JSON
// records over 4 connections by package loadgen, counting only rows acked
// after commit.
//
// Figures: rows/s (send start to the last row stored), CPU per record of
// the contender's process (the pipeline, rsyslogd, the psql processes)
// and of PostgreSQL, and the machine's load while the runs went.
package b8
