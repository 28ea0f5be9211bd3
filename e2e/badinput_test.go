package e2e

// This file tests clients that misbehave against a running pipeline: a
// slowloris, one connection too many, a client that never reads, and a
// burst of bad records; well-behaved clients are served meanwhile.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
)

// goodClient sends n records with ids from base and checks they are all
// acked without a nack.
func goodClient(t *testing.T, addr string, base int64, n int) {
	t.Helper()
	var recs [][]byte
	for i := range n {
		recs = append(recs, jsonRecord(base+int64(i)))
	}
	cl := sendAndWait(t, addr, recs)
	if cl.Acked() != uint64(n) || len(cl.Nacks()) > 0 {
		t.Errorf("a well-behaved client: acked %d of %d, nacks %v", cl.Acked(), n, cl.Nacks())
	}
}

// TestSlowlorisCutOffByIdleTimeout: a client that sends half a record and
// then nothing is disconnected after idle_timeout, while another client
// is served.
func TestSlowlorisCutOffByIdleTimeout(t *testing.T) {
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), ingest("    idle_timeout: 500ms\n", storeDefaults), map[string]string{"DSN": dsn}, nil, "accept")
	slow, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	t0 := time.Now()
	if _, err := slow.Write([]byte(`{"id":1,"msg":"and then noth`)); err != nil {
		t.Fatal(err)
	}
	goodClient(t, r.addr, 100, 500)
	slow.SetReadDeadline(time.Now().Add(wait))
	n, err := io.Copy(io.Discard, slow)
	t.Logf("slow client: read %d bytes, then %v, %s after its last byte", n, err, time.Since(t0).Round(time.Millisecond))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the idle client was not disconnected within %s", wait)
	}
	if rows, _ := counts(t, dsn, "events"); rows != 500 {
		t.Errorf("stored %d rows, want the good client's 500", rows)
	}
}

// TestMaxConnsRefusesClearly: with max_conns: 3 a fourth connection gets
// `nack 0 too many connections` and is closed, while the three admitted
// ones keep working; once one leaves, a new one is admitted.
func TestMaxConnsRefusesClearly(t *testing.T) {
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), ingest("    max_conns: 3\n", storeDefaults), map[string]string{"DSN": dsn}, nil, "accept")
	var admitted []*wire.Client
	for i := range 3 {
		cl, err := wire.Dial(context.Background(), r.addr, wire.Lines)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		cl.Send(jsonRecord(int64(i + 1)))
		cl.Flush()
		if err := cl.WaitTimeout(wait); err != nil || cl.Acked() != 1 {
			t.Fatalf("client %d: acked %d, %v", i, cl.Acked(), err)
		}
		admitted = append(admitted, cl)
	}
	extra, err := wire.Dial(context.Background(), r.addr, wire.Lines)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	select {
	case <-extra.Done():
	case <-time.After(wait):
		t.Fatal("the fourth connection was not closed")
	}
	t.Logf("fourth connection: replies %v, end %v", extra.Nacks(), extra.Err())
	if ns := extra.Nacks(); len(ns) != 1 || ns[0].N != 0 || ns[0].Reason != "too many connections" {
		t.Errorf("fourth connection got %v, want `nack 0 too many connections`", ns)
	}
	for i, cl := range admitted {
		for k := range 100 {
			cl.Send(jsonRecord(int64(1000*(i+1) + k)))
		}
		cl.Flush()
		if err := cl.WaitTimeout(wait); err != nil || cl.Acked() != 101 {
			t.Errorf("admitted client %d after the refusal: acked %d of 101, %v", i, cl.Acked(), err)
		}
	}
	admitted[0].Close()
	// The slot is freed once the server has seen the close.
	poll.Until(t, "a new connection admitted", func() bool {
		cl, err := wire.Dial(context.Background(), r.addr, wire.Lines)
		if err != nil {
			return false
		}
		defer cl.Close()
		cl.Send(jsonRecord(5000))
		cl.Flush()
		return cl.WaitTimeout(5*time.Second) == nil && cl.Acked() == 1
	})
}

// TestDeafClientDoesNotStallOthers: a client that sends many bad records
// (each earning a nack) and never reads its replies is cut off once a
// write of its acks takes nothing for write_timeout (its receive buffer
// and the server's send buffer are full); a well-behaved client on the
// same pipeline is served meanwhile.
func TestDeafClientDoesNotStallOthers(t *testing.T) {
	dsn := pg.NewDatabase(t)
	core, logs := observer.New(zap.InfoLevel)
	r := startPipeline(t, registry(t), ingest("    max_pending_output: 4KiB\n    socket_buffer: 4KiB\n    write_timeout: 300ms\n", storeDefaults),
		map[string]string{"DSN": dsn}, zap.New(core), "accept")
	deaf, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.Close()
	deaf.(*net.TCPConn).SetReadBuffer(4096)
	const records = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var b bytes.Buffer
		for i := range records { // two reasons in turn: no two nacks make a range
			if i%2 == 0 {
				fmt.Fprintf(&b, "this is not json %d\n", i)
			} else {
				fmt.Fprintf(&b, "{\"no_id\":%d}\n", i)
			}
		}
		deaf.SetWriteDeadline(time.Now().Add(wait))
		deaf.Write(b.Bytes()) // fails once the server cuts it off
	}()
	goodClient(t, r.addr, 1, 2000)
	// The deaf client stays deaf until it is cut off: one that starts
	// reading is served, and its connection stays open.
	poll.Until(t, "the deaf client cut off", func() bool {
		return logs.FilterMessage("closing connection").Len() > 0
	})
	wg.Wait()
	deaf.SetReadDeadline(time.Now().Add(wait))
	out, err := io.ReadAll(deaf)
	nacks := strings.Count(string(out), "\n")
	t.Logf("deaf client: %d bytes of replies (%d lines) before %v; it sent %d bad records", len(out), nacks, err, records)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the deaf client's connection was never closed")
	}
	if nacks >= records {
		t.Errorf("the deaf client got all %d nacks: it was not cut off", nacks)
	}
	var why []string
	for _, e := range logs.FilterMessage("closing connection").All() {
		m := e.ContextMap()
		if r, ok := m["reason"].(string); ok {
			why = append(why, r)
		}
		if m["conn"] == nil || m["remote"] != deaf.LocalAddr().String() || m["pending_output"] == nil {
			t.Errorf("cut-off logged without the connection, its remote address or the output pending: %v", m)
		}
	}
	t.Logf("connections closed early: %q", why)
	if len(why) != 1 || !strings.Contains(why[0], "not reading") || !strings.Contains(why[0], "write_timeout 300ms") {
		t.Errorf("closed connections %q, want the deaf one, as not reading for write_timeout", why)
	}
	if rows, _ := counts(t, dsn, "events"); rows != 2000 {
		t.Errorf("stored %d, want the good client's 2000", rows)
	}
}

// TestBurstOfBadRecordsFromReadingClient: a client that reads its replies
// all along but sends one burst of 64KiB of tiny malformed records (each
// nacked) must get every nack, in order (the wire client ends the
// connection on a reply out of order). Consecutive records refused for one
// reason may go out as range nacks (`nack A-B reason`); whatever the lines,
// they cover the burst exactly and the client is not cut off.
func TestBurstOfBadRecordsFromReadingClient(t *testing.T) {
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), ingest("", storeDefaults), map[string]string{"DSN": dsn}, nil, "accept")
	cl, err := wire.Dial(context.Background(), r.addr, wire.Lines)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const records = 32 << 10 // "x\n" each: 64KiB, one read buffer
	if err := cl.SendRaw(bytes.Repeat([]byte("x\n"), records), records); err != nil {
		t.Fatal(err)
	}
	cl.Send(jsonRecord(1))
	cl.Flush()
	err = waitAnswered(cl)
	t.Logf("burst of %d bad records: acked %d, %d nacked in %d lines, %v", records, cl.Acked(), cl.Nacked(), len(cl.Nacks()), err)
	if err != nil || cl.Acked() != records+1 || cl.Nacked() != records {
		t.Fatalf("a reading client was cut off by its own burst: acked %d of %d, %d nacked, %v",
			cl.Acked(), records+1, cl.Nacked(), err)
	}
	// Consecutive records refused for one reason may share a range nack.
	next := uint64(1)
	for _, n := range cl.Nacks() {
		if n.N != next {
			t.Fatalf("nack %v, want one from record %d", n, next)
		}
		next = n.Last() + 1
	}
}
