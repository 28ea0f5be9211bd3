package b6

// This file renders B6's result: its section of bench/RESULTS.md and its
// picture of the admission run.

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/stagedserver/seda/bench/plot"
	"github.com/stagedserver/seda/bench/report"
)

// Picture is the file name the benchmark command writes the picture to,
// next to RESULTS.md, which links it.
const Picture = "b6.svg"

// Markdown renders the results as the body of B6's section of
// bench/RESULTS.md.
func (r *Result) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "PostgreSQL %s, throwaway, durable defaults. A statement-level trigger sleeps %v per INSERT or COPY on the table; the store is pinned at `batch: 200`, `workers: 4`, `max_conns: 4` (queue at its default). The pipeline (netio.tcp → process.json inline → db.postgres) runs in the benchmark's process with the load client, %d connections. Sustained: closed loop, window 1,000 per connection, for %v. Overload: %.0f× that rate offered open-loop (window %d per connection) for %v to the pipeline with `admission: {target: %v}` on its source",
		r.PGVersion, c.Sleep, c.Conns, c.SustainDuration, c.Factor, c.Window, c.Duration, c.Target)
	if r.Baseline != nil {
		fmt.Fprintf(&b, ", then for %v to the same pipeline without it (backpressure only), for comparison", r.Baseline.Duration)
	}
	b.WriteString(". Acked rows/s count the seconds of the offered period; latency is from writing a record to reading the ack that covers it.\n\n")
	a := r.Admission
	cols := []*Overload{a}
	head := "| figure | with admission |"
	if r.Baseline != nil {
		cols = append(cols, r.Baseline)
		head += " without |"
	}
	b.WriteString(head + "\n| --- |" + strings.Repeat(" ---: |", len(cols)) + "\n")
	row := func(name string, f func(o *Overload) string) {
		b.WriteString("| " + name + " |")
		for _, o := range cols {
			b.WriteString(" " + f(o) + " |")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "| sustained (backpressure only) | %s rows/s |%s\n", report.Rate(r.Sustained), strings.Repeat(" |", len(cols)-1))
	row("offered", func(o *Overload) string { return report.Rate(o.Offered) + " records/s for " + o.Duration.String() })
	row("sent", func(o *Overload) string { return fmt.Sprint(o.Sent) })
	row("acked rows/s", func(o *Overload) string {
		return fmt.Sprintf("%s (%.2f of sustained)", report.Rate(o.AckedRate), o.AckedRate/r.Sustained)
	})
	row("ack latency p50 / p99", func(o *Overload) string { return ms(o.P50) + " / " + ms(o.P99) })
	row("answered (acked + nacked of sent)", func(o *Overload) string {
		return fmt.Sprintf("%d + %d of %d (%d unanswered)", o.Acked, o.Nacked, o.Sent, o.Unanswered())
	})
	row("nacks by reason", nackReasons)
	row("every acked row in the table", func(o *Overload) string {
		return fmt.Sprintf("yes (%d acked, %d rows)", o.Acked, o.Stored)
	})
	row("peak RSS (benchmark process: pipeline and client)", func(o *Overload) string { return report.MiB(o.PeakRSS) })
	if n := len(a.Samples); n > 0 {
		last := a.Samples[n-1]
		fmt.Fprintf(&b, "| admitted rate at the end, records shed at the door | %s/s, %d |%s\n", report.Rate(last.AdmitRate), last.Shed,
			strings.Repeat(" |", len(cols)-1))
	}
	b.WriteString("\n| target | measured | met |\n| --- | ---: | --- |\n")
	fmt.Fprintf(&b, "| acked rows/s ≥ %.1f× sustained | %.2f | %s |\n", TargetAcked, r.AckedRatio(), report.Met(r.AckedRatio() >= TargetAcked))
	fmt.Fprintf(&b, "| p99 ack latency ≤ %.0f× the %v target | %.2f× (%s) | %s |\n", TargetP99, c.Target, r.P99Ratio(), ms(a.P99), report.Met(r.P99Ratio() <= TargetP99))
	fmt.Fprintf(&b, "| every record answered | %d unanswered | %s |\n", a.Unanswered(), report.Met(a.Unanswered() == 0 && len(a.Errors) == 0))
	fmt.Fprintf(&b, "| only busy nacks | %s | %s |\n", nackReasons(a), report.Met(a.OnlyBusy()))
	fmt.Fprintf(&b, "| peak RSS reported | %s | yes |\n", report.MiB(a.PeakRSS))
	fmt.Fprintf(&b, "\nThe admission run over time (drawn by the benchmark command): offered, acked and busy-nacked records per second with the admitted rate the controller set; the client's p99 per second against the target, with the controller's own p99 (read to finish); the store's batch size and workers (pinned here).\n\n![B6 over time](%s)\n", Picture)
	return b.String()
}

func ms(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f ms", float64(d)/1e6)
}

// WriteSVG draws the admission run over time.
func (r *Result) WriteSVG(w io.Writer) error {
	a := r.Admission
	var sec, sent, acked, nacked, p99 []float64
	for i, s := range a.Seconds {
		x := float64(i) + 0.5
		sec = append(sec, x)
		sent, acked, nacked = append(sent, float64(s.Sent)), append(acked, float64(s.Acked)), append(nacked, float64(s.Nacked))
		if s.Latency.Count() > 0 {
			p99 = append(p99, float64(s.Latency.Quantile(0.99))/1e6)
		} else {
			p99 = append(p99, 0)
		}
	}
	var at, rate, admP99, batch, workers []float64
	var rateAt []float64
	for _, s := range a.Samples {
		x := s.At.Seconds()
		at = append(at, x)
		if s.AdmitRate > 0 {
			rateAt, rate = append(rateAt, x), append(rate, s.AdmitRate)
		}
		admP99 = append(admP99, float64(s.AdmitP99)/1e6)
		batch, workers = append(batch, float64(s.StoreBatch)), append(workers, float64(s.StoreWorkers))
	}
	end := float64(len(a.Seconds))
	line := func(y float64) []float64 { return []float64{y, y} }
	tgt := float64(r.Config.Target) / 1e6
	f := plot.Figure{
		Title:  fmt.Sprintf("B6: %.0f× the sustained rate offered to a slow database, admission: {target: %v}", r.Config.Factor, r.Config.Target),
		XLabel: "seconds from the first record",
		Panels: []plot.Panel{
			{Title: "records per second", YLabel: "records/s", Series: []plot.Series{
				{Name: "offered (sent)", Color: "#999999", X: sec, Y: sent},
				{Name: "nacked busy", Color: "#ff7f0e", X: sec, Y: nacked},
				{Name: "acked", Color: "#2ca02c", X: sec, Y: acked},
				{Name: "admitted rate", Color: "#1f77b4", X: rateAt, Y: rate},
				{Name: "sustained", Color: "#2ca02c", X: []float64{0, end}, Y: line(r.Sustained), Dashed: true},
			}},
			{Title: "p99 ack latency", YLabel: "ms", YMax: 4 * tgt, Series: []plot.Series{
				{Name: "client p99 per second", Color: "#d62728", X: sec, Y: p99},
				{Name: "controller's p99", Color: "#9467bd", X: at, Y: admP99},
				{Name: "target", Color: "#000000", X: []float64{0, end}, Y: line(tgt), Dashed: true},
				{Name: "2× target", Color: "#888888", X: []float64{0, end}, Y: line(2 * tgt), Dashed: true},
			}},
			{Title: "store batch size", YLabel: "events", Series: []plot.Series{
				{Name: "batch", Color: "#8c564b", X: at, Y: batch},
			}},
			{Title: "store workers", YLabel: "workers", Series: []plot.Series{
				{Name: "workers", Color: "#17becf", X: at, Y: workers},
			}},
		},
	}
	return f.WriteSVG(w)
}
