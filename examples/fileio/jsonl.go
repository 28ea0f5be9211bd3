package fileio

// This file holds the sink kind file.jsonl: each event's fields as a line
// of JSON in a file.

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"sync"

	"github.com/stagedserver/seda/stage"
)

func jsonlKind() stage.Kind {
	return stage.Kind{
		Name:     "file.jsonl",
		Doc:      "writes each event's fields as a line of JSON (an event without fields: its payload, as {\"payload\": ...})",
		Terminal: true,
		Fields:   []stage.Field{{Name: "path", Type: stage.String, Required: true, Doc: "the file to append to"}},
		NewHandler: func(cfg stage.Config, env stage.Env) (stage.Handler, error) {
			return &jsonl{path: cfg.String("path")}, nil
		},
	}
}

// jsonl appends to a file; its workers take turns (mu).
type jsonl struct {
	path string
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	line []byte
}

// Start opens the file: before the pipeline takes input.
func (s *jsonl) Start(context.Context) error {
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.f, s.w = f, bufio.NewWriter(f)
	return nil
}

// Handle writes the batch and finishes its events once it is on disk: a
// record JSON cannot hold is refused on its own; a failed write or sync
// refuses the rest. Done(nil) promises the event is durable, so the file
// is synced before it: flushed bytes may still be only in the page cache.
func (s *jsonl) Handle(_ context.Context, batch []*stage.Event, _ stage.Emitter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	written := batch[:0:0]
	for _, ev := range batch {
		line, err := s.encode(ev)
		if err != nil {
			ev.Done(stage.WithClass(err, stage.ErrInvalid))
			continue
		}
		s.w.Write(line) // its error comes back from Flush
		written = append(written, ev)
	}
	err := s.w.Flush()
	if err == nil {
		err = s.f.Sync()
	}
	stage.DoneAll(written, err)
	return nil
}

// encode returns ev as a line of JSON, in s.line.
func (s *jsonl) encode(ev *stage.Event) ([]byte, error) {
	b := append(s.line[:0], '{')
	if ev.NumFields() == 0 {
		v, _ := json.Marshal(string(ev.Payload))
		b = append(append(b, `"payload":`...), v...)
	}
	for name, v := range ev.Fields() {
		if len(b) > 1 {
			b = append(b, ',')
		}
		k, _ := json.Marshal(name)
		j, err := v.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), j...)
	}
	s.line = append(b, '}', '\n')
	return s.line, nil
}

// FieldsRead says the sink reads every field (see stage.Kind).
func (s *jsonl) FieldsRead() ([]string, bool) { return nil, true }

// Close flushes and closes the file, after the stage's workers are done.
func (s *jsonl) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.w.Flush()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}
