package natsq

// This file registers NATS JetStream as a queue transport (stage.Transport):
// how a pipeline file's `nats:` section and a stage's `queue: {transport:
// nats, ...}` become a Client, Queues, publishers and consumers.

import (
	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// Register registers the transport "nats" in r: the `nats:` section, a
// stage's queue keys for transport nats, its /metrics series, and the
// publisher and consumer of each stage's queue. A program that runs
// pipelines across processes (pipectl) registers it as it registers the
// stage families; the pipeline package knows no transport by name.
func Register(r *stage.Registry) error {
	return r.RegisterTransport(stage.Transport{
		Name:        TransportName,
		Doc:         "the connection to NATS, used by the stages whose queue.transport is nats (see Across processes)",
		QueueDoc:    "a JetStream stream (queue.stream)",
		Fields:      Fields(),
		QueueFields: append([]stage.Field{StreamField()}, QueueFields()...),
		Series:      Series(),
		CheckSection: func(section stage.Config) error {
			return ConfigFrom(section).Check()
		},
		CheckQueue: func(queue stage.Config) error {
			return QueueConfigFrom(queue).Check()
		},
		Open: open,
	})
}

// open makes the Client of one pipeline, and returns how to make each
// stage's queue on it. Nothing connects until a publisher or consumer
// starts.
func open(section stage.Config, pipeline string, log *zap.Logger) (func(stage.Config, stage.Env) (stage.Handler, stage.Source, error), error) {
	c := NewClient(ConfigFrom(section), pipeline, log)
	return func(queue stage.Config, env stage.Env) (stage.Handler, stage.Source, error) {
		q := c.Queue(env.Stage, QueueConfigFrom(queue), env.Settings.Overflow, env.Settings.Capacity)
		return standIn{q.Publisher().(*publisher)}, feeder{q.Consumer().(*consumer)}, nil
	}, nil
}

// standIn is the publisher as the handler of the stand-in stage, which
// shows the queue's figures in its /stats entry.
type standIn struct{ *publisher }

// Figures puts the queue's figures into the stand-in's /stats entry.
func (s standIn) Figures(st *stats.Stage) { s.q.Fill(st) }

// feeder is the consumer as the source that feeds the stage, which shows
// the queue's figures in the stage's /stats entry.
type feeder struct{ *consumer }

// Figures puts the queue's figures into the fed stage's /stats entry.
func (f feeder) Figures(st *stats.Stage) { f.q.Fill(st) }
