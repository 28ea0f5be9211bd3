//go:build !unix

package netio

import "syscall"

// waitReadable returns at once where there is no portable peek (Windows):
// the reader then waits in Read with its buffer taken, so an idle
// connection holds a read buffer there, as it would in a plain Go server.
// Everything else behaves the same.
func waitReadable(syscall.RawConn) error { return nil }
