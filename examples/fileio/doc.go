// Package fileio holds two kinds written against the public API alone
// (packages stage and pipeline), as a program that embeds the framework
// would write its own:
//
//   - file.lines (lines.go), a source: each line of a file is a record,
//     and the end of the file ends the run. It is a stage.Input: it reads,
//     and the runtime makes the events, emits them, waits for them and
//     shuts it down.
//   - file.jsonl (jsonl.go), a sink: each event's fields become a line of
//     JSON in a file; the events are finished once the lines are written
//     and the file is synced, since Done(nil) promises durability.
//
// Register adds both to a stage.Registry. docs/DESIGN.md ("Writing a
// kind") explains the contracts they follow.
package fileio

import "github.com/stagedserver/seda/stage"

// Register registers file.lines and file.jsonl in r.
func Register(r *stage.Registry) error {
	for _, k := range []stage.Kind{linesKind(), jsonlKind()} {
		if err := r.Register(k); err != nil {
			return err
		}
	}
	return nil
}
