package e2e

// This file tests the ingest pipeline most e2e tests run (netio.tcp,
// process.json, db.postgres): many connections exactly once, bad records
// nacked, a PostgreSQL restart, idempotent resends; and octet-counted
// syslog frames stored.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
)

// ingest is the pipeline most tests run: netio.tcp → process.json (inline)
// → db.postgres into table events(id bigint primary key, body jsonb),
// conflict ignore. Each %s is replaced by extra lines for accept, then for
// store (indented by four spaces).
func ingest(acceptExtra, storeExtra string) string {
	return fmt.Sprintf(`name: e2e
stages:
  accept:
    kind: netio.tcp
    listen: 127.0.0.1:0
    workers: 4
    concurrency: 2
%s    next: parse
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
%s`, acceptExtra, storeExtra)
}

const storeDefaults = `    batch: {max: 2000, linger: 2ms}
    max_conns: 4
    workers: 4
    concurrency: 2
`

// TestManyConnectionsExactlyOnce: 200,000 records over 64 connections are
// all acked, with no nack, and each is stored exactly once.
func TestManyConnectionsExactlyOnce(t *testing.T) {
	conns, perConn := 64, 3125 // 200,000
	if testing.Short() {
		perConn = 300
	}
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), ingest("    queue: {capacity: 8192, overflow: block}\n", storeDefaults+
		"    queue: {capacity: 16384, overflow: block}\n"), map[string]string{"DSN": dsn}, nil, "accept")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := wire.Dial(ctx, r.addr, wire.Lines)
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			for i := range perConn {
				if _, err := cl.Send(jsonRecord(int64(c*perConn + i + 1))); err != nil {
					errs <- fmt.Errorf("conn %d: %w", c, err)
					return
				}
			}
			if err := cl.Flush(); err != nil {
				errs <- fmt.Errorf("conn %d: %w", c, err)
				return
			}
			if err := cl.Wait(ctx); err != nil {
				errs <- fmt.Errorf("conn %d: %w", c, err)
				return
			}
			if got, nacks := cl.Acked(), cl.Nacks(); got != uint64(perConn) || len(nacks) > 0 {
				errs <- fmt.Errorf("conn %d: acked %d of %d, nacks %v", c, got, perConn, nacks)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	took := time.Since(t0)
	rows, distinct := counts(t, dsn, "events")
	want := int64(conns * perConn)
	t.Logf("%d records over %d connections: all acked; count(*)=%d count(distinct id)=%d (%.0f records/s, for information)",
		want, conns, rows, distinct, float64(want)/took.Seconds())
	if rows != want || distinct != want {
		t.Fatalf("count(*)=%d count(distinct id)=%d, want %d each", rows, distinct, want)
	}
}

// TestBadRecordsAreNackedOthersStored: on one connection, malformed JSON,
// a line over max_frame and a record without the required field are
// nacked with their reasons, and every other record is acked and stored.
func TestBadRecordsAreNackedOthersStored(t *testing.T) {
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), ingest("    max_frame: 1KiB\n", storeDefaults), map[string]string{"DSN": dsn}, nil, "accept")

	cl, err := wire.Dial(context.Background(), r.addr, wire.Lines)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := [][]byte{
		jsonRecord(1),
		[]byte(`{"id":2,"msg":`), // 2: malformed
		jsonRecord(3),
		fmt.Appendf(nil, `{"id":4,"pad":"%s"}`, strings.Repeat("x", 4096)), // 4: over max_frame
		jsonRecord(5),
		[]byte(`{"other":6}`), // 6: no id
		jsonRecord(7),
		[]byte(`not json at all`), // 8
		jsonRecord(9),
	}
	for _, rec := range recs {
		if _, err := cl.Send(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	nacks := cl.Nacks()
	var got []string
	for _, n := range nacks {
		got = append(got, n.String())
	}
	t.Logf("replies: acked %d; nacks %q", cl.Acked(), got)
	want := []struct {
		n      uint64
		prefix string
	}{{2, `stage "parse": invalid json`}, {4, "too large"}, {6, `stage "parse": missing field "id"`}, {8, `stage "parse": invalid json`}}
	if len(nacks) != len(want) {
		t.Fatalf("nacks %q, want records %v nacked", got, want)
	}
	for i, w := range want {
		if nacks[i].N != w.n || !strings.HasPrefix(nacks[i].Reason, w.prefix) {
			t.Errorf("nack %d: %q, want `nack %d %s…`", i, nacks[i], w.n, w.prefix)
		}
	}
	if cl.Acked() != uint64(len(recs)) {
		t.Errorf("acked %d, want %d", cl.Acked(), len(recs))
	}
	ids := storedIDs(t, dsn, "events")
	for _, id := range []int64{1, 3, 5, 7, 9} {
		if !ids[id] {
			t.Errorf("record %d was acked but is not stored", id)
		}
	}
	if len(ids) != 5 {
		t.Errorf("stored ids %v, want 1 3 5 7 9", ids)
	}
}

// TestPostgresRestartMidRun: PostgreSQL is restarted while clients send;
// the db stage retries its batches, so every record is acked without a
// nack or a dropped connection, and every acked record is stored once.
func TestPostgresRestartMidRun(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 4000
	}
	srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
	dsn := srv.DSN()
	r := startPipeline(t, registry(t), ingest("", storeDefaults+"    retry: {backoff: 50ms, max_backoff: 500ms}\n"),
		map[string]string{"DSN": dsn}, nil, "accept")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs := newResender(func() string { return r.addr }, 200, 5*time.Millisecond)
	sh := rs.runShares(ctx, n, 4)
	poll.Until(t, "a quarter of the records acked", func() bool { return len(rs.ackedIDs()) >= n/4 })
	before := len(rs.ackedIDs())
	rctx, rcancel := context.WithTimeout(context.Background(), wait)
	if err := srv.Restart(rctx); err != nil {
		t.Fatalf("restart PostgreSQL: %v", err)
	}
	rcancel()
	during := len(rs.ackedIDs())
	for _, err := range sh.wait() {
		t.Error(err)
	}
	acked := rs.ackedIDs()
	stored := storedIDs(t, dsn, "events")
	rows, distinct := counts(t, dsn, "events")
	t.Logf("restart while %d of %d acked (%d when it returned); end: %s; count(*)=%d distinct=%d",
		before, n, during, rs.summary(), rows, distinct)
	if ids, k := missing(acked, stored); k > 0 {
		t.Fatalf("%d acked records are not stored, e.g. %v", k, ids)
	}
	if len(acked) != n || rows != int64(n) || distinct != int64(n) {
		t.Fatalf("acked %d, count(*)=%d, distinct=%d; want %d each", len(acked), rows, distinct, n)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.nacks) > 0 || rs.failed > 0 {
		t.Errorf("the restart reached the clients: nacks %v, %d connections ended early; the db stage should have retried", rs.nacks, rs.failed)
	}
}

// TestResendIsIdempotent: the same records sent twice (two client runs
// with the same ids) are acked both times and leave one row each.
func TestResendIsIdempotent(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 1000
	}
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), ingest("", storeDefaults), map[string]string{"DSN": dsn}, nil, "accept")
	for run := 1; run <= 2; run++ {
		cl, err := wire.Dial(context.Background(), r.addr, wire.Lines)
		if err != nil {
			t.Fatal(err)
		}
		for id := 1; id <= n; id++ {
			if _, err := cl.Send(jsonRecord(int64(id))); err != nil {
				t.Fatal(err)
			}
		}
		cl.Flush()
		err = cl.WaitTimeout(wait)
		acked, nacks := cl.Acked(), cl.Nacks()
		cl.Close()
		if err != nil || acked != uint64(n) || len(nacks) > 0 {
			t.Fatalf("run %d: acked %d of %d, nacks %v, %v", run, acked, n, nacks, err)
		}
		rows, distinct := counts(t, dsn, "events")
		t.Logf("run %d: %d records acked; count(*)=%d distinct=%d", run, acked, rows, distinct)
		if rows != int64(n) || distinct != int64(n) {
			t.Fatalf("after run %d: count(*)=%d distinct=%d, want %d", run, rows, distinct, n)
		}
	}
}

// TestSyslogOctetCounted: RFC 6587 octet-counted frames from logger(1)
// and written by hand (RFC 5424 and RFC 3164) are parsed and stored with
// their hostname, app_name and msg.
func TestSyslogOctetCounted(t *testing.T) {
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), `name: syslog
stages:
  syslog:
    kind: netio.tcp
    listen: 127.0.0.1:0
    framing: octet-counted
    ack: none
    next: parse
  parse:
    kind: process.syslog
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: ${DSN}
    table: logs
    create: true
    columns: {hostname: hostname, app_name: app_name, msg: msg, raw: $}
    types: {raw: text}
    batch: {max: 100, linger: 2ms}
`, map[string]string{"DSN": dsn}, nil, "syslog")

	type row struct{ host, app, msg string }
	want := map[string]row{} // keyed by a token in msg
	frames := []string{
		"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick tok5424",
		`<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - [exampleSDID@32473 iut="3"] %% It's time to make the do-nothing tok5424sd`,
		"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick tok3164",
	}
	want["tok5424"] = row{"mymachine.example.com", "su", "'su root' failed for lonvick tok5424"}
	want["tok5424sd"] = row{"192.0.2.1", "myproc", "%% It's time to make the do-nothing tok5424sd"}
	want["tok3164"] = row{"mymachine", "su", "'su root' failed for lonvick tok3164"}
	nc, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, f := range frames {
		fmt.Fprintf(&b, "%d %s", len(f), f)
	}
	if _, err := nc.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	_, port, _ := net.SplitHostPort(r.addr)
	tok := "toklogger" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cmd := exec.Command(tool(t, "logger"), "--tcp", "--octet-count", "--server", "127.0.0.1", "--port", port,
		"--rfc5424", "-t", "e2eapp", "--", "hello from logger "+tok)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("logger: %v\n%s", err, out)
	}
	want[tok] = row{"", "e2eapp", "hello from logger " + tok}

	conn := connect(t, dsn)
	got := map[string]row{}
	poll.Until(t, fmt.Sprintf("%d syslog rows", len(want)), func() bool {
		rows, err := conn.Query(context.Background(), "SELECT coalesce(hostname,''), coalesce(app_name,''), coalesce(msg,'') FROM logs")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		clear(got)
		for rows.Next() {
			var rw row
			if err := rows.Scan(&rw.host, &rw.app, &rw.msg); err != nil {
				t.Fatal(err)
			}
			f := strings.Fields(rw.msg)
			if len(f) > 0 {
				got[f[len(f)-1]] = rw
			}
		}
		return len(got) >= len(want)
	})
	for tok, w := range want {
		g, ok := got[tok]
		switch {
		case !ok:
			t.Errorf("%s: no row", tok)
		case w.host == "": // logger: the local hostname, whatever it is
			if g.app != w.app || g.msg != w.msg || g.host == "" {
				t.Errorf("%s: got %+v, want app %q msg %q and a hostname", tok, g, w.app, w.msg)
			}
		case g != w:
			t.Errorf("%s: got %+v, want %+v", tok, g, w)
		}
		t.Logf("%s: stored hostname=%q app_name=%q msg=%q", tok, g.host, g.app, g.msg)
	}
	t.Logf("%d rows", len(got))
}
