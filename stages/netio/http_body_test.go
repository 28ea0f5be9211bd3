package netio

// This file tests the reading of netio.http's bodies (plain and gzip,
// with a fuzzer) and the bound on a request's refusal reasons.

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"github.com/stagedserver/seda/stage"
)

// FuzzHTTPBody: the body reader takes a body, plain or gzip, up to
// max_body as sent and as decoded and refuses a longer one, never reads
// more, and the records it cuts are what framing: lines cuts. Arbitrary
// bytes sent as gzip are refused, never a panic.
func FuzzHTTPBody(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}"), true, 64, 16)
	f.Add([]byte("{}\n"), false, 3, 8)
	f.Add([]byte("{}\n"), false, 2, 8)
	f.Add([]byte("xxxxxxxxxxxxxxxxxxxxxxxxxx\ny"), true, 20, 4)
	f.Add([]byte("\x1f\x8b\x08\x00garbage"), false, 100, 100)
	f.Fuzz(func(t *testing.T, data []byte, zip bool, maxBody, maxFrame int) {
		maxBody = int(uint(maxBody)%4096) + 1
		maxFrame = int(uint(maxFrame)%128) + 1
		sent, enc := data, ""
		if zip {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(data)
			zw.Close()
			sent, enc = b.Bytes(), "gzip"
		}
		r := &countingReader{r: bytes.NewReader(sent)}
		body, err := readBody(r, enc, maxBody, nil)
		if r.n > maxBody+1 {
			t.Fatalf("read %d bytes of a body with max_body %d", r.n, maxBody)
		}
		if len(sent) > maxBody || len(data) > maxBody {
			if !errors.Is(err, errBodyTooLarge) {
				t.Fatalf("%d bytes sent, %d decoded, max_body %d: err %v", len(sent), len(data), maxBody, err)
			}
			return
		}
		if err != nil || !bytes.Equal(body, data) {
			t.Fatalf("body %q, err %v; want %q", body, err, data)
		}
		var got []string
		for line, tooLarge := range records(body, maxFrame) {
			if tooLarge {
				got = append(got, "too large")
			} else {
				got = append(got, "data:"+string(line))
			}
		}
		checkSame(t, got, refLines(data, maxFrame))

		// The same bytes declared gzip: refused or decoded, within bounds.
		r = &countingReader{r: bytes.NewReader(data)}
		if body, err := readBody(r, "gzip", maxBody, nil); err == nil && len(body) > maxBody {
			t.Fatalf("decoded %d bytes with max_body %d", len(body), maxBody)
		} else if err != nil && !errors.Is(err, errBadBody) && !errors.Is(err, errBodyTooLarge) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// A request whose records are refused each for a reason of its own keeps
// at most maxReasons distinct reason strings, whatever the number of
// records: past that a new reason is given as its class's name, as
// netio.tcp does, and a reason kept before is shared. Before, every
// reason past the 64th was kept per record (some 220 bytes each), even
// one repeated record after record.
func TestHTTPReasonsBounded(t *testing.T) {
	const n = 1000
	q := &httpRequest{s: &HTTPSource{}, left: 2 * n, done: make(chan struct{})}
	for i := 1; i <= n; i++ {
		// A fresh string per record, as reason(err) makes it.
		q.Complete(&stage.Event{Seq: uint64(i)}, stage.WithClass(fmt.Errorf("bad byte at offset %d", i), stage.ErrInvalid))
	}
	for i := n + 1; i <= 2*n; i++ {
		why := "the same reason every time"
		if i%2 == 0 {
			why = "bad byte at offset 1" // kept before the cap
		}
		q.Complete(&stage.Event{Seq: uint64(i)}, stage.WithClass(errors.New(why), stage.ErrInvalid))
	}
	select {
	case <-q.done:
	default:
		t.Fatal("the request is not done after its last record")
	}
	kept := map[*byte]bool{}
	for _, nk := range q.nacks {
		kept[unsafe.StringData(nk.Reason)] = true
	}
	if len(q.nacks) != 2*n || len(kept) > maxReasons+1 {
		t.Fatalf("%d nacks hold %d distinct reason strings, want at most %d", len(q.nacks), len(kept), maxReasons+1)
	}
	for _, nk := range q.nacks {
		var want string
		switch {
		case nk.Record <= maxReasons:
			want = fmt.Sprintf("bad byte at offset %d", nk.Record)
		case nk.Record <= n, nk.Record%2 == 1:
			want = stage.ClassInvalid
		default:
			want = "bad byte at offset 1"
		}
		if nk.Reason != want {
			t.Fatalf("record %d refused %q, want %q", nk.Record, nk.Reason, want)
		}
	}
}
