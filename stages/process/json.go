package process

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf16"
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
)

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

// Project is told what the stages after this one read (see stage.Kind):
// with all false, only those paths (and require's) are decoded into
// fields; the rest of each record is still checked, not kept.
func (h *jsonHandler) Project(paths []string, all bool) {
	if all {
		h.proj = nil
		return
	}
	pr := &projection{top: map[string]*topEntry{}}
	for _, p := range append(slices.Clone(paths), h.require...) {
		if p == "$" || checkPath(p) != nil || slices.Contains(pr.paths, p) {
			continue
		}
		id := len(pr.paths)
		pr.paths = append(pr.paths, p)
		// A top-level key may hold p whole ("log.level" as one key) or
		// any prefix of it that ends before a dot.
		for end := 0; end <= len(p); end++ {
			if end < len(p) && p[end] != '.' {
				continue
			}
			e := pr.top[p[:end]]
			if e == nil {
				e = &topEntry{exact: -1}
				pr.top[p[:end]] = e
			}
			if end == len(p) {
				e.exact = id
				continue
			}
			e.ids = append(e.ids, id)
			if e.sub == nil {
				e.sub = &pnode{id: -1}
			}
			e.sub.add(p[end+1:], id)
		}
	}
	if len(pr.top) <= maxFew {
		pr.few = make([]topKey, 0, len(pr.top))
		for k, e := range pr.top {
			pr.few = append(pr.few, topKey{k, e})
		}
	}
	h.proj = pr
}

// FieldsRead: process.json reads only the payload (see stage.Kind).
func (h *jsonHandler) FieldsRead() ([]string, bool) { return nil, false }

// projection is the paths process.json decodes, looked up by the keys of
// a record. The field found for a path is the one a full decode gives
// Event.Value: the top-level key equal to the path, else the value under
// the longest top-level key that is a prefix of it (ending before a dot),
// walked down one key per dot; the last of duplicate keys wins.
type projection struct {
	paths []string             // the wanted paths; a path's id is its index
	top   map[string]*topEntry // by top-level key
	// few holds top's entries when they are few: comparing a key with a
	// handful of strings costs less than hashing it.
	few []topKey
}

type topKey struct {
	key string
	e   *topEntry
}

// maxFew is the most top-level keys looked up by comparison.
const maxFew = 8

// entry returns what the top-level key gives, nil when nothing.
func (pr *projection) entry(key []byte) *topEntry {
	if pr.few == nil {
		return pr.top[string(key)]
	}
	for i := range pr.few {
		if string(key) == pr.few[i].key {
			return pr.few[i].e
		}
	}
	return nil
}

// topEntry is what one top-level key gives: the path equal to it, and the
// paths it is a prefix of, found below it through sub.
type topEntry struct {
	exact int   // the id of the path equal to the key, or -1
	ids   []int // the ids of the paths the key is a proper prefix of
	sub   *pnode
}

// pnode is one key of the paths below a top-level key.
type pnode struct {
	id       int   // the id of the path that ends here, or -1
	ids      []int // the ids of every path at or below this node
	children map[string]*pnode
}

func (n *pnode) add(rest string, id int) {
	for {
		n.ids = append(n.ids, id)
		name, tail, more := strings.Cut(rest, ".")
		c := n.children[name]
		if c == nil {
			c = &pnode{id: -1}
			if n.children == nil {
				n.children = map[string]*pnode{}
			}
			n.children[name] = c
		}
		if !more {
			c.ids = append(c.ids, id)
			c.id = id
			return
		}
		n, rest = c, tail
	}
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
// under its own name. Duplicate keys: the last one wins.
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
	d.skipSpace()
	if d.pos < len(d.data) {
		return d.errf("unexpected %s after the object", d.what())
	}
	return nil
}

type decoder struct {
	data []byte
	pos  int
	buf  []byte // scratch for unescaping a string
	// Under a projection, per wanted path: the length of the top-level key
	// that claimed it (-1: none yet), and whether a field is set for it.
	prio   []int
	stored []bool
}

// jsonError is a decoding failure; its text is the nack reason.
type jsonError struct {
	msg string
	off int
}

func (e *jsonError) Error() string {
	return "invalid json: " + e.msg + " at offset " + strconv.Itoa(e.off)
}

// Unwrap makes a decoding failure of class stage.ErrInvalid.
func (e *jsonError) Unwrap() error { return stage.ErrInvalid }

func (d *decoder) errf(format string, args ...any) error {
	return &jsonError{msg: fmt.Sprintf(format, args...), off: d.pos}
}

func (d *decoder) errEOF() error {
	return &jsonError{msg: "unexpected end of input", off: len(d.data)}
}

// what names the byte at pos for an error message.
func (d *decoder) what() string {
	if d.pos >= len(d.data) {
		return "end of input"
	}
	c := d.data[d.pos]
	if c >= 0x20 && c < 0x7f {
		return "character " + strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
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

// claim gives path id to the top-level key of length prio when no longer
// key has it: what an earlier, shorter (or the same, duplicated) key set
// for it is removed. It reports whether the key now has the path.
func (d *decoder) claim(ev *stage.Event, h *jsonHandler, id, prio int) bool {
	if d.prio[id] > prio {
		return false
	}
	d.prio[id] = prio
	d.unset(ev, h, id)
	return true
}

func (d *decoder) unset(ev *stage.Event, h *jsonHandler, id int) {
	if d.stored[id] {
		ev.Delete(h.proj.paths[id])
		d.stored[id] = false
	}
}

// topMember decodes the value of a top-level member whose key (of length
// prio) gives the paths of e (nil: none).
func (d *decoder) topMember(ev *stage.Event, h *jsonHandler, e *topEntry, prio, depth int) error {
	if e == nil {
		return d.skip(depth)
	}
	exact := e.exact >= 0 && d.claim(ev, h, e.exact, prio)
	below := false
	for _, id := range e.ids {
		below = d.claim(ev, h, id, prio) || below
	}
	d.skipSpace()
	if !below || d.pos >= len(d.data) || d.data[d.pos] != '{' {
		if !exact {
			return d.skip(depth)
		}
		return d.storeID(ev, h, e.exact, depth)
	}
	start := d.pos
	if err := d.object(ev, h, e.sub, prio, depth+1); err != nil {
		return err
	}
	if exact {
		d.setJSON(ev, h.proj.paths[e.exact], start)
		d.stored[e.exact] = true
	}
	return nil
}

// nested decodes the value of a member below a top-level key of length
// prio, which gives the paths of n (nil: none). Of duplicate keys the
// last wins: what an earlier one set is removed.
func (d *decoder) nested(ev *stage.Event, h *jsonHandler, n *pnode, prio, depth int) error {
	if n == nil {
		return d.skip(depth)
	}
	mine := false
	for _, id := range n.ids {
		if d.prio[id] == prio {
			d.unset(ev, h, id)
			mine = true
		}
	}
	d.skipSpace()
	switch {
	case !mine:
		return d.skip(depth)
	case n.children == nil || d.pos >= len(d.data) || d.data[d.pos] != '{':
		if n.id < 0 || d.prio[n.id] != prio {
			return d.skip(depth)
		}
		return d.storeID(ev, h, n.id, depth)
	}
	start := d.pos
	if err := d.object(ev, h, n, prio, depth+1); err != nil {
		return err
	}
	if n.id >= 0 && d.prio[n.id] == prio {
		d.setJSON(ev, h.proj.paths[n.id], start)
		d.stored[n.id] = true
	}
	return nil
}

// storeID decodes the value at pos into the field of wanted path id.
func (d *decoder) storeID(ev *stage.Event, h *jsonHandler, id, depth int) error {
	if err := d.store(ev, h.proj.paths[id], depth); err != nil {
		return err
	}
	d.stored[id] = true
	return nil
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
		if n, ok := stage.NumberValue(text).AsInt(); integral && ok {
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

// skip checks the value at pos (after white space) of a container at
// depth and moves past it without keeping anything.
func (d *decoder) skip(depth int) error {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return d.errEOF()
	}
	switch c := d.data[d.pos]; {
	case c == '"':
		return d.skipString()
	case c == '{' || c == '[':
		if depth+1 >= maxDepth {
			return d.errf("nesting deeper than %d", maxDepth)
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		d.pos++
		d.skipSpace()
		if d.pos < len(d.data) && d.data[d.pos] == end {
			d.pos++
			return nil
		}
		for {
			if c == '{' {
				if d.pos >= len(d.data) {
					return d.errEOF()
				}
				if d.data[d.pos] != '"' {
					return d.errf("expected a string key, found %s", d.what())
				}
				if err := d.skipString(); err != nil {
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
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			d.skipSpace()
			if d.pos >= len(d.data) {
				return d.errEOF()
			}
			switch d.data[d.pos] {
			case ',':
				d.pos++
				if c == '{' {
					d.skipSpace()
				}
				continue
			case end:
				d.pos++
				return nil
			}
			if c == '{' {
				return d.errf("expected ',' or '}' in an object, found %s", d.what())
			}
			return d.errf("expected ',' or ']' in an array, found %s", d.what())
		}
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := d.number()
		return err
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	}
	return d.errf("unexpected %s", d.what())
}

func (d *decoder) literal(word string) error {
	for i := 0; i < len(word); i++ {
		if d.pos >= len(d.data) {
			return d.errEOF()
		}
		if d.data[d.pos] != word[i] {
			return d.errf("unexpected %s in literal %s", d.what(), word)
		}
		d.pos++
	}
	return nil
}

// number scans a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// integral is false when it has a fraction or an exponent.
func (d *decoder) number() (integral bool, err error) {
	integral = true
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos >= len(d.data):
		return false, d.errEOF()
	case d.data[d.pos] == '0':
		d.pos++
	case d.data[d.pos] >= '1' && d.data[d.pos] <= '9':
		d.digits()
	default:
		return false, d.errf("expected a digit, found %s", d.what())
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		integral = false
		d.pos++
		if d.digits() == 0 {
			if d.pos >= len(d.data) {
				return false, d.errEOF()
			}
			return false, d.errf("expected a digit after '.', found %s", d.what())
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		integral = false
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if d.digits() == 0 {
			if d.pos >= len(d.data) {
				return false, d.errEOF()
			}
			return false, d.errf("expected a digit in the exponent, found %s", d.what())
		}
	}
	return integral, nil
}

func (d *decoder) digits() int {
	n := 0
	for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
		d.pos++
		n++
	}
	return n
}

// string decodes the string starting at pos ('"'). A string with no
// escapes and valid UTF-8 is returned as a view of the data (copied
// false); any other is decoded into d.buf (copied true), valid until the
// next string.
func (d *decoder) string() (s []byte, copied bool, err error) {
	d.pos++ // '"'
	start := d.pos
	n, high := stringRun(d.data[d.pos:])
	d.pos += n
	ascii := !high
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			if !ascii && !utf8.Valid(s) {
				d.pos = start
				s, err := d.slowString(start)
				return s, true, err
			}
			d.pos++
			return s, false, nil
		case c == '\\':
			if !ascii {
				d.pos = start // slowString takes the prefix it is given as plain ASCII
			}
			s, err := d.slowString(start)
			return s, true, err
		case c < 0x20:
			return nil, false, d.errf("control character 0x%02x in a string", c)
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.pos++
	}
	return nil, false, d.errEOF()
}

// skipString checks the string starting at pos ('"') and moves past it.
func (d *decoder) skipString() error {
	d.pos++ // '"'
	for d.pos < len(d.data) {
		n, _ := stringRun(d.data[d.pos:])
		if d.pos += n; d.pos >= len(d.data) {
			break
		}
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return nil
		case c < 0x20:
			return d.errf("control character 0x%02x in a string", c)
		case c == '\\':
			d.pos++
			if d.pos >= len(d.data) {
				return d.errEOF()
			}
			switch d.data[d.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos++
			case 'u':
				d.pos++
				if _, err := d.hex4(); err != nil {
					return err
				}
			default:
				return d.errf("invalid escape %s in a string", d.what())
			}
			continue
		}
		d.pos++
	}
	return d.errEOF()
}

// slowString finishes a string that has escapes or non-ASCII bytes; the
// plain prefix data[start:pos] has been scanned already.
func (d *decoder) slowString(start int) ([]byte, error) {
	b := append(d.buf[:0], d.data[start:d.pos]...)
	defer func() { d.buf = b[:0] }()
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return b, nil
		case c < 0x20:
			return nil, d.errf("control character 0x%02x in a string", c)
		case c < utf8.RuneSelf && c != '\\':
			b = append(b, c)
			d.pos++
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			b = utf8.AppendRune(b, r) // RuneError for invalid UTF-8, as encoding/json
			d.pos += size
		default: // backslash
			d.pos++
			if d.pos >= len(d.data) {
				return nil, d.errEOF()
			}
			e := d.data[d.pos]
			d.pos++
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, err := d.hex4()
				if err != nil {
					return nil, err
				}
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
						save := d.pos
						d.pos += 2
						if r2, err = d.hex4(); err != nil {
							return nil, err
						}
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							r = dec
						} else {
							d.pos = save // not a pair: the second escape stands alone
							r = utf8.RuneError
						}
					} else {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				d.pos--
				return nil, d.errf("invalid escape %s in a string", d.what())
			}
		}
	}
	return nil, d.errEOF()
}

func (d *decoder) hex4() (rune, error) {
	var r rune
	for i := 0; i < 4; i++ {
		if d.pos >= len(d.data) {
			return 0, d.errEOF()
		}
		c := d.data[d.pos]
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, d.errf("invalid \\u escape: %s", d.what())
		}
		r = r<<4 | rune(v)
		d.pos++
	}
	return r, nil
}

// interner turns the top-level keys of records into field names: a key
// seen before is looked up without allocating (records of one stream
// share their keys), a new one is added while the table is small.
// Lookups take no lock: the table is replaced, never changed.
type interner struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]string]
}

// maxInterned bounds the table: records with ever new keys (ids as keys)
// then cost a string per key, as they did before.
const maxInterned = 1024

func (in *interner) get(b []byte) string {
	if m := in.m.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s
		}
	}
	s := string(b)
	in.mu.Lock()
	defer in.mu.Unlock()
	old := in.m.Load()
	if old != nil && len(*old) >= maxInterned {
		return s
	}
	m := make(map[string]string, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[s] = s
	in.m.Store(&m)
	return s
}

func lenOf(m *map[string]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// stringRun returns the length of the run of plain string bytes at the
// start of b: bytes that are not '"', '\\' nor a control character (under
// 0x20), eight at a time; high reports whether the run holds a byte of
// 0x80 or more (non-ASCII, to be checked as UTF-8).
func stringRun(b []byte) (n int, high bool) {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	var seen uint64
	for ; n+8 <= len(b); n += 8 {
		w := binary.LittleEndian.Uint64(b[n:])
		q, bs := w^(0x22*ones), w^(0x5c*ones)
		// A zero byte of q or bs, or a byte of w under 0x20, borrows and
		// sets its top bit; a borrow only ever flags a byte above one
		// flagged rightly, so the lowest flag is the run's end.
		stop := ((q - ones) &^ q) | ((bs - ones) &^ bs) | ((w - 0x20*ones) &^ w)
		if stop &= tops; stop != 0 {
			k := bits.TrailingZeros64(stop) / 8
			seen |= w & (1<<(k*8) - 1) // the bytes before the stop
			return n + k, seen&tops != 0
		}
		seen |= w
	}
	for ; n < len(b); n++ {
		c := b[n]
		if c == '"' || c == '\\' || c < 0x20 {
			break
		}
		seen |= uint64(c)
	}
	return n, seen&tops != 0
}
