package pgtemp

// This file exports what the tests of package pgtemp_test look at inside.

// Dead reports whether process pid has exited: it is gone, or a zombie
// nobody has reaped yet (processAlive).
func Dead(pid int) bool { return !processAlive(pid) }
