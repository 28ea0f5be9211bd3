package pipeline

// This file tests the loader: parsing full files, routes, defaults and
// ${VAR}, errors with their positions, secrets never shown, aliases,
// shard_by, suggestions, and a fuzzer.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// loaderRegistry returns a registry of fake kinds shaped like the real
// families (netio.tcp, process.json, db.postgres) plus generic ones that
// exercise every field type: a source, a handler, a terminal sink and a
// router whose targets are Ref sub-fields of an ObjectList.
func loaderRegistry(t testing.TB) *stage.Registry {
	t.Helper()
	src := func(stage.Config, stage.Env) (stage.Source, error) { return nil, errors.New("fake") }
	hnd := func(stage.Config, stage.Env) (stage.Handler, error) { return nil, errors.New("fake") }
	reg := stage.NewRegistry()
	for _, k := range []stage.Kind{
		{Name: "netio.tcp", Doc: "A TCP listener.", NewSource: src, Fields: []stage.Field{
			{Name: "listen", Type: stage.String, Required: true, Doc: "host:port"},
			{Name: "framing", Type: stage.String, Default: "lines", Doc: "lines | octet-counted"},
			{Name: "max_frame", Type: stage.Size, Default: int64(64 << 10), Doc: "largest record"},
			{Name: "ack", Type: stage.String, Default: "commit", Doc: "commit | none"},
		}},
		{Name: "process.json", Doc: "Decodes JSON.", NewHandler: hnd, Fields: []stage.Field{
			{Name: "require", Type: stage.StringList, Doc: "fields that must be present"},
		}},
		{Name: "db.postgres", Doc: "Writes to PostgreSQL.", NewHandler: hnd, Terminal: true, Fields: []stage.Field{
			{Name: "dsn", Type: stage.String, Secret: true, Doc: "connection string"},
			{Name: "table", Type: stage.String, Required: true, Doc: "target table"},
			{Name: "create", Type: stage.Bool, Default: false, Doc: "create the table"},
			{Name: "columns", Type: stage.StringMap, Doc: "column: field path"},
			{Name: "types", Type: stage.StringMap, Doc: "column types"},
			{Name: "key", Type: stage.StringList, Doc: "primary key"},
			{Name: "conflict", Type: stage.String, Default: "error", Doc: "error | ignore"},
			{Name: "method", Type: stage.String, Default: "copy", Doc: "copy | insert"},
			{Name: "retries", Type: stage.Int, Default: 3, Doc: "attempts"},
			{Name: "backoff", Type: stage.Duration, Default: 100 * time.Millisecond, Doc: "between attempts"},
		}},
		{Name: "test.source", Doc: "A fake source.", NewSource: src, Fields: []stage.Field{
			{Name: "listen", Type: stage.String, Required: true, Doc: "host:port"},
			{Name: "max_frame", Type: stage.Size, Default: int64(1 << 20), Doc: "largest record"},
		}},
		{Name: "test.handler", Doc: "A fake handler.", NewHandler: hnd, Fields: []stage.Field{
			{Name: "timeout", Type: stage.Duration, Default: time.Second, Doc: "per batch"},
			{Name: "retries", Type: stage.Int, Default: 3, Doc: "attempts"},
			{Name: "verbose", Type: stage.Bool, Doc: "log more"},
			{Name: "labels", Type: stage.StringMap, Doc: "extra labels"},
			{Name: "require", Type: stage.StringList, Default: []string{"id"}, Doc: "required fields"},
			{Name: "opts", Type: stage.Object, Doc: "options", Fields: []stage.Field{
				{Name: "mode", Type: stage.String, Default: "fast", Doc: "fast | safe"},
				{Name: "limit", Type: stage.Int, Doc: "limit"},
			}},
		}},
		{Name: "test.sink", Doc: "A fake terminal sink.", NewHandler: hnd, Terminal: true, Fields: []stage.Field{
			{Name: "table", Type: stage.String, Required: true, Doc: "target"},
		}},
		{Name: "test.route", Doc: "A fake router.", NewHandler: hnd, Fields: []stage.Field{
			{Name: "routes", Type: stage.ObjectList, Doc: "first match wins", Fields: []stage.Field{
				{Name: "if", Type: stage.String, Required: true, Doc: "condition"},
				{Name: "next", Type: stage.String, Ref: true, Doc: "target stage"},
			}},
			{Name: "mirror", Type: stage.StringList, Ref: true, Doc: "copies go to these stages"},
		}},
	} {
		if err := reg.Register(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := registerTransports(reg); err != nil { // the transport, as pipectl registers it
		t.Fatal(err)
	}
	return reg
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// parse parses src as "p.yaml"; errs is nil on success.
func parse(t *testing.T, src string, env map[string]string) (*Config, Errors) {
	t.Helper()
	cfg, err := Parse("p.yaml", []byte(src), loaderRegistry(t), envOf(env))
	if err == nil {
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		return cfg, nil
	}
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("error is %T %v, want a non-empty Errors", err, err)
	}
	if cfg != nil {
		t.Fatal("Parse returned a config with errors")
	}
	return nil, es
}

func mustParse(t *testing.T, src string, env map[string]string) *Config {
	t.Helper()
	cfg, es := parse(t, src, env)
	if es != nil {
		t.Fatalf("unexpected errors:\n%v", es)
	}
	return cfg
}

func TestLoadFull(t *testing.T) {
	cfg, err := Load("testdata/full.yaml", loaderRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != "testdata/full.yaml" || cfg.Name != "ingest" || cfg.Admin.Listen != "127.0.0.1:9464" ||
		cfg.Log != (LogConfig{Level: "info", Format: "console"}) || cfg.Drain != 30*time.Second {
		t.Fatalf("top level: %+v", cfg)
	}
	var names []string
	for _, s := range cfg.Stages {
		names = append(names, s.Name)
	}
	if !reflect.DeepEqual(names, []string{"accept", "parse", "store"}) {
		t.Fatalf("stages %v, want file order", names)
	}

	accept := cfg.Stage("accept")
	wantSet := stage.Settings{Name: "accept", Kind: "netio.tcp", Workers: 4, Concurrency: 2, Capacity: 8192, Overflow: port.Block}
	if !reflect.DeepEqual(accept.Settings, wantSet) {
		t.Errorf("accept settings %+v, want %+v", accept.Settings, wantSet)
	}
	if accept.Next != "parse" || !reflect.DeepEqual(accept.Routes, []string{"parse"}) {
		t.Errorf("accept next %q routes %v", accept.Next, accept.Routes)
	}
	if accept.Pos != (Pos{"testdata/full.yaml", 6, 3}) {
		t.Errorf("accept pos %v", accept.Pos)
	}
	c := accept.Config
	if c.String("listen") != "127.0.0.1:7000" || c.String("framing") != "lines" || c.Size("max_frame") != 64<<10 || c.String("ack") != "commit" {
		t.Errorf("accept config %v", c.Names())
	}
	if names := strings.Join(c.Names(), " "); !c.Has("max_frame") || !c.Has("framing") || strings.Contains(names, "kind") || strings.Contains(names, "workers") {
		t.Errorf("accept Has: only the kind's given fields should be marked given")
	}

	parse := cfg.Stage("parse")
	if !parse.Settings.Inline || !reflect.DeepEqual(parse.Config.Strings("require"), []string{"id"}) {
		t.Errorf("parse: %+v %v", parse.Settings, parse.Config.Strings("require"))
	}

	store := cfg.Stage("store")
	wantSet = stage.Settings{Name: "store", Kind: "db.postgres", Workers: 8, Concurrency: 2, Capacity: 16384, Overflow: port.Reject, Batch: 2000, Linger: 2 * time.Millisecond}
	if !reflect.DeepEqual(store.Settings, wantSet) {
		t.Errorf("store settings %+v, want %+v", store.Settings, wantSet)
	}
	sc := store.Config
	if sc.String("dsn") != "" || !sc.Has("dsn") {
		t.Errorf("dsn %q (given %v): an unset variable expands to empty", sc.String("dsn"), sc.Has("dsn"))
	}
	if !reflect.DeepEqual(sc.Pairs("columns"), [][2]string{{"id", "id"}, {"body", "$"}}) {
		t.Errorf("columns %v: want written order and $ kept", sc.Pairs("columns"))
	}
	if !sc.Bool("create") || sc.String("method") != "copy" || sc.String("conflict") != "ignore" ||
		!reflect.DeepEqual(sc.Strings("key"), []string{"id"}) || !reflect.DeepEqual(sc.Pairs("types"), [][2]string{{"id", "bigint"}}) {
		t.Errorf("store config wrong: %v", sc.Names())
	}
	if sc.Int("retries") != 3 || sc.Has("retries") || sc.Duration("backoff") != 100*time.Millisecond || sc.Has("backoff") {
		t.Errorf("store defaults: retries %d backoff %v", sc.Int("retries"), sc.Duration("backoff"))
	}
	if len(store.Routes) != 0 {
		t.Errorf("store routes %v", store.Routes)
	}
	for path, want := range map[string]Pos{
		"dsn":            {"testdata/full.yaml", 23, 10},
		"batch.max":      {"testdata/full.yaml", 31, 18},
		"batch.linger":   {"testdata/full.yaml", 31, 32},
		"columns.body":   {"testdata/full.yaml", 26, 29},
		"queue.overflow": {"testdata/full.yaml", 34, 40},
		"key.0":          {"testdata/full.yaml", 28, 11},
	} {
		if got := store.FieldPos[path]; got != want {
			t.Errorf("FieldPos[%q] = %v, want %v", path, got, want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/no-such-file.yaml", loaderRegistry(t))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

func TestParseRoutesAndDefaults(t *testing.T) {
	data, err := os.ReadFile("testdata/route.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, string(data), nil)
	if cfg.Drain != 5*time.Second {
		t.Errorf("drain %v", cfg.Drain)
	}
	if got := cfg.Stage("in").Config.String("listen"); got != "127.0.0.1:0" {
		t.Errorf("listen %q: ${VAR:-default} should take the default", got)
	}
	split := cfg.Stage("split")
	if want := []string{"audit", "errors", "warnings"}; !reflect.DeepEqual(split.Routes, want) {
		t.Errorf("routes %v, want %v (next first, then refs, each once)", split.Routes, want)
	}
	rs := split.Config.Objects("routes")
	if len(rs) != 2 || rs[0].String("if") != `level == "error"` || rs[1].String("next") != "warnings" {
		t.Errorf("routes config %+v", rs)
	}
	if p := split.FieldPos["routes.1.next"]; p.Line != 13 || p.Col != 15 {
		t.Errorf("routes.1.next at %v", p)
	}
	errs := cfg.Stage("errors")
	if errs.Settings.Batch != 16 || errs.Settings.Linger != 0 || errs.Settings.Capacity != port.DefaultCapacity || errs.Settings.Overflow != port.Block {
		t.Errorf("batch: N: %+v", errs.Settings)
	}
	hc := errs.Config
	if hc.Duration("timeout") != time.Second || hc.Int("retries") != 3 || hc.Bool("verbose") ||
		!reflect.DeepEqual(hc.Strings("require"), []string{"id"}) || hc.Has("require") {
		t.Errorf("handler defaults wrong: %v", hc.Names())
	}
	if o := hc.Object("opts"); o.String("mode") != "fast" || o.Has("mode") || hc.Has("opts") {
		t.Errorf("an absent object gets its sub-fields' defaults, not marked given")
	}
	if _, ok := hc.Value("verbose"); ok {
		t.Errorf("a field without default and not given has no value")
	}
}

func TestParseEnv(t *testing.T) {
	env := map[string]string{"HOST": "db.local", "EMPTY": "", "N": "7", "SIZE": "2KiB"}
	for _, tc := range []struct {
		value, want string
	}{
		{"${HOST}", "db.local"},
		{"postgres://${HOST}:5432/x", "postgres://db.local:5432/x"},
		{"${UNSET}", ""},
		{"${UNSET:-fallback}", "fallback"},
		{"${EMPTY:-fallback}", "fallback"},
		{"${HOST:-fallback}", "db.local"},
		{"${UNSET:-}", ""},
		{"$$", "$"},
		{"$${HOST}", "${HOST}"},
		{"'$'", "$"},
		{"$.id", "$.id"},
		{"a$b", "a$b"},
		{"cost$", "cost$"},
		{"'${HOST}'", "db.local"},
	} {
		src := fmt.Sprintf("name: e\nstages:\n  s:\n    kind: test.source\n    listen: %s\n", tc.value)
		cfg := mustParse(t, src, env)
		if got := cfg.Stages[0].Config.String("listen"); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.value, got, tc.want)
		}
	}
	// Expansion happens before typing; keys are not expanded.
	cfg := mustParse(t, "name: ${N}\nstages:\n  s:\n    kind: test.handler\n    retries: ${N}\n    labels:\n      ${N}: ${HOST}\n    inline: ${UNSET:-false}\n  k:\n    kind: test.source\n    listen: x\n    max_frame: ${SIZE}\n", env)
	s := cfg.Stage("s")
	if cfg.Name != "7" || s.Config.Int("retries") != 7 || !reflect.DeepEqual(s.Config.Pairs("labels"), [][2]string{{"${N}", "db.local"}}) {
		t.Errorf("typed expansion: name %q retries %d labels %v", cfg.Name, s.Config.Int("retries"), s.Config.Pairs("labels"))
	}
	if cfg.Stage("k").Config.Size("max_frame") != 2048 {
		t.Errorf("size from env")
	}
}

func TestParseErrors(t *testing.T) {
	const head = "name: t\nstages:\n" // stages start on line 3
	for _, tc := range []struct {
		name, src string
		pos       string // line:col
		msg       string
	}{
		{"syntax unclosed list", "name: t\nstages:\n  a: [x\n  b: y\n", "3:1", "bad YAML: did not find expected ',' or ']'"},
		{"syntax unclosed mapping", "name: t\nstages:\n  a: {b: c\n  d: e\n", "3:1", "bad YAML: did not find expected ',' or '}'"},
		{"syntax indentation", "name: t\nstages:\n  a: b\n   c: d\n", "4:1", "bad YAML: mapping values are not allowed"},
		{"syntax sequence in mapping", "name: t\nstages:\n  a: b\n  - c\n", "4:3", "bad YAML: did not find expected key (a list entry where a key"},
		{"syntax key indented between levels", "name: t\nstages:\n  a:\n    kind: x\n    listen: y\n   next: b\n", "6:4", "bad YAML: did not find expected key (this line does not line up with the block that starts on line 3)"},
		{"syntax list entry indented between levels", "name: t\nstages:\n  a:\n    routes:\n      - if: a\n       next: b\n", "6:8", "bad YAML: did not find expected '-' indicator"},
		{"syntax indentation after a list as a value", "name: t\nstages:\n  a:\n    require:\n    - id\n   next: b\n", "6:4", "bad YAML: did not find expected key"},
		{"syntax indentation after a flow mapping over lines", "name: t\nstages:\n  a:\n    columns: {a: b,\n  c: d}\n   next: y\n", "6:4", "bad YAML: did not find expected key"},
		{"syntax bad token", "name: t\nstages:\n  a: @x\n", "3:1", "bad YAML: found character that cannot start any token"},
		{"syntax line one", "a: b: c\n", "1:1", "bad YAML: mapping values are not allowed"},
		{"syntax tab", "name: t\n\tstages: 1\n", "2:1", "bad YAML: found a tab character"},
		{"unknown anchor", "name: t\nstages:\n  a: {kind: *nope}\n", "3:13", "bad YAML: unknown anchor 'nope' referenced"},
		{"unknown anchor after one in a comment", "name: t # see *nope\nstages:\n  a:\n    kind: *nope\n", "4:11", "bad YAML: unknown anchor 'nope' referenced"},
		{"unknown anchor after a longer alias", "name: t\nstages:\n  a: {kind: x, require: [&ab x, *ab, *a]}\n", "3:38", "bad YAML: unknown anchor 'a' referenced"},
		{"syntax tab after a scalar", "name: t\nstages:\n  s:\n    kind: x\n\tlisten: y\n", "5:1", "bad YAML: found a tab character"},
		{"syntax file ends in a flow list", "name: t\nstages:\n  s:\n    kind: x\n    listen: [", "5:1", "the file ends before a collection opened above is closed"},
		{"not a mapping", "- a\n- b\n", "1:1", "must be a mapping"},
		{"empty file", "", "1:1", "the file is empty"},
		{"comment only", "# nothing\n", "1:1", "the file is empty"},
		{"two documents", head + "  s: {kind: test.source, listen: x}\n---\nname: u\n", "4:1", "one YAML document"},
		{"unknown top key", "name: t\nlogs: {}\nstages:\n  s: {kind: test.source, listen: x}\n", "2:1", `unknown key "logs" (did you mean "log"?); the top level takes name, admin, log, drain, memory_limit, nats, stages`},
		{"missing name", "stages:\n  s: {kind: test.source, listen: x}\n", "1:1", `missing required key "name"`},
		{"missing stages", "name: t\n", "1:1", `missing required key "stages"`},
		{"empty stages", "name: t\nstages: {}\n", "2:1", "stages is empty"},
		{"null stages", "name: t\nstages:\n", "2:1", "stages is empty"},
		{"stages a list", "name: t\nstages: [a]\n", "2:9", "stages must be a mapping"},
		{"bad log level", "name: t\nlog: {level: loud}\nstages:\n  s: {kind: test.source, listen: x}\n", "2:14", `log.level: want debug, info, warn or error, got "loud"`},
		{"bad log format", "name: t\nlog:\n  format: xml\nstages:\n  s: {kind: test.source, listen: x}\n", "3:11", `log.format: want console or json, got "xml"`},
		{"bad drain", "name: t\ndrain: soon\nstages:\n  s: {kind: test.source, listen: x}\n", "2:8", `drain: bad duration "soon"`},
		{"negative drain", "name: t\ndrain: -1s\nstages:\n  s: {kind: test.source, listen: x}\n", "2:8", "must not be negative"},
		{"bad admin listen", "name: t\nadmin: {listen: nope}\nstages:\n  s: {kind: test.source, listen: x}\n", "2:17", "admin.listen: want host:port"},
		{"drain of 0", "name: t\ndrain: 0s\nstages:\n  s: {kind: test.source, listen: x}\n", "2:8", "drain: 0s is out of range: want at least 1ms"},
		{"unknown admin key", "name: t\nadmin: {listen: ':1', tokn: x}\nstages:\n  s: {kind: test.source, listen: x}\n", "2:23", `unknown key "tokn" in admin (did you mean "token"?)`},
		{"unknown stage key", head + "  s:\n    kind: test.handler\n    worker: 4\n", "5:5", `stage "s": unknown key "worker" (did you mean "workers"?); kind "test.handler" takes timeout, retries, verbose, labels, require, opts, and every stage takes kind, next,`},
		{"unknown key no suggestion", head + "  s:\n    kind: test.sink\n    table: t\n    colour: red\n", "6:5", `unknown key "colour"; kind "test.sink" takes table`},
		{"unknown kind", head + "  s:\n    kind: test.handlr\n", "4:11", `stage "s": unknown kind "test.handlr" (did you mean "test.handler"?); registered kinds: db.postgres, netio.tcp, process.json, test.handler, test.route, test.sink, test.source`},
		{"missing kind", head + "  s:\n    workers: 2\n", "3:3", `stage "s": missing required key "kind"`},
		{"empty stage", head + "  s:\n", "3:3", `stage "s": empty stage`},
		{"stage a list", head + "  s: [1]\n", "3:6", `stage "s": a stage must be a mapping`},
		{"missing required field", head + "  s:\n    kind: test.sink\n", "3:3", `stage "s": missing required key "table"`},
		{"string wanted, mapping given", head + "  s:\n    kind: test.source\n    listen: {a: 1}\n", "5:13", `stage "s": listen: want a string, got a mapping`},
		{"int wanted", head + "  s:\n    kind: test.handler\n    workers: abc\n", "5:14", `stage "s": workers: want an integer, got "abc"`},
		{"int overflow", head + "  s:\n    kind: test.handler\n    retries: 99999999999999999999\n", "5:14", "out of range"},
		{"bool wanted", head + "  s:\n    kind: test.handler\n    inline: yes\n", "5:13", `inline: want true or false, got "yes"`},
		{"null int", head + "  s:\n    kind: test.handler\n    workers:\n", "5:13", "workers: want an int, got nothing"},
		{"bad size", head + "  s:\n    kind: test.source\n    listen: x\n    max_frame: 64XB\n", "6:16", `max_frame: bad size "64XB": unknown unit "XB"`},
		{"bad duration", head + "  s:\n    kind: test.handler\n    timeout: 5 minutes\n", "5:14", `timeout: bad duration "5 minutes"`},
		{"list wanted", head + "  s:\n    kind: test.handler\n    require: id\n", "5:14", "require: want a list of strings"},
		{"list of mappings", head + "  s:\n    kind: test.handler\n    require: [{a: b}]\n", "5:15", "require.0: want a string, got a mapping"},
		{"map wanted", head + "  s:\n    kind: test.handler\n    labels: [a]\n", "5:13", "labels: want a mapping of strings"},
		{"map value nested", head + "  s:\n    kind: test.handler\n    labels: {a: [b]}\n", "5:17", "labels.a: want a string, got a list"},
		{"object wanted", head + "  s:\n    kind: test.handler\n    opts: fast\n", "5:11", "opts: want a mapping of mode, limit, got a value"},
		{"object unknown key", head + "  s:\n    kind: test.handler\n    opts: {mod: safe}\n", "5:12", `unknown key "mod" in opts (did you mean "mode"?); opts takes mode, limit`},
		{"object list item", head + "  s:\n    kind: test.route\n    routes: [x]\n", "5:14", "routes.0: want a mapping of if, next"},
		{"object list missing", head + "  s:\n    kind: test.route\n    routes:\n      - next: s2\n  s2: {kind: test.sink, table: t}\n", "6:9", `stage "s": missing required key "if" in routes.0`},
		{"duplicate key", head + "  s:\n    kind: test.handler\n    retries: 1\n    retries: 2\n", "6:5", `duplicate key "retries" (first at line 5)`},
		{"duplicate stage", head + "  s: {kind: test.sink, table: t}\n  s: {kind: test.sink, table: u}\n", "4:3", `duplicate stage "s" (first at line 3)`},
		{"bad stage name", head + "  'a b': {kind: test.sink, table: t}\n", "3:3", `bad stage name "a b"`},
		{"workers zero", head + "  s:\n    kind: test.handler\n    workers: 0\n", "5:14", `stage "s": workers: 0 is out of range: want 1 to 65536`},
		{"concurrency negative", head + "  s:\n    kind: test.handler\n    concurrency: -2\n", "5:18", "concurrency: -2 is out of range: want 1 to 65536"},
		{"capacity zero", head + "  s:\n    kind: test.handler\n    queue: {capacity: 0}\n", "5:23", "queue.capacity: 0 is out of range: want 1 to 16777216"},
		{"batch zero", head + "  s:\n    kind: test.handler\n    batch: 0\n", "5:12", "batch.max: 0 is out of range"},
		{"batch max zero", head + "  s:\n    kind: test.handler\n    batch: {max: 0, linger: 1ms}\n", "5:18", "batch.max: 0 is out of range: want 1 to 65536"},
		{"batch list", head + "  s:\n    kind: test.handler\n    batch: [1]\n", "5:12", "batch: want a mapping of max, linger, got a list"},
		{"batch bad linger", head + "  s:\n    kind: test.handler\n    batch: {linger: 2}\n", "5:21", `batch.linger: bad duration "2"`},
		{"overflow", head + "  s:\n    kind: test.handler\n    queue: {overflow: drop}\n", "5:23", `queue.overflow: want block or reject, got "drop"`},
		{"queue unknown key", head + "  s:\n    kind: test.handler\n    queue:\n      capacty: 10\n", "6:7", `unknown key "capacty" in queue (did you mean "capacity"?)`},
		{"dangling next", head + "  s:\n    kind: test.handler\n    next: stor\n  store: {kind: test.sink, table: t}\n", "5:11", `stage "s": next "stor" is not a stage (did you mean "store"?); stages: s, store`},
		{"dangling ref", head + "  s:\n    kind: test.route\n    routes:\n      - {if: x, next: t}\n      - {if: y, next: gone}\n  t: {kind: test.sink, table: x}\n", "7:23", `stage "s": routes.1.next "gone" is not a stage`},
		{"dangling list ref", head + "  s:\n    kind: test.route\n    mirror: [t, gone]\n  t: {kind: test.sink, table: x}\n", "5:17", `mirror.1 "gone" is not a stage`},
		{"next on terminal", head + "  s:\n    kind: test.sink\n    table: t\n    next: u\n  u: {kind: test.sink, table: t}\n", "6:11", `stage "s": kind "test.sink" finishes events itself and takes no next`},
		{"self next", head + "  s:\n    kind: test.handler\n    next: s\n", "5:11", `stage "s": next names the stage itself`},
		{"self ref", head + "  s:\n    kind: test.route\n    routes: [{if: x, next: s}]\n", "5:28", `routes.0.next names the stage itself`},
		{"cycle", head + "  a:\n    kind: test.handler\n    next: b\n  b:\n    kind: test.handler\n    next: c\n  c:\n    kind: test.handler\n    next: a\n", "5:11", `stage "a": routes form a cycle: a -> b -> c -> a`},
		{"cycle through ref", head + "  a:\n    kind: test.route\n    mirror: [b]\n  b:\n    kind: test.handler\n    next: a\n", "5:14", "routes form a cycle: a -> b -> a"},
		{"inline not fed", head + "  s:\n    kind: test.handler\n    inline: true\n", "3:3", `stage "s" is inline but no stage routes to it`},
		{"inline with queue", head + "  i:\n    kind: test.source\n    listen: x\n    next: s\n  s:\n    kind: test.handler\n    inline: true\n    queue: {capacity: 5}\n", "10:12", `stage "s": queue has no effect on an inline stage`},
		{"source inline", head + "  s:\n    kind: test.source\n    listen: x\n    inline: true\n", "6:13", `stage "s": a source (kind "test.source") cannot be inline`},
		{"source shard_by", head + "  s:\n    kind: test.source\n    listen: x\n    shard_by: [id]\n", "6:15", `stage "s": a source (kind "test.source") cannot take shard_by: it makes its events in the order it reads them`},
		{"shard_by empty", head + "  i:\n    kind: test.source\n    listen: x\n    next: s\n  s:\n    kind: test.handler\n    shard_by: []\n", "9:15", `stage "s": shard_by lists no fields`},
		{"shard_by not a list", head + "  i:\n    kind: test.source\n    listen: x\n    next: s\n  s:\n    kind: test.handler\n    shard_by: {a: b}\n", "9:15", `shard_by`},
		{"source as target", head + "  a:\n    kind: test.source\n    listen: x\n  b:\n    kind: test.handler\n    next: a\n", "8:11", `stage "b": next "a" is a source (kind "test.source"): sources take no input`},
		{"unterminated var", head + "  s:\n    kind: test.source\n    listen: ${HOST\n", "5:13", `stage "s": listen: unterminated "${"`},
		{"bad var name", head + "  s:\n    kind: test.source\n    listen: ${1X}\n", "5:13", `bad variable reference "${1X}"`},
		{"empty var", head + "  s:\n    kind: test.source\n    listen: a${}b\n", "5:13", `bad variable reference "${}"`},
		{"nested default", head + "  s:\n    kind: test.source\n    listen: ${A:-${B}}\n", "5:13", "a default cannot hold another"},
		{"bad var in list", head + "  s:\n    kind: test.handler\n    require: [a, '${']\n", "5:18", "require.1: unterminated"},
		{"merge key", head + "  base: &b {kind: test.sink, table: t}\n  s:\n    <<: *b\n", "5:5", "merge keys (<<) are not supported"},
		{"non-scalar key", head + "  s:\n    kind: test.sink\n    table: t\n    ? [a]\n    : b\n", "6:7", "a key must be a plain string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, es := parse(t, tc.src, nil)
			if es == nil {
				t.Fatalf("no error, want %s: %s", tc.pos, tc.msg)
			}
			want := "p.yaml:" + tc.pos + ": "
			found := false
			for _, e := range es {
				if strings.HasPrefix(e.Error(), want) && strings.Contains(e.Msg, tc.msg) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want an error %s...%s, got:\n%v", want, tc.msg, es)
			}
			if len(es) != 1 {
				t.Errorf("want exactly one error, got %d:\n%v", len(es), es)
			}
		})
	}
}

func TestParseSecretNotShown(t *testing.T) {
	const secret = "postgres://u:hunter2@h/db"
	src := "name: t\nstages:\n  s:\n    kind: db.postgres\n    table: t\n    dsn: [" + secret + "]\n    retries: x\n"
	_, es := parse(t, src, nil)
	if es == nil || strings.Contains(es.Error(), "hunter2") {
		t.Fatalf("errors %v", es)
	}
}

// A secret value its field's Enum or Range refuses is reported with what
// the field allows, and without the value.
func TestParseSecretRefusedNotShown(t *testing.T) {
	reg := stage.NewRegistry()
	hnd := func(stage.Config, stage.Env) (stage.Handler, error) { return nil, errors.New("fake") }
	if err := reg.Register(stage.Kind{Name: "test.secret", Doc: "Secrets.", NewHandler: hnd, Terminal: true, Fields: []stage.Field{
		{Name: "mode", Type: stage.String, Secret: true, Enum: []string{"x", "y"}, Doc: "a mode"},
		{Name: "pin", Type: stage.Int, Secret: true, Range: stage.Between(1, 5), Doc: "a pin"},
		{Name: "keys", Type: stage.StringList, Secret: true, Enum: []string{"k1", "k2"}, Doc: "keys"},
	}}); err != nil {
		t.Fatal(err)
	}
	src := "name: t\nstages:\n  s:\n    kind: test.secret\n    mode: SECRET1\n    pin: 98765\n    keys: [k1, SECRET3]\n"
	_, err := Parse("p.yaml", []byte(src), reg, envOf(nil))
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("errors %v, want 3", err)
	}
	for i, want := range []string{
		`p.yaml:5:11: stage "s": mode: want x or y (the value is not shown: the field is secret)`,
		`p.yaml:6:10: stage "s": pin: out of range: want 1 to 5 (the value is not shown: the field is secret)`,
		`p.yaml:7:16: stage "s": keys.1: want k1 or k2 (the value is not shown: the field is secret)`,
	} {
		if got := es[i].Error(); got != want {
			t.Errorf("error %d:\n got %s\nwant %s", i, got, want)
		}
	}
	if s := es.Error(); strings.Contains(s, "SECRET") || strings.Contains(s, "98765") {
		t.Errorf("a secret is shown: %s", s)
	}
}

// A secret whose value holds "${" followed by no variable's name is
// refused at its place without quoting what follows: a password may hold
// it.
func TestParseSecretBadReferenceNotShown(t *testing.T) {
	src := "name: t\nstages:\n  s:\n    kind: db.postgres\n    table: t\n    dsn: postgres://u:Pa${ss!w0rd}@h/db\n"
	_, es := parse(t, src, nil)
	if len(es) != 1 || strings.Contains(es.Error(), "w0rd") || !strings.Contains(es.Error(), "6:10") ||
		!strings.Contains(es.Error(), "bad variable reference (not shown: the field is secret)") {
		t.Fatalf("errors %v", es)
	}
}

// The same of a secret list's or map's item: a bad reference in one was
// quoted whole, the secret around it included.
func TestParseSecretItemBadReferenceNotShown(t *testing.T) {
	reg := stage.NewRegistry()
	hnd := func(stage.Config, stage.Env) (stage.Handler, error) { return nil, errors.New("fake") }
	if err := reg.Register(stage.Kind{Name: "test.secrets", Doc: "Secrets.", NewHandler: hnd, Terminal: true, Fields: []stage.Field{
		{Name: "keys", Type: stage.StringList, Secret: true, Doc: "keys"},
		{Name: "headers", Type: stage.StringMap, Secret: true, Doc: "headers"},
	}}); err != nil {
		t.Fatal(err)
	}
	src := "name: t\nstages:\n  s:\n    kind: test.secrets\n    keys: [\"Pa${ss!w0rd}\"]\n    headers: {Authorization: \"Bearer tok${en!S3CRET}\"}\n"
	_, err := Parse("p.yaml", []byte(src), reg, envOf(nil))
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("errors %v, want 2", err)
	}
	if s := es.Error(); strings.Contains(s, "w0rd") || strings.Contains(s, "S3CRET") ||
		!strings.Contains(s, "p.yaml:5:12") || !strings.Contains(s, "p.yaml:6:30") ||
		strings.Count(s, "bad variable reference (not shown: the field is secret)") != 2 {
		t.Errorf("a secret is shown, or the errors do not say where: %s", s)
	}
}

func TestParseManyErrors(t *testing.T) {
	data, err := os.ReadFile("testdata/errors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("testdata/errors.yaml", data, loaderRegistry(t), nil)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err %T %v", err, err)
	}
	want := []string{
		`testdata/errors.yaml:2:1: unknown key "color"`,
		`testdata/errors.yaml:7:5: stage "in": unknown key "worker" (did you mean "workers"?)`,
		`testdata/errors.yaml:11:14: stage "parse": timeout: bad duration "5x"`,
		`testdata/errors.yaml:12:23: stage "parse": queue.capacity: 0 is out of range: want 1 to 16777216`,
		`testdata/errors.yaml:12:36: stage "parse": queue.overflow: want block or reject, got "drop"`,
		`testdata/errors.yaml:13:11: stage "parse": next "nowhere" is not a stage`,
		`testdata/errors.yaml:14:3: stage "out" is inline but no stage routes to it`,
	}
	if len(es) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(es), len(want), es)
	}
	for i := range min(len(es), len(want)) {
		if !strings.HasPrefix(es[i].Error(), want[i]) {
			t.Errorf("error %d:\n got %s\nwant %s...", i, es[i], want[i])
		}
	}
}

func TestParseCycleFixture(t *testing.T) {
	data, err := os.ReadFile("testdata/cycle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, es := parse(t, string(data), nil)
	if len(es) != 1 || es[0].Pos.Line != 9 || !strings.Contains(es[0].Msg, "a -> b -> a") {
		t.Fatalf("got %v", es)
	}
}

func TestParseAliases(t *testing.T) {
	src := "name: t\nstages:\n  a:\n    kind: test.handler\n    queue: &q {capacity: 10, overflow: reject}\n    next: b\n  b:\n    kind: test.sink\n    table: t\n    queue: *q\n"
	cfg := mustParse(t, src, nil)
	if s := cfg.Stage("b").Settings; s.Capacity != 10 || s.Overflow != port.Reject {
		t.Fatalf("alias not followed: %+v", s)
	}
	// Aliases that expand past the node bound are refused, once.
	var b strings.Builder
	b.WriteString("name: t\nstages:\n  s:\n    kind: test.handler\n    require: &r [a, b, c, d, e]\n  r:\n    kind: test.route\n    mirror: *r\n    routes: [")
	for i := 0; i < 50; i++ {
		b.WriteString("{if: *r, next: *r}, ")
	}
	b.WriteString("]\n")
	_, err := parseLimited("p.yaml", []byte(b.String()), loaderRegistry(t), nil, 100)
	var es Errors
	if !errors.As(err, &es) || !strings.Contains(es.Error(), "more than 100 values") || strings.Count(es.Error(), "more than") != 1 {
		t.Fatalf("got %v", err)
	}
}

// A value given by an alias is positioned at the alias, in the stage that
// uses it, and so is everything in it, never at the anchor's text, which
// is another stage's: a check of b's labels, opts or second route (New's
// of a column's field, a constructor's of a key) pointed at a's line.
// The stage that holds the anchor keeps its own positions.
func TestParseAliasPositions(t *testing.T) {
	src := `name: t
stages:
  a:
    kind: test.handler
    labels: &l {x: one, y: &y two}
    opts: &o {mode: safe}
    next: b
  b:
    kind: test.handler
    labels: *l
    opts: *o
    require: [id, *y]
    next: c
  c:
    kind: test.route
    routes: [&r {if: x, next: s}, *r]
  s: &s
    kind: test.sink
    table: t
  s2: *s
`
	cfg := mustParse(t, src, nil)
	at := func(line, col int) Pos { return Pos{File: "p.yaml", Line: line, Col: col} }
	for _, c := range []struct {
		stage, path string
		want        Pos
	}{
		{"a", "labels", at(5, 13)},
		{"a", "labels.y", at(5, 28)},
		{"a", "opts.mode", at(6, 21)},
		{"b", "labels", at(10, 13)},
		{"b", "labels.x", at(10, 13)},
		{"b", "labels.y", at(10, 13)},
		{"b", "opts", at(11, 11)},
		{"b", "opts.mode", at(11, 11)},
		{"b", "require.1", at(12, 19)},
		{"c", "routes.0.next", at(16, 31)},
		{"c", "routes.1", at(16, 35)},
		{"c", "routes.1.if", at(16, 35)},
		{"c", "routes.1.next", at(16, 35)},
		{"s", "table", at(19, 12)},
		{"s2", "table", at(20, 3)}, // a stage given by an alias: at its name
	} {
		if got := cfg.Stage(c.stage).FieldPos[c.path]; got != c.want {
			t.Errorf("stage %s: FieldPos[%q] = %v, want %v", c.stage, c.path, got, c.want)
		}
	}
}

// TestSpecBadDefault checks that a kind whose spec has a default of the
// wrong type is refused when it is registered, before any file is loaded.
func TestSpecBadDefault(t *testing.T) {
	reg := stage.NewRegistry()
	err := reg.Register(stage.Kind{Name: "k", NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) { return nil, nil },
		Fields: []stage.Field{{Name: "n", Type: stage.Int, Default: "many"}}})
	if err == nil || !strings.Contains(err.Error(), `field "n": default "many" has the wrong type`) {
		t.Fatalf("err = %v", err)
	}
}

func TestExpandEnv(t *testing.T) {
	env := envOf(map[string]string{"A": "x", "E": ""})
	for in, want := range map[string]string{
		"":              "",
		"$":             "$",
		"$$$":           "$$",
		"${A}${A}":      "xx",
		"${A:-d}":       "x",
		"${E:-d}":       "d",
		"${Z:-a:-b}":    "a:-b",
		"${Z:-}":        "",
		"pre${A}post":   "prexpost",
		"${A}$":         "x$",
		"100$ and ${A}": "100$ and x",
	} {
		got, err := expandEnv(in, env)
		if err != nil || got != want {
			t.Errorf("expandEnv(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"${", "${A", "${}", "${A B}", "${-x}", "${A:-${B}}"} {
		if _, err := expandEnv(in, env); err == nil {
			t.Errorf("expandEnv(%q): no error", in)
		}
	}
}

func TestSuggest(t *testing.T) {
	cands := []string{"workers", "concurrency", "queue", "batch", "next"}
	for in, want := range map[string]string{
		"worker":     ` (did you mean "workers"?)`,
		"Workers":    ` (did you mean "workers"?)`,
		"concurency": ` (did you mean "concurrency"?)`,
		"nxt":        ` (did you mean "next"?)`,
		"colour":     "",
		"x":          "",
	} {
		if got := suggest(in, cands); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse checks that no input makes Parse panic, and that every failure
// is an Errors whose entries all carry a position in the file.
func FuzzParse(f *testing.F) {
	fixtures, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range fixtures {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("name: t\nstages:\n  s: {kind: test.handler, batch: 4, next: s}\n"))
	f.Add([]byte("name: ${N:-x}\nstages: {a: {kind: test.route, routes: [{if: x, next: a}], mirror: [$$]}}\n"))
	reg := loaderRegistry(f)
	env := envOf(map[string]string{"LISTEN": "127.0.0.1:1", "N": "3"})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data, reg, env)
		if err == nil {
			if cfg == nil || len(cfg.Stages) == 0 {
				t.Fatal("success without stages")
			}
			for _, format := range []string{"dot", "mermaid"} {
				if err := cfg.Graph(&strings.Builder{}, format); err != nil {
					t.Fatal(err)
				}
			}
			return
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error %T is not a non-empty Errors: %v", err, err)
		}
		for _, e := range es {
			if e.Pos.File != "f.yaml" || e.Pos.Line < 1 || e.Pos.Col < 1 {
				t.Fatalf("error without position: %#v", e)
			}
		}
	})
}

// shard_by is a common key: a list of fields, on a stage with a queue or
// an inline one.
func TestParseShardBy(t *testing.T) {
	cfg, es := parse(t, "name: t\nstages:\n  i:\n    kind: test.source\n    listen: x\n    next: a\n  a:\n    kind: test.handler\n    shard_by: [id, tenant]\n    next: b\n  b:\n    kind: test.handler\n    inline: true\n    shard_by: [id]\n", nil)
	if len(es) != 0 {
		t.Fatal(es)
	}
	if got := cfg.Stage("a").Settings.ShardBy; !reflect.DeepEqual(got, []string{"id", "tenant"}) {
		t.Errorf("a: shard_by %v", got)
	}
	if got := cfg.Stage("b").Settings.ShardBy; !reflect.DeepEqual(got, []string{"id"}) {
		t.Errorf("b: shard_by %v", got)
	}
}
