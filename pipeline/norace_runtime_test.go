//go:build !race

package pipeline

// This file says the tests are built without the race detector (see
// race_runtime_test.go).

const rtRace = false
