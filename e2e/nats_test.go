package e2e

// This file tests pipelines split across pipectl processes on one real
// nats-server: kills, a full stream, dead letters and a server restart,
// each ending with every record stored exactly once.

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/internal/gobuild"
	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/natsq"
	"github.com/stagedserver/seda/stats"
)

// splitYAML is the ingest pipeline split in two: accept and parse in
// front processes, store in back processes, joined by a JetStream stream
// on the server at url. (TestSplitRecipeSurvivesBackKills runs the README's
// recipe, which takes it from ${NATS_URL}, as a deployment does; here it
// is written in, so that the tests run side by side.) queueExtra holds
// more keys of the store's queue, each after a comma.
func splitYAML(url, dsn, stream, queueExtra string) string {
	return strings.ReplaceAll(`name: split
nats:
  url: `+url+`
stages:
  accept:
    kind: netio.tcp
    listen: 127.0.0.1:0
    next: parse
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: ${DSN}
    table: events
    create: true
    columns: {id: id, body: $}
    types: {id: bigint}
    key: [id]
    conflict: ignore
    batch: {max: 500, linger: 2ms}
    queue: {transport: nats, stream: `+stream+queueExtra+`}
`, "${DSN}", dsn)
}

// redeliverSoon shortens ack_wait (30s by default) for the tests that
// kill a process holding envelopes, or the server: what was delivered and
// not acked comes back this soon, and the test waits for it. A consumer
// keeps what it holds from being delivered again with InProgress every
// third of ack_wait, so a back kept from running for a second or two on a
// loaded machine may see an envelope delivered again. These tests absorb
// that: the store ignores the repeats (conflict: ignore), they count rows,
// not deliveries, and max_deliver stays at its 5, which one envelope would
// pass only after a kill and four such misses. A test where a second
// delivery changes the outcome (natsPoisonDeadLetter), or that kills
// nothing, keeps the default.
const redeliverSoon = ", ack_wait: 3s"

// TestNatsAcrossProcesses runs pipelines split across `pipectl run
// --stages` processes on one real NATS server (a process of its own, with
// its file store): each subtest has its stream and its database.
func TestNatsAcrossProcesses(t *testing.T) {
	bin := gobuild.ForTest(t, gobuild.Options{})
	t.Parallel()
	ns := startNatsServer(t)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, string, *natsServerProc)
	}{
		{"SplitSurvivesKills", natsSplitSurvivesKills},
		{"FullStreamPushesBack", natsFullStreamPushesBack},
		{"PoisonDeadLetter", natsPoisonDeadLetter},
		{"ServerRestart", natsServerRestart}, // last: the others need not see a restart
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, bin, ns) })
	}
}

// streamFor names a subtest's stream.
func streamFor(t *testing.T) string {
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return "e2e_" + name
}

// stageOf returns one stage's /stats entry of a running pipectl, or
// false while its admin endpoint does not answer.
func stageOf(t *testing.T, c *http.Client, p *proc, name string) (stats.Stage, bool) {
	t.Helper()
	s, err := getStats(c, p.admin)
	if err != nil {
		return stats.Stage{}, false
	}
	for _, st := range s.Stages {
		if st.Name == name {
			return st, true
		}
	}
	t.Fatalf("no stage %q in the /stats of %s: %+v", name, p.admin, s)
	return stats.Stage{}, false
}

// natsOf returns the NATS figures of a stage's /stats entry (zero when
// it has none).
func natsOf(st stats.Stage) natsq.Stats {
	ns, _ := natsq.StatsOf(st)
	return ns
}

func storeOut(t *testing.T, c *http.Client, p *proc) uint64 {
	st, _ := stageOf(t, c, p, "store")
	return st.Out
}

// waitStored waits until table holds n rows.
func waitStored(t *testing.T, dsn string, n int64) {
	t.Helper()
	poll.Until(t, "every record stored", func() bool {
		if !tableExists(t, dsn, "events") {
			return false // the store, started behind its queue, has not made it yet
		}
		rows, _ := counts(t, dsn, "events")
		return rows >= n
	})
}

// tableExists reports whether table is there.
func tableExists(t *testing.T, dsn, table string) bool {
	t.Helper()
	var ok bool
	withConn(t, dsn, func(ctx context.Context, c *pgx.Conn) {
		if err := c.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil {
			t.Fatalf("look for table %s: %v", table, err)
		}
	})
	return ok
}

// checkExactlyOnce fails t unless every id the client saw acked is
// stored, and every one of 1..n exactly once.
func checkExactlyOnce(t *testing.T, rs *resender, dsn string, n int) {
	t.Helper()
	acked := rs.ackedIDs()
	stored := storedIDs(t, dsn, "events")
	ids, lost := missing(acked, stored)
	rows, distinct := counts(t, dsn, "events")
	t.Logf("%s; count(*)=%d distinct=%d", rs.summary(), rows, distinct)
	if lost > 0 {
		t.Fatalf("%d acked records are not stored, e.g. %v", lost, ids)
	}
	if len(acked) != n || rows != int64(n) || distinct != int64(n) {
		t.Fatalf("acked %d, count(*)=%d, distinct=%d; want %d each", len(acked), rows, distinct, n)
	}
}

func stopAll(t *testing.T, ps ...*proc) {
	t.Helper()
	for _, p := range ps {
		p.signal(t, syscall.SIGTERM)
	}
	for _, p := range ps {
		if code := p.wait(t, wait); code != 0 {
			t.Errorf("pipectl exited with %d after SIGTERM:\n%s", code, p.out)
		}
	}
}

// TestNatsSplitSurvivesKills is the split pipeline across processes: one
// front (accept, parse) and two backs (store), each a `pipectl run
// --stages` process with its own --admin. Both backs store rows; a back
// and then the front are killed with SIGKILL while a resending client
// sends, and restarted. Every record the client saw acked is stored, and
// every record exactly once.
func natsSplitSurvivesKills(t *testing.T, bin string, ns *natsServerProc) {
	n := 8000
	if testing.Short() {
		n = 4000
	}
	dsn := pg.NewDatabase(t)
	// Envelopes of 16 events, some 500 for the run, so that both backs
	// get a share: with the default size the run is some 80 envelopes,
	// and a back pulls 8 ahead.
	file := writeFile(t, "split.yaml", splitYAML(ns.url(), dsn, streamFor(t), redeliverSoon+", envelope_events: 16"))
	front := startPipectl(t, bin, file, "--stages", "accept,parse", "--admin", "127.0.0.1:0")
	b1 := launchPipectl(t, bin, file, "--stages", "store", "--admin", "127.0.0.1:0")
	b2 := launchPipectl(t, bin, file, "--stages", "store", "--admin", "127.0.0.1:0")
	hc := &http.Client{Timeout: 5 * time.Second}
	var rs *resender
	// On failure, say what each process saw, the killed ones too: its
	// store stage and its log.
	type named struct {
		name string
		p    *proc
	}
	procs := []named{{"front", front}, {"back 1", b1}, {"back 2", b2}}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if rs != nil {
			t.Logf("client: %s", rs.summary())
		}
		for _, p := range procs {
			st, ok := stageOf(t, hc, p.p, "store")
			t.Logf("%s: store %+v (admin answered: %v)\n%s", p.name, st, ok, p.p.out)
		}
	})
	// Both backs pull before the client sends. A back prints its banner
	// before it makes its consumer, and a make test run saw the first
	// back take every envelope of the run before the second pulled, and
	// the wait for both backs to store rows below gave up.
	for i, b := range []*proc{b1, b2} {
		began := time.Now()
		poll.Until(t, "the back pulling from the stream", func() bool {
			select {
			case <-b.done: // a stage behind the queue failed to start
				t.Fatalf("a back exited before it pulled (%v):\n%s", b.err, b.out)
			default:
			}
			st, ok := stageOf(t, hc, b, "store")
			return ok && natsOf(st).Consuming
		})
		t.Logf("back %d pulling %s after this wait began", i+1, time.Since(began).Round(time.Millisecond))
	}

	var addr atomic.Value
	addr.Store(front.addr)
	rs = newResender(func() string { return addr.Load().(string) }, 50, 2*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sh := rs.runShares(ctx, n, 4)

	poll.Until(t, "both backs to store rows", func() bool {
		return storeOut(t, hc, b1) > 0 && storeOut(t, hc, b2) > 0
	})
	// The front counts events published when their PubAck comes back,
	// which a back may have stored first, and its /stats may answer
	// slower than the client's timeout: waited for, not read once.
	poll.Until(t, "the front's store entry to be remote, with events published", func() bool {
		st, ok := stageOf(t, hc, front, "store")
		return ok && st.Remote && natsOf(st).Published > 0
	})
	b1.cmd.Process.Signal(syscall.SIGKILL)
	b1.wait(t, wait)
	t.Logf("back 1 killed after %d acked", len(rs.ackedIDs()))
	time.Sleep(300 * time.Millisecond)
	front.cmd.Process.Signal(syscall.SIGKILL)
	front.wait(t, wait)
	t.Logf("front killed after %d acked", len(rs.ackedIDs()))
	front = startPipectl(t, bin, file, "--stages", "accept,parse", "--admin", "127.0.0.1:0")
	addr.Store(front.addr)
	b1 = launchPipectl(t, bin, file, "--stages", "store", "--admin", "127.0.0.1:0")
	procs = append(procs, named{"front, restarted", front}, named{"back 1, restarted", b1})

	select {
	case <-sh.done:
	case <-ctx.Done():
		t.Fatalf("the client did not finish: %s", rs.summary())
	}
	for _, err := range sh.wait() {
		t.Error(err)
	}
	waitStored(t, dsn, int64(n))
	stopAll(t, front, b1, b2)
	checkExactlyOnce(t, rs, dsn, n)
}

// TestNatsServerRestart restarts the NATS server (its file store kept)
// while a client sends through a front and a back: both reconnect, and
// nothing acked is lost.
func natsServerRestart(t *testing.T, bin string, ns *natsServerProc) {
	n := 6000
	dsn := pg.NewDatabase(t)
	file := writeFile(t, "split.yaml", splitYAML(ns.url(), dsn, streamFor(t), redeliverSoon))
	front := startPipectl(t, bin, file, "--stages", "accept,parse", "--admin", "127.0.0.1:0")
	back := launchPipectl(t, bin, file, "--stages", "store", "--admin", "127.0.0.1:0")
	hc := &http.Client{Timeout: 5 * time.Second}

	rs := newResender(func() string { return front.addr }, 50, 2*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sh := rs.runShares(ctx, n, 2)
	poll.Until(t, "rows stored", func() bool { return storeOut(t, hc, back) > 0 })
	ns.restart(t)
	t.Logf("NATS restarted after %d acked", len(rs.ackedIDs()))
	select {
	case <-sh.done:
	case <-ctx.Done():
		t.Fatalf("the client did not finish: %s", rs.summary())
	}
	for _, err := range sh.wait() {
		t.Error(err)
	}
	waitStored(t, dsn, int64(n))
	stopAll(t, front, back)
	checkExactlyOnce(t, rs, dsn, n)
}

// TestNatsFullStreamPushesBack runs a front with no back: the stream
// fills to its max_msgs (envelopes of one record each, so that 200
// messages are 200 records), and then the client's records are not acked (the
// publisher waits, its queue fills, the TCP connection pushes back). A
// back started later takes the stream's messages, and the rest flows.
func natsFullStreamPushesBack(t *testing.T, bin string, ns *natsServerProc) {
	const n, limit = 1000, 200
	dsn := pg.NewDatabase(t)
	file := writeFile(t, "split.yaml", splitYAML(ns.url(), dsn, streamFor(t), ", max_msgs: 200, envelope_events: 1, capacity: 16"))
	front := startPipectl(t, bin, file, "--stages", "accept,parse", "--admin", "127.0.0.1:0")
	hc := &http.Client{Timeout: 5 * time.Second}

	rs := newResender(func() string { return front.addr }, 25, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sh := rs.runShares(ctx, n, 2)
	poll.Until(t, "the stream to be full", func() bool {
		st, ok := stageOf(t, hc, front, "store")
		return ok && natsOf(st).Full > 0
	})
	if got := len(rs.ackedIDs()); got > limit {
		t.Fatalf("%d records acked with no back running; the stream holds %d", got, limit)
	}
	// /stats shows the stream full at its max_msgs (figures the server
	// gives, read at most every half second), and as the depth the
	// backlog: the stream's and what waits behind it here, against the
	// stream's room, the local queue's (capacity 16) and the envelopes
	// being published, which take room of their own.
	var st stats.Stage
	poll.Until(t, "store's depth to be the stream's and the local backlog", func() bool {
		st, _ = stageOf(t, hc, front, "store")
		ns := natsOf(st)
		waiting := ns.LocalDepth + int(ns.Unpublished)
		return ns.StreamMsgs == limit && st.Queue.Capacity == limit+16+int(ns.Unpublished) &&
			st.Queue.Depth == limit+waiting && waiting > 0
	})
	t.Logf("stream full: %d acked, stream depth %d/%d, publish retries %d",
		len(rs.ackedIDs()), st.Queue.Depth, st.Queue.Capacity, natsOf(st).PublishRetries)
	if got := len(rs.ackedIDs()); got > limit {
		t.Fatalf("%d records acked with no back running; the stream holds %d", got, limit)
	}
	back := launchPipectl(t, bin, file, "--stages", "store", "--admin", "127.0.0.1:0")
	select {
	case <-sh.done:
	case <-ctx.Done():
		t.Fatalf("the client did not finish: %s", rs.summary())
	}
	for _, err := range sh.wait() {
		t.Error(err)
	}
	waitStored(t, dsn, n)
	stopAll(t, front, back)
	checkExactlyOnce(t, rs, dsn, n)
}

// TestNatsPoisonDeadLetter sends a record the database refuses (an id
// that is no bigint): the client was acked (the record was in JetStream),
// so the failure surfaces in the dead-letter stream, with its reason, and
// in the back's /stats; the other records are stored. It keeps the default
// ack_wait: with max_deliver 2, a back kept from running past ack_wait
// twice while it held the envelope (3 s each, as these tests had it) would
// see it delivered a third time and dead-letter every record of it, and
// once already counts the poison record twice.
func natsPoisonDeadLetter(t *testing.T, bin string, ns *natsServerProc) {
	dsn := pg.NewDatabase(t)
	file := writeFile(t, "split.yaml", splitYAML(ns.url(), dsn, streamFor(t), ", max_deliver: 2, backoff: 100ms"))
	front := startPipectl(t, bin, file, "--stages", "accept,parse", "--admin", "127.0.0.1:0")
	back := launchPipectl(t, bin, file, "--stages", "store", "--admin", "127.0.0.1:0")
	hc := &http.Client{Timeout: 5 * time.Second}

	recs := [][]byte{jsonRecord(1), []byte(`{"id":"poison","msg":"not a bigint"}`), jsonRecord(3)}
	c := sendAndWait(t, front.addr, recs)
	if acked := c.Acked(); acked != 3 {
		t.Fatalf("acked %d of 3: %v", acked, c.Nacks())
	}
	poll.Until(t, "the poison record to be dead-lettered", func() bool {
		st, ok := stageOf(t, hc, back, "store")
		return ok && natsOf(st).DeadLettered == 1
	})
	waitStored(t, dsn, 2)

	js := natstest.JetStream(t, ns.url())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	str, err := js.Stream(ctx, streamFor(t)+"_dead")
	if err != nil {
		t.Fatal(err)
	}
	m, err := str.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if reason := m.Header.Get("Seda-Dead-Reason"); !strings.Contains(reason, "poison") && !strings.Contains(reason, "bigint") {
		t.Errorf("dead letter reason %q", reason)
	}
	if !strings.Contains(string(m.Data), `"poison"`) {
		t.Errorf("dead letter data %q", m.Data)
	}
	if class := m.Header.Get("Seda-Dead-Class"); class != "refused" {
		t.Errorf("dead letter class %q, want refused: the database refuses the value whatever the delivery", class)
	}
	t.Logf("dead letter: class %s, reason %s", m.Header.Get("Seda-Dead-Class"), m.Header.Get("Seda-Dead-Reason"))
	c.Close()
	stopAll(t, front, back)
}
