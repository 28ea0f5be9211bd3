package pipeline

// This file holds the dashboard: the page, its history and the layout of
// the stage graph.

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/stagedserver/seda/stats"
	"go.uber.org/zap"
)

// The dashboard is one page, rendered here with the figures of the moment
// so that it shows everything before (and without) its script, which then
// polls /stats twice a second and redraws. Its assets are embedded: it needs
// nothing from the network, so it works offline and behind firewalls.
//
//go:embed dashboard
var dashboardFiles embed.FS

var dashboardTmpl = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"ms": func(v float64) string {
		if math.IsNaN(v) {
			return "–" // nothing finished: no latency (as dashboard.js shows a null)
		}
		return strconv.FormatFloat(v, 'f', 3, 64)
	},
	"pct": func(depth, capacity int) string { return strconv.FormatFloat(fill(depth, capacity)*100, 'f', 1, 64) },
	"anyDown": func(sts []stats.Stage) bool {
		return slices.ContainsFunc(sts, func(st stats.Stage) bool { return st.Health.State == stats.HealthDown })
	},
}).ParseFS(dashboardFiles, "dashboard/index.html"))

// historyLen is how many one-second samples the dashboard's charts get
// when the page opens: five minutes.
const (
	historyLen      = 300
	historyInterval = time.Second
)

// sample is one second of every stage's figures, for the charts.
type sample struct {
	T     int64          `json:"t"`     // Unix milliseconds
	Depth []int          `json:"depth"` // per stage, file order
	In    []uint64       `json:"in"`
	Out   []uint64       `json:"out"`
	P99   []stats.Millis `json:"p99"` // milliseconds; null when nothing finished
}

// history is a ring of the last historyLen samples, taken by the admin
// server's sampler goroutine.
type history struct {
	mu      sync.Mutex
	samples []sample // oldest first once full: start is the oldest
	start   int
}

func (h *history) add(s Stats, now time.Time) {
	smp := sample{T: now.UnixMilli(), Depth: make([]int, len(s.Stages)), In: make([]uint64, len(s.Stages)),
		Out: make([]uint64, len(s.Stages)), P99: make([]stats.Millis, len(s.Stages))}
	for i, st := range s.Stages {
		smp.Depth[i], smp.In[i], smp.Out[i], smp.P99[i] = st.Queue.Depth, st.In, st.Out, stats.Millis(st.Latency.P99)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) < historyLen {
		h.samples = append(h.samples, smp)
		return
	}
	h.samples[h.start] = smp
	h.start = (h.start + 1) % historyLen
}

func (h *history) list() []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]sample, 0, len(h.samples))
	out = append(out, h.samples[h.start:]...)
	return append(out, h.samples[:h.start]...)
}

// sampleEvery adds a sample of p to h every interval until stop closes.
func sampleEvery(p *Pipeline, h *history, interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	h.add(p.Stats(), time.Now())
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			h.add(p.Stats(), now)
		}
	}
}

// The graph's geometry, in SVG user units.
const (
	nodeW, nodeH = 168, 64
	gapX, gapY   = 56, 20
	pad          = 8
)

// graphInfo is what the dashboard's graph needs of a stage of the file.
type graphInfo struct {
	routes []string // next first
	next   string
	source bool
}

type graphView struct {
	Width, Height int
	Nodes         []nodeView
	Edges         []edgeView
}

type nodeView struct {
	stats.Stage
	X, Y, W, H int
	FillW      int // the width of the depth/capacity fill
	Source     bool
}

type edgeView struct {
	Path string
	Next bool // the stage's next (solid); other routes are dashed
}

// layout places the stages /stats lists left to right by depth in the
// graph (a stage one column after the furthest stage that routes to it)
// and top to bottom in file order within a column.
func (p *Pipeline) layout(sts []stats.Stage) graphView {
	n := len(sts)
	col := make([]int, n)
	index := make(map[string]int, n)
	for i, st := range sts {
		index[st.Name] = i
	}
	// The routes form no cycle (New checks), so n rounds settle every
	// column.
	for range n {
		for i, st := range sts {
			for _, r := range p.graph[st.Name].routes {
				if j, ok := index[r]; ok {
					col[j] = max(col[j], col[i]+1)
				}
			}
		}
	}
	rows := map[int]int{}
	row := make([]int, n)
	cols, most := 0, 0
	for i := range n {
		row[i] = rows[col[i]]
		rows[col[i]]++
		cols, most = max(cols, col[i]+1), max(most, rows[col[i]])
	}
	g := graphView{Width: 2*pad + cols*nodeW + max(cols-1, 0)*gapX, Height: 2*pad + most*nodeH + max(most-1, 0)*gapY}
	for i := range n {
		// Each column is centred vertically.
		top := pad + (most-rows[col[i]])*(nodeH+gapY)/2
		g.Nodes = append(g.Nodes, nodeView{Stage: sts[i], X: pad + col[i]*(nodeW+gapX), Y: top + row[i]*(nodeH+gapY),
			W: nodeW, H: nodeH, Source: p.graph[sts[i].Name].source, FillW: int(fill(sts[i].Queue.Depth, sts[i].Queue.Capacity) * (nodeW - 2))})
	}
	for i := range n {
		a := g.Nodes[i]
		for k, r := range p.graph[sts[i].Name].routes {
			j, ok := index[r]
			if !ok {
				continue
			}
			b := g.Nodes[j]
			x1, y1, x2, y2 := a.X+a.W, a.Y+a.H/2, b.X-4, b.Y+b.H/2
			d := (x2 - x1) / 2
			g.Edges = append(g.Edges, edgeView{
				Path: fmt.Sprintf("M%d %d C%d %d %d %d %d %d", x1, y1, x1+d, y1, x2-d, y2, x2, y2),
				Next: k == 0 && p.graph[sts[i].Name].next != "",
			})
		}
	}
	return g
}

// fill is depth/capacity in [0, 1]; 0 without a queue.
func fill(depth, capacity int) float64 {
	if capacity <= 0 {
		return 0
	}
	return min(max(float64(depth)/float64(capacity), 0), 1)
}

type dashboardPage struct {
	Stats
	Graph graphView
}

// dashboardHandlers adds GET / (the page) and GET /history (the charts'
// last minutes) and the page's assets to mux.
func (p *Pipeline) dashboardHandlers(mux *http.ServeMux, h *history, log *zap.Logger) {
	assets, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the embedded directory is there by construction
	}
	files := http.StripPrefix("/dashboard/", http.FileServerFS(assets))
	mux.Handle("GET /dashboard/", files)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s := p.Stats()
		var b bytes.Buffer
		if err := dashboardTmpl.Execute(&b, dashboardPage{Stats: s, Graph: p.layout(s.Stages)}); err != nil {
			log.Error("rendering the dashboard", zap.Error(err))
			http.Error(w, "rendering the dashboard failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		// Everything the page uses is its own: no other origin may serve
		// it anything, and it may not be framed.
		w.Header().Set("Content-Security-Policy",
			"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		_, _ = w.Write(b.Bytes())
	})
	mux.HandleFunc("GET /history", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"history": h.list(), "interval_ms": historyInterval.Milliseconds()})
	})
}
