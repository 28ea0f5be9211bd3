//go:build unix

package main

// This file reads top's quit keys on Unix, polling the input so that ctx
// can end the wait.

import (
	"context"

	"golang.org/x/sys/unix"
)

// readKeys returns when q, Q, Ctrl-C or Ctrl-D is typed, when the input
// ends, or when ctx ends. It polls so that it never sits in a read that
// nothing could interrupt.
func readKeys(ctx context.Context, fd int) {
	buf := make([]byte, 16)
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		if n == 0 {
			continue
		}
		if fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 && fds[0].Revents&unix.POLLIN == 0 {
			return
		}
		m, err := unix.Read(fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil || m == 0 {
			return
		}
		if quitKey(buf[:m]) {
			return
		}
	}
}
