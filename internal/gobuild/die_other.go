//go:build !linux

package gobuild

// This file holds DieWithCaller outside Linux, where it does nothing.

import "os/exec"

// DieWithCaller does nothing here: only Linux has a parent-death signal.
// See die_linux.go.
func DieWithCaller(*exec.Cmd) {}
