package db

// This file holds the search for text PostgreSQL cannot store, made when
// a write fails on it, so that the records holding it are found without
// bisecting the batch: text that is not UTF-8 or holds a NUL, and in a
// jsonb value the escape \u0000 or a surrogate escape not in a pair.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stagedserver/seda/stage"
)

// encodingError reports whether err is PostgreSQL refusing text for its
// encoding: a byte sequence that is not UTF-8, a NUL byte among them
// (22021), or a character it cannot store (22P05: jsonb's \u0000).
func encodingError(err error) bool {
	code := sqlState(err)
	return code == "22021" || code == "22P05"
}

// surrogateError reports whether err may be jsonb refusing a UTF-16
// surrogate escape not in a pair (\uD800 alone, which process.json lets
// through): invalid input syntax (22P02) raised by PostgreSQL's JSON
// parser, known by its routine whatever the server's language
// (json_ereport_error up to PostgreSQL 15, json_errsave_error from 16).
// Other JSON syntax errors have the same code and routine; the search
// then finds no record, and the batch is bisected as before.
func surrogateError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "22P02" &&
		(pe.Routine == "json_ereport_error" || pe.Routine == "json_errsave_error")
}

// badTextError reports whether err is a refusal that refuseBadText looks
// for the records of.
func badTextError(err error) bool { return encodingError(err) || surrogateError(err) }

// refuseBadText finishes rows [lo, hi) of r after their write failed with
// an encoding error or a surrogate escape jsonb refused (badTextError): it looks for the records whose values hold such text
// and, when it finds some, nacks them with PostgreSQL's reason and writes
// the others once more, in one write (which may still bisect); found
// reports whether it did. Bisection alone needs several failed writes for
// each bad record, which with Latin-1 syslog lines in one record of a
// hundred made a load 14 times slower. The values are looked at only
// here, after a failure: the write of a clean batch never pays for it.
func (s *Sink) refuseBadText(ctx context.Context, r *rows, lo, hi int, idem bool) (found bool, err error) {
	var scratch []byte
	good := s.bufs.Get().(*rows)
	defer s.putRows(good)
	good.reset(r.lay, s.insert)
	for _, ev := range r.evs[lo:hi] {
		var bad error
		if scratch, bad = s.badText(r.lay, ev, scratch); bad != nil {
			found = true
			ev.Done(s.refusal(ev, bad))
			continue
		}
		if err := s.addRow(good, ev); err != nil { // it converted once: not expected
			ev.Done(fmt.Errorf("stage %q: record %d: %w", s.name, ev.Seq, stage.WithClass(err, stage.ErrInvalid)))
		}
	}
	if !found || len(good.evs) == 0 {
		return found, nil
	}
	return true, s.store(ctx, good, 0, len(good.evs), idem)
}

// badText returns the refusal PostgreSQL gives a value of ev that is not
// valid UTF-8 or holds a NUL byte, or a jsonb value with the escape
// \u0000 or a surrogate escape not in a pair, as it words it; nil when ev
// has none. Each value is looked at as the sink writes it (its text
// form), since a string PostgreSQL reads as JSON is escaped first.
func (s *Sink) badText(lay *layout, ev *stage.Event, scratch []byte) ([]byte, error) {
	for i := range lay.cols {
		c := &lay.cols[i]
		v, ok := stage.JSONValue(ev.Payload), true
		if c.path != "$" {
			v, ok = ev.Value(c.path)
		}
		if !ok || v.IsNull() {
			continue
		}
		b := v.Bytes()
		if !rawText(v, c.kind) {
			var err error
			if scratch, err = appendValue(scratch[:0], v, c.kind, c.bin); err != nil {
				continue
			}
			b = scratch
		}
		if at := invalidUTF8(b); at >= 0 {
			return scratch, &pgconn.PgError{Severity: "ERROR", Code: "22021", ColumnName: c.name,
				Message: `invalid byte sequence for encoding "UTF8": ` + sequence(b[at:])}
		}
		// The json type takes these escapes; only jsonb, which decodes
		// the text, refuses them.
		if c.bin != binJSONB {
			continue
		}
		nul, surrogate := jsonEscapes(b)
		if nul {
			return scratch, detailed{&pgconn.PgError{Severity: "ERROR", Code: "22P05", ColumnName: c.name,
				Message: "unsupported Unicode escape sequence", Detail: nulDetail}}
		}
		if surrogate != "" {
			return scratch, detailed{&pgconn.PgError{Severity: "ERROR", Code: "22P02", ColumnName: c.name,
				Message: "invalid input syntax for type json", Detail: surrogate}}
		}
	}
	return scratch, nil
}

// detailed shows a refusal's DETAIL after it, for one whose message
// alone does not say what is wrong ("invalid input syntax for type json",
// "unsupported Unicode escape sequence") and whose detail quotes none of
// the value.
type detailed struct{ *pgconn.PgError }

func (e detailed) Error() string { return e.PgError.Error() + ": " + e.Detail }
func (e detailed) Unwrap() error { return e.PgError }

// PostgreSQL's detail for jsonb's \u0000, and its details for a
// surrogate escape not in a pair.
const (
	nulDetail     = `\u0000 cannot be converted to text.`
	lowAlone      = "Unicode low surrogate must follow a high surrogate."
	highAfterHigh = "Unicode high surrogate must not follow a high surrogate."
)

// jsonEscapes walks the JSON text b for the escapes jsonb refuses: nul
// reports \u0000, which it cannot store as text, and surrogate is
// PostgreSQL's DETAIL for the first UTF-16 surrogate escape not in a pair
// ("" when each is paired): a high one (\uD800 to \uDBFF) must be
// followed at once by a low one (\uDC00 to \uDFFF), and a low one must
// follow a high one. A backslash escaped itself starts no escape.
func jsonEscapes(b []byte) (nul bool, surrogate string) {
	high := false // the last escape was a high surrogate, waiting for its low one
	alone := func(detail string) {
		if surrogate == "" {
			surrogate = detail
		}
		high = false
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			if high {
				alone(lowAlone)
			}
			continue
		}
		if i+6 <= len(b) && b[i+1] == 'u' {
			if r, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16); err == nil {
				switch {
				case r == 0:
					return true, surrogate
				case r >= 0xd800 && r <= 0xdbff:
					if high {
						alone(highAfterHigh)
					}
					high = true
				case r >= 0xdc00 && r <= 0xdfff:
					if !high {
						alone(lowAlone)
					}
					high = false
				case high:
					alone(lowAlone)
				}
				i += 5
				continue
			}
		}
		if high {
			alone(lowAlone)
		}
		i++ // the escaped character, a backslash among them
	}
	if high {
		alone(lowAlone)
	}
	return false, surrogate
}

// invalidUTF8 returns the offset of b's first byte that does not start a
// valid UTF-8 character, or of its first NUL (PostgreSQL stores no NUL in
// text), or -1.
func invalidUTF8(b []byte) int {
	nul := bytes.IndexByte(b, 0)
	if utf8.Valid(b) {
		return nul
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 || r == 0 {
			return i
		}
		i += n
	}
	return nul
}

// sequence shows the bytes of the character at b's start as PostgreSQL
// does in its refusal: as many as its first byte says the character has
// (one when that byte starts none), at most those b holds.
func sequence(b []byte) string {
	n := 1
	switch {
	case b[0]&0xe0 == 0xc0:
		n = 2
	case b[0]&0xf0 == 0xe0:
		n = 3
	case b[0]&0xf8 == 0xf0:
		n = 4
	}
	var sb strings.Builder
	for i, c := range b[:min(n, len(b))] {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "0x%02x", c)
	}
	return sb.String()
}
