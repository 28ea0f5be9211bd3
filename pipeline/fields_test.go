package pipeline_test

// This file tests the check New makes that a stage reads only fields that
// can reach it, with the real kinds: a misspelt syslog field is refused at
// its key, with a suggestion; what may be set (a syslog field, any field
// after process.json or process.func, a raw record) never is. Parse
// builds no handler to make it.

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
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

// newErrors parses text and builds it with New, and returns the errors of
// either, each as FILE:LINE:COL: message.
func newErrors(t *testing.T, text string) []string {
	t.Helper()
	errs, _ := newProblems(t, text)
	return errs
}

// newProblems parses text and builds it with New, and returns the errors
// of either and the warnings of New (Pipeline.Warnings), each as
// FILE:LINE:COL: message.
func newProblems(t *testing.T, text string) (errs, warns []string) {
	t.Helper()
	reg := fieldsRegistry(t)
	cfg, err := pipeline.Parse("fields.yaml", []byte(text), reg, nil)
	if err == nil {
		var p *pipeline.Pipeline
		p, err = pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
		if err == nil {
			for _, w := range p.Warnings() {
				warns = append(warns, w.Error())
			}
			_, _ = p.Stop(context.Background()) // before Start: closes the handlers
			return nil, warns
		}
	}
	var es pipeline.Errors
	if !errors.As(err, &es) {
		t.Fatalf("want pipeline.Errors, got %v", err)
	}
	for _, e := range es {
		errs = append(errs, e.Error())
	}
	return errs, nil
}

const syslogFields = "pri, facility, severity, version, timestamp, hostname, app_name, procid, msgid, structured_data, msg, parse_error"

func TestNewRefusesAMisspeltSyslogField(t *testing.T) {
	text := fieldsFile(`  parse:
    kind: process.syslog
    next: keep
  keep:
    kind: process.filter
    if: 'msg contains "hostnme" and hostnme == "a"'
    next: store
`, "{host: hostname, body: $}")
	got := newErrors(t, text)
	want := `fields.yaml:12:9: stage "keep": if: field "hostnme" is never set on the events that reach it (did you mean "hostname"?); their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

func TestNewRefusesAMisspeltFieldWithoutANearOne(t *testing.T) {
	text := fieldsFile(`  parse:
    kind: process.syslog
    next: keep
  keep:
    kind: process.filter
    if: 'hots == "a"'
    next: store
`, "{host: hostname}")
	got := newErrors(t, text)
	want := `fields.yaml:12:9: stage "keep": if: field "hots" is never set on the events that reach it; their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

func TestNewRefusesAMisspeltFieldInARoute(t *testing.T) {
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
	got := newErrors(t, text)
	want := `fields.yaml:15:13: stage "split": routes.1.if: field "app_nam" is never set on the events that reach it (did you mean "app_name"?); their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

// A sink's read of a field nothing sets is a warning: db.postgres stores
// a missing field as NULL, as it documents.
func TestNewWarnsOfAMisspeltColumnField(t *testing.T) {
	// Through a filter, which keeps the fields it is handed.
	text := fieldsFile(`  parse:
    kind: process.syslog
    next: keep
  keep:
    kind: process.filter
    if: 'severity < 4'
    next: store
`, "{host: hostname, app: appname, body: $}")
	errs, warns := newProblems(t, text)
	want := `fields.yaml:18:36: warning: stage "store": columns.app: field "appname" is never set on the events that reach it (did you mean "app_name"?), so the sink stores it as missing (a column: NULL) for every event; their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if len(errs) > 0 || len(warns) != 1 || warns[0] != want {
		t.Fatalf("errors:\n%s\nwarnings:\n%s\nwant no error and the warning:\n%s", strings.Join(errs, "\n"), strings.Join(warns, "\n"), want)
	}
}

// One table fed by a syslog branch and a JSON branch, through two stores
// that share their column map by a YAML anchor: the syslog store's
// "user" is NULL by design. New builds it, and warns at store_sys's own
// columns (the alias), not at the anchor's text on store_json's line.
func TestNewWarnsOfAColumnSharedByAnAnchor(t *testing.T) {
	text := `name: shared
stages:
  in:
    kind: netio.udp
    listen: 127.0.0.1:0
    next: split
  split:
    kind: process.route
    routes:
      - if: '$ contains "{"'
        next: json
    default: sys
  json:
    kind: process.json
    next: store_json
  sys:
    kind: process.syslog
    next: store_sys
  store_json:
    kind: db.postgres
    dsn: postgres://u@127.0.0.1:1/db
    table: logs
    columns: &cols {host: hostname, user: user, body: $}
  store_sys:
    kind: db.postgres
    dsn: postgres://u@127.0.0.1:1/db
    table: logs
    columns: *cols
`
	errs, warns := newProblems(t, text)
	if len(errs) > 0 {
		t.Fatalf("New refused a column db.postgres documents as NULL:\n%s", strings.Join(errs, "\n"))
	}
	want := `fields.yaml:28:14: warning: stage "store_sys": columns.user: field "user" is never set on the events that reach it, so the sink stores it as missing (a column: NULL) for every event; their fields are made by stage "sys" (process.syslog): ` + syslogFields
	if len(warns) != 1 || warns[0] != want {
		t.Fatalf("warnings:\n%s\nwant:\n%s", strings.Join(warns, "\n"), want)
	}
}

func TestNewRefusesAMisspeltShardByField(t *testing.T) {
	text := fieldsFile(`  parse:
    kind: process.syslog
    next: store
`, "{host: hostname}")
	text = strings.Replace(text, "    table: logs\n", "    table: logs\n    shard_by: [hostname, host]\n", 1)
	got := newErrors(t, text)
	want := `fields.yaml:14:26: stage "store": shard_by.1: field "host" is never set on the events that reach it; their fields are made by stage "parse" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

// What may be set is never refused.
func TestNewKeepsFieldsThatMayBeSet(t *testing.T) {
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
			if got := newErrors(t, fieldsFile(tc.middle, tc.columns)); len(got) > 0 {
				t.Fatalf("refused:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

// Two decoders with closed sets: a field neither makes is refused, and
// the message names both.
func TestNewRefusesAFieldNoneOfTwoDecodersMakes(t *testing.T) {
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
	got := newErrors(t, text)
	want := `fields.yaml:23:9: stage "keep": if: field "level" is never set on the events that reach it; their fields are made by stage "a" (process.syslog) and stage "b" (process.syslog): ` + syslogFields
	if len(got) != 1 || got[0] != want {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

// sharedSink is the one handler of every stage of its kind, as a test's
// kind hands out its own sink: it counts the times it is made and
// closed.
type sharedSink struct{ made, closed atomic.Int32 }

func (s *sharedSink) Handle(_ context.Context, batch []*stage.Event, _ stage.Emitter) error {
	for _, ev := range batch {
		ev.Done(nil)
	}
	return nil
}

func (s *sharedSink) Close() error { s.closed.Add(1); return nil }

// Parse builds no handler: it built them all to ask what they read and
// make, and closed them, so a kind that hands out one shared handler
// had it closed before New handed it to its stage (and stage.Kind says
// Close comes once, after the stage's workers). New makes the check.
func TestParseBuildsNoHandler(t *testing.T) {
	reg := fieldsRegistry(t)
	sink := &sharedSink{}
	if err := reg.Register(stage.Kind{Name: "test.shared", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) { sink.made.Add(1); return sink, nil }}); err != nil {
		t.Fatal(err)
	}
	text := `name: shared
stages:
  in: {kind: netio.udp, listen: 127.0.0.1:0, next: parse}
  parse: {kind: process.syslog, next: keep}
  keep: {kind: process.filter, if: 'hostname == "a"', next: sink}
  sink: {kind: test.shared}
`
	cfg, err := pipeline.Parse("shared.yaml", []byte(text), reg, nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if m, c := sink.made.Load(), sink.closed.Load(); m != 0 || c != 0 {
		t.Fatalf("Parse made the shared handler %d times and closed it %d times; want neither", m, c)
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if c := sink.closed.Load(); c != 0 {
		t.Errorf("New handed back a pipeline whose handler was closed %d times", c)
	}
	if _, err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if m, c := sink.made.Load(), sink.closed.Load(); m != 1 || c != 1 {
		t.Errorf("after New and Stop: made %d times, closed %d times; want once each", m, c)
	}
}

// The check is New's, on the handlers it built: a misspelt field is
// refused by New, and Parse lets it through.
func TestParseLeavesTheFieldCheckToNew(t *testing.T) {
	text := fieldsFile(`  parse:
    kind: process.syslog
    next: keep
  keep:
    kind: process.filter
    if: 'hots == "a"'
    next: store
`, "{host: hostname}")
	if _, err := pipeline.Parse("fields.yaml", []byte(text), fieldsRegistry(t), nil); err != nil {
		t.Fatalf("Parse: %v; want the check left to New", err)
	}
	if got := newErrors(t, text); len(got) != 1 {
		t.Fatalf("New: %q; want one error", got)
	}
}
