package pipeline

// This file holds the expansion of ${VAR} references in a pipeline file,
// and its errors, which never show a secret.

import (
	"errors"
	"fmt"
	"strings"
)

// expandEnv replaces ${VAR} and ${VAR:-default} in s with values from
// lookup, and $$ with a literal $. A $ followed by anything else is kept as
// written, so that a value of `$` (the whole record in a columns map) or
// `$.id` needs no escaping.
//
// An unset variable without a default expands to "": pipeline files rely on
// it (`dsn: ${DATABASE_URL}` is empty when the variable is unset, and the
// stage then picks its fallback). As in the shell, ${VAR:-default} takes the
// default when VAR is unset or empty. Defaults are literal text: they cannot
// hold another ${...}.
//
// Errors never quote s whole; a bad reference is a *refError, which
// quotes the reference unless the field is secret (see hidden).
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New(`unterminated "${": write ${VAR} or ${VAR:-default}, or $$ for a literal $`)
			}
			body := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(body, ":-")
			if !isEnvName(name) {
				return "", &refError{body: body}
			}
			if strings.Contains(def, "${") {
				return "", errors.New("a default cannot hold another ${...}: write ${VAR} or ${VAR:-default}")
			}
			v, ok := "", false
			if lookup != nil {
				v, ok = lookup(name)
			}
			if hasDef && (!ok || v == "") {
				v = def
			}
			b.WriteString(v)
			i += 2 + end + 1
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), nil
}

// refError is a ${...} whose name is not a variable's.
type refError struct{ body string }

const refHelp = "write ${VAR} or ${VAR:-default} with VAR made of letters, digits and _, or $$ for a literal $"

func (e *refError) Error() string {
	return fmt.Sprintf("bad variable reference \"${%s}\": %s", clip(e.body), refHelp)
}

// hidden is err as a secret field's value may show it: a bad reference
// not quoted (a password may hold "${" and what follows).
func hidden(err error) error {
	var re *refError
	if errors.As(err, &re) {
		return errors.New("bad variable reference (not shown: the field is secret): " + refHelp)
	}
	return err
}

func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
