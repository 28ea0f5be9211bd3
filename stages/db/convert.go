package db

// This file holds the conversion of field values to a column's text or
// binary COPY form.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/stagedserver/seda/stage"
)

// valueKind is how a column's values are checked and written, from the
// column's type in the table (a domain counts as its base type).
type valueKind int

const (
	kindText  valueKind = iota // any other type: the value's text, PostgreSQL parses it
	kindInt                    // smallint, integer, bigint
	kindFloat                  // real, double precision, numeric
	kindBool                   // boolean
	kindJSON                   // json, jsonb
)

var kindNames = [...]string{"text", "an integer", "a number", "a boolean", "JSON"}

// binKind is how a column is written in COPY's binary format, from its
// base type; binNone means the table is written in the text format.
type binKind int

const (
	binNone  binKind = iota
	binText          // text, varchar, bpchar: the UTF-8 bytes
	binJSON          // json: the text
	binJSONB         // jsonb: version 1, then the text
	binInt2          // smallint: 2 bytes, big-endian
	binInt4          // integer
	binInt8          // bigint
)

func binKindOf(typname string) binKind {
	switch typname {
	case "text", "varchar", "bpchar":
		return binText
	case "json":
		return binJSON
	case "jsonb":
		return binJSONB
	case "int2":
		return binInt2
	case "int4":
		return binInt4
	case "int8":
		return binInt8
	}
	return binNone
}

// appendValue appends the text form of v, as PostgreSQL reads it for a
// column of kind k, to dst; b is the column's binary kind, which tells an
// integer column's size. Values PostgreSQL would refuse for a numeric
// or boolean column are refused here (an integer out of its column's
// range too), so that the event is nacked without a round trip. For a
// JSON column a String is encoded as a JSON string, and the record itself
// ($, a JSON value) is written as it is.
func appendValue(dst []byte, v stage.Value, k valueKind, b binKind) ([]byte, error) {
	switch k {
	case kindInt:
		n, err := toInt(v, b)
		if err != nil {
			return dst, err
		}
		return strconv.AppendInt(dst, n, 10), nil
	case kindFloat:
		return appendFloat(dst, v)
	case kindBool:
		return appendBool(dst, v)
	case kindJSON:
		switch v.Type() {
		case stage.ValueNumber, stage.ValueJSON, stage.ValueInt, stage.ValueBool:
			return v.AppendText(dst), nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return dst, fmt.Errorf("cannot encode %s as JSON: %w", v.Type(), err)
		}
		return append(dst, b...), nil
	}
	switch v.Type() {
	case stage.ValueFloat:
		return appendFloat64(dst, v.Float()), nil
	case stage.ValueAny:
		switch x := v.Any().(type) {
		case time.Time:
			return x.AppendFormat(dst, time.RFC3339Nano), nil
		case uint64:
			return strconv.AppendUint(dst, x, 10), nil
		case map[string]any, []any:
			b, err := json.Marshal(x)
			if err != nil {
				return dst, fmt.Errorf("cannot encode %T as JSON: %w", x, err)
			}
			return append(dst, b...), nil
		}
	}
	return v.AppendText(dst), nil
}

// text views a value's text as a string for the length of a parse.
func text(v stage.Value) string {
	b := v.Bytes()
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func refuse(v stage.Value, k valueKind) error {
	s := v.String()
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return fmt.Errorf("%s %q is not %s", typeName(v), s, kindNames[k])
}

// typeName names a value's type in a refusal as Go would: string,
// int64, bool, json.Number, map[string]interface {}...
func typeName(v stage.Value) string {
	switch v.Type() {
	case stage.ValueString:
		return "string"
	case stage.ValueInt:
		return "int64"
	case stage.ValueFloat:
		return "float64"
	case stage.ValueBool:
		return "bool"
	case stage.ValueNumber:
		return "json.Number"
	case stage.ValueJSON:
		return "JSON"
	}
	return fmt.Sprintf("%T", v.Any())
}

// toInt converts v for an integer column of binary kind b (binInt2,
// binInt4; any other is taken for bigint): an integer, a float or text
// holding an integer (a JSON number written 1e3 or 12.0 counts), as
// stage.Value.AsInt coerces it, within the column's range. The refusal
// of one out of range names the column's type, as PostgreSQL's does.
func toInt(v stage.Value, b binKind) (int64, error) {
	n, ok := v.AsInt()
	switch {
	case ok && b == binInt2 && (n < math.MinInt16 || n > math.MaxInt16),
		ok && b == binInt4 && (n < math.MinInt32 || n > math.MaxInt32):
		return 0, fmt.Errorf("%d is out of range for %s", n, intType(b))
	case ok:
		return n, nil
	case beyondInt64(v):
		s := v.String()
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return 0, fmt.Errorf("%s %q is out of range for %s", typeName(v), s, intType(b))
	}
	return 0, refuse(v, kindInt)
}

// intType names the integer type of binary kind b as PostgreSQL does.
func intType(b binKind) string {
	switch b {
	case binInt2:
		return "smallint"
	case binInt4:
		return "integer"
	}
	return "bigint"
}

// beyondInt64 reports whether v, which AsInt did not take, is an integer
// all the same, one too large for an int64 and so for every integer
// column (stage.Value.Integral: 9223372036854775808, 1e19, a uint64, an
// integral float). Refused as "not an integer", 9223372036854775808
// looked like a syntax error, and so did 1e19.
func beyondInt64(v stage.Value) bool { return v.Integral() }

func appendFloat(dst []byte, v stage.Value) ([]byte, error) {
	var s string
	switch v.Type() {
	case stage.ValueNumber:
		return append(dst, v.Bytes()...), nil
	case stage.ValueFloat:
		return appendFloat64(dst, v.Float()), nil
	case stage.ValueInt:
		return strconv.AppendInt(dst, v.Int(), 10), nil
	case stage.ValueString, stage.ValueJSON:
		s = strings.TrimSpace(text(v))
	case stage.ValueAny:
		if u, ok := v.Any().(uint64); ok {
			return strconv.AppendUint(dst, u, 10), nil
		}
		return dst, refuse(v, kindFloat)
	default:
		return dst, refuse(v, kindFloat)
	}
	// Out of float64's range is fine for numeric: only syntax is checked.
	if _, err := strconv.ParseFloat(s, 64); err != nil && !errors.Is(err, strconv.ErrRange) {
		return dst, refuse(v, kindFloat)
	}
	return append(dst, s...), nil
}

func appendFloat64(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

func appendBool(dst []byte, v stage.Value) ([]byte, error) {
	switch v.Type() {
	case stage.ValueBool:
		if v.Bool() {
			return append(dst, 't'), nil
		}
		return append(dst, 'f'), nil
	case stage.ValueString:
		// PostgreSQL takes t, true, yes, on, 1 and their opposites, any
		// case, and prefixes of them; let it judge.
		return append(dst, strings.TrimSpace(text(v))...), nil
	case stage.ValueNumber:
		switch text(v) {
		case "0", "1":
			return append(dst, v.Bytes()...), nil
		}
	case stage.ValueInt:
		// process.json gives a JSON integer as an Int, not as a Number:
		// 0 and 1 are false and true in either form, as PostgreSQL
		// reads them.
		switch v.Int() {
		case 0:
			return append(dst, 'f'), nil
		case 1:
			return append(dst, 't'), nil
		}
	}
	return dst, refuse(v, kindBool)
}

// appendCopy appends raw to dst escaped for COPY's text format.
func appendCopy(dst, raw []byte) []byte {
	start := 0
	for i, c := range raw {
		var esc byte
		switch c {
		case '\\':
			esc = '\\'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		case '\t':
			esc = 't'
		default:
			continue
		}
		dst = append(dst, raw[start:i]...)
		dst = append(dst, '\\', esc)
		start = i + 1
	}
	return append(dst, raw[start:]...)
}

// The frame of COPY's binary format: a signature, flags and an empty
// header extension before the rows, and a field count of -1 after them.
var (
	binaryHeader  = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	binaryTrailer = []byte{0xff, 0xff}
)

// appendBinary appends v as one field of COPY's binary format (its length,
// then its bytes) for a column of binary kind b and value kind k: text as
// it is (the record itself too, with no escaping), an integer in 2, 4 or
// 8 bytes after checking that it fits. scratch is for values whose text
// form has to be made first.
func appendBinary(dst, scratch []byte, v stage.Value, b binKind, k valueKind) (out, sc []byte, err error) {
	switch b {
	case binInt2, binInt4, binInt8:
		n, err := toInt(v, b)
		if err != nil {
			return dst, scratch, err
		}
		switch b {
		case binInt2:
			return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint32(dst, 2), uint16(n)), scratch, nil
		case binInt4:
			return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(dst, 4), uint32(n)), scratch, nil
		}
		return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(dst, 8), uint64(n)), scratch, nil
	}
	raw := v.Bytes()
	if v.Type() == stage.ValueString && k == kindJSON || raw == nil {
		if scratch, err = appendValue(scratch[:0], v, k, b); err != nil {
			return dst, scratch, err
		}
		raw = scratch
	}
	n := len(raw)
	if b == binJSONB {
		n++
	}
	if n > math.MaxInt32 {
		return dst, scratch, fmt.Errorf("value of %d bytes is too large for a field", n)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	if b == binJSONB {
		dst = append(dst, 1) // jsonb's binary version
	}
	return append(dst, raw...), scratch, nil
}
