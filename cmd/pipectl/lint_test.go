package main

// This file tests pipectl lint: good and bad files, warnings, --stages,
// and the build check run shares.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagedserver/seda/pipeline"
)

func TestLintGood(t *testing.T) {
	code, out, errOut := runCLI(t, "lint", filepath.Join("..", "..", "pipeline.yaml"))
	if code != 0 || out != "ok\n" {
		t.Errorf("pipeline.yaml: exit %d, stdout %q, stderr %q; want exit 0 and ok", code, out, errOut)
	}
}

func TestLintBad(t *testing.T) {
	for _, name := range []string{"bad_load", "bad_build", "bad_indent"} {
		t.Run(name, func(t *testing.T) {
			code, out, _ := runCLI(t, "lint", filepath.Join("testdata", name+".yaml"))
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			golden(t, name+".golden", out)
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if !strings.HasPrefix(l, "testdata/"+name+".yaml:") || strings.Count(l, ":") < 3 {
					t.Errorf("not FILE:LINE:COL: message: %q", l)
				}
			}
		})
	}
}

// A read of a field no decoder before it makes is a problem in a
// condition (found as lint builds the stages with New), at its key; in a
// db.postgres column, which stores it as NULL, a warning (the stage with
// no dsn built with a stand-in one), and the file is ok.
func TestLintMisspeltField(t *testing.T) {
	const head = `name: f
stages:
  in: {kind: netio.udp, listen: 127.0.0.1:0, next: parse}
  parse: {kind: process.syslog, next: keep}
`
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body, want string
		code             int
	}{
		{"filter", `  keep: {kind: process.filter, if: 'hostnme == "a"', next: store}
  store: {kind: db.postgres, table: logs, columns: {host: hostname}}
`, `filter.yaml:5:36: stage "keep": if: field "hostnme" is never set on the events that reach it (did you mean "hostname"?); their fields are made by stage "parse" (process.syslog): pri, facility, severity, version, timestamp, hostname, app_name, procid, msgid, structured_data, msg, parse_error`, 1},
		{"column", `  keep: {kind: process.filter, if: 'hostname == "a"', next: store}
  store: {kind: db.postgres, table: logs, columns: {host: hostname, app: app_nme}}
`, `column.yaml:6:74: warning: stage "store": columns.app: field "app_nme" is never set on the events that reach it (did you mean "app_name"?), so the sink stores it as missing (a column: NULL) for every event; their fields are made by stage "parse" (process.syslog): pri, facility, severity, version, timestamp, hostname, app_name, procid, msgid, structured_data, msg, parse_error`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(file, []byte(head+tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, _ := runCLI(t, "lint", file)
			want := filepath.Join(dir, tc.want) + "\n"
			if tc.code == 0 {
				want += "ok\n"
			}
			if code != tc.code || out != want {
				t.Errorf("exit %d, stdout %q; want exit %d and %q", code, out, tc.code, want)
			}
		})
	}
}

// One table fed by a syslog branch and a JSON branch through two stores,
// with no dsn, that share their column map by a YAML anchor: it lints ok,
// with a warning of the syslog store's "user" (NULL) at its own columns.
func TestLintAnchoredColumns(t *testing.T) {
	file := filepath.Join(t.TempDir(), "e.yaml")
	if err := os.WriteFile(file, []byte(`name: e
stages:
  in: {kind: netio.udp, listen: 127.0.0.1:0, next: split}
  split:
    kind: process.route
    routes: [{if: '$ contains "{"', next: json}]
    default: sys
  json: {kind: process.json, next: store_json}
  sys: {kind: process.syslog, next: store_sys}
  store_json:
    kind: db.postgres
    table: logs
    columns: &cols {host: hostname, user: user, body: $}
  store_sys:
    kind: db.postgres
    table: logs
    columns: *cols
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "lint", file)
	want := file + `:17:14: warning: stage "store_sys": columns.user: field "user" is never set on the events that reach it, so the sink stores it as missing (a column: NULL) for every event; their fields are made by stage "sys" (process.syslog): pri, facility, severity, version, timestamp, hostname, app_name, procid, msgid, structured_data, msg, parse_error` + "\nok\n"
	if code != 0 || out != want {
		t.Errorf("exit %d, stdout %q; want exit 0 and %q", code, out, want)
	}
}

func TestLintSeveralFiles(t *testing.T) {
	code, out, _ := runCLI(t, "lint", filepath.Join("..", "..", "pipeline.yaml"), filepath.Join("testdata", "missing.yaml"))
	if code != 1 || !strings.Contains(out, "testdata/missing.yaml: ") || strings.Contains(out, "ok") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
}

// A stage that no stage routes to is a warning, not an error.
func TestLintWarnsUnrouted(t *testing.T) {
	code, out, _ := runCLI(t, "lint", filepath.Join("testdata", "unrouted.yaml"))
	want := "testdata/unrouted.yaml:10:3: warning: stage \"orphan\": no stage routes to it, so it receives no events " +
		"(name it in another stage's next, or remove it)\nok\n"
	if code != 0 || out != want {
		t.Errorf("exit %d, stdout %q; want exit 0 and %q", code, out, want)
	}
}

func TestLintStages(t *testing.T) {
	split := filepath.Join("..", "..", "examples", "split", "pipeline.yaml")
	for _, stages := range []string{"", "accept,parse", "store"} {
		args := []string{"lint", split}
		if stages != "" {
			args = append(args, "--stages", stages)
		}
		if code, out, errOut := runCLI(t, args...); code != 0 || out != "ok\n" {
			t.Errorf("split, --stages %q: exit %d, stdout %q, stderr %q", stages, code, out, errOut)
		}
	}
	// Without a queue on NATS, a process cannot run part of pipeline.yaml.
	code, out, _ := runCLI(t, "lint", filepath.Join("..", "..", "pipeline.yaml"), "--stages", "accept,parse")
	if code != 1 || !strings.Contains(out, `pipeline.yaml:50:11: stage "parse": the route to "store" crosses processes`) {
		t.Errorf("exit %d, stdout %q", code, out)
	}
}

// --stages with an empty list (--stages "", an unset $STAGES) is refused
// as --stages "," is: run ran, and lint checked, every stage.
func TestEmptyStagesRefused(t *testing.T) {
	file := filepath.Join("testdata", "unrouted.yaml")
	for _, args := range [][]string{
		{"lint", "--stages", "", file},
		{"run", "-f", file, "--stages", ""},
		{"run", "-f", file, "--stages="},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != 1 || !strings.Contains(out+errOut, `--stages: no stage named ""`) {
			t.Errorf("pipectl %q: exit %d, want 1 and --stages refused:\n%s%s", args, code, out, errOut)
		}
	}
}

// buildCheck builds a store with no dsn with lintDSN on a copy of its
// configuration: the Config it was given keeps its empty dsn, which run
// then gives its local PostgreSQL.
func TestBuildCheckLeavesTheConfigAsItWas(t *testing.T) {
	file := filepath.Join(t.TempDir(), "d.yaml")
	if err := os.WriteFile(file, []byte(`name: d
stages:
  in: {kind: netio.udp, listen: 127.0.0.1:0, next: store}
  store: {kind: db.postgres, table: logs, columns: {body: $}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := newRegistry()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pipeline.Load(file, reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buildCheck(context.Background(), cfg, pipeline.Options{Registry: reg}); err != nil {
		t.Fatalf("buildCheck: %v", err)
	}
	if sc := cfg.Stage("store"); sc.Config.Has("dsn") || sc.Config.String("dsn") != "" || len(throwawayStages(cfg)) != 1 {
		t.Errorf("after buildCheck, store's dsn is %q (given: %v); want it left absent", sc.Config.String("dsn"), sc.Config.Has("dsn"))
	}
}
