package pipeline

// This file holds the checks of a pipeline's topology (references,
// cycles, sources and inline stages) and its warnings.

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/stagedserver/seda/stage"
)

// node is one stage as the topology checks see it. The loader and New
// both describe their stages this way and call checkTopology, so that the
// rules about routes are written once.
type node struct {
	cfg  *StageConfig
	kind *stage.Kind // nil when unknown (reported elsewhere)
	refs []ref       // the stage names it routes to, next first, with where each is written
}

// ref is one stage name given as a value of a Ref field.
type ref struct {
	path string // "next", "routes.1.next"
	to   string
	pos  Pos
}

// edge is a route from one stage to another, where it is written.
type edge struct {
	to  int
	pos Pos
}

// checkTopology checks the stages as a graph and reports each problem
// through errAt: a route must name another stage that takes input (not a
// source); a terminal kind, or one with NoNext, takes no next; a source
// cannot be inline; an inline stage needs a stage that routes to it; the
// routes must not form a cycle. It returns, per stage, its routes (next
// first, each name once) and, when there is no cycle, the stages in
// topological order (each after every stage upstream of it, file order
// among the ready ones).
func checkTopology(nodes []node, errAt func(Pos, string, ...any)) (routes [][]string, order []int) {
	index := make(map[string]int, len(nodes))
	names := make([]string, len(nodes))
	for i, n := range nodes {
		index[n.cfg.Name] = i
		names[i] = n.cfg.Name
	}
	isSource := func(n node) bool { return n.kind != nil && n.kind.IsSource() }
	edges := make([][]edge, len(nodes))
	fed := make([]bool, len(nodes))
	routes = make([][]string, len(nodes))
	for i, n := range nodes {
		s := n.cfg
		seen := map[string]bool{}
		linked := map[int]bool{}
		if s.Next != "" {
			// Next comes first whatever the order of the keys.
			seen[s.Next] = true
			routes[i] = append(routes[i], s.Next)
		}
		for _, r := range n.refs {
			if r.to == "" {
				continue
			}
			if !seen[r.to] {
				seen[r.to] = true
				routes[i] = append(routes[i], r.to)
			}
			j, ok := index[r.to]
			switch {
			case r.to == s.Name:
				errAt(r.pos, "stage %q: %s names the stage itself", s.Name, r.path)
				continue
			case !ok:
				errAt(r.pos, "stage %q: %s %q is not a stage%s; stages: %s", s.Name, r.path, r.to, suggest(r.to, names), listNames(names))
				continue
			case isSource(nodes[j]):
				errAt(r.pos, "stage %q: %s %q is a source (kind %q): sources take no input", s.Name, r.path, r.to, nodes[j].kind.Name)
				continue
			}
			fed[j] = true
			if !linked[j] {
				linked[j] = true
				edges[i] = append(edges[i], edge{to: j, pos: r.pos})
			}
		}
		if n.kind != nil && n.kind.Terminal && s.Next != "" {
			errAt(posOr(s.FieldPos, "next", s.Pos), "stage %q: kind %q finishes events itself and takes no next", s.Name, n.kind.Name)
		}
		if n.kind != nil && n.kind.NoNext != "" && s.Next != "" {
			errAt(posOr(s.FieldPos, "next", s.Pos), "stage %q: kind %q takes no next: %s", s.Name, n.kind.Name, n.kind.NoNext)
		}
		if isSource(n) && len(s.Settings.ShardBy) > 0 {
			errAt(posOr(s.FieldPos, "shard_by", s.Pos), "stage %q: a source (kind %q) cannot take shard_by: it makes its events in the order it reads them; put shard_by on the stage after it", s.Name, n.kind.Name)
		}
		if isSource(n) && s.Settings.Inline {
			errAt(posOr(s.FieldPos, "inline", s.Pos), "stage %q: a source (kind %q) cannot be inline: nothing upstream calls it", s.Name, n.kind.Name)
		}
	}
	for i, n := range nodes {
		if n.cfg.Settings.Inline && !fed[i] && !isSource(n) {
			errAt(n.cfg.Pos, "stage %q is inline but no stage routes to it: an inline stage runs inside its upstream stage's workers", n.cfg.Name)
		}
	}
	cycs := cycles(edges)
	for _, cyc := range cycs {
		path := make([]string, len(cyc)+1)
		for k, i := range cyc {
			path[k] = names[i]
		}
		path[len(cyc)] = names[cyc[0]]
		var at Pos
		for _, e := range edges[cyc[0]] {
			if e.to == cyc[1] {
				at = e.pos
			}
		}
		errAt(at, "stage %q: routes form a cycle: %s", names[cyc[0]], strings.Join(path, " -> "))
	}
	if len(cycs) > 0 {
		return routes, nil
	}
	// Kahn's algorithm, taking stages in file order among the ready ones.
	indeg := make([]int, len(nodes))
	for _, es := range edges {
		for _, e := range es {
			indeg[e.to]++
		}
	}
	done := make([]bool, len(nodes))
	for len(order) < len(nodes) {
		for i := range nodes {
			if done[i] || indeg[i] > 0 {
				continue
			}
			done[i] = true
			order = append(order, i)
			for _, e := range edges[i] {
				indeg[e.to]--
			}
		}
	}
	return routes, order
}

// refsOf describes the routes of a StageConfig built without the loader
// (or by it): its Next, then the values of the Ref fields among fields,
// its kind's spec (nil: none), then any other name its Routes lists
// (path "route"), with the positions FieldPos records.
func refsOf(sc *StageConfig, fields []stage.Field) []ref {
	refs := []ref{{path: "next", to: sc.Next, pos: posOr(sc.FieldPos, "next", sc.Pos)}}
	if len(fields) > 0 {
		// Bound first, so that a value of the wrong type is left out here
		// and reported by build.
		cfg, _ := stage.Bind(fields, sc.Config)
		refs = append(refs, refsIn(fields, cfg, "", sc.FieldPos, sc.Pos)...)
	}
	seen := map[string]bool{}
	for _, r := range refs {
		seen[r.to] = true
	}
	for _, r := range sc.Routes {
		if !seen[r] {
			seen[r] = true
			refs = append(refs, ref{path: "route", to: r, pos: sc.Pos})
		}
	}
	return refs
}

// kindFields returns k's spec; nil for an unknown kind.
func kindFields(k *stage.Kind) []stage.Field {
	if k == nil {
		return nil
	}
	return k.Fields
}

// refsIn returns the values of the Ref fields among fields in cfg, a
// Config bound to them, in the spec's order and through objects and lists
// of objects, each with its dotted path below path and where fpos says it
// is written (def when fpos does not say). The loader and New both take a
// stage's routes from it.
func refsIn(fields []stage.Field, cfg stage.Config, path string, fpos map[string]Pos, def Pos) []ref {
	var refs []ref
	add := func(p, to string) {
		if to != "" {
			refs = append(refs, ref{path: p, to: to, pos: posOr(fpos, p, def)})
		}
	}
	for i := range fields {
		f := &fields[i]
		v, _ := cfg.Value(f.Name)
		p := join(path, f.Name)
		switch x := v.(type) {
		case string:
			if f.Ref {
				add(p, x)
			}
		case []string:
			if f.Ref {
				for j, s := range x {
					add(p+"."+strconv.Itoa(j), s)
				}
			}
		case stage.Config:
			refs = append(refs, refsIn(f.Fields, x, p, fpos, def)...)
		case []stage.Config:
			for j, it := range x {
				refs = append(refs, refsIn(f.Fields, it, p+"."+strconv.Itoa(j), fpos, def)...)
			}
		}
	}
	return refs
}

// posOr returns where field is written, or where the nearest object
// holding it is ("tls" for a missing "tls.key"), or def.
func posOr(fp map[string]Pos, field string, def Pos) Pos {
	for field != "" {
		if pos, ok := fp[field]; ok {
			return pos
		}
		i := strings.LastIndexByte(field, '.')
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return def
}

// Warnings returns what the configuration allows but is likely a mistake,
// positioned as Errors are: a stage that is not a source and that no stage
// routes to receives no events (a pipeline's stages are fed by its
// sources, through routes, only); a stage whose queue is on a transport,
// which delivers again what a process did not finish, and whose kind says
// that handling an event twice does harm (stage.Kind.Redelivered: a
// db.postgres with no key stores a row twice). An inline stage nothing
// routes to is an error instead (see checkTopology); a stage of an unknown
// kind, or whose keys are wrong, is left to the errors.
func (c *Config) Warnings(reg *stage.Registry) Errors {
	fed := map[string]bool{}
	for _, sc := range c.Stages {
		k, _ := reg.Lookup(sc.Kind)
		for _, r := range refsOf(sc, kindFields(k)) {
			fed[r.to] = true
		}
	}
	var ws Errors
	for _, sc := range c.Stages {
		k, ok := reg.Lookup(sc.Kind)
		if !ok || k.IsSource() || sc.Settings.Inline || fed[sc.Name] {
			continue
		}
		ws = append(ws, &Error{Pos: sc.Pos, Msg: fmt.Sprintf(
			"warning: stage %q: no stage routes to it, so it receives no events (name it in another stage's next, or remove it)", sc.Name)})
	}
	for _, sc := range c.Stages {
		k, ok := reg.Lookup(sc.Kind)
		if !ok || k.Redelivered == nil || sc.Transport == "" || sc.Transport == localTransport {
			continue
		}
		cfg, err := stage.Bind(k.Fields, sc.Config)
		if err != nil {
			continue
		}
		var why error
		if err := protect(func() error { why = k.Redelivered(cfg); return nil }); err != nil || why == nil {
			continue // a panic in the kind's hook is no warning
		}
		ws = append(ws, &Error{Pos: posOr(sc.FieldPos, "queue.transport", sc.Pos), Msg: stage.Redact(fmt.Sprintf(
			"warning: stage %q: its queue on %s delivers again what a process did not finish (a crash), and %v", sc.Name, sc.Transport, why))})
	}
	return ws
}
