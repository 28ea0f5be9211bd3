package pipeline

// This file holds the /metrics series of the pipeline's memory limit and
// of the stages' bytes.

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stagedserver/seda/stats"
)

// memoryDescs are the /metrics series of memory_limit (stats.Memory) and
// of the bytes a stage holds: its queue's (stats.Queue) and a source's
// unfinished events' (stats.Stage.HeldBytes).
type memoryDescs struct {
	limit, held, refused, waits, goLimit *prometheus.Desc
	queueBytes, queueMax, srcHeld        *prometheus.Desc
}

func newMemoryDescs(d func(name, help string, labels []string) *prometheus.Desc) memoryDescs {
	stage := []string{"stage"}
	return memoryDescs{
		limit:   d("pipeline_memory_limit_bytes", "The bytes of records the pipeline may hold (memory_limit, or its default).", nil),
		held:    d("pipeline_memory_held_bytes", "The bytes of records the pipeline holds: queued, in batches, in buffers its events keep.", nil),
		refused: d("pipeline_memory_refused_total", "Records the sources' doors refused because the pipeline held its memory limit.", nil),
		waits:   d("pipeline_memory_waits_total", "Reads the sources' doors held back because the pipeline held its memory limit (overflow block; a NATS queue's consumer under either overflow).", nil),
		goLimit: d("pipeline_go_memory_limit_bytes", "The Go runtime's soft memory limit (GOMEMLIMIT); 0 when none.", nil),
		queueBytes: d("pipeline_stage_queue_bytes",
			"Bytes of the records queued at the stage's port (a queue on NATS: the stream's, as stored, and on a publishing process those waiting to be published).", stage),
		queueMax: d("pipeline_stage_queue_max_bytes",
			"The stage's queue bound in bytes (queue.max_bytes); 0 when none.", stage),
		srcHeld: d("pipeline_source_held_bytes",
			"Bytes the source's unfinished events hold against the memory limit.", stage),
	}
}

func (c memoryDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.limit, c.held, c.refused, c.waits, c.goLimit, c.queueBytes, c.queueMax, c.srcHeld} {
		ch <- d
	}
}

// collect sends the pipeline's memory series.
func (c memoryDescs) collect(ch chan<- prometheus.Metric, m *stats.Memory) {
	if m == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(m.LimitBytes))
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(m.HeldBytes))
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(m.Refused))
	ch <- prometheus.MustNewConstMetric(c.waits, prometheus.CounterValue, float64(m.Waits))
	ch <- prometheus.MustNewConstMetric(c.goLimit, prometheus.GaugeValue, float64(m.GoLimitBytes))
}

// collectStage sends a stage's bytes.
func (c memoryDescs) collectStage(ch chan<- prometheus.Metric, st *stats.Stage) {
	n := st.Name
	ch <- prometheus.MustNewConstMetric(c.queueBytes, prometheus.GaugeValue, float64(st.Queue.Bytes), n)
	ch <- prometheus.MustNewConstMetric(c.queueMax, prometheus.GaugeValue, float64(st.Queue.MaxBytes), n)
	if st.Source != nil || st.InFlight != 0 || st.HeldBytes != 0 {
		ch <- prometheus.MustNewConstMetric(c.srcHeld, prometheus.GaugeValue, float64(st.HeldBytes), n)
	}
}
