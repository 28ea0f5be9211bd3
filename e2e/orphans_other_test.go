//go:build !linux

package e2e

import "os/exec"

// dieWithTest does nothing here: only Linux has a parent-death signal.
// See orphans_linux_test.go.
func dieWithTest(*exec.Cmd) {}
