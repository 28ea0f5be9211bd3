package db

// This file tests building db.postgres without a server: a bad DSN told
// without its password, the configuration's checks, registration, and
// max_conns following the workers.

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stage"
)

// parseProblem never shows the DSN's password, whatever pgx quotes.
func TestParseProblem(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:topsecret@h:99999999/db",
		"postgres://u:top%zzsecret@h/db",
		"postgres://u:top secret@h/db",
		"host=h password='topsecret dbname=x",
		"host=h password=topsecret port=x",
	} {
		_, err := pgxpool.ParseConfig(dsn)
		if err == nil {
			t.Fatalf("%q parsed", dsn)
		}
		if msg := parseProblem(dsn, err); strings.Contains(msg, "topsecret") || strings.Contains(msg, "secret@") {
			t.Errorf("parseProblem(%q) = %q shows the password", dsn, msg)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	cases := []struct {
		over       map[string]any
		field, msg string
	}{
		{map[string]any{"dsn": ""}, "dsn", "dsn is empty: give the PostgreSQL URL"},
		{map[string]any{"dsn": "postgres://u:topsecret@h:99999999/db"}, "dsn", "bad DSN postgres://u:xxxxx@h:99999999/db"},
		{map[string]any{"table": "a.b.c"}, "table", `bad table "a.b.c"`},
		{map[string]any{"table": "ev;drop"}, "table", `bad name "ev;drop"`},
		{map[string]any{"table": "_SEDA_load"}, "table", "_seda_load begins the name of the sink's own temporary tables"},
		{map[string]any{"columns": nil}, "columns", "required"},
		{map[string]any{"columns": [][2]string{}}, "columns", "no columns"},
		{map[string]any{"columns": [][2]string{{"id", "a..b"}}}, "columns.id", "bad field path"},
		{map[string]any{"types": [][2]string{{"nope", "text"}}}, "types.nope", `column "nope" is not in columns`},
		{map[string]any{"types": [][2]string{{"id", "text; drop table x"}}}, "types.id", "bad type"},
		{map[string]any{"types": [][2]string{{"id", "text, x text"}}}, "types.id", "bad type"},
		{map[string]any{"key": []string{"body", "zz"}}, "key.1", `column "zz" is not in columns`},
		{map[string]any{"conflict": "replace"}, "conflict", "want error, ignore or update"},
		{map[string]any{"method": "bulk"}, "method", "want copy or insert"},
		{map[string]any{"on_start": "wait"}, "on_start", "want retry or fail"},
		{map[string]any{"max_conns": -1}, "max_conns", "-1 is out of range: want 0 to 65536"},
		{map[string]any{"retry": stage.NewConfig(map[string]any{"backoff": time.Duration(0)})}, "retry.backoff", "0s is out of range: want at least 1ms"},
	}
	for _, c := range cases {
		_, err := build(config("postgres://u:topsecret@localhost/db", c.over), stage.Env{Stage: "store"})
		var fe *stage.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: got %v, want field %s saying %q", c.over, err, c.field, c.msg)
		}
		if err != nil && strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%v: password in %v", c.over, err)
		}
	}
	if _, err := build(config("host=localhost", nil), stage.Env{Stage: "store"}); err != nil {
		t.Fatal(err)
	}
}

func TestRegister(t *testing.T) {
	r := stage.NewRegistry()
	if err := Register(r); err != nil {
		t.Fatal(err)
	}
	k, ok := r.Lookup(Kind)
	if !ok || !k.Terminal || k.NewHandler == nil {
		t.Fatalf("kind %+v", k)
	}
	for _, f := range k.Fields {
		if f.Name == "dsn" && !f.Secret {
			t.Error("dsn is not secret")
		}
	}
}

// max_conns follows the workers unless it is set; a set max_conns caps an
// auto pool.
func TestMaxConnsFollowsWorkers(t *testing.T) {
	cases := []struct {
		set        stage.Settings
		maxConns   any
		want       int32
		maxWorkers int
	}{
		{stage.Settings{Workers: 4, Concurrency: 2}, nil, 4, 0},
		{stage.Settings{Concurrency: 2}, nil, int32(engine.AutoWorkersCeiling(2)), 0},
		{stage.Settings{Concurrency: 2}, 4, 4, 4},
		{stage.Settings{Workers: 8, Concurrency: 2}, 4, 4, 4},
	}
	for _, c := range cases {
		over := map[string]any{}
		if c.maxConns != nil {
			over["max_conns"] = c.maxConns
		}
		env := stage.Env{Stage: "store", Settings: c.set.WithDefaults(), MaxWorkers: c.set.Workers}
		if env.Settings.AutoWorkers {
			env.MaxWorkers = engine.AutoWorkersCeiling(env.Settings.Concurrency)
		}
		s, err := build(config("host=localhost", over), env)
		if err != nil {
			t.Fatal(err)
		}
		if s.poolCfg.MaxConns != c.want || s.MaxWorkers() != c.maxWorkers {
			t.Errorf("workers %d (auto %v), max_conns %v: pool of %d, MaxWorkers %d; want %d and %d",
				c.set.Workers, c.set.Workers == 0, c.maxConns, s.poolCfg.MaxConns, s.MaxWorkers(), c.want, c.maxWorkers)
		}
	}
}
