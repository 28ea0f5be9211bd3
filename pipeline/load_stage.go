package pipeline

// This file holds the decoding of one stage of a pipeline file into its
// StageConfig.

import (
	"fmt"
	"regexp"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"gopkg.in/yaml.v3"
)

// stageName is what a stage may be called: names appear in metrics, graph
// output and cycle paths ("a -> b"), so they stay plain.
var stageName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

func (l *loader) stages(key, n *yaml.Node) []node {
	n = l.resolve(n)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			l.errorf(key, "stages is empty: declare at least one stage")
		} else {
			l.errorf(n, "stages must be a mapping of stage names to stages, not %s", describe(n))
		}
		return nil
	}
	if len(n.Content) == 0 {
		l.errorf(key, "stages is empty: declare at least one stage")
		return nil
	}
	var nodes []node
	es, _ := l.entries(n, "stage")
	for _, e := range es {
		name := e.key.Value
		if !stageName.MatchString(name) {
			l.errorf(e.key, "bad stage name %q: use letters, digits, '_', '.' and '-'", name)
		}
		if n := l.stage(name, e.key, e.val); n != nil {
			nodes = append(nodes, *n)
		}
	}
	return nodes
}

// scope is where a value being decoded belongs: its stage, where its
// fields are, which stage names it refers to.
type scope struct {
	stage string         // "" at the top level
	fpos  map[string]Pos // dotted path -> position of its value
	alias *Pos           // while a value given by an alias is decoded: where the alias is
}

func (sc *scope) record(path string, p Pos) {
	if sc.alias != nil {
		p = *sc.alias
	}
	if sc.fpos != nil {
		sc.fpos[path] = p
	}
}

// viaAlias is called as a value is decoded from node n, which may be an
// alias: then, until the returned func is called, every position recorded
// (the value's and those of everything in it) is the alias's. The text
// the alias stands for, at its anchor, may be in another stage (columns:
// *cols, the map written with &cols on another stage's line); what is said
// later of the value or of anything in it (a column reading a field
// nothing sets) is said of this stage, so it points here. Inside an alias,
// another changes nothing: the outermost, in this stage, is the one.
func (sc *scope) viaAlias(n *yaml.Node, at Pos) (done func()) {
	if n.Kind != yaml.AliasNode || sc.alias != nil {
		return func() {}
	}
	sc.alias = &at
	return func() { sc.alias = nil }
}

// at returns the position recorded for path.
func (sc *scope) at(path string) Pos { return sc.fpos[path] }

// msg prefixes a message with the stage it is about.
func (sc *scope) msg(format string, args ...any) string {
	m := fmt.Sprintf(format, args...)
	if sc.stage == "" {
		return m
	}
	return fmt.Sprintf("stage %q: %s", sc.stage, m)
}

func (l *loader) stage(name string, key, n *yaml.Node) *node {
	sc := &scope{stage: name, fpos: map[string]Pos{}}
	s := &StageConfig{Name: name, Pos: l.pos(key), FieldPos: sc.fpos}
	defer sc.viaAlias(n, s.Pos)() // b: *a: b's keys are at b's name
	n = l.resolve(n)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			l.errorf(key, "%s", sc.msg("empty stage: want at least kind"))
		} else {
			l.errorf(n, "%s", sc.msg("a stage must be a mapping of keys (kind, next, ...), not %s", describe(n)))
		}
		return nil
	}

	// The kind decides which keys are valid, so read it first.
	var kind *stage.Kind
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], l.peek(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.Value != "kind" || v == nil || v.Kind != yaml.ScalarNode {
			continue
		}
		text, err := l.expand(v)
		if err != nil {
			break // reported when the key is decoded below
		}
		if kk, ok := l.reg.Lookup(text); ok {
			kind = kk
		} else {
			var names []string
			for _, k := range l.reg.Kinds() {
				names = append(names, k.Name)
			}
			l.errorf(v, "%s", sc.msg("unknown kind %q%s; registered kinds: %s", text, suggest(text, names), listOrNone(names)))
		}
		break
	}

	common := stageFields(l.reg)
	fields := common
	accepts := "every stage takes " + fieldNames(common)
	if kind != nil {
		fields = append(append([]stage.Field(nil), common...), kind.Fields...)
		if len(kind.Fields) > 0 {
			accepts = fmt.Sprintf("kind %q takes %s, and %s", kind.Name, fieldNames(kind.Fields), accepts)
		} else {
			accepts = fmt.Sprintf("kind %q takes no keys of its own, and %s", kind.Name, accepts)
		}
	}
	// Without a known kind its keys cannot be checked; the error about
	// the kind says why.
	ks := keySet{any: kind == nil}
	all := l.decodeObject(sc, n, "", fields, key, ks, accepts)

	// Split the stage's keys: the common ones become Settings, the kind's
	// own go to Config, defaults filled in.
	var cfg stage.Config
	if kind != nil {
		for _, f := range kind.Fields {
			if v, ok := all.Value(f.Name); ok {
				if all.Has(f.Name) {
					cfg.Set(f.Name, v)
				} else {
					cfg.SetDefault(f.Name, v)
				}
			}
		}
		// Every problem was reported as it was decoded; binding only
		// attaches the spec.
		cfg, _ = stage.Bind(kind.Fields, cfg)
	}
	s.Config = cfg
	s.Kind = all.String("kind")
	s.Next = all.String("next")
	q, b := all.Object("queue"), all.Object("batch")
	s.Settings = stage.Settings{
		Name:        name,
		Kind:        s.Kind,
		Workers:     all.Int("workers"),
		Concurrency: all.Int("concurrency"),
		Capacity:    q.Int("capacity"),
		MaxBytes:    q.Size("max_bytes"),
		Batch:       b.Int("max"),
		Linger:      b.Duration("linger"),
		Inline:      all.Bool("inline"),
		ShardBy:     all.Strings("shard_by"),
	}
	if q.String("overflow") == "reject" {
		s.Settings.Overflow = port.Reject
	}
	if kind != nil && kind.Terminal && !q.Has("capacity") {
		// A sink's default queue holds two of its larger batches
		// (stage.DefaultSinkCapacity).
		s.Settings.Capacity = stage.DefaultSinkCapacity
	}
	if all.Has("shard_by") && len(s.Settings.ShardBy) == 0 {
		l.errAt(sc.at("shard_by"), "%s", sc.msg("shard_by lists no fields: name the fields whose values are the key, or leave it out"))
	}
	l.queueTransport(sc, s, q, kind)
	if s.Settings.Inline {
		// Every common key but these four sizes the stage's queue or pool.
		for _, f := range stage.CommonFields() {
			k := f.Name
			if k == "kind" || k == "next" || k == "inline" || k == "shard_by" {
				continue
			}
			if all.Has(k) {
				l.errAt(sc.at(k), "%s", sc.msg("%s has no effect on an inline stage: it runs in its upstream stage's workers, with no queue or pool of its own", k))
			}
		}
	}
	return &node{cfg: s, kind: kind, refs: refsIn(fields, all, "", sc.fpos, s.Pos)}
}
