// This file finds the line a YAML block error is on: libyaml's parser
// reports only where the enclosing block starts.

package pipeline

import (
	"bytes"
	"fmt"
	"strings"
)

// badIndent looks through the block collection that starts on line start
// (1-based) of data for the line libyaml's parser stopped at: the first
// whose indentation lines up with none of the blocks open at that point,
// or a list entry where a key was due. It returns that line and the
// column of its first character; ok is false when no line is found (the
// caller then points at the block's start, as libyaml does). why says
// what is wrong with the line.
//
// It reads indentation only: comment and blank lines are skipped, and so
// are the lines inside a flow collection ({...} or [...]) that spans
// lines. A list entry "- x" opens two levels: the dash's and its
// content's.
func badIndent(data []byte, start int) (line, col int, why string, ok bool) {
	lines := bytes.Split(data, []byte("\n"))
	if start < 1 || start > len(lines) {
		return 0, 0, "", false
	}
	base := indentOf(lines[start-1])
	open := []int{base}
	open = appendEntry(open, lines[start-1], base)
	prev, prevIndent := strings.TrimSpace(string(lines[start-1])), base
	depth := flowDepth(0, lines[start-1])
	for i := start; i < len(lines); i++ {
		raw := lines[i]
		text := strings.TrimSpace(string(raw))
		if depth > 0 {
			depth = flowDepth(depth, raw)
			continue
		}
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		d := indentOf(raw)
		if d < base {
			return 0, 0, "", false // the block ended; the error is not in it
		}
		if d > open[len(open)-1] {
			open = append(open, d)
		} else {
			for d < open[len(open)-1] {
				open = open[:len(open)-1]
			}
			if d != open[len(open)-1] {
				return i + 1, d + 1, fmt.Sprintf("this line does not line up with the block that starts on line %d", start), true
			}
			// An entry of a list may follow a key that has no value yet
			// ("require:") or another entry at the same level; anywhere
			// else a key was due.
			if strings.HasPrefix(text, "- ") || text == "-" {
				keyOpens := prevIndent == d && strings.HasSuffix(stripComment(prev), ":")
				entry := prevIndent == d && (strings.HasPrefix(prev, "- ") || prev == "-")
				if !keyOpens && !entry {
					return i + 1, d + 1, fmt.Sprintf("a list entry where a key of the block that starts on line %d was due", start), true
				}
			}
		}
		open = appendEntry(open, raw, d)
		prev, prevIndent = text, d
		depth = flowDepth(0, raw)
	}
	return 0, 0, "", false
}

// indentOf counts a line's leading spaces.
func indentOf(b []byte) int {
	n := 0
	for n < len(b) && b[n] == ' ' {
		n++
	}
	return n
}

// appendEntry opens the content level of a list entry "- x" at indent d.
func appendEntry(open []int, raw []byte, d int) []int {
	rest := raw[min(d, len(raw)):]
	if !bytes.HasPrefix(rest, []byte("- ")) {
		return open
	}
	content := d + 1 + indentOf(rest[1:])
	if content > open[len(open)-1] && content < len(raw) {
		open = append(open, content)
	}
	return open
}

// flowDepth adds the flow brackets a line opens and closes, outside
// quotes and comments, to depth.
func flowDepth(depth int, raw []byte) int {
	var quote byte
	for i, c := range raw {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || raw[i-1] == ' '):
			return max(depth, 0)
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		}
	}
	return max(depth, 0)
}

// stripComment drops a trailing " # comment" from a trimmed line.
func stripComment(s string) string {
	if i := strings.Index(s, " #"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
