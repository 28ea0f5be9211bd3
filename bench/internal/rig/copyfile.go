package rig

// This file holds the COPY file of the records the load client sends, for
// the `psql \copy` baselines.

import (
	"bufio"
	"errors"
	"os"
	"strconv"

	"github.com/stagedserver/seda/internal/loadgen"
)

// WriteCopyFile writes the records from..to-1, as the load client sends
// them, in COPY text format: id TAB record. The records hold no backslash
// or tab, so they need no escaping.
func WriteCopyFile(path string, from, to int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var b []byte
	for id := from; id < to; id++ {
		b = strconv.AppendInt(b[:0], id, 10)
		b = append(b, '\t')
		b = append(loadgen.Record(b, id), '\n')
		w.Write(b)
	}
	return errors.Join(w.Flush(), f.Close())
}
