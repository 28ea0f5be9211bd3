// Package b3 is benchmark B3 of docs/BENCHMARKS.md: TCP → process → PostgreSQL,
// end to end. It runs the example pipeline (netio.tcp lines → process.json
// inline → db.postgres COPY, ack: commit) against three baselines on one
// throwaway PostgreSQL with its durable defaults (synchronous_commit on,
// fsync on), alternating, each against a fresh table:
//
//   - copy: `psql \copy` of the same rows from a file into the same table
//     shape, the ceiling;
//   - naive: package naive, a goroutine per connection and one
//     autocommitted INSERT per record;
//   - chan: package chanpipe, the same handlers joined by channels and
//     goroutines instead of ports and stages.
//
// Every TCP variant is driven by package loadgen over the same
// connections, and only rows acknowledged after commit count. The servers
// run inside the benchmark's process, next to the load client, so the
// process CPU and peak RSS figures include the client's share (the same
// client for every variant); PostgreSQL's CPU is read from /proc for the
// postmaster and its children.
//
// Run returns a Result whose Markdown method renders the section of
// bench/RESULTS.md.
package b3
