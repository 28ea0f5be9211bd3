package b8

// This file renders B8's result: ratios, CPU per record, and its section
// of bench/RESULTS.md.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stagedserver/seda/bench/report"
)

func column(ss []Sample, f func(Sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

// Ratios returns the pipeline's rows/s over contender c's, run by run.
func (r *Result) Ratios(c string) []float64 {
	p, o := r.Samples[Pipeline], r.Samples[c]
	var out []float64
	for i := range min(len(p), len(o)) {
		if o[i].RowsPerSec > 0 {
			out = append(out, p[i].RowsPerSec/o[i].RowsPerSec)
		}
	}
	return out
}

// Met reports whether the median of the per-run ratios over c meets its
// target.
func (r *Result) Met(c string) bool { return report.Median(r.Ratios(c)) >= targets[c] }

// PipelineCPU is the median CPU per record of the pipeline process.
func (r *Result) PipelineCPU() time.Duration { return r.medianCPU(Pipeline) }

// medianCPU is the median CPU per record of contender c's process.
func (r *Result) medianCPU(c string) time.Duration {
	return time.Duration(report.Median(column(r.Samples[c], func(s Sample) float64 { return float64(s.CPUPerRecord()) })))
}

// PGRatios returns PostgreSQL's CPU per row fed by the pipeline over its
// CPU per row fed by psql \copy, run by run.
func (r *Result) PGRatios() []float64 {
	p, o := r.Samples[Pipeline], r.Samples[Copy]
	var out []float64
	for i := range min(len(p), len(o)) {
		if o[i].PGCPU > 0 && o[i].Rows > 0 && p[i].Rows > 0 {
			out = append(out, float64(perRow(p[i].PGCPU, p[i].Rows))/float64(perRow(o[i].PGCPU, o[i].Rows)))
		}
	}
	return out
}

var descriptions = map[string]string{
	Pipeline: "the README's syslog pipeline as written (`pipectl run`)",
	Copy:     "4 parallel `psql \\copy`",
	Rsyslog:  "rsyslogd imtcp → ompgsql (batches of 1000, 4 workers)",
	JSON:     "the example JSON pipeline (`pipectl run`, ack: commit; B3's)",
}

// Markdown renders the section of bench/RESULTS.md.
func (r *Result) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "PostgreSQL %s, throwaway, durable defaults (fsync on, synchronous_commit on).", r.PGVersion)
	if r.Rsyslog != "" {
		fmt.Fprintf(&b, " %s.", r.Rsyslog)
	}
	fmt.Fprintf(&b, " %d RFC 5424 messages per run, octet-counted, over %d TCP connections (psql: %d processes), "+
		"stored as (host, app, msg) rows; %d runs, contenders alternating (order rotated each run), each into a fresh table. "+
		"Every run checks that the table holds every row exactly (count and a checksum of every row's columns). "+
		"Machine load average (1, 5, 15 min) before: %s; after: %s.\n\n",
		c.Records, c.Conns, c.Conns, c.Runs, r.LoadBefore, r.LoadAfter)

	b.WriteString("| contender | rows/s median (min – max) | its process CPU µs / record | PostgreSQL CPU µs / record | other CPU µs / record |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: |\n")
	for _, name := range c.Contenders {
		ss := r.Samples[name]
		if len(ss) == 0 {
			continue
		}
		rates := column(ss, func(s Sample) float64 { return s.RowsPerSec })
		perRec := func(f func(Sample) time.Duration) string {
			return fmt.Sprintf("%.2f", report.Median(column(ss, func(s Sample) float64 { return us(perRow(f(s), s.Rows)) })))
		}
		fmt.Fprintf(&b, "| %s: %s | %s (%s – %s) | %s | %s | %s |\n", name, descriptions[name],
			report.Rate(report.Median(rates)), report.Rate(slices.Min(rates)), report.Rate(slices.Max(rates)),
			perRec(func(s Sample) time.Duration { return s.ProcCPU }),
			perRec(func(s Sample) time.Duration { return s.PGCPU }),
			perRec(func(s Sample) time.Duration { return s.OtherCPU }))
	}
	b.WriteString("\nRows/s runs from the first byte sent to the last row stored (the table's size polled every 10 ms, " +
		"then the rows counted); for json, to the last ack, which follows the commit. " +
		"Process CPU is utime+stime of the contender's own process (pipectl run, rsyslogd; the psql processes together) " +
		"over that time; PostgreSQL's sums the postmaster and its children (exited ones once reaped), up to the last row stored " +
		"(the count after it is left out; for copy, until the psql sessions' backends are gone); other is the rest of the machine's busy CPU " +
		"(the sender in the benchmark's process, and anything else running).\n\n")

	b.WriteString("| pipeline / contender | ratio per run: min / median / max | target | met (median per-run ratio) |\n")
	b.WriteString("| --- | ---: | ---: | --- |\n")
	for _, name := range []string{Copy, Rsyslog} {
		rs := r.Ratios(name)
		if len(rs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %.2f / %.2f / %.2f | ≥ %.2f | %s |\n", name, slices.Min(rs), report.Median(rs), slices.Max(rs),
			targets[name], report.Met(r.Met(name)))
	}
	if rs := r.PGRatios(); len(rs) > 0 {
		fmt.Fprintf(&b, "\nPostgreSQL's CPU per row fed by the pipeline over fed by psql \\copy, per run: %.2f / %.2f / %.2f (min / median / max; target ≤ %.2f: %s).\n",
			slices.Min(rs), report.Median(rs), slices.Max(rs), TargetPGRatio, report.Met(report.Median(rs) <= TargetPGRatio))
	} else {
		b.WriteString("\nPostgreSQL's CPU per row fed by the pipeline over fed by psql \\copy: not measured (no run of both with PostgreSQL's CPU).\n")
	}
	cpu := r.PipelineCPU()
	fmt.Fprintf(&b, "\nPipeline process CPU per record (median): **%.2f µs** (target ≤ %.2f µs: %s).",
		us(cpu), us(TargetCPU), report.Met(cpu <= TargetCPU))
	if len(r.Samples[JSON]) > 0 {
		j := r.medianCPU(JSON)
		fmt.Fprintf(&b, " JSON path (json above): **%.2f µs** per record (target ≤ %.2f µs: %s).",
			us(j), us(TargetJSONCPU), report.Met(j <= TargetJSONCPU))
	}
	b.WriteString("\n")
	if len(r.Profile) > 0 {
		b.WriteString("\nWhere the pipeline process's CPU went in its first run (perf record at 499 Hz, self time by function):\n\n```\n")
		b.WriteString(strings.Join(r.Profile, "\n"))
		b.WriteString("\n```\n")
	}
	if len(r.ProfileInclusive) > 0 {
		b.WriteString("\nThe pipeline's own functions by inclusive time (children, self):\n\n```\n")
		b.WriteString(strings.Join(r.ProfileInclusive, "\n"))
		b.WriteString("\n```\n")
	}
	return b.String()
}
