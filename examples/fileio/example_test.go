package fileio_test

// This file runs the two kinds in a pipeline: a file's lines, split into
// fields by a processor of the program's own, written as JSON lines.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/examples/fileio"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
)

// kv is a processor: each "key=value" word of a line becomes a field.
func kv() stage.Kind {
	return stage.Kind{Name: "example.kv", Doc: "key=value words become fields",
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
				for _, ev := range batch {
					for _, w := range strings.Fields(string(ev.Payload)) {
						if k, v, ok := strings.Cut(w, "="); ok {
							ev.Set(k, v)
						}
					}
					_ = out.Emit(ctx, ev)
				}
				return nil
			}), nil
		}}
}

// A file is read to its end, and the run ends with it: Run drains the
// pipeline and returns nil once every line is written.
func Example() {
	dir, _ := os.MkdirTemp("", "fileio")
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "in.txt"), filepath.Join(dir, "out.jsonl")
	os.WriteFile(in, []byte("level=info msg=started\nlevel=error msg=disk\nno fields here\n"), 0o644)

	reg := stage.NewRegistry()
	if err := fileio.Register(reg); err != nil {
		fmt.Println(err)
		return
	}
	reg.Register(kv())
	yaml := `
name: copy
stages:
  read: {kind: file.lines, path: "` + in + `", next: split}
  split: {kind: example.kv, inline: true, next: write}
  write: {kind: file.jsonl, path: "` + out + `", workers: 1}
`
	cfg, err := pipeline.Parse("copy.yaml", []byte(yaml), reg, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := p.Run(context.Background()); err != nil { // returns at the end of the file
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(out)
	fmt.Print(string(b))
	// Output:
	// {"level":"info","msg":"started"}
	// {"level":"error","msg":"disk"}
	// {"payload":"no fields here"}
}
