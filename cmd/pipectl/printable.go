package main

// This file keeps what a server sends from driving the terminal: stats,
// top and scale print text from /stats (an error that may quote a record,
// a stage's name) and from error answers.

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// printable returns s with every control character but the line end
// written as a Go escape (\x1b, \u009b), and each byte that is not UTF-8
// as \xNN: a record quoted in a stage's error could otherwise clear the
// screen, move the cursor or set the title of whoever watches.
func printable(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r != '\n' && unicode.IsControl(r) || r == utf8.RuneError }) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r != '\n' && unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}
