//go:build !unix

package main

// This file reads top's quit keys where there is no poll(2) (Windows):
// in a goroutine of its own.

import (
	"context"
	"os"
)

// readKeys returns when q, Q, Ctrl-C or Ctrl-D is typed, when the input
// ends, or when ctx ends. Without poll(2) (Windows) the reads happen in a
// goroutine of their own, which stays blocked in its last read once
// readKeys has returned: top exits soon after, which ends it.
func readKeys(ctx context.Context, fd int) {
	quit := make(chan struct{})
	go func() {
		defer close(quit)
		in := os.Stdin // top reads keys from its standard input
		if uintptr(fd) != in.Fd() {
			// Not closed (no finalizer runs while the goroutine holds it
			// and top exits soon after it returns).
			in = os.NewFile(uintptr(fd), "input")
		}
		buf := make([]byte, 16)
		for {
			m, err := in.Read(buf)
			if err != nil || m == 0 {
				return
			}
			if quitKey(buf[:m]) {
				return
			}
		}
	}()
	select {
	case <-ctx.Done():
	case <-quit:
	}
}
