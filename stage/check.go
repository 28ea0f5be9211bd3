package stage

// This file holds the checks of a configuration spec and of values against
// it (Enum, Range), and how values are written.

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Range bounds an Int, Size or Duration field: Min to Max inclusive, in
// the field's unit (a count, bytes, nanoseconds).
type Range struct {
	Min, Max int64
}

// AtLeast returns the range min and up.
func AtLeast(min int64) *Range { return &Range{Min: min, Max: math.MaxInt64} }

// Between returns the range min to max inclusive.
func Between(min, max int64) *Range { return &Range{Min: min, Max: max} }

// CheckSpec checks a list of fields as Registry.Register does: names given
// once, sub-fields only (and always) on objects, Enum only on strings,
// Range only on numbers, sizes and durations, and each default of the
// field's Go type and allowed by its Enum and Range.
func CheckSpec(fs []Field) error {
	seen := map[string]bool{}
	for i := range fs {
		f := &fs[i]
		if f.Name == "" {
			return errors.New("a field has no name")
		}
		if seen[f.Name] {
			return fmt.Errorf("field %q declared twice", f.Name)
		}
		seen[f.Name] = true
		if err := f.checkDecl(); err != nil {
			return fmt.Errorf("field %q: %w", f.Name, err)
		}
	}
	return nil
}

func (f *Field) checkDecl() error {
	isObj := f.Type == Object || f.Type == ObjectList
	if isObj != (len(f.Fields) > 0) {
		return errors.New("only object fields have sub-fields, and they must have some")
	}
	if f.Type < String || f.Type > ObjectList {
		return fmt.Errorf("unknown type %v", f.Type)
	}
	if f.Enum != nil && f.Type != String && f.Type != StringList {
		return fmt.Errorf("an enum applies to strings, not to a %v (Field.Enum)", f.Type)
	}
	if f.Range != nil {
		if f.Type != Int && f.Type != Size && f.Type != Duration {
			return fmt.Errorf("a range applies to ints, sizes and durations, not to a %v (Field.Range)", f.Type)
		}
		if f.Range.Min > f.Range.Max {
			return fmt.Errorf("range min %d is above its max %d", f.Range.Min, f.Range.Max)
		}
	}
	if f.Default != nil {
		if isObj {
			return errors.New("an object has no default of its own: give its sub-fields defaults")
		}
		if f.Required {
			return errors.New("a required field has no default")
		}
		if !f.Type.holds(f.Default) {
			return fmt.Errorf("default %#v has the wrong type for %s field: want a Go %s", f.Default, f.Type.article(), f.Type.goType())
		}
		if err := f.Check(f.Default); err != nil {
			return fmt.Errorf("default %s: %w", f.FormatValue(f.Default), err)
		}
	}
	if isObj {
		if err := CheckSpec(f.Fields); err != nil {
			return err
		}
	}
	return nil
}

// holds reports whether v has the Go type of t (see Config).
func (t FieldType) holds(v any) bool {
	switch v.(type) {
	case string:
		return t == String
	case int:
		return t == Int
	case bool:
		return t == Bool
	case int64:
		return t == Size
	case time.Duration:
		return t == Duration
	case []string:
		return t == StringList
	case [][2]string:
		return t == StringMap
	case Config:
		return t == Object
	case []Config:
		return t == ObjectList
	}
	return false
}

func (t FieldType) goType() string {
	switch t {
	case String:
		return "string"
	case Int:
		return "int"
	case Bool:
		return "bool"
	case Size:
		return "int64 (bytes)"
	case Duration:
		return "time.Duration"
	case StringList:
		return "[]string"
	case StringMap:
		return "[][2]string"
	case Object:
		return "stage.Config"
	case ObjectList:
		return "[]stage.Config"
	}
	return "?"
}

// Check reports whether v, a value of the field's Go type, is one the
// field allows: one of its Enum, within its Range. The error says what is
// allowed, for a message that also says where; of a Secret field it does
// not show the value (a Config built in code is checked by Bind with it,
// the loader's by the loader).
func (f *Field) Check(v any) error {
	err := f.check(v)
	if err != nil && f.Secret {
		return f.secretRefused(v)
	}
	return err
}

// secretRefused says why a secret field's value v was refused without
// showing it: what the field allows is no secret, and without it the
// message would not say how to fix the value.
func (f *Field) secretRefused(v any) error {
	const hide = " (the value is not shown: the field is secret)"
	if x, ok := v.([]string); ok {
		for i, s := range x {
			if f.checkEnum(s) != nil {
				return fmt.Errorf("item %d: want %s%s", i, f.EnumText(), hide)
			}
		}
	}
	switch {
	case f.EnumText() != "":
		return errors.New("want " + f.EnumText() + hide)
	case f.RangeText() != "":
		return errors.New("out of range: want " + f.RangeText() + hide)
	}
	return errors.New("a value the field does not allow" + hide)
}

func (f *Field) check(v any) error {
	switch x := v.(type) {
	case string:
		return f.checkEnum(x)
	case []string:
		for i, s := range x {
			if err := f.checkEnum(s); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
	case int:
		return f.checkRange(int64(x))
	case int64:
		if x < 0 {
			return fmt.Errorf("%s: a size cannot be negative", f.FormatValue(v))
		}
		return f.checkRange(x)
	case time.Duration:
		if x < 0 {
			return fmt.Errorf("%s: a duration cannot be negative", f.FormatValue(v))
		}
		return f.checkRange(int64(x))
	}
	return nil
}

func (f *Field) checkEnum(s string) error {
	if f.Enum == nil {
		return nil
	}
	for _, e := range f.Enum {
		if s == e {
			return nil
		}
	}
	return fmt.Errorf("want %s, got %q", orList(f.Enum), s)
}

func (f *Field) checkRange(n int64) error {
	r := f.Range
	if r == nil || (n >= r.Min && n <= r.Max) {
		return nil
	}
	return fmt.Errorf("%s is out of range: want %s", f.formatNum(n), f.RangeText())
}

// RangeText describes the field's Range for docs and messages ("1 to
// 1024", "at least 16B"), or "" when it has none.
func (f *Field) RangeText() string {
	r := f.Range
	if r == nil {
		return ""
	}
	if r.Max == math.MaxInt64 {
		return "at least " + f.formatNum(r.Min)
	}
	return f.formatNum(r.Min) + " to " + f.formatNum(r.Max)
}

// EnumText describes the field's Enum ("lines, octet-counted or syslog"),
// or "" when it has none.
func (f *Field) EnumText() string {
	if f.Enum == nil {
		return ""
	}
	return orList(f.Enum)
}

func (f *Field) formatNum(n int64) string {
	switch f.Type {
	case Size:
		return FormatSize(n)
	case Duration:
		return FormatDuration(time.Duration(n))
	}
	return strconv.FormatInt(n, 10)
}

// FormatValue writes v, a value of the field's Go type, as it would be
// written in YAML: 64KiB, 2s, [a, b].
func (f *Field) FormatValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return FormatSize(x)
	case time.Duration:
		return FormatDuration(x)
	case []string:
		return "[" + strings.Join(x, ", ") + "]"
	case [][2]string:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = p[0] + ": " + p[1]
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}

// FormatSize writes a byte count the way ParseSize reads it, in the
// largest binary unit that divides it: 65536 is 64KiB, 1000 is 1000.
func FormatSize(n int64) string {
	switch {
	case n != 0 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n != 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n != 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// FormatDuration writes d without time.Duration's trailing zero units:
// 5m rather than 5m0s, 2s, 250ms, 0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// orList joins values for a message: "a", "a or b", "a, b or c".
func orList(vals []string) string {
	switch len(vals) {
	case 0:
		return "nothing"
	case 1:
		return vals[0]
	}
	return strings.Join(vals[:len(vals)-1], ", ") + " or " + vals[len(vals)-1]
}

// article returns the type's name with "a" or "an" before it.
func (t FieldType) article() string {
	if t == Int || t == Object {
		return "an " + t.String()
	}
	return "a " + t.String()
}
