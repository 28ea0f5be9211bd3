//go:build unix

package pgtemp_test

import (
	"os"
	"syscall"
)

// ownerOf returns the user ID that owns fi's file.
func ownerOf(fi os.FileInfo) uint32 { return fi.Sys().(*syscall.Stat_t).Uid }
