package b4

// This file exports B4's pipeline process and acked-id bitmap for other
// benchmarks that run the same pipeline out of process (B10, the soak).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Pipectl is `pipectl run` serving B3's example pipeline in its own
// process, on free loopback ports.
type Pipectl struct{ p *pipectlProc }

// StartPipectl writes B3's pipeline for table (store queue under
// overflow) into dir and runs it with bin; it returns once the pipeline
// is running.
func StartPipectl(ctx context.Context, bin, dir, dsn, table, overflow string) (*Pipectl, error) {
	p, err := startPipectl(ctx, bin, dir, dsn, table, overflow, 0)
	if err != nil {
		return nil, err
	}
	return &Pipectl{p}, nil
}

// PID is the process's id.
func (p *Pipectl) PID() int { return p.p.pid() }

// Addr is where the pipeline takes records.
func (p *Pipectl) Addr() string { return p.p.Addr() }

// Exited reports whether the process has exited.
func (p *Pipectl) Exited() bool {
	select {
	case <-p.p.exited:
		return true
	default:
		return false
	}
}

// Stop drains the pipeline (SIGTERM) and waits; an exit that is not clean
// is an error.
func (p *Pipectl) Stop(ctx context.Context) error { return p.p.Stop(ctx) }

// Metric reads one unlabelled figure from the admin endpoint's /metrics:
// "go_goroutines".
func (p *Pipectl) Metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.p.admin+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.p.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("b4: /metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("b4: /metrics has no %s", name)
}

// IDSet is a bitmap of the ids base..base+n-1; Add is safe for concurrent
// use.
type IDSet struct{ s *idSet }

// NewIDSet makes an empty set of the ids base..base+n-1.
func NewIDSet(base int64, n int) IDSet { return IDSet{newIDSet(base, n)} }

// Add puts id in the set; an id outside its range is only counted
// (Outside).
func (s IDSet) Add(id int64) { s.s.Add(id) }

// Len is how many ids are in the set.
func (s IDSet) Len() int { return s.s.Len() }

// Outside is how many ids added fell outside the set's range.
func (s IDSet) Outside() uint64 { return s.s.outside.Load() }

// CheckStored verifies that every id of acked is in table; it returns the
// rows in the table.
func CheckStored(ctx context.Context, dsn, table string, acked IDSet) (int64, error) {
	return checkStored(ctx, dsn, table, acked.s)
}
