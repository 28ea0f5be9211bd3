package db

import (
	"errors"
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
)

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/ingest?sslmode=disable", "postgres://app:xxxxx@db:5432/ingest?sslmode=disable"},
		{"postgresql://app@db/ingest", "postgresql://app@db/ingest"},
		{"postgres://app:p%40ss@db/x?password=two&sslpassword=three", "postgres://app:xxxxx@db/x?password=xxxxx&sslpassword=xxxxx"},
		{"postgres://app:p@ss@db/x", "postgres://app:xxxxx@db/x"},
		{"host=db user=app password=s3cret dbname=x", "host=db user=app password=xxxxx dbname=x"},
		{"host=db password = 'it\\'s a \\\\ secret' dbname=x", "host=db password = xxxxx dbname=x"},
		{"password=with\\ space host=db", "password=xxxxx host=db"},
		{"host=db sslpassword=k dbname=x", "host=db sslpassword=xxxxx dbname=x"},
		{"host=db user=app", "host=db user=app"},
	}
	for _, c := range cases {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

// FuzzRedact checks that a password put in either form of DSN never
// survives Redact, and that Redact is stable.
func FuzzRedact(f *testing.F) {
	f.Add("s3cret")
	f.Add("p@ss:w/rd?x")
	f.Add(`it's \ odd`)
	f.Fuzz(func(t *testing.T, pw string) {
		if len(pw) < 4 || strings.ContainsAny(pw, "\x00\n\r\t ") || strings.Contains(pw, "xxxxx") {
			return
		}
		kvq := "host=db password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw) + "' dbname=x"
		for _, dsn := range []string{
			"postgres://app:" + pw + "@db:5432/x",
			"host=db password=" + strings.NewReplacer(`\`, `\\`).Replace(pw) + " dbname=x",
			kvq,
		} {
			out := Redact(dsn)
			// The mask itself may contain a password such as "xxxx": look
			// for the password in what is left around the mask.
			if strings.Contains(strings.ReplaceAll(out, "xxxxx", "\x00"), pw) && !strings.Contains("postgres://app:@db:5432/x host=db password= dbname=x", pw) {
				t.Fatalf("Redact(%q) = %q keeps the password", dsn, out)
			}
			if again := Redact(out); again != out {
				t.Fatalf("Redact not stable: %q then %q", out, again)
			}
		}
	})
}

func TestNewChecksConfig(t *testing.T) {
	cases := []struct {
		over       map[string]any
		field, msg string
	}{
		{map[string]any{"dsn": ""}, "dsn", "dsn is empty: set it, or run with pipectl run which starts a throwaway PostgreSQL"},
		{map[string]any{"dsn": "postgres://u:topsecret@h:99999999/db"}, "dsn", "bad DSN postgres://u:xxxxx@h:99999999/db"},
		{map[string]any{"table": "a.b.c"}, "table", `bad table "a.b.c"`},
		{map[string]any{"table": "ev;drop"}, "table", `bad name "ev;drop"`},
		{map[string]any{"columns": nil}, "columns", "no columns"},
		{map[string]any{"columns": []stage.Pair{{Key: "id", Value: "a..b"}}}, "columns.id", "bad field path"},
		{map[string]any{"types": []stage.Pair{{Key: "nope", Value: "text"}}}, "types.nope", `column "nope" is not in columns`},
		{map[string]any{"types": []stage.Pair{{Key: "id", Value: "text; drop table x"}}}, "types.id", "bad type"},
		{map[string]any{"types": []stage.Pair{{Key: "id", Value: "text, x text"}}}, "types.id", "bad type"},
		{map[string]any{"key": []string{"body", "zz"}}, "key.1", `column "zz" is not in columns`},
		{map[string]any{"conflict": "replace"}, "conflict", "want error or ignore"},
		{map[string]any{"method": "bulk"}, "method", "want copy or insert"},
		{map[string]any{"on_start": "wait"}, "on_start", "want retry or fail"},
		{map[string]any{"max_conns": -1}, "max_conns", "negative"},
		{map[string]any{"retry": stage.NewConfig(map[string]any{"backoff": 0})}, "retry.backoff", "must be positive"},
	}
	for _, c := range cases {
		_, err := New(config("postgres://u:topsecret@localhost/db", c.over), stage.Env{Stage: "store"})
		var fe *stage.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: got %v, want field %s saying %q", c.over, err, c.field, c.msg)
		}
		if err != nil && strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%v: password in %v", c.over, err)
		}
	}
	if _, err := New(config("host=localhost", nil), stage.Env{Stage: "store"}); err != nil {
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
