package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/stagedserver/seda/bench/loadgen"
	"github.com/stagedserver/seda/internal/wire"
)

// loadConfig is what `pipectl load` does.
type loadConfig struct {
	Addr     string
	Conns    int
	Rate     float64       // records per second in all; 0: as fast as acks allow
	Count    int64         // records in all; 0: until Duration
	Duration time.Duration // stop sending after this long
	Size     int           // bytes per record, at least
	Window   int           // unacked records per connection at most
	Framing  wire.Framing
	IDStart  int64
	Timeout  time.Duration // how long to wait for the last acks
}

// loadResult is what a load run saw.
type loadResult struct {
	Sent, Acked, Nacked uint64
	Elapsed             time.Duration // first send to last ack
	Latency             loadgen.Histogram
	FirstNacks          []string          // "conn C record N: reason", the first few
	NackReasons         map[string]uint64 // count per reason
	Errors              []string          // connections that ended badly
}

// maxFirstNacks is how many nacks are shown one by one.
const maxFirstNacks = 5

func newLoadCmd() *cobra.Command {
	c := loadConfig{}
	var (
		framing  string
		progress bool
	)
	cmd := &cobra.Command{
		Use:   "load --addr HOST:PORT [--count N | --duration D]",
		Short: "Send JSON records over the wire protocol and wait for their acks",
		Long: `Load opens --conns connections to a netio.tcp source and sends JSON records
{"id":N,"host":"web-7","level":"info","msg":"..."} with unique ids (from
--id-start; connection c of C sends ids start+c, start+c+C, ...), keeping at
most --window records per connection unacknowledged, at --rate records per
second in all (0: as fast as acks allow), until --count records are sent or
--duration has passed. It then waits for every ack and prints sent, acked,
nacked (with the first few reasons), acked rows per second and the ack
latency (from the write of a record to the read of the ack covering it).
The exit status is 1 if any record is left unacknowledged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c.Framing = wire.Framing(framing)
			if err := c.check(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			errw := cmd.ErrOrStderr()
			var bar *progressbar.ProgressBar
			if f, ok := errw.(*os.File); ok && progress && term.IsTerminal(int(f.Fd())) {
				bar = newLoadBar(f, c)
			}
			res := runLoad(ctx, c, bar)
			if bar != nil {
				bar.Finish()
				fmt.Fprintln(errw)
			}
			io.WriteString(cmd.OutOrStdout(), res.report())
			if res.Acked < res.Sent || res.Sent == 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Addr, "addr", "127.0.0.1:7000", "the netio.tcp source's address")
	f.IntVar(&c.Conns, "conns", 64, "connections")
	f.Float64Var(&c.Rate, "rate", 0, "records per second in all; 0: as fast as acks allow")
	f.Int64Var(&c.Count, "count", 0, "records to send in all (default 10000 unless --duration is given)")
	f.DurationVar(&c.Duration, "duration", 0, "send for this long instead of --count records")
	f.IntVar(&c.Size, "size", 90, "bytes per record (the msg field is padded to it)")
	f.IntVar(&c.Window, "window", 1000, "unacknowledged records per connection at most")
	f.StringVar(&framing, "framing", "lines", "lines or octet-counted")
	f.Int64Var(&c.IDStart, "id-start", 1, "the first record id")
	f.DurationVar(&c.Timeout, "timeout", time.Minute, "how long to wait for acks once everything is sent")
	f.BoolVar(&progress, "progress", true, "show a progress bar on stderr when it is a terminal")
	cmd.MarkFlagsMutuallyExclusive("count", "duration")
	return cmd
}

func (c *loadConfig) check() error {
	if c.Count == 0 && c.Duration == 0 {
		c.Count = 10000
	}
	switch {
	case c.Conns < 1:
		return errors.New("--conns must be at least 1")
	case c.Count < 0 || c.Duration < 0 || c.Rate < 0:
		return errors.New("--count, --duration and --rate cannot be negative")
	case c.Window < 1:
		return errors.New("--window must be at least 1")
	case c.Size < 1 || c.Size > 64<<20:
		return errors.New("--size must be between 1 and 64MiB")
	case c.Framing != wire.Lines && c.Framing != wire.OctetCounted:
		return fmt.Errorf("--framing %q: want lines or octet-counted", c.Framing)
	case c.Timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	if c.Count > 0 && int64(c.Conns) > c.Count {
		c.Conns = int(c.Count)
	}
	return nil
}

// quota is how many records connection i of c sends; 0: unlimited (until
// the duration ends).
func (c *loadConfig) quota(i int) int64 {
	if c.Count == 0 {
		return 0
	}
	q := c.Count / int64(c.Conns)
	if int64(i) < c.Count%int64(c.Conns) {
		q++
	}
	return q
}

func newLoadBar(w io.Writer, c loadConfig) *progressbar.ProgressBar {
	max := c.Count
	desc := "acked"
	if c.Count == 0 {
		max = -1 // a spinner: the total is not known
		desc = fmt.Sprintf("acked (for %s)", c.Duration)
	}
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
	)
}

// loadConn is one connection of a load run.
type loadConn struct {
	idx   int
	cfg   *loadConfig
	quota int64
	cl    *wire.Client
	wake  chan struct{} // a reply arrived (buffered, 1)

	mu      sync.Mutex
	sentAt  []time.Time // by record number modulo the window
	sent    uint64      // records written (flushed or not)
	acked   uint64      // cumulative ack
	settled uint64      // acked records, plus nacked ones
	nacked  uint64
	nackAt  map[uint64]bool // nacked records above acked
	lat     loadgen.Histogram
	nacks   []wire.Reply // the first few
	lastAck time.Time

	nackReasons map[string]uint64
}

// onReply runs on the client's reader goroutine for each reply.
func (lc *loadConn) onReply(r wire.Reply) {
	now := time.Now()
	lc.mu.Lock()
	switch {
	case r.Nack:
		if r.N > lc.acked { // N 0 is about the connection, not a record
			lc.nacked++
			lc.nackAt[r.N] = true
		}
		lc.nackReasons[r.Reason]++
		if len(lc.nacks) < maxFirstNacks {
			lc.nacks = append(lc.nacks, r)
		}
	case r.N > lc.acked:
		for n := lc.acked + 1; n <= r.N; n++ {
			if lc.nackAt[n] {
				delete(lc.nackAt, n)
				continue
			}
			lc.lat.Record(now.Sub(lc.sentAt[n%uint64(len(lc.sentAt))]))
			lc.settled++
		}
		lc.acked = r.N
		lc.lastAck = now
	}
	lc.mu.Unlock()
	select {
	case lc.wake <- struct{}{}:
	default:
	}
}

// runLoad runs a load generator as c says. It stops early when ctx ends.
func runLoad(ctx context.Context, c loadConfig, bar *progressbar.ProgressBar) *loadResult {
	conns := make([]*loadConn, c.Conns)
	res := &loadResult{NackReasons: map[string]uint64{}}
	var dialErrs []string
	for i := range conns {
		lc := &loadConn{idx: i, cfg: &c, quota: c.quota(i), wake: make(chan struct{}, 1),
			sentAt: make([]time.Time, c.Window+1), nackAt: map[uint64]bool{}, nackReasons: map[string]uint64{}}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cl, err := wire.DialOptions(dctx, c.Addr, wire.Options{Framing: c.Framing, OnReply: lc.onReply, KeepNacks: 16})
		cancel()
		if err != nil {
			dialErrs = append(dialErrs, fmt.Sprintf("conn %d: %v", i, err))
			break
		}
		lc.cl = cl
		conns[i] = lc
	}
	if len(dialErrs) > 0 {
		for _, lc := range conns {
			if lc != nil {
				lc.cl.Close()
			}
		}
		res.Errors = dialErrs
		return res
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	for i, lc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = lc.run(ctx, start)
		}()
	}
	barDone := make(chan struct{})
	var barWG sync.WaitGroup
	if bar != nil {
		barWG.Add(1)
		go func() {
			defer barWG.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-barDone:
					return
				case <-t.C:
				}
				var acked uint64
				for _, lc := range conns {
					lc.mu.Lock()
					acked += lc.settled
					lc.mu.Unlock()
				}
				bar.Set64(int64(acked))
			}
		}()
	}
	wg.Wait()
	close(barDone)
	barWG.Wait()

	var last time.Time
	for i, lc := range conns {
		lc.mu.Lock()
		res.Sent += lc.sent
		res.Acked += lc.settled
		res.Nacked += lc.nacked
		res.Latency.Merge(&lc.lat)
		if lc.lastAck.After(last) {
			last = lc.lastAck
		}
		for reason, n := range lc.nackReasons {
			res.NackReasons[reason] += n
		}
		for _, r := range lc.nacks {
			if len(res.FirstNacks) < maxFirstNacks {
				res.FirstNacks = append(res.FirstNacks, fmt.Sprintf("conn %d record %d: %s", i, r.N, r.Reason))
			}
		}
		lc.mu.Unlock()
		if errs[i] != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("conn %d: %v", i, errs[i]))
		}
	}
	if !last.IsZero() {
		res.Elapsed = last.Sub(start)
	}
	return res
}

// run sends this connection's records, waits for their acks, and closes.
func (lc *loadConn) run(ctx context.Context, start time.Time) error {
	defer lc.cl.Close()
	werr := lc.send(ctx, start)
	// Half-close: the server acks what it owes and closes its side.
	if err := lc.cl.CloseWrite(); err != nil && werr == nil {
		werr = err
	}
	wctx, cancel := context.WithTimeout(ctx, lc.cfg.Timeout)
	defer cancel()
	unanswered := func() uint64 {
		lc.mu.Lock()
		defer lc.mu.Unlock()
		return lc.sent - lc.settled - lc.nacked
	}
	for {
		if unanswered() == 0 {
			return werr
		}
		select {
		case <-lc.wake:
		case <-lc.cl.Done():
			if n := unanswered(); n > 0 {
				return fmt.Errorf("%d records unanswered when the server closed the connection (%v)", n, connEnd(lc.cl.Err()))
			}
			return werr
		case <-wctx.Done():
			return fmt.Errorf("%d records unanswered after waiting %s: %w", unanswered(), lc.cfg.Timeout, errors.Join(werr, wctx.Err()))
		}
	}
}

// connEnd says how a connection ended, without the addresses.
func connEnd(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "end of stream"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case err == nil:
		return "closed"
	default:
		return err.Error()
	}
}

// send writes records while the quota, the duration, the rate and the
// window allow.
func (lc *loadConn) send(ctx context.Context, start time.Time) error {
	c := lc.cfg
	perConn := c.Rate / float64(c.Conns)
	var deadline time.Time
	if c.Duration > 0 {
		deadline = start.Add(c.Duration)
	}
	var rec []byte
	var unflushed uint64 // records buffered since the last flush, numbered from lc.sent-unflushed+1
	flush := func() error {
		if unflushed == 0 {
			return nil
		}
		now := time.Now()
		lc.mu.Lock()
		for n := lc.sent - unflushed + 1; n <= lc.sent; n++ {
			lc.sentAt[n%uint64(len(lc.sentAt))] = now
		}
		lc.mu.Unlock()
		unflushed = 0
		return lc.cl.Flush()
	}
	// wait waits for a reply, the end of the connection, a timer or ctx;
	// it reports false when sending should stop.
	wait := func(d time.Duration) (bool, error) {
		if err := flush(); err != nil {
			return false, err
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-lc.wake:
		case <-t.C:
		case <-lc.cl.Done():
			return false, nil // run reports what is left unanswered
		case <-ctx.Done():
			return false, nil
		}
		return true, nil
	}
	for {
		if ctx.Err() != nil {
			break
		}
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		lc.mu.Lock()
		sent, inWindow := lc.sent, lc.sent-lc.acked
		lc.mu.Unlock()
		if lc.quota > 0 && int64(sent) >= lc.quota {
			break
		}
		if inWindow >= uint64(c.Window) {
			if ok, err := wait(100 * time.Millisecond); !ok {
				return errors.Join(err, flush())
			}
			continue
		}
		if perConn > 0 {
			due := start.Add(time.Duration(float64(sent) / perConn * float64(time.Second)))
			if d := due.Sub(now); d > 0 {
				if !deadline.IsZero() {
					d = min(d, deadline.Sub(now))
				}
				if ok, err := wait(d); !ok {
					return errors.Join(err, flush())
				}
				continue
			}
		}
		rec = loadRecord(rec[:0], c.IDStart+int64(lc.idx)+int64(sent)*int64(c.Conns), c.Size)
		if _, err := lc.cl.Send(rec); err != nil {
			return err
		}
		lc.mu.Lock()
		lc.sent++
		// Until the flush stamps it, a record that the buffer flushed by
		// itself is timed from now, never from a stale slot.
		lc.sentAt[lc.sent%uint64(len(lc.sentAt))] = now
		lc.mu.Unlock()
		unflushed++
		if unflushed >= 64 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

var loadLevels = [...]string{"info", "info", "info", "warn", "debug", "error"}

// loadRecord appends the JSON record with the given id to b, its msg
// padded so that the record is size bytes when it can be.
func loadRecord(b []byte, id int64, size int) []byte {
	start := len(b)
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"host":"web-`...)
	b = strconv.AppendInt(b, id%16, 10)
	b = append(b, `","level":"`...)
	b = append(b, loadLevels[id%int64(len(loadLevels))]...)
	b = append(b, `","msg":"request `...)
	b = strconv.AppendInt(b, id%997, 10)
	for len(b)-start+2 < size {
		b = append(b, '.')
	}
	return append(b, `"}`...)
}

// report prints the result for people.
func (r *loadResult) report() string {
	var b strings.Builder
	unacked := int64(r.Sent) - int64(r.Acked) - int64(r.Nacked)
	fmt.Fprintf(&b, "sent %d  acked %d  nacked %d  unanswered %d\n", r.Sent, r.Acked, r.Nacked, max(unacked, 0))
	if r.Nacked > 0 {
		reasons := make([]string, 0, len(r.NackReasons))
		for k := range r.NackReasons {
			reasons = append(reasons, k)
		}
		sort.Slice(reasons, func(i, j int) bool {
			if r.NackReasons[reasons[i]] != r.NackReasons[reasons[j]] {
				return r.NackReasons[reasons[i]] > r.NackReasons[reasons[j]]
			}
			return reasons[i] < reasons[j]
		})
		b.WriteString("nacks by reason:")
		for i, k := range reasons {
			if i == maxFirstNacks {
				fmt.Fprintf(&b, " (and %d more)", len(reasons)-i)
				break
			}
			fmt.Fprintf(&b, " %d × %q", r.NackReasons[k], k)
		}
		b.WriteString("\nfirst nacks:\n")
		for _, n := range r.FirstNacks {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	if r.Acked > 0 && r.Elapsed > 0 {
		fmt.Fprintf(&b, "%s acked rows/s over %s\n", humanRate(float64(r.Acked)/r.Elapsed.Seconds()), r.Elapsed.Round(time.Millisecond))
		fmt.Fprintf(&b, "ack latency p50 %s  p99 %s  max %s\n", roundDur(r.Latency.Quantile(0.5)),
			roundDur(r.Latency.Quantile(0.99)), roundDur(r.Latency.Max()))
	}
	// The same failure usually hits every connection: show a few.
	for i, e := range r.Errors {
		if i == 3 {
			fmt.Fprintf(&b, "error: ... and %d more connections\n", len(r.Errors)-i)
			break
		}
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	return b.String()
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
