package wire

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
	Nack   bool   // nack N reason; otherwise ack N
	N      uint64 // the record number; 0 in a nack about the connection itself
	Reason string // a nack's reason
}

func (r Reply) String() string {
	if r.Nack {
		return "nack " + strconv.FormatUint(r.N, 10) + " " + r.Reason
	}
	return "ack " + strconv.FormatUint(r.N, 10)
}

// ParseReply parses one reply line, without its \n: `ack N` or
// `nack N reason`, N a decimal number without sign or leading zeros
// (except 0 itself), the reason non-empty, printable and without tabs.
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
		return Reply{}, fmt.Errorf("malformed reply %q: want \"ack N\" or \"nack N reason\"", clip(line))
	}
	num := rest
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
		r.Reason = string(rest)
	}
	if len(num) == 0 || len(num) > 20 || (num[0] == '0' && len(num) > 1) {
		return Reply{}, fmt.Errorf("malformed reply %q: bad record number", clip(line))
	}
	for _, c := range num {
		if c < '0' || c > '9' {
			return Reply{}, fmt.Errorf("malformed reply %q: bad record number", clip(line))
		}
	}
	n, err := strconv.ParseUint(string(num), 10, 64)
	if err != nil {
		return Reply{}, fmt.Errorf("malformed reply %q: %w", clip(line), err)
	}
	r.N = n
	return r, nil
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
	nacked   map[uint64]bool // nacks above acked
	settled  uint64          // every record up to it is acked or nacked
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
		nacked:  map[uint64]bool{},
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

// Nacks returns the nacks received so far, in order.
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
	case r.N > c.sent:
		return fmt.Errorf("%s: only %d records were sent", r, c.sent)
	case r.Nack && r.N == 0:
		c.keepNack(r)
	case r.Nack:
		if r.N <= c.acked || c.nacked[r.N] {
			return fmt.Errorf("%s: record %d was already settled", r, r.N)
		}
		c.nacked[r.N] = true
		c.keepNack(r)
	default:
		if r.N <= c.acked {
			return fmt.Errorf("%s: the ack does not move forward from %d", r, c.acked)
		}
		for n := range c.nacked {
			if n <= r.N {
				delete(c.nacked, n)
			}
		}
		c.acked = r.N
	}
	c.settled = max(c.settled, c.acked)
	for c.nacked[c.settled+1] {
		c.settled++
	}
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
