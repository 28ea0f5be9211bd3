package b3

// This file renders B3's result: its ratios against each baseline, its
// targets, and its section of bench/RESULTS.md.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stagedserver/seda/bench/report"
)

func rates(ss []Sample) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = s.RowsPerSec
	}
	return out
}

// Ratios returns pipeline rows/s over v's, run by run.
func (r *Result) Ratios(v string) []float64 {
	p, b := r.Samples[Pipeline], r.Samples[v]
	var out []float64
	for i := range min(len(p), len(b)) {
		if b[i].RowsPerSec > 0 {
			out = append(out, p[i].RowsPerSec/b[i].RowsPerSec)
		}
	}
	return out
}

// Met reports whether the median ratio against v meets its target.
func (r *Result) Met(v string) bool { return report.Median(r.Ratios(v)) >= targets[v] }

// PGRatios returns PostgreSQL's CPU per row fed by the pipeline over its
// CPU per row fed by psql \copy (the COPY ceiling), run by run.
func (r *Result) PGRatios() []float64 {
	p, c := r.Samples[Pipeline], r.Samples[Copy]
	var out []float64
	for i := range min(len(p), len(c)) {
		if p[i].Rows > 0 && c[i].Rows > 0 && c[i].PGCPU > 0 {
			out = append(out, (p[i].PGCPU.Seconds()/float64(p[i].Rows))/(c[i].PGCPU.Seconds()/float64(c[i].Rows)))
		}
	}
	return out
}

// Markdown renders the results as the body of B3's section of
// bench/RESULTS.md.
func (r *Result) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "PostgreSQL %s, throwaway, durable defaults (fsync on, synchronous_commit on). %d connections, window %d unacked per connection; %d records per run (naive: %d). %d runs, variants alternating (order rotated each run), each against a fresh table (id bigint primary key, body jsonb). Only rows acked after commit count; every run checks that every record was acked and every acked id is stored once.\n\n",
		r.PGVersion, c.Conns, c.Window, c.Records, c.NaiveRecords, c.Runs)
	b.WriteString("| variant | rows/s median (min – max) | process CPU s / M rows | PostgreSQL CPU s / M rows | peak RSS |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: |\n")
	names := map[string]string{
		Pipeline: "pipeline (netio.tcp → process.json inline → db.postgres copy)",
		Copy:     "COPY ceiling (`psql \\copy` from a file)",
		Naive:    "naive (goroutine per conn, INSERT per record)",
		Chan:     "channel pipeline (same handlers, channels)",
	}
	for _, v := range c.Variants {
		ss := r.Samples[v]
		if len(ss) == 0 {
			continue
		}
		var pc, pg, rss []float64
		for _, s := range ss {
			m := float64(s.Rows) / 1e6
			pc = append(pc, s.ProcCPU.Seconds()/m)
			pg = append(pg, s.PGCPU.Seconds()/m)
			rss = append(rss, float64(s.PeakRSS))
		}
		rs := rates(ss)
		peak := report.MiB(int64(report.Median(rss)))
		if v == Copy {
			peak = "—"
		}
		fmt.Fprintf(&b, "| %s | %s (%s – %s) | %.1f | %.1f | %s |\n", names[v],
			report.Rate(report.Median(rs)), report.Rate(slices.Min(rs)), report.Rate(slices.Max(rs)),
			report.Median(pc), report.Median(pg), peak)
	}
	b.WriteString("\nProcess CPU and peak RSS are of the benchmark process, which runs the server and the load client together (the same client for every TCP variant); for the COPY ceiling the process CPU is psql's. PostgreSQL CPU sums utime+stime of the postmaster and its children (reaped ones included: a run's figure is read once its sessions' backends are gone), after a CHECKPOINT before each run; background work (WAL writer, checkpointer, autovacuum) during a run is charged to it, which weighs most on the short naive runs.\n\n")
	b.WriteString("| pipeline / baseline | ratio per run: min / median / max | ratio of medians | target | met (median per-run ratio) |\n| --- | ---: | ---: | ---: | --- |\n")
	for _, v := range []string{Copy, Naive, Chan} {
		rs := r.Ratios(v)
		if len(rs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %.2f / %.2f / %.2f | %.2f | ≥ %.1f | %s |\n", v, slices.Min(rs), report.Median(rs), slices.Max(rs),
			report.Median(rates(r.Samples[Pipeline]))/report.Median(rates(r.Samples[v])), targets[v], report.Met(r.Met(v)))
	}
	if rs := r.PGRatios(); len(rs) > 0 {
		fmt.Fprintf(&b, "\nPostgreSQL's CPU per row fed by the pipeline over fed by psql \\copy, per run: %.2f / %.2f / %.2f (min / median / max; target ≤ %.2f: %s).\n",
			slices.Min(rs), report.Median(rs), slices.Max(rs), TargetPGRatio, report.Met(report.Median(rs) <= TargetPGRatio))
	} else {
		b.WriteString("\nPostgreSQL's CPU per row fed by the pipeline over fed by psql \\copy: not measured (PostgreSQL's CPU is measured only on the benchmark's own server).\n")
	}
	if len(r.Latency) > 0 {
		b.WriteString("\nAck latency (send to the ack that covers the record) at half the pipeline's median maximum rate, rate-limited load:\n\n")
		b.WriteString("| variant | offered rows/s | acked rows/s | p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
		for _, v := range []string{Pipeline, Chan} {
			l, ok := r.Latency[v]
			if !ok {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", v, report.Rate(l.Rate), report.Rate(l.Achieved),
				ms(l.P50), ms(l.P99), ms(l.Max))
		}
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
