package main

// This file holds `pipectl stats`: a running pipeline's /stats as a table,
// with rates between snapshots.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/stagedserver/seda/stats"
)

// defaultAdmin is where pipeline.yaml puts the admin endpoint.
const defaultAdmin = "127.0.0.1:9464"

// maxStatsBody bounds a /stats response; a pipeline of a thousand stages
// fits many times over.
const maxStatsBody = 16 << 20

// snapshot is a /stats response (DESIGN.md, "Admin endpoint") with the
// time it was taken.
type snapshot struct {
	Pipeline string        `json:"pipeline"`
	Uptime   float64       `json:"uptime_s"`
	State    string        `json:"state,omitempty"`
	Memory   *stats.Memory `json:"memory,omitempty"`
	Stages   []stats.Stage `json:"stages"`
	at       time.Time
}

// statsClient fetches /stats from one admin endpoint.
type statsClient struct {
	url   string
	shown string // url with its password, if any, redacted: what messages say
	token string
	from  string // where token came from: "--token", "$PIPECTL_TOKEN" or ""
	http  *http.Client
}

// tokenEnv names the environment variable the admin token is read from
// when --token is not given: a command line shows in ps and
// /proc/PID/cmdline to every user of the machine, for as long as
// pipectl top runs, and stays in shell history.
const tokenEnv = "PIPECTL_TOKEN"

const tokenUsage = "admin token, sent as a bearer token (default $" + tokenEnv + ", which other users cannot see in ps as they can a flag)"

// adminToken returns the token to send: the flag's, else $PIPECTL_TOKEN's;
// and where it came from, for a 401's message (see unauthorized).
func adminToken(flag string) (token, from string) {
	if flag != "" {
		return flag, "--token"
	}
	if t := os.Getenv(tokenEnv); t != "" {
		return t, "$" + tokenEnv
	}
	return "", ""
}

// unauthorized says, after a 401, which token was sent (never the token
// itself): a wrong --token shadowing a right $PIPECTL_TOKEN, or an unset
// variable, is what usually lies behind one.
func unauthorized(status int, from string) string {
	switch {
	case status != http.StatusUnauthorized:
		return ""
	case from == "":
		return " (no token was sent: give --token or set $" + tokenEnv + ")"
	}
	return " (the token from " + from + " was sent)"
}

// adminURL is the URL of path (such as "/stats") at the admin endpoint
// addr (host:port or URL), and the same URL as messages show it: with the
// password of a user:password@ in it redacted, since what pipectl prints
// ends up in terminals, logs and screenshots.
func adminURL(addr, path string) (u, shown string, err error) {
	u = addr
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	u = strings.TrimSuffix(u, "/") + path
	parsed, err := url.Parse(u)
	if err != nil {
		// url.Parse's error quotes the URL, password and all.
		return "", "", errors.New("--addr: not a host:port or URL")
	}
	return u, parsed.Redacted(), nil
}

// redactAddr is addr, the --addr of an admin endpoint, with the password
// in it, if any, redacted.
func redactAddr(addr string) string {
	u, shown, err := adminURL(addr, "")
	if err != nil || u == shown {
		return addr
	}
	if !strings.Contains(addr, "://") {
		shown = strings.TrimPrefix(shown, "http://")
	}
	return shown
}

func newStatsClient(addr, token string) (*statsClient, error) {
	u, shown, err := adminURL(addr, "/stats")
	if err != nil {
		return nil, err
	}
	tok, from := adminToken(token)
	return &statsClient{
		url:   u,
		shown: shown,
		token: tok,
		from:  from,
		// No keep-alive: one request a second gains nothing from it, and
		// no idle connection is left behind when the command returns.
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}, nil
}

func (c *statsClient) fetch(ctx context.Context) (*snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch stats: %w (is a pipeline running with its admin endpoint there?)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatsBody))
	if err != nil {
		return nil, fmt.Errorf("fetch stats from %s: %w", c.shown, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch stats from %s: %s: %s%s", c.shown, printable(resp.Status),
			printable(strings.TrimSpace(string(body))), unauthorized(resp.StatusCode, c.from))
	}
	var s snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("fetch stats from %s: decode: %w", c.shown, err)
	}
	s.at = time.Now()
	return &s, nil
}

// rates are per-second figures between two snapshots of one stage.
type rates struct {
	In, Out float64
	ok      bool // false when there is no earlier sample
}

// rateOf returns the rates of st since prev (nil: none).
func rateOf(prev *snapshot, cur *snapshot, st stats.Stage) rates {
	if prev == nil {
		return rates{}
	}
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		return rates{}
	}
	for _, p := range prev.Stages {
		if p.Name != st.Name {
			continue
		}
		if st.In < p.In || st.Out < p.Out { // the pipeline restarted
			return rates{}
		}
		return rates{In: float64(st.In-p.In) / dt, Out: float64(st.Out-p.Out) / dt, ok: true}
	}
	return rates{}
}

func newStatsCmd() *cobra.Command {
	var (
		addr, token string
		asJSON      bool
		interval    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Print one table of every stage of a running pipeline",
		Long: `Stats reads /stats from a running pipeline's admin endpoint and prints one
line per stage: queue depth/capacity, running/workers, workers inside
Blocking, totals in/out/errors/rejected, rates per second and latency
quantiles. Rates need two samples: stats takes them --interval apart
(0 prints totals only).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 0 {
				return fmt.Errorf("--interval %s: want a positive duration, or 0 for totals only", interval)
			}
			c, err := newStatsClient(addr, token)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if asJSON {
				s, err := c.fetch(ctx)
				if err != nil {
					return err
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			var prev *snapshot
			if interval > 0 {
				p, err := c.fetch(ctx)
				if err != nil {
					return err
				}
				prev = p
				select {
				case <-time.After(interval):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			cur, err := c.fetch(ctx)
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), statsTable(prev, cur))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", defaultAdmin, "admin endpoint address (host:port or URL)")
	f.StringVar(&token, "token", "", tokenUsage)
	f.BoolVar(&asJSON, "json", false, "print the raw /stats JSON instead of a table")
	f.DurationVar(&interval, "interval", time.Second, "time between the two samples rates are taken from; 0: totals only")
	return cmd
}

// statsTable renders cur as one aligned table, with rates since prev when
// prev is not nil.
func statsTable(prev, cur *snapshot) string {
	head := []string{"STAGE", "KIND", "HEALTH", "QUEUE", "RUN/WORKERS", "BATCH", "BLOCKED", "IN", "OUT", "ERRORS", "REJECTED", "IN/S", "OUT/S", "P50", "P99", "OLDEST"}
	rows := [][]string{head}
	for _, st := range cur.Stages {
		r := rateOf(prev, cur, st)
		rows = append(rows, []string{
			st.Name,
			st.Kind,
			healthCell(st),
			queueCell(st),
			poolCell(st),
			batchCell(st),
			poolNum(st, st.Pool.Blocked),
			strconv.FormatUint(st.In, 10),
			strconv.FormatUint(st.Out, 10),
			strconv.FormatUint(st.Errors, 10),
			strconv.FormatUint(st.Rejected, 10),
			rateCell(r.ok, r.In),
			rateCell(r.ok, r.Out),
			msCell(st.Latency.P50),
			msCell(st.Latency.P99),
			msCell(st.Latency.OldestMs),
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pipeline %s%s, up %s\n", orDash(cur.Pipeline), stateNote(cur.State), uptime(cur.Uptime))
	writeAligned(&b, rows, 2, 2)
	for _, l := range append(healthLines(cur), admissionLines(cur)...) {
		b.WriteString(l + "\n")
	}
	return printable(b.String())
}

func stateNote(state string) string {
	if state == "" {
		return ""
	}
	return " (" + state + ")"
}

func uptime(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Second)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// queueCell is depth/capacity, or "inline" for a stage without a queue.
func queueCell(st stats.Stage) string {
	if st.Inline {
		return "inline"
	}
	if st.Queue.Capacity == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", st.Queue.Depth, st.Queue.Capacity)
}

// poolCell is running/workers, and whether the pool controller sizes the
// pool (auto), it is pinned (pipectl scale changes it), or it is fixed: a
// source's own pool (netio.tcp's), sized once when it starts, which
// nothing resizes while it runs: "1/8 auto", "0/2 fixed".
func poolCell(st stats.Stage) string {
	switch {
	case st.Remote:
		return "remote" // its workers run in other processes
	case st.Inline || st.Pool.Workers == 0:
		return "-"
	}
	c := fmt.Sprintf("%d/%d", st.Pool.Running, st.Pool.Workers)
	if st.Control == nil || st.Control.Workers == nil {
		return c + " fixed"
	}
	return c + knobMode(st.Control.Workers)
}

// batchCell is the batch size now and whether the batching controller
// sizes it: "1024 auto", "200 pinned"; "-" for a stage without a pool.
func batchCell(st stats.Stage) string {
	if st.Remote || st.Control == nil || st.Control.Batch == nil {
		return "-"
	}
	return strconv.Itoa(st.Control.Batch.Now) + knobMode(st.Control.Batch)
}

func knobMode(k *stats.Knob) string {
	switch {
	case k == nil:
		return ""
	case k.Auto:
		return " auto"
	}
	return " pinned"
}

// admissionLines say, for each source under admission control, its p99
// against its target and the rate it admits:
// "accept: admission p99 180ms (target 250ms), admitting 15.3k/s at most, 1.2M shed".
func admissionLines(s *snapshot) []string {
	var out []string
	for _, st := range s.Stages {
		if st.Control == nil || st.Control.Admission == nil {
			continue
		}
		a := st.Control.Admission
		rate := "not limiting"
		if a.Rate > 0 {
			rate = "admitting " + humanRate(a.Rate) + "/s at most"
		}
		out = append(out, fmt.Sprintf("%s: admission p99 %s (target %s), %s, %s shed",
			st.Name, orDash(msCell(a.P99Ms)), msCell(a.TargetMs), rate, humanRate(float64(a.Shed))))
	}
	return out
}

func poolNum(st stats.Stage, n int) string {
	if st.Remote || st.Inline || st.Pool.Workers == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func rateCell(ok bool, v float64) string {
	if !ok {
		return "-"
	}
	return humanRate(v)
}

// humanRate prints a rate with three significant figures at most: 950,
// 12.3k, 1.25M.
func humanRate(v float64) string {
	switch {
	case v >= 1e6:
		return trimFloat(v/1e6) + "M"
	case v >= 1e3:
		return trimFloat(v/1e3) + "k"
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

func trimFloat(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// msCell prints a latency in milliseconds, or "-" when there is none.
func msCell(ms float64) string {
	switch {
	case ms <= 0 || math.IsNaN(ms): // NaN: no latency, nothing finished
		return "-"
	case ms < 1:
		return strconv.FormatFloat(ms*1000, 'f', 0, 64) + "µs"
	case ms < 1000:
		return trimFloat(ms) + "ms"
	default:
		return trimFloat(ms/1000) + "s"
	}
}

// writeAligned writes rows as columns separated by gap spaces: the first
// two columns (names) and the columns listed in leftCols left-aligned, the
// others (figures) right-aligned.
func writeAligned(b *strings.Builder, rows [][]string, gap int, leftCols ...int) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i > 0 {
				line.WriteString(strings.Repeat(" ", gap))
			}
			if i < 2 || slices.Contains(leftCols, i) {
				line.WriteString(c + pad)
			} else {
				line.WriteString(pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
	}
}
