package pgtemp

// This file exports what the tests of package pgtemp_test look at inside.

// Dead reports whether process pid has exited: it is gone, or a zombie
// nobody has reaped yet (processAlive).
func Dead(pid int) bool { return !processAlive(pid) }

// SetStartingHook makes f run, with pg_ctl start's process ID, once each
// pg_ctl start runs: a test's owner process dies there.
func SetStartingHook(f func(pid int)) { testHookStarting = f }

// SetInitdbHook makes f run, with initdb's process ID and the directory
// it initialises, once each initdb runs.
func SetInitdbHook(f func(pid int, dir string)) { testHookInitdb = f }
