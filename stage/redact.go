package stage

// This file holds Redact: hiding the secrets in a DSN or in a message
// that may quote one.

import (
	"regexp"
	"strings"
)

// redacted replaces a secret wherever one is shown.
const redacted = "xxxxx"

// The shapes Redact hides. They err on the side of hiding too much: an
// unencoded "@", "/" or "&" in a password must not leave part of it shown.
var (
	// urlStart is where a URL begins: its scheme and "://".
	urlStart = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*://`)
	// shown finds, left to right, a URL (up to the next space) or a
	// secret-like key=value pair of a key=value DSN. The pair's key holds
	// pass, pwd, secret or token (password, sslpassword, auth_token) and
	// follows the start, a space or , ; ( " ' ? & (a query string without
	// its URL). Its value is bare, with backslash escapes, or quoted with
	// ' (libpq's rules: \' and \\) or ", and whatever sticks to either up
	// to the next space; an unclosed quote hides the rest.
	shown = regexp.MustCompile(`(?is)([a-z][a-z0-9+.-]*://\S*)|((?:^|[\s,;("'?&])[a-z0-9_.-]*(?:pass|pwd|secret|token)[a-z0-9_.-]*\s*=\s*)('(?:[^'\\]|\\.)*'?(?:\\.|[^\s\\])*\\?|"(?:[^"\\]|\\.)*"?(?:\\.|[^\s\\])*\\?|(?:\\.|[^\s\\])*\\?)`)
	// queryParam is a secret-like parameter of a URL's query.
	queryParam = regexp.MustCompile(`(?i)([?&][^=&#]*(?:pass|pwd|secret|token)[^=&#]*=)[^&#]*`)
	// urlListSep is where the next URL of a list (as NATS takes a
	// cluster's: nats://a:4222,nats://b:4222) begins.
	urlListSep = regexp.MustCompile(`,\s*[a-zA-Z][a-zA-Z0-9+.-]*://`)
)

// Redact returns s with every secret in it replaced by "xxxxx". s is a DSN,
// or a message (an error, a log line) that may hold DSNs and key=value
// settings. Hidden are: a URL's password (postgres://user:PASSWORD@host/db,
// any scheme; everything up to the last "@" goes, so a password with an
// unencoded "@" or "/" is hidden whole), a NATS URL's token
// (nats://TOKEN@host; each URL of a list on its own), the values of a URL's query
// parameters named like a secret (password, sslpassword, token, secret,
// pwd), and the values of key=value pairs named so (host=db
// password='s3 cret' dbname=x), bare or quoted as libpq quotes them.
//
// When s begins with a URL, it is taken as one DSN: the password runs up
// to its last "@" even across spaces, and a query value up to the next
// "&" or "#"; key=value pairs after the URL are hidden too. In a message,
// a URL ends at the first space.
//
// Redact is stable: Redact(Redact(s)) == Redact(s). Use it on anything
// about configuration that may be logged, returned in an error or shown in
// stats.
func Redact(s string) string {
	if m := urlStart.FindString(s); m != "" {
		if seps := urlListSep.FindAllStringIndex(s, -1); seps != nil {
			// A list of URLs: each on its own, or the first's secret
			// would be taken for part of the last one's user.
			var b strings.Builder
			from := 0
			for _, sep := range seps {
				b.WriteString(Redact(s[from:sep[0]]))
				b.WriteByte(',')
				from = sep[0] + 1
			}
			b.WriteString(Redact(strings.TrimLeft(s[from:], " \t")))
			return b.String()
		}
		// The pairs after it too (postgres://h/db password=x): the URL
		// itself, up to its first space, is left as redactURL made it.
		return redactPairs(m+redactURL(m, s[len(m):]), func(u string) string { return u })
	}
	return redactPairs(s, Redact) // a URL (or a list of them) up to the next space
}

// redactPairs hides the values of s's secret-like key=value pairs, and
// gives each URL in it (up to the next space) to url.
func redactPairs(s string, url func(string) string) string {
	return shown.ReplaceAllStringFunc(s, func(m string) string {
		if urlStart.MatchString(m) {
			return url(m)
		}
		sub := shown.FindStringSubmatch(m)
		return sub[2] + redacted
	})
}

// redactURL redacts a URL after its "scheme://". A user without a
// password is kept (postgres://app@db), except where the scheme's user
// is a token (NATS: nats://TOKEN@host).
func redactURL(scheme, rest string) string {
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if c := strings.IndexByte(rest[:at], ':'); c >= 0 {
			rest = rest[:c+1] + redacted + rest[at:]
		} else if tokenUser(scheme) {
			rest = redacted + rest[at:]
		}
	}
	return queryParam.ReplaceAllString(rest, "${1}"+redacted)
}

// tokenUser reports whether a URL of scheme ("nats://") takes a token
// where others take a user name: NATS's schemes.
func tokenUser(scheme string) bool {
	switch strings.ToLower(strings.TrimSuffix(scheme, "://")) {
	case "nats", "tls", "ws", "wss":
		return true
	}
	return false
}
