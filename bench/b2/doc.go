// Package b2 runs benchmark B2 of docs/BENCHMARKS.md: a three-stage chain
// built with the framework (package pipeline: ports, worker pools, batch
// dequeue, stats and latency histograms on) against the same topology
// hand-written with buffered channels and goroutines.
//
// Both sides move the same items: one heap-allocated record per item (an
// *stage.Event for the framework, a small struct for the channels), made
// by one producer, through three stages of Workers goroutines each, with
// queues of the same capacity. Every stage's work is trivial: add the
// item's number to a sum, and the last stage checks the sum, so that
// nothing can be lost unseen. Runs alternate between the two sides, so
// that a noisy machine moves both figures alike and their ratio means
// something.
package b2
