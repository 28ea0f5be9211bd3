//go:build race

package main

// This file says the tests are built with the race detector, so the
// pipectl they build is too (race_off_test.go is the other case).

// raceBuild: the test binary runs under the race detector, so the pipectl
// it builds does too (and reuses the race-built packages from the cache).
const raceBuild = true
