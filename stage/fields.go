package stage

// This file holds an event's decoded fields: how they are kept, read and
// written.

import (
	"encoding/json"
	"iter"
	"strings"
	"unicode/utf8"
)

// An event's decoded fields are a short list of (name, Value) pairs, not
// a map: a decoder appends the few fields the pipeline reads (see
// Projector) into a list that is recycled with the event, and a sink looks
// its columns up by a linear scan that compares mostly lengths. A record
// then costs no allocation per field, nor a map per event.
//
// A name is a field's path: a decoder that decodes "user.id" alone stores
// it under that name. Field and Value find a name as given first, then
// walk down from its longest stored prefix ("user" holding an object).

type field struct {
	name string
	val  Value
}

// fieldSet is an event's fields and the text they own (SetText). It is
// made on the first Set and stays with the event when the event is
// recycled, emptied, so that a recycled event's record costs no
// allocation for its fields.
type fieldSet struct {
	list  []field
	text  []byte
	first [6]field // the list's first home: one allocation for a light record's fields
	// index finds a name's place in list once the list is long (see
	// indexFrom); nil before, and after a Delete until the next set.
	index map[string]int
}

// indexFrom is the length from which a fieldSet keeps an index of its
// names: a scan of a few fields is cheaper than a map, but each set
// scanning the list made a record of many fields cost their square (80,000
// keys of a 1 MB JSON record took a minute to decode).
const indexFrom = 32

// find returns the place of name in the list, or -1.
func (fs *fieldSet) find(name string) int {
	if fs.index != nil {
		if i, ok := fs.index[name]; ok {
			return i
		}
		return -1
	}
	for i := range fs.list {
		if fs.list[i].name == name {
			return i
		}
	}
	return -1
}

// Sizes over which a fieldSet is not kept with a recycled event, so that
// one huge record does not pin its memory.
const (
	maxKeptFields = 256
	maxKeptText   = 64 << 10
)

func (ev *Event) fieldSet() *fieldSet {
	if ev.fs == nil {
		fs := new(fieldSet)
		fs.list = fs.first[:0]
		ev.fs = fs
	}
	return ev.fs
}

// Field returns the value at path as a Go value (see Value.Interface:
// strings are copies, integers int64, objects map[string]any), or, for
// "$", the payload as a []byte. ok is false when the event has no such
// field.
func (ev *Event) Field(path string) (v any, ok bool) {
	if path == "$" {
		return ev.Payload, true
	}
	val, ok := ev.Value(path)
	if !ok {
		return nil, false
	}
	return val.Interface(), true
}

// Value returns the value at path without copying or allocating: the
// field stored under that name, or the value found by walking down from
// the longest stored prefix of path (a field "user" holding an object
// gives "user.id"; an object or array found below a JSON value is its
// text as sent, a JSON value). "$" is the payload, as a String value. ok
// is false when the event has no such field.
func (ev *Event) Value(path string) (Value, bool) {
	if path == "$" {
		return BytesValue(ev.Payload), true
	}
	fs := ev.fs
	if fs == nil {
		return Value{}, false
	}
	if i := fs.find(path); i >= 0 {
		return fs.list[i].val, true
	}
	for end := strings.LastIndexByte(path, '.'); end > 0; end = strings.LastIndexByte(path[:end], '.') {
		if i := fs.find(path[:end]); i >= 0 {
			return descend(fs.list[i].val, path[end+1:])
		}
	}
	return Value{}, false
}

// descend finds the dotted path rest inside an object value.
func descend(v Value, rest string) (Value, bool) {
	switch v.typ {
	case ValueAny:
	case ValueJSON:
		return descendJSON(v.Bytes(), rest)
	default:
		return Value{}, false
	}
	cur := v.Any()
	for rest != "" {
		m, ok := cur.(map[string]any)
		if !ok {
			return Value{}, false
		}
		var name string
		name, rest = cutPath(rest)
		if cur, ok = m[name]; !ok {
			return Value{}, false
		}
	}
	return ValueOf(cur), true
}

// descendJSON finds the dotted path rest inside JSON text. An object or
// array found there is given as its own text, as sent, which is what a
// decoder that decodes that path alone (process.json's projection) stores:
// a decoded map would be encoded again by whoever stores it, keys sorted,
// <>& escaped and spacing changed, so that the same record stored other
// text when every field was decoded. Text holding invalid UTF-8 is
// decoded and encoded again, with U+FFFD for the bad bytes, as
// process.json stores such a member, so that a sink is never handed
// invalid text. Duplicate keys: the last one wins, as in a decoded map.
func descendJSON(text []byte, rest string) (Value, bool) {
	raw := json.RawMessage(text)
	for rest != "" {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return Value{}, false // not an object
		}
		var name string
		name, rest = cutPath(rest)
		var ok bool
		if raw, ok = m[name]; !ok {
			return Value{}, false
		}
	}
	if len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') {
		if !utf8.Valid(raw) {
			x, err := decodeJSONText(raw)
			if err != nil {
				return Value{}, false
			}
			if raw, err = json.Marshal(x); err != nil {
				return Value{}, false
			}
		}
		return JSONValue(raw), true
	}
	x, err := decodeJSONText(raw)
	if err != nil {
		return Value{}, false
	}
	return ValueOf(x), true
}

// cutPath splits the first name off a dotted path.
func cutPath(path string) (name, rest string) {
	if i := strings.IndexByte(path, '.'); i >= 0 {
		return path[:i], path[i+1:]
	}
	return path, ""
}

// Set sets the field name to v, converted by ValueOf (a string or []byte
// is not copied: it must not change while the event holds it). A field
// already called name is replaced in place; a new one goes last.
func (ev *Event) Set(name string, v any) { ev.SetValue(name, ValueOf(v)) }

// SetValue sets the field name to v; see Set.
func (ev *Event) SetValue(name string, v Value) {
	fs := ev.fieldSet()
	if fs.index == nil && len(fs.list) >= indexFrom {
		fs.index = make(map[string]int, 2*len(fs.list))
		for i := range fs.list {
			fs.index[fs.list[i].name] = i
		}
	}
	if i := fs.find(name); i >= 0 {
		fs.list[i].val = v
		return
	}
	if fs.index != nil {
		fs.index[name] = len(fs.list)
	}
	fs.list = append(fs.list, field{name: name, val: v})
}

// SetText sets the field name to a String holding a copy of text, kept in
// memory the event owns and reuses once it is finished: a decoder that
// had to unescape a value sets it so without allocating per record.
func (ev *Event) SetText(name string, text []byte) {
	fs := ev.fieldSet()
	start := len(fs.text)
	fs.text = append(fs.text, text...)
	ev.SetValue(name, BytesValue(fs.text[start:len(fs.text):len(fs.text)]))
}

// Delete removes the field name, keeping the others in order; it reports
// whether there was one.
func (ev *Event) Delete(name string) bool {
	fs := ev.fs
	if fs == nil {
		return false
	}
	i := fs.find(name)
	if i < 0 {
		return false
	}
	fs.list = append(fs.list[:i], fs.list[i+1:]...)
	fs.list[len(fs.list):cap(fs.list)][0] = field{} // drop the moved-out reference
	fs.index = nil                                  // the places after i moved; the next set rebuilds it
	return true
}

// ResetFields removes every field: a decoder starts an event afresh, and
// the runtime empties an event it recycles. The memory the fields used
// stays with the event for its next fields, unless it is large (a record
// of many fields or much text lets it go).
func (ev *Event) ResetFields() {
	fs := ev.fs
	if fs == nil {
		return
	}
	if cap(fs.list) > maxKeptFields || cap(fs.text) > maxKeptText {
		ev.fs = nil
		return
	}
	// Only the lengths: clearing the entries would write, on the
	// recycling (sink's) core, lines the next record's decoder writes
	// again on its own. Until new fields overwrite them they keep at
	// most what this record's fields referred to alive.
	fs.list, fs.text, fs.index = fs.list[:0], fs.text[:0], nil
}

// NumFields returns how many fields the event has.
func (ev *Event) NumFields() int {
	if ev.fs == nil {
		return 0
	}
	return len(ev.fs.list)
}

// Fields iterates over the event's fields in the order they were first
// set. The event's fields must not be changed during the iteration.
func (ev *Event) Fields() iter.Seq2[string, Value] {
	return func(yield func(string, Value) bool) {
		if ev.fs == nil {
			return
		}
		for _, f := range ev.fs.list {
			if !yield(f.name, f.val) {
				return
			}
		}
	}
}
