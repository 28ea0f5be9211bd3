//go:build unix

// This file holds what the tests need of Unix file owners: who owns a
// file, and running a command as another user.

package pgtemp_test

import (
	"os"
	"os/exec"
	"syscall"
)

// ownerOf returns the user ID that owns fi's file.
func ownerOf(fi os.FileInfo) uint32 { return fi.Sys().(*syscall.Stat_t).Uid }

// runAs makes cmd run as user uid, group gid.
func runAs(cmd *exec.Cmd, uid, gid int) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}
}
