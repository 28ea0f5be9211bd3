//go:build !unix

// This file stands in for owner_unix_test.go where there is no Unix.

package pgtemp_test

import (
	"os"
	"os/exec"
)

// ownerOf is 0: ownership is not compared where there is no user ID.
func ownerOf(os.FileInfo) uint32 { return 0 }

// runAs does nothing: there are no user IDs to run as.
func runAs(*exec.Cmd, int, int) {}
