package db

// This file holds the group commit of method copy: batches that reach the
// sink while its COPYs are running wait, and the next COPY writes all of
// them in one transaction.
//
// Why: PostgreSQL pays a good part of a COPY's cost per statement and per
// concurrent writer, not per row. Profiled on PostgreSQL 15 (perf, B8's
// light rows and B3's JSON rows; the figures are in bench/RESULTS.md's B8
// notes), a COPY of a few thousand rows sets up to a thousand tuple slots,
// each pinning the table's descriptor in a resource owner whose cost
// grows with the slots held; it shrinks and regrows the backend's malloc
// heap (a brk and a TLB flush each time); it starts a new ring of shared
// buffers whose pages the backend faults in; and it commits with a WAL
// flush. Each further backend writing the table at once adds page faults
// on shared buffers, extension-lock and index-page contention. With a
// COPY per batch from each worker's own connection, PostgreSQL spent 3.8
// µs per light row against 2.3 for four psql \copy; with the batches
// grouped, 2.45.
//
// How: a batch joins the queue. When no COPY is running, the batch that
// finds the queue so starts one at once (a lone batch never waits). When
// a COPY ends, the batches that came meanwhile are written together by
// the next COPY, whose leader is the oldest of them. A further COPY runs
// beside the first ones only when the batches waiting reach laneBytes,
// and never more than the connections. Into a table with an index
// laneBytes is a whole group (groupBytes): one COPY at a time while it
// keeps up, more when the backlog says it does not, since concurrent
// COPYs contend for the index's pages and write their keys out of order.
// Into a table without one, a waiting batch is enough: there concurrent
// COPYs cost PostgreSQL little more per row, and one COPY at a time left
// its backend idle a third of the time (the gaps between COPYs), so the
// pipeline stored light rows 15–30% slower (bench/RESULTS.md, B8 notes).

import (
	"context"
	"encoding/binary"
	"math"
	"slices"
	"sync"
)

// groupBytes is the most COPY data a group takes (a lone larger batch is
// a group by itself): 4 MiB is some 25,000 light rows; past a few
// thousand rows a COPY's cost per statement is small beside its rows'.
const groupBytes = 4 << 20

// outcome is what a waiting batch is told: a group to lead (it is the
// group's first batch), or how the group it was in ended.
type outcome struct {
	lead   []*rows
	err    error // nil: committed
	idem   bool  // the group went through the idempotent path
	shared bool  // the group held other batches too: a row error may be theirs
	left   bool  // the batch left the queue unwritten, as its context ended
}

// groups is the queue of batches waiting for a COPY, and the COPYs
// (lanes) running.
type groups struct {
	mu       sync.Mutex
	queue    []*rows // oldest first
	bytes    int     // COPY data in queue
	lanes    int     // COPYs running or handed to a leader
	maxLanes int
	maxBytes int // the most COPY data a group takes (groupBytes)
	// laneBytes is the COPY data waiting that starts a further COPY beside
	// the running ones: maxBytes, or 1 into a table without an index.
	laneBytes int
}

// join queues r. When r's arrival starts a COPY it returns that group if
// r leads it; a group led by an older batch is handed to that batch's
// worker, and join returns nil.
func (g *groups) join(r *rows) []*rows {
	g.mu.Lock()
	g.queue = append(g.queue, r)
	g.bytes += len(r.buf)
	var grp []*rows
	if g.lanes == 0 || g.lanes < g.maxLanes && g.bytes >= g.laneBytes {
		g.lanes++
		grp = g.takeLocked()
	}
	g.mu.Unlock()
	if grp == nil || grp[0] == r {
		return grp
	}
	grp[0].res <- outcome{lead: grp}
	return nil
}

// takeLocked takes the oldest batches, up to maxBytes of them (at least
// one), off the queue.
func (g *groups) takeLocked() []*rows {
	n, size := 0, 0
	for n < len(g.queue) && (n == 0 || size+len(g.queue[n].buf) <= g.maxBytes) {
		size += len(g.queue[n].buf)
		n++
	}
	grp := slices.Clone(g.queue[:n])
	rest := copy(g.queue, g.queue[n:])
	clear(g.queue[rest:])
	g.queue = g.queue[:rest]
	g.bytes -= size
	return grp
}

// done ends a group: the lane passes to the next group, if batches wait,
// and each batch of the group is told o.
func (g *groups) done(grp []*rows, o outcome) {
	g.mu.Lock()
	var next []*rows
	if len(g.queue) > 0 {
		next = g.takeLocked()
	} else {
		g.lanes--
	}
	g.mu.Unlock()
	if next != nil {
		next[0].res <- outcome{lead: next}
	}
	o.shared = len(grp) > 1
	for _, r := range grp {
		r.res <- o
	}
}

// wait returns r's next outcome. When ctx ends first and r is still in
// the queue, r leaves it unwritten; once taken into a group, r's outcome
// is waited for (the group's leader runs under the same stage context, so
// it ends soon too).
func (g *groups) wait(ctx context.Context, r *rows) outcome {
	select {
	case o := <-r.res:
		return o
	case <-ctx.Done():
	}
	g.mu.Lock()
	if i := slices.Index(g.queue, r); i >= 0 {
		g.queue = slices.Delete(g.queue, i, i+1)
		g.bytes -= len(r.buf)
		g.mu.Unlock()
		return outcome{err: ctx.Err(), left: true}
	}
	g.mu.Unlock()
	return <-r.res
}

// groupData is a group's COPY data, made once for all its attempts.
// With sorted, the group's rows go in the order of their key (the sink's
// single integer key column): the rows of a batch come in the order their
// records arrived, and records from many clients at uneven paces carry
// keys far apart (in B3 nine rows in ten came after a larger key, tens of
// thousands of ids below it), so each insert into the key's btree went to
// another leaf, out of cache; in key order consecutive inserts share a
// leaf. Measured on B3's rows in the pipeline's order, 8,000 rows a COPY:
// PostgreSQL 3.7 µs per row, 3.3 with each COPY's rows sorted.
type groupData struct {
	rows  []keyedRow
	tmp   []keyedRow // sortRows' other half
	ends  []int      // sortRows' runs
	parts [][]byte
	d     dedup // conflict: update: one row per key (upsert.go)
}

type keyedRow struct {
	key int64
	row []byte
}

// make returns the number of rows of grp and the parts of its COPY data.
// With d (conflict: update), only the rows d picks are written: one per
// key, across the group's batches.
func (g *groupData) make(grp []*rows, bin, sorted bool, d *dedup, versioned bool) (int, [][]byte) {
	if bin {
		g.parts = append(g.parts, binaryHeader)
	}
	n := 0
	switch {
	case d != nil:
		for _, r := range grp {
			d.add(r, 0, len(r.evs), versioned)
		}
		n = len(d.win)
		if !sorted {
			g.parts = d.parts(g.parts)
			break
		}
		for _, ref := range d.win {
			g.rows = append(g.rows, keyedRow{ref.r.keys[ref.i], ref.r.buf[ref.r.off[ref.i]:ref.r.off[ref.i+1]]})
		}
	default:
		for _, r := range grp {
			n += len(r.evs)
			if !sorted {
				g.parts = append(g.parts, r.buf)
				continue
			}
			for i, k := range r.keys {
				g.rows = append(g.rows, keyedRow{k, r.buf[r.off[i]:r.off[i+1]]})
			}
		}
	}
	if sorted {
		g.sortRows()
		for _, kr := range g.rows {
			g.parts = append(g.parts, kr.row)
		}
	}
	if bin {
		g.parts = append(g.parts, binaryTrailer)
	}
	return n, g.parts
}

// sortRows sorts g.rows by key, stably, with g.tmp as the other half of
// a merge. A group's rows come as ascending runs: each read of a
// connection brings its records in the order the client numbered them,
// so the rows are a few dozen runs interleaved. It merges neighbouring
// runs, pass after pass, comparing keys inline: log2(runs) passes over
// the rows, where a comparison sort calls its comparison function n
// log2(n) times (pdqsort through slices.SortFunc was 5% of the JSON
// path's CPU).
func (g *groupData) sortRows() {
	rows := g.rows
	n := len(rows)
	ends := g.ends[:0] // ends[i] is where run i ends
	for i := 1; i < n; i++ {
		if rows[i].key < rows[i-1].key {
			ends = append(ends, i)
		}
	}
	if len(ends) == 0 {
		g.ends = ends
		return
	}
	ends = append(ends, n)
	src, dst := rows, slices.Grow(g.tmp[:0], n)[:n]
	for len(ends) > 1 {
		lo, k := 0, 0
		for i := 0; i < len(ends); i += 2 {
			if i+1 == len(ends) { // an odd run out: copied as it is
				copy(dst[lo:ends[i]], src[lo:ends[i]])
				ends[k] = ends[i]
				k++
				break
			}
			mid, hi := ends[i], ends[i+1]
			a, b, o := lo, mid, lo
			for a < mid && b < hi {
				if src[b].key < src[a].key {
					dst[o] = src[b]
					b++
				} else {
					dst[o] = src[a]
					a++
				}
				o++
			}
			o += copy(dst[o:], src[a:mid])
			copy(dst[o:], src[b:hi])
			ends[k] = hi
			k++
			lo = hi
		}
		ends = ends[:k]
		src, dst = dst, src
	}
	g.rows, g.tmp, g.ends = src, dst, ends
}

// reset drops the references to the group's rows.
func (g *groupData) reset() {
	g.d.reset()
	clear(g.rows)
	clear(g.tmp)
	clear(g.parts)
	g.rows, g.tmp, g.parts = g.rows[:0], g.tmp[:0], g.parts[:0]
}

// fieldKey reads back the integer a row's key field holds, from the COPY
// data at the field's start: in the binary format its length and its 2, 4
// or 8 bytes; in the text format its digits. A NULL (refused by the key's
// index anyway) sorts first.
func fieldKey(b []byte, bin bool) int64 {
	if bin {
		if len(b) < 4 {
			return math.MinInt64
		}
		n := int32(binary.BigEndian.Uint32(b))
		switch {
		case n == 2 && len(b) >= 6:
			return int64(int16(binary.BigEndian.Uint16(b[4:])))
		case n == 4 && len(b) >= 8:
			return int64(int32(binary.BigEndian.Uint32(b[4:])))
		case n == 8 && len(b) >= 12:
			return int64(binary.BigEndian.Uint64(b[4:]))
		}
		return math.MinInt64
	}
	end := 0
	for end < len(b) && b[end] != '\t' && b[end] != '\n' {
		end++
	}
	if k, ok := parseDecimal(b[:end]); ok {
		return k
	}
	return math.MinInt64
}

// parseDecimal parses an optionally signed decimal integer (an integer
// column's text in COPY data) without allocating.
func parseDecimal(s []byte) (int64, bool) {
	neg := false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	if len(s) == 0 || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	switch {
	case neg && n <= 1<<63:
		return int64(-n), true
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}
