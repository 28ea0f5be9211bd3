//go:build unix

package netio

// This file holds the wait for input without a buffer, on Unix: a
// one-byte MSG_PEEK on the runtime's poller.

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// waitReadable waits until the socket has input, an error or EOF, without
// a buffer: a non-blocking one-byte MSG_PEEK, parked on the runtime's
// poller while it would block. The read deadline applies.
func waitReadable(rc syscall.RawConn) error {
	if rc == nil {
		return nil
	}
	var b [1]byte
	err := rc.Read(func(fd uintptr) bool {
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return err != unix.EAGAIN && err != unix.EWOULDBLOCK && err != unix.EINTR
	})
	return err
}
