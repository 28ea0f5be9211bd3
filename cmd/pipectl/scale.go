package main

// This file holds `pipectl scale`: pin or release a running stage's knobs
// through the admin endpoint.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stats"
)

// knobFlag is a --workers or --batch value: a number or auto.
type knobFlag struct {
	k     *pipeline.Knob
	auto  bool // auto is allowed
	usage string
}

func (f knobFlag) String() string {
	if f.k == nil || !f.k.Set {
		return ""
	}
	return f.k.String()
}

func (f knobFlag) Set(s string) error {
	k, err := pipeline.ParseKnob(s)
	if err != nil {
		return err
	}
	if k.Auto && !f.auto {
		return fmt.Errorf("has no controller; give a number")
	}
	*f.k = k
	return nil
}

func (f knobFlag) Type() string { return f.usage }

func newScaleCmd() *cobra.Command {
	var (
		addr, token string
		sc          pipeline.Scale
	)
	cmd := &cobra.Command{
		Use:   "scale STAGE [--workers N|auto] [--concurrency N] [--batch N|auto]",
		Short: "Resize a stage of a running pipeline",
		Long: `Scale resizes a stage of a running pipeline through its admin endpoint
(POST /stages/STAGE/scale): its pool (--workers), its run slots
(--concurrency) and its batch size (--batch): the knobs that top and
stats show as auto or pinned (a source's pool, shown as fixed, is sized
once at start). A number pins the knob;
auto hands it back to its controller, which goes on from where it is.
Nothing running is interrupted: workers retired finish the batch they
hold, and a lower concurrency takes effect as running workers come back
for their next batch, as a Windows completion port's does. It prints the
stage's knobs afterwards.`,
		Example: `  pipectl scale store --workers 8 --batch 2000
  pipectl scale store --workers auto --batch auto
  pipectl scale store --concurrency 1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !sc.Workers.Set && !sc.Concurrency.Set && !sc.Batch.Set {
				return fmt.Errorf("scale %s: say what to change: --workers, --concurrency or --batch", args[0])
			}
			st, err := postScale(cmd, addr, token, args[0], sc)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), knobsLine(st))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", defaultAdmin, "admin endpoint address (host:port or URL)")
	f.StringVar(&token, "token", "", tokenUsage)
	f.Var(knobFlag{k: &sc.Workers, auto: true, usage: "N|auto"}, "workers", "workers in the stage's pool, or auto (the pool controller)")
	f.Var(knobFlag{k: &sc.Concurrency, usage: "N"}, "concurrency", "workers running at once (the port's run slots)")
	f.Var(knobFlag{k: &sc.Batch, auto: true, usage: "N|auto"}, "batch", "events per batch at most, or auto (the batching controller)")
	return cmd
}

func postScale(cmd *cobra.Command, addr, token, name string, sc pipeline.Scale) (stats.Stage, error) {
	u, _, err := adminURL(addr, "/stages/"+url.PathEscape(name)+"/scale")
	if err != nil {
		return stats.Stage{}, err
	}
	body, err := json.Marshal(sc)
	if err != nil {
		return stats.Stage{}, err
	}
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return stats.Stage{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	token, from := adminToken(token)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return stats.Stage{}, fmt.Errorf("scale %s: %w (is a pipeline running with its admin endpoint there?)", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxStatsBody))
	if err != nil {
		return stats.Stage{}, fmt.Errorf("scale %s: %w", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := printable(strings.TrimSpace(string(b)))
		if resp.StatusCode == http.StatusConflict && strings.Contains(msg, engine.ErrNotResizable.Error()) {
			// What top shows as fixed (a source's pool) or inline.
			msg += "\n(an inline stage runs in its upstream stage's workers; a source's own pool, which top and stats " +
				"show as fixed, is sized once when it starts: set its workers and concurrency in the pipeline file)"
		}
		return stats.Stage{}, fmt.Errorf("scale %s: %s: %s%s", name, printable(resp.Status), msg, unauthorized(resp.StatusCode, from))
	}
	var st stats.Stage
	if err := json.Unmarshal(b, &st); err != nil {
		return stats.Stage{}, fmt.Errorf("scale %s: decode the answer: %w", name, err)
	}
	return st, nil
}

// knobsLine says a stage's knobs in one line:
// "store: workers 8 (pinned), concurrency 2, batch 1024 (auto)".
func knobsLine(st stats.Stage) string {
	mode := func(k *stats.Knob) string {
		if k == nil {
			return ""
		}
		if k.Auto {
			return fmt.Sprintf(" (auto, %d to %d)", k.Min, k.Max)
		}
		return " (pinned)"
	}
	var w, b *stats.Knob
	batch := "-"
	if st.Control != nil {
		w, b = st.Control.Workers, st.Control.Batch
		if b != nil {
			batch = fmt.Sprint(b.Now)
		}
	}
	return fmt.Sprintf("%s: workers %d%s, concurrency %d, batch %s%s",
		st.Name, st.Pool.Workers, mode(w), st.Pool.Concurrency, batch, mode(b))
}
