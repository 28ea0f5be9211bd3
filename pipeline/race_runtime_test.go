//go:build race

package pipeline

// rtRace reports a -race build, which runs the million-event test with
// fewer events: the race detector slows every atomic and channel
// operation several times over.
const rtRace = true
