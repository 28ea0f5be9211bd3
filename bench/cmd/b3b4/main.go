// Command b3b4 runs benchmark B3 or B4 on its own, with every size
// adjustable, and prints the Markdown of its results section. `pipectl
// bench --only b3,b4` runs the same code with the defaults and writes
// bench/RESULTS.md.
//
//	go run ./bench/cmd/b3b4 -bench b3 -runs 3
//	go run ./bench/cmd/b3b4 -bench b4 -duration 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stagedserver/seda/bench/b3"
	"github.com/stagedserver/seda/bench/b4"
)

func main() {
	var (
		which     = flag.String("bench", "b3", "b3 or b4")
		records   = flag.Int("records", 0, "b3: records per run (0: 1,000,000)")
		naive     = flag.Int("naive-records", 0, "b3: records per naive run (0: 50,000)")
		conns     = flag.Int("conns", 0, "client connections (0: 64)")
		runs      = flag.Int("runs", 0, "b3: alternating runs (0: 3)")
		latency   = flag.Int("latency-records", 0, "b3: records in the half-rate latency runs (0: records/4, -1: skip)")
		variants  = flag.String("variants", "", "b3: comma-separated subset of pipeline,copy,chan,naive")
		profile   = flag.String("cpuprofile", "", "b3: CPU profile of the first pipeline run")
		duration  = flag.Duration("duration", 0, "b4: overload duration (0: 30s)")
		overload  = flag.Float64("factor", 0, "b4: offered rate over the sustained maximum (0: 10)")
		dsn       = flag.String("dsn", "", "existing PostgreSQL instead of a throwaway one")
		startTime = time.Now()
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var md string
	switch *which {
	case "b3":
		var vs []string
		if *variants != "" {
			vs = strings.Split(*variants, ",")
		}
		res, err := b3.Run(ctx, b3.Config{Records: *records, NaiveRecords: *naive, Conns: *conns, Runs: *runs,
			LatencyRecords: *latency, Variants: vs, CPUProfile: *profile, DSN: *dsn, Log: os.Stderr})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		md = res.Markdown()
	case "b4":
		res, err := b4.Run(ctx, b4.Config{Duration: *duration, Factor: *overload, Conns: *conns, DSN: *dsn, Log: os.Stderr})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		md = res.Markdown()
	default:
		fmt.Fprintln(os.Stderr, "-bench: b3 or b4")
		os.Exit(2)
	}
	fmt.Printf("Command: `%s`  \nTook: %v\n\n%s", strings.Join(os.Args, " "), time.Since(startTime).Round(time.Second), md)
}
