//go:build race

package pipeline

// This file says the tests are built with the race detector, which the
// million-event test runs with fewer events.

// rtRace reports a -race build, which runs the million-event test with
// fewer events: the race detector slows every atomic and channel
// operation several times over.
const rtRace = true
