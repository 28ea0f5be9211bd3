package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/bench/b1"
	"github.com/stagedserver/seda/bench/b2"
)

// benchmark is one entry of the suite that `pipectl bench` runs. Run
// measures and returns the body of the benchmark's section of
// bench/RESULTS.md (Markdown, without the heading); progress goes to log.
//
// To add B3 or B4, append an entry to benchmarks(): the command, the
// RESULTS.md section and --only all follow from it.
type benchmark struct {
	Name  string // as --only takes it: b1, b2, ...
	Title string // the section heading, as in docs/BENCHMARKS.md
	Run   func(ctx context.Context, o benchOptions) (string, error)
}

// benchOptions are the suite-wide knobs a benchmark honours.
type benchOptions struct {
	Runs int       // alternating runs per case; 0: the benchmark's default
	Log  io.Writer // progress lines
}

// benchmarks returns the suite in the order docs/BENCHMARKS.md lists it.
func benchmarks() []benchmark {
	return []benchmark{
		{Name: "b1", Title: "B1: port hop against a buffered channel", Run: runB1},
		{Name: "b2", Title: "B2: a three-stage chain against the same chain built from channels", Run: runB2},
		{Name: "b3", Title: "B3: TCP → process → PostgreSQL, end to end", Run: runB3},
		{Name: "b4", Title: "B4: overload", Run: runB4},
		{Name: "b8", Title: "B8: light rows", Run: runB8},
	}
}

func newBenchCmd() *cobra.Command {
	var (
		only    []string
		runs    int
		results string
		dryRun  bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run the benchmark suite and update bench/RESULTS.md",
		Long: `Bench runs the benchmarks of docs/BENCHMARKS.md, each side against its baseline
in this one process, alternating, and prints the ratios. Each benchmark's
section of --results (the command, date, core count, every figure and
ratio) is replaced; the other sections are kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			suite, err := selectBenchmarks(benchmarks(), only)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			command := "pipectl " + strings.Join(os.Args[1:], " ")
			for _, b := range suite {
				fmt.Fprintf(out, "== %s\n", b.Title)
				body, err := b.Run(ctx, benchOptions{Runs: runs, Log: cmd.ErrOrStderr()})
				if err != nil {
					return fmt.Errorf("bench %s: %w", b.Name, err)
				}
				section := benchHeader(command, time.Now()) + body
				io.WriteString(out, section)
				if dryRun {
					continue
				}
				if err := updateResults(results, b, section); err != nil {
					return err
				}
			}
			if !dryRun {
				fmt.Fprintf(out, "results written to %s\n", results)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&only, "only", nil, "run only these benchmarks (comma-separated: b1,b2)")
	f.IntVar(&runs, "runs", 0, "alternating runs per case (0: each benchmark's default)")
	f.StringVar(&results, "results", "bench/RESULTS.md", "the results file whose sections are updated")
	f.BoolVar(&dryRun, "dry-run", false, "print the results without updating the results file")
	return cmd
}

func selectBenchmarks(all []benchmark, only []string) ([]benchmark, error) {
	if len(only) == 0 {
		return all, nil
	}
	var out []benchmark
	for _, name := range only {
		name = strings.ToLower(strings.TrimSpace(name))
		i := slices.IndexFunc(all, func(b benchmark) bool { return b.Name == name })
		if i < 0 {
			names := make([]string, len(all))
			for j, b := range all {
				names[j] = b.Name
			}
			return nil, fmt.Errorf("bench: unknown benchmark %q (have %s)", name, strings.Join(names, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// benchHeader says how and where the figures were taken.
func benchHeader(command string, now time.Time) string {
	return fmt.Sprintf("Command: `%s`  \nDate: %s  \nMachine: %d cores (GOMAXPROCS %d), %s/%s, %s\n\n",
		command, now.UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), runtime.GOMAXPROCS(0),
		runtime.GOOS, runtime.GOARCH, runtime.Version())
}

const resultsIntro = `# Benchmark results

Written by ` + "`pipectl bench`" + ` (or ` + "`make bench`" + `); each section is replaced
when its benchmark runs again. What is measured and the targets are in
docs/BENCHMARKS.md. The machine is shared and noisy: read the ratios, which come
from the project and its baseline run side by side, alternating, in one
process; absolute figures move from run to run.
`

func sectionMarkers(name string) (begin, end string) {
	return "<!-- bench:" + name + ":begin -->", "<!-- bench:" + name + ":end -->"
}

// updateResults replaces b's section of the file at path (adding it, or
// the file, if missing). Sections stay in suite order when added.
func updateResults(path string, b benchmark, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bench: read results: %w", err)
	}
	text := string(old)
	if text == "" {
		text = resultsIntro
	}
	text = replaceSection(text, b, body)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("bench: write results: %w", err)
	}
	return nil
}

func replaceSection(text string, b benchmark, body string) string {
	begin, end := sectionMarkers(b.Name)
	section := begin + "\n## " + b.Title + "\n\n" + strings.TrimRight(body, "\n") + "\n" + end
	i := strings.Index(text, begin)
	j := strings.Index(text, end)
	if i >= 0 && j > i {
		return text[:i] + section + text[j+len(end):]
	}
	// Insert before the first section of a benchmark that comes later in
	// the suite, so that the file keeps the suite's order.
	all := benchmarks()
	k := slices.IndexFunc(all, func(x benchmark) bool { return x.Name == b.Name })
	for _, later := range all[max(k+1, 0):] {
		lb, _ := sectionMarkers(later.Name)
		if at := strings.Index(text, lb); at >= 0 {
			return text[:at] + section + "\n\n" + text[at:]
		}
	}
	return strings.TrimRight(text, "\n") + "\n\n" + section + "\n"
}

// ratioCell prints min/median/max of ratios.
func ratioCell(s b1.Summary) string {
	return fmt.Sprintf("%.2f / %.2f / %.2f", s.Min, s.Median, s.Max)
}

func metCell(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func runB1(ctx context.Context, o benchOptions) (string, error) {
	fmt.Fprintln(o.Log, "b1: running (port against channel, alternating)...")
	res, err := b1.Run(ctx, b1.Config{Runs: o.Runs})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| case | port items/s (median) | channel items/s (median) | ratio min / median / max | target | met |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range res {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | ≥ %.1f | %s |\n", r.Case,
			humanRate(b1.Summarize(r.PortItemsPerSec).Median), humanRate(b1.Summarize(r.ChanItemsPerSec).Median),
			ratioCell(b1.Summarize(r.Ratios())), r.Target, metCell(r.Met()))
	}
	if len(res) > 0 {
		fmt.Fprintf(&b, "\n%d runs per case, %s.\n", len(res[0].Ratios()), "port and channel alternating")
	}
	return b.String(), nil
}

func runB2(ctx context.Context, o benchOptions) (string, error) {
	fmt.Fprintln(o.Log, "b2: running (pipeline against channels, alternating)...")
	rs, err := b2.Run(ctx, b2.Config{Runs: o.Runs})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| side | items/s min / median / max | CPU per item (median) |\n")
	b.WriteString("| --- | ---: | ---: |\n")
	for _, side := range []string{b2.Pipeline, b2.Channels} {
		s := b2.Summarize(rs, side)
		var cpu []float64
		for _, r := range rs {
			if r.Side == side {
				cpu = append(cpu, r.CPUNsPerItem())
			}
		}
		fmt.Fprintf(&b, "| %s | %s / %s / %s | %.0f ns |\n", side,
			humanRate(s.Min), humanRate(s.Median), humanRate(s.Max), b1.Summarize(cpu).Median)
	}
	var ratios []float64
	byRun := map[int]map[string]float64{}
	for _, r := range rs {
		if byRun[r.Run] == nil {
			byRun[r.Run] = map[string]float64{}
		}
		byRun[r.Run][r.Side] = r.ItemsPerSec()
	}
	for _, m := range byRun {
		if m[b2.Channels] > 0 && m[b2.Pipeline] > 0 {
			ratios = append(ratios, m[b2.Pipeline]/m[b2.Channels])
		}
	}
	ratio := b2.Ratio(rs)
	fmt.Fprintf(&b, "\nRatio pipeline / channels (medians): **%.2f** (target ≥ %.1f: %s); per run min / median / max: %s; %d runs of each side.\n",
		ratio, b2.Target, metCell(ratio >= b2.Target), ratioCell(b1.Summarize(ratios)), b2.Summarize(rs, b2.Pipeline).Runs)
	return b.String(), nil
}
