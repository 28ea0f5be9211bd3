//go:build !unix

package netio

// This file holds the wait for input without a buffer where there is no
// MSG_PEEK: none; the reader waits in Read with its buffer.

import "syscall"

// waitReadable returns at once where there is no portable peek (Windows):
// the reader then waits in Read with its buffer taken, so an idle
// connection holds a read buffer there, as it would in a plain Go server.
// Everything else behaves the same.
func waitReadable(syscall.RawConn) error { return nil }
