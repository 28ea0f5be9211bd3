package main

// This file holds the command: its flags, running the chosen benchmarks,
// and writing their sections of bench/RESULTS.md with what they missed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/bench/report"
)

func main() {
	cmd := newCommand(suite())
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "sedabench:", err)
		os.Exit(1)
	}
}

func newCommand(all []*benchmark) *cobra.Command {
	var (
		only    []string
		o       options
		results string
		dryRun  bool
		strict  bool
	)
	cmd := &cobra.Command{
		Use:   "sedabench",
		Short: "Run the benchmark suite and update bench/RESULTS.md",
		Long: `Sedabench runs the benchmarks of docs/BENCHMARKS.md, each side by side with
its baseline, alternating, and prints the ratios. Each benchmark's section of
--results (the command, date, machine, every figure and ratio) is replaced;
the other sections are kept.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run, err := selectBenchmarks(all, only)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			o.Log = cmd.ErrOrStderr()
			if !dryRun {
				o.Pictures = filepath.Dir(results)
			}
			command := "sedabench " + strings.Join(os.Args[1:], " ")
			var missed []string
			for _, b := range run {
				fmt.Fprintf(out, "== %s\n", b.Title)
				body, err := b.Run(ctx, o)
				if err != nil {
					return fmt.Errorf("%s: %w", b.Name, err)
				}
				section := header(command, time.Now()) + body
				io.WriteString(out, section)
				missed = append(missed, misses(b.Name, body)...)
				if dryRun {
					continue
				}
				if err := updateResults(results, all, b, section); err != nil {
					return err
				}
			}
			if !dryRun {
				fmt.Fprintf(out, "results written to %s\n", results)
			}
			printMissed(out, missed)
			if strict && len(missed) > 0 {
				return fmt.Errorf("--strict: %d measured targets missed", len(missed))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringSliceVar(&only, "only", nil, "run only these benchmarks, in this order (comma-separated: b1,b2)")
	f.IntVar(&o.Runs, "runs", 0, "alternating runs per case (0: each benchmark's default)")
	f.StringVar(&o.DSN, "dsn", "", "an existing PostgreSQL (URL) for the benchmarks that need one, instead of a throwaway server")
	f.StringVar(&o.Pipectl, "pipectl", "", "a pipectl binary for the benchmarks that run pipectl (b4, b4a, b7, b8, b9, b10), instead of each building one with the go command")
	f.StringVar(&results, "results", "bench/RESULTS.md", "the results file whose sections are updated")
	f.BoolVar(&dryRun, "dry-run", false, "print the results without updating the results file")
	f.BoolVar(&strict, "strict", false, "exit non-zero when a measured target is missed")
	for _, b := range all {
		if b.Flags != nil {
			b.Flags(f)
		}
	}
	return cmd
}

func selectBenchmarks(all []*benchmark, only []string) ([]*benchmark, error) {
	if len(only) == 0 {
		return all, nil
	}
	var out []*benchmark
	for _, name := range only {
		name = strings.ToLower(strings.TrimSpace(name))
		i := slices.IndexFunc(all, func(b *benchmark) bool { return b.Name == name })
		if i < 0 {
			names := make([]string, len(all))
			for j, b := range all {
				names[j] = b.Name
			}
			return nil, fmt.Errorf("unknown benchmark %q (have %s)", name, strings.Join(names, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// header says how and where the figures were taken.
func header(command string, now time.Time) string {
	return fmt.Sprintf("Command: `%s`  \nDate: %s  \nMachine: %d cores (GOMAXPROCS %d), %s/%s, %s\n\n",
		strings.TrimSpace(command), now.UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), runtime.GOMAXPROCS(0),
		runtime.GOOS, runtime.GOARCH, runtime.Version())
}

const resultsIntro = `# Benchmark results

Written by ` + "`make bench`" + ` (` + "`go run ./bench/cmd/sedabench`" + `); each section is
replaced when its benchmark runs again. What is measured and the targets are in
docs/BENCHMARKS.md. The machine is shared and noisy: read the ratios, which come
from the project and its baseline run side by side, alternating, in one
process; absolute figures move from run to run.
`

func sectionMarkers(name string) (begin, end string) {
	return "<!-- bench:" + name + ":begin -->", "<!-- bench:" + name + ":end -->"
}

// updateResults replaces b's section of the file at path (adding it, or
// the file, if missing). A new section goes before the sections of the
// benchmarks that follow b in all, so that the file keeps the suite's
// order.
func updateResults(path string, all []*benchmark, b *benchmark, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read results: %w", err)
	}
	text := string(old)
	if text == "" {
		text = resultsIntro
	}
	text = replaceSection(text, all, b, body)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

func replaceSection(text string, all []*benchmark, b *benchmark, body string) string {
	begin, end := sectionMarkers(b.Name)
	section := begin + "\n## " + b.Title + "\n\n" + strings.TrimRight(body, "\n") + "\n" + end
	i := strings.Index(text, begin)
	j := strings.Index(text, end)
	if i >= 0 && j > i {
		return text[:i] + section + text[j+len(end):]
	}
	k := slices.IndexFunc(all, func(x *benchmark) bool { return x.Name == b.Name })
	for _, later := range all[k+1:] {
		lb, _ := sectionMarkers(later.Name)
		if at := strings.Index(text, lb); at >= 0 {
			return text[:at] + section + "\n\n" + text[at:]
		}
	}
	return strings.TrimRight(text, "\n") + "\n\n" + section + "\n"
}

// missMark is how a section marks a missed target: report.Met's "no".
var missMark = report.Met(false)

// misses returns one line for each target that body, a benchmark's
// section, marks as missed (report.Met(false)): "b1: 2P2W-Batch64 | ... |
// ≥ 5.0", the line's text with the mark left out, prefixed by the
// benchmark's name.
func misses(name, body string) []string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if !strings.Contains(line, missMark) {
			continue
		}
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "|") {
			// A table row: its cells, the "no" cell left out.
			var cells []string
			for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
				if c = strings.TrimSpace(c); c != missMark {
					cells = append(cells, c)
				}
			}
			line = strings.Join(cells, " | ")
		}
		out = append(out, name+": "+strings.ReplaceAll(line, missMark, "no"))
	}
	return out
}

// printMissed writes the list of missed targets, or that none was.
func printMissed(w io.Writer, missed []string) {
	if len(missed) == 0 {
		fmt.Fprintln(w, "\nEvery measured target met.")
		return
	}
	fmt.Fprintf(w, "\nTargets missed (%d):\n", len(missed))
	for _, m := range missed {
		fmt.Fprintln(w, "  "+m)
	}
}
