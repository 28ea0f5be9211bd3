package pipeline

import (
	"fmt"
	"os"
	"regexp"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger returns a zap logger writing to standard error as lc says:
// Format "console" (the default) or "json", Level "debug", "info" (the
// default), "warn" or "error".
func NewLogger(lc LogConfig) (*zap.Logger, error) {
	level := zapcore.InfoLevel
	if lc.Level != "" {
		l, err := zapcore.ParseLevel(lc.Level)
		if err != nil {
			return nil, fmt.Errorf("log level %q: want debug, info, warn or error", lc.Level)
		}
		level = l
	}
	var enc zapcore.Encoder
	switch lc.Format {
	case "", "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, fmt.Errorf("log format %q: want console or json", lc.Format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), level)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}

// The shapes Redact hides. The patterns err on the side of hiding too much:
// an unencoded "@" or "&" in a password must not leave part of it shown.
var (
	// scheme://user:PASSWORD@host — up to the last "@" before a "/".
	redactUserinfo = regexp.MustCompile(`(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)[^\s/]*@`)
	// ?password=VALUE or &password=VALUE in a URL's query.
	redactQuery = regexp.MustCompile(`(?i)([?&][^=&\s#]*(?:pass|pwd|secret|token)[^=&\s#]*=)[^&\s#]*`)
	// password=VALUE in a key=value DSN, VALUE bare or single-quoted with
	// backslash escapes (libpq's rules); an unclosed quote hides the rest.
	redactKV = regexp.MustCompile(`(?i)((?:^|[\s,;])[a-z0-9_.-]*(?:pass|pwd|secret|token)[a-z0-9_.-]*\s*=\s*)(?:'(?:[^'\\]|\\.)*(?:'|\\?$)|[^\s']\S*)`)
)

// Redact returns s with the passwords of the DSNs in it replaced by
// "xxxxx": the password of a URL-form DSN
// (postgres://user:PASSWORD@host/db), password-like query parameters
// (?password=..., sslpassword, token, secret) and password-like keys of a
// key=value DSN (host=db user=u password=PASSWORD). s may be a DSN or a
// message that contains one. Use it on anything about configuration that
// is logged.
func Redact(s string) string {
	s = redactUserinfo.ReplaceAllString(s, "${1}xxxxx@")
	s = redactQuery.ReplaceAllString(s, "${1}xxxxx")
	return redactKV.ReplaceAllString(s, "${1}xxxxx")
}
