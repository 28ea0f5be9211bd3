// Package process holds the processing stage kinds: decoders
// (process.json, process.syslog), a filter and a router driven by
// conditions (process.filter, process.route), and process.func, which runs
// Go functions of the embedding program.
//
// Register registers every kind but process.func; RegisterFuncs registers
// process.func with a Funcs, the program's set of named functions:
//
//	var fs process.Funcs
//	fs.Add("redact", redact)
//	process.Register(reg)
//	process.RegisterFuncs(reg, &fs)
//
// Handlers finish an event with ev.Done(err) when they refuse it; the
// error text is one short line that a network client reads as the reason
// of its nack ("invalid json: unexpected end of input at offset 17",
// `missing field "id"`) and never quotes the record. An event that is
// dropped on purpose (a filter, a route with no default, a Func that
// returns keep=false) is finished with Done(nil): it was handled, and the
// client gets it acked. Handlers count nothing: the stage runtime counts
// the errors passed to Done.
//
// # Decoded fields
//
// process.json decodes a record that is one JSON object; an integer that
// fits in an int64 becomes an int64 and any other number a json.Number
// holding the text as sent, so ids such as 9007199254740993 round-trip
// exactly; an object or array is kept as its JSON text and decoded when a
// path into it is read. Objects and arrays nest at most 512 deep, the
// record itself counting as one (maxDepth): a deeper record is refused,
// so that a hostile one cannot make the decoder recurse without limit.
// process.syslog fills pri, facility, severity and
// version (int64) and timestamp, hostname, app_name, procid, msgid,
// structured_data and msg (strings taken from the line as sent). A line it
// cannot parse gives a reason that says where in it, as a 0-based byte
// offset, parsing stopped ("rfc5424: bad SD-PARAM name at offset 57"):
// the parse_error field, or with strict the reason of the nack. With
// strict, an RFC 5424 TIMESTAMP must also be a real date and time (month
// 1 to 12, a day the month has, hour under 24, minute under 60, second up
// to 60 for a leap second, and so for the time zone's offset): a line
// with another is refused ("rfc5424: bad TIMESTAMP: day out of range at
// offset 14"). Without strict the timestamp is kept as sent.
//
// Both decode only what is read after them: when the pipeline starts, a
// decoder is told the paths the stages after it read (a db.postgres
// stage's columns, a filter's or a route's conditions; see
// stage.Kind: Project) and sets only those fields, still checking the whole
// record. A stage that does not say what it reads, such as process.func,
// gets every field. A path finds a key spelled with dots ("log.level") as
// well as a nested one, the whole key first.
//
// Each handler says which fields it sets (FieldsMade, see stage.Kind):
// process.syslog its twelve, a closed set; process.json whatever the
// record holds, an open one; process.filter and process.route none. So a
// pipeline that reads after process.syslog a field it never sets (a
// filter on "hostnme") is refused as it is built (pipeline.New, and so
// pipectl lint and run), with "did you mean".
//
// # Conditions
//
// process.filter's `if` and process.route's `routes[].if` are conditions:
//
//	condition  = or
//	or         = and { "or" and }
//	and        = unary { "and" unary }
//	unary      = "not" unary | "(" or ")" | comparison
//	comparison = PATH OP VALUE | PATH "exists"
//	OP         = "==" | "!=" | "<" | "<=" | ">" | ">=" | "contains" | "matches"
//	VALUE      = STRING | NUMBER | "true" | "false" | "null"
//
// so `and` binds tighter than `or`, and `not` tighter than both. Keywords
// are lower case. White space separates tokens where needed.
//
// PATH is a dotted path into the event's fields as Event.Field reads it
// (`host`, `user.id`); `$` is the raw record. It starts with a letter, `_`,
// `$` or `@` and goes on with those, digits, `.` and `-`. A field named
// like a keyword (and, or, not, contains, matches, exists, true, false,
// null) cannot be named in a condition.
//
// STRING is double-quoted with Go's escapes (\" \\ \n \t \uXXXX); NUMBER is
// a JSON number (-12, 3.5, 1e9).
//
// Meaning, for a field value V and a literal L:
//   - a missing field is null; `PATH exists` is true when the field is
//     present and not null;
//   - `==` and `!=`: numbers compare numerically (int64, float64 and
//     json.Number alike; integers exactly, also past 2^53 and past int64,
//     against each other and against a number with a fraction, which is
//     then read exactly from its text (n > 18014398509481985.5 is false
//     for n = 18014398509481985, though the float64 nearest that literal
//     is below n, and k >= 3.0000000000000001 is false for k = 3), as are
//     a json.Number's and a literal's texts against each other, up to 800
//     characters of text and an exponent of 400; past those as float64,
//     ±Inf past its range; a float64 field at float64's precision, so a
//     computed 0.1 == 0.1), strings exactly,
//     booleans and null by identity; values of different types are never
//     equal (the string "80" is not the number 80);
//   - `<`, `<=`, `>`, `>=`: numbers numerically, strings byte-wise
//     (lexically); they are false when V and L differ in type. L must be a
//     string or a number;
//   - `contains`: for a string V, whether L (a string) is a substring; for
//     an array V, whether an element equals L;
//   - `matches`: whether the string V matches L, a Go regular expression
//     (regexp syntax, unanchored), compiled once when the stage is built.
//
// A condition that does not parse is refused when the stage is built with a
// *stage.FieldError for the field ("if", "routes.0.if") wrapping a
// *SyntaxError that gives the column (from 1) within the condition:
//
//	routes.0.if: column 7: expected a value (a quoted string, a number, true, false or null), found the end
//
// Examples:
//
//	level == "error"
//	status >= 500 and not (path matches "^/health")
//	tags contains "audit" or user.id == 9007199254740993
//	trace_id exists
package process
