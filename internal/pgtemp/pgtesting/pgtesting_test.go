// This file tests the shared Cluster: separate databases per test,
// dropping one ends its connections, and SEDA_TEST_DSN.

package pgtesting_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
)

var pg = pgtesting.Cluster{Options: pgtemp.Options{Fast: true}}

func TestMain(m *testing.M) { goleak.VerifyTestMain(pg.Wrap(m)) }

func queryString(t *testing.T, dsn, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func exec(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func exists(t *testing.T, database string) bool {
	t.Helper()
	return queryString(t, pg.DSN(t), "SELECT count(*)::text FROM pg_database WHERE datname = $1", database) == "1"
}

func TestDatabasesAreSeparate(t *testing.T) {
	var mu sync.Mutex
	names := map[string]bool{}
	t.Run("group", func(t *testing.T) {
		for i := range 3 {
			t.Run(fmt.Sprint("db", i), func(t *testing.T) {
				t.Parallel()
				dsn := pg.NewDatabase(t)
				name := queryString(t, dsn, "SELECT current_database()")
				if !strings.HasPrefix(name, "t_testdatabasesareseparate_group_db") {
					t.Errorf("database %q is not named after the test", name)
				}
				// Fails if another test's table were visible.
				exec(t, dsn, "CREATE TABLE mine (v int)")
				mu.Lock()
				names[name] = true
				mu.Unlock()
			})
		}
	})
	if len(names) != 3 {
		t.Fatalf("3 tests got %d databases: %v", len(names), names)
	}
	for name := range names {
		if exists(t, name) {
			t.Errorf("database %s not dropped after its test", name)
		}
	}
}

func TestDropEndsOpenConnections(t *testing.T) {
	var name string
	var conn *pgx.Conn
	t.Run("leaky", func(t *testing.T) {
		dsn := pg.NewDatabase(t)
		var err error
		if conn, err = pgx.Connect(context.Background(), dsn); err != nil {
			t.Fatal(err)
		}
		name = conn.Config().Database
	})
	defer conn.Close(context.Background())
	if exists(t, name) {
		t.Errorf("database %s not dropped though a connection was left open", name)
	}
}

func TestEnvDSN(t *testing.T) {
	srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
	for _, dsn := range []string{
		srv.DSN(),
		fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", srv.Port()),
	} {
		t.Run("", func(t *testing.T) {
			t.Setenv(pgtesting.EnvDSN, dsn)
			var c pgtesting.Cluster
			defer c.Close()
			if got := c.DSN(t); got != dsn {
				t.Errorf("DSN() = %q, want %q", got, dsn)
			}
			db := c.NewDatabase(t)
			port := queryString(t, db, "SELECT current_setting('port')")
			if port != fmt.Sprint(srv.Port()) {
				t.Errorf("database on port %s, want the server of %s on %d", port, pgtesting.EnvDSN, srv.Port())
			}
			if !strings.HasPrefix(queryString(t, db, "SELECT current_database()"), "t_testenvdsn") {
				t.Errorf("not connected to the new database")
			}
		})
	}
	ctx := context.Background()
	if running, err := srv.Running(ctx); !running || err != nil {
		t.Errorf("closing a Cluster on %s stopped that server: %v, %v", pgtesting.EnvDSN, running, err)
	}
}
