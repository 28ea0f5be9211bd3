package process

// This file holds process.syslog: decoding RFC 5424 and RFC 3164 lines
// into fields.

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"unsafe"

	"github.com/stagedserver/seda/stage"
)

// syslogFormat is the format option of process.syslog.
type syslogFormat int

const (
	formatAuto syslogFormat = iota
	formatRFC5424
	formatRFC3164
)

// syslogHandler is process.syslog.
type syslogHandler struct {
	format syslogFormat
	strict bool
	want   uint16 // the fields to set, by syslogField bit (Project); all by default
	// names are the fields' names: syslogFieldNames, except that a
	// projected field is named by the very string the stages after this
	// one look it up by (Project's), so that their lookups find it by
	// its address. Empty (a zero syslogHandler): syslogFieldNames.
	names [numSyslogFields]string
}

var (
	_ stage.Handler = (*syslogHandler)(nil)
	_ projector     = (*syslogHandler)(nil)
	_ fieldReader   = (*syslogHandler)(nil)
	_ fieldMaker    = (*syslogHandler)(nil)
)

func newSyslog(cfg stage.Config, env stage.Env) (stage.Handler, error) {
	h := &syslogHandler{strict: cfg.Bool("strict"), want: allSyslogFields, names: syslogFieldNames}
	switch f := cfg.String("format"); f {
	case "", "auto":
		h.format = formatAuto
	case "rfc5424":
		h.format = formatRFC5424
	case "rfc3164":
		h.format = formatRFC3164
	default:
		return nil, &stage.FieldError{Field: "format", Err: fmt.Errorf("unknown format %q (want auto, rfc5424 or rfc3164)", f)}
	}
	return h, nil
}

// The fields process.syslog sets, in the order it sets them.
const (
	sfPri = iota
	sfFacility
	sfSeverity
	sfVersion
	sfTimestamp
	sfHostname
	sfAppName
	sfProcid
	sfMsgid
	sfStructuredData
	sfMsg
	sfParseError
	numSyslogFields
)

var syslogFieldNames = [numSyslogFields]string{
	"pri", "facility", "severity", "version", "timestamp", "hostname", "app_name", "procid", "msgid",
	"structured_data", "msg", "parse_error",
}

const allSyslogFields = 1<<numSyslogFields - 1

// Project is told what the stages after this one read
// (see stage.Kind): with all false, only those of its fields are set.
// The whole line is still parsed and checked.
func (h *syslogHandler) Project(paths []string, all bool) {
	h.names = syslogFieldNames
	if all {
		h.want = allSyslogFields
		return
	}
	h.want = 0
	for _, p := range paths {
		for f, name := range syslogFieldNames {
			if p == name {
				h.want |= 1 << f
				h.names[f] = p
			}
		}
	}
}

// FieldsMade returns every field process.syslog may set (see
// stage.Kind): a closed set, whatever the format and strict, since a
// line's structured data stays one field of raw text (structured_data)
// and its SD-PARAMs never become fields of their own.
func (h *syslogHandler) FieldsMade() ([]string, bool) {
	return append([]string(nil), syslogFieldNames[:]...), false
}

// FieldsRead: process.syslog reads only the payload (see stage.Kind).
func (h *syslogHandler) FieldsRead() ([]string, bool) { return nil, false }

func (h *syslogHandler) Handle(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
	names := &h.names
	if names[0] == "" {
		names = &syslogFieldNames
	}
	for _, ev := range batch {
		ev.ResetFields()
		// The line aliases the payload rather than copying it: every
		// field is a substring of it, set as a Value (which copies only
		// when asked for a string), and the payload lives as long as the
		// event's fields.
		line := unsafe.String(unsafe.SliceData(ev.Payload), len(ev.Payload))
		m := syslogMsg{ev: ev, want: h.want, names: names, strict: h.strict}
		if err := parseSyslog(line, h.format, &m); err != nil {
			if h.strict {
				ev.ResetFields() // as before: a refused line carries none of its fields
				ev.Done(stage.WithClass(fmt.Errorf("invalid syslog: %w", err), stage.ErrInvalid))
				continue
			}
			ev.ResetFields()
			m.str(sfMsg, trimEOL(line))
			m.set(sfParseError, stage.StringValue(err.Error()))
		}
		out.Emit(ctx, ev)
	}
	return nil
}

// syslogMsg is where a line's fields go: the wanted ones (by syslogField
// bit) are set on the event as the parser finds them, in the order of
// syslogFieldNames, with no copy made on the way.
type syslogMsg struct {
	ev    *stage.Event
	want  uint16
	names *[numSyslogFields]string
	// strict also range-checks an RFC 5424 TIMESTAMP (stampRange): a
	// stage that refuses what does not parse refuses a month 13 too,
	// while a lenient one keeps the timestamp as sent.
	strict bool
}

// set and str test want inline; the call is made for wanted fields only.
func (m *syslogMsg) set(f int, v stage.Value) {
	if m.want&(1<<f) != 0 {
		m.put(f, v)
	}
}

func (m *syslogMsg) str(f int, s string) {
	if m.want&(1<<f) != 0 {
		m.put(f, stage.StringValue(s))
	}
}

func (m *syslogMsg) put(f int, v stage.Value) { m.ev.SetValue(m.names[f], v) }

// syslogError is why a line does not parse: the parse_error field or, with
// strict, the reason of the nack.
type syslogError struct {
	msg string
	off int // where in the line (a 0-based byte offset) parsing stopped
}

// Error says where, as process.json's errors do: "rfc5424: bad SD-PARAM
// name at offset 57".
func (e *syslogError) Error() string { return e.msg + " at offset " + strconv.Itoa(e.off) }

func errAt(off int, msg string) error { return &syslogError{msg: msg, off: off} }

// parseSyslog parses one syslog line into m. Every string field is a
// substring of line; numbers are integers. NILVALUE ("-") fields of RFC
// 5424 are left out. On an error, m may have been given some fields.
//
// One trailing line end, which octet-counted senders sometimes include,
// is dropped before anything else: left on, it would end the last field
// of the header instead of the line, so a BSD line with an empty message
// would lose its timestamp or tag to the message.
func parseSyslog(line string, f syslogFormat, m *syslogMsg) error {
	line = trimEOL(line)
	pri, rest, err := parsePRI(line)
	if err != nil {
		return err
	}
	m.set(sfPri, stage.IntValue(int64(pri)))
	m.set(sfFacility, stage.IntValue(int64(pri/8)))
	m.set(sfSeverity, stage.IntValue(int64(pri%8)))
	// RFC 5424 puts a VERSION (1 to 3 digits) and a space after PRI; an
	// RFC 3164 header starts with a month name or an RFC 3339 date.
	v := 0
	for v < len(rest) && v < 3 && rest[v] >= '0' && rest[v] <= '9' {
		v++
	}
	is5424 := v > 0 && v < len(rest) && rest[v] == ' '
	switch {
	case f == formatRFC5424 || (f == formatAuto && is5424):
		return parse5424(rest, len(line), m)
	default:
		parse3164(rest, m)
	}
	return nil
}

// parsePRI reads "<N>" with N in 0..191 written in 1 to 3 digits.
func parsePRI(line string) (int, string, error) {
	if line == "" || line[0] != '<' {
		return 0, "", errAt(0, "missing <PRI>")
	}
	pri, i := 0, 1
	for i < len(line) && i < 5 && line[i] >= '0' && line[i] <= '9' {
		pri = pri*10 + int(line[i]-'0')
		i++
	}
	switch {
	case i == 1 || i > 4 || i >= len(line) || line[i] != '>':
		return 0, "", errAt(min(i, 4), "bad <PRI>: want <0> to <191>") // a fourth digit is the first wrong byte
	case pri > 191:
		return 0, "", errAt(1, fmt.Sprintf("bad <PRI>: %d is over 191", pri))
	case i > 2 && line[1] == '0':
		return 0, "", errAt(1, "bad <PRI>: leading zero")
	}
	return pri, line[i+1:], nil
}

// parse5424 parses what follows PRI, the last part of a line of length
// end (s is always the rest of the line, so where it starts in the line
// is end-len(s)):
// VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
func parse5424(s string, end int, m *syslogMsg) error {
	ver, i := 0, 0
	for i < len(s) && i < 3 && s[i] >= '0' && s[i] <= '9' {
		ver = ver*10 + int(s[i]-'0')
		i++
	}
	if i == 0 || s[0] == '0' || ver == 0 {
		return errAt(end-len(s), "rfc5424: bad VERSION")
	}
	if i >= len(s) || s[i] != ' ' {
		return errAt(end-len(s)+i, "rfc5424: expected a space after VERSION")
	}
	m.set(sfVersion, stage.IntValue(int64(ver)))
	s = s[i+1:]
	for f := sfTimestamp; f <= sfMsgid; f++ {
		// A header field is printable ASCII up to a space: one pass
		// finds where the printable run ends, which must be the space.
		j := printableRun(s)
		if j == 0 || j >= len(s) || s[j] != ' ' {
			return headerError(s, j, f, end-len(s))
		}
		tok := s[:j]
		if f == sfTimestamp && tok != "-" {
			if !isRFC3339(tok) {
				return errAt(end-len(s), "rfc5424: bad TIMESTAMP")
			}
			if m.strict {
				if at, what := stampRange(tok); at >= 0 {
					return errAt(end-len(s)+at, "rfc5424: bad TIMESTAMP: "+what+" out of range")
				}
			}
		}
		s = s[j+1:]
		if tok == "-" {
			continue
		}
		m.str(f, tok)
	}
	n, err := sdLen(s, end-len(s))
	if err != nil {
		return err
	}
	if sd := s[:n]; sd != "-" {
		m.str(sfStructuredData, sd)
	}
	s = s[n:]
	switch {
	case s == "": // no MSG
	case s[0] != ' ':
		return errAt(end-len(s), "rfc5424: expected a space after STRUCTURED-DATA")
	default:
		msg := strings.TrimPrefix(s[1:], "\ufeff") // the BOM marks UTF-8; it is not part of the text
		m.str(sfMsg, msg)
	}
	return nil
}

// headerError says why the RFC 5424 header field f does not end at s[j]
// in a space: s[:j] is printable ASCII, and s starts at offset off of the
// line.
func headerError(s string, j, f, off int) error {
	name := strings.ToUpper(syslogFieldNames[f])
	switch {
	case j < len(s) && s[j] != ' ' && strings.IndexByte(s[j:], ' ') >= 0:
		return errAt(off+j, "rfc5424: "+name+" has a character outside printable ASCII")
	case len(s) == 0:
		return errAt(off, "rfc5424: header ends before "+name)
	case j == len(s) || s[j] != ' ':
		return errAt(off+j, "rfc5424: header ends after "+name)
	}
	return errAt(off, "rfc5424: empty "+name+" (two spaces?)")
}

// sdLen returns the length of the STRUCTURED-DATA at the start of s: "-" or
// one or more [SD-ID *(SP PARAM-NAME="VALUE")] elements, where a VALUE may
// escape '"', '\' and ']' with a backslash. s starts at offset off of the
// line.
func sdLen(s string, off int) (int, error) {
	if strings.HasPrefix(s, "-") {
		return 1, nil
	}
	if !strings.HasPrefix(s, "[") {
		return 0, errAt(off, "rfc5424: STRUCTURED-DATA must be - or start with [")
	}
	i := 0
	for i < len(s) && s[i] == '[' {
		i++
		if j := sdName(s[i:]); j == 0 {
			return 0, errAt(off+i, "rfc5424: bad SD-ID")
		} else {
			i += j
		}
		for i < len(s) && s[i] == ' ' {
			i++
			j := sdName(s[i:])
			if j == 0 {
				return 0, errAt(off+i, "rfc5424: bad SD-PARAM name")
			}
			i += j
			if !strings.HasPrefix(s[i:], "=\"") {
				return 0, errAt(off+i, "rfc5424: expected =\" after SD-PARAM name")
			}
			i += 2
			for {
				if i >= len(s) {
					return 0, errAt(off+i, "rfc5424: unterminated SD-PARAM value")
				}
				if s[i] == '\\' && i+1 < len(s) {
					i += 2
					continue
				}
				if s[i] == '"' {
					i++
					break
				}
				i++
			}
		}
		if i >= len(s) || s[i] != ']' {
			return 0, errAt(off+i, "rfc5424: expected ] to end an SD-ELEMENT")
		}
		i++
	}
	return i, nil
}

// sdName is the length of the SD-NAME at the start of s: 1 to 32 printable
// ASCII characters other than '=', ' ', ']' and '"'.
func sdName(s string) int {
	i := 0
	for i < len(s) && i < 32 {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '=' || c == ']' || c == '"' {
			break
		}
		i++
	}
	return i
}

// printableRun returns the length of the run of printable ASCII
// characters (33 to 126) at the start of s, eight bytes at a time.
func printableRun(s string) int {
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		// A byte under 0x21 borrows in w-0x21..., one of 0x7f or more
		// has or gets its top bit in w or w+0x01...; a borrow or carry
		// only ever flags a byte above one flagged rightly, so the lowest
		// flag is the first byte outside the run.
		if bad := (w | (w - 0x2121212121212121) | (w + 0x0101010101010101)) & 0x8080808080808080; bad != 0 {
			return i + bits.TrailingZeros64(bad)/8
		}
	}
	for ; i < len(b) && b[i] >= 33 && b[i] <= 126; i++ {
	}
	return i
}

func printASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// isRFC3339 checks the shape of an RFC 5424 TIMESTAMP:
// YYYY-MM-DDTHH:MM:SS[.F{1,6}](Z|+HH:MM|-HH:MM). Its values are checked by
// stampRange, with strict only; the timestamp is kept as sent.
func isRFC3339(s string) bool {
	const shape = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(shape)+1 {
		return false
	}
	d := func(c byte) bool { return c-'0' < 10 }
	if !(d(s[0]) && d(s[1]) && d(s[2]) && d(s[3]) && s[4] == '-' && d(s[5]) && d(s[6]) && s[7] == '-' &&
		d(s[8]) && d(s[9]) && s[10] == 'T' && d(s[11]) && d(s[12]) && s[13] == ':' && d(s[14]) && d(s[15]) &&
		s[16] == ':' && d(s[17]) && d(s[18])) {
		return false
	}
	s = s[len(shape):]
	if s[0] == '.' {
		n := 1
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		if n == 1 || n > 7 {
			return false
		}
		s = s[n:]
	}
	if s == "Z" {
		return true
	}
	return len(s) == 6 && (s[0] == '+' || s[0] == '-') && isDigits(s[1:3]) && s[3] == ':' && isDigits(s[4:6])
}

// stampRange checks the values of a timestamp isRFC3339 accepted: month
// 1 to 12, a day the month has (February 29 in leap years), hour under 24,
// minute under 60, second up to 60 (a leap second, as RFC 3339 allows),
// and a time zone offset's hour under 24 and minute under 60. It returns
// the offset in s of the first value out of range and its name, or -1.
func stampRange(s string) (int, string) {
	num := func(i int) int { return int(s[i]-'0')*10 + int(s[i+1]-'0') }
	year, month, day := num(0)*100+num(2), num(5), num(8)
	switch {
	case month < 1 || month > 12:
		return 5, "month"
	case day < 1 || day > daysIn(month, year):
		return 8, "day"
	case num(11) > 23:
		return 11, "hour"
	case num(14) > 59:
		return 14, "minute"
	case num(17) > 60:
		return 17, "second"
	}
	if z := len(s) - 6; s[len(s)-1] != 'Z' {
		switch {
		case num(z+1) > 23:
			return z + 1, "time zone hour"
		case num(z+4) > 59:
			return z + 4, "time zone minute"
		}
	}
	return -1, ""
}

// daysIn returns the number of days of month (1 to 12) in year.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parse3164 parses what follows PRI in the BSD format as senders write
// it:
//
//	[TIMESTAMP SP [HOSTNAME SP]] [TAG ["[" PID "]"] [":"] [SP]] MSG
//
// Senders vary a lot, so it never fails: what it cannot place is the
// message. TIMESTAMP is "Mmm dd hh:mm:ss" (day padded with a space) or, as
// rsyslog's RSYSLOG_ForwardFormat sends, an RFC 3339 timestamp.
//
// HOSTNAME is taken as rsyslog takes it: a word of letters, digits, '.',
// '_' and '-' that ends in a letter or digit and is followed by a space
// (or an IP address, which may hold colons). So "app:" and "app[12]:" are
// tags, not host names, and a line without a host name keeps its tag.
//
// TAG ends at the first character that is not alphanumeric (RFC 3164
// section 4.1.3), where '_', '.', '-' and '/' count as alphanumeric, as
// real senders use them (systemd-logind, postfix/smtpd) and rsyslog keeps
// them. It may be followed by "[PID]" (procid), and the colon after it is
// optional: rsyslog's default forward format sends "vm app hello" when the
// original line had none. So the message never starts with the tag. A word
// that ends in some other character ("system,info", "%ASA-6-302013:") is
// no tag: it stays in the message whole. A line without a timestamp is
// content (RFC 3164 section 4.3.3); only an unmistakable "app:" or
// "app[12]:" is taken from it as a tag.
func parse3164(s string, m *syslogMsg) {
	dated := false
	if n := stamp3164(s); n > 0 {
		dated = true
		m.str(sfTimestamp, s[:n])
		s = strings.TrimPrefix(s[n:], " ")
		if n := hostname3164(s); n > 0 {
			m.str(sfHostname, s[:n])
			s = strings.TrimPrefix(s[n:], " ")
		}
	}
	if tag, pid, rest, ok := tag3164(s, dated); ok {
		m.str(sfAppName, tag)
		if pid != "" {
			m.str(sfProcid, pid)
		}
		s = rest
	}
	m.str(sfMsg, s)
}

// maxTag bounds a TAG: RFC 3164 says 32 characters; senders write more.
const maxTag = 48

// tag3164 reads TAG ["[" PID "]"] [":"] [SP] at the start of s and
// returns the tag, the pid and what follows. Unless dated, the colon is
// required and the tag must start with a letter.
func tag3164(s string, dated bool) (tag, pid, rest string, ok bool) {
	i := 0
	for i < len(s) && i < maxTag && isTagChar(s[i]) {
		i++
	}
	if i == 0 || !dated && !isLetter(s[0]) {
		return "", "", "", false
	}
	tag, rest = s[:i], s[i:]
	if strings.HasPrefix(rest, "[") {
		j := strings.IndexByte(rest, ']')
		if j < 2 || j > 129 || !printASCII(rest[1:j]) {
			return "", "", "", false
		}
		pid, rest = rest[1:j], rest[j+1:]
	}
	colon := strings.HasPrefix(rest, ":")
	switch {
	case colon:
		rest = rest[1:]
	case !dated:
		return "", "", "", false
	case rest != "" && rest[0] != ' ':
		return "", "", "", false // "system,info": a word, not a tag
	}
	return tag, pid, strings.TrimPrefix(rest, " "), true
}

// hostname3164 returns the length of the HOSTNAME at the start of s, or 0
// when there is none: a host-name word followed by a space or the end of
// the line, or an IP address followed by a space.
func hostname3164(s string) int {
	i := 0
	for i < len(s) && i < 255 && (isLetter(s[i]) || isDigit(s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-') {
		i++
	}
	if i > 0 && (i == len(s) || s[i] == ' ') && (isLetter(s[i-1]) || isDigit(s[i-1])) {
		return i
	}
	if tok, _, ok := strings.Cut(s, " "); ok && strings.IndexByte(tok, ':') >= 0 {
		if _, err := netip.ParseAddr(tok); err == nil {
			return len(tok)
		}
	}
	return 0
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

func isTagChar(c byte) bool {
	return isLetter(c) || isDigit(c) || c == '_' || c == '.' || c == '/' || c == '-'
}

// stamp3164 returns the length of the timestamp at the start of s, or 0.
func stamp3164(s string) int {
	// "Mmm dd hh:mm:ss"
	if len(s) >= 15 && isMonth(s[:3]) && s[3] == ' ' &&
		(s[4] == ' ' || s[4] >= '0' && s[4] <= '3') && s[5] >= '0' && s[5] <= '9' && s[6] == ' ' &&
		isDigits(s[7:9]) && s[9] == ':' && isDigits(s[10:12]) && s[12] == ':' && isDigits(s[13:15]) &&
		(len(s) == 15 || s[15] == ' ') {
		return 15
	}
	tok, _, _ := strings.Cut(s, " ")
	if isRFC3339(tok) {
		return len(tok)
	}
	return 0
}

func isMonth(s string) bool {
	switch s {
	case "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec":
		return true
	}
	return false
}

// trimEOL drops one trailing line end ("\n", "\r\n" or "\r") that
// octet-counted senders sometimes include.
func trimEOL(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return strings.TrimSuffix(s, "\r")
}
