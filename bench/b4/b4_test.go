package b4_test

// This file tests a short B4: every record answered and every acked one
// stored.

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/bench/b4"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
)

var cluster pgtesting.Cluster

func TestMain(m *testing.M) { goleak.VerifyTestMain(cluster.Wrap(m)) }

// TestRunShort overloads the pipeline briefly: every record is answered,
// and every acked one is in the table (Run checks it and fails otherwise).
func TestRunShort(t *testing.T) {
	dsn := cluster.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := b4.Run(ctx, b4.Config{Duration: 2 * time.Second, Conns: 4, SustainRecords: 2000, Window: 2000, DSN: dsn, Log: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sustained <= 0 || res.Sent == 0 || res.Acked == 0 || res.Acked+res.Nacked != res.Sent {
		t.Fatalf("sustained %.0f, sent %d, acked %d, nacked %d", res.Sustained, res.Sent, res.Acked, res.Nacked)
	}
	if res.TableRows < int64(res.Acked) {
		t.Errorf("%d rows stored, fewer than the %d acked", res.TableRows, res.Acked)
	}
	// The memory is the pipeline process's, read from /proc and its
	// admin endpoint.
	if res.PeakRSS <= 0 || len(res.Mem) == 0 || res.Mem[0].RSS <= 0 || res.Mem[0].HeapLive == 0 {
		t.Errorf("peak RSS %d, samples %+v", res.PeakRSS, res.Mem)
	}
	// With perf(1) on the machine the profile comes from a run of its
	// own after the measured one.
	if _, err := exec.LookPath("perf"); err == nil && len(res.Hot) == 0 {
		t.Errorf("perf is installed, but the profile run gave no profile")
	}
	if md := res.Markdown(); !strings.Contains(md, "acked / sustained") || !strings.Contains(md, "pipeline peak RSS") {
		t.Errorf("Markdown:\n%s", md)
	} else {
		t.Log("\n" + md)
	}
}

// tlog writes progress lines to the test log.
type tlog struct{ t *testing.T }

func (l tlog) Write(b []byte) (int, error) { l.t.Log(strings.TrimSpace(string(b))); return len(b), nil }
