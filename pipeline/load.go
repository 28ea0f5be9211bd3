package pipeline

// This file holds Load and Parse: reading a pipeline file, its top-level
// keys, and YAML errors with positions.

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
// Parse builds nothing: a check that needs the stages' handlers (a stage
// reading a field that no event reaching it can carry, a kind's own checks
// of its fields) is New's.
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

// topFields are the top-level keys of a pipeline file other than stages,
// with the sections of reg's transports. They drive both the loader and
// WriteReference.
func topFields(reg *stage.Registry) []stage.Field {
	return append([]stage.Field{
		{Name: "name", Type: stage.String, Required: true, Doc: "the pipeline's name, shown by /stats and in metrics"},
		{Name: "admin", Type: stage.Object, Doc: "the admin HTTP endpoint: the dashboard at /, /stats, /metrics, /healthz, /readyz", Fields: []stage.Field{
			{Name: "listen", Type: stage.String, Doc: "host:port to listen on; empty: no admin endpoint"},
			{Name: "token", Type: stage.String, Secret: true, Doc: "when set, every request must send `Authorization: Bearer TOKEN`; without one the endpoint binds loopback only"},
		}},
		{Name: "log", Type: stage.Object, Doc: "the pipeline's logger", Fields: []stage.Field{
			{Name: "level", Type: stage.String, Default: "info", Enum: []string{"debug", "info", "warn", "error"}, Doc: "the least severe level logged"},
			{Name: "format", Type: stage.String, Default: "console", Enum: []string{"console", "json"}, Doc: "console: for people; json: one object per line"},
		}},
		{Name: "drain", Type: stage.Duration, Default: DefaultDrain, Range: stage.AtLeast(int64(time.Millisecond)), Doc: "on stop, how long queued events may take to finish before the rest is cancelled"},
		memoryField(),
	}, transportSections(reg)...)
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
	lines := bytes.Split(data, []byte("\n"))
	for _, pe := range parserErrors {
		if strings.HasPrefix(msg, pe) {
			line++
			if bad, col, why, ok := badIndent(data, line); ok {
				msg += " (" + why + ")"
				p.Col, line = col, bad
			} else if line > len(lines) || line == len(lines) && len(bytes.TrimSpace(lines[line-1])) == 0 {
				// The file ends inside a collection: the line after the
				// last is no line of the file.
				line = len(lines)
				for line > 1 && len(bytes.TrimSpace(lines[line-1])) == 0 {
					line--
				}
				msg += " (the file ends before a collection opened above is closed)"
			} else {
				msg += " (in the collection that starts on this line)"
			}
			break
		}
	}
	if strings.HasPrefix(msg, "found a tab character") && line > 0 {
		// yaml.v3 names the line it was scanning from, at times the one
		// before the tab: name the first line indented with one.
		for i := line - 1; i < len(lines); i++ {
			indent := lines[i][:len(lines[i])-len(bytes.TrimLeft(lines[i], " \t"))]
			if j := bytes.IndexByte(indent, '\t'); j >= 0 {
				line, p.Col = i+1, j+1
				break
			}
		}
	}
	if line > 0 {
		p.Line = line
	}
	if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
		if ln, col, ok := findAlias(lines, m[1]); ok {
			p.Line, p.Col = ln, col
		}
	}
	l.errAt(p, "bad YAML: %s", msg)
}

// findAlias finds the alias *name in the text: after a space or a flow
// indicator (or at a line's start), followed by no character of a longer
// name, and not in a comment. Quoted strings are not told apart: yaml.v3
// reports an unknown anchor without a line, and this is a guess.
func findAlias(lines [][]byte, name string) (line, col int, ok bool) {
	alias := []byte("*" + name)
	for i, text := range lines {
		for off := 0; ; {
			j := bytes.Index(text[off:], alias)
			if j < 0 {
				break
			}
			j += off
			off = j + 1
			if c := bytes.IndexByte(text, '#'); c >= 0 && c < j && (c == 0 || text[c-1] == ' ' || text[c-1] == '\t') {
				break // the rest of the line is a comment
			}
			if j > 0 && !bytes.ContainsRune([]byte(" \t[{,:-"), rune(text[j-1])) {
				continue
			}
			if end := j + len(alias); end < len(text) && !bytes.ContainsRune([]byte(" \t]},\r"), rune(text[end])) {
				continue // *ab when looking for *a
			}
			return i + 1, 1 + utf8.RuneCount(text[:j]), true
		}
	}
	return 0, 0, false
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
			l.errorf(root, "the file must be a mapping of top-level keys (name, admin, log, drain, memory_limit, stages), not %s", describe(root))
		}
		return nil
	}

	cfg := &Config{File: l.file}
	sc := &scope{fpos: map[string]Pos{}}
	var stagesKey, stagesNode *yaml.Node
	fields := topFields(l.reg)
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
	cfg.Admin = AdminConfig{Listen: adm.String("listen"), Token: adm.String("token"), ListenPos: sc.at("admin.listen")}
	if cfg.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(cfg.Admin.Listen); err != nil {
			l.errAt(sc.at("admin.listen"), "admin.listen: want host:port such as 127.0.0.1:9464, got %q", cfg.Admin.Listen)
		}
	}
	lg := top.Object("log")
	cfg.Log = LogConfig{Level: lg.String("level"), Format: lg.String("format")}
	cfg.Drain = top.Duration("drain")
	cfg.Memory = memoryConfig(top)
	l.transportSections(sc, top, cfg)

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
