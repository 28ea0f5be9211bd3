package db

// This file tests what db.postgres tells of a store whose queue delivers
// records again: stored twice, refused, or overwriting a newer update.

import (
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
)

// A store is told of when a record delivered again (a queue on NATS,
// after a back died) would be stored twice, refused, or overwrite a newer
// update; a key with conflict: ignore, or update with version, is fine.
func TestRedelivered(t *testing.T) {
	for _, tc := range []struct {
		values map[string]any
		want   string // "" or a part of the error
	}{
		{map[string]any{}, "with no key a record delivered again is stored twice"},
		{map[string]any{"conflict": "ignore", "create": true}, "with no key"},
		{map[string]any{"conflict": "ignore"}, "unless the table has a unique index on columns the stage writes"},
		{map[string]any{"key": []string{"id"}}, "under conflict: error a record delivered again is refused"},
		{map[string]any{"key": []string{"id"}, "conflict": "update"}, "can overwrite a newer update"},
		{map[string]any{"key": []string{"id"}, "conflict": "ignore"}, ""},
		{map[string]any{"key": []string{"id"}, "conflict": "update", "version": "v"}, ""},
	} {
		tc.values["dsn"], tc.values["table"], tc.values["columns"] = "postgres://x@127.0.0.1/db", "t", [][2]string{{"id", "id"}}
		cfg, err := stage.Bind(Fields(), stage.NewConfig(tc.values))
		if err != nil {
			t.Fatal(err)
		}
		err = redelivered(cfg)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.values, err, tc.want)
		}
	}
}
