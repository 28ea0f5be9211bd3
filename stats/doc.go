// Package stats holds the shape of GET /stats: the figures of one stage
// (Stage) and of its queue, pool, latency, controllers and, for a
// source, its own counters. The pipeline fills them from its running
// stages; pipectl top and stats, the dashboard and any client of /stats
// read them back. It is a leaf: it imports nothing of the project, so a
// client reads /stats without linking the runtime.
//
// A queue transport (queue.transport in a pipeline file: nats) adds its
// own figures to the stages whose queue it carries: Stage.Transport, shown
// in JSON under the transport's name ("nats"), with Stage.Series for
// /metrics. Their shape is the transport's package's (natsq.Stats), so
// nothing here knows a transport.
package stats
