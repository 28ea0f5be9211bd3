//go:build !race

package main

// This file says the tests are built without the race detector, so the
// pipectl they build is too (race_on_test.go is the other case).

const raceBuild = false
