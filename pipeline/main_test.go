package pipeline

// This file holds TestMain: no test of the package may leave a goroutine
// behind.

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test of the package, the loader's too, must leave no goroutine
// behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
