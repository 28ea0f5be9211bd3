package pipeline

// This file holds the /metrics series of the stages' controllers.

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stagedserver/seda/stats"
)

// controlDescs are the /metrics series of the stages' controllers
// (stats.Control): the knobs now, auto or pinned and their range,
// and a source's admission control.
type controlDescs struct {
	batch, auto, limit, decisions *prometheus.Desc
	admRate, admTarget, admP99    *prometheus.Desc
	admAdmitted, admShed          *prometheus.Desc
}

func newControlDescs(d func(name, help string, labels []string) *prometheus.Desc) controlDescs {
	stage := []string{"stage"}
	return controlDescs{
		batch: d("pipeline_stage_batch_size", "Events a worker of the stage takes at once at most, now.", stage),
		auto: d("pipeline_stage_knob_auto",
			"1 when a controller sizes the knob (batch, workers), 0 when it is pinned.", []string{"stage", "knob"}),
		limit: d("pipeline_stage_knob_limit",
			"The range a controller keeps an auto knob in (bound min or max).", []string{"stage", "knob", "bound"}),
		decisions: d("pipeline_stage_control_decisions_total",
			"Changes of the stage's knobs, by its controllers and by operators.", stage),
		admRate: d("pipeline_source_admission_rate",
			"Records per second a source under admission control lets in at most; 0 while it does not limit.", stage),
		admTarget: d("pipeline_source_admission_target_seconds",
			"The p99 latency from read to finish that a source's admission control keeps under.", stage),
		admP99: d("pipeline_source_admission_p99_seconds",
			"The p99 latency from read to finish the admission controller saw in its last window.", stage),
		admAdmitted: d("pipeline_source_admission_admitted_total", "Records a source's admission control let in.", stage),
		admShed:     d("pipeline_source_admission_shed_total", "Records a source refused busy at the door.", stage),
	}
}

func (c controlDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.batch, c.auto, c.limit, c.decisions,
		c.admRate, c.admTarget, c.admP99, c.admAdmitted, c.admShed} {
		ch <- d
	}
}

func (c controlDescs) collect(ch chan<- prometheus.Metric, name string, cs *stats.Control) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.decisions, cs.Decisions, name)
	for _, k := range []struct {
		knob string
		s    *stats.Knob
	}{{stats.KnobBatch, cs.Batch}, {stats.KnobWorkers, cs.Workers}} {
		if k.s == nil {
			continue
		}
		auto := 0.0
		if k.s.Auto {
			auto = 1
		}
		gauge(c.auto, auto, name, k.knob)
		gauge(c.limit, float64(k.s.Min), name, k.knob, "min")
		gauge(c.limit, float64(k.s.Max), name, k.knob, "max")
	}
	if cs.Batch != nil {
		gauge(c.batch, float64(cs.Batch.Now), name)
	}
	if a := cs.Admission; a != nil {
		gauge(c.admRate, a.Rate, name)
		gauge(c.admTarget, a.TargetMs/1e3, name)
		gauge(c.admP99, a.P99Ms/1e3, name)
		counter(c.admAdmitted, a.Admitted, name)
		counter(c.admShed, a.Shed, name)
	}
}
