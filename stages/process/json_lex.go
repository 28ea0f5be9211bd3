package process

// This file holds the JSON lexer: the decoder's state and errors, and
// the scanning and checking of strings, numbers, literals and skipped
// values.

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/stagedserver/seda/stage"
)

type decoder struct {
	data []byte
	pos  int
	buf  []byte // scratch for unescaping a string
	// Under a projection, per wanted path: the length of the top-level key
	// that claimed it (-1: none yet), and whether a field is set for it.
	prio   []int
	stored []bool
	// spans holds, by topEntry.slot, where the value of the key's last
	// occurrence starts (-1: not seen), for hide.
	spans []int
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
	// Inlined: most places where white space may be have none, and a
	// byte over ' ' is none of it.
	if d.pos < len(d.data) && d.data[d.pos] > ' ' {
		return
	}
	d.spaces()
}

func (d *decoder) spaces() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
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
