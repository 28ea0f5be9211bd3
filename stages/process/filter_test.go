package process

// This file tests process.filter and process.route: events kept, dropped
// and routed, and bad configs.

import (
	"github.com/stagedserver/seda/stage"
	"reflect"
	"testing"
)

func TestFilterKeeps(t *testing.T) {
	h := mustBuild(t, "process.filter", map[string]any{"if": `level == "error" or status >= 500`})
	out, done := runFields(t, h,
		map[string]any{"level": "error"},
		map[string]any{"level": "info", "status": int64(200)},
		map[string]any{"status": int64(503)},
		nil,
	)
	if got := out.seqs(""); !reflect.DeepEqual(got, []uint64{1, 3}) {
		t.Errorf("emitted %v, want [1 3]", got)
	}
	if done.ok != 2 || len(done.errs) != 0 {
		t.Errorf("dropped: ok=%d errs=%v, want 2 acked", done.ok, done.errs)
	}
}

func TestFilterDrops(t *testing.T) {
	h := mustBuild(t, "process.filter", map[string]any{"if": `host matches "^test-"`, "drop": true})
	out, done := runFields(t, h,
		map[string]any{"host": "test-1"},
		map[string]any{"host": "web-1"},
		map[string]any{},
	)
	if got := out.seqs(""); !reflect.DeepEqual(got, []uint64{2, 3}) {
		t.Errorf("emitted %v, want [2 3]", got)
	}
	if done.seqs[1] != "ok" || len(done.seqs) != 1 {
		t.Errorf("finished %v, want only 1 acked", done.seqs)
	}
}

func TestFilterBadCondition(t *testing.T) {
	_, err := build(t, testRegistry, "process.filter", map[string]any{"if": `level = "x"`})
	fieldErr(t, err, "if", `column 7: expected an operator`)
	_, err = build(t, testRegistry, "process.filter", map[string]any{"if": ` `})
	fieldErr(t, err, "if", "a condition is required")
}

func routeCfg(def string) map[string]any {
	cfg := map[string]any{"routes": []stage.Config{
		routeObj(`level == "error"`, "alerts"),
		routeObj(`level exists`, "logs"),
		routeObj(`level == "error" or kind == "audit"`, "audit"),
	}}
	if def != "" {
		cfg["default"] = def
	}
	return cfg
}

func TestRoute(t *testing.T) {
	in := []map[string]any{
		{"level": "error"},                  // first match wins: alerts, not logs or audit
		{"level": "info"},                   // logs
		{"kind": "audit"},                   // audit
		{"other": true},                     // default
		{"level": "error", "kind": "audit"}, // alerts
	}
	h := mustBuild(t, "process.route", routeCfg("rest"), "alerts", "logs", "audit", "rest")
	out, done := runFields(t, h, in...)
	for next, want := range map[string][]uint64{"alerts": {1, 5}, "logs": {2}, "audit": {3}, "rest": {4}} {
		if got := out.seqs(next); !reflect.DeepEqual(got, want) {
			t.Errorf("to %s: %v, want %v", next, got, want)
		}
	}
	if len(out.seqs("")) != 0 || len(done.seqs) != 0 {
		t.Errorf("plain Emit %v or finished %v", out.seqs(""), done.seqs)
	}

	// Without a default, what matches nothing is dropped and acked.
	h = mustBuild(t, "process.route", routeCfg(""), "alerts", "logs", "audit")
	out, done = runFields(t, h, in...)
	if len(out.calls) != 4 || done.seqs[4] != "ok" || len(done.seqs) != 1 {
		t.Errorf("emitted %d, finished %v; want 4 emitted and 4 acked", len(out.calls), done.seqs)
	}
}

func TestRouteErrors(t *testing.T) {
	_, err := build(t, testRegistry, "process.route", routeCfg("rest"), "alerts", "audit", "rest")
	fieldErr(t, err, "routes.1.next", `"logs" is not a route of stage "t"`)
	_, err = build(t, testRegistry, "process.route", routeCfg("nowhere"), "alerts", "logs", "audit")
	fieldErr(t, err, "default", `"nowhere" is not a route of stage "t"`)
	_, err = build(t, testRegistry, "process.route", map[string]any{"routes": []stage.Config{
		routeObj(`a == 1`, "x"), routeObj(`a == 1 and (b`, "x"),
	}}, "x")
	fieldErr(t, err, "routes.1.if", "column 14: expected an operator")
	_, err = build(t, testRegistry, "process.route", map[string]any{"routes": []stage.Config{routeObj(`a exists`, "")}}, "x")
	fieldErr(t, err, "routes.0.next", "a stage name is required")
	_, err = build(t, testRegistry, "process.route", map[string]any{}, "x")
	fieldErr(t, err, "routes", "required")
}
