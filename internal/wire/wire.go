package wire

// This file holds the wire protocol's client: framing, parsing the
// server's ack and nack lines, and a Client that sends and tallies them.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Framing is how records are written; it must match the server's.
type Framing string

const (
	Lines        Framing = "lines"         // record \n
	OctetCounted Framing = "octet-counted" // LEN SP record (RFC 6587)
)

// MaxLine bounds a reply line from the server, in bytes.
const MaxLine = 4096

// Reply is one line from the server.
type Reply struct {
	Nack bool   // nack N reason, or nack N-Through reason; otherwise ack N
	N    uint64 // the record number (a range's first); 0 in a nack about the connection itself
	// Through is a range nack's last record (`nack N-Through reason`: the
	// records N to Through, Through > N, were refused for one reason); 0
	// for an ack and a single record's nack.
	Through uint64
	Reason  string // a nack's reason
}

// Last returns the last record a nack refuses: Through for a range, else N.
func (r Reply) Last() uint64 {
	if r.Through > r.N {
		return r.Through
	}
	return r.N
}

// Records returns how many records a nack refuses: Last-N+1, and 0 for an
// ack or a nack about the connection (N 0).
func (r Reply) Records() uint64 {
	if !r.Nack || r.N == 0 {
		return 0
	}
	return r.Last() - r.N + 1
}

func (r Reply) String() string {
	if !r.Nack {
		return "ack " + strconv.FormatUint(r.N, 10)
	}
	s := "nack " + strconv.FormatUint(r.N, 10)
	if r.Through > r.N {
		s += "-" + strconv.FormatUint(r.Through, 10)
	}
	return s + " " + r.Reason
}

// ParseReply parses one reply line, without its \n: `ack N`, `nack N
// reason` or `nack A-B reason` (the records A to B, A >= 1 and B > A,
// refused for one reason); each number decimal without sign or leading
// zeros (except 0 itself), the reason non-empty, printable and without
// tabs.
func ParseReply(line []byte) (Reply, error) {
	if len(line) > MaxLine {
		return Reply{}, fmt.Errorf("reply of %d bytes is longer than %d", len(line), MaxLine)
	}
	var r Reply
	var rest []byte
	switch {
	case bytes.HasPrefix(line, []byte("ack ")):
		rest = line[4:]
	case bytes.HasPrefix(line, []byte("nack ")):
		r.Nack, rest = true, line[5:]
	default:
		return Reply{}, fmt.Errorf("malformed reply %q: want \"ack N\", \"nack N reason\" or \"nack A-B reason\"", clip(line))
	}
	num := rest
	ranged := false
	if r.Nack {
		i := bytes.IndexByte(rest, ' ')
		if i < 0 {
			return Reply{}, fmt.Errorf("malformed reply %q: a nack needs a reason", clip(line))
		}
		num, rest = rest[:i], rest[i+1:]
		if len(rest) == 0 {
			return Reply{}, fmt.Errorf("malformed reply %q: empty nack reason", clip(line))
		}
		for _, c := range rest {
			if c < 0x20 || c == 0x7f {
				return Reply{}, fmt.Errorf("malformed reply %q: control byte %#x in the reason", clip(line), c)
			}
		}
		if j := bytes.IndexByte(num, '-'); j >= 0 {
			last, err := parseNum(num[j+1:])
			if err != nil {
				return Reply{}, fmt.Errorf("malformed reply %q: %w", clip(line), err)
			}
			r.Through, num, ranged = last, num[:j], true
		}
		r.Reason = string(rest)
	}
	n, err := parseNum(num)
	if err != nil {
		return Reply{}, fmt.Errorf("malformed reply %q: %w", clip(line), err)
	}
	r.N = n
	if ranged && (r.N == 0 || r.Through <= r.N) {
		return Reply{}, fmt.Errorf("malformed reply %q: a range runs from record 1 or later upwards (A-B with B > A)", clip(line))
	}
	return r, nil
}

// errBadNumber is parseNum's error.
var errBadNumber = errors.New("bad record number")

// parseNum parses a record number: decimal digits, no sign, no leading
// zero (but 0 itself), at most 2^64-1.
func parseNum(num []byte) (uint64, error) {
	if len(num) == 0 || len(num) > 20 || (num[0] == '0' && len(num) > 1) {
		return 0, errBadNumber
	}
	var n uint64
	for _, c := range num {
		if c < '0' || c > '9' {
			return 0, errBadNumber
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, errBadNumber
		}
		n = n*10 + d
	}
	return n, nil
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// Options configure a Client.
type Options struct {
	Framing Framing // default Lines
	// OnReply, if set, is called from the client's reader goroutine for
	// each reply, in order, after the client's counters include it. It
	// must not block for long: replies are not read while it runs.
	OnReply func(Reply)
	// WriteBuffer is the size of the send buffer; default 64KiB.
	WriteBuffer int
	// KeepNacks bounds how many nacks Nacks keeps (the first ones); 0
	// keeps all. A load generator that sees every reply through OnReply
	// sets it low so that its memory does not grow with the nacks it gets.
	KeepNacks int
}

// Client is one connection to a netio.tcp server. Send, Flush and
// CloseWrite are for one goroutine; Acked, Nacks, Wait, Err and Close may
// be called from any.
type Client struct {
	nc      net.Conn
	framing Framing
	onReply func(Reply)
	w       *bufio.Writer
	lenBuf  []byte
	done    chan struct{} // closed when the reader returns

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever the counters move
	sent     uint64
	acked    uint64
	nacked   Runs   // records nacked above acked
	nNacked  uint64 // records nacked in all
	settled  uint64 // every record up to it is acked or nacked
	nacks    []Reply
	keep     int   // Options.KeepNacks
	err      error // the reader's end: io.EOF when the server closed cleanly
	closeErr bool
}

// Dial connects to a server at addr.
func Dial(ctx context.Context, addr string, framing Framing) (*Client, error) {
	return DialOptions(ctx, addr, Options{Framing: framing})
}

// DialOptions connects to a server at addr with o.
func DialOptions(ctx context.Context, addr string, o Options) (*Client, error) {
	if o.Framing == "" {
		o.Framing = Lines
	}
	if o.Framing != Lines && o.Framing != OctetCounted {
		return nil, fmt.Errorf("wire: unknown framing %q", o.Framing)
	}
	if o.WriteBuffer <= 0 {
		o.WriteBuffer = 64 << 10
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("wire: %w", err)
	}
	return newClient(nc, o), nil
}

// NewClient runs the protocol over an established connection.
func NewClient(nc net.Conn, o Options) *Client {
	if o.Framing == "" {
		o.Framing = Lines
	}
	if o.WriteBuffer <= 0 {
		o.WriteBuffer = 64 << 10
	}
	return newClient(nc, o)
}

func newClient(nc net.Conn, o Options) *Client {
	c := &Client{
		nc:      nc,
		framing: o.Framing,
		onReply: o.OnReply,
		keep:    o.KeepNacks,
		w:       bufio.NewWriterSize(nc, o.WriteBuffer),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	go c.read()
	return c
}

// ErrBadRecord is returned by Send for a record the framing cannot carry:
// under Lines an empty record, one holding \n, or one ending with \r
// (which the server would drop).
var ErrBadRecord = errors.New("wire: record cannot be framed")

// Send buffers rec and returns its number. Call Flush to send what is
// buffered (Send flushes by itself when the buffer is full).
func (c *Client) Send(rec []byte) (uint64, error) {
	switch c.framing {
	case Lines:
		if len(rec) == 0 || bytes.IndexByte(rec, '\n') >= 0 || rec[len(rec)-1] == '\r' {
			return 0, fmt.Errorf("%w: %d bytes under lines framing", ErrBadRecord, len(rec))
		}
	default:
		if len(rec) == 0 {
			return 0, fmt.Errorf("%w: empty record", ErrBadRecord)
		}
	}
	// Count the record before writing it: a write may flush it whole, and
	// the server's ack can come back before Send returns.
	c.mu.Lock()
	c.sent++
	n := c.sent
	c.mu.Unlock()
	var err error
	if c.framing == Lines {
		c.w.Write(rec)
		err = c.w.WriteByte('\n')
	} else {
		c.lenBuf = strconv.AppendInt(c.lenBuf[:0], int64(len(rec)), 10)
		c.lenBuf = append(c.lenBuf, ' ')
		c.w.Write(c.lenBuf)
		_, err = c.w.Write(rec)
	}
	if err != nil {
		return 0, fmt.Errorf("wire: send: %w", err)
	}
	return n, nil
}

// SendRaw buffers p as it is and counts it as records records: for tests
// that send what Send refuses (bad frames, over-long records, empty lines).
func (c *Client) SendRaw(p []byte, records int) error {
	c.mu.Lock()
	c.sent += uint64(records)
	c.mu.Unlock()
	if _, err := c.w.Write(p); err != nil {
		return fmt.Errorf("wire: send: %w", err)
	}
	return nil
}

// Flush writes what Send buffered.
func (c *Client) Flush() error {
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("wire: flush: %w", err)
	}
	return nil
}

// CloseWrite flushes and shuts the write side: the server sees the end of
// input, acks what it owes and closes.
func (c *Client) CloseWrite() error {
	if err := c.Flush(); err != nil {
		return err
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return fmt.Errorf("wire: close write: %w", err)
		}
	}
	return nil
}

// Close closes the connection and waits for the reader to return.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closeErr = true
	c.mu.Unlock()
	err := c.nc.Close()
	<-c.done
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("wire: close: %w", err)
	}
	return nil
}

// LocalAddr returns the client's address.
func (c *Client) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// Sent returns how many records Send numbered.
func (c *Client) Sent() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent
}

// Acked returns the cumulative ack: every record up to it is finished.
func (c *Client) Acked() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked
}

// Nacked returns how many records were nacked so far, a range nack
// counting each of its records (a nack about the connection, N 0, none).
func (c *Client) Nacked() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nNacked
}

// Nacks returns the nack lines received so far, in order (a range nack
// is one Reply: see Reply.Last and Reply.Records).
func (c *Client) Nacks() []Reply {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Reply(nil), c.nacks...)
}

// Done is closed when the client's reader has returned: the server closed
// the connection, a reply was malformed, or Close was called.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the reader returned: io.EOF when the server closed the
// connection cleanly; nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Wait returns nil once every record sent so far is settled: covered by an
// ack or refused by a nack. It returns an error when the connection ends
// first (naming how many records are unsettled), or ctx.Err().
func (c *Client) Wait(ctx context.Context) error {
	for {
		c.mu.Lock()
		sent, settled, err, ch := c.sent, c.settled, c.err, c.changed
		c.mu.Unlock()
		if settled >= sent {
			return nil
		}
		if err != nil {
			return fmt.Errorf("wire: %d of %d records unsettled: %w", sent-settled, sent, err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wire: %d of %d records unsettled: %w", sent-settled, sent, ctx.Err())
		}
	}
}

// WaitTimeout is Wait with a deadline.
func (c *Client) WaitTimeout(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.Wait(ctx)
}

func (c *Client) read() {
	defer close(c.done)
	br := bufio.NewReaderSize(c.nc, MaxLine+1)
	for line := 1; ; line++ {
		b, err := br.ReadSlice('\n')
		if err != nil {
			switch {
			case err == io.EOF && len(b) == 0:
				c.end(io.EOF)
			case err == io.EOF:
				c.end(fmt.Errorf("wire: server line %d: %q ends without a newline", line, clip(b)))
			case errors.Is(err, bufio.ErrBufferFull):
				c.end(fmt.Errorf("wire: server line %d: longer than %d bytes", line, MaxLine))
			default:
				c.end(fmt.Errorf("wire: read: %w", err))
			}
			return
		}
		r, err := ParseReply(b[:len(b)-1])
		if err == nil {
			err = c.apply(r)
		}
		if err != nil {
			c.end(fmt.Errorf("wire: server line %d: %w", line, err))
			c.nc.Close()
			return
		}
		if c.onReply != nil {
			c.onReply(r)
		}
	}
}

func (c *Client) keepNack(r Reply) {
	if c.keep == 0 || len(c.nacks) < c.keep {
		c.nacks = append(c.nacks, r)
	}
}

// apply checks r against what was sent and received and counts it.
func (c *Client) apply(r Reply) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case r.Last() > c.sent:
		return fmt.Errorf("%s: only %d records were sent", r, c.sent)
	case r.Nack && r.N == 0:
		c.keepNack(r)
	case r.Nack:
		if r.N <= c.acked || !c.nacked.Add(r.N, r.Last()) {
			return fmt.Errorf("%s: a record of it was already settled", r)
		}
		c.nNacked += r.Records()
		c.keepNack(r)
	default:
		if r.N <= c.acked {
			return fmt.Errorf("%s: the ack does not move forward from %d", r, c.acked)
		}
		c.nacked.Forget(r.N)
		c.acked = r.N
	}
	c.settled = c.nacked.Reach(max(c.settled, c.acked))
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

func (c *Client) end(err error) {
	c.mu.Lock()
	if c.closeErr && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("wire: closed: %w", net.ErrClosed)
	}
	c.err = err
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}
