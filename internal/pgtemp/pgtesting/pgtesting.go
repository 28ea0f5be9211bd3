// This file holds the Cluster the tests of one binary share, with a
// database of its own per test, and NewServer for a private server.

package pgtesting

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/internal/pgtemp"
)

// EnvDSN names the environment variable that points tests at an existing
// server instead of a throwaway one. Its value is a superuser (or
// CREATEDB) connection string, URL or key=value form; databases are created
// on that server and dropped after each test.
const EnvDSN = "SEDA_TEST_DSN"

// startTimeout bounds starting the shared server.
const startTimeout = 2 * time.Minute

// Cluster is the PostgreSQL server the tests of one binary share. The zero
// value is ready to use; the server starts on the first NewDatabase or DSN.
// It must not be copied after first use.
type Cluster struct {
	// Options configure the server started when SEDA_TEST_DSN is unset. The
	// zero value keeps PostgreSQL's durable defaults; Fast: true trades
	// durability for speed.
	Options pgtemp.Options

	mu      sync.Mutex
	started bool
	closed  bool
	srv     *pgtemp.Server // nil when SEDA_TEST_DSN is used
	dsn     string
	err     error
}

var errClosed = errors.New("pgtesting: cluster closed")

// start starts the server once. Under c.mu, so that Close cannot miss a
// server started concurrently.
func (c *Cluster) start() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", errClosed
	}
	if !c.started {
		c.started = true
		if dsn := os.Getenv(EnvDSN); dsn != "" {
			c.dsn = dsn
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
			defer cancel()
			c.srv, c.err = pgtemp.Start(ctx, c.Options)
			if c.err == nil {
				c.dsn = c.srv.DSN()
			}
		}
	}
	return c.dsn, c.err
}

// DSN returns the connection string of the server's maintenance database
// ("postgres"), starting the server if need be. Tests should normally use
// NewDatabase; DSN is for work across databases. It fails t if the server
// cannot be started.
func (c *Cluster) DSN(t testing.TB) string {
	t.Helper()
	dsn, err := c.start()
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// NewDatabase creates an empty database named after the test, with a
// random suffix, and returns its connection string. The database is dropped
// when the test and its subtests are done (WITH (FORCE): connections still
// open are ended). It fails t if the server cannot be started or the
// database cannot be created.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	admin := c.DSN(t)
	name := databaseName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := execAdmin(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtesting: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := execAdmin(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		if err != nil {
			t.Errorf("pgtesting: drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtesting: %v", err)
	}
	return dsn
}

// Close stops and deletes the server if this Cluster started one. Later
// calls do nothing; NewDatabase then fails its test.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.srv.Remove(ctx)
}

// M is what TestMain gets; *testing.M satisfies it, and so does the value
// Wrap returns, which goleak.VerifyTestMain accepts.
type M interface {
	Run() int
}

// Run runs the tests, then Close. It returns the exit code for os.Exit:
// m's, or 1 if the tests passed but Close failed.
func (c *Cluster) Run(m M) int {
	return c.Wrap(m).Run()
}

// Wrap returns m with Close run after its tests, for a caller such as
// goleak.VerifyTestMain that wants to run m itself.
func (c *Cluster) Wrap(m M) M {
	return runner{c, m}
}

type runner struct {
	c *Cluster
	m M
}

func (r runner) Run() int {
	code := r.m.Run()
	if err := r.c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtesting:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// NewServer starts a private server for one test and removes it when the
// test is done. It is for tests that stop, kill or restart PostgreSQL;
// SEDA_TEST_DSN does not apply to it.
func NewServer(t testing.TB, o pgtemp.Options) *pgtemp.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv, err := pgtemp.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Remove(ctx); err != nil {
			t.Error(err)
		}
	})
	return srv
}

func execAdmin(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, sql)
	return errors.Join(err, conn.Close(ctx))
}

// databaseName makes a database name from a test name: lower case, [a-z0-9_]
// only, short enough for PostgreSQL's 63-byte identifiers, and unique
// (random suffix) even across test binaries sharing one server.
func databaseName(test string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 40 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix) // never fails (crypto/rand)
	return b.String() + "_" + hex.EncodeToString(suffix)
}

// withDatabase returns dsn with its database replaced by name. It accepts
// both URL and key=value connection strings.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// Not wrapped: url's error would quote a password.
			return "", fmt.Errorf("%s is not a valid URL", EnvDSN) // the only DSN not made here
		}
		u.Path, u.RawPath = "/"+name, ""
		return u.String(), nil
	}
	// In key=value form the last setting of a key wins.
	return dsn + " dbname=" + name, nil
}
