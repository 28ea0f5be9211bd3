// Package gobuild builds this module's pipectl command with the go
// command, for the tests that run it as a process of its own, and for the
// benchmarks that do when none was handed to them (bench/internal/rig:
// `make bench` builds bin/pipectl once and passes it). Building needs the
// go command and this module's source: nothing shipped depends on this
// package. DieWithCaller ties the life of a process they start (pipectl,
// nats-server, rsyslogd) to theirs, so that a test binary killed by go
// test's timeout leaves none of them behind.
package gobuild
