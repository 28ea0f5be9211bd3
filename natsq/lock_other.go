//go:build !unix

package natsq

// This file stands in for lock_unix.go where flock is not to be had: the
// store is opened without a lock, and running two processes on one
// store_dir is the operator's to avoid.

import "os"

func lockStore(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
