//go:build !linux

// This file stands in for xattr_linux.go: ACLs are edited on Linux only.

package pgtemp

import "errors"

// Editing ACLs (Options.GrantSearch) is done on Linux only, where they are
// stored as the system.posix_acl_access attribute; elsewhere the error
// says to give search permission by hand.

func setXattr(string, string, []byte) error { return errors.ErrUnsupported }

func getXattr(string, string, []byte) (int, error) { return 0, errors.ErrUnsupported }

var errNoXattr = errors.New("no such attribute")
