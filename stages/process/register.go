package process

// This file holds the registration of the process kinds and their compile-
// time checks.

import (
	"github.com/stagedserver/seda/stage"
)

// conditionDoc summarizes the condition syntax for the kinds' docs; the
// package documentation has the full account.
const conditionDoc = "A condition is `PATH OP VALUE` comparisons joined by `and` and `or` " +
	"(`and` binds tighter), negated with `not` and grouped with parentheses. PATH is a dotted field path " +
	"(`host`, `user.id`; `$` is the raw record). OP is `==`, `!=`, `<`, `<=`, `>`, `>=`, `contains`, " +
	"`matches` (a Go regular expression) or the unary `exists` (`PATH exists`: present and not null). " +
	"VALUE is a double-quoted string (Go escapes), a number, `true`, `false` or `null`. Numbers compare " +
	"numerically, strings byte-wise; values of different types are never equal, and a missing field is null. " +
	"Example: `level == \"error\" and not (host matches \"^test-\" or code < 500)`."

// Register registers the kinds process.json, process.syslog,
// process.filter and process.route in r. process.func needs the program's
// functions and is registered by RegisterFuncs.
func Register(r *stage.Registry) error {
	kinds := []stage.Kind{
		{
			Name: "process.json",
			Doc: "Decodes each record as one JSON object into the event's fields and checks required fields. " +
				"Integers that fit in 64 bits become int64, other numbers keep their exact text (json.Number); " +
				"an object or array, also one a path reads below a member (`req.headers`), keeps its text as sent. " +
				"A record that is not a JSON object, or lacks a required field, is refused with a one-line reason " +
				"(`invalid json: unexpected end of input at offset 17`, `missing field \"id\"`). " +
				"Objects and arrays nest at most 512 deep, the record itself counting as one; " +
				"a record nested deeper is refused (`invalid json: nesting deeper than 512 at offset N`).",
			Fields: []stage.Field{
				{Name: "require", Type: stage.StringList, Doc: "dotted field paths that must be present and not null"},
			},
			NewHandler: newJSON,
		},
		{
			Name: "process.syslog",
			Doc: "Parses RFC 5424 and RFC 3164 (BSD) syslog lines into the fields pri, facility, severity, " +
				"version (5424), timestamp (as sent), hostname, app_name, procid, msgid, structured_data " +
				"(5424, raw text) and msg; fields a line does not carry (or gives as `-`) are absent. " +
				"RFC 3164 lines are read as senders write them: the tag ends at its first character that is not " +
				"alphanumeric (`_.-/` count as such), `[pid]` becomes procid, the colon after it is optional, " +
				"and msg never starts with the tag.",
			Fields: []stage.Field{
				{Name: "format", Type: stage.String, Default: "auto", Enum: []string{"auto", "rfc5424", "rfc3164"}, Doc: "auto (5424 when a version follows <PRI>, else 3164), rfc5424 or rfc3164"},
				{Name: "strict", Type: stage.Bool, Default: false, Doc: "refuse unparseable lines, and RFC 5424 lines whose TIMESTAMP is out of range (month 13, February 30, hour 24; second 60, a leap second, is allowed); false keeps unparseable lines as {msg: LINE, parse_error: REASON} and timestamps as sent"},
			},
			NewHandler: newSyslog,
		},
		{
			Name: "process.filter",
			Doc: "Keeps the events that match a condition and drops the others (or, with drop, the reverse). " +
				"Dropped events are finished as handled (acked). " + conditionDoc,
			Fields: []stage.Field{
				{Name: "if", Type: stage.String, Required: true, Doc: "the condition"},
				{Name: "drop", Type: stage.Bool, Default: false, Doc: "drop the events that match instead of keeping them"},
			},
			NewHandler: newFilter,
		},
		{
			Name: "process.route",
			Doc: "Sends each event to the next stage of the first route whose condition it matches, " +
				"else to default; with no default such events are dropped (acked). " + conditionDoc,
			Fields: []stage.Field{
				{Name: "routes", Type: stage.ObjectList, Required: true, Doc: "the routes, tried in order", Fields: []stage.Field{
					{Name: "if", Type: stage.String, Required: true, Doc: "the condition"},
					{Name: "next", Type: stage.String, Required: true, Ref: true, Doc: "the stage that receives matching events"},
				}},
				{Name: "default", Type: stage.String, Ref: true, Doc: "the stage for events that match no route; empty: drop them"},
			},
			// Every event goes to a route's next, to default or nowhere:
			// a next would look like the place for the rest, and be
			// drawn as an edge, yet never receive an event.
			NoNext:     "it sends each event to the next of the first route it matches, else to default; name the stage for the events that match no route in default",
			NewHandler: newRoute,
		},
	}
	for _, k := range kinds {
		if err := r.Register(k); err != nil {
			return err
		}
	}
	return nil
}

// The optional methods of stage.Kind that this package's handlers have,
// for compile-time checks.
type (
	fieldReader interface {
		stage.Handler
		FieldsRead() (paths []string, all bool)
	}
	projector interface {
		fieldReader
		Project(paths []string, all bool)
	}
	fieldMaker interface {
		stage.Handler
		FieldsMade() (paths []string, open bool)
	}
)
