//go:build !linux

package gobuild

import "os/exec"

// DieWithCaller does nothing here: only Linux has a parent-death signal.
// See die_linux.go.
func DieWithCaller(*exec.Cmd) {}
