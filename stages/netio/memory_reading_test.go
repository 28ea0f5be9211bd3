package netio_test

// This file tests that the memory limit counts the bytes of records
// being read, of which there is no event yet: netio.tcp's records that
// outgrow a read, netio.http's bodies.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// A record that spans reads is held from the read it outgrows a read's
// size in: connections each mid-way through a large record make the
// pipeline hold their bytes, a new connection's record is refused busy
// past the limit, and so is a record that outgrows a read there (nacked
// at once, skipped to its end). A record admitted as it outgrew a read
// may finish past the limit: it is made an event, charged once.
func TestMemoryLimitTCPCountsRecordsBeingRead(t *testing.T) {
	const (
		readBuf = 4 << 10
		half    = 32 << 10 // half of each large record, 8 reads
		limit   = 80 << 10 // two halves are under it, three over
	)
	m := engine.NewMemory(limit, false, "test")
	r, gate := newMemTCPRig(t, m, map[string]any{"read_buffer": int64(readBuf), "max_frame": int64(4 * half)})
	src := r.in.Stage()
	start := bytes.Repeat([]byte("x"), half)
	rest := append(bytes.Repeat([]byte("y"), half), '\n')
	held := func(want int64, what string) {
		t.Helper()
		poll.Until(t, what, func() bool { return m.Held() == want })
	}

	var cs [3]*wire.Client
	for i := range cs {
		cs[i] = r.dial(wire.Lines, nil)
		cs[i].SendRaw(start, 1)
		cs[i].Flush()
		held(int64(i+1)*half, "the starts of the records being read held")
	}
	if st := src.Stats(); st.HeldBytes != 3*half || st.In != 0 {
		t.Fatalf("source stats: held %d, %d events; want %d held, no event", st.HeldBytes, st.In, 3*half)
	}

	small := r.dial(wire.Lines, nil)
	small.Send([]byte("small"))
	small.Flush()
	poll.Until(t, "the new connection's record refused", func() bool { return small.Nacked() == 1 })
	late := r.dial(wire.Lines, nil)
	late.SendRaw(start, 1)
	late.Flush()
	poll.Until(t, "the record outgrowing a read past the limit refused", func() bool { return late.Nacked() == 1 })
	for _, c := range []*wire.Client{small, late} {
		if n := c.Nacks(); len(n) != 1 || n[0].N != 1 || n[0].Reason != "busy" {
			t.Fatalf("nacks %v, want record 1 busy", n)
		}
	}
	if m.Held() != 3*half {
		t.Fatalf("held %d after the refusals, want %d: a refused record is not held", m.Held(), 3*half)
	}

	// Past the limit, the records admitted finish, as events charged
	// their bytes (the start's charge let go).
	for i, c := range cs {
		c.SendRaw(rest, 0)
		c.Flush()
		poll.Until(t, "the record finished made an event", func() bool { return src.Stats().In == uint64(i+1) })
		held(int64(i+1)*2*half+int64(2-i)*half, "the records finished held as events, once")
	}

	close(gate)
	for _, c := range cs {
		if err := c.WaitTimeout(wait); err != nil {
			t.Fatal(err)
		}
		if c.Acked() != 1 || c.Nacked() != 0 {
			t.Fatalf("acked %d, nacked %d (%v); want the record admitted as it outgrew a read acked", c.Acked(), c.Nacked(), c.Nacks())
		}
	}
	held(0, "nothing held")
	late.SendRaw(rest, 0) // the refused record's end: skipped
	late.Send([]byte("after"))
	late.Flush()
	if err := late.WaitTimeout(wait); err != nil {
		t.Fatal(err)
	}
	if late.Acked() != 2 || late.Nacked() != 1 {
		t.Fatalf("acked %d, nacked %d (%v); want 2 answered, record 1 busy", late.Acked(), late.Nacked(), late.Nacks())
	}
	if got := r.payloads(); len(got) != 4 || got[3] != "after" {
		t.Fatalf("the sink saw %d records, want the 3 large ones and \"after\"", len(got))
	}
	if st := src.Stats(); st.Source.Nacks.Busy != 2 || m.Stats().Refused != 2 {
		t.Fatalf("busy %d, memory refused %d; want 2 each", st.Source.Nacks.Busy, m.Stats().Refused)
	}
	held(0, "nothing held at the end")
}

// A record cut off mid-way lets its bytes go: one whose client ends its
// input inside the frame (dropped as truncated), and one whose
// connection is closed by the drain while it is being read.
func TestMemoryLimitTCPLetsGoOfRecordsCutOff(t *testing.T) {
	const (
		readBuf = 4 << 10
		half    = 32 << 10
	)
	m := engine.NewMemory(1<<30, false, "test")
	r, _ := newMemTCPRig(t, m, map[string]any{"read_buffer": int64(readBuf), "max_frame": int64(4 * half),
		"framing": string(netio.OctetCounted)})
	frameStart := append([]byte(fmt.Sprintf("%d ", 2*half)), bytes.Repeat([]byte("x"), half)...)
	cut := r.dial(wire.OctetCounted, nil)
	cut.SendRaw(frameStart, 1)
	cut.Flush()
	poll.Until(t, "the start of the frame held", func() bool { return m.Held() == half })
	cut.CloseWrite()
	poll.Until(t, "the truncated frame let go", func() bool { return m.Held() == 0 && netio.Truncated(r.source) == 1 })

	drained := r.dial(wire.OctetCounted, nil)
	drained.SendRaw(frameStart, 1)
	drained.Flush()
	poll.Until(t, "the start of the frame held", func() bool { return m.Held() == half })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r.source.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Held() != 0 || r.in.Stage().Stats().In != 0 {
		t.Fatalf("held %d, %d events after the drain; want the frame cut off let go, no event", m.Held(), r.in.Stage().Stats().In)
	}
}

// A netio.http body counts against the memory limit while it is read (a
// step of 64 KiB at a time): requests each mid-way through a large body
// make the pipeline hold about their bytes, and a new request is refused
// 503 past the limit. A body read whole is let go as its records are
// made events (its own door does not count it), and a body cut off is
// let go as the request fails.
func TestMemoryLimitHTTPCountsBodiesBeingRead(t *testing.T) {
	const (
		half  = 256 << 10
		step  = 64 << 10          // bodyHoldStep
		limit = 3 * (half - step) // three halves being read are past it, two whole bodies are not
	)
	src, err := newSource(netio.HTTPKind, listening(map[string]any{"max_body": int64(4 * half)}))
	if err != nil {
		t.Fatal(err)
	}
	m := engine.NewMemory(limit, false, "test")
	r := startRigMem(t, src, stage.Settings{Name: "in", Kind: netio.HTTPKind, Workers: 1, Concurrency: 1, Capacity: 64},
		stage.Settings{Workers: 1, Concurrency: 1, Capacity: 1024, Batch: 64}, nil, m)
	addr := src.(*netio.HTTPSource).Addr().String()
	line := append(bytes.Repeat([]byte("x"), 1023), '\n')
	body := bytes.Repeat(line, 2*half/len(line))
	var cs [3]net.Conn
	for i := range cs {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		fmt.Fprintf(nc, "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", len(body))
		if _, err := nc.Write(body[:half]); err != nil {
			t.Fatal(err)
		}
		cs[i] = nc
	}
	poll.Until(t, "the halves being read held", func() bool { return m.Held() >= 3*(half-step) })
	// The bodies may still be being read: what is held grows to at most
	// what was sent.
	if st := r.in.Stage().Stats(); st.HeldBytes < 3*(half-step) || st.HeldBytes > 3*half || st.In != 0 {
		t.Fatalf("source held %d, %d events; want about the %d bytes sent, no event", st.HeldBytes, st.In, 3*half)
	}
	url := "http://" + addr + "/"
	if a := post(t, http.DefaultClient, url, []byte("small\n"), nil); a.status != http.StatusServiceUnavailable || a.retryAfter != "1" {
		t.Fatalf("a new request past the limit: %+v, want 503 with Retry-After 1", a)
	}

	if _, err := cs[0].Write(body[half:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(cs[0]), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the body finished: %s, want 200: the others' halves are under the limit", resp.Status)
	}
	cs[1].Close()
	cs[2].Close()
	poll.Until(t, "the bodies cut off let go", func() bool { return m.Held() == 0 })
	if got := len(r.payloads()); got != len(body)/len(line) {
		t.Fatalf("the sink saw %d records, want %d", got, len(body)/len(line))
	}
}
