//go:build !unix

package netio

// This file holds the socket calls the net package lacks, where there is
// no portable way to make them (Windows): none.

import (
	"errors"
	"net"
	"syscall"
)

// waitReadable returns at once where there is no portable peek (Windows):
// the reader then waits in Read with its buffer taken, so an idle
// connection holds a read buffer there, as it would in a plain Go server.
// Everything else behaves the same.
func waitReadable(syscall.RawConn) error { return nil }

// discardReady does nothing here: input left unread when a refused
// connection is closed may make the kernel reset it.
func discardReady(net.Conn) {}

// canReadNow says that readNow cannot read without waiting here: under
// ack: none a drain lingers instead.
const canReadNow = false

var errNotReady = errors.New("no input ready")

// readNow reads nothing here.
func readNow(net.Conn, []byte) (int, error) { return 0, errNotReady }
