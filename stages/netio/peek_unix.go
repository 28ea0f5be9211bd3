//go:build unix

package netio

// This file holds the socket calls the net package lacks, on Unix: the
// wait for input without a buffer (a one-byte MSG_PEEK on the runtime's
// poller) and dropping the input that has arrived without waiting.

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// waitReadable waits until the socket has input, an error or EOF, without
// a buffer: a non-blocking one-byte MSG_PEEK, parked on the runtime's
// poller while it would block. The read deadline applies.
//
// The socket's error (ECONNRESET: the client reset the connection) is
// returned: the kernel hands it out once, to the peek, and the read after
// it would find only EOF, so that a reset looked like a clean close and
// the record it cut off was taken for a whole last line
// (TestResetDropsTheUnfinishedRecord).
func waitReadable(rc syscall.RawConn) error {
	if rc == nil {
		return nil
	}
	var b [1]byte
	var perr error
	err := rc.Read(func(fd uintptr) bool {
		_, _, perr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return perr != unix.EAGAIN && perr != unix.EWOULDBLOCK && perr != unix.EINTR
	})
	if err == nil && perr != nil {
		err = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("recvfrom", perr)}
	}
	return err
}

// discardReady reads and drops the input that has arrived on nc, without
// waiting for more, so that closing it sends no reset for input left
// unread.
func discardReady(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var b [4096]byte
	rc.Read(func(fd uintptr) bool {
		for {
			if n, err := unix.Read(int(fd), b[:]); n <= 0 || err != nil {
				return true // drained (EAGAIN), ended or failed: never wait
			}
		}
	})
}

// canReadNow says that readNow reads without waiting here.
const canReadNow = true

// errNotReady is readNow's when no input has arrived.
var errNotReady = errors.New("no input ready")

// readNow reads into b the input that has arrived on nc, without waiting:
// it returns errNotReady when there is none and io.EOF once the client
// has shut its side. nc's read deadline must not have passed.
func readNow(nc net.Conn, b []byte) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0, errNotReady
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), b)
		return true // never wait
	}); err != nil {
		return 0, err
	}
	switch {
	case rerr == unix.EAGAIN || rerr == unix.EWOULDBLOCK || rerr == unix.EINTR:
		return 0, errNotReady
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
