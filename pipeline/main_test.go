package pipeline

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test of the package, the loader's too, must leave no goroutine
// behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
