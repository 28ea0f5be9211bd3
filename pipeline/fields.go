package pipeline

// This file holds the check that every field a stage reads can reach it:
// what its decoders make (FieldsMade) against what it reads (FieldsRead,
// shard_by).

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/stagedserver/seda/stage"
)

// A filter on a misspelt field ("hostnme" after process.syslog) loads and
// runs, and never matches: nothing sets the field. The check below finds
// such a read before the pipeline runs. It is conservative: it refuses a
// read only when every way to the stage passes a decoder whose set of
// fields is closed and lacks it, and no stage after that decoder may set
// any field. A source, a stage whose handler does not say what it makes
// (FieldsMade: process.func, a kind author's own), a decoder whose fields
// come from the data (process.json), a stage not built (not run here, or
// its constructor failed) and a stage nothing routes to make the fields
// reaching a stage open, and then nothing is refused.
//
// A sink's read (a db.postgres column) is a warning, not an error: a sink
// stores a missing field as missing (a column's NULL), which db.postgres
// documents as valid, and one table may be fed by a syslog branch and a
// JSON branch through two stores sharing one column map (a YAML anchor),
// where the syslog store's JSON-only column is NULL by design. A read that
// decides where an event goes (a condition: if, routes.N.if) or how events
// are ordered (shard_by) is still an error: there a missing field is a
// filter that never matches.

// Optional methods of a handler (see stage.Kind).
type (
	fieldsReader interface {
		FieldsRead() (paths []string, all bool)
	}
	fieldsMaker interface {
		FieldsMade() (paths []string, open bool)
	}
	decoder interface {
		Project(paths []string, all bool)
	}
)

// reach is what fields the events reaching a stage may carry.
type reach struct {
	open   bool
	fields []string // closed: these, and paths below them
	by     []string // closed: the stages that made them, as `stage "parse" (process.syslog)`
}

var openReach = &reach{open: true}

// union is the fields of events that reach a stage from a or from b.
func (a *reach) union(b *reach) *reach {
	switch {
	case a == nil:
		return b
	case a.open || b.open:
		return openReach
	}
	u := &reach{fields: slices.Clone(a.fields), by: slices.Clone(a.by)}
	for _, f := range b.fields {
		if !slices.Contains(u.fields, f) {
			u.fields = append(u.fields, f)
		}
	}
	for _, s := range b.by {
		if !slices.Contains(u.by, s) {
			u.by = append(u.by, s)
		}
	}
	return u
}

// has reports whether path may be set: a path made, one below it (a made
// field may hold an object), or one above it.
func (a *reach) has(path string) bool {
	if a.open {
		return true
	}
	for _, f := range a.fields {
		if path == f || strings.HasPrefix(path, f+".") || strings.HasPrefix(f, path+".") {
			return true
		}
	}
	return false
}

// checkFields reports each field a stage reads that no event reaching it
// can carry (see above): a sink's through warnAt, any other through errAt.
// handlers are the stages' handlers, by index into nodes (nil: not built,
// or not a handler); routes and order are checkTopology's (order nil, a
// cycle: nothing is checked).
func checkFields(nodes []node, routes [][]string, order []int, handlers []stage.Handler, errAt, warnAt func(Pos, string, ...any)) {
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n.cfg.Name] = i
	}
	in := make([]*reach, len(nodes))
	for _, i := range order {
		r := in[i]
		if r == nil {
			r = openReach // nothing routes to it: nothing to say
		}
		n, h := nodes[i], handlers[i]
		if !r.open {
			checkReads(n, h, r, errAt, warnAt)
		}
		out := made(n, h, r)
		for _, to := range routes[i] {
			if j, ok := index[to]; ok {
				in[j] = in[j].union(out)
			}
		}
	}
}

// made is what fields the events stage n (handler h) emits may carry,
// given that those it receives carry r.
func made(n node, h stage.Handler, r *reach) *reach {
	m, ok := h.(fieldsMaker)
	if n.kind == nil || n.kind.IsSource() || !ok {
		return openReach
	}
	var paths []string
	open := true
	if protect(func() error { paths, open = m.FieldsMade(); return nil }) != nil || open {
		return openReach
	}
	by := fmt.Sprintf("stage %q (%s)", n.cfg.Name, n.kind.Name)
	if _, ok := h.(decoder); ok {
		// A decoder replaces an event's fields with its own.
		return &reach{fields: slices.Clone(paths), by: []string{by}}
	}
	if len(paths) == 0 {
		return r
	}
	return r.union(&reach{fields: paths, by: []string{by}})
}

// checkReads reports the paths stage n reads (its shard_by, its handler's
// FieldsRead) that r lacks, each at the key that names it: through warnAt
// what a sink (Kind.Terminal) reads, the fields it stores, and through
// errAt the rest.
func checkReads(n node, h stage.Handler, r *reach, errAt, warnAt func(Pos, string, ...any)) {
	sc := n.cfg
	report := func(to func(Pos, string, ...any), key, path, so string) {
		to(posOr(sc.FieldPos, key, sc.Pos), "stage %q: %s: field %q is never set on the events that reach it%s%s; their fields are made by %s: %s",
			sc.Name, key, path, suggest(path, r.fields), so, strings.Join(r.by, " and "), listOrNone(r.fields))
	}
	for i, p := range sc.Settings.ShardBy {
		if p != "$" && !r.has(p) {
			report(errAt, "shard_by."+strconv.Itoa(i), p, "")
		}
	}
	fr, ok := h.(fieldsReader)
	if !ok || n.kind == nil {
		return
	}
	var paths []string
	all := true
	if protect(func() error { paths, all = fr.FieldsRead(); return nil }) != nil || all {
		return
	}
	cfg, _ := stage.Bind(n.kind.Fields, sc.Config)
	for _, p := range paths {
		if p == "$" || p == "" || r.has(p) {
			continue
		}
		key, found := keyNaming(n.kind.Fields, cfg, "", p)
		if !found {
			key = "reads"
		}
		if n.kind.Terminal {
			report(warnAt, key, p, ", so the sink stores it as missing (a column: NULL) for every event")
		} else {
			report(errAt, key, p, "")
		}
	}
}

// keyNaming finds the key of cfg (bound to fields), below path, whose
// value names the field path p: a column's path, or a path in a
// condition (outside its quoted strings). A handler says what it reads,
// not where it was told to; this finds where the user wrote it.
func keyNaming(fields []stage.Field, cfg stage.Config, path, p string) (string, bool) {
	for i := range fields {
		f := &fields[i]
		v, _ := cfg.Value(f.Name)
		k := join(path, f.Name)
		switch x := v.(type) {
		case string:
			if names(x, p) {
				return k, true
			}
		case []string:
			for j, s := range x {
				if names(s, p) {
					return k + "." + strconv.Itoa(j), true
				}
			}
		case [][2]string:
			for _, kv := range x {
				if names(kv[1], p) {
					return k + "." + kv[0], true
				}
			}
		case stage.Config:
			if k, ok := keyNaming(f.Fields, x, k, p); ok {
				return k, true
			}
		case []stage.Config:
			for j, it := range x {
				if k, ok := keyNaming(f.Fields, it, k+"."+strconv.Itoa(j), p); ok {
					return k, true
				}
			}
		}
	}
	return "", false
}

// names reports whether text holds the field path p as a whole token,
// outside double-quoted strings.
func names(text, p string) bool {
	pathByte := func(c byte) bool {
		return c == '_' || c == '$' || c == '@' || c == '.' || c == '-' ||
			'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c >= 0x80
	}
	for i := 0; i < len(text); i++ {
		if text[i] == '"' {
			for i++; i < len(text) && text[i] != '"'; i++ {
				if text[i] == '\\' {
					i++
				}
			}
			continue
		}
		if (i == 0 || !pathByte(text[i-1])) && strings.HasPrefix(text[i:], p) &&
			(i+len(p) == len(text) || !pathByte(text[i+len(p)])) {
			return true
		}
	}
	return false
}
