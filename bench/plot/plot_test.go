package plot_test

// This file tests that the picture is well-formed SVG with its lines and
// legend.

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/stagedserver/seda/bench/plot"
)

// The picture is well-formed SVG with a line per series and its legend.
func TestWriteSVG(t *testing.T) {
	f := plot.Figure{Title: "rates & latency", XLabel: "s", Panels: []plot.Panel{
		{Title: "rates", YLabel: "records/s", Series: []plot.Series{
			{Name: "offered", Color: "#888", X: []float64{0, 1, 2}, Y: []float64{75000, 75000, 75000}},
			{Name: "acked", Color: "#2a2", X: []float64{0, 1, 2}, Y: []float64{0, 14000, 15000}},
		}},
		{Title: "p99", YLabel: "ms", Series: []plot.Series{
			{Name: "target", Color: "#c00", X: []float64{0, 2}, Y: []float64{250, 250}, Dashed: true},
		}},
	}}
	var b strings.Builder
	if err := f.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not XML: %v\n%s", err, svg)
		}
	}
	if n := strings.Count(svg, "<polyline"); n != 3 {
		t.Errorf("%d lines, want 3", n)
	}
	for _, want := range []string{">offered<", ">acked<", ">target<", "rates &amp; latency", `stroke-dasharray`} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}
