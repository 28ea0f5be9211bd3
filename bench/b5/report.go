package b5

// This file renders B5's result: what the controllers settled on, and its
// section of bench/RESULTS.md.

import (
	"fmt"
	"strings"
	"time"

	"github.com/stagedserver/seda/bench/report"
)

// Settled is what the controllers settled on in one untuned run: the store
// stage's batch and workers at the end of the load, the range the workers
// kept after settling, and when they settled: from then on the batch did
// not change and the workers stayed within one of their final count.
type Settled struct {
	StoreBatch, StoreWorkers int
	WorkersMin, WorkersMax   int
	ParseBatch, ParseWorkers int
	After                    time.Duration
	Decisions                int
	Sampled                  time.Duration // how long the run was sampled
}

// Settle reads s's knob samples; ok is false without samples.
func (s Sample) Settle() (st Settled, ok bool) {
	ks := s.Knobs
	if len(ks) == 0 {
		return Settled{}, false
	}
	last := ks[len(ks)-1]
	st = Settled{StoreBatch: last.StoreBatch, StoreWorkers: last.StoreWorkers, ParseBatch: last.ParseBatch,
		ParseWorkers: last.ParseWorkers, Decisions: last.StoreDecisions, Sampled: last.At,
		WorkersMin: last.StoreWorkers, WorkersMax: last.StoreWorkers}
	i := len(ks) - 1
	for ; i > 0; i-- {
		k := ks[i-1]
		if k.StoreBatch != last.StoreBatch || k.StoreWorkers < last.StoreWorkers-1 || k.StoreWorkers > last.StoreWorkers+1 {
			break
		}
	}
	st.After = ks[i].At
	if i == 0 {
		st.After = 0
	}
	for _, k := range ks[i:] {
		st.WorkersMin, st.WorkersMax = min(st.WorkersMin, k.StoreWorkers), max(st.WorkersMax, k.StoreWorkers)
	}
	return st, true
}

func rates(ss []Sample) []float64 {
	var out []float64
	for _, s := range ss {
		out = append(out, s.RowsPerSec)
	}
	return out
}

// Markdown renders the results as the body of B5's section of
// bench/RESULTS.md.
func (r *Result) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "PostgreSQL %s, throwaway, durable defaults (fsync on, synchronous_commit on). %d records per run, %d connections, window %d unacked per connection, `ack: commit`; only rows acked after commit count, and every run checks that every record was acked once and is stored. %d runs, the three variants alternating (order rotated each run), each against a fresh table (id bigint primary key, body jsonb). The pipelines run in the benchmark's process, with the load client.\n\n",
		r.PGVersion, c.Records, c.Conns, c.Window, c.Runs)
	b.WriteString("| variant | rows/s median (min – max) |\n| --- | ---: |\n")
	for _, v := range []struct{ name, what string }{
		{Untuned, "untuned: accept → parse (its own stage) → store, no batch, workers or queue keys (the controllers size them)"},
		{Tuned, "tuned by hand: parse inline, store batch 2000 + linger 2ms, 8 workers, 8 connections, queue 16384"},
		{Copy, fmt.Sprintf("%d parallel `psql \\copy` of a quarter of the rows each", c.Copies)},
	} {
		s := report.Summarize(rates(r.Samples[v.name]))
		fmt.Fprintf(&b, "| %s | %s (%s – %s) |\n", v.what, report.Rate(s.Median), report.Rate(s.Min), report.Rate(s.Max))
	}
	b.WriteString("\n| untuned / baseline | ratio per run: min / median / max | target | met (median) |\n| --- | ---: | ---: | --- |\n")
	for _, v := range []string{Tuned, Copy} {
		s := report.Summarize(r.Ratios(v))
		fmt.Fprintf(&b, "| %s | %s | ≥ %.2f | %s |\n", v, s.Ratios(), Targets[v], report.Met(s.Median >= Targets[v]))
	}
	b.WriteString("\nWhat the controllers settled on in the untuned pipeline (its /stats sampled every 100 ms from the first record to the last ack): the store's batch and workers at the end of the load, the range of workers after settling (from then on the batch did not change and the workers stayed within one of their final count; the pool controller keeps trying one more and one fewer), when that was, and the store's decisions; the parse stage never blocks and keeps its run slots.\n\n")
	b.WriteString("| run | rows/s | store batch | store workers (after settling) | settled after | store decisions | parse batch / workers | load lasted |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for i, s := range r.Samples[Untuned] {
		st, ok := s.Settle()
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "| %d | %s | %d | %d (%d–%d) | %.1f s | %d | %d / %d | %.1f s |\n", i+1, report.Rate(s.RowsPerSec),
			st.StoreBatch, st.StoreWorkers, st.WorkersMin, st.WorkersMax, st.After.Seconds(), st.Decisions,
			st.ParseBatch, st.ParseWorkers, st.Sampled.Seconds())
	}
	return b.String()
}
