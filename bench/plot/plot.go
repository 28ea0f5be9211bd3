package plot

// This file draws a Figure's panels as SVG, with nice axes and legends.

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// Series is one line of a panel.
type Series struct {
	Name   string
	Color  string    // an SVG color: "#1f77b4"
	X, Y   []float64 // as many of each
	Dashed bool
}

// Panel is one chart: its series over the picture's x axis.
type Panel struct {
	Title  string
	YLabel string // the unit of the y axis: "records/s"
	Series []Series
	// YMax, when positive, fixes the top of the y axis; otherwise it is
	// the largest value, rounded up.
	YMax float64
}

// Figure is panels stacked over one x axis.
type Figure struct {
	Title  string
	XLabel string
	Panels []Panel
}

const (
	width      = 900
	panelH     = 220
	marginL    = 80
	marginR    = 190 // the legend
	marginT    = 40
	panelGap   = 50
	plotW      = width - marginL - marginR
	plotH      = panelH - 40
	fontFamily = "sans-serif"
)

// WriteSVG writes the figure as SVG.
func (f Figure) WriteSVG(w io.Writer) error {
	var b strings.Builder
	h := marginT + len(f.Panels)*(panelH+panelGap)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s" font-size="12">`+"\n",
		width, h, width, h, fontFamily)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, h)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", marginL, esc(f.Title))
	xmin, xmax := math.Inf(1), math.Inf(-1)
	for _, p := range f.Panels {
		for _, s := range p.Series {
			for _, x := range s.X {
				xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			}
		}
	}
	if math.IsInf(xmin, 0) || xmax <= xmin {
		xmin, xmax = 0, 1
	}
	for i, p := range f.Panels {
		top := marginT + i*(panelH+panelGap) + 20
		f.panel(&b, p, top, xmin, xmax, i == len(f.Panels)-1)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (f Figure) panel(b *strings.Builder, p Panel, top int, xmin, xmax float64, last bool) {
	ymax := p.YMax
	if ymax <= 0 {
		for _, s := range p.Series {
			for _, y := range s.Y {
				ymax = math.Max(ymax, y)
			}
		}
		ymax = niceCeil(ymax)
	}
	if ymax <= 0 {
		ymax = 1
	}
	px := func(x float64) float64 { return marginL + (x-xmin)/(xmax-xmin)*plotW }
	py := func(y float64) float64 { return float64(top) + plotH - math.Min(y, ymax)/ymax*plotH }
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", marginL, top-8, esc(p.Title))
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", marginL, top, plotW, plotH)
	for k := 0; k <= 4; k++ {
		y := ymax * float64(k) / 4
		yy := py(y)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", marginL, yy, marginL+plotW, yy)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", marginL-6, yy+4, human(y))
	}
	fmt.Fprintf(b, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">%s</text>`+"\n",
		top+plotH/2, top+plotH/2, esc(p.YLabel))
	step := niceCeil((xmax - xmin) / 8)
	for x := math.Ceil(xmin/step) * step; x <= xmax+1e-9; x += step {
		xx := px(x)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>`+"\n", xx, top, xx, top+plotH)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", xx, top+plotH+15, human(x))
	}
	if last {
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", marginL+plotW/2, top+plotH+32, esc(f.XLabel))
	}
	for i, s := range p.Series {
		var pts []string
		for j := range min(len(s.X), len(s.Y)) {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.X[j]), py(s.Y[j])))
		}
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		if len(pts) > 0 {
			fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), s.Color, dash)
		}
		ly := top + 14 + i*18
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n",
			marginL+plotW+12, ly-4, marginL+plotW+36, ly-4, s.Color, dash)
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", marginL+plotW+42, ly, esc(s.Name))
	}
}

// niceCeil rounds x up to 1, 2 or 5 times a power of ten.
func niceCeil(x float64) float64 {
	if x <= 0 {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// human prints an axis value: 950, 12k, 1.5M, 0.25.
func human(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	case a == math.Trunc(a):
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func esc(s string) string { return html.EscapeString(s) }
