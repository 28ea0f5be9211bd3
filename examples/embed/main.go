// Command embed is a program that embeds the framework: it links the stock
// stage families, adds a function for process.func, registers a kind of
// its own, and runs a pipeline described in YAML until SIGINT or SIGTERM.
//
//	go run ./examples/embed
//	printf '{"level":"error","msg":"disk full"}\n' | nc -N 127.0.0.1 7001
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"sync"

	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stages/process"
)

const pipelineYAML = `
name: embed
stages:
  accept:
    kind: netio.tcp
    listen: ${EMBED_LISTEN:-127.0.0.1:7001}
    next: parse
  parse:
    kind: process.json
    require: [level]
    inline: true
    next: tag
  tag:
    kind: process.func      # runs the Go function added below as "tag"
    func: tag
    inline: true
    next: print
  print:
    kind: example.print     # this program's own kind
    prefix: "embed: "
    workers: 1
`

// printSink is the kind example.print: it writes each event's fields as
// JSON and finishes the event, which acks it to the client.
type printSink struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

var _ stage.Handler = (*printSink)(nil)

func (s *printSink) Handle(ctx context.Context, batch []*stage.Event, _ stage.Emitter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range batch {
		fields := map[string]stage.Value{}
		for name, v := range ev.Fields() {
			fields[name] = v
		}
		line, err := json.Marshal(fields)
		if err == nil {
			_, err = fmt.Fprintf(s.w, "%s%s\n", s.prefix, line)
		}
		ev.Done(err) // nil: ack; an error: nack with its text
	}
	return nil
}

// newRegistry returns the kinds this program's pipelines may use; the
// print sink writes to w.
func newRegistry(w io.Writer) (*stage.Registry, error) {
	reg := stage.NewRegistry()
	if err := netio.Register(reg); err != nil {
		return nil, err
	}
	if err := process.Register(reg); err != nil {
		return nil, err
	}
	var funcs process.Funcs
	err := funcs.Add("tag", func(ctx context.Context, ev *stage.Event) (bool, error) {
		if level, _ := ev.Field("level"); level == "debug" {
			return false, nil // dropped: finished as handled, so acked
		}
		ev.Set("seen_by", "embed")
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if err := process.RegisterFuncs(reg, &funcs); err != nil {
		return nil, err
	}
	err = reg.Register(stage.Kind{
		Name:     "example.print",
		Doc:      "Writes each event's fields as one JSON line to standard output, then acks it.",
		Terminal: true, // finishes events itself; takes no next
		Fields: []stage.Field{
			{Name: "prefix", Type: stage.String, Doc: "text written before each line"},
		},
		NewHandler: func(cfg stage.Config, env stage.Env) (stage.Handler, error) {
			return &printSink{w: w, prefix: cfg.String("prefix")}, nil
		},
	})
	return reg, err
}

func main() {
	reg, err := newRegistry(os.Stdout)
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := pipeline.Parse("embed.yaml", []byte(pipelineYAML), reg, os.LookupEnv)
	if err != nil {
		log.Fatal(err) // every problem, each as embed.yaml:LINE:COL: message
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg})
	if err != nil {
		log.Fatal(err)
	}
	if err := p.RunWithSignals(context.Background()); err != nil {
		log.Fatal(err)
	}
}
