package process

// This file holds process.json's handler: its config, Handle, and the
// decoding of a record's members into the event's fields.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/stagedserver/seda/stage"
)

// maxDepth bounds nesting in a JSON record, so that a hostile record cannot
// make the decoder recurse without limit.
const maxDepth = 512

// jsonHandler is process.json: it decodes each payload as one JSON object
// into the event's fields and checks that the required paths hold
// non-null values.
type jsonHandler struct {
	require []string
	// proj is what to decode (Project); nil: every top-level member.
	// Set before the stage's workers start, read-only after.
	proj  *projection
	names interner // top-level keys as field names, without a string per record
}

var (
	_ stage.Handler = (*jsonHandler)(nil)
	_ projector     = (*jsonHandler)(nil)
	_ fieldReader   = (*jsonHandler)(nil)
	_ fieldMaker    = (*jsonHandler)(nil)
)

// FieldsMade: process.json's fields are the record's members, whatever
// they are named, so its set is open (see stage.Kind).
func (h *jsonHandler) FieldsMade() ([]string, bool) { return nil, true }

func newJSON(cfg stage.Config, env stage.Env) (stage.Handler, error) {
	req := cfg.Strings("require")
	for i, p := range req {
		if err := checkPath(p); err != nil {
			return nil, &stage.FieldError{Field: "require." + strconv.Itoa(i), Err: err}
		}
	}
	return &jsonHandler{require: append([]string(nil), req...)}, nil
}

// checkPath rejects paths ev.Field could never find: empty ones and ones
// with empty parts ("a..b", ".a").
func checkPath(p string) error {
	if p == "" {
		return errors.New("empty field path")
	}
	if p == "$" {
		return nil
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			if i == start {
				return fmt.Errorf("field path %q has an empty part", p)
			}
			start = i + 1
		}
	}
	return nil
}

func (h *jsonHandler) Handle(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
	var d decoder
	for _, ev := range batch {
		if err := h.decode(&d, ev); err != nil {
			ev.Done(err)
			continue
		}
		if err := h.check(ev); err != nil {
			ev.Done(err)
			continue
		}
		out.Emit(ctx, ev)
	}
	return nil
}

func (h *jsonHandler) check(ev *stage.Event) error {
	for _, p := range h.require {
		v, ok := ev.Value(p)
		if !ok {
			return stage.WithClass(fmt.Errorf("missing field %q", p), stage.ErrInvalid)
		}
		if v.IsNull() {
			return stage.WithClass(fmt.Errorf("field %q is null", p), stage.ErrInvalid)
		}
	}
	return nil
}

// decode decodes ev's payload as one JSON object (surrounding white space
// allowed, nothing else) into ev's fields, replacing what it had. Without
// a projection every top-level member becomes a field: a string (aliasing
// the payload unless it had escapes or invalid UTF-8, which is replaced
// by U+FFFD as encoding/json does), an int64 for an integer that fits,
// else a Number holding the text (so every number round-trips exactly),
// a bool, null, or, for an object or array, its JSON text (Field decodes
// it when asked). With a projection only the wanted paths are kept, each
// under its own name, so that Field finds for each what it would find
// after a full decode (a dotted key that hides a path below a shorter
// wanted one is kept too; see hide). Duplicate keys: the last one wins.
//
// The error is one short line, "invalid json: REASON at offset N" with a
// 0-based byte offset; it never quotes the input beyond one character.
func (h *jsonHandler) decode(d *decoder, ev *stage.Event) error {
	ev.ResetFields()
	d.data, d.pos = ev.Payload, 0
	if pr := h.proj; pr != nil {
		if cap(d.prio) < len(pr.paths) {
			d.prio, d.stored = make([]int, len(pr.paths)), make([]bool, len(pr.paths))
		}
		d.prio, d.stored = d.prio[:len(pr.paths)], d.stored[:len(pr.paths)]
		for i := range d.prio {
			d.prio[i], d.stored[i] = -1, false
		}
		if cap(d.spans) < pr.slots {
			d.spans = make([]int, pr.slots)
		}
		d.spans = d.spans[:pr.slots]
		for i := range d.spans {
			d.spans[i] = -1
		}
	}
	d.skipSpace()
	if d.pos >= len(d.data) {
		return d.errEOF()
	}
	if d.data[d.pos] != '{' {
		return d.errf("expected a JSON object, found %s", d.what())
	}
	if err := d.object(ev, h, nil, 0, 0); err != nil {
		return err
	}
	if h.proj != nil && h.proj.prefixes != nil {
		if err := d.hide(ev, h); err != nil {
			return err
		}
	}
	d.skipSpace()
	if d.pos < len(d.data) {
		return d.errf("unexpected %s after the object", d.what())
	}
	return nil
}

// object decodes the object at pos ('{') at the given depth: the record
// itself (depth 0, node nil), where without a projection every member
// becomes a field and with one the members that give wanted paths are
// decoded; or, under a projection, an object below the top-level key of
// length prio, whose members node names are decoded. Every other member
// is checked and dropped.
func (d *decoder) object(ev *stage.Event, h *jsonHandler, node *pnode, prio, depth int) error {
	if depth >= maxDepth {
		return d.errf("nesting deeper than %d", maxDepth)
	}
	d.pos++ // '{'
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return nil
	}
	for {
		if d.pos >= len(d.data) {
			return d.errEOF()
		}
		if d.data[d.pos] != '"' {
			return d.errf("expected a string key, found %s", d.what())
		}
		key, _, err := d.string()
		if err != nil {
			return err
		}
		d.skipSpace()
		if d.pos >= len(d.data) {
			return d.errEOF()
		}
		if d.data[d.pos] != ':' {
			return d.errf("expected ':' after an object key, found %s", d.what())
		}
		d.pos++
		switch {
		case node != nil:
			err = d.nested(ev, h, node.children[string(key)], prio, depth)
		case h.proj == nil:
			err = d.store(ev, h.names.get(key), depth)
		default:
			err = d.topMember(ev, h, h.proj.entry(key), len(key), depth)
		}
		if err != nil {
			return err
		}
		d.skipSpace()
		if d.pos >= len(d.data) {
			return d.errEOF()
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.skipSpace()
		case '}':
			d.pos++
			return nil
		default:
			return d.errf("expected ',' or '}' in an object, found %s", d.what())
		}
	}
}

// store decodes the value at pos (after white space) of a container at
// depth into the field name.
func (d *decoder) store(ev *stage.Event, name string, depth int) error {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return d.errEOF()
	}
	switch c := d.data[d.pos]; {
	case c == '"':
		s, copied, err := d.string()
		if err != nil {
			return err
		}
		if copied {
			ev.SetText(name, s)
		} else {
			ev.SetValue(name, stage.BytesValue(s))
		}
	case c == '{' || c == '[':
		start := d.pos
		if err := d.skip(depth); err != nil {
			return err
		}
		d.setJSON(ev, name, start)
	case c == '-' || (c >= '0' && c <= '9'):
		start := d.pos
		integral, err := d.number()
		if err != nil {
			return err
		}
		text := d.data[start:d.pos]
		if n, ok := integer(text, integral); ok {
			ev.SetValue(name, stage.IntValue(n))
		} else {
			ev.SetValue(name, stage.NumberValue(text))
		}
	case c == 't':
		if err := d.literal("true"); err != nil {
			return err
		}
		ev.SetValue(name, stage.BoolValue(true))
	case c == 'f':
		if err := d.literal("false"); err != nil {
			return err
		}
		ev.SetValue(name, stage.BoolValue(false))
	case c == 'n':
		if err := d.literal("null"); err != nil {
			return err
		}
		ev.SetValue(name, stage.NullValue())
	default:
		return d.errf("unexpected %s", d.what())
	}
	return nil
}

// integer returns the value of a JSON number's text when it is an
// integer an int64 holds, as stage.Value.AsInt finds it: one written
// without a fraction or an exponent (integral), the number scanner having
// checked the digits. Up to 18 digits it is read here, with no call.
func integer(text []byte, integral bool) (int64, bool) {
	if !integral {
		return 0, false
	}
	digits := text
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) > 18 {
		return stage.NumberValue(text).AsInt()
	}
	var n int64
	for _, c := range digits {
		n = n*10 + int64(c-'0')
	}
	if len(digits) < len(text) {
		n = -n
	}
	return n, true
}

// setJSON stores the object or array data[start:pos], already checked,
// as a JSON value. Its text is kept as sent, aliasing the payload, unless
// a string in it holds invalid UTF-8: then it is decoded and encoded
// again, with U+FFFD for the bad bytes, as decoding it would give.
func (d *decoder) setJSON(ev *stage.Event, name string, start int) {
	text := d.data[start:d.pos]
	if utf8.Valid(text) {
		ev.SetValue(name, stage.JSONValue(text))
		return
	}
	// encoding/json decodes invalid UTF-8 as U+FFFD, as the strings of
	// the record's top level are.
	var v any
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	if dec.Decode(&v) == nil {
		if b, err := json.Marshal(v); err == nil {
			text = b
		}
	}
	ev.SetValue(name, stage.JSONValue(text))
}
