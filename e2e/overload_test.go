package e2e

// This file tests a pipeline offered more than its database takes, under
// overflow block (backpressure reaches the client) and reject (busy
// nacks, resent); queues stay within their capacities.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/gobuild"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/pipeline"
)

// slowTable makes events(id bigint primary key, body jsonb) with a row
// trigger that sleeps 2 ms per row while ctl.slow is true: a database
// that sustains a few hundred rows a second, which the test can make fast
// again to drain the backlog. COPY fires row triggers too.
func slowTable(t testing.TB, dsn string) {
	t.Helper()
	exec1(t, dsn, `
CREATE TABLE ctl (slow boolean NOT NULL);
INSERT INTO ctl VALUES (true);
CREATE TABLE events (id bigint PRIMARY KEY, body jsonb);
CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT slow FROM ctl) THEN PERFORM pg_sleep(0.002); END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER slow BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION slow_down();`)
}

// overloadYAML: small queues, one database worker taking batches of 16.
func overloadYAML(dsn, overflow string) string {
	return `name: overload
admin: {listen: 127.0.0.1:0}
stages:
  accept:
    kind: netio.tcp
    listen: 127.0.0.1:0
    socket_buffer: 8KiB
    workers: 2
    concurrency: 1
    queue: {capacity: 64, overflow: block}
    next: parse
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: ` + dsn + `
    table: events
    create: true
    columns: {id: id, body: $}
    types: {id: bigint}
    key: [id]
    conflict: ignore
    batch: {max: 16, linger: 1ms}
    max_conns: 1
    workers: 1
    concurrency: 1
    queue: {capacity: 128, overflow: ` + overflow + `}
`
}

// depthWatch polls stats and records the deepest queue of each stage,
// failing the test if a depth ever exceeds its capacity.
type depthWatch struct {
	mu    sync.Mutex
	max   map[string]int
	cap   map[string]int
	polls int
	over  []string
	rej   uint64
}

func (d *depthWatch) observe(s pipeline.Stats) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.polls++
	var rej uint64
	for _, st := range s.Stages {
		if st.Queue.Depth > d.max[st.Name] {
			d.max[st.Name] = st.Queue.Depth
		}
		d.cap[st.Name] = st.Queue.Capacity
		if st.Queue.Capacity > 0 && st.Queue.Depth > st.Queue.Capacity {
			d.over = append(d.over, st.Name)
		}
		rej += st.Rejected
	}
	d.rej = rej
}

func (d *depthWatch) check(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	t.Logf("/stats polled %d times: deepest queue per stage %v (capacities %v); rejected %d", d.polls, d.max, d.cap, d.rej)
	if d.polls == 0 {
		t.Error("stats were never read")
	}
	if len(d.over) > 0 {
		t.Errorf("queue depth over capacity in %v", d.over)
	}
}

// TestOverloadBlock offers far more than the pipeline sustains under
// overflow: block. Backpressure must reach the client (its writes stall:
// the send buffer is full), queues never exceed their capacities, and once
// the database is fast again every record the client sent is acked and
// stored. The subprocess's peak RSS is reported.
func TestOverloadBlock(t *testing.T) {
	bin := gobuild.ForTest(t, gobuild.Options{})
	dsn := pg.NewDatabase(t)
	slowTable(t, dsn)
	p := startPipectl(t, bin, writeFile(t, "overload.yaml", overloadYAML(dsn, "block")))

	watch := &depthWatch{max: map[string]int{}, cap: map[string]int{}}
	var rssMax int64
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		hc := &http.Client{Timeout: 5 * time.Second}
		for {
			if s, err := getStats(hc, p.admin); err == nil {
				watch.observe(s)
			}
			if kb, err := peakRSS(p.cmd.Process.Pid); err == nil {
				rssMax = max(rssMax, kb)
			}
			select {
			case <-stopPoll:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tc := nc.(*net.TCPConn)
	tc.SetWriteBuffer(8 << 10)

	// Reader: the cumulative ack and any nack.
	var ackMu sync.Mutex
	var acked uint64
	var nacks []string
	readDone := make(chan error, 1)
	go func() {
		br := bufio.NewReader(nc)
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				readDone <- err
				return
			}
			r, err := wire.ParseReply(line[:len(line)-1])
			if err != nil {
				readDone <- err
				return
			}
			ackMu.Lock()
			if r.Nack {
				nacks = append(nacks, r.String())
			} else {
				acked = r.N
			}
			ackMu.Unlock()
		}
	}()

	// Writer: chunks of 100 records; a write that cannot finish within
	// its deadline means the send buffer is full and the server is not
	// reading: backpressure. It then goes on writing the rest.
	stallsWanted := 3
	if testing.Short() {
		stallsWanted = 2
	}
	var sent int64
	stalls := 0
	var chunk bytes.Buffer
	deadline := time.Now().Add(40 * time.Second)
	for stalls < stallsWanted && time.Now().Before(deadline) {
		chunk.Reset()
		for range 100 {
			sent++
			chunk.Write(jsonRecord(sent))
			chunk.WriteByte('\n')
		}
		b := chunk.Bytes()
		for len(b) > 0 {
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			n, err := nc.Write(b)
			b = b[n:]
			if errors.Is(err, os.ErrDeadlineExceeded) {
				stalls++
				continue
			}
			if err != nil {
				t.Fatalf("write: %v", err)
			}
		}
	}
	nc.SetWriteDeadline(time.Time{})
	ackMu.Lock()
	ackedAtStall := acked
	ackMu.Unlock()
	t.Logf("offered %d records; %d writes stalled a full second (send buffer full); %d acked by then", sent, stalls, ackedAtStall)
	if stalls == 0 {
		t.Fatal("the client's writes never stalled: no backpressure reached it")
	}

	// Let the database catch up; everything sent must be acked.
	exec1(t, dsn, "UPDATE ctl SET slow = false")
	if err := tc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-readDone:
		t.Logf("reader ended: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the server did not finish the connection")
	}
	close(stopPoll)
	<-polled
	watch.check(t)
	ackMu.Lock()
	t.Logf("acked %d of %d, nacks %d; subprocess peak RSS (VmHWM) %d KiB", acked, sent, len(nacks), rssMax)
	if acked != uint64(sent) || len(nacks) > 0 {
		t.Errorf("acked %d of %d, nacks %v", acked, sent, nacks[:min(len(nacks), 5)])
	}
	ackMu.Unlock()
	rows, distinct := counts(t, dsn, "events")
	if rows != sent || distinct != sent {
		t.Errorf("count(*)=%d distinct=%d, want %d", rows, distinct, sent)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, wait); code != 0 {
		t.Errorf("exit %d:\n%s", code, p.out)
	}
}

// TestOverloadReject: under overflow: reject the client is told `nack N
// busy` for what does not fit and resends it; every record ends acked and
// stored once, and no queue exceeds its capacity.
func TestOverloadReject(t *testing.T) {
	n := 1500
	if testing.Short() {
		n = 500
	}
	dsn := pg.NewDatabase(t)
	slowTable(t, dsn)
	yaml := strings.Replace(overloadYAML("${DSN}", "reject"), "admin: {listen: 127.0.0.1:0}\n", "", 1)
	r := startPipeline(t, registry(t), yaml, map[string]string{"DSN": dsn}, nil, "accept")

	watch := &depthWatch{max: map[string]int{}, cap: map[string]int{}}
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			watch.observe(r.p.Stats())
			select {
			case <-stopPoll:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs := newResender(func() string { return r.addr }, 400, 0)
	sh := rs.runShares(ctx, n, 2)
	errs := sh.wait()
	close(stopPoll)
	<-polled
	for _, err := range errs {
		t.Error(err)
	}
	watch.check(t)
	rows, distinct := counts(t, dsn, "events")
	t.Logf("%s; count(*)=%d distinct=%d", rs.summary(), rows, distinct)
	rs.mu.Lock()
	busy := rs.nacks["busy"]
	rs.mu.Unlock()
	if busy == 0 {
		t.Error("no `nack N busy` although the offer far exceeds what the store sustains")
	}
	if got := len(rs.ackedIDs()); got != n || rows != int64(n) || distinct != int64(n) {
		t.Errorf("acked %d, count(*)=%d, distinct=%d; want %d each", got, rows, distinct, n)
	}
}
