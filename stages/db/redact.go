package db

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// redacted replaces a password wherever a DSN is shown.
const redacted = "xxxxx"

var (
	// kvPassword matches password=... and sslpassword=... in a key=value
	// DSN: a quoted value (with \' and \\ escapes) or a bare word (with
	// \ escapes), and whatever sticks to either up to the next space.
	kvPassword = regexp.MustCompile(`(?is)(^|\s)((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?(?:\\.|[^\s\\])*\\?|(?:\\.|[^\s\\])*\\?)`)
	// urlPassword matches the same parameters in a URL's query.
	urlPassword = regexp.MustCompile(`(?i)([?&](?:ssl)?password=)([^&#]*)`)
)

// Redact returns dsn with every password replaced by xxxxx: the one in a
// URL's user info (postgres://user:secret@host/db), password and
// sslpassword query parameters, and password= / sslpassword= in a
// key=value DSN (quoted or not). It errs on the side of hiding: in a URL
// whose password holds an unescaped '@', everything up to the last '@' of
// the user info goes. Use it wherever a DSN could reach a log or an error.
func Redact(dsn string) string {
	out, _ := redact(dsn)
	return out
}

// redact returns the redacted DSN and the secrets it removed.
func redact(dsn string) (string, []string) {
	var secrets []string
	lower := strings.ToLower(dsn)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		i := strings.Index(dsn, "://") + 3
		rest := dsn[i:]
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if c := strings.IndexByte(rest[:at], ':'); c >= 0 {
				secrets = append(secrets, rest[c+1:at])
				if p, err := url.PathUnescape(rest[c+1 : at]); err == nil && p != rest[c+1:at] {
					secrets = append(secrets, p)
				}
				rest = rest[:c+1] + redacted + rest[at:]
			}
		}
		rest = urlPassword.ReplaceAllStringFunc(rest, func(m string) string {
			sub := urlPassword.FindStringSubmatch(m)
			secrets = append(secrets, sub[2])
			if p, err := url.QueryUnescape(sub[2]); err == nil && p != sub[2] {
				secrets = append(secrets, p)
			}
			return sub[1] + redacted
		})
		return dsn[:i] + rest, nonEmpty(secrets)
	}
	out := kvPassword.ReplaceAllStringFunc(dsn, func(m string) string {
		sub := kvPassword.FindStringSubmatch(m)
		v := sub[3]
		secrets = append(secrets, v)
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = v[1 : len(v)-1]
		}
		secrets = append(secrets, unescapeKV(v))
		return sub[1] + sub[2] + redacted
	})
	return out, nonEmpty(secrets)
}

func nonEmpty(ss []string) []string {
	out := ss[:0]
	for _, s := range ss {
		if s != "" && s != redacted {
			out = append(out, s)
		}
	}
	return out
}

// parseProblem says what pgx found wrong with dsn, without the DSN itself
// (pgx quotes it, and a URL parse error quotes it unredacted) and without
// any password it holds.
func parseProblem(dsn string, err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		msg = msg[i+3:]
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		msg = strings.ReplaceAll(msg, ue.Error(), ue.Err.Error())
	}
	_, secrets := redact(dsn)
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, redacted)
	}
	return strings.ReplaceAll(msg, dsn, Redact(dsn))
}

// unescapeKV undoes the backslash escapes of a key=value DSN's value.
func unescapeKV(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}
