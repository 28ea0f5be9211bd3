package stage

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FieldType is the type of a configuration field, as written in YAML.
type FieldType int

const (
	String     FieldType = iota // a string
	Int                         // an integer
	Bool                        // true or false
	Size                        // a byte size: 65536, 64KiB, 1MiB, 2MB
	Duration                    // a Go duration: 2ms, 1s, 5m
	StringList                  // a list of strings: [a, b]
	StringMap                   // a mapping of strings, order kept: {a: x, b: y}
	Object                      // a mapping with its own Fields
	ObjectList                  // a list of mappings with their own Fields
)

var fieldTypeNames = [...]string{"string", "int", "bool", "size", "duration", "list of strings", "map of strings", "object", "list of objects"}

// String names the type as the docs and errors show it.
func (t FieldType) String() string {
	if int(t) < len(fieldTypeNames) {
		return fieldTypeNames[t]
	}
	return "FieldType(" + strconv.Itoa(int(t)) + ")"
}

// Field describes one configuration key of a kind.
type Field struct {
	Name     string
	Type     FieldType
	Default  string // as it would be written in YAML; "" means none
	Required bool
	Doc      string  // one line
	Fields   []Field // for Object and ObjectList
	// Ref marks a String or StringList field whose values name stages:
	// the loader checks they exist and draws them as edges.
	Ref bool
	// Secret marks a field never shown in logs or /stats (a DSN).
	Secret bool
}

// Kind is a registered stage kind: its name, documentation, configuration
// spec and constructor. Exactly one of NewHandler and NewSource is set.
type Kind struct {
	Name       string
	Doc        string
	Fields     []Field
	NewHandler func(cfg Config, env Env) (Handler, error)
	NewSource  func(cfg Config, env Env) (Source, error)
	// Terminal kinds finish events themselves (a database sink) and take
	// no `next`.
	Terminal bool
}

// Registry maps kind names to kinds. The zero value is not usable; use
// NewRegistry. A Registry is safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	kinds map[string]*Kind
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{kinds: map[string]*Kind{}} }

// Register adds k. It fails if the name is empty or taken, if neither or
// both constructors are set, or if the spec repeats a field name or
// redeclares a field every stage has (kind, next, workers, ...).
func (r *Registry) Register(k Kind) error {
	if k.Name == "" {
		return errors.New("stage: register: kind has no name")
	}
	if (k.NewHandler == nil) == (k.NewSource == nil) {
		return fmt.Errorf("stage: register %q: set exactly one of NewHandler and NewSource", k.Name)
	}
	if err := checkFields(k.Fields, true); err != nil {
		return fmt.Errorf("stage: register %q: %w", k.Name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.kinds[k.Name]; dup {
		return fmt.Errorf("stage: register %q: kind already registered", k.Name)
	}
	kk := k
	r.kinds[k.Name] = &kk
	return nil
}

func checkFields(fs []Field, top bool) error {
	seen := map[string]bool{}
	for _, f := range fs {
		if f.Name == "" {
			return errors.New("a field has no name")
		}
		if seen[f.Name] {
			return fmt.Errorf("field %q declared twice", f.Name)
		}
		if top && IsCommonField(f.Name) {
			return fmt.Errorf("field %q is common to every stage and cannot be redeclared", f.Name)
		}
		seen[f.Name] = true
		if (f.Type == Object || f.Type == ObjectList) != (len(f.Fields) > 0) {
			return fmt.Errorf("field %q: only object fields have sub-fields, and they must have some", f.Name)
		}
		if err := checkFields(f.Fields, false); err != nil {
			return fmt.Errorf("field %q: %w", f.Name, err)
		}
	}
	return nil
}

// Lookup returns the kind registered under name.
func (r *Registry) Lookup(name string) (*Kind, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.kinds[name]
	return k, ok
}

// Kinds returns every registered kind, sorted by name.
func (r *Registry) Kinds() []*Kind {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ks := make([]*Kind, 0, len(r.kinds))
	for _, k := range r.kinds {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].Name < ks[j].Name })
	return ks
}

// CommonFields returns the keys every stage takes besides its kind's
// fields. The pipeline interprets them; kinds never see them.
func CommonFields() []Field {
	return []Field{
		{Name: "kind", Type: String, Required: true, Doc: "the stage kind (see the kinds below)"},
		{Name: "next", Type: String, Ref: true, Doc: "the stage that receives this stage's events; none: the end of the pipeline"},
		{Name: "inline", Type: Bool, Default: "false", Doc: "no queue or pool: run inside the upstream stage's workers (operator chaining)"},
		{Name: "workers", Type: Int, Doc: "goroutines in the pool (default: concurrency, at least 1)"},
		{Name: "concurrency", Type: Int, Doc: "workers running at once, the port's limit (default: GOMAXPROCS)"},
		{Name: "queue", Type: Object, Doc: "the stage's port", Fields: []Field{
			{Name: "capacity", Type: Int, Default: "1024", Doc: "events queued at most"},
			{Name: "overflow", Type: String, Default: "block", Doc: "block: the sender waits (backpressure); reject: the event is refused as busy"},
		}},
		{Name: "batch", Type: Object, Doc: "events one worker takes at once; also written as a plain number (max)", Fields: []Field{
			{Name: "max", Type: Int, Default: "64", Doc: "events per batch at most"},
			{Name: "linger", Type: Duration, Default: "0s", Doc: "how long a worker waits for a batch to fill once it has one event"},
		}},
	}
}

// IsCommonField reports whether name is one of CommonFields.
func IsCommonField(name string) bool {
	switch name {
	case "kind", "next", "inline", "workers", "concurrency", "queue", "batch":
		return true
	}
	return false
}

// Pair is one entry of a StringMap value, in the order written.
type Pair struct{ Key, Value string }

// Config holds a stage's decoded kind-specific configuration. Values have
// the Go type of their FieldType: string, int, bool, int64 (Size),
// time.Duration, []string, []Pair (StringMap), Config (Object), []Config
// (ObjectList). Defaults from the spec are already filled in.
type Config struct {
	values map[string]any
	set    map[string]bool
}

// NewConfig returns a Config holding values; programs that build a
// pipeline without YAML use it. Values must have the Go types listed on
// Config.
func NewConfig(values map[string]any) Config {
	c := Config{values: map[string]any{}, set: map[string]bool{}}
	for k, v := range values {
		c.values[k] = v
		c.set[k] = true
	}
	return c
}

// Set stores v under name, marking it as given (not a default).
func (c *Config) Set(name string, v any) {
	if c.values == nil {
		c.values, c.set = map[string]any{}, map[string]bool{}
	}
	c.values[name] = v
	c.set[name] = true
}

// SetDefault stores v under name unless a value is present.
func (c *Config) SetDefault(name string, v any) {
	if c.values == nil {
		c.values, c.set = map[string]any{}, map[string]bool{}
	}
	if _, ok := c.values[name]; !ok {
		c.values[name] = v
	}
}

// Has reports whether the configuration gave name explicitly.
func (c Config) Has(name string) bool { return c.set[name] }

// Value returns the raw value under name.
func (c Config) Value(name string) (any, bool) {
	v, ok := c.values[name]
	return v, ok
}

// Names returns the names holding values, sorted.
func (c Config) Names() []string {
	ns := make([]string, 0, len(c.values))
	for n := range c.values {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// String returns the string under name, or "".
func (c Config) String(name string) string { v, _ := c.values[name].(string); return v }

// Int returns the integer under name, or 0.
func (c Config) Int(name string) int { v, _ := c.values[name].(int); return v }

// Bool returns the boolean under name, or false.
func (c Config) Bool(name string) bool { v, _ := c.values[name].(bool); return v }

// Size returns the byte size under name, or 0.
func (c Config) Size(name string) int64 { v, _ := c.values[name].(int64); return v }

// Duration returns the duration under name, or 0.
func (c Config) Duration(name string) time.Duration {
	v, _ := c.values[name].(time.Duration)
	return v
}

// Strings returns the list of strings under name.
func (c Config) Strings(name string) []string { v, _ := c.values[name].([]string); return v }

// Pairs returns the string map under name in the order written.
func (c Config) Pairs(name string) []Pair { v, _ := c.values[name].([]Pair); return v }

// Object returns the object under name.
func (c Config) Object(name string) Config { v, _ := c.values[name].(Config); return v }

// Objects returns the list of objects under name.
func (c Config) Objects(name string) []Config { v, _ := c.values[name].([]Config); return v }

// FieldError is an error about one field of a stage's configuration. A
// constructor returns it so that the loader can point at the field's line
// and column.
type FieldError struct {
	Field string // dotted path from the stage, e.g. "batch.max" or "routes.1.if"
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ParseSize parses a byte size: a plain number of bytes, or a number with
// one of the units B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers
// of 1024); case-insensitive for the letters, no fractional numbers.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("bad size %q: want a number of bytes such as 65536 or 64KiB", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q: %w", s, err)
	}
	mult := int64(1)
	switch strings.ToLower(strings.TrimSpace(t[i:])) {
	case "", "b":
	case "kb", "k":
		mult = 1000
	case "mb", "m":
		mult = 1000 * 1000
	case "gb", "g":
		mult = 1000 * 1000 * 1000
	case "kib":
		mult = 1 << 10
	case "mib":
		mult = 1 << 20
	case "gib":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("bad size %q: unknown unit %q (use B, KB, MB, GB, KiB, MiB, GiB)", s, t[i:])
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q: too large", s)
	}
	return n * mult, nil
}
