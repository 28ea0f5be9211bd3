package pipeline

// This file tests docs/grafana-dashboard.json against /metrics: every
// metric and label it queries exists.

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestGrafanaDashboard loads docs/grafana-dashboard.json, the dashboard a
// Prometheus user imports, and checks every query in it: each metric it
// names is one /metrics serves (described by the pipeline's collector),
// and each label it matches or groups by is one that metric has (or the
// pipeline label every one carries).
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Inputs []struct {
			Name, PluginID string
		} `json:"__inputs"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	if dash.Title == "" || len(dash.Inputs) == 0 {
		t.Fatalf("docs/grafana-dashboard.json: no title or no datasource input to import with")
	}

	// What /metrics serves: each metric's labels, from the collector.
	labels := map[string][]string{}
	descs := make(chan *prometheus.Desc, 100)
	go func() {
		newCollector(&Pipeline{series: transportSeries()}).Describe(descs) // as New declares them with natsq registered
		close(descs)
	}()
	descRe := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	for d := range descs {
		m := descRe.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		labels[m[1]] = append(strings.Split(m[2], ","), "pipeline")
	}

	var exprs []string
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	// A metric is a name followed by a selector or a range; strings are
	// taken out first so that label values are not read as names.
	metricRe := regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{([^}]*)\}|\[)`)
	matcherRe := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	byRe := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	seen := map[string]bool{}
	for _, e := range exprs {
		metrics := map[string]bool{}
		for _, m := range metricRe.FindAllStringSubmatch(e, -1) {
			name := m[1]
			if name == "label_values" {
				continue
			}
			ls, ok := labels[name]
			if !ok {
				t.Errorf("query %q: /metrics has no metric %s", e, name)
				continue
			}
			metrics[name], seen[name] = true, true
			for _, lm := range matcherRe.FindAllStringSubmatch(m[3], -1) {
				if !slices.Contains(ls, lm[1]) {
					t.Errorf("query %q: %s has no label %q (it has %v)", e, name, lm[1], ls)
				}
			}
		}
		for _, m := range byRe.FindAllStringSubmatch(e, -1) {
			for l := range strings.SplitSeq(m[1], ",") {
				l = strings.TrimSpace(l)
				for name := range metrics {
					if !slices.Contains(labels[name], l) {
						t.Errorf("query %q groups by %q, which %s lacks", e, l, name)
					}
				}
			}
		}
		if len(metrics) == 0 && !strings.Contains(e, "label_values(") {
			t.Errorf("query %q names no metric", e)
		}
	}
	// The figures of every stage and source have a panel.
	for _, name := range []string{"pipeline_stage_queue_depth", "pipeline_stage_queue_capacity", "pipeline_stage_workers",
		"pipeline_stage_running", "pipeline_stage_blocked", "pipeline_stage_events_in_total", "pipeline_stage_events_out_total",
		"pipeline_stage_errors_total", "pipeline_stage_rejected_total", "pipeline_stage_panics_total",
		"pipeline_stage_latency_seconds", "pipeline_source_connections_total", "pipeline_source_protocol_errors_total",
		"pipeline_source_nacks_total", "pipeline_source_bytes_in_total", "pipeline_source_drops_total",
		"pipeline_stage_batch_size", "pipeline_stage_control_decisions_total", "pipeline_source_admission_rate",
		"pipeline_source_admission_target_seconds", "pipeline_source_admission_p99_seconds",
		"pipeline_source_admission_admitted_total", "pipeline_source_admission_shed_total",
		// A stall shows in health and the oldest event's age (the latency
		// quantiles, of what finished, have no value then), and memory
		// held against the limit tells when the sources will refuse.
		"pipeline_stage_health", "pipeline_stage_oldest_event_seconds",
		"pipeline_memory_held_bytes", "pipeline_memory_limit_bytes"} {
		if !seen[name] {
			t.Errorf("no panel of docs/grafana-dashboard.json shows %s", name)
		}
	}
}
