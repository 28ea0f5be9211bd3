package db

// This file holds how a DSN pgx cannot parse is reported: what is wrong
// with it, without the DSN or its password.

import (
	"errors"
	"net/url"
	"strings"

	"github.com/stagedserver/seda/stage"
)

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
	return stage.Redact(strings.ReplaceAll(msg, dsn, stage.Redact(dsn)))
}
