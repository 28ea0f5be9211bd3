package stage

// This file holds the Transport a queue transport registers, as a kind
// registers: what carries a stage's queue between processes.

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/stats"
)

// Transport is a queue transport: what carries a stage's queue between
// processes, so that one pipeline runs across several (`queue:
// {transport: NAME, ...}` in a pipeline file; package natsq is one). It
// is registered in a Registry as kinds are, and a program links it in as
// it links stage families: the pipeline knows none by name.
//
// Where a stage of this process routes to a stage whose queue is on a
// transport and that runs elsewhere, the pipeline runs in its place a
// stand-in with its name and queue settings, whose handler publishes to
// the queue; where the stage runs here, a source that consumes the queue
// feeds it. Open makes both. The stage the source feeds, then the source,
// start in the background once the rest of the pipeline has started: the
// queue holds what is published meanwhile (a database down at start holds
// no source up).
type Transport struct {
	// Name is what queue.transport names it by; it is also the key of
	// its top-level section in a pipeline file and of its figures in a
	// stage's /stats entry ("nats").
	Name string
	// Doc says what its top-level section is for (the reference shows it).
	Doc string
	// QueueDoc says what a stage's queue is on it, for the reference of
	// queue.transport: "a JetStream stream (queue.stream)".
	QueueDoc string
	// Fields are the keys of its top-level section (nats: {url: ...}),
	// for the connection every queue of a process shares.
	Fields []Field
	// QueueFields are the keys it adds to a stage's queue: besides
	// capacity, overflow and transport.
	QueueFields []Field
	// Series declares the figures it adds to /metrics for the stages it
	// carries (their values come with the stage's figures, see
	// stats.Stage.Series).
	Series []stats.Series
	// CheckSection and CheckQueue, when set, report what binding the
	// section (to Fields) or a stage's queue keys (to QueueFields) cannot
	// see: a file that does not exist, keys that exclude each other. A
	// *FieldError's path is from the section ("tls.cert") or from the
	// stage ("queue.stream"), so that the loader points at the key.
	CheckSection func(section Config) error
	CheckQueue   func(queue Config) error
	// Open is called by pipeline.New, once per pipeline with a stage
	// whose queue is on the transport, with the section bound to Fields,
	// the pipeline's name and a logger. Nothing may connect yet. It
	// returns the function that makes one stage's queue, from the
	// stage's queue keys (bound to QueueFields) and the stage's Env (its
	// name, and its settings: queue capacity and overflow): the stand-in's
	// Handler, which publishes to the queue, and the Source that
	// consumes it. The stand-in's stage is terminal: it finishes an event
	// once the transport has taken it for good. Either may have
	// Figures(*stats.Stage) (see Kind): the publisher's fill the
	// stand-in's /stats entry, the consumer's the entry of the stage it
	// feeds.
	Open func(section Config, pipeline string, log *zap.Logger) (func(queue Config, env Env) (Handler, Source, error), error)
}

// Emptier is what a transport's consumer (the Source its Open returns)
// implements to let a finite run end: Empty reports whether the queue
// holds nothing the consumer has not finished, no message waiting and
// none taken and not yet settled. Once every source of a process has
// ended its input (ErrEndOfInput) and finished its events, Run waits
// until the queue of each consumer that implements it is empty, then
// drains. A consumer without it is stopped with the rest, and what its
// queue holds waits there for the next run. The queue is the whole queue:
// where other processes publish to it too, or consume from it, the run
// waits for their messages as well (an unacked one until it is acked or
// redelivered), and ends at a moment it holds none.
type Emptier interface {
	Empty(ctx context.Context) (bool, error)
}

// transportName is what a transport may be called: it is a YAML key and
// a JSON key.
var transportName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// RegisterTransport adds t. It fails if the name is not a lower-case
// word, is "local" (the in-process port) or is taken, if Open is not set,
// or if a spec is broken (see Register).
func (r *Registry) RegisterTransport(t Transport) error {
	switch {
	case !transportName.MatchString(t.Name):
		return fmt.Errorf("stage: register transport %q: want a lower-case name of letters, digits and '_'", t.Name)
	case t.Name == "local":
		return errors.New(`stage: register transport "local": the name of the in-process queue`)
	case t.Open == nil:
		return fmt.Errorf("stage: register transport %q: Open is not set", t.Name)
	}
	for _, fs := range [][]Field{t.Fields, t.QueueFields} {
		if err := CheckSpec(fs); err != nil {
			return fmt.Errorf("stage: register transport %q: %w", t.Name, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.transports[t.Name]; dup {
		return fmt.Errorf("stage: register transport %q: already registered", t.Name)
	}
	tt := t
	r.transports[t.Name] = &tt
	return nil
}

// Transport returns the transport registered under name.
func (r *Registry) Transport(name string) (*Transport, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.transports[name]
	return t, ok
}

// Transports returns every registered transport, sorted by name.
func (r *Registry) Transports() []*Transport {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ts := make([]*Transport, 0, len(r.transports))
	for _, t := range r.transports {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	return ts
}
