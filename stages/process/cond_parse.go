package process

// This file holds the parsing of a condition: the lexer, the
// recursive-descent parser and its syntax errors.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

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
