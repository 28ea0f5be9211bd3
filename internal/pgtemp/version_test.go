// This file tests the ordering of PostgreSQL versions when choosing
// binaries.

package pgtemp

import (
	"slices"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	got := []string{"15", "9.6", "16", "10", "16.1"}
	slices.SortFunc(got, compareVersions)
	if want := []string{"9.6", "10", "15", "16", "16.1"}; !slices.Equal(got, want) {
		t.Errorf("sorted %v, want %v", got, want)
	}
}
