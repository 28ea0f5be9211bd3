package db

// This file tests the group commit of method copy (batches written
// together, a refused row or a cancelled waiter isolated), a group's rows
// read and sorted by key, and the COPY's data source.

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// holdWrites makes every write to table events wait (another session
// holds a SHARE lock on it) until the returned function is called.
func holdWrites(t *testing.T, dsn string) (release func()) {
	t.Helper()
	c := connect(t, dsn)
	exec(t, c, "BEGIN")
	exec(t, c, "LOCK TABLE events IN SHARE MODE")
	return func() { exec(t, c, "COMMIT") }
}

// waitBlocked waits until a write to events waits for the lock.
func waitBlocked(t *testing.T, dsn string) {
	t.Helper()
	db := connect(t, dsn)
	poll.Until(t, "a write waiting for the lock", func() bool {
		return count(t, db, "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'events'::regclass") > 0
	})
}

// queued is the number of batches waiting for a COPY.
func queued(s *Sink) int {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	return len(s.groups.queue)
}

// handleAsync runs Handle in a goroutine; the channel gets its error.
func handleAsync(ctx context.Context, s *Sink, batch []*stage.Event) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Handle(ctx, batch, nil) }()
	return done
}

func waitAll(t *testing.T, errs ...<-chan error) {
	t.Helper()
	for i, c := range errs {
		if err := <-c; err != nil {
			t.Fatalf("Handle %d: %v", i, err)
		}
	}
}

// groupOf queues batches behind a COPY held by a lock: the first batch
// leads a COPY that waits; the others wait in the queue. It returns the
// Handles' errors and the function that lets the writes go.
func groupOf(t *testing.T, s *Sink, dsn string, batches ...[]*stage.Event) (func(), []<-chan error) {
	t.Helper()
	release := holdWrites(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	errs := []<-chan error{handleAsync(ctx, s, batches[0])}
	waitBlocked(t, dsn)
	for i, b := range batches[1:] {
		errs = append(errs, handleAsync(ctx, s, b))
		poll.Until(t, "the batch queued", func() bool { return queued(s) == i+1 })
	}
	return release, errs
}

// Batches that come while a COPY runs are written together by the next
// one, in one transaction, and each is acked after it commits.
func TestGroupCommit(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, config(dsn, nil))
	db := connect(t, dsn)
	rec := &recorder{}
	release, errs := groupOf(t, s, dsn, batchOf(rec, 0, 10), batchOf(rec, 10, 20), batchOf(rec, 20, 30), batchOf(rec, 30, 40))
	if acked, _ := rec.results(); acked != 0 {
		t.Fatalf("%d events acked before any commit", acked)
	}
	release()
	waitAll(t, errs...)
	if acked, nacked := rec.results(); acked != 40 || len(nacked) != 0 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
	if n := count(t, db, "SELECT count(DISTINCT xmin::text) FROM events WHERE id >= 10"); n != 1 {
		t.Fatalf("the three waiting batches were written by %d transactions, want 1", n)
	}
	if n := count(t, db, "SELECT count(DISTINCT xmin::text) FROM events"); n != 2 {
		t.Fatalf("%d transactions, want 2", n)
	}
	s.groups.mu.Lock()
	q, lanes := len(s.groups.queue), s.groups.lanes
	s.groups.mu.Unlock()
	if q != 0 || lanes != 0 {
		t.Fatalf("after the writes: %d batches queued, %d COPYs running", q, lanes)
	}
}

// Into a table without an index a batch that comes while a COPY runs
// starts a COPY of its own beside it, instead of waiting for the next
// (TestGroupCommit shows the waiting into a table with one).
func TestGroupLaneWithoutIndex(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, config(dsn, map[string]any{"key": nil}))
	db := connect(t, dsn)
	rec := &recorder{}
	release := holdWrites(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := handleAsync(ctx, s, batchOf(rec, 0, 10))
	waitBlocked(t, dsn)
	second := handleAsync(ctx, s, batchOf(rec, 10, 20))
	poll.Until(t, "both COPYs waiting for the lock", func() bool {
		return count(t, db, "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'events'::regclass") == 2
	})
	s.groups.mu.Lock()
	q, lanes := len(s.groups.queue), s.groups.lanes
	s.groups.mu.Unlock()
	if q != 0 || lanes != 2 {
		t.Fatalf("while the first COPY waits: %d batches queued, %d COPYs running; want 0 and 2", q, lanes)
	}
	release()
	waitAll(t, first, second)
	if acked, nacked := rec.results(); acked != 20 || len(nacked) != 0 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
	if n := count(t, db, "SELECT count(DISTINCT xmin::text) FROM events"); n != 2 {
		t.Fatalf("%d transactions, want 2", n)
	}
}

// A row PostgreSQL refuses in a group fails the group's COPY; each batch
// is then written alone, so only the refused rows are nacked.
func TestGroupRowErrorIsolated(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, config(dsn, map[string]any{"conflict": "error"}))
	db := connect(t, dsn)
	handle(t, s, batchOf(&recorder{}, 0, 5))
	rec := &recorder{}
	release, errs := groupOf(t, s, dsn, batchOf(rec, 100, 110), batchOf(rec, 200, 210), batchOf(rec, 3, 13), batchOf(rec, 300, 310))
	release()
	waitAll(t, errs...)
	acked, nacked := rec.results()
	if acked != 38 || len(nacked) != 2 {
		t.Fatalf("acked %d, nacked %v; want 38 acked, 3 and 4 nacked", acked, nacked)
	}
	for _, seq := range []uint64{3, 4} {
		var pe *pgconn.PgError
		if err := nacked[seq]; !errors.As(err, &pe) || pe.Code != "23505" || !strings.Contains(err.Error(), `stage "store": record `) {
			t.Errorf("event %d nacked with %v", seq, err)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM events"); n != 43 {
		t.Fatalf("%d rows, want 43", n)
	}
}

// Under conflict: ignore a group holding a resend goes through the
// idempotent path as a whole: every event acked, every row once.
func TestGroupConflictIgnore(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, config(dsn, map[string]any{"conflict": "ignore"}))
	db := connect(t, dsn)
	handle(t, s, batchOf(&recorder{}, 0, 10))
	rec := &recorder{}
	release, errs := groupOf(t, s, dsn, batchOf(rec, 100, 110), batchOf(rec, 5, 15), batchOf(rec, 20, 30))
	release()
	waitAll(t, errs...)
	if acked, nacked := rec.results(); acked != 30 || len(nacked) != 0 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
	if n := count(t, db, "SELECT count(*) FROM events"); n != 35 {
		t.Fatalf("%d rows, want 35", n)
	}
	if n := s.idemWrites.Load(); n != 1 {
		t.Fatalf("%d writes through the idempotent path, want 1 (the group)", n)
	}
}

// A batch whose context ends while it waits leaves the queue unwritten,
// its events left to the stage runtime; the others are written.
func TestGroupWaiterCancelled(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, config(dsn, nil))
	db := connect(t, dsn)
	rec := &recorder{}
	release, errs := groupOf(t, s, dsn, batchOf(rec, 0, 10), batchOf(rec, 10, 20))
	gone := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	leaving := batchOf(gone, 50, 60)
	errLeft := handleAsync(ctx, s, leaving)
	poll.Until(t, "the batch queued", func() bool { return queued(s) == 2 })
	cancel()
	if err := <-errLeft; !errors.Is(err, context.Canceled) {
		t.Fatalf("Handle of the cancelled batch returned %v, want context.Canceled", err)
	}
	if queued(s) != 1 {
		t.Fatalf("%d batches queued after the cancelled one left, want 1", queued(s))
	}
	for _, ev := range leaving {
		if ev.Finished() {
			t.Fatalf("event %d of the cancelled batch finished by the sink", ev.Seq)
		}
	}
	release()
	waitAll(t, errs...)
	if acked, nacked := rec.results(); acked != 20 || len(nacked) != 0 {
		t.Fatalf("acked %d, nacked %v", acked, nacked)
	}
	if n := count(t, db, "SELECT count(*) FROM events"); n != 20 {
		t.Fatalf("%d rows, want 20 (none of the cancelled batch)", n)
	}
}

// A group's rows go into the table in the order of their integer key,
// whatever the order of the batches and of the rows in them.
func TestGroupRowsInKeyOrder(t *testing.T) {
	for _, format := range []string{"binary", "text"} {
		t.Run(format, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			over := map[string]any{}
			if format == "text" { // numeric has no binary form here: the table is written as text
				over["columns"] = [][2]string{{"id", "id"}, {"n", "n"}, {"body", "$"}}
				over["types"] = [][2]string{{"id", "integer"}, {"n", "numeric"}}
			}
			s := startSink(t, config(dsn, over))
			if s.lay.Load().sortCol != 0 || s.lay.Load().binary != (format == "binary") {
				t.Fatalf("sort column %d, binary %v", s.lay.Load().sortCol, s.lay.Load().binary)
			}
			db := connect(t, dsn)
			rec := &recorder{}
			var down, mixed []*stage.Event
			for id := 39; id >= 30; id-- {
				down = append(down, record(rec, uint64(id), json.Number(fmt.Sprint(id)), map[string]any{"n": 1.5}))
			}
			for _, id := range []int{7, -3, 0, 1 << 20, 5} {
				mixed = append(mixed, record(rec, uint64(id+10), json.Number(fmt.Sprint(id)), map[string]any{"n": 2}))
			}
			release, errs := groupOf(t, s, dsn, batchOf(rec, 100, 105), down, mixed)
			release()
			waitAll(t, errs...)
			if acked, nacked := rec.results(); acked != 20 || len(nacked) != 0 {
				t.Fatalf("acked %d, nacked %v", acked, nacked)
			}
			rows, err := db.Query(context.Background(), "SELECT id FROM events WHERE id < 100 OR id = 1048576 ORDER BY ctid")
			if err != nil {
				t.Fatal(err)
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != 15 || !slices.IsSorted(ids) {
				t.Fatalf("rows in the order %v, want 15 in key order", ids)
			}
		})
	}
}

func TestFieldKey(t *testing.T) {
	bin := func(n int, v uint64) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(n))
		switch n {
		case 2:
			return binary.BigEndian.AppendUint16(b, uint16(v))
		case 4:
			return binary.BigEndian.AppendUint32(b, uint32(v))
		}
		return binary.BigEndian.AppendUint64(b, v)
	}
	cases := []struct {
		b    []byte
		bin  bool
		want int64
	}{
		{bin(2, uint64(0xfffe)), true, -2},
		{bin(4, 70000), true, 70000},
		{bin(8, 1<<40), true, 1 << 40},
		{[]byte{0xff, 0xff, 0xff, 0xff}, true, math.MinInt64}, // NULL
		{[]byte("-42\tx\n"), false, -42},
		{[]byte("17\n"), false, 17},
		{[]byte(`\N` + "\t1\n"), false, math.MinInt64},
	}
	for _, c := range cases {
		if got := fieldKey(c.b, c.bin); got != c.want {
			t.Errorf("fieldKey(%q, %v) = %d, want %d", c.b, c.bin, got, c.want)
		}
	}
}

// copySource fills each Read across parts (each Read is one message to
// the server) and ends with io.EOF.
func TestCopySourceFillsReads(t *testing.T) {
	c := &copySource{parts: [][]byte{[]byte("ab"), nil, []byte("cde"), []byte("f")}}
	p := make([]byte, 4)
	var got []string
	for {
		n, err := c.Read(p)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(p[:n]))
	}
	if strings.Join(got, "|") != "abcd|ef" {
		t.Fatalf("reads %q, want abcd then ef", got)
	}
}

// A COPY whose CopyFrom returned early (a broken connection) closes its
// data: a Read by pgconn's goroutine, late, finds io.EOF and never the
// buffers, which the next batch then fills. Under -race, a Read racing the
// next batch's writes fails the test.
func TestCopySourceClosedReadsNothing(t *testing.T) {
	buf := []byte("abcdef")
	c := &copySource{parts: [][]byte{buf}}
	p := make([]byte, 2)
	if n, err := c.Read(p); n != 2 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	late := make(chan error)
	go func() {
		for {
			if _, err := c.Read(p); err != nil {
				late <- err
				return
			}
		}
	}()
	c.close()
	copy(buf, "ghijkl") // the next batch
	if err := <-late; err != io.EOF {
		t.Errorf("a Read after close: %v, want io.EOF", err)
	}
}

// sortRows sorts a group's rows by key as a stable sort does, whatever
// their runs: none (sorted), one row, reversed, interleaved clients with
// equal keys, and random orders.
func TestSortRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := map[string]func(n int) []int64{
		"sorted":   func(n int) []int64 { return keysOf(n, func(i int) int64 { return int64(i) }) },
		"reversed": func(n int) []int64 { return keysOf(n, func(i int) int64 { return int64(n - i) }) },
		"random":   func(n int) []int64 { return keysOf(n, func(int) int64 { return rng.Int64N(50) }) },
		"clients":  func(n int) []int64 { return clientKeys(rng, n, 4) },
		"many":     func(n int) []int64 { return clientKeys(rng, n, 64) },
	}
	var g groupData
	for name, shape := range shapes {
		for _, n := range []int{0, 1, 2, 3, 7, 100, 1000, 5000} {
			keys := shape(n)
			g.rows = g.rows[:0]
			for i, k := range keys {
				g.rows = append(g.rows, keyedRow{k, []byte(fmt.Sprint(i))})
			}
			want := slices.Clone(g.rows)
			slices.SortStableFunc(want, func(a, b keyedRow) int { return cmp.Compare(a.key, b.key) })
			g.sortRows()
			if !slices.EqualFunc(g.rows, want, func(a, b keyedRow) bool { return a.key == b.key && string(a.row) == string(b.row) }) {
				t.Fatalf("%s, %d rows: sorted to %v, want %v", name, n, g.rows, want)
			}
			g.reset()
		}
	}
}

func keysOf(n int, f func(int) int64) []int64 {
	k := make([]int64, n)
	for i := range k {
		k[i] = f(i)
	}
	return k
}

// clientKeys is n keys as conns clients numbering their records c, c+conns,
// ... send them: reads of a few dozen records from one client at a time.
func clientKeys(rng *rand.Rand, n, conns int) []int64 {
	next := make([]int64, conns)
	for c := range next {
		next[c] = int64(c)
	}
	keys := make([]int64, 0, n)
	for len(keys) < n {
		c := rng.IntN(conns)
		for range min(1+rng.IntN(60), n-len(keys)) {
			keys = append(keys, next[c])
			next[c] += int64(conns)
		}
	}
	return keys
}

// BenchmarkSortRows: a group of 16,000 rows from 4 and 64 clients,
// sortRows against the slices.SortFunc it replaced.
func BenchmarkSortRows(b *testing.B) {
	for _, conns := range []int{4, 64} {
		keys := clientKeys(rand.New(rand.NewPCG(3, 4)), 16000, conns)
		in := make([]keyedRow, len(keys))
		for i, k := range keys {
			in[i] = keyedRow{key: k}
		}
		b.Run(fmt.Sprintf("runs/clients=%d", conns), func(b *testing.B) {
			var g groupData
			for b.Loop() {
				g.rows = append(g.rows[:0], in...)
				g.sortRows()
			}
		})
		b.Run(fmt.Sprintf("SortFunc/clients=%d", conns), func(b *testing.B) {
			var rows []keyedRow
			for b.Loop() {
				rows = append(rows[:0], in...)
				slices.SortFunc(rows, func(a, b keyedRow) int { return cmp.Compare(a.key, b.key) })
			}
		})
	}
}
