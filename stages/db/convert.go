package db

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
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

// appendValue appends the text form of v, as PostgreSQL reads it for a
// column of kind k, to dst. Values PostgreSQL would refuse for a numeric
// or boolean column are refused here, so that the event is nacked without
// a round trip. A []byte is the raw record ($): JSON already, or text.
func appendValue(dst []byte, v any, k valueKind) ([]byte, error) {
	switch k {
	case kindInt:
		return appendInt(dst, v)
	case kindFloat:
		return appendFloat(dst, v)
	case kindBool:
		return appendBool(dst, v)
	case kindJSON:
		switch x := v.(type) {
		case []byte:
			return append(dst, x...), nil
		case json.RawMessage:
			return append(dst, x...), nil
		case json.Number:
			return append(dst, x...), nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return dst, fmt.Errorf("cannot encode %T as JSON: %w", v, err)
		}
		return append(dst, b...), nil
	}
	switch x := v.(type) {
	case string:
		return append(dst, x...), nil
	case []byte:
		return append(dst, x...), nil
	case json.RawMessage:
		return append(dst, x...), nil
	case json.Number:
		return append(dst, x...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case float64:
		return appendFloat64(dst, x), nil
	case float32:
		return appendFloat64(dst, float64(x)), nil
	case time.Time:
		return x.AppendFormat(dst, time.RFC3339Nano), nil
	case map[string]any, []any:
		b, err := json.Marshal(x)
		if err != nil {
			return dst, fmt.Errorf("cannot encode %T as JSON: %w", v, err)
		}
		return append(dst, b...), nil
	}
	if i, ok := asInt(v); ok {
		return strconv.AppendInt(dst, i, 10), nil
	}
	if u, ok := v.(uint64); ok {
		return strconv.AppendUint(dst, u, 10), nil
	}
	return fmt.Append(dst, v), nil
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint:
		return int64(x), x <= math.MaxInt64
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), x <= math.MaxInt64
	}
	return 0, false
}

func refuse(v any, k valueKind) error {
	s := fmt.Sprint(v)
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return fmt.Errorf("%T %q is not %s", v, s, kindNames[k])
}

func appendInt(dst []byte, v any) ([]byte, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = strings.TrimSpace(x)
	case []byte:
		s = strings.TrimSpace(string(x))
	case float64:
		if x != math.Trunc(x) || math.Abs(x) >= 1<<63 {
			return dst, refuse(v, kindInt)
		}
		return strconv.AppendInt(dst, int64(x), 10), nil
	case float32:
		return appendInt(dst, float64(x))
	default:
		if i, ok := asInt(v); ok {
			return strconv.AppendInt(dst, i, 10), nil
		}
		return dst, refuse(v, kindInt)
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return strconv.AppendInt(dst, i, 10), nil
	}
	// 1e3 or 12.0 from a JSON number: an integer all the same.
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
		return strconv.AppendInt(dst, int64(f), 10), nil
	}
	return dst, refuse(v, kindInt)
}

func appendFloat(dst []byte, v any) ([]byte, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		return append(dst, x...), nil
	case float64:
		return appendFloat64(dst, x), nil
	case float32:
		return appendFloat64(dst, float64(x)), nil
	case string:
		s = strings.TrimSpace(x)
	case []byte:
		s = strings.TrimSpace(string(x))
	default:
		if i, ok := asInt(v); ok {
			return strconv.AppendInt(dst, i, 10), nil
		}
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

func appendBool(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case bool:
		if x {
			return append(dst, 't'), nil
		}
		return append(dst, 'f'), nil
	case string:
		// PostgreSQL takes t, true, yes, on, 1 and their opposites, any
		// case, and prefixes of them; let it judge.
		return append(dst, strings.TrimSpace(x)...), nil
	case json.Number:
		switch x {
		case "0", "1":
			return append(dst, x...), nil
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
