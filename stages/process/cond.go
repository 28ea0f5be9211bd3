package process

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
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

// SyntaxError is a condition that does not parse; Col counts characters
// from 1 within the condition.
type SyntaxError struct {
	Col int
	Msg string
}

func (e *SyntaxError) Error() string { return "column " + strconv.Itoa(e.Col) + ": " + e.Msg }

// maxNesting bounds parentheses and "not" chains.
const maxNesting = 100

// ParseCondition parses a condition. Regular expressions are compiled
// here, once. The error is a *SyntaxError.
func ParseCondition(src string) (*Condition, error) {
	p := &condParser{src: src}
	p.next()
	if p.tok.kind == tEOF {
		return nil, p.errAt(p.tok, "empty condition")
	}
	n, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.errAt(p.tok, "expected and, or or the end, found "+p.tok.describe())
	}
	return &Condition{src: src, root: n}, nil
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

// number is a numeric value: an exact int64 when it is one, else a float.
type number struct {
	isInt bool
	i     int64
	f     float64
}

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
	x, y := a.float(), b.float()
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	case x == y:
		return 0
	}
	return 2 // NaN: unordered
}

func (a number) float() float64 {
	if a.isInt {
		return float64(a.i)
	}
	return a.f
}

// parseNumber reads a number: exactly, as an int64, when it is an integer
// (stage.Value.AsInt: 12, 1e3, 12.0), else as a float64 (±Inf past its
// range).
func parseNumber(s string) (number, bool) {
	if i, ok := stage.StringValue(s).AsInt(); ok {
		return number{isInt: true, i: i}, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return number{}, false
	}
	return number{f: f}, true
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
			return number{f: float64(x)}, true
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

// The lexer.

type tokKind uint8

const (
	tEOF tokKind = iota
	tWord
	tOp
	tString
	tNumber
	tLParen
	tRParen
	tBad
)

type token struct {
	kind tokKind
	text string // as written
	off  int    // byte offset in the source
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "the end"
	case tString:
		return "a string"
	}
	s := t.text
	if utf8.RuneCountInString(s) > 20 {
		s = string([]rune(s)[:20]) + "…"
	}
	return strconv.Quote(s)
}

type condParser struct {
	src string
	pos int
	tok token
}

func (p *condParser) errAt(t token, msg string) error {
	return &SyntaxError{Col: utf8.RuneCountInString(p.src[:t.off]) + 1, Msg: msg}
}

func isPathStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '$' || c == '@'
}

func isPathChar(c byte) bool {
	return isPathStart(c) || c >= '0' && c <= '9' || c == '.' || c == '-'
}

// next reads the next token into p.tok.
func (p *condParser) next() {
	s := p.src
	for p.pos < len(s) && (s[p.pos] == ' ' || s[p.pos] == '\t' || s[p.pos] == '\n' || s[p.pos] == '\r') {
		p.pos++
	}
	start := p.pos
	tk := func(k tokKind, end int) {
		p.tok = token{kind: k, text: s[start:end], off: start}
		p.pos = end
	}
	if start >= len(s) {
		tk(tEOF, start)
		return
	}
	c := s[start]
	switch {
	case c == '(':
		tk(tLParen, start+1)
	case c == ')':
		tk(tRParen, start+1)
	case c == '=' || c == '!' || c == '<' || c == '>':
		if start+1 < len(s) && s[start+1] == '=' {
			tk(tOp, start+2)
		} else if c == '<' || c == '>' {
			tk(tOp, start+1)
		} else {
			tk(tBad, start+1)
		}
	case c == '"':
		i := start + 1
		for i < len(s) && s[i] != '"' {
			if s[i] == '\\' {
				i++
			}
			i++
		}
		if i >= len(s) {
			tk(tBad, len(s)) // unterminated; the parser says so
			return
		}
		tk(tString, i+1)
	case c == '-' || c >= '0' && c <= '9':
		i := start + 1
		for i < len(s) && (isPathChar(s[i]) || s[i] == '+') {
			i++
		}
		tk(tNumber, i)
	case isPathStart(c):
		i := start + 1
		for i < len(s) && isPathChar(s[i]) {
			i++
		}
		tk(tWord, i)
	default:
		_, size := utf8.DecodeRuneInString(s[start:])
		tk(tBad, start+size)
	}
}

// or := and { "or" and }
func (p *condParser) or(depth int) (*node, error) {
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tWord && p.tok.text == "or" {
		p.next()
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = &node{kind: nOr, l: l, r: r}
	}
	return l, nil
}

// and := unary { "and" unary }
func (p *condParser) and(depth int) (*node, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tWord && p.tok.text == "and" {
		p.next()
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = &node{kind: nAnd, l: l, r: r}
	}
	return l, nil
}

// unary := "not" unary | "(" or ")" | comparison
func (p *condParser) unary(depth int) (*node, error) {
	if depth >= maxNesting {
		return nil, p.errAt(p.tok, fmt.Sprintf("nested more than %d deep", maxNesting))
	}
	t := p.tok
	switch {
	case t.kind == tWord && t.text == "not":
		p.next()
		n, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &node{kind: nNot, l: n}, nil
	case t.kind == tLParen:
		p.next()
		n, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tRParen {
			return nil, p.errAt(p.tok, fmt.Sprintf("expected ) to close the ( at column %d, found %s",
				utf8.RuneCountInString(p.src[:t.off])+1, p.tok.describe()))
		}
		p.next()
		return n, nil
	}
	return p.comparison()
}

// comparison := PATH OP VALUE | PATH "exists"
func (p *condParser) comparison() (*node, error) {
	t := p.tok
	if t.kind != tWord || isKeyword(t.text) {
		return nil, p.errAt(t, "expected a field path, not, or (, found "+t.describe())
	}
	if err := checkPath(t.text); err != nil {
		return nil, p.errAt(t, err.Error())
	}
	n := &node{kind: nCmp, path: t.text}
	p.next()
	opTok := p.tok
	switch {
	case opTok.kind == tOp:
		switch opTok.text {
		case "==":
			n.op = opEq
		case "!=":
			n.op = opNe
		case "<":
			n.op = opLt
		case "<=":
			n.op = opLe
		case ">":
			n.op = opGt
		case ">=":
			n.op = opGe
		}
	case opTok.kind == tWord && opTok.text == "contains":
		n.op = opContains
	case opTok.kind == tWord && opTok.text == "matches":
		n.op = opMatches
	case opTok.kind == tWord && opTok.text == "exists":
		p.next()
		n.op = opExists
		return n, nil
	default:
		return nil, p.errAt(opTok, "expected an operator (==, !=, <, <=, >, >=, contains, matches, exists) after "+t.describe()+", found "+opTok.describe())
	}
	p.next()
	lt := p.tok
	lit, err := p.literal(lt)
	if err != nil {
		return nil, err
	}
	n.lit = lit
	switch n.op {
	case opLt, opLe, opGt, opGe:
		if lit.kind != lString && lit.kind != lNumber {
			return nil, p.errAt(lt, "operator "+opNames[n.op]+" needs a string or a number")
		}
	case opMatches:
		if lit.kind != lString {
			return nil, p.errAt(lt, "matches needs a quoted regular expression")
		}
		re, err := regexp.Compile(lit.s)
		if err != nil {
			return nil, p.errAt(lt, "bad regular expression: "+err.Error())
		}
		n.re = re
	}
	p.next()
	return n, nil
}

func isKeyword(w string) bool {
	switch w {
	case "and", "or", "not", "contains", "matches", "exists", "true", "false", "null":
		return true
	}
	return false
}

func (p *condParser) literal(t token) (literal, error) {
	switch t.kind {
	case tString:
		s, err := strconv.Unquote(t.text)
		if err != nil {
			return literal{}, p.errAt(t, "bad string literal (Go syntax: \\\" \\\\ \\n \\t \\uXXXX)")
		}
		return literal{kind: lString, s: s}, nil
	case tNumber:
		if !validNumber(t.text) {
			return literal{}, p.errAt(t, "bad number "+t.describe())
		}
		num, ok := parseNumber(t.text)
		if !ok {
			return literal{}, p.errAt(t, "bad number "+t.describe())
		}
		return literal{kind: lNumber, s: t.text, num: num}, nil
	case tWord:
		switch t.text {
		case "true", "false":
			return literal{kind: lBool, b: t.text == "true"}, nil
		case "null":
			return literal{kind: lNull}, nil
		}
	case tBad:
		if strings.HasPrefix(t.text, "\"") {
			return literal{}, p.errAt(t, "unterminated string")
		}
	}
	return literal{}, p.errAt(t, "expected a value (a quoted string, a number, true, false or null), found "+t.describe())
}

// validNumber checks the JSON number grammar.
func validNumber(s string) bool {
	d := decoder{data: []byte(s)}
	if len(s) == 0 {
		return false
	}
	if _, err := d.number(); err != nil {
		return false
	}
	return d.pos == len(s)
}
