// Package poll is how tests wait for something to happen elsewhere (a
// worker to park, a row to land, a log line to appear): Until polls a
// condition until it holds.
//
// The wait is bounded only so that a broken component fails its test
// instead of hanging it; a test never asserts how long it took.
package poll
