package db

// This file holds what db.postgres tells `pipectl lint` and `run` of a
// store whose queue delivers records again (stage.Kind.Redelivered).

import (
	"errors"

	"github.com/stagedserver/seda/stage"
)

// redelivered says what goes wrong when a store configured as cfg writes
// a record a second time, as a back does after another died holding it
// (a queue on NATS): nil when that does no harm, as with a key and
// conflict: ignore, or conflict: update with a version.
func redelivered(cfg stage.Config) error {
	keyed := len(cfg.Strings("key")) > 0
	switch conflict := cfg.String("conflict"); {
	case !keyed && conflict == "ignore" && !cfg.Bool("create"):
		// ON CONFLICT DO NOTHING with no target meets the unique indexes
		// of a table made elsewhere, which the sink does not see here;
		// but the commonest such table, a bigserial key and data, has none
		// on what the sink writes.
		return errors.New("with no key a record delivered again is stored twice unless the table has a unique index on columns the stage writes: set key and conflict: ignore (or update, with version)")
	case !keyed:
		return errors.New("with no key a record delivered again is stored twice: set key and conflict: ignore (or update, with version)")
	case conflict == "error":
		return errors.New("under conflict: error a record delivered again is refused as a duplicate (and dead-lettered): set conflict: ignore (or update, with version)")
	case conflict == "update" && cfg.String("version") == "":
		return errors.New("under conflict: update with no version a record delivered again can overwrite a newer update of its key: set version")
	}
	return nil
}
