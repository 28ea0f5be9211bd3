//go:build race

package main

// raceBuild: the test binary runs under the race detector, so the pipectl
// it builds does too (and reuses the race-built packages from the cache).
const raceBuild = true
