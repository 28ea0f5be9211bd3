package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/stagedserver/seda/stage"
)

// maxDepth bounds nesting in a JSON record, so that a hostile record cannot
// make the decoder recurse without limit.
const maxDepth = 512

// jsonHandler is process.json: it decodes each payload as one JSON object
// into ev.Fields and checks that the required paths hold non-null values.
type jsonHandler struct {
	require []string
}

var _ stage.Handler = (*jsonHandler)(nil)

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
	for _, ev := range batch {
		m, err := decodeJSON(ev.Payload)
		if err != nil {
			ev.Done(err)
			continue
		}
		ev.Fields = m
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
		v, ok := ev.Field(p)
		if !ok {
			return stage.WithClass(fmt.Errorf("missing field %q", p), stage.ErrInvalid)
		}
		if v == nil {
			return stage.WithClass(fmt.Errorf("field %q is null", p), stage.ErrInvalid)
		}
	}
	return nil
}

// decodeJSON decodes data as one JSON object (surrounding white space
// allowed, nothing else). Objects become map[string]any, arrays []any,
// strings string, true/false bool, null nil; an integer that fits in an
// int64 becomes an int64, any other number a json.Number holding its text,
// so every number round-trips exactly. Duplicate keys: the last one wins.
// Invalid UTF-8 in strings is replaced by U+FFFD, as encoding/json does.
//
// The error is one short line, "invalid json: REASON at offset N" with a
// 0-based byte offset; it never quotes the input beyond one character.
func decodeJSON(data []byte) (map[string]any, error) {
	d := decoder{data: data}
	d.skipSpace()
	if d.pos >= len(d.data) {
		return nil, d.errEOF()
	}
	if d.data[d.pos] != '{' {
		return nil, d.errf("expected a JSON object, found %s", d.what())
	}
	// One string conversion for the whole record: keys and plain string
	// values are substrings of it, so they cost no allocation of their own.
	d.str = string(data)
	m, err := d.object(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos < len(d.data) {
		return nil, d.errf("unexpected %s after the object", d.what())
	}
	return m, nil
}

type decoder struct {
	data []byte
	str  string // data as a string
	pos  int
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

func (d *decoder) object(depth int) (map[string]any, error) {
	if depth >= maxDepth {
		return nil, d.errf("nesting deeper than %d", maxDepth)
	}
	d.pos++ // '{'
	m := make(map[string]any, 8)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return m, nil
	}
	for {
		if d.pos >= len(d.data) {
			return nil, d.errEOF()
		}
		if d.data[d.pos] != '"' {
			return nil, d.errf("expected a string key, found %s", d.what())
		}
		k, err := d.string()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errEOF()
		}
		if d.data[d.pos] != ':' {
			return nil, d.errf("expected ':' after an object key, found %s", d.what())
		}
		d.pos++
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errEOF()
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.skipSpace()
		case '}':
			d.pos++
			return m, nil
		default:
			return nil, d.errf("expected ',' or '}' in an object, found %s", d.what())
		}
	}
}

func (d *decoder) array(depth int) ([]any, error) {
	if depth >= maxDepth {
		return nil, d.errf("nesting deeper than %d", maxDepth)
	}
	d.pos++ // '['
	a := []any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return a, nil
	}
	for {
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errEOF()
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return a, nil
		default:
			return nil, d.errf("expected ',' or ']' in an array, found %s", d.what())
		}
	}
}

// value decodes the value at pos (after white space) of a container at the
// given depth.
func (d *decoder) value(depth int) (any, error) {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return nil, d.errEOF()
	}
	switch c := d.data[d.pos]; {
	case c == '"':
		return d.string()
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	default:
		return nil, d.errf("unexpected %s", d.what())
	}
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
func (d *decoder) number() (any, error) {
	start := d.pos
	integral := true
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos >= len(d.data):
		return nil, d.errEOF()
	case d.data[d.pos] == '0':
		d.pos++
	case d.data[d.pos] >= '1' && d.data[d.pos] <= '9':
		d.digits()
	default:
		return nil, d.errf("expected a digit, found %s", d.what())
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		integral = false
		d.pos++
		if d.digits() == 0 {
			if d.pos >= len(d.data) {
				return nil, d.errEOF()
			}
			return nil, d.errf("expected a digit after '.', found %s", d.what())
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
				return nil, d.errEOF()
			}
			return nil, d.errf("expected a digit in the exponent, found %s", d.what())
		}
	}
	text := d.str[start:d.pos]
	if integral && len(text) <= 20 {
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return n, nil
		}
	}
	return json.Number(text), nil
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
// escapes, no control characters and valid UTF-8 is a substring of d.str.
func (d *decoder) string() (string, error) {
	d.pos++ // '"'
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.str[start:d.pos]
			d.pos++
			return s, nil
		case c == '\\' || c >= utf8.RuneSelf:
			return d.slowString(start)
		case c < 0x20:
			return "", d.errf("control character 0x%02x in a string", c)
		}
		d.pos++
	}
	return "", d.errEOF()
}

// slowString finishes a string that has escapes or non-ASCII bytes; the
// plain prefix data[start:pos] has been scanned already.
func (d *decoder) slowString(start int) (string, error) {
	b := make([]byte, 0, d.pos-start+16)
	b = append(b, d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return string(b), nil
		case c < 0x20:
			return "", d.errf("control character 0x%02x in a string", c)
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
				return "", d.errEOF()
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
					return "", err
				}
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
						save := d.pos
						d.pos += 2
						if r2, err = d.hex4(); err != nil {
							return "", err
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
				return "", d.errf("invalid escape %s in a string", d.what())
			}
		}
	}
	return "", d.errEOF()
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
