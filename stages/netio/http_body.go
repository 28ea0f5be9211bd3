package netio

// This file holds the reading of a netio.http request body: its
// Content-Encoding, bounded by max_body as sent and once decoded.

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Errors of readBody; the HTTP source answers each with its status.
var (
	errBodyTooLarge = errors.New("body over max_body")     // 413
	errEncoding     = errors.New("unsupported encoding")   // 415
	errBadBody      = errors.New("body could not be read") // 400
)

// readBody reads an HTTP request body of the given Content-Encoding
// ("", identity or gzip) into memory, at most maxBody bytes as sent and
// at most maxBody bytes decoded (so a small gzip bomb costs no more than
// a plain body). It reads one byte past maxBody to tell a body of exactly
// maxBody from a longer one. The errors wrap errBodyTooLarge,
// errEncoding or errBadBody. The bytes decoded are charged to hold (nil:
// none) as they are read; the caller lets them go.
func readBody(body io.Reader, encoding string, maxBody int, hold *bodyHold) ([]byte, error) {
	raw := &limitedReader{r: body, left: int64(maxBody) + 1}
	var r io.Reader = raw
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
	case "gzip", "x-gzip":
		gz, err := gzip.NewReader(raw)
		if err != nil {
			if raw.over() {
				return nil, errBodyTooLarge
			}
			return nil, fmt.Errorf("%w: gzip: %v", errBadBody, err)
		}
		defer gz.Close()
		r = gz
	default:
		return nil, fmt.Errorf("%w %q: send the body plain or with Content-Encoding: gzip", errEncoding, encoding)
	}
	if hold != nil {
		r = &holdingReader{r: r, h: hold}
	}
	var buf bytes.Buffer
	_, err := buf.ReadFrom(io.LimitReader(r, int64(maxBody)+1))
	switch {
	case raw.over() || buf.Len() > maxBody:
		return nil, errBodyTooLarge
	case err != nil:
		return nil, fmt.Errorf("%w: %v", errBadBody, err)
	}
	return buf.Bytes(), nil
}

// bodyHoldStep is how many bytes of a body bodyHold charges at a time: a
// body smaller is never charged while it is read (max_requests of them
// are little), and a larger one costs an atomic per step, not per read.
const bodyHoldStep = 64 << 10

// bodyHold charges the bytes of a body being read to the memory limit
// (the source's held bytes), bodyHoldStep at a time, until letGo: the
// doors of the pipeline's sources see them while the body is read. One
// request's handler uses it.
type bodyHold struct {
	to         readingHolder
	read, held int
}

// grew counts n more bytes of the body read.
func (h *bodyHold) grew(n int) {
	h.read += n
	if d := h.read - h.held; d >= bodyHoldStep {
		h.to.HoldReading(d)
		h.held = h.read
	}
}

// letGo releases what was charged: the body is read and its records are
// about to be made events (charged their bytes), or it failed.
func (h *bodyHold) letGo() {
	if h.held > 0 {
		h.to.ReleaseReading(h.held)
		h.held = 0
	}
}

// holdingReader charges what it reads to a bodyHold.
type holdingReader struct {
	r io.Reader
	h *bodyHold
}

func (r *holdingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.grew(n)
	return n, err
}

// limitedReader is io.LimitedReader that remembers running out.
type limitedReader struct {
	r    io.Reader
	left int64
	out  bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		l.out = true
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// over reports whether more than the limit less one byte was read: the
// body is over max_body.
func (l *limitedReader) over() bool { return l.left <= 0 }

// records yields an NDJSON body's records as framing: lines does on a
// connection: lines end with \n, a trailing \r is dropped, empty lines
// are skipped and take no number, the last line needs no \n, and a line
// over maxFrame is a record refused as too large, yielded as (nil,
// true). The records are pieces of body, not copies, and nothing is kept
// per record: netio.http walks a body twice (counting, then emitting)
// rather than hold a slice of its records, which for a body of one-byte
// lines was 16 times the body.
func records(body []byte, maxFrame int) iter.Seq2[[]byte, bool] {
	return func(yield func(line []byte, tooLarge bool) bool) {
		for b := body; len(b) > 0; {
			line := b
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				line, b = b[:i], b[i+1:]
			} else {
				b = nil
			}
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			switch {
			case len(line) == 0:
			case len(line) > maxFrame:
				if !yield(nil, true) {
					return
				}
			default:
				if !yield(line[:len(line):len(line)], false) {
					return
				}
			}
		}
	}
}

// bodyReader reads a request's body while the request holds a slot of
// max_requests, so that a slow body cannot hold the slot for long: before
// each read it sets the connection's read deadline to the stall timeout
// from now (within the request's whole read timeout), so a client that
// stops sending mid-body is cut off after httpStallTimeout, not
// httpReadTimeout; and StopInput cuts it off at once (cut), so a drain
// does not wait for slow senders.
type bodyReader struct {
	r       io.Reader
	rc      *http.ResponseController
	stall   time.Duration
	end     time.Time   // the whole request's deadline
	stopped atomic.Bool // cut by StopInput
	stalled bool        // a read ran into the stall deadline
	read    int64       // bytes of the body read from the connection
}

func (b *bodyReader) Read(p []byte) (int, error) {
	d := time.Now().Add(b.stall)
	if d.After(b.end) {
		d = b.end
	}
	b.rc.SetReadDeadline(d)
	if b.stopped.Load() { // after the deadline is set: see cut
		return 0, errStopped
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	if errors.Is(err, os.ErrDeadlineExceeded) && !b.stopped.Load() {
		b.stalled = true
	}
	return n, err
}

// cut ends the read under way and every later one. Read sets its deadline
// before it looks at stopped, so whichever order the two run in, the read
// ends: either Read sees stopped, or the past deadline set here comes
// after Read's.
func (b *bodyReader) cut() {
	b.stopped.Store(true)
	b.rc.SetReadDeadline(time.Unix(1, 0))
}

var errStopped = errors.New("the source stopped taking input")

// startBody registers the reading of r's body, or returns nil once the
// source has stopped taking input.
func (s *HTTPSource) startBody(w http.ResponseWriter, r *http.Request) *bodyReader {
	br := &bodyReader{r: r.Body, rc: http.NewResponseController(w), stall: s.stall, end: time.Now().Add(httpReadTimeout)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	if s.reading == nil {
		s.reading = map[*bodyReader]struct{}{}
	}
	s.reading[br] = struct{}{}
	return br
}

// endBody unregisters br and lifts its read deadline: while the request
// waits for its records, net/http reads on in the background to notice a
// client going away, and a deadline passing then would read as one.
func (s *HTTPSource) endBody(br *bodyReader) {
	s.mu.Lock()
	delete(s.reading, br)
	s.mu.Unlock()
	if !br.stopped.Load() {
		br.rc.SetReadDeadline(time.Time{})
	}
}
