package b10

// This file renders B10's result: the trends of the sampled figures, the
// Markdown section of bench/RESULTS.md and its picture.

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/stagedserver/seda/bench/plot"
)

// Picture is the file name of B10's picture, next to RESULTS.md.
const Picture = "b10.svg"

// Trend is one sampled figure over the soak.
type Trend struct {
	Name         string
	First, Last  float64 // the first and the last sample
	Min, Max     float64 // over the last two thirds
	Slope        float64 // least squares over the last two thirds, per minute
	Unit         string
	Scale        float64 // divides the raw values for display
	Samples      int     // in the last two thirds
	SpanMinutes  float64 // of the last two thirds
	SlopeOfRange float64 // Slope*SpanMinutes over the mean: the drift over the span, as a fraction
}

// Trends are RSS, goroutines and open files over the soak; samples whose
// figure could not be read are left out of that figure.
func (r *Result) Trends() []Trend {
	get := []struct {
		name, unit string
		scale      float64
		f          func(Sample) float64
	}{
		{"RSS", "MiB", 1 << 20, func(s Sample) float64 { return float64(s.RSS) }},
		{"goroutines", "", 1, func(s Sample) float64 { return float64(s.Goroutines) }},
		{"open files", "", 1, func(s Sample) float64 { return float64(s.Files) }},
	}
	var out []Trend
	for _, g := range get {
		var xs, ys []float64
		for _, s := range r.Samples {
			if v := g.f(s); v > 0 {
				xs, ys = append(xs, s.At.Minutes()), append(ys, v)
			}
		}
		t := Trend{Name: g.name, Unit: g.unit, Scale: g.scale}
		if len(xs) < 3 {
			out = append(out, t)
			continue
		}
		t.First, t.Last = ys[0], ys[len(ys)-1]
		cut := r.Config.Duration.Minutes() / 3
		var tx, ty []float64
		for i := range xs {
			if xs[i] >= cut {
				tx, ty = append(tx, xs[i]), append(ty, ys[i])
			}
		}
		t.Samples = len(tx)
		if len(tx) >= 2 {
			t.Min, t.Max = ty[0], ty[0]
			var mean float64
			for _, y := range ty {
				t.Min, t.Max, mean = min(t.Min, y), max(t.Max, y), mean+y/float64(len(ty))
			}
			t.Slope = Slope(tx, ty)
			t.SpanMinutes = tx[len(tx)-1] - tx[0]
			if mean > 0 {
				t.SlopeOfRange = t.Slope * t.SpanMinutes / mean
			}
		}
		out = append(out, t)
	}
	return out
}

// Slope is the least-squares slope of y over x.
func Slope(x, y []float64) float64 {
	n := float64(len(x))
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx, sy, sxx, sxy = sx+x[i], sy+y[i], sxx+x[i]*x[i], sxy+x[i]*y[i]
	}
	if d := n*sxx - sx*sx; d > 0 {
		return (n*sxy - sx*sy) / d
	}
	return 0
}

func (t Trend) v(x float64) string {
	if t.Unit == "" {
		return fmt.Sprintf("%.0f", x/t.Scale)
	}
	return fmt.Sprintf("%.1f %s", x/t.Scale, t.Unit)
}

// Markdown renders the result as its RESULTS.md section.
func (r *Result) Markdown() string {
	c := r.Config
	var b strings.Builder
	fmt.Fprintf(&b, "Soak of %v. The example pipeline (B3's: netio.tcp, ack: commit → process.json → db.postgres COPY, store queue under `overflow: block`) runs as `pipectl run` in its own process against a throwaway PostgreSQL. The sustained rate is measured first on a fresh process (%d windowed connections, window 1,000, %v); the soak then offers %.0f%% of it on a fresh process and table, from %d loops of %d connections, each loop a sequence of %v rounds of fresh connections (staggered), with %.0f%% of the records malformed (JSON cut short) and %.0f%% of the connections dropped abruptly halfway through their round (closed without half-close or waiting for acks; the next round reconnects). The process's RSS (/proc/PID/status VmRSS), goroutines (go_goroutines from /metrics) and open files (/proc/PID/fd) are sampled every %v; slopes are least squares over the last two thirds, per minute.\n\n",
		c.Duration, c.Conns, c.SustainDuration, c.Fraction*100, c.Loops, c.Conns/c.Loops, c.Round, c.Malformed*100, c.DropConns*100, c.Every)
	b.WriteString("| figure | value |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| sustained rate | %.0f rows/s |\n", r.Sustained)
	fmt.Fprintf(&b, "| offered in the soak | %.0f records/s for %v |\n", r.Rate, r.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "| records sent / acked / nacked / unanswered on dropped connections | %d / %d / %d / %d |\n", r.Sent, r.Acked, r.Nacked, r.Unanswered)
	fmt.Fprintf(&b, "| malformed records sent / acked | %d / %d |\n", r.Malformed, r.MalformedAcks)
	fmt.Fprintf(&b, "| nacks by reason | %s |\n", reasons(r.Nacks))
	fmt.Fprintf(&b, "| connections made / dropped abruptly | %d / %d (%d rounds) |\n", r.Conns, r.Dropped, r.Rounds)
	fmt.Fprintf(&b, "| every acked id in the table | yes (%d acked, %d rows) |\n", r.Acked, r.TableRows)
	fmt.Fprintf(&b, "| pipeline up throughout, drained cleanly (exit 0) | yes |\n")
	fmt.Fprintf(&b, "| pipeline peak RSS (VmHWM) | %.0f MiB |\n", float64(r.PeakRSS)/(1<<20))
	b.WriteString("\n| figure | first sample | last sample | min / max over the last two thirds | slope over the last two thirds | drift over that span / mean |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, t := range r.Trends() {
		unit := t.Unit
		if unit != "" {
			unit = " " + unit
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s / %s | %+.3f%s/min | %+.1f%% |\n", t.Name, t.v(t.First), t.v(t.Last), t.v(t.Min), t.v(t.Max),
			t.Slope/t.Scale, unit, t.SlopeOfRange*100)
	}
	fmt.Fprintf(&b, "\n![B10: RSS, goroutines and open files of the pipeline process over the soak](%s)\n", Picture)
	return b.String()
}

// WriteSVG draws the soak: acked records per second, RSS, goroutines and
// open files against minutes.
func (r *Result) WriteSVG(w io.Writer) error {
	var at, rss, gorAt, gor, filesAt, files, rate, rateAt []float64
	for i, s := range r.Samples {
		x := s.At.Minutes()
		if s.RSS > 0 {
			at, rss = append(at, x), append(rss, float64(s.RSS)/(1<<20))
		}
		if s.Goroutines > 0 {
			gorAt, gor = append(gorAt, x), append(gor, float64(s.Goroutines))
		}
		if s.Files > 0 {
			filesAt, files = append(filesAt, x), append(files, float64(s.Files))
		}
		if i > 0 {
			p := r.Samples[i-1]
			if dt := (s.At - p.At).Seconds(); dt > 0 {
				rateAt, rate = append(rateAt, x), append(rate, float64(s.Acked-p.Acked)/dt)
			}
		}
	}
	f := plot.Figure{
		Title:  fmt.Sprintf("B10: soak at %.0f%% of the sustained rate, %.0f%% malformed, %.0f%% of connections dropped", r.Config.Fraction*100, r.Config.Malformed*100, r.Config.DropConns*100),
		XLabel: "minutes",
		Panels: []plot.Panel{
			{Title: "acked records per second", YLabel: "records/s", Series: []plot.Series{{Name: "acked", Color: "#2ca02c", X: rateAt, Y: rate}}},
			{Title: "pipeline RSS", YLabel: "MiB", Series: []plot.Series{{Name: "VmRSS", Color: "#1f77b4", X: at, Y: rss}}},
			{Title: "goroutines", YLabel: "goroutines", Series: []plot.Series{{Name: "go_goroutines", Color: "#9467bd", X: gorAt, Y: gor}}},
			{Title: "open files", YLabel: "fds", Series: []plot.Series{{Name: "/proc/PID/fd", Color: "#8c564b", X: filesAt, Y: files}}},
		},
	}
	return f.WriteSVG(w)
}

// reasons lists the nacks by reason, those that differ only in " at
// offset N" (where the JSON was cut short) together.
func reasons(all map[string]uint64) string {
	if len(all) == 0 {
		return "none"
	}
	m := map[string]uint64{}
	for k, v := range all {
		if i := strings.Index(k, " at offset "); i >= 0 {
			k = k[:i] + " at offset N"
		}
		m[k] += v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%q: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
