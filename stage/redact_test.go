package stage_test

// This file tests Redact, with a fuzzer and an example.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
)

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		// One DSN, URL form.
		{"postgres://app:s3cret@db:5432/ingest?sslmode=disable", "postgres://app:xxxxx@db:5432/ingest?sslmode=disable"},
		{"postgresql://app@db/ingest", "postgresql://app@db/ingest"},
		{"postgres://db:5432/events", "postgres://db:5432/events"},
		{"postgres://app:p%40ss@db/x?password=two&sslpassword=three", "postgres://app:xxxxx@db/x?password=xxxxx&sslpassword=xxxxx"},
		{"postgres://app:p@ss@db/x", "postgres://app:xxxxx@db/x"},
		{"postgres://app:p@ss:w0rd@db/events", "postgres://app:xxxxx@db/events"},
		{"postgres://app:pa/ss@db/x", "postgres://app:xxxxx@db/x"},
		{"postgres://app:pa ss@db/x", "postgres://app:xxxxx@db/x"},
		{"postgresql://db/events?user=app&password=hunter2&sslmode=require", "postgresql://db/events?user=app&password=xxxxx&sslmode=require"},
		{"redis://db/0?auth_token=t0k&x=1", "redis://db/0?auth_token=xxxxx&x=1"},
		// NATS: a user alone is a token; a list of servers, each.
		{"nats://S3CRETTOKEN@127.0.0.1:4222", "nats://xxxxx@127.0.0.1:4222"},
		{"nats://tok3n@h1:4222,nats://tok3n@h2:4222", "nats://xxxxx@h1:4222,nats://xxxxx@h2:4222"},
		{"nats://u:s3cret@h1, tls://u:s3cret@h2", "nats://u:xxxxx@h1,tls://u:xxxxx@h2"},
		{"connect to nats://tok3n@h1,nats://u:s3cret@h2: refused", "connect to nats://xxxxx@h1,nats://u:xxxxx@h2: refused"},
		// One DSN, key=value form.
		{"host=db user=app password=s3cret dbname=x", "host=db user=app password=xxxxx dbname=x"},
		{"host=db password = 'it\\'s a \\\\ secret' dbname=x", "host=db password = xxxxx dbname=x"},
		{"host=db password = 'hunter 2 \\' x' dbname=events", "host=db password = xxxxx dbname=events"},
		{"password=with\\ space host=db", "password=xxxxx host=db"},
		{"password='never closed dbname=events", "password=xxxxx"},
		{"host=db sslpassword=k3y PASSWORD=Hunter2", "host=db sslpassword=xxxxx PASSWORD=xxxxx"},
		{"host=db user=app", "host=db user=app"},
		// Messages holding secrets.
		{`stage "db": connect to postgres://u:hunter2@h/db: refused`, `stage "db": connect to postgres://u:xxxxx@h/db: refused`},
		{"dial a_b://u:hunter2@h failed", "dial a_b://u:xxxxx@h failed"},
		{"bad settings: api_token=abc123, secret=s3, pwd=p4", "bad settings: api_token=xxxxx secret=xxxxx pwd=xxxxx"}, // a bare value runs to a space,
		{"dsn (password=x1 host=db)", "dsn (password=xxxxx host=db)"},
		{"host=db password='a postgres://u:p@h' dbname=x", "host=db password=xxxxx dbname=x"},
		{"no secrets here: host=db port=5432", "no secrets here: host=db port=5432"},
		// A URL followed by pairs; a double-quoted value; a query string
		// without its URL (from a review: each showed its secret).
		{"postgres://h/db password=hunter2 sslmode=require", "postgres://h/db password=xxxxx sslmode=require"},
		{`bad setting password="s3 cret" host=db`, `bad setting password=xxxxx host=db`},
		{"GET /x?token=abc123 HTTP/1.1", "GET /x?token=xxxxx HTTP/1.1"},
		{"user=app&password=hunter2", "user=app&password=xxxxx"},
		{"", ""},
	}
	for _, c := range cases {
		got := stage.Redact(c.in)
		if got != c.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
		for _, secret := range []string{"s3cret", "hunter", "w0rd", "k3y", "never", "two", "three", "t0k", "abc123", "x1", "TOKEN", "tok3n"} {
			if strings.Contains(got, secret) {
				t.Errorf("Redact(%q) = %q still shows %q", c.in, got, secret)
			}
		}
		if again := stage.Redact(got); again != got {
			t.Errorf("Redact is not stable: %q then %q", got, again)
		}
	}
}

// FuzzRedact checks that a password put in a DSN of either form, alone or
// in a message, never survives Redact, and that Redact is stable.
func FuzzRedact(f *testing.F) {
	f.Add("s3cret")
	f.Add("p@ss:w/rd?x")
	f.Add(`it's \ odd`)
	f.Add("a://b")
	f.Fuzz(func(t *testing.T, pw string) {
		if len(pw) < 4 || strings.ContainsAny(pw, "\x00\n\r\t\v\f ") || strings.Contains(pw, "xxxxx") {
			return
		}
		// The text around the password: a password found in it proves
		// nothing.
		const around = `postgres://app:@db:5432/x host=db password='' dbname=x stage "db": connect to : refused bad DSN : invalid nats://u:@h1:4222,nats://@h2:4222`
		kvq := "host=db password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw) + "' dbname=x"
		kv := "host=db password=" + strings.NewReplacer(`\`, `\\`).Replace(pw) + " dbname=x"
		dsns := []string{
			"postgres://app:" + pw + "@db:5432/x",
			kv,
			kvq,
			`stage "db": connect to postgres://app:` + pw + "@db:5432/x: refused",
			"bad DSN " + kv + ": invalid",
			"bad DSN " + kvq,
			"nats://u:" + pw + "@h1:4222,nats://u:" + pw + "@h2:4222",
		}
		if !strings.Contains(pw, ":") { // a token (with a colon, it is user:password)
			dsns = append(dsns, "nats://"+pw+"@h:4222", "connect to nats://"+pw+"@h1:4222,nats://"+pw+"@h2:4222: refused")
		}
		for _, s := range dsns {
			out := stage.Redact(s)
			// The mask itself may contain a password such as "xxxx": look
			// for the password in what is left around the mask.
			if strings.Contains(strings.ReplaceAll(out, "xxxxx", "\x00"), pw) && !strings.Contains(around, pw) {
				t.Fatalf("Redact(%q) = %q keeps the password", s, out)
			}
			if again := stage.Redact(out); again != out {
				t.Fatalf("Redact not stable: %q then %q", out, again)
			}
		}
	})
}

func ExampleRedact() {
	fmt.Println(stage.Redact("postgres://ingest:s3cret@db.internal:5432/events?sslmode=require"))
	fmt.Println(stage.Redact("host=db.internal user=ingest password='s3 cret' dbname=events"))
	fmt.Println(stage.Redact(`stage "store": connect to postgres://ingest:s3cret@db.internal/events: refused`))
	// Output:
	// postgres://ingest:xxxxx@db.internal:5432/events?sslmode=require
	// host=db.internal user=ingest password=xxxxx dbname=events
	// stage "store": connect to postgres://ingest:xxxxx@db.internal/events: refused
}
