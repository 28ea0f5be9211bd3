package pipeline

// This file holds the decoding of YAML values against a spec: types,
// sizes, durations, ${VAR} and positions.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stagedserver/seda/stage"
	"gopkg.in/yaml.v3"
)

// keySet names keys of a mapping that decodeObject leaves to the caller.
type keySet struct {
	names []string
	take  func(k, v *yaml.Node)
	any   bool // accept and ignore every key not in the fields
}

type entry struct{ key, val *yaml.Node }

// entries returns the key/value pairs of mapping n, reporting keys that are
// not plain scalars and keys given twice (what is the first of the two).
func (l *loader) entries(n *yaml.Node, what string) (out []entry, merged bool) {
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode {
			k = l.resolve(k)
			if k == nil {
				continue
			}
		}
		if k.Kind != yaml.ScalarNode {
			l.errorf(k, "a key must be a plain string, not %s", describe(k))
			continue
		}
		if k.Tag == "!!merge" {
			l.errorf(k, "merge keys (<<) are not supported: write the keys out")
			merged = true
			continue
		}
		if f, dup := first[k.Value]; dup {
			l.errorf(k, "duplicate %s %q (first at line %d)", what, k.Value, f.Line)
			continue
		}
		first[k.Value] = k
		out = append(out, entry{k, v})
	}
	return out, merged
}

// decodeObject decodes mapping n by fields into a Config with defaults
// filled in, recording positions in sc. path is n's dotted path
// ("" for a stage or the top level); owner is where a missing required key
// is reported; accepts completes the message about an unknown key.
func (l *loader) decodeObject(sc *scope, n *yaml.Node, path string, fields []stage.Field, owner *yaml.Node, ks keySet, accepts string) stage.Config {
	var cfg stage.Config
	byName := make(map[string]*stage.Field, len(fields))
	for i := range fields {
		byName[fields[i].Name] = &fields[i]
	}
	what := "key"
	if path != "" {
		what = "key in " + path
	}
	given := map[string]bool{}
	es, merged := l.entries(n, what)
	for _, e := range es {
		name := e.key.Value
		f := byName[name]
		if f == nil {
			if oneOf(name, ks.names...) {
				if ks.take != nil {
					ks.take(e.key, e.val)
				}
				continue
			}
			if ks.any {
				continue
			}
			cands := make([]string, 0, len(fields)+len(ks.names))
			for _, f := range fields {
				cands = append(cands, f.Name)
			}
			cands = append(cands, ks.names...)
			in := ""
			if path != "" {
				in = " in " + path
			}
			l.errorf(e.key, "%s", sc.msg("unknown key %q%s%s; %s", name, in, suggest(name, cands), accepts))
			continue
		}
		given[name] = true
		if v, ok := l.decodeValue(sc, f, e.val, join(path, name)); ok {
			cfg.Set(name, v)
		}
	}
	for _, f := range fields {
		if given[f.Name] {
			continue
		}
		if f.Required && !merged {
			in := ""
			if path != "" {
				in = " in " + path
			}
			l.errorf(owner, "%s", sc.msg("missing required key %q%s", f.Name, in))
			continue
		}
	}
	// Binding fills in the defaults and attaches the spec, so that a
	// getter asked for an undeclared name fails loudly. Problems with the
	// values were reported, with their positions, as they were decoded.
	cfg, _ = stage.Bind(fields, cfg)
	return cfg
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// peek follows aliases without counting them against the budget.
func (l *loader) peek(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

// itemString decodes one string item of a list or map field at path ip:
// it records where the item is and expands ${VAR}. When the item is not a
// string or does not expand it reports the problem and returns good false;
// stop is true when the node could not be resolved at all (an error
// already reported), so the field is abandoned.
func (l *loader) itemString(sc *scope, ip string, n *yaml.Node, secret bool) (text string, good, stop bool) {
	defer sc.viaAlias(n, l.pos(n))()
	n = l.resolve(n)
	if n == nil {
		return "", false, true
	}
	sc.record(ip, l.pos(n))
	if n.Kind != yaml.ScalarNode {
		l.errorf(n, "%s", sc.msg("%s: want a string, got %s", ip, describe(n)))
		return "", false, false
	}
	text, err := l.expand(n)
	if err != nil {
		if secret {
			err = hidden(err) // a bad reference would quote the secret around it
		}
		l.errorf(n, "%s", sc.msg("%s: %v", ip, err))
		return "", false, false
	}
	return text, true, false
}

// resolve follows aliases and counts the node against maxNodes. It returns
// nil, having reported why, when the node cannot be decoded.
func (l *loader) resolve(n *yaml.Node) *yaml.Node {
	if l.overBudget {
		return nil
	}
	l.nodes++
	if l.nodes > l.maxNodes {
		l.overBudget = true
		l.errorf(n, "the file expands to more than %d values through aliases", l.maxNodes)
		return nil
	}
	at := n
	n = l.peek(n)
	if n == nil {
		l.errorf(at, "alias does not lead to a value")
		return nil
	}
	return n
}

// describe names the YAML shape of n for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return "a value"
	}
	return "a YAML node"
}

// expand returns a scalar's text with ${VAR} expanded. A YAML null (`key:`,
// `~`) is the empty text.
func (l *loader) expand(n *yaml.Node) (string, error) {
	if n.Tag == "!!null" {
		return "", nil
	}
	return expandEnv(n.Value, l.env)
}

func article(t stage.FieldType) string {
	switch t {
	case stage.Int, stage.Object:
		return "an " + t.String()
	}
	return "a " + t.String()
}

// decodeValue decodes n as a value of field f at path. ok is false when it
// failed (and was reported).
func (l *loader) decodeValue(sc *scope, f *stage.Field, n *yaml.Node, path string) (any, bool) {
	defer sc.viaAlias(n, l.pos(n))()
	n = l.resolve(n)
	if n == nil {
		return nil, false
	}
	sc.record(path, l.pos(n))
	bad := func(format string, args ...any) (any, bool) {
		l.errorf(n, "%s", sc.msg(path+": "+format, args...))
		return nil, false
	}

	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		// `key:` with nothing is an empty collection.
		switch f.Type {
		case stage.StringList:
			return []string{}, true
		case stage.StringMap:
			return [][2]string{}, true
		case stage.ObjectList:
			return []stage.Config{}, true
		case stage.Object:
			n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
		}
	}

	switch f.Type {
	case stage.String, stage.Int, stage.Bool, stage.Size, stage.Duration:
		if n.Kind != yaml.ScalarNode {
			return bad("want %s, got %s", article(f.Type), describe(n))
		}
		if n.Tag == "!!null" && f.Type != stage.String {
			return bad("want %s, got nothing", article(f.Type))
		}
		text, err := l.expand(n)
		if err != nil {
			if f.Secret {
				err = hidden(err)
			}
			return bad("%v", err)
		}
		v, err := scalar(f.Type, text)
		if err != nil {
			if f.Secret {
				return bad("want %s", article(f.Type))
			}
			return bad("%v", err)
		}
		if err := f.Check(v); err != nil { // of a secret, without the value
			return bad("%v", err)
		}
		return v, true

	case stage.StringList:
		if n.Kind != yaml.SequenceNode {
			return bad("want a list of strings such as [a, b], got %s", describe(n))
		}
		out := make([]string, 0, len(n.Content))
		ok := true
		for i, it := range n.Content {
			ip := path + "." + strconv.Itoa(i)
			text, good, stop := l.itemString(sc, ip, it, f.Secret)
			if stop {
				return nil, false
			}
			if !good {
				ok = false
				continue
			}
			if err := f.Check(text); err != nil { // of a secret, without the value
				l.errorf(it, "%s", sc.msg("%s: %s", ip, err))
				ok = false
				continue
			}
			out = append(out, text)
		}
		return out, ok

	case stage.StringMap:
		if n.Kind != yaml.MappingNode {
			return bad("want a mapping of strings such as {a: x, b: y}, got %s", describe(n))
		}
		out := make([][2]string, 0, len(n.Content)/2)
		ok := true
		es, _ := l.entries(n, "key in "+path)
		for _, e := range es {
			ip := path + "." + e.key.Value
			text, good, stop := l.itemString(sc, ip, e.val, f.Secret)
			if stop {
				return nil, false
			}
			if !good {
				ok = false
				continue
			}
			out = append(out, [2]string{e.key.Value, text})
		}
		return out, ok

	case stage.Object:
		if n.Kind == yaml.ScalarNode && (path == "batch" && sc.stage != "" || path == "memory_limit" && sc.stage == "") {
			// batch: N is short for batch: {max: N}, and memory_limit:
			// SIZE for memory_limit: {max: SIZE}.
			var cfg stage.Config
			for _, sf := range f.Fields {
				if sf.Name == "max" {
					v, ok := l.decodeScalarAs(sc, &sf, n, path+".max")
					if !ok {
						return nil, false
					}
					cfg.Set("max", v)
				}
			}
			cfg, _ = stage.Bind(f.Fields, cfg)
			return cfg, true
		}
		if n.Kind != yaml.MappingNode {
			return bad("want a mapping of %s, got %s", fieldNames(f.Fields), describe(n))
		}
		// A partly bad object is still returned: its errors are reported,
		// and checks made later on the stage do not repeat them.
		return l.decodeObject(sc, n, path, f.Fields, n, keySet{}, path+" takes "+fieldNames(f.Fields)), true

	case stage.ObjectList:
		if n.Kind != yaml.SequenceNode {
			return bad("want a list of mappings of %s, got %s", fieldNames(f.Fields), describe(n))
		}
		out := make([]stage.Config, 0, len(n.Content))
		for i, raw := range n.Content {
			ip := path + "." + strconv.Itoa(i)
			done := sc.viaAlias(raw, l.pos(raw))
			it := l.resolve(raw)
			if it == nil {
				done()
				return nil, false
			}
			sc.record(ip, l.pos(it))
			if it.Kind != yaml.MappingNode {
				l.errorf(it, "%s", sc.msg("%s: want a mapping of %s, got %s", ip, fieldNames(f.Fields), describe(it)))
			} else {
				out = append(out, l.decodeObject(sc, it, ip, f.Fields, it, keySet{}, path+" items take "+fieldNames(f.Fields)))
			}
			done()
		}
		return out, true
	}
	return bad("field type %v is not supported", f.Type)
}

// decodeScalarAs decodes n as f, recording it at path as well.
func (l *loader) decodeScalarAs(sc *scope, f *stage.Field, n *yaml.Node, path string) (any, bool) {
	// n was counted already; do not count it twice.
	l.nodes--
	return l.decodeValue(sc, f, n, path)
}

// scalar converts text to the Go value of a scalar field type.
func scalar(t stage.FieldType, text string) (any, error) {
	switch t {
	case stage.String:
		return text, nil
	case stage.Int:
		s := strings.TrimSpace(text)
		n, err := strconv.ParseInt(s, 10, strconv.IntSize)
		if err != nil {
			n, err = strconv.ParseInt(s, 0, strconv.IntSize)
		}
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
				return nil, fmt.Errorf("%q is out of range", clip(text))
			}
			return nil, fmt.Errorf("want an integer, got %q", clip(text))
		}
		return int(n), nil
	case stage.Bool:
		switch strings.TrimSpace(text) {
		case "true", "True", "TRUE":
			return true, nil
		case "false", "False", "FALSE":
			return false, nil
		}
		return nil, fmt.Errorf("want true or false, got %q", clip(text))
	case stage.Size:
		return stage.ParseSize(text)
	case stage.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(text))
		if err != nil {
			return nil, fmt.Errorf("bad duration %q: want a number with a unit such as 500ms, 2s or 5m", clip(text))
		}
		if d < 0 {
			return nil, fmt.Errorf("bad duration %q: must not be negative", clip(text))
		}
		return d, nil
	}
	return nil, fmt.Errorf("not a scalar type: %v", t)
}
