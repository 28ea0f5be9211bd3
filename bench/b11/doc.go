// Package b11 is benchmark B11 of docs/BENCHMARKS.md, upserts, and the
// check of issue 24's held-out store: per-key order end to end.
//
// B11 runs B3's pipeline (netio.tcp lines → process.json inline →
// db.postgres copy, ack: commit, B3's store settings) twice over, side by
// side and alternating, each run against a fresh table (id bigint primary
// key, seq bigint, body jsonb) on one throwaway PostgreSQL with its
// durable defaults:
//
//   - ignore: B3's records, every one a new key, conflict: ignore;
//   - update: the same records over a key space of 100,000 (key = record
//     id mod 100,000, seq = record id), conflict: update, version: seq,
//     shard_by: [id], so that after the first 100,000 every record
//     overwrites a stored row.
//
// Only acked rows count; each run checks every record acked, and for
// update that every key holds its highest seq and the record of it.
//
// HeldOut runs the held-out check itself: B3's pipeline with the store
// the issue gives (columns id, seq and the record, conflict: update,
// shard_by: [id], workers: 4, and a method and batch to choose), fed by
// connections that each own a set of keys and send every key's updates
// with seq rising 0…99, in runs of ten, so that updates of one key fall
// in one batch; it checks that every update was acked and that every key
// holds seq 99 and its record.
package b11
