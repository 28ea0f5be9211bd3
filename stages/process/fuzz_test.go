package process

// This file holds the package's fuzzers: syslog, JSON paths, JSON
// projection and conditions.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stagedserver/seda/stage"
)

// FuzzSyslog: the parser never panics, and every string field it fills is
// taken from the line. The corpus of real senders' lines seeds it.
func FuzzSyslog(f *testing.F) {
	for _, e := range readSyslogCorpus(f) {
		f.Add(e.Line)
	}
	for _, s := range []string{
		`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3"] msg`,
		`<34>Oct 11 22:14:15 mymachine su: 'su root' failed`,
		`<13>Feb  5 17:32:18 host sshd[42]: x`,
		`<13>1 - - - - - [a b="\]"][c]`,
		`<0>`, `<`, `<191>1 `, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		for _, format := range []syslogFormat{formatAuto, formatRFC5424, formatRFC3164} {
			m, err := parseSyslogMap(line, format)
			if err != nil {
				if m != nil || err.Error() == "" {
					t.Fatalf("%q: fields %v with error %v", line, m, err)
				}
				continue
			}
			checkSyslogFields(t, line, m)
		}
		// A line end an octet-counted sender adds changes nothing: the
		// same fields, or the same error.
		if !strings.HasSuffix(line, "\n") && !strings.HasSuffix(line, "\r") {
			for _, format := range []syslogFormat{formatAuto, formatRFC5424, formatRFC3164} {
				want, wantErr := parseSyslogMap(line, format)
				for _, eol := range []string{"\n", "\r\n"} {
					got, err := parseSyslogMap(line+eol, format)
					if !reflect.DeepEqual(got, want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
						t.Fatalf("%q: with %q: %v, %v; without: %v, %v", line, eol, got, err, want, wantErr)
					}
				}
			}
		}
		// Strict refuses what lenient refuses, and more (a timestamp out
		// of range), never less.
		strictErr := parseSyslog(line, formatAuto, &syslogMsg{ev: &stage.Event{}, want: allSyslogFields, names: &syslogFieldNames, strict: true})
		if _, err := parseSyslogMap(line, formatAuto); err != nil && strictErr == nil {
			t.Fatalf("%q: strict accepts what lenient refuses (%v)", line, err)
		}
		// Through the handler, lenient: every line is kept.
		h := &syslogHandler{}
		out := &collector{}
		ev := &stage.Event{Payload: []byte(line)}
		if err := h.Handle(context.Background(), []*stage.Event{ev}, out); err != nil || len(out.calls) != 1 {
			t.Fatalf("%q: lenient handler did not keep the line (%v)", line, err)
		}
		checkSyslogFields(t, line, fieldMap(ev))
	})
}

// FuzzJSONPath: the decoder agrees with encoding/json on what is valid and
// what it means, and looking a path up in what it decoded (directly and
// through a condition) never panics and agrees.
func FuzzJSONPath(f *testing.F) {
	for _, s := range jsonCorpus {
		f.Add([]byte(s), "a")
	}
	f.Add([]byte(`{"user":{"id":9007199254740993,"tags":["x"]}}`), "user.id")
	f.Add([]byte(`{"a":{"b":null}}`), "a.b")
	f.Add([]byte(`{"":1}`), "")
	f.Add([]byte(`{"a.b":1}`), "a.b")
	// Dotted keys against nested ones, and duplicates: a projection finds
	// what a full decode's Field finds.
	f.Add([]byte(`{"a.b":1,"a":{"b":2}}`), "a.b")
	f.Add([]byte(`{"a":{"b":2},"a.b":1}`), "a.b")
	f.Add([]byte(`{"a":{"b":1},"a":{"c":2}}`), "a.b")
	f.Add([]byte(`{"a.b":{},"a":{"b":{"c":1}}}`), "a.b.c")
	f.Add([]byte(`{"a":{"b":{"c":1}},"a.b":5}`), "a.b.c")
	f.Add([]byte(`{"a":{"b":{"x":1},"b":{"y":2}}}`), "a.b.x")
	f.Add([]byte(`{"a":{"b":{"x":1}},"a":7}`), "a.b.x")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		checkJSONAgainstStd(t, data)
		ev := &stage.Event{Payload: data}
		var d decoder
		if err := (&jsonHandler{}).decode(&d, ev); err != nil {
			return
		}
		v, ok := ev.Field(path)
		// Decoding only that path gives the same value.
		if checkPath(path) == nil && path != "$" {
			p := &jsonHandler{}
			p.Project([]string{path}, false)
			pev := &stage.Event{Payload: data}
			if err := p.decode(&d, pev); err != nil {
				t.Fatalf("projected on %q: %v", path, err)
			}
			pv, pok := pev.Field(path)
			if pok != ok || !reflect.DeepEqual(pv, v) {
				t.Fatalf("%q projected = %#v %v, full = %#v %v", path, pv, pok, v, ok)
			}
		}
		c, err := ParseCondition(path + " exists")
		if err != nil || c.String() != path+" exists" {
			return // not a path a condition can name as it is
		}
		if got, want := c.Match(ev), ok && v != nil; got != want {
			t.Fatalf("%q exists = %v, Field says %v (%v)", path, got, want, v)
		}
	})
}

// FuzzJSONProjectMulti: projecting several paths at once (some prefixes of
// others, some taken by dotted keys) gives each the value, or the absence,
// a full decode's Field gives it.
func FuzzJSONProjectMulti(f *testing.F) {
	for _, s := range jsonCorpus {
		f.Add([]byte(s), "a,a.b,b")
	}
	f.Add([]byte(`{"a.b":{},"a":{"b":{"c":0}}}`), "a.b.c,a")
	f.Add([]byte(`{"a":{"b":{"c":0}},"a.b":7}`), "a,a.b.c")
	f.Add([]byte(`{"a.b":{"c":1},"a":{"b":{"c":2}}}`), "a.b,a.b.c,a")
	f.Add([]byte(`{"a":{"b":1,"b":{"c":2}}}`), "a.b,a.b.c")
	f.Add([]byte(`{"a":{"b":{"c":2},"b":1}}`), "a.b.c,a")
	f.Add([]byte(`{"a":{"b":{"c":2}},"a.b":{"c":3},"a":1}`), "a.b.c,a.b,a")
	f.Add([]byte(`{"a":{"b":{"c":{"d":1}}},"a.b":{"c":{"d":2}},"a.b.c":{}}`), "a,a.b.c.d,a.b.x")
	f.Fuzz(func(t *testing.T, data []byte, paths string) {
		ps := strings.Split(paths, ",")
		if len(ps) > 6 {
			return
		}
		var d decoder
		ev := &stage.Event{Payload: data}
		if err := (&jsonHandler{}).decode(&d, ev); err != nil {
			return
		}
		p := &jsonHandler{}
		p.Project(ps, false)
		pev := &stage.Event{Payload: data}
		if err := p.decode(&d, pev); err != nil {
			t.Fatalf("projected on %q: %v", ps, err)
		}
		for _, path := range ps {
			if checkPath(path) != nil || path == "$" {
				continue
			}
			v, ok := ev.Field(path)
			pv, pok := pev.Field(path)
			if pok != ok || !reflect.DeepEqual(pv, v) {
				t.Fatalf("%q of %q: projected = %#v %v, full = %#v %v", path, ps, pv, pok, v, ok)
			}
		}
	})
}

// FuzzCondition: the parser never panics; an error is a *SyntaxError with a
// column inside the text (or just after it); a condition that parses
// prints to one that parses to the same text and decides the same.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{
		`level == "error"`,
		`a == 1 and (b != 2 or not c exists)`,
		`host matches "^web-\\d+$" or tags contains "x"`,
		`n >= -1.5e3 and s < "z" and t == true and u == null`,
		`((a exists))`, `not not a exists`, `a ==`, `(`, `"`, `a == "\u00e9"`,
	} {
		f.Add(s)
	}
	ev := condEvent(map[string]any{
		"a": int64(1), "b": "x", "c": nil, "n": 2.5, "s": "m", "t": true,
		"tags": []any{"x", int64(1)}, "level": "error", "host": "web-1",
		"m": map[string]any{"k": "v"},
	}, "raw")
	f.Fuzz(func(t *testing.T, src string) {
		c, err := ParseCondition(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("%q: error %v is not a *SyntaxError", src, err)
			}
			if se.Col < 1 || se.Col > utf8.RuneCountInString(src)+1 {
				t.Fatalf("%q: column %d outside the text", src, se.Col)
			}
			return
		}
		got := c.Match(ev)
		c2, err := ParseCondition(c.String())
		if err != nil {
			t.Fatalf("%q: String() = %q does not parse: %v", src, c.String(), err)
		}
		if c2.String() != c.String() || c2.Match(ev) != got {
			t.Fatalf("%q: String() = %q reparses as %q", src, c.String(), c2.String())
		}
	})
}
