package process

// This file tests conditions: evaluation, canonical text, syntax errors,
// and how numbers compare (big, fractional) without allocating.

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
)

func condEvent(fields map[string]any, payload string) *stage.Event {
	ev := &stage.Event{Payload: []byte(payload)}
	setFields(ev, fields)
	return ev
}

func TestConditionEval(t *testing.T) {
	ev := condEvent(map[string]any{
		"id":    json.Number("9007199254740993"),
		"big":   json.Number("12345678901234567890"),
		"i63":   json.Number("9223372036854775807"),
		"u64":   uint64(18446744073709551615),
		"exact": int64(9007199254740993),
		"n":     int64(42),
		"f":     1.5,
		"fn":    json.Number("2.5"),
		"host":  "web-1",
		"level": "error",
		"ok":    true,
		"nil":   nil,
		"tags":  []any{"audit", int64(7)},
		"user":  map[string]any{"name": "ann", "id": int64(9007199254740993)},
	}, `raw payload`)
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{`id == 9007199254740993`, true},
		// Integers compare exactly past 2^53 and past int64, where a
		// float64 would make distinct ones equal.
		{`big == 12345678901234567890`, true},
		{`big == 12345678901234567891`, false},
		{`big < 12345678901234567891`, true},
		{`big > 9223372036854775807`, true},
		{`i63 == 9223372036854775808`, false},
		{`i63 < 9223372036854775808`, true},
		{`i63 >= 9223372036854775808`, false},
		{`u64 == 18446744073709551615`, true},
		{`u64 == 18446744073709551614`, false},
		{`u64 > 1.8e19`, true},
		{`big == 1.2345678901234567890e19`, true},
		{`exact == 9007199254740992.0`, false},
		{`exact > 9007199254740992.5`, true},
		{`exact < 9007199254740993.5`, true},
		{`big < 1e400`, true},
		{`big > -1e400`, true},
		{`id == 9007199254740992`, false},
		{`id > 9007199254740992`, true},
		{`user.id == 9007199254740993`, true},
		{`user.id != 9007199254740992`, true},
		{`n == 42`, true},
		{`n == 42.0`, true},
		{`n < 42.5`, true},
		{`n >= 43`, false},
		{`n <= 42`, true},
		{`f > 1`, true},
		{`fn == 2.5`, true},
		{`fn < 3`, true},
		{`n == "42"`, false},
		{`n != "42"`, true},
		{`host == "42"`, false},
		{`host == "web-1"`, true},
		{`host < "web-2"`, true},
		{`host > "web-2"`, false},
		{`host < 5`, false},
		{`host >= "web-1"`, true},
		{`host contains "eb-"`, true},
		{`host contains "db"`, false},
		{`host matches "^web-[0-9]+$"`, true},
		{`host matches "^db"`, false},
		{`n matches "4"`, false},
		{`tags contains "audit"`, true},
		{`tags contains 7`, true},
		{`tags contains "7"`, false},
		{`n contains "4"`, false},
		{`ok == true`, true},
		{`ok == false`, false},
		{`ok != false`, true},
		{`ok == 1`, false},
		{`nil == null`, true},
		{`nil exists`, false},
		{`missing == null`, true},
		{`missing != null`, false},
		{`missing exists`, false},
		{`missing != 1`, true},
		{`missing == 1`, false},
		{`missing < 1`, false},
		{`host exists`, true},
		{`user.name exists`, true},
		{`user.name.first exists`, false},
		{`host != null`, true},
		{`$ == "raw payload"`, true},
		{`$ contains "pay"`, true},
		{`$ matches "^raw"`, true},
		{`not host exists`, false},
		{`not not host exists`, true},
		{`host exists and missing exists`, false},
		{`host exists or missing exists`, true},
		{`missing exists or n == 42 and level == "info"`, false}, // and binds tighter
		{`(missing exists or n == 42) and level == "info"`, false},
		{`n == 42 or missing exists and level == "info"`, true},
		{`(n == 42 or missing exists) and level == "error"`, true},
		{`not (n == 1 or n == 2) and host == "web-1"`, true},
		{"level==\"error\"\tand\nn>=42", true},
		{`host == "web-\u0031"`, true},
		{`n > -1e3`, true},
	} {
		c, err := ParseCondition(tc.src)
		if err != nil {
			t.Errorf("ParseCondition(%q): %v", tc.src, err)
			continue
		}
		if got := c.Match(ev); got != tc.want {
			t.Errorf("%q = %v, want %v", tc.src, got, tc.want)
		}
		// The canonical form parses to a condition that decides the same.
		c2, err := ParseCondition(c.String())
		if err != nil {
			t.Errorf("%q: String() = %q does not parse: %v", tc.src, c.String(), err)
			continue
		}
		if c2.String() != c.String() || c2.Match(ev) != tc.want {
			t.Errorf("%q: String() = %q, reparsed %q decides %v", tc.src, c.String(), c2.String(), c2.Match(ev))
		}
	}
}

func TestConditionString(t *testing.T) {
	for src, want := range map[string]string{
		`a==1 and (b==2 or c==3)`:        `a == 1 and (b == 2 or c == 3)`,
		`(a==1 and b==2) or c==3`:        `a == 1 and b == 2 or c == 3`,
		`not (a exists and b exists)`:    `not (a exists and b exists)`,
		`((a == "x\"y"))`:                `a == "x\"y"`,
		`a matches "\\d+" or not b < -2`: `a matches "\\d+" or not b < -2`,
	} {
		c, err := ParseCondition(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if c.String() != want {
			t.Errorf("%q: String() = %q, want %q", src, c.String(), want)
		}
	}
}

func TestConditionErrors(t *testing.T) {
	for _, tc := range []struct {
		src  string
		col  int
		want string
	}{
		{``, 1, "empty condition"},
		{`   `, 4, "empty condition"},
		{`host`, 5, "expected an operator (==, !=, <, <=, >, >=, contains, matches, exists) after \"host\", found the end"},
		{`host = "x"`, 6, `expected an operator (==, !=, <, <=, >, >=, contains, matches, exists) after "host", found "="`},
		{`host ==`, 8, "expected a value (a quoted string, a number, true, false or null), found the end"},
		{`host == web`, 9, `expected a value (a quoted string, a number, true, false or null), found "web"`},
		{`host == "web`, 9, "unterminated string"},
		{`host == "a\qb"`, 9, "bad string literal"},
		{`n == 1.`, 6, `bad number "1."`},
		{`n == 0x10`, 6, `bad number "0x10"`},
		{`n == --1`, 6, `bad number "--1"`},
		{`n < true`, 5, "operator < needs a string or a number"},
		{`n >= null`, 6, "operator >= needs a string or a number"},
		{`h matches 1`, 11, "matches needs a quoted regular expression"},
		{`h matches "a("`, 11, "bad regular expression: error parsing regexp: missing closing ): `a(`"},
		{`a == 1 b == 2`, 8, `expected and, or or the end, found "b"`},
		{`a == 1 and`, 11, "expected a field path, not, or (, found the end"},
		{`a == 1 or or b == 2`, 11, `expected a field path, not, or (, found "or"`},
		{`(a == 1`, 8, "expected ) to close the ( at column 1, found the end"},
		{`a == 1)`, 7, `expected and, or or the end, found ")"`},
		{`()`, 2, `expected a field path, not, or (, found ")"`},
		{`not`, 4, "expected a field path, not, or (, found the end"},
		{`1 == n`, 1, `expected a field path, not, or (, found "1"`},
		{`"x" == n`, 1, "expected a field path, not, or (, found a string"},
		{`a..b == 1`, 1, `field path "a..b" has an empty part`},
		{`é == 1`, 1, `expected a field path, not, or (, found "é"`},
		{`"é" == "é" and é`, 1, "expected a field path"},
		{`a == "é" and é`, 14, `expected a field path, not, or (, found "é"`},
		{`a == "é" & b`, 10, `expected and, or or the end, found "&"`},
		{`and == 1`, 1, `expected a field path, not, or (, found "and"`},
		{`exists exists`, 1, `expected a field path, not, or (, found "exists"`},
		{strings.Repeat("(", 150) + "a exists" + strings.Repeat(")", 150), 101, "nested more than 100 deep"},
		{strings.Repeat("not ", 150) + "a exists", 401, "nested more than 100 deep"},
	} {
		_, err := ParseCondition(tc.src)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("ParseCondition(%.30q) = %v, want a *SyntaxError", tc.src, err)
			continue
		}
		if se.Col != tc.col || !strings.HasPrefix(se.Msg, tc.want) {
			t.Errorf("ParseCondition(%.30q) = column %d: %s\nwant column %d: %s", tc.src, se.Col, se.Msg, tc.col, tc.want)
		}
	}
}

// A number whose text is over maxBigText is compared as a float, not read
// as an exact big integer: big.Rat reads digits in quadratic time, and a
// record of 64 KiB of digits cost 11 ms each time a condition compared it.
func TestLongNumberComparedAsFloat(t *testing.T) {
	long := "1" + strings.Repeat("0", 64<<10)
	if n, ok := parseNumber(long); !ok || n.big != nil || !math.IsInf(n.f, 1) {
		t.Fatalf("%d digits read as %+v, %v; want +Inf as a float", len(long), n, ok)
	}
	if n, ok := parseNumber("1" + strings.Repeat("0", maxBigExp)); !ok || n.big == nil {
		t.Fatalf("10^%d read as %+v, %v; want it exact", maxBigExp, n, ok)
	}
	ev := condEvent(map[string]any{"n": json.Number(long)}, "")
	for src, want := range map[string]bool{`n > 5`: true, `n < 5`: false, `n == 1e400`: false} {
		c, err := ParseCondition(src)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Match(ev); got != want {
			t.Errorf("%s on %d digits: %v, want %v", src, len(long), got, want)
		}
	}
}

// An integer a float64 cannot hold, compared with a number written with a
// fraction, is compared with the number's exact value, not with the
// float64 nearest it: 18014398509481985.5 is 18014398509481984 as a
// float64, which made n > 18014398509481985.5 true for n = 2^54+1. Within
// 2^53 a tie of the float64s is settled exactly too: k >= 3.0000000000000001
// was true for k = 3.
func TestConditionBigIntAgainstFraction(t *testing.T) {
	ev := condEvent(map[string]any{
		"n":     int64(18014398509481985),
		"num":   json.Number("18014398509481985"),
		"frac":  json.Number("18014398509481985.5"),
		"exp":   json.Number("1801439850948198.55e1"),
		"u64":   uint64(18446744073709551615),
		"neg":   int64(-18014398509481985),
		"p53":   int64(9007199254740992),
		"k":     int64(3),
		"kt":    json.Number("3.0000000000000001"),
		"tenth": json.Number("0.1"),
		"zero":  json.Number("0.000"),
		"f":     0.1,
	}, "")
	for src, want := range map[string]bool{
		`n > 18014398509481985.5`:      false,
		`n < 18014398509481985.5`:      true,
		`n == 18014398509481985.5`:     false,
		`n >= 18014398509481984.9`:     true,
		`n == 18014398509481985.0`:     true,
		`n < 1801439850948198.55e1`:    true,
		`num < 18014398509481985.5`:    true,
		`neg > -18014398509481985.5`:   true,
		`neg < -18014398509481984.5`:   true,
		`u64 < 18446744073709551615.5`: true,
		`u64 > 18446744073709551614.5`: true,
		`frac > 18014398509481985`:     true,
		`frac < 18014398509481986`:     true,
		`exp == 18014398509481985.5`:   true,
		`exp > 18014398509481985`:      true,
		`n < 1e400`:                    true,
		`n > -1e400`:                   true,
		// Within 2^53 the literal's float64 ties with the integer:
		// 9007199254740992.5 is 2^53 and 3.0000000000000001 is 3.
		`p53 == 9007199254740992.5`: false,
		`p53 != 9007199254740992.5`: true,
		`p53 >= 9007199254740992.5`: false,
		`p53 > 9007199254740992.5`:  false,
		`p53 < 9007199254740992.5`:  true,
		`p53 <= 9007199254740992.5`: true,
		`p53 == 9007199254740992.0`: true,
		`k == 3.0000000000000001`:   false,
		`k != 3.0000000000000001`:   true,
		`k >= 3.0000000000000001`:   false,
		`k > 3.0000000000000001`:    false,
		`k < 3.0000000000000001`:    true,
		`k <= 3.0000000000000001`:   true,
		`k > 2.9999999999999999`:    true,
		`k == 3.000000000000000`:    true,
		// A field's text is read exactly too, against an integer or
		// another text.
		`kt > 3`:                      true,
		`kt == 3`:                     false,
		`kt == 3.0000000000000001`:    true,
		`kt == 3.00000000000000010`:   true,
		`kt < 3.0000000000000002`:     true,
		`tenth == 0.10`:               true,
		`tenth < 0.10000000000000001`: true,
		`zero == 0`:                   true,
		`zero < 1e-400`:               true,
		// A float64 with no text stands for itself at float64's
		// precision: it equals the literal that rounds to it.
		`f == 0.1`:                 true,
		`f != 0.1`:                 false,
		`f >= 0.10000000000000001`: true,
	} {
		c, err := ParseCondition(src)
		if err != nil {
			t.Fatalf("ParseCondition(%q): %v", src, err)
		}
		if got := c.Match(ev); got != want {
			t.Errorf("%s = %v, want %v", src, got, want)
		}
	}
}

// Comparing numbers does not allocate in the common cases, ties included:
// a tie is settled exactly only when the two values may differ.
func TestConditionNumberAllocs(t *testing.T) {
	ev := condEvent(map[string]any{
		"score": json.Number("0.5"),
		"n":     int64(42),
		"f":     0.1,
	}, "")
	for _, src := range []string{
		`score >= 0.5`, `score == 0.50`, `score < 0.75`, `n == 42`, `n <= 42.0`, `n < 42.5`, `f == 0.1`,
	} {
		c, err := ParseCondition(src)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Match(ev) {
			t.Errorf("%s = false, want true", src)
		}
		if allocs := testing.AllocsPerRun(100, func() { c.Match(ev) }); allocs != 0 {
			t.Errorf("%s: %v allocations per Match, want 0", src, allocs)
		}
	}
}
