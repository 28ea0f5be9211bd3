package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// maxNodes bounds how many YAML nodes one file may expand to once aliases
// are followed, so that a small file of nested aliases ("billion laughs")
// cannot make the loader run for ever.
const maxNodes = 1 << 20

// Load reads a pipeline file and checks it against the kinds of reg, as
// Parse does, expanding ${VAR} from the process environment.
//
// A file that cannot be read gives the os error; every problem inside the
// file is reported, all at once, as Errors.
func Load(file string, reg *stage.Registry) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("load pipeline: %w", err)
	}
	return Parse(file, data, reg, os.LookupEnv)
}

// Parse decodes a pipeline description written in YAML and checks it
// against the kinds registered in reg. file only names the source in
// positions. lookupEnv resolves ${VAR} in values (nil: every variable is
// unset).
//
// Loading is strict: unknown keys, unknown kinds, values of the wrong type,
// bad sizes and durations, missing required fields, routes to stages that
// do not exist, cycles and misplaced inline or source stages are errors.
// When there is any, Parse returns a nil Config and an Errors holding every
// problem found, sorted by position, each with its file, line and column.
func Parse(file string, data []byte, reg *stage.Registry, lookupEnv func(string) (string, bool)) (*Config, error) {
	return parseLimited(file, data, reg, lookupEnv, maxNodes)
}

// parseLimited is Parse with a bound on the number of YAML nodes.
func parseLimited(file string, data []byte, reg *stage.Registry, lookupEnv func(string) (string, bool), limit int) (*Config, error) {
	if reg == nil {
		reg = stage.NewRegistry()
	}
	l := &loader{file: file, reg: reg, env: lookupEnv, maxNodes: limit}
	cfg := l.load(data)
	if len(l.errs) > 0 {
		return nil, l.sortedErrors()
	}
	return cfg, nil
}

// topFields are the top-level keys of a pipeline file other than stages.
// They drive both the loader and WriteReference.
func topFields() []stage.Field {
	return []stage.Field{
		{Name: "name", Type: stage.String, Required: true, Doc: "the pipeline's name, shown by /stats and in metrics"},
		{Name: "admin", Type: stage.Object, Doc: "the admin HTTP endpoint: /stats, /metrics, /healthz, /readyz", Fields: []stage.Field{
			{Name: "listen", Type: stage.String, Doc: "host:port to listen on; empty: no admin endpoint"},
			{Name: "token", Type: stage.String, Secret: true, Doc: "when set, every request must send `Authorization: Bearer TOKEN`; without one the endpoint binds loopback only"},
		}},
		{Name: "log", Type: stage.Object, Doc: "the pipeline's logger", Fields: []stage.Field{
			{Name: "level", Type: stage.String, Default: "info", Enum: []string{"debug", "info", "warn", "error"}, Doc: "the least severe level logged"},
			{Name: "format", Type: stage.String, Default: "console", Enum: []string{"console", "json"}, Doc: "console: for people; json: one object per line"},
		}},
		{Name: "drain", Type: stage.Duration, Default: DefaultDrain, Doc: "on stop, how long queued events may take to finish before the rest is cancelled"},
	}
}

// loader holds the state of one Parse call.
type loader struct {
	file     string
	reg      *stage.Registry
	env      func(string) (string, bool)
	errs     Errors
	nodes    int // nodes visited
	maxNodes int // bound on nodes; maxNodes unless a test sets it
	// overBudget is set once maxNodes is passed; decoding stops quietly
	// after the one error that says so.
	overBudget bool
}

func (l *loader) pos(n *yaml.Node) Pos {
	if n == nil || n.Line == 0 {
		return Pos{File: l.file, Line: 1, Col: 1}
	}
	col := n.Column
	if col < 1 {
		col = 1
	}
	return Pos{File: l.file, Line: n.Line, Col: col}
}

func (l *loader) errAt(p Pos, format string, args ...any) {
	if p.Line < 1 {
		// Every error points somewhere; a check with no recorded position
		// falls back to the start of the file.
		p = Pos{File: l.file, Line: 1, Col: 1}
	}
	l.errs = append(l.errs, &Error{Pos: p, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) errorf(n *yaml.Node, format string, args ...any) {
	l.errAt(l.pos(n), format, args...)
}

// sortedErrors sorts the errors by position and drops exact repeats (a
// value read twice, such as a stage's kind, may fail twice).
func (l *loader) sortedErrors() Errors {
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i].Pos, l.errs[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	out := l.errs[:0]
	for i, e := range l.errs {
		if i > 0 && *e == *l.errs[i-1] {
			continue
		}
		out = append(out, e)
	}
	return out
}

// yamlLine finds the line in a yaml.v3 error message ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// parserErrors are the messages of libyaml's parser (as opposed to its
// scanner). yaml.v3 reports their line counting from 0, and the line is
// where the enclosing block or flow collection starts.
var parserErrors = []string{
	"did not find expected <document start>",
	"did not find expected node content",
	"did not find expected key",
	"did not find expected '-' indicator",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
}

// unknownAnchor is yaml.v3's message for an alias to no anchor; it has no
// line, so the loader finds the alias in the text.
var unknownAnchor = regexp.MustCompile(`^unknown anchor '([^']*)' referenced`)

func (l *loader) syntaxError(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := Pos{File: l.file, Line: 1, Col: 1}
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = err.Error()[len(m[0]):]
	}
	for _, pe := range parserErrors {
		if strings.HasPrefix(msg, pe) {
			line++
			msg += " (in the collection that starts on this line)"
			break
		}
	}
	if line > 0 {
		p.Line = line
	}
	if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			p.Line = 1 + bytes.Count(data[:i], []byte("\n"))
			p.Col = 1 + utf8.RuneCount(data[bytes.LastIndexByte(data[:i], '\n')+1:i])
		}
	}
	l.errAt(p, "bad YAML: %s", msg)
}

// decodeYAML parses data into a node tree. yaml.v3 reports its own errors
// with panics that it recovers; anything else it panics with on hostile
// input is turned into an error here too, so that a bad file never takes the
// program down.
func decodeYAML(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

func (l *loader) load(data []byte) *Config {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decodeYAML(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.errAt(Pos{File: l.file, Line: 1, Col: 1}, "the file is empty: want name and stages")
		} else {
			l.syntaxError(err, data)
		}
		return nil
	}
	var extra yaml.Node
	if err := decodeYAML(dec, &extra); err == nil {
		l.errorf(&extra, "a pipeline file holds one YAML document; remove this one or its `---`")
	} else if !errors.Is(err, io.EOF) {
		l.syntaxError(err, data)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			l.errAt(Pos{File: l.file, Line: 1, Col: 1}, "the file is empty: want name and stages")
			return nil
		}
		root = root.Content[0]
	}
	root = l.resolve(root)
	if root == nil {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			l.errorf(root, "the file is empty: want name and stages")
		} else {
			l.errorf(root, "the file must be a mapping of top-level keys (name, admin, log, drain, stages), not %s", describe(root))
		}
		return nil
	}

	cfg := &Config{File: l.file}
	sc := &scope{fpos: map[string]Pos{}}
	var stagesKey, stagesNode *yaml.Node
	fields := topFields()
	top := l.decodeObject(sc, root, "", fields, root, keySet{
		names: []string{"stages"},
		take: func(k, v *yaml.Node) {
			stagesKey, stagesNode = k, v
		},
	}, "the top level takes "+fieldNames(fields)+", stages")
	cfg.Name = top.String("name")
	if top.Has("name") && strings.TrimSpace(cfg.Name) == "" {
		l.errAt(sc.at("name"), "name must not be empty")
	}
	adm := top.Object("admin")
	cfg.Admin = AdminConfig{Listen: adm.String("listen"), Token: adm.String("token")}
	if cfg.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(cfg.Admin.Listen); err != nil {
			l.errAt(sc.at("admin.listen"), "admin.listen: want host:port such as 127.0.0.1:9464, got %q", cfg.Admin.Listen)
		}
	}
	lg := top.Object("log")
	cfg.Log = LogConfig{Level: lg.String("level"), Format: lg.String("format")}
	cfg.Drain = top.Duration("drain")

	switch {
	case l.overBudget:
	case stagesNode == nil:
		l.errorf(root, "missing required key \"stages\"")
	default:
		nodes := l.stages(stagesKey, stagesNode)
		for _, n := range nodes {
			cfg.Stages = append(cfg.Stages, n.cfg)
		}
		routes, _ := checkTopology(nodes, l.errAt)
		for i, n := range nodes {
			n.cfg.Routes = routes[i]
		}
	}
	return cfg
}

func oneOf(s string, vals ...string) bool {
	for _, v := range vals {
		if s == v {
			return true
		}
	}
	return false
}

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
	refs  []ref
}

func (sc *scope) record(path string, p Pos) {
	if sc.fpos != nil {
		sc.fpos[path] = p
	}
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

	common := stage.CommonFields()
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
		Batch:       b.Int("max"),
		Linger:      b.Duration("linger"),
		Inline:      all.Bool("inline"),
	}
	if q.String("overflow") == "reject" {
		s.Settings.Overflow = port.Reject
	}
	if s.Settings.Inline {
		for _, k := range []string{"workers", "concurrency", "queue", "batch"} {
			if all.Has(k) {
				l.errAt(sc.at(k), "%s", sc.msg("%s has no effect on an inline stage: it runs in its upstream stage's workers, with no queue or pool of its own", k))
			}
		}
	}
	return &node{cfg: s, kind: kind, refs: sc.refs}
}

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
// filled in, recording positions and refs in sc. path is n's dotted path
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
func (l *loader) itemString(sc *scope, ip string, n *yaml.Node) (text string, good, stop bool) {
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
			return []stage.Pair{}, true
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
			return bad("%v", err)
		}
		v, err := scalar(f.Type, text)
		if err == nil {
			err = f.Check(v)
		}
		if err != nil {
			if f.Secret {
				return bad("want %s", article(f.Type))
			}
			return bad("%v", err)
		}
		if f.Ref && text != "" {
			sc.refs = append(sc.refs, ref{path: path, to: text, pos: l.pos(n)})
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
			text, good, stop := l.itemString(sc, ip, it)
			if stop {
				return nil, false
			}
			if !good {
				ok = false
				continue
			}
			if err := f.Check(text); err != nil {
				l.errorf(it, "%s", sc.msg("%s: %v", ip, err))
				ok = false
				continue
			}
			if f.Ref && text != "" {
				sc.refs = append(sc.refs, ref{path: ip, to: text, pos: sc.at(ip)})
			}
			out = append(out, text)
		}
		return out, ok

	case stage.StringMap:
		if n.Kind != yaml.MappingNode {
			return bad("want a mapping of strings such as {a: x, b: y}, got %s", describe(n))
		}
		out := make([]stage.Pair, 0, len(n.Content)/2)
		ok := true
		es, _ := l.entries(n, "key in "+path)
		for _, e := range es {
			ip := path + "." + e.key.Value
			text, good, stop := l.itemString(sc, ip, e.val)
			if stop {
				return nil, false
			}
			if !good {
				ok = false
				continue
			}
			out = append(out, stage.Pair{Key: e.key.Value, Value: text})
		}
		return out, ok

	case stage.Object:
		if n.Kind == yaml.ScalarNode && path == "batch" && sc.stage != "" {
			// batch: N is short for batch: {max: N}.
			var cfg stage.Config
			for _, sf := range f.Fields {
				if sf.Name == "max" {
					v, ok := l.decodeScalarAs(sc, &sf, n, "batch.max")
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
		for i, it := range n.Content {
			ip := path + "." + strconv.Itoa(i)
			it = l.resolve(it)
			if it == nil {
				return nil, false
			}
			sc.record(ip, l.pos(it))
			if it.Kind != yaml.MappingNode {
				l.errorf(it, "%s", sc.msg("%s: want a mapping of %s, got %s", ip, fieldNames(f.Fields), describe(it)))
				continue
			}
			out = append(out, l.decodeObject(sc, it, ip, f.Fields, it, keySet{}, path+" items take "+fieldNames(f.Fields)))
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

// fieldNames lists the names of fs for messages.
func fieldNames(fs []stage.Field) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return listNames(names)
}

// listNames joins names for a message, keeping it short when there are
// many.
func listNames(names []string) string {
	const most = 20
	if len(names) > most {
		return strings.Join(names[:most], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}

// suggest returns ` (did you mean "x"?)` for the candidate nearest to s,
// when one is near enough to be a likely typo, or "".
func suggest(s string, cands []string) string {
	best, bestD := "", -1
	for _, c := range cands {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	limit := 2
	if len(s) <= 4 {
		limit = 1
	}
	if best == "" || bestD > limit || bestD >= len(s) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo of a key name
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
