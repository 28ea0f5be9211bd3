package pipeline_test

// This file tests the check that a stage reads only fields that can reach
// it, with the real kinds: a misspelt syslog field is refused at its key,
// with a suggestion; what may be set (a syslog field, any field after
// process.json or process.func, a raw record) never is.

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/db"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stages/process"
)

// fieldsRegistry registers the real kinds, and process.func with upper,
// a function that may set any field.
func fieldsRegistry(t *testing.T) *stage.Registry {
	t.Helper()
	reg := stage.NewRegistry()
	var fs process.Funcs
	fs.Add("upper", func(_ context.Context, ev *stage.Event) (bool, error) { return true, nil })
	for _, r := range []func(*stage.Registry) error{netio.Register, process.Register, db.Register} {
		if err := r(reg); err != nil {
			t.Fatal(err)
		}
	}
	if err := process.RegisterFuncs(reg, &fs); err != nil {
		t.Fatal(err)
	}
	return reg
}

// fieldsFile is a pipeline: udp in, the stages of middle, then a
// db.postgres stage "store" with columns (dsn set: it is built, and
// connects to nothing). middle's first stage is "parse"; it ends in a
// stage whose next is store.
func fieldsFile(middle, columns string) string {
	return `name: fields
stages:
  in:
    kind: netio.udp
    listen: 127.0.0.1:0
    next: parse
` + middle + `  store:
    kind: db.postgres
    dsn: postgres://u@127.0.0.1:1/db
    table: logs
    columns: ` + columns + "\n"
}

// loadErrors loads text and returns its errors, each as
// FILE:LINE:COL: message.
func loadErrors(t *testing.T, text string) []string {
	t.Helper()
	_, err := pipeline.Parse("fields.yaml", []byte(text), fieldsRegistry(t), nil)
	if err == nil {
		return nil
	}
	var errs pipeline.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want pipeline.Errors, got %v", err)
	}
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

const syslogFields = "pri, facility, severity, version, timestamp, hostname, app_name, procid, msgid, structured_data, msg, parse_error"

func TestLoadRefusesAMisspeltSyslogField(t *testing.T) {
	text := fieldsFile(`  parse:
    kind: process.syslog
    next: keep
  keep:
    kind: process.filter
    if: 'msg contains "hostnme" and hostnme == "a"'
    next: store
`, "{host: hostname, body: $}")
	got := loadErrors(t, text)
	want := `fields.yaml:12:9: stage "keep": if: field "hostnme" is never set on the events that reach it (did you mean "hostname"?); their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

func TestLoadRefusesAMisspeltFieldWithoutANearOne(t *testing.T) {
	text := fieldsFile(`  parse:
    kind: process.syslog
    next: keep
  keep:
    kind: process.filter
    if: 'hots == "a"'
    next: store
`, "{host: hostname}")
	got := loadErrors(t, text)
	want := `fields.yaml:12:9: stage "keep": if: field "hots" is never set on the events that reach it; their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

func TestLoadRefusesAMisspeltFieldInARoute(t *testing.T) {
	text := fieldsFile(`  parse:
    kind: process.syslog
    next: split
  split:
    kind: process.route
    routes:
      - if: 'severity < 3'
        next: store
      - if: 'app_nam == "cron"'
        next: store
`, "{host: hostname}")
	got := loadErrors(t, text)
	want := `fields.yaml:15:13: stage "split": routes.1.if: field "app_nam" is never set on the events that reach it (did you mean "app_name"?); their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

func TestLoadRefusesAMisspeltColumnField(t *testing.T) {
	// Through a filter, which keeps the fields it is handed.
	text := fieldsFile(`  parse:
    kind: process.syslog
    next: keep
  keep:
    kind: process.filter
    if: 'severity < 4'
    next: store
`, "{host: hostname, app: appname, body: $}")
	got := loadErrors(t, text)
	want := `fields.yaml:18:36: stage "store": columns.app: field "appname" is never set on the events that reach it (did you mean "app_name"?); their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

func TestLoadRefusesAMisspeltShardByField(t *testing.T) {
	text := fieldsFile(`  parse:
    kind: process.syslog
    next: store
`, "{host: hostname}")
	text = strings.Replace(text, "    table: logs\n", "    table: logs\n    shard_by: [hostname, host]\n", 1)
	got := loadErrors(t, text)
	want := `fields.yaml:14:26: stage "store": shard_by.1: field "host" is never set on the events that reach it; their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

// What may be set is never refused.
func TestLoadKeepsFieldsThatMayBeSet(t *testing.T) {
	for _, tc := range []struct{ name, middle, columns string }{
		{"syslog fields", `  parse:
    kind: process.syslog
    next: keep
  keep:
    kind: process.filter
    if: 'hostname == "a" and severity < 3 or parse_error exists or $ contains "x"'
    next: store
`, "{host: hostname, app: app_name, sd: structured_data, body: $}"},
		{"json's fields are open", `  parse:
    kind: process.json
    next: keep
  keep:
    kind: process.filter
    if: 'hots == "a"'
    next: store
`, "{host: hots, user: user.id}"},
		{"a func may set any field", `  parse:
    kind: process.syslog
    next: fn
  fn:
    kind: process.func
    func: upper
    next: keep
  keep:
    kind: process.filter
    if: 'hots == "a"'
    next: store
`, "{host: hots}"},
		{"the raw record: no decoder", `  parse:
    kind: process.filter
    if: 'hots == "a" and $ contains "x"'
    next: store
`, "{host: hots, body: $}"},
		{"one of two decoders is open", `  parse:
    kind: process.route
    routes:
      - if: '$ contains "{"'
        next: json
    default: syslog
  json:
    kind: process.json
    next: keep
  syslog:
    kind: process.syslog
    next: keep
  keep:
    kind: process.filter
    if: 'level == "error" or severity < 3'
    next: store
`, "{level: level}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := loadErrors(t, fieldsFile(tc.middle, tc.columns)); len(got) > 0 {
				t.Fatalf("refused:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

// Two decoders with closed sets: a field neither makes is refused, and
// the message names both.
func TestLoadRefusesAFieldNoneOfTwoDecodersMakes(t *testing.T) {
	text := fieldsFile(`  parse:
    kind: process.route
    routes:
      - if: '$ contains "<"'
        next: a
    default: b
  a:
    kind: process.syslog
    format: rfc5424
    next: keep
  b:
    kind: process.syslog
    format: rfc3164
    next: keep
  keep:
    kind: process.filter
    if: 'hostname == "x" or level == "error"'
    next: store
`, "{host: hostname}")
	got := loadErrors(t, text)
	want := `fields.yaml:23:9: stage "keep": if: field "level" is never set on the events that reach it; their fields are made by stage "a" (process.syslog) and stage "b" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

// A db.postgres with no dsn is not built by the loader (its constructor
// wants one; pipectl lint and run give it one): New, which builds it,
// refuses its misspelt column, as pipectl lint does.
func TestNewRefusesAMisspeltColumnField(t *testing.T) {
	text := strings.Replace(fieldsFile(`  parse:
    kind: process.syslog
    next: store
`, "{host: hostnme}"), "    dsn: postgres://u@127.0.0.1:1/db\n", "", 1)
	reg := fieldsRegistry(t)
	cfg, err := pipeline.Parse("fields.yaml", []byte(text), reg, nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, sc := range cfg.Stages {
		if sc.Name == "store" {
			sc.Config.Set("dsn", "postgres://u@127.0.0.1:1/db")
		}
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err == nil {
		_, _ = p.Stop(context.Background())
		t.Fatal("New built a pipeline whose column reads a field nothing sets")
	}
	want := `fields.yaml:13:21: stage "store": columns.host: field "hostnme" is never set on the events that reach it (did you mean "hostname"?); their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if err.Error() != want {
		t.Fatalf("New: %v\nwant: %s", err, want)
	}
}
