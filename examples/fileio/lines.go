package fileio

// This file holds the source kind file.lines: a file's lines, one record
// each, until the end of the file ends the run.

import (
	"bufio"
	"bytes"
	"context"
	"os"

	"github.com/stagedserver/seda/stage"
)

func linesKind() stage.Kind {
	return stage.Kind{
		Name: "file.lines",
		Doc:  "each line of a file is a record; the end of the file ends the run",
		Fields: []stage.Field{
			{Name: "path", Type: stage.String, Required: true, Doc: "the file to read"},
			{Name: "max_line", Type: stage.Size, Default: int64(64 << 10), Range: stage.Between(1, 1<<30), Doc: "the longest line"},
		},
		NewInput: func(cfg stage.Config, env stage.Env) (stage.Input, error) {
			return &lines{path: cfg.String("path"), max: int(cfg.Size("max_line"))}, nil
		},
	}
}

// lines reads a file a line at a time. Read is called from one goroutine.
type lines struct {
	path string
	max  int
	f    *os.File
	sc   *bufio.Scanner
}

func (l *lines) Connect(context.Context) error {
	f, err := os.Open(l.path)
	if err != nil {
		return err
	}
	l.f, l.sc = f, bufio.NewScanner(f)
	l.sc.Buffer(nil, l.max)
	return nil
}

func (l *lines) Read(ctx context.Context) ([]byte, func(error), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if !l.sc.Scan() {
		if err := l.sc.Err(); err != nil {
			return nil, nil, err
		}
		return nil, nil, stage.ErrEndOfInput
	}
	// The record becomes the event's payload: a copy, since the scanner
	// reuses its buffer. Nobody is told how a line ended (no ack).
	return bytes.Clone(l.sc.Bytes()), nil, nil
}

func (l *lines) Close() error { return l.f.Close() }
