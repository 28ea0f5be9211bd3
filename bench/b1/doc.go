// Package b1 runs benchmark B1 of docs/BENCHMARKS.md: a port hop against a
// buffered channel of the same capacity, with the same producers, workers,
// payload (a 32-byte struct) and work per item (adding a field to a sum).
//
// Both sides of a case run in one process, alternating, so that a noisy
// machine moves both figures alike and their ratio means something.
package b1
