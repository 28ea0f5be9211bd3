// This file reads and writes the extended attributes that hold POSIX ACLs
// on Linux.

package pgtemp

import "golang.org/x/sys/unix"

// setXattr and getXattr write and read an extended attribute of path (the
// POSIX ACL that Options.GrantSearch edits); getXattr's error wraps
// errNoXattr when path has none of that name.
func setXattr(path, name string, value []byte) error { return unix.Setxattr(path, name, value, 0) }

func getXattr(path, name string, buf []byte) (int, error) { return unix.Getxattr(path, name, buf) }

var errNoXattr error = unix.ENODATA
