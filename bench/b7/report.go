package b7

// This file renders B7's result: per-row costs by part, the worked
// estimate, and its section of bench/RESULTS.md.

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/stagedserver/seda/bench/report"
)

func cores() int { return runtime.NumCPU() }

// median returns the median of f over c's samples.
func (r *Result) median(c string, f func(Sample) float64) float64 {
	var xs []float64
	for _, s := range r.Samples[c] {
		xs = append(xs, f(s))
	}
	return report.Median(xs)
}

func perRowUS(f func(Sample) time.Duration) func(Sample) float64 {
	return func(s Sample) float64 { return us(s.PerRow(f(s))) }
}

// Costs are the split's median CPU per row, in µs, by part.
type Costs struct{ Front, Back, Nats, PG float64 }

// SplitCosts returns the split's per-row costs.
func (r *Result) SplitCosts() Costs {
	return Costs{
		Front: r.median(Split, perRowUS(func(s Sample) time.Duration { return s.Front })),
		Back:  r.median(Split, perRowUS(func(s Sample) time.Duration { return s.Back })),
		Nats:  r.median(Split, perRowUS(func(s Sample) time.Duration { return s.Nats })),
		PG:    r.median(Split, perRowUS(func(s Sample) time.Duration { return s.PG })),
	}
}

// Estimate is the worked estimate: rows/s that n front and m back
// machines of k cores, used to a fraction u, would carry, given the
// per-row costs; with one NATS server (or cluster) and one PostgreSQL of
// k cores each, whichever saturates first bounds it.
func Estimate(c Costs, n, m, k int, u float64) (rows float64, bound string) {
	capOf := func(machines int, usPerRow float64) float64 {
		if usPerRow <= 0 {
			return 0
		}
		return float64(machines) * float64(k) * u * 1e6 / usPerRow
	}
	parts := []struct {
		name string
		cap  float64
	}{
		{"fronts", capOf(n, c.Front)}, {"backs", capOf(m, c.Back)},
		{"NATS", capOf(1, c.Nats)}, {"PostgreSQL", capOf(1, c.PG)},
	}
	rows, bound = parts[0].cap, parts[0].name
	for _, p := range parts[1:] {
		if p.cap > 0 && p.cap < rows {
			rows, bound = p.cap, p.name
		}
	}
	return rows, bound
}

// Markdown is B7's section of bench/RESULTS.md.
func (r *Result) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "%d records over %d connections per run, %d runs of each, alternating; PostgreSQL %s; %d cores. "+
		"`single`: accept → parse → store in one pipectl process; `split`: a front (accept, parse) and a back (store) "+
		"pipectl process joined by a JetStream stream (nats-server, file store, a process of its own); `embedded`: one "+
		"pipectl process whose store queue is a stream on its embedded JetStream (the durable queue). "+
		"A run ends when the last row is stored; every run checks every record stored once. "+
		"PostgreSQL's CPU is its processes' less the backend serving the benchmark's own row counts, polled for the end "+
		"of a run (shown apart as poll in the table of runs): the split and embedded ack a record once it is in "+
		"JetStream, so their runs end with the store draining the stream while the benchmark counts.\n\n",
		c.Records, c.Conns, c.Runs, r.PGVersion, r.Cores)
	rate := func(x string) float64 { return r.median(x, func(s Sample) float64 { return s.RowsPerSec }) }
	pipe := func(x string) float64 { return r.median(x, perRowUS(Sample.Pipeline)) }
	pg := func(x string) float64 { return r.median(x, perRowUS(func(s Sample) time.Duration { return s.PG })) }
	ratio := func(a, b float64) string {
		if b == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	b.WriteString("| | single | split | embedded | split / single | embedded / single |\n| --- | --- | --- | --- | --- | --- |\n")
	row := func(name string, f func(string) float64, cell func(float64) string) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", name, cell(f(Single)), cell(f(Split)), cell(f(Embedded)),
			ratio(f(Split), f(Single)), ratio(f(Embedded), f(Single)))
	}
	usCell := func(x float64) string { return fmt.Sprintf("%.1f µs", x) }
	row("rows/s (median)", rate, report.Rate)
	row("pipeline CPU per row (pipectl processes + nats-server)", pipe, usCell)
	row("PostgreSQL CPU per row", pg, usCell)
	row("all CPU per row", func(x string) float64 { return pipe(x) + pg(x) }, usCell)
	b.WriteString("\n")
	sc := r.SplitCosts()
	fmt.Fprintf(&b, "The split's CPU per row by part (medians): front %.1f µs, back %.1f µs, nats-server %.1f µs, PostgreSQL %.1f µs. "+
		"The hop costs %.1f µs of pipeline CPU per row over the single process (packing and compressing envelopes, publish, "+
		"PubAck, pull, decoding, ack, and the server's store, dedup and delivery), %.1f× the single process's; on one machine "+
		"the split runs at %.2f× the single process's rows/s: the same cores do more work per row.\n\n",
		sc.Front, sc.Back, sc.Nats, sc.PG, pipe(Split)-pipe(Single), pipe(Split)/pipe(Single), rate(Split)/rate(Single))
	writeTargets(&b, rate, pipe, pg, sc)
	const k, u = 8, 0.7
	fmt.Fprintf(&b, "**Worked estimate** from these per-row costs, for machines of %d cores used to %.0f%%: a front machine carries "+
		"%d×%.1f×10⁶/%.1f ≈ %s rows/s, a back machine %d×%.1f×10⁶/%.1f ≈ %s rows/s; one NATS server of %d cores ≈ %s rows/s "+
		"(R=1; replicas multiply its work), one PostgreSQL of %d cores ≈ %s rows/s. N fronts and M backs carry the least of "+
		"N×front, M×back, NATS and PostgreSQL:\n\n",
		k, u*100, k, u, sc.Front, report.Rate(capRows(k, u, sc.Front)), k, u, sc.Back, report.Rate(capRows(k, u, sc.Back)),
		k, report.Rate(capRows(k, u, sc.Nats)), k, report.Rate(capRows(k, u, sc.PG)))
	b.WriteString("| fronts N | backs M | rows/s | bound by |\n| --- | --- | --- | --- |\n")
	for _, nm := range [][2]int{{1, 1}, {2, 1}, {2, 2}, {4, 2}, {4, 4}, {8, 4}} {
		rows, bound := Estimate(sc, nm[0], nm[1], k, u)
		fmt.Fprintf(&b, "| %d | %d | %s | %s |\n", nm[0], nm[1], report.Rate(rows), bound)
	}
	b.WriteString("\nThe estimate assumes per-row costs stay as measured (batches as full, no network saturation) and one stream; " +
		"past one NATS server's or PostgreSQL's capacity, more fronts and backs add nothing: split the stream " +
		"(several stages, or several pipelines) or the database.\n\n")
	b.WriteString("| run | contender | rows/s | front µs/row | back µs/row | nats µs/row | pg µs/row | poll µs/row |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, x := range Contenders {
		for i, s := range r.Samples[x] {
			fmt.Fprintf(&b, "| %d | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n", i+1, x, report.Rate(s.RowsPerSec),
				us(s.PerRow(s.Front)), us(s.PerRow(s.Back)), us(s.PerRow(s.Nats)), us(s.PerRow(s.PG)), us(s.PerRow(s.Poll)))
		}
	}
	return b.String()
}

func capRows(k int, u, usPerRow float64) float64 {
	if usPerRow <= 0 {
		return 0
	}
	return float64(k) * u * 1e6 / usPerRow
}

// writeTargets writes the table of issue 18's B7 targets (docs/BENCHMARKS.md),
// each marked met or not, so that sedabench lists the missed ones. A
// target whose contender did not run is left out.
func writeTargets(b *strings.Builder, rate, pipe, pg func(string) float64, sc Costs) {
	type target struct {
		name, want string
		got        float64
		unit       string
		ok         bool
		needs      []string
	}
	hop := pipe(Split) - pipe(Single)
	ts := []target{
		{"split ÷ single, rows/s", "≥ 0.6", rate(Split) / rate(Single), "×", rate(Split)/rate(Single) >= 0.6, []string{Single, Split}},
		{"the hop: split's pipeline CPU per row less single's", "≤ 5 µs", hop, " µs", hop <= 5, []string{Single, Split}},
		{"nats-server CPU per row", "≤ 2 µs", sc.Nats, " µs", sc.Nats <= 2, []string{Split}},
		{"PostgreSQL CPU per row, split ÷ single", "≤ 1.2", pg(Split) / pg(Single), "×", pg(Split)/pg(Single) <= 1.2, []string{Single, Split}},
		{"embedded ÷ single, rows/s", "≥ 0.7", rate(Embedded) / rate(Single), "×", rate(Embedded)/rate(Single) >= 0.7, []string{Single, Embedded}},
		{"one 8-core NATS server, worked estimate", "≥ 1M rows/s", capRows(8, 0.7, sc.Nats) / 1e6, "M rows/s", capRows(8, 0.7, sc.Nats) >= 1e6, []string{Split}},
	}
	b.WriteString("| target | wanted | measured | met |\n| --- | --- | --- | --- |\n")
	for _, t := range ts {
		ran := true
		for _, c := range t.needs {
			ran = ran && rate(c) > 0
		}
		if !ran {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %.2f%s | %s |\n", t.name, t.want, t.got, t.unit, report.Met(t.ok))
	}
	b.WriteString("\n")
}
