package natsq

// This file registers NATS JetStream as a queue transport (stage.Transport):
// how a pipeline file's `nats:` section and a stage's `queue: {transport:
// nats, ...}` become a Client, Queues, publishers and consumers.

import (
	"fmt"
	"sync"
	"time"

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
//
// A stream is one stage's queue: the queue of a second stage on it is
// refused, naming both (pipeline.New makes the queue of every stage on
// the transport, so every process of the file refuses it). Two stages on
// one work-queue stream would read each other's records: a stand-in of
// either publishes to the subjects both consumers read, and each record
// goes to whichever stage pulls it, or round one stage again and again.
func open(section stage.Config, pipeline string, log *zap.Logger) (func(stage.Config, stage.Env) (stage.Handler, stage.Source, error), error) {
	c := NewClient(ConfigFrom(section), pipeline, log)
	var mu sync.Mutex
	owner := map[string]string{} // stream -> the stage whose queue it is
	return func(queue stage.Config, env stage.Env) (stage.Handler, stage.Source, error) {
		qc := QueueConfigFrom(queue)
		mu.Lock()
		other, taken := owner[qc.Stream]
		if !taken {
			owner[qc.Stream] = env.Stage
		}
		mu.Unlock()
		if taken && other != env.Stage {
			return nil, nil, &stage.FieldError{Field: "queue.stream", Err: fmt.Errorf(
				"stream %s is already the queue of stage %q: each stage needs a stream of its own (two stages on one would take each other's records)",
				qc.Stream, other)}
		}
		q := c.Queue(env.Stage, qc, env.Settings.Overflow, env.Settings.Capacity)
		return standIn{q.Publisher().(*publisher)}, feeder{q.Consumer().(*consumer)}, nil
	}, nil
}

// standIn is the publisher as the handler of the stand-in stage, which
// shows the queue's figures in its /stats entry.
type standIn struct{ *publisher }

// Figures puts the queue's figures into the stand-in's /stats entry, and
// makes its health degraded while no process consumes the stream (see
// unconsumed): a split front's only sign that its backs are gone. The
// engine calls it after judging the stage's health.
func (s standIn) Figures(st *stats.Stage) {
	ns := s.q.fill(st, true)
	if why, since := unconsumed(ns, time.Now()); why != "" {
		if since.IsZero() {
			since = st.Health.Since
		}
		st.Health.Worsen(stats.HealthDegraded, since, why)
	}
}

// feeder is the consumer as the source that feeds the stage, which shows
// the queue's figures in the stage's /stats entry.
type feeder struct{ *consumer }

// Figures puts the queue's figures into the fed stage's /stats entry,
// and makes the stage's health worse where the consumer knows of trouble
// the stage's own calls do not show (see consumerHealth). The pipeline
// calls it after the engine has judged the stage's health.
func (f feeder) Figures(st *stats.Stage) {
	ns := f.q.fill(st, false)
	f.q.consumerHealth(&st.Health, ns, time.Now())
}
