package b8

// This file measures B8's pipeline in process: CPU and allocations per
// record, the figure hot-path changes are measured by.

import (
	"context"
	"flag"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/bench/internal/rig"
	"github.com/stagedserver/seda/bench/measure"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stats"
)

// BenchmarkLightPath runs B8's pipeline in this process: the README's
// syslog pipeline as written, and tuned (store batch 2000, 8 workers, as
// the issue measured it), fed b.N messages over 4 connections, waiting
// until every row is committed. It reports the process's CPU per record
// (the sender's large writes cost little) and the allocations per record:
// the figure each hot-path change is measured by.
//
//	go test -run '^$' -bench LightPath -benchtime 200000x ./bench/b8
func BenchmarkLightPath(b *testing.B) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		b.Fatal(err)
	}
	y, err := ReadmePipeline(readme, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tuned := strings.Replace(y, "    create: true\n", "    create: true\n    batch: 2000\n    workers: 8\n", 1)
	if tuned == y {
		b.Fatal("cannot tune the README's pipeline: no `create: true` line in its store stage")
	}
	for _, v := range []struct{ name, yaml string }{{"as-written", y}, {"tuned", tuned}} {
		b.Run(v.name, func(b *testing.B) { benchLight(b, v.yaml) })
	}
}

// lightProfile names a file for a CPU profile of the timed part of
// BenchmarkLightPath alone (-cpuprofile also takes in the setup: building
// the messages and their checksums).
var lightProfile = flag.String("lightprofile", "", "write a CPU profile of BenchmarkLightPath's timed part to this file")

func benchLight(b *testing.B, yaml string) {
	ctx := context.Background()
	dsn := cluster.NewDatabase(b)
	reg, err := rig.Registry()
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := pipeline.Parse("syslog.yaml", []byte(yaml), reg, func(k string) (string, bool) {
		if k == "DATABASE_URL" {
			return dsn, true
		}
		return "", false
	})
	if err != nil {
		b.Fatal(err)
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop(), AdminListen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer p.Stop(ctx)
	addr := p.Addr("accept").String()
	store := func() stats.Stage { st, _ := p.StageStats("store"); return st }
	w, err := newWorkload(b.N, 4, "", false)
	if err != nil {
		b.Fatal(err)
	}
	done := store().Out
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	if *lightProfile != "" {
		f, err := os.Create(*lightProfile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := measure.CPU()
	b.ResetTimer()
	if err := send(ctx, addr, w.streams); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for store().Out < done+uint64(b.N) {
		if st := store(); st.Errors > 0 || time.Now().After(deadline) {
			b.Fatalf("store: %d stored, %d errors", st.Out-done, st.Errors)
		}
		// Not more often: Stats computes the latency quantiles, which
		// would show in the CPU measured.
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	cpu := measure.CPU() - cpu0
	if *lightProfile != "" {
		pprof.StopCPUProfile()
	}
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/rec")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/rec")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N), "B/rec")
	if c := store().Control; c != nil && c.Batch != nil && c.Workers != nil {
		// Where the controllers had taken the store at the end: its batch
		// size and workers decide the per-batch costs.
		b.ReportMetric(float64(c.Batch.Now), "store-batch")
		b.ReportMetric(float64(c.Workers.Now), "store-workers")
	}
}
