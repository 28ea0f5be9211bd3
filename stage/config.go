package stage

// This file holds Config, a kind's decoded configuration, and Bind, which
// checks it against the spec.

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config holds a stage's decoded kind-specific configuration. Values have
// the Go type of their FieldType: string, int, bool, int64 (Size),
// time.Duration, []string, [][2]string (StringMap: key and value, in the order written), Config (Object), []Config
// (ObjectList).
//
// A Config a constructor receives is bound to its kind's spec (the loader
// and pipeline.New bind it, see Bind): every value was checked and the
// defaults are filled in. Its getters then panic when asked for a name the
// spec does not declare or as the wrong type. That is a bug in the kind,
// not bad input, and the pipeline reports it as the stage's error; a
// getter never quietly returns zero for a typo.
type Config struct {
	spec   []Field // the fields the values follow; nil until bound
	values map[string]any
	set    map[string]bool
}

// NewConfig returns an unbound Config holding values; programs that build
// a pipeline without YAML use it, and pipeline.New binds it to the kind's
// spec. Values must have the Go types listed on Config.
func NewConfig(values map[string]any) Config {
	c := Config{values: map[string]any{}, set: map[string]bool{}}
	for k, v := range values {
		c.values[k] = v
		c.set[k] = true
	}
	return c
}

// Bind checks c against fields and returns it bound to them, with the
// defaults of absent fields filled in (an absent object gets its
// sub-fields' defaults). It reports every value of an unknown name or of
// the wrong Go type, every value its field's Enum or Range refuses, and
// every missing required field, each as a *FieldError naming the field's
// dotted path, joined with errors.Join.
func Bind(fields []Field, c Config) (Config, error) {
	var errs []error
	out := bind(fields, c, "", &errs)
	return out, errors.Join(errs...)
}

func bind(fields []Field, c Config, path string, errs *[]error) Config {
	out := Config{spec: fields, values: map[string]any{}, set: map[string]bool{}}
	fail := func(name string, err error) {
		*errs = append(*errs, &FieldError{Field: join(path, name), Err: err})
	}
	for _, name := range c.Names() {
		v := c.values[name]
		f := findField(fields, name)
		if f == nil {
			fail(name, fmt.Errorf("unknown key; the keys are %s", fieldList(fields)))
			continue
		}
		if !f.Type.holds(v) {
			fail(name, fmt.Errorf("want a %s (Go %s), got %T", f.Type, f.Type.goType(), v))
			continue
		}
		switch x := v.(type) {
		case Config:
			v = bind(f.Fields, x, join(path, name), errs)
		case []Config:
			items := make([]Config, len(x))
			for i, it := range x {
				items[i] = bind(f.Fields, it, join(path, name+"."+strconv.Itoa(i)), errs)
			}
			v = items
		default:
			if err := f.Check(v); err != nil {
				fail(name, err)
				continue
			}
		}
		out.values[name] = v
		out.set[name] = c.set[name]
	}
	for i := range fields {
		f := &fields[i]
		if _, ok := out.values[f.Name]; ok {
			continue
		}
		switch {
		case f.Required:
			fail(f.Name, errors.New("required"))
		case f.Default != nil:
			out.values[f.Name] = f.Default
		case f.Type == Object:
			out.values[f.Name] = bind(f.Fields, Config{}, join(path, f.Name), errs)
		}
	}
	return out
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func findField(fs []Field, name string) *Field {
	for i := range fs {
		if fs[i].Name == name {
			return &fs[i]
		}
	}
	return nil
}

func fieldList(fs []Field) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// Fields returns the spec c is bound to, or nil.
func (c Config) Fields() []Field { return c.spec }

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

// Has reports whether the configuration gave name explicitly (not a
// default). Like the getters it panics on a name a bound spec lacks.
func (c Config) Has(name string) bool {
	c.lookup(name, -1)
	return c.set[name]
}

// Value returns the raw value under name and whether there is one. Like
// the getters it panics on a name a bound spec lacks.
func (c Config) Value(name string) (any, bool) {
	return c.lookup(name, -1)
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

// lookup returns the value under name, panicking on a name the spec does
// not declare or, when t >= 0, one declared with another type. An unbound
// Config has no spec to tell a typo from an absent optional field, so
// there only a present value will do.
func (c Config) lookup(name string, t FieldType) (any, bool) {
	v, ok := c.values[name]
	if c.spec != nil {
		f := findField(c.spec, name)
		if f == nil {
			panic(fmt.Errorf("stage: config has no field %q (the spec declares %s)", name, fieldList(c.spec)))
		}
		if t >= 0 && f.Type != t {
			panic(fmt.Errorf("stage: field %q is a %s, read as a %s", name, f.Type, t))
		}
	} else if !ok && t >= 0 {
		panic(fmt.Errorf("stage: config has no value for %q and no spec to say whether it may be absent (bind it with stage.Bind)", name))
	}
	return v, ok
}

// get returns the value under name as a T, or T's zero value when the
// field is declared and absent.
func get[T any](c Config, name string, t FieldType) T {
	v, ok := c.lookup(name, t)
	if !ok {
		var zero T
		return zero
	}
	x, isT := v.(T)
	if !isT {
		panic(fmt.Errorf("stage: field %q holds a %T, read as a %s", name, v, t))
	}
	return x
}

// String returns the string under name ("" when absent with no default).
func (c Config) String(name string) string { return get[string](c, name, String) }

// Int returns the integer under name.
func (c Config) Int(name string) int { return get[int](c, name, Int) }

// Bool returns the boolean under name.
func (c Config) Bool(name string) bool { return get[bool](c, name, Bool) }

// Size returns the byte size under name.
func (c Config) Size(name string) int64 { return get[int64](c, name, Size) }

// Duration returns the duration under name.
func (c Config) Duration(name string) time.Duration {
	return get[time.Duration](c, name, Duration)
}

// Strings returns the list of strings under name.
func (c Config) Strings(name string) []string { return get[[]string](c, name, StringList) }

// Pairs returns the string map under name: its keys and values, in the
// order written.
func (c Config) Pairs(name string) [][2]string { return get[[][2]string](c, name, StringMap) }

// Object returns the object under name.
func (c Config) Object(name string) Config { return get[Config](c, name, Object) }

// Objects returns the list of objects under name.
func (c Config) Objects(name string) []Config { return get[[]Config](c, name, ObjectList) }
