package pipeline

// This file holds /metrics: the pipeline's figures as a Prometheus
// collector.

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stagedserver/seda/stats"
)

// collector exposes Stats to Prometheus. It reads the stages at scrape
// time rather than mirroring every counter into client_golang metrics, so
// the hot path pays nothing for /metrics and /stats and /metrics cannot
// disagree about how they count.
type collector struct {
	p *Pipeline

	depth, capacity, workers, running, blocked *prometheus.Desc
	in, out, errors, rejected, panics          *prometheus.Desc
	latency, uptime                            *prometheus.Desc
	health, failures, oldest                   *prometheus.Desc
	shardBusiest                               *prometheus.Desc // shard_by's key spread

	// Sources' own counters (stats.Source).
	srcConns, srcProto, srcNacks, srcBytes, srcDrops, srcTLSNotAfter *prometheus.Desc
	control                                                          controlDescs // the controllers (metrics_control.go)
	memory                                                           memoryDescs  // memory_limit and bytes (metrics_memory.go)
	// series are the descriptions of the queue transports' series
	// (stats.Series), by name.
	series map[string]*prometheus.Desc
}

func newCollector(p *Pipeline) *collector {
	stage := []string{"stage"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		p:        p,
		depth:    d("pipeline_stage_queue_depth", "Events queued at the stage's port.", stage),
		capacity: d("pipeline_stage_queue_capacity", "Capacity of the stage's port.", stage),
		workers:  d("pipeline_stage_workers", "Goroutines in the stage's pool.", stage),
		running:  d("pipeline_stage_running", "Workers holding a run slot of the stage's port.", stage),
		blocked:  d("pipeline_stage_blocked", "Workers inside a blocking call (no run slot).", stage),
		in:       d("pipeline_stage_events_in_total", "Events the stage took in.", stage),
		out:      d("pipeline_stage_events_out_total", "Events the stage handed on.", stage),
		errors:   d("pipeline_stage_errors_total", "Events the stage finished with an error.", stage),
		rejected: d("pipeline_stage_rejected_total", "Events refused because the stage's queue was full.", stage),
		panics:   d("pipeline_stage_panics_total", "Panics recovered in the stage kind's code (Handle, Start, Close and the rest).", stage),
		latency: d("pipeline_stage_latency_seconds",
			"Recent latency quantiles: queue wait plus handling (sources: read to completion).",
			[]string{"stage", "quantile"}),
		uptime: d("pipeline_uptime_seconds", "Seconds since the pipeline started.", nil),
		health: d("pipeline_stage_health",
			"1 for the stage's health state now (ok, degraded, down), 0 for the others.", []string{"stage", "state"}),
		failures: d("pipeline_stage_call_failures_total",
			"Failed calls of the stage's handler: attempts it reported failed, and errors of Handle.", stage),
		oldest: d("pipeline_stage_oldest_event_seconds",
			"Age of the stage's oldest unfinished event (sources: since read); shows a stall as it happens.", stage),
		shardBusiest: d("pipeline_stage_shard_busiest_share",
			"A stage with shard_by: the busiest shard's share of the recent events (1/256: an even spread).", stage),
		srcConns: d("pipeline_source_connections_total",
			"A source's connections by event: accepted, closed, refused.", []string{"stage", "event"}),
		srcProto: d("pipeline_source_protocol_errors_total",
			"Connections or requests a source closed or refused for a protocol error, by cause.", []string{"stage", "cause"}),
		srcNacks: d("pipeline_source_nacks_total", "Records a source refused, by error class.", []string{"stage", "class"}),
		srcBytes: d("pipeline_source_bytes_in_total", "Bytes a source read from its clients.", stage),
		srcDrops: d("pipeline_source_drops_total",
			"Records a source lost without telling the sender, by reason.", []string{"stage", "reason"}),
		srcTLSNotAfter: d("pipeline_source_tls_cert_not_after_seconds",
			"A TLS source: when the certificate it serves expires (its not_after), as Unix seconds.", stage),
		control: newControlDescs(d),
		memory:  newMemoryDescs(d),
		series:  seriesDescs(p.series, d),
	}
}

// seriesDescs describes the series the queue transports declared.
func seriesDescs(declared []stats.Series, d func(name, help string, labels []string) *prometheus.Desc) map[string]*prometheus.Desc {
	descs := map[string]*prometheus.Desc{}
	for _, s := range declared {
		if _, ok := descs[s.Name]; ok {
			continue
		}
		labels := []string{"stage"}
		if s.Label != "" {
			labels = append(labels, s.Label)
		}
		descs[s.Name] = d(s.Name, s.Help, labels)
	}
	return descs
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.depth, c.capacity, c.workers, c.running, c.blocked,
		c.in, c.out, c.errors, c.rejected, c.panics, c.latency, c.uptime, c.health, c.failures, c.oldest, c.shardBusiest,
		c.srcConns, c.srcProto, c.srcNacks, c.srcBytes, c.srcDrops, c.srcTLSNotAfter} {
		ch <- d
	}
	for _, d := range c.series {
		ch <- d
	}
	c.control.describe(ch)
	c.memory.describe(ch)
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.uptime, s.UptimeS)
	c.memory.collect(ch, s.Memory)
	for i := range s.Stages {
		c.memory.collectStage(ch, &s.Stages[i])
	}
	for _, st := range s.Stages {
		n := st.Name
		gauge(c.depth, float64(st.Queue.Depth), n)
		gauge(c.capacity, float64(st.Queue.Capacity), n)
		gauge(c.workers, float64(st.Pool.Workers), n)
		gauge(c.running, float64(st.Pool.Running), n)
		gauge(c.blocked, float64(st.Pool.Blocked), n)
		counter(c.in, st.In, n)
		counter(c.out, st.Out, n)
		counter(c.errors, st.Errors, n)
		counter(c.rejected, st.Rejected, n)
		counter(c.panics, st.Panics, n)
		gauge(c.latency, st.Latency.P50/1e3, n, "0.5")
		gauge(c.latency, st.Latency.P99/1e3, n, "0.99")
		gauge(c.oldest, st.Latency.OldestMs/1e3, n)
		for _, state := range []string{stats.HealthOK, stats.HealthDegraded, stats.HealthDown} {
			v := 0.0
			if st.Health.State == state {
				v = 1
			}
			gauge(c.health, v, n, state)
		}
		counter(c.failures, st.Health.Failures, n)
		if st.Shards != nil {
			gauge(c.shardBusiest, st.Shards.Busiest, n)
		}
		if src := st.Source; src != nil {
			counter(c.srcConns, src.Connections.Accepted, n, "accepted")
			counter(c.srcConns, src.Connections.Closed, n, "closed")
			counter(c.srcConns, src.Connections.Refused, n, "refused")
			for cause, v := range src.ProtocolErrors {
				counter(c.srcProto, v, n, cause)
			}
			counter(c.srcNacks, src.Nacks.Busy, n, "busy")
			counter(c.srcNacks, src.Nacks.Invalid, n, "invalid")
			counter(c.srcNacks, src.Nacks.TooLarge, n, "too_large")
			counter(c.srcNacks, src.Nacks.Database, n, "database")
			counter(c.srcNacks, src.Nacks.Other, n, "other")
			counter(c.srcBytes, src.BytesIn, n)
			counter(c.srcDrops, src.Drops.QueueFull, n, "queue_full")
			counter(c.srcDrops, src.Drops.Oversized, n, "oversized")
			counter(c.srcDrops, src.Drops.SocketOverrun, n, "socket_overrun")
			counter(c.srcDrops, src.Drops.MemoryLimit, n, "memory_limit")
			if src.TLS != nil {
				gauge(c.srcTLSNotAfter, float64(src.TLS.NotAfter.Unix()), n)
			}
		}
		for _, sr := range st.Series {
			d, ok := c.series[sr.Name]
			if !ok {
				continue // not declared by its transport: not served
			}
			kind, labels := prometheus.GaugeValue, []string{n}
			if sr.Counter {
				kind = prometheus.CounterValue
			}
			if sr.Label != "" {
				labels = append(labels, sr.LabelValue)
			}
			ch <- prometheus.MustNewConstMetric(d, kind, sr.Value, labels...)
		}
		if st.Control != nil {
			c.control.collect(ch, n, st.Control)
		}
	}
}
