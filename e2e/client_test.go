package e2e

// This file holds the resender, the at-least-once client the tests send
// with: it resends whatever is not acked and remembers what was.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagedserver/seda/internal/wire"
)

// resender is an at-least-once client: it sends records (jsonRecord of
// their ids) and resends, on a new connection, every record that is not
// acknowledged: nacked (busy, say), or in flight when its connection
// ended. It remembers every id it has seen acked.
type resender struct {
	addr  func() string // where to connect; asked again at every reconnect
	chunk int           // records sent before waiting for their acks
	pause time.Duration // between chunks
	// gate, when set, holds back the records past its value in each
	// share of share records (runShares): a test lets the load go on
	// only as far as its faults need, so that the load cannot end before
	// they are done.
	gate  *atomic.Int64
	share int64

	mu      sync.Mutex
	acked   map[int64]bool
	nacks   map[string]int // reason → count
	dials   int            // connections made
	failed  int            // connections that ended with records unsettled
	resends int            // records sent and not acked, so sent again
}

func newResender(addr func() string, chunk int, pause time.Duration) *resender {
	return &resender{addr: addr, chunk: chunk, pause: pause, acked: map[int64]bool{}, nacks: map[string]int{}}
}

// conn tracks one connection's record numbers.
type resendConn struct {
	r       *resender
	mu      sync.Mutex
	ids     []int64 // ids[n-1] is record n
	last    uint64  // the cumulative ack
	nacked  map[uint64]bool
	refused bool // nack 0: the server refused the connection
}

func (c *resendConn) add(id int64) {
	c.mu.Lock()
	c.ids = append(c.ids, id)
	c.mu.Unlock()
}

func (c *resendConn) onReply(rep wire.Reply) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rep.Nack {
		if rep.N == 0 {
			c.refused = true
		} else {
			for n := rep.N; n <= rep.Last(); n++ { // a range nack refuses N..Last
				c.nacked[n] = true
			}
		}
		c.r.mu.Lock()
		c.r.nacks[nackKind(rep.Reason)] += int(max(rep.Records(), 1))
		c.r.mu.Unlock()
		return
	}
	c.r.mu.Lock()
	for n := c.last + 1; n <= rep.N; n++ {
		if !c.nacked[n] {
			c.r.acked[c.ids[n-1]] = true
		}
	}
	c.r.mu.Unlock()
	c.last = rep.N
}

// nackKind shortens a nack reason to its first words, for counting.
func nackKind(reason string) string {
	if i := strings.IndexByte(reason, ':'); i >= 0 {
		reason = reason[:i]
	}
	return reason
}

// shares is a resender run whose ids 1..n are split among workers
// goroutines, one share each.
type shares struct {
	done chan struct{} // closed once every worker has returned
	mu   sync.Mutex
	errs []error
}

// runShares starts workers goroutines that send ids 1..n, each its share,
// until acked or ctx ends.
func (r *resender) runShares(ctx context.Context, n, workers int) *shares {
	s := &shares{done: make(chan struct{})}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.run(ctx, idRange(int64(w*n/workers+1), n/workers)); err != nil {
				s.mu.Lock()
				s.errs = append(s.errs, err)
				s.mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(s.done) }()
	return s
}

// wait returns the workers' errors once all have returned.
func (s *shares) wait() []error {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs
}

// run sends ids until every one is acked or ctx ends; the error says how
// many are left.
func (r *resender) run(ctx context.Context, ids []int64) error {
	pending := ids
	for len(pending) > 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("resender: %d records not acked: %w", len(pending), ctx.Err())
		}
		rc := &resendConn{r: r, nacked: map[uint64]bool{}}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := wire.DialOptions(dctx, r.addr(), wire.Options{OnReply: rc.onReply})
		cancel()
		if err != nil {
			sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		r.mu.Lock()
		r.dials++
		r.mu.Unlock()
		ok := r.sendAll(ctx, c, rc, pending)
		c.Close()
		if !ok {
			r.mu.Lock()
			r.failed++
			r.mu.Unlock()
		}
		r.mu.Lock()
		rc.mu.Lock()
		for _, id := range rc.ids {
			if !r.acked[id] {
				r.resends++ // sent, not acked: it goes out again
			}
		}
		rc.mu.Unlock()
		left := pending[:0:0]
		for _, id := range pending {
			if !r.acked[id] {
				left = append(left, id)
			}
		}
		r.mu.Unlock()
		pending = left
		if len(pending) > 0 {
			sleepCtx(ctx, 10*time.Millisecond)
		}
	}
	return nil
}

// sendAll sends ids in chunks, waiting for each chunk's replies; false
// when the connection ended first.
func (r *resender) sendAll(ctx context.Context, c *wire.Client, rc *resendConn, ids []int64) bool {
	for i := 0; i < len(ids); {
		end := min(i+r.chunk, len(ids))
		for k := i; k < end; k++ {
			if !r.mayGo(ids[k]) {
				end = k
				break
			}
		}
		if end == i { // held back: wait for the gate to open further
			if ctx.Err() != nil {
				return false
			}
			sleepCtx(ctx, 2*time.Millisecond)
			continue
		}
		chunk := ids[i:end]
		i = end
		for _, id := range chunk {
			rc.add(id)
			if _, err := c.Send(jsonRecord(id)); err != nil {
				return false
			}
		}
		if c.Flush() != nil {
			return false
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := c.Wait(wctx)
		cancel()
		if err != nil {
			return false
		}
		rc.mu.Lock()
		refused := rc.refused
		rc.mu.Unlock()
		if refused {
			return false
		}
		if r.pause > 0 {
			sleepCtx(ctx, r.pause)
		}
	}
	return true
}

// mayGo reports whether the gate lets record id be sent now.
func (r *resender) mayGo(id int64) bool {
	return r.gate == nil || (id-1)%r.share < r.gate.Load()
}

// ackedIDs returns a copy of the ids seen acked so far.
func (r *resender) ackedIDs() map[int64]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[int64]bool, len(r.acked))
	for id := range r.acked {
		m[id] = true
	}
	return m
}

func (r *resender) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ns []string
	for k, v := range r.nacks {
		ns = append(ns, fmt.Sprintf("%q×%d", k, v))
	}
	sort.Strings(ns)
	return fmt.Sprintf("acked %d, connections %d (%d ended early), records resent %d, nacks [%s]",
		len(r.acked), r.dials, r.failed, r.resends, strings.Join(ns, " "))
}

// missing returns the ids of want that are not in have, at most 10 of
// them, and how many there are.
func missing(want, have map[int64]bool) ([]int64, int) {
	var ids []int64
	n := 0
	for id := range want {
		if !have[id] {
			n++
			if len(ids) < 10 {
				ids = append(ids, id)
			}
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, n
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// idRange returns the ids [from, from+n).
func idRange(from int64, n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = from + int64(i)
	}
	return ids
}
