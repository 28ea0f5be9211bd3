package stage

// This file holds Value, one field's value without boxing, and its
// conversions.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// ValueType is the type of a field's value.
type ValueType uint8

const (
	ValueNull   ValueType = iota // JSON null, or nil
	ValueString                  // text
	ValueInt                     // a signed 64-bit integer
	ValueFloat                   // a float64
	ValueBool                    // true or false
	ValueNumber                  // a JSON number that is not an int64, kept as its text (json.Number)
	ValueJSON                    // a JSON object or array, kept as its text
	ValueAny                     // any other Go value (a map, a slice, a time.Time...)
)

var valueTypeNames = [...]string{"null", "string", "int", "float", "bool", "number", "json", "any"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return "ValueType(" + strconv.Itoa(int(t)) + ")"
}

// Value is one field's value: a small typed union that holds text, a
// number or a boolean without boxing them in an interface, so that a
// decoder fills an event's fields without allocating per field.
//
// A Value of type String, Number or JSON may alias the bytes it was made
// from (BytesValue, or a decoder's view into the payload): its Bytes are
// read-only, and valid as long as the event that holds it is owned (until
// Done; then the event's memory may be reused). String returns a copy
// that stays valid. The zero Value is null.
type Value struct {
	// Three words, so that an event's fields are few cache lines: the
	// sink reads them on another core than the decoder wrote them.
	typ ValueType
	// String, Number, JSON: the text's first byte (it may alias mutable
	// memory, so it is never handed out as a string); Any: a *any.
	p unsafe.Pointer
	n uint64 // String, Number, JSON: the text's length; Int, Float (its bits), Bool (0 or 1)
}

// NullValue returns the null value.
func NullValue() Value { return Value{} }

// StringValue returns a string value.
func StringValue(s string) Value { return textValue(ValueString, unsafe.StringData(s), len(s)) }

// BytesValue returns a string value whose text is b, without copying it:
// b must not change while the value is in use.
func BytesValue(b []byte) Value { return textValue(ValueString, unsafe.SliceData(b), len(b)) }

func textValue(t ValueType, p *byte, n int) Value {
	if n == 0 {
		p = nil
	}
	return Value{typ: t, p: unsafe.Pointer(p), n: uint64(n)}
}

// IntValue returns an integer value.
func IntValue(n int64) Value { return Value{typ: ValueInt, n: uint64(n)} }

// FloatValue returns a floating-point value.
func FloatValue(f float64) Value { return Value{typ: ValueFloat, n: math.Float64bits(f)} }

// BoolValue returns a boolean value.
func BoolValue(b bool) Value {
	v := Value{typ: ValueBool}
	if b {
		v.n = 1
	}
	return v
}

// NumberValue returns a JSON number kept as its text (as json.Number), for
// numbers an int64 cannot hold exactly. text is not copied and must not
// change while the value is in use; it is not checked.
func NumberValue(text []byte) Value {
	return textValue(ValueNumber, unsafe.SliceData(text), len(text))
}

// JSONValue returns a JSON object or array kept as its text, not copied:
// it must not change while the value is in use. It is not checked; Field
// decodes it when asked.
func JSONValue(text []byte) Value { return textValue(ValueJSON, unsafe.SliceData(text), len(text)) }

// ValueOf converts a Go value: string and []byte (aliased, not copied) to
// String; signed and unsigned integers that fit an int64 to Int; float32
// and float64 to Float; bool to Bool; nil to Null; json.Number to Number;
// json.RawMessage to JSON; a Value to itself; anything else (maps, slices,
// time.Time, a uint64 over MaxInt64) to Any.
func ValueOf(v any) Value {
	switch x := v.(type) {
	case nil:
		return Value{}
	case Value:
		return x
	case string:
		return StringValue(x)
	case []byte:
		return BytesValue(x)
	case bool:
		return BoolValue(x)
	case int:
		return IntValue(int64(x))
	case int8:
		return IntValue(int64(x))
	case int16:
		return IntValue(int64(x))
	case int32:
		return IntValue(int64(x))
	case int64:
		return IntValue(x)
	case uint:
		if uint64(x) <= math.MaxInt64 {
			return IntValue(int64(x))
		}
	case uint8:
		return IntValue(int64(x))
	case uint16:
		return IntValue(int64(x))
	case uint32:
		return IntValue(int64(x))
	case uint64:
		if x <= math.MaxInt64 {
			return IntValue(int64(x))
		}
	case float32:
		return FloatValue(float64(x))
	case float64:
		return FloatValue(x)
	case json.Number:
		return textValue(ValueNumber, unsafe.StringData(string(x)), len(x))
	case json.RawMessage:
		return JSONValue(x)
	}
	return Value{typ: ValueAny, p: unsafe.Pointer(&v)}
}

// Type returns the value's type.
func (v Value) Type() ValueType { return v.typ }

// IsNull reports whether the value is null.
func (v Value) IsNull() bool { return v.typ == ValueNull }

// Bytes returns the text of a String, Number or JSON value (nil for other
// types) without copying it: read-only, and valid while the event holding
// the value is owned.
func (v Value) Bytes() []byte {
	switch v.typ {
	case ValueString, ValueNumber, ValueJSON:
		if v.p == nil {
			return []byte{}
		}
		return unsafe.Slice((*byte)(v.p), v.n)
	}
	return nil
}

// str views the text as a string, for use inside this package only.
func (v Value) str() string { return unsafe.String((*byte)(v.p), v.n) }

// Int returns an Int value's integer (0 for other types).
func (v Value) Int() int64 {
	if v.typ != ValueInt {
		return 0
	}
	return int64(v.n)
}

// Float returns a Float value's number, or an Int value's as a float64 (0
// for other types).
func (v Value) Float() float64 {
	switch v.typ {
	case ValueFloat:
		return math.Float64frombits(v.n)
	case ValueInt:
		return float64(int64(v.n))
	}
	return 0
}

// AsInt returns the value as an integer, and whether it is one: an Int;
// a Float whose value is an integer an int64 holds; the text of a String,
// Number or JSON value, spaces around it ignored, that is a decimal
// integer (an optional sign and digits) or a number with an integral
// value (1e3, 12.0). It allocates nothing. This is the one integer
// coercion of the framework: db.postgres's integer columns, process's
// conditions and decoders use it.
func (v Value) AsInt() (int64, bool) {
	switch v.typ {
	case ValueInt:
		return int64(v.n), true
	case ValueFloat:
		return floatInt(math.Float64frombits(v.n))
	case ValueString, ValueNumber, ValueJSON:
		s := strings.TrimSpace(v.str())
		if n, ok := parseDecimal(s); ok {
			return n, true
		}
		return numberInt(s)
	}
	return 0, false
}

// floatInt returns f as an int64 when it is an integer one holds.
func floatInt(f float64) (int64, bool) {
	if f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

// numberInt returns the integer that the text of a decimal number with a
// fraction or an exponent (12.0, 1e3, -4.50e2) stands for, exactly, when
// it is one an int64 holds. A float64 on the way would round:
// 9007199254740993.0 read as 9007199254740992, 1.0000000000000001 as 1.
// Hexadecimal, Inf and NaN are no decimal numbers.
func numberInt(s string) (int64, bool) {
	d, ok := splitDecimal(s)
	if !ok {
		return 0, false
	}
	// The number is the digits of whole and frac, read as one integer D,
	// times 10^scale.
	whole, frac, neg := d.whole, d.frac, d.neg
	total, scale := len(whole)+len(frac), d.exp-len(frac)
	digit := func(k int) byte {
		if k < len(whole) {
			return whole[k]
		}
		return frac[k-len(whole)]
	}
	first := 0
	for first < total && digit(first) == '0' {
		first++
	}
	if first == total {
		return 0, true // all zeros
	}
	end := total // D's digits that stay; a negative scale drops the rest, which must be zeros
	if scale < 0 {
		end = max(total+scale, first)
		for k := end; k < total; k++ {
			if digit(k) != '0' {
				return 0, false
			}
		}
		scale = 0
	}
	if end-first+scale > 19 {
		return 0, false
	}
	var n uint64
	for k := first; k < end; k++ {
		n = n*10 + uint64(digit(k)-'0')
	}
	for range scale {
		n *= 10
	}
	switch {
	case neg && n <= 1<<63:
		return int64(-n), true
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}

// decimal is the text of a decimal number taken apart: its sign, its
// digits before and after the point, and its exponent.
type decimal struct {
	neg         bool
	whole, frac string
	exp         int // capped at ±1<<30: past any number's digits
}

// splitDecimal takes s apart as an optionally signed decimal number,
// digits with an optional fraction and an optional exponent (12, -4.50,
// 1e3, .5, 7.); false when it is none.
func splitDecimal(s string) (decimal, bool) {
	var d decimal
	if s != "" && (s[0] == '-' || s[0] == '+') {
		d.neg, s = s[0] == '-', s[1:]
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	d.whole = s[:i]
	if i < len(s) && s[i] == '.' {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		d.frac, i = s[i+1:j], j
	}
	if d.whole == "" && d.frac == "" {
		return decimal{}, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			eneg, i = s[i] == '-', i+1
		}
		if i == len(s) {
			return decimal{}, false
		}
		for ; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return decimal{}, false
			}
			if d.exp < 1<<30 {
				d.exp = d.exp*10 + int(s[i]-'0')
			}
		}
		if eneg {
			d.exp = -d.exp
		}
	}
	if i != len(s) {
		return decimal{}, false
	}
	return d, true
}

// integral reports whether d's value is an integer: its digits, less
// their trailing zeros, end at or before the units once the exponent has
// moved the point. Nothing is computed, so an exponent of any size costs
// nothing.
func (d decimal) integral() bool {
	zeros := 0 // the trailing zeros of whole and frac read as one run of digits
	for k := len(d.frac) - 1; k >= 0 && d.frac[k] == '0'; k-- {
		zeros++
	}
	if zeros == len(d.frac) {
		for k := len(d.whole) - 1; k >= 0 && d.whole[k] == '0'; k-- {
			zeros++
		}
	}
	if zeros == len(d.whole)+len(d.frac) {
		return true // zero
	}
	return d.exp-len(d.frac)+zeros >= 0
}

// Integral reports whether v is an integer of any size: an int, a
// uint64, an integral float, or the text of a decimal number whose value
// is one (123, 1e19, 12.0, -4.50e2). AsInt returns those an int64 holds;
// Integral tells one too large for an int64 (to be refused as out of
// range) from a value that is no integer at all.
func (v Value) Integral() bool {
	switch v.typ {
	case ValueInt:
		return true
	case ValueFloat:
		f := math.Float64frombits(v.n)
		return f == math.Trunc(f) && !math.IsInf(f, 0)
	case ValueAny:
		_, ok := v.Any().(uint64)
		return ok
	case ValueString, ValueNumber, ValueJSON:
		d, ok := splitDecimal(strings.TrimSpace(v.str()))
		return ok && d.integral()
	}
	return false
}

// parseDecimal parses an optionally signed decimal integer without
// allocating (strconv.ParseInt allocates its error).
func parseDecimal(s string) (int64, bool) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	switch {
	case neg && n <= 1<<63:
		return int64(-n), true
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}

// Bool returns a Bool value's boolean (false for other types).
func (v Value) Bool() bool { return v.typ == ValueBool && v.n != 0 }

// String returns the value as text, a copy that stays valid: a String's
// text, a number in decimal, true or false, null, the JSON text of a
// Number or JSON value, and fmt's %v of an Any.
func (v Value) String() string {
	switch v.typ {
	case ValueString, ValueNumber, ValueJSON:
		return string(v.Bytes())
	}
	return string(v.AppendText(nil))
}

// AppendText appends the value as text to dst, as String returns it,
// without allocating for the types other than Any.
func (v Value) AppendText(dst []byte) []byte {
	switch v.typ {
	case ValueNull:
		return append(dst, "null"...)
	case ValueString, ValueNumber, ValueJSON:
		return append(dst, v.str()...)
	case ValueInt:
		return strconv.AppendInt(dst, int64(v.n), 10)
	case ValueFloat:
		return strconv.AppendFloat(dst, math.Float64frombits(v.n), 'g', -1, 64)
	case ValueBool:
		return strconv.AppendBool(dst, v.n != 0)
	}
	x := v.Any()
	if t, ok := x.(time.Time); ok {
		return t.AppendFormat(dst, time.RFC3339Nano)
	}
	return fmt.Append(dst, x)
}

// MarshalJSON encodes the value as JSON (json.Marshaler): a String as a
// JSON string, a number or boolean as itself, a Number or JSON value as
// its text, null, and an Any value as encoding/json encodes it. A Float
// that JSON cannot hold (NaN, ±Inf) is an error, as with encoding/json.
func (v Value) MarshalJSON() ([]byte, error) {
	switch v.typ {
	case ValueNull:
		return []byte("null"), nil
	case ValueString:
		return json.Marshal(v.str())
	case ValueInt, ValueBool:
		return v.AppendText(nil), nil
	case ValueFloat:
		return json.Marshal(math.Float64frombits(v.n))
	case ValueNumber, ValueJSON:
		return []byte(v.str()), nil
	}
	return json.Marshal(v.Any())
}

// Any returns an Any value's Go value (nil for other types).
func (v Value) Any() any {
	if v.typ != ValueAny {
		return nil
	}
	return *(*any)(v.p)
}

// Interface returns the value as the Go value Event.Field gives: a string
// (a copy), an int64, a float64, a bool, nil, a json.Number, the decoded
// JSON of a JSON value (map[string]any or []any, integers as int64, other
// numbers as json.Number; nil if the text is not valid JSON), or an Any
// value's Go value.
func (v Value) Interface() any {
	switch v.typ {
	case ValueString:
		return string(v.Bytes())
	case ValueInt:
		return int64(v.n)
	case ValueFloat:
		return math.Float64frombits(v.n)
	case ValueBool:
		return v.n != 0
	case ValueNumber:
		return json.Number(string(v.Bytes()))
	case ValueJSON:
		x, _ := decodeJSONText(v.Bytes())
		return x
	case ValueAny:
		return v.Any()
	}
	return nil
}

// decodeJSONText decodes JSON text the way process.json decodes a
// record's values: integers that fit an int64 as int64, other numbers as
// json.Number.
func decodeJSONText(text []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(text))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return nil, err
	}
	return intNumbers(x), nil
}

func intNumbers(x any) any {
	switch t := x.(type) {
	case json.Number:
		if n, ok := parseDecimal(string(t)); ok { // integers as written only: 1e3 stays a number
			return n
		}
	case map[string]any:
		for k, e := range t {
			t[k] = intNumbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = intNumbers(e)
		}
	}
	return x
}
