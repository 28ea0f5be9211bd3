package process_test

// This file tests that process.route refuses a next key, from YAML and
// from code.

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/process"
)

// routeWithNext is a process.route with a next and no default: it reads
// as "matches to errors, the rest to all", but route never emits to next.
const routeWithNext = `name: rt
stages:
  rt:
    kind: process.route
    routes:
      - {if: 'level == "error"', next: errors}
    next: all
  errors:
    kind: process.filter
    if: 'level exists'
  all:
    kind: process.filter
    if: 'level exists'
`

// A next on process.route is refused at the next key, by the loader (so
// lint and graph) and by New for a Config built in code, with a reason
// that points to default.
func TestRouteRefusesNext(t *testing.T) {
	reg := stage.NewRegistry()
	if err := process.Register(reg); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, err error) {
		t.Helper()
		var errs pipeline.Errors
		if !errors.As(err, &errs) {
			t.Fatalf("got %v, want pipeline.Errors", err)
		}
		for _, e := range errs {
			if e.Pos.Line == 7 && e.Pos.Col == 11 && strings.Contains(e.Msg, `stage "rt"`) &&
				strings.Contains(e.Msg, "takes no next") && strings.Contains(e.Msg, "default") {
				return
			}
		}
		t.Fatalf("no error at 7:11 saying that stage rt takes no next; got:\n%v", err)
	}
	if cfg, err := pipeline.Parse("rt.yaml", []byte(routeWithNext), reg, nil); err == nil {
		t.Fatalf("Parse accepted a next on process.route: routes %v", cfg.Stages[0].Routes)
	} else {
		check(t, err)
	}

	// The same stage built in code, without the loader.
	ok := strings.Replace(routeWithNext, "    next: all\n", "    default: all\n", 1)
	cfg, err := pipeline.Parse("rt.yaml", []byte(ok), reg, nil)
	if err != nil {
		t.Fatalf("with default instead of next: %v", err)
	}
	cfg.Stages[0].Next = "all"
	cfg.Stages[0].FieldPos["next"] = pipeline.Pos{File: "rt.yaml", Line: 7, Col: 11}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err == nil {
		_, _ = p.Stop(t.Context())
		t.Fatal("New accepted a next on process.route")
	}
	check(t, err)
}
