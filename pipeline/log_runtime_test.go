package pipeline

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://app:hunter2@db:5432/events?sslmode=disable",
			"postgres://app:xxxxx@db:5432/events?sslmode=disable"},
		{"postgres://app@db/events", "postgres://app@db/events"},
		{"postgres://db:5432/events", "postgres://db:5432/events"},
		{"postgres://app:p@ss:w0rd@db/events", "postgres://app:xxxxx@db/events"},
		{"postgresql://db/events?user=app&password=hunter2&sslmode=require",
			"postgresql://db/events?user=app&password=xxxxx&sslmode=require"},
		{"host=db user=app password=hunter2 dbname=events",
			"host=db user=app password=xxxxx dbname=events"},
		{"host=db password = 'hunter 2 \\' x' dbname=events",
			"host=db password = xxxxx dbname=events"},
		{"password='never closed dbname=events", "password=xxxxx"},
		{"host=db sslpassword=k3y PASSWORD=Hunter2", "host=db sslpassword=xxxxx PASSWORD=xxxxx"},
		{`stage "db": connect to postgres://u:hunter2@h/db: refused`,
			`stage "db": connect to postgres://u:xxxxx@h/db: refused`},
		{"no secrets here: host=db port=5432", "no secrets here: host=db port=5432"},
		{"", ""},
	}
	for _, c := range cases {
		got := Redact(c.in)
		if got != c.want {
			t.Errorf("Redact(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
		for _, secret := range []string{"hunter", "w0rd", "k3y", "never"} {
			if strings.Contains(got, secret) {
				t.Errorf("Redact(%q) = %q still shows %q", c.in, got, secret)
			}
		}
	}
}

func TestNewLogger(t *testing.T) {
	for _, lc := range []LogConfig{{}, {Level: "debug", Format: "json"}, {Level: "warn", Format: "console"}} {
		if _, err := NewLogger(lc); err != nil {
			t.Errorf("NewLogger(%+v): %v", lc, err)
		}
	}
	for _, lc := range []LogConfig{{Level: "loud"}, {Format: "xml"}} {
		if _, err := NewLogger(lc); err == nil {
			t.Errorf("NewLogger(%+v) accepted it", lc)
		}
	}
}
