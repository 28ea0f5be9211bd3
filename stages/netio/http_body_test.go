package netio

import (
	"bytes"
	"compress/gzip"
	"errors"
	"testing"
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
		body, err := readBody(r, enc, maxBody)
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
		if body, err := readBody(r, "gzip", maxBody); err == nil && len(body) > maxBody {
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
