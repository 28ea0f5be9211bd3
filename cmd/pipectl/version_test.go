package main

// This file tests pipectl version: what it prints of the module and the
// Go version.

import (
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "pipectl github.com/stagedserver/seda ") || !strings.Contains(out, " go1.") {
		t.Errorf("exit %d, %q", code, out)
	}
}
