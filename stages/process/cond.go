package process

// This file holds a parsed condition of process.filter and process.route:
// its nodes, their evaluation against an event, and its canonical text.

import (
	"math"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/stagedserver/seda/stage"
)

// Condition is a parsed condition of process.filter and process.route (see
// the package documentation for the syntax). It is immutable and safe for
// concurrent use.
type Condition struct {
	src  string
	root *node
}

// Match reports whether ev satisfies the condition.
func (c *Condition) Match(ev *stage.Event) bool { return c.root.eval(ev) }

// Paths returns the field paths the condition reads, each once, in the
// order they appear.
func (c *Condition) Paths() []string {
	var ps []string
	var walk func(n *node)
	walk = func(n *node) {
		if n == nil {
			return
		}
		if n.kind == nCmp && !slices.Contains(ps, n.path) {
			ps = append(ps, n.path)
		}
		walk(n.l)
		walk(n.r)
	}
	walk(c.root)
	return ps
}

// String returns the condition in a canonical form: one space between
// tokens, parentheses only where needed. It parses to an equivalent
// condition.
func (c *Condition) String() string {
	var b strings.Builder
	c.root.write(&b, nOr)
	return b.String()
}

type nodeKind uint8

const (
	nAnd nodeKind = iota
	nOr
	nNot
	nCmp
)

type cmpOp uint8

const (
	opEq cmpOp = iota
	opNe
	opLt
	opLe
	opGt
	opGe
	opContains
	opMatches
	opExists
)

var opNames = [...]string{"==", "!=", "<", "<=", ">", ">=", "contains", "matches", "exists"}

type litKind uint8

const (
	lString litKind = iota
	lNumber
	lBool
	lNull
)

// literal is a VALUE of a condition.
type literal struct {
	kind litKind
	s    string // lString: the value; lNumber: the text as written
	num  number // lNumber
	b    bool   // lBool
}

// number is a numeric value: an exact int64 when it is one, an exact
// big integer when it is an integer past int64 (a uint64 id), else a
// float, with the text it was read from when there was one.
type number struct {
	isInt bool
	i     int64
	big   *big.Int // an integer past int64; isInt is false
	f     float64
	// text is the decimal text f was rounded from ("" if none): a
	// comparison with an integer a float64 cannot hold reads it exactly.
	text string
}

// exactFloat bounds the integers a float64 holds exactly: 2^53.
const exactFloat = 1 << 53

func (a number) cmp(b number) int {
	if a.isInt && b.isInt {
		switch {
		case a.i < b.i:
			return -1
		case a.i > b.i:
			return 1
		}
		return 0
	}
	if a.exactAsFloat() && b.exactAsFloat() {
		x, y := a.float(), b.float()
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		case x != y:
			return 2 // NaN: unordered
		}
		// Rounding to float64 keeps the order of distinct values but can
		// make them equal: 3.0000000000000001 is 3 as a float64, and
		// 9007199254740992.5 is 2^53. When both sides are exact values
		// (integers, or numbers read from text) that may differ, the tie
		// is settled exactly below. A float64 with no text stands for
		// itself at float64's precision, so it equals the literal that
		// rounds to it (a computed 0.1 == 0.1).
		if !a.exactValue() || !b.exactValue() || sameValue(a, b) {
			return 0
		}
	}
	// An integer a float64 would round (past 2^53, or past int64), or a
	// tie above: exactly, with the other side's exact value too when it
	// has one, as the float64 nearest a fraction's text may be on the
	// wrong side of that integer (18014398509481985.5 is
	// 18014398509481984).
	if x, ok := a.rat(); ok {
		if y, ok := b.rat(); ok {
			return x.Cmp(y)
		}
	}
	// ±Inf (a text too long to read exactly, or past float64's range).
	x, okx := a.bigFloat()
	y, oky := b.bigFloat()
	if !okx || !oky {
		return 2 // NaN
	}
	return x.Cmp(y)
}

// exactValue reports whether a has a value of its own besides its
// float64: an integer, or the text a float was read from.
func (a number) exactValue() bool { return a.isInt || a.big != nil || a.text != "" }

// sameValue reports, without allocating, that a and b, exact values whose
// float64s are equal, are the same number: their texts are the same, or
// both are zero, or both have at most 15 significant digits and are in
// float64's normal range, where distinct such decimals round to distinct
// float64s. A false is not a difference; the caller compares exactly.
func sameValue(a, b number) bool {
	if a.text != "" && a.text == b.text {
		return true
	}
	da, db := a.sigDigits(), b.sigDigits()
	if da < 0 || db < 0 {
		return false
	}
	if da == 0 || db == 0 {
		return da == db // zero is only equal to zero
	}
	f := math.Abs(a.float())
	return da <= 15 && db <= 15 && f >= 0x1p-1022 && !math.IsInf(f, 0)
}

// sigDigits is the number of significant decimal digits of a's exact
// value (0 for zero), or -1 when a has none of its own.
func (a number) sigDigits() int {
	if a.isInt {
		i := a.i // within ±2^53 here: negating is safe
		if i < 0 {
			i = -i
		}
		for i != 0 && i%10 == 0 {
			i /= 10
		}
		n := 0
		for ; i != 0; i /= 10 {
			n++
		}
		return n
	}
	if a.text == "" {
		return -1
	}
	// Count from the first nonzero digit to the last, before any exponent.
	first, last, pos := -1, -1, 0
	for i := 0; i < len(a.text); i++ {
		c := a.text[i]
		if c == 'e' || c == 'E' {
			break
		}
		if c < '0' || c > '9' {
			continue // a sign or the decimal point
		}
		if c != '0' {
			if first < 0 {
				first = pos
			}
			last = pos
		}
		pos++
	}
	if first < 0 {
		return 0
	}
	return last - first + 1
}

// exactAsFloat reports whether a float64 holds a exactly.
func (a number) exactAsFloat() bool {
	switch {
	case a.big != nil:
		return false
	case a.isInt:
		return -exactFloat <= a.i && a.i <= exactFloat
	}
	return true
}

func (a number) float() float64 {
	if a.isInt {
		return float64(a.i)
	}
	return a.f
}

// bigFloat is a as a big.Float, exactly; false for NaN.
func (a number) bigFloat() (*big.Float, bool) {
	switch {
	case a.big != nil:
		return new(big.Float).SetInt(a.big), true
	case a.isInt:
		return new(big.Float).SetInt64(a.i), true
	case math.IsNaN(a.f):
		return nil, false
	}
	return big.NewFloat(a.f), true
}

// rat is a as a big.Rat, exactly: an integer, the text a float was read
// from (when it is within maxBigText and maxBigExp), or else the float
// itself; false for ±Inf and NaN.
func (a number) rat() (*big.Rat, bool) {
	switch {
	case a.big != nil:
		return new(big.Rat).SetInt(a.big), true
	case a.isInt:
		return new(big.Rat).SetInt64(a.i), true
	case a.text != "":
		if r, ok := exactRat(a.text); ok {
			return r, true
		}
	}
	if math.IsInf(a.f, 0) || math.IsNaN(a.f) {
		return nil, false
	}
	return new(big.Rat).SetFloat64(a.f), true
}

// maxBigExp bounds the exponent of a number read as an exact big
// integer: a far larger one ("1e1000000000") would cost its digits in
// memory and time, and is compared as a float (±Inf).
const maxBigExp = 400

// maxBigText bounds the text of a number read as an exact big integer:
// big.Rat reads n digits in time n², and a field of 64 KiB of digits cost
// 11 ms each time a condition compared it. A longer one is compared as a
// float (±Inf past its range), as a far larger exponent is.
const maxBigText = 2 * maxBigExp

// parseNumber reads a number: exactly, as an int64, when it is an integer
// (stage.Value.AsInt: 12, 1e3, 12.0), and as a big integer when it is one
// past int64; else as a float64 (±Inf past its range).
func parseNumber(s string) (number, bool) {
	if i, ok := stage.StringValue(s).AsInt(); ok {
		return number{isInt: true, i: i}, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return number{}, false
	}
	// An integer past int64 rounds to a float64 at or past ±2^63 (or to
	// ±Inf); only then is the text read as a big integer, which
	// allocates: a fraction such as 0.5 is not.
	if math.Abs(f) >= 1<<63 {
		if b, ok := bigInteger(s); ok {
			return number{big: b, f: f}, true
		}
	}
	return number{f: f, text: s}, true
}

// bigInteger returns the integer the decimal text s stands for, when it
// is one, its text within maxBigText and its exponent within maxBigExp.
func bigInteger(s string) (*big.Int, bool) {
	r, ok := exactRat(s)
	if !ok || !r.IsInt() {
		return nil, false
	}
	return r.Num(), true
}

// exactRat returns the value of the decimal text s, when its text is
// within maxBigText and its exponent within maxBigExp.
func exactRat(s string) (*big.Rat, bool) {
	if len(s) > maxBigText || strings.ContainsAny(s, "xXpPbBoO_") { // decimal only: big.Rat reads prefixes too
		return nil, false
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || e > maxBigExp || e < -maxBigExp {
			return nil, false
		}
	}
	return new(big.Rat).SetString(s)
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// toNumber converts a field value to a number, if it is one.
func toNumber(v stage.Value) (number, bool) {
	switch v.Type() {
	case stage.ValueInt:
		return number{isInt: true, i: v.Int()}, true
	case stage.ValueFloat:
		return number{f: v.Float()}, true
	case stage.ValueNumber:
		return parseNumber(valueString(v))
	case stage.ValueAny:
		if x, ok := v.Any().(uint64); ok { // over MaxInt64: ValueOf keeps it as is
			return number{big: new(big.Int).SetUint64(x), f: float64(x)}, true
		}
	}
	return number{}, false
}

// toString returns a String value's text (the whole record, "$", is one),
// without copying it: it is only compared, never kept.
func toString(v stage.Value) (string, bool) {
	if v.Type() != stage.ValueString {
		return "", false
	}
	return valueString(v), true
}

// valueString views a value's text as a string for the length of a
// comparison.
func valueString(v stage.Value) string {
	b := v.Bytes()
	return unsafe.String(unsafe.SliceData(b), len(b))
}

type node struct {
	kind nodeKind
	l, r *node // nAnd, nOr; l for nNot
	path string
	op   cmpOp
	lit  literal
	re   *regexp.Regexp
}

func (n *node) eval(ev *stage.Event) bool {
	switch n.kind {
	case nAnd:
		return n.l.eval(ev) && n.r.eval(ev)
	case nOr:
		return n.l.eval(ev) || n.r.eval(ev)
	case nNot:
		return !n.l.eval(ev)
	}
	v, _ := ev.Value(n.path) // a missing field is null
	switch n.op {
	case opExists:
		return !v.IsNull()
	case opEq:
		return equal(v, n.lit)
	case opNe:
		return !equal(v, n.lit)
	case opContains:
		if s, ok := toString(v); ok {
			return n.lit.kind == lString && strings.Contains(s, n.lit.s)
		}
		if a, ok := v.Interface().([]any); ok {
			for _, e := range a {
				if equal(stage.ValueOf(e), n.lit) {
					return true
				}
			}
		}
		return false
	case opMatches:
		s, ok := toString(v)
		return ok && n.re.MatchString(s)
	}
	c, ok := order(v, n.lit)
	if !ok {
		return false
	}
	switch n.op {
	case opLt:
		return c < 0
	case opLe:
		return c <= 0
	case opGt:
		return c > 0
	case opGe:
		return c >= 0
	}
	return false
}

// equal compares a field value with a literal: numbers numerically,
// strings exactly, booleans and null by identity; values of different
// types are not equal.
func equal(v stage.Value, lit literal) bool {
	switch lit.kind {
	case lNull:
		return v.IsNull()
	case lBool:
		return v.Type() == stage.ValueBool && v.Bool() == lit.b
	}
	c, ok := order(v, lit)
	return ok && c == 0
}

// order compares a field value with a string or number literal; ok is
// false when they are not of the same type (or a NaN is involved).
func order(v stage.Value, lit literal) (int, bool) {
	switch lit.kind {
	case lString:
		if s, ok := toString(v); ok {
			return strings.Compare(s, lit.s), true
		}
	case lNumber:
		if x, ok := toNumber(v); ok {
			c := x.cmp(lit.num)
			return c, c != 2
		}
	}
	return 0, false
}

// write prints n; an and/or group is parenthesized only where precedence
// needs it (an or inside an and, or under not), so printing never nests
// deeper than the source did.
func (n *node) write(b *strings.Builder, parent nodeKind) {
	switch n.kind {
	case nAnd, nOr:
		paren := n.kind == nOr && parent == nAnd || parent == nNot
		if paren {
			b.WriteByte('(')
		}
		n.l.write(b, n.kind)
		if n.kind == nAnd {
			b.WriteString(" and ")
		} else {
			b.WriteString(" or ")
		}
		n.r.write(b, n.kind)
		if paren {
			b.WriteByte(')')
		}
		return
	case nNot:
		b.WriteString("not ")
		n.l.write(b, nNot)
		return
	}
	b.WriteString(n.path)
	b.WriteByte(' ')
	b.WriteString(opNames[n.op])
	if n.op == opExists {
		return
	}
	b.WriteByte(' ')
	switch n.lit.kind {
	case lString:
		b.WriteString(strconv.Quote(n.lit.s))
	case lNumber:
		b.WriteString(n.lit.s)
	case lBool:
		b.WriteString(strconv.FormatBool(n.lit.b))
	case lNull:
		b.WriteString("null")
	}
}
