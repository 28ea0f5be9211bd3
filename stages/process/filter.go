package process

// This file holds process.filter and process.route: conditions that drop
// events or choose their next stage.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/stagedserver/seda/stage"
)

// filterHandler is process.filter.
type filterHandler struct {
	cond *Condition
	drop bool
}

var (
	_ stage.Handler = (*filterHandler)(nil)
	_ fieldReader   = (*filterHandler)(nil)
	_ fieldReader   = (*routeHandler)(nil)
	_ fieldMaker    = (*filterHandler)(nil)
	_ fieldMaker    = (*routeHandler)(nil)
)

// FieldsMade: process.filter sets no field; an event leaves with the
// fields it came with (see stage.Kind).
func (h *filterHandler) FieldsMade() ([]string, bool) { return nil, false }

// FieldsMade: process.route sets no field (see stage.Kind).
func (h *routeHandler) FieldsMade() ([]string, bool) { return nil, false }

// FieldsRead returns the paths the condition reads (see stage.Kind).
func (h *filterHandler) FieldsRead() ([]string, bool) { return h.cond.Paths(), false }

// FieldsRead returns the paths the routes' conditions read
// (see stage.Kind).
func (h *routeHandler) FieldsRead() ([]string, bool) {
	var ps []string
	for _, r := range h.routes {
		for _, p := range r.cond.Paths() {
			if !slices.Contains(ps, p) {
				ps = append(ps, p)
			}
		}
	}
	return ps, false
}

func newFilter(cfg stage.Config, env stage.Env) (stage.Handler, error) {
	c, err := parseField(cfg, "if", "if")
	if err != nil {
		return nil, err
	}
	return &filterHandler{cond: c, drop: cfg.Bool("drop")}, nil
}

// parseField parses the condition under key name of cfg; errors are
// *stage.FieldError naming field.
func parseField(cfg stage.Config, name, field string) (*Condition, error) {
	src := cfg.String(name)
	if strings.TrimSpace(src) == "" {
		return nil, &stage.FieldError{Field: field, Err: fmt.Errorf("a condition is required")}
	}
	c, err := ParseCondition(src)
	if err != nil {
		return nil, &stage.FieldError{Field: field, Err: err}
	}
	return c, nil
}

func (h *filterHandler) Handle(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
	for _, ev := range batch {
		if h.cond.Match(ev) == h.drop {
			ev.Done(nil) // filtered out: handled, so the client gets its ack
			continue
		}
		out.Emit(ctx, ev)
	}
	return nil
}

// routeHandler is process.route.
type routeHandler struct {
	routes []route
	def    string // "" drops what matches no route
}

type route struct {
	cond *Condition
	next string
}

var _ stage.Handler = (*routeHandler)(nil)

func newRoute(cfg stage.Config, env stage.Env) (stage.Handler, error) {
	objs := cfg.Objects("routes")
	if len(objs) == 0 {
		return nil, &stage.FieldError{Field: "routes", Err: fmt.Errorf("at least one route is required")}
	}
	h := &routeHandler{def: cfg.String("default")}
	known := func(name string) bool { return slices.Contains(env.Routes, name) }
	for i, o := range objs {
		prefix := "routes." + strconv.Itoa(i) + "."
		c, err := parseField(o, "if", prefix+"if")
		if err != nil {
			return nil, err
		}
		next := o.String("next")
		switch {
		case next == "":
			return nil, &stage.FieldError{Field: prefix + "next", Err: fmt.Errorf("a stage name is required")}
		case !known(next):
			return nil, &stage.FieldError{Field: prefix + "next", Err: fmt.Errorf("%q is not a route of stage %q (routes: %s)", next, env.Stage, strings.Join(env.Routes, ", "))}
		}
		h.routes = append(h.routes, route{cond: c, next: next})
	}
	if h.def != "" && !known(h.def) {
		return nil, &stage.FieldError{Field: "default", Err: fmt.Errorf("%q is not a route of stage %q (routes: %s)", h.def, env.Stage, strings.Join(env.Routes, ", "))}
	}
	return h, nil
}

func (h *routeHandler) Handle(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
next:
	for _, ev := range batch {
		for i := range h.routes {
			if h.routes[i].cond.Match(ev) {
				out.EmitTo(ctx, h.routes[i].next, ev)
				continue next
			}
		}
		if h.def == "" {
			ev.Done(nil) // matches no route and there is no default: dropped
			continue
		}
		out.EmitTo(ctx, h.def, ev)
	}
	return nil
}
