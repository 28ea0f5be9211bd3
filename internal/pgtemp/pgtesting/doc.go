// Package pgtesting gives tests a PostgreSQL database of their own.
//
// A test binary shares one server, started the first time a test asks for
// a database and stopped and deleted when the tests are done; each test
// gets a fresh database on it, so tests do not see each other's tables and
// may run in parallel. If SEDA_TEST_DSN is set, that server is used instead
// and nothing is started.
//
//	// One per test binary. The zero value is ready too, with PostgreSQL's
//	// durable settings; Fast (fsync off) is quicker for tests.
//	var pg = pgtesting.Cluster{Options: pgtemp.Options{Fast: true}}
//
//	func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }
//
//	func TestInsert(t *testing.T) {
//		dsn := pg.NewDatabase(t) // CREATE DATABASE t_testinsert_…; dropped at the end
//		conn, err := pgx.Connect(ctx, dsn)
//		…
//	}
//
// With goleak: func TestMain(m *testing.M) { goleak.VerifyTestMain(pg.Wrap(m)) }.
//
// The Cluster is a variable of the test package, not of this one: sharing a
// server across the tests of one binary needs state that lives as long as
// the binary, and keeping it in the caller's package means this package has
// no mutable globals, two Clusters (say, one with Options.Fast) can coexist,
// and TestMain decides when the server ends.
//
// A test that stops or restarts PostgreSQL must not do so to a shared
// server: it takes a private one with NewServer.
//
// Nothing is left running even if the binary dies in a panic or a test
// timeout before TestMain cleans up: package pgtemp's watchdog stops and
// deletes the server then.
package pgtesting
