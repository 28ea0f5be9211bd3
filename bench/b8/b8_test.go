package b8

// This file tests a tiny B8 and the README's syslog pipeline it runs.

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
)

var cluster pgtesting.Cluster

func TestMain(m *testing.M) { goleak.VerifyTestMain(cluster.Wrap(m)) }

// TestRunTiny runs every contender once on a few messages: Run checks
// that every row is stored exactly and fails otherwise. A running
// process's CPU time is read from /proc in clock ticks (10 ms), exact
// but rounded down: a contender's "some CPU" is certain only when it
// spends 10 ms or more, which 30,000 rows take at a microsecond each
// (with 3,000, the pipeline's CPU over its run read 0 now and then).
func TestRunTiny(t *testing.T) {
	dsn := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{Records: 30000, Runs: 1, DSN: dsn, Settle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{Pipeline, Copy, Rsyslog, JSON} {
		ss := res.Samples[c]
		if len(ss) != 1 {
			t.Fatalf("%s: %d samples, want 1", c, len(ss))
		}
		if ss[0].Rows != 30000 || ss[0].RowsPerSec <= 0 || ss[0].ProcCPU <= 0 {
			t.Errorf("%s: %+v, want 30000 rows, a rate and some CPU", c, ss[0])
		}
	}
	md := res.Markdown()
	for _, want := range []string{"| pipeline / contender |", "| copy |", "| rsyslog |", "Pipeline process CPU per record", "JSON path", "PostgreSQL's CPU per row fed by the pipeline"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestReadmePipeline(t *testing.T) {
	readme := []byte("intro\n<!-- syslog:begin -->\n```yaml\nname: s\nadmin: {listen: 127.0.0.1:9465}\nstages:\n" +
		"  accept:\n    kind: netio.tcp\n    listen: 127.0.0.1:5140\n    next: parse\n```\n<!-- syslog:end -->\n")
	y, err := ReadmePipeline(readme, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(y, "    listen: 127.0.0.1:0\n") || !strings.Contains(y, "admin: {listen: 127.0.0.1:9465}") {
		t.Errorf("got\n%s", y)
	}
	if _, err := ReadmePipeline([]byte("no block"), "x"); err == nil {
		t.Error("no error for a README without the block")
	}
}
