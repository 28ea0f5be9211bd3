package main

// This file holds `pipectl load`: send JSON records over the wire
// protocol, wait for their acks, and report what became of them.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/stagedserver/seda/internal/loadgen"
	"github.com/stagedserver/seda/internal/wire"
)

// loadFlags are the flags of `pipectl load`.
type loadFlags struct {
	addr     string
	conns    int
	rate     float64
	count    int64
	duration time.Duration
	size     int
	window   int
	framing  string
	idStart  int64
	timeout  time.Duration
	progress bool
	ackedIDs string
}

func newLoadCmd() *cobra.Command {
	var f loadFlags
	cmd := &cobra.Command{
		Use:   "load --addr HOST:PORT [--count N | --duration D]",
		Short: "Send JSON records over the wire protocol and wait for their acks",
		Long: `Load opens --conns connections to a netio.tcp source and sends JSON records
{"id":N,"host":"web-7.example.com","level":"info","msg":"..."} with unique
ids (from --id-start; connection c of C sends ids start+c, start+c+C, ...),
keeping at most --window records per connection unacknowledged, at --rate
records per second in all (0: as fast as acks allow), until --count records
are sent or --duration has passed. It then waits for every ack and prints
sent, acked, nacked (with the first few reasons), acked rows per second and
the ack latency (from the write of a record to the read of the ack covering
it). The exit status is 1 if any record is left unacknowledged or a
connection failed; when the server closes the connections early (it is
draining, say), the report says so in one line, and so it does for the
connections it refused (` + "`nack 0 too many connections`" + ` at max_conns, or a close
before any reply).

With --acked-ids FILE, it writes the ids of the acked records to FILE, one
per line in ascending order, so that a check can compare them with what was
stored; in psql, for example:

  CREATE TEMP TABLE acked (id bigint);
  \copy acked FROM 'FILE'
  SELECT count(*) FROM acked a WHERE NOT EXISTS
    (SELECT 1 FROM events e WHERE e.id = a.id);`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var acked atomic.Uint64
			cfg.Acked = &acked
			errw := cmd.ErrOrStderr()
			var bar *progressbar.ProgressBar
			if w, ok := errw.(*os.File); ok && f.progress && term.IsTerminal(int(w.Fd())) {
				bar = newLoadBar(w, cfg)
			}
			stopBar := showProgress(bar, errw, &acked)
			res, err := loadgen.Run(ctx, cfg)
			stopBar()
			if err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "error: %v\n", strings.TrimPrefix(err.Error(), "loadgen: "))
				return &exitError{code: 1}
			}
			io.WriteString(cmd.OutOrStdout(), loadReport(res))
			if f.ackedIDs != "" {
				if err := writeAckedIDs(f.ackedIDs, res.AckedIDs); err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "error: %v\n", err)
					return &exitError{code: 1}
				}
			}
			// A connection that failed (the server closed it early, say)
			// means the load asked for did not happen, even if every record
			// sent was acked.
			if res.Acked < res.Sent || res.Sent == 0 || len(res.Errors) > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:7000", "the netio.tcp source's address")
	fl.IntVar(&f.conns, "conns", 64, "connections (at most 65536)")
	fl.Float64Var(&f.rate, "rate", 0, "records per second in all; 0: as fast as acks allow")
	fl.Int64Var(&f.count, "count", 0, "records to send in all (default 10000 unless --duration is given)")
	fl.DurationVar(&f.duration, "duration", 0, "send for this long instead of --count records")
	fl.IntVar(&f.size, "size", 90, "bytes per record, at least (the msg field is padded to it)")
	fl.IntVar(&f.window, "window", 1000, "unacknowledged records per connection at most (1 to 1048576)")
	fl.StringVar(&f.framing, "framing", "lines", "lines or octet-counted")
	fl.Int64Var(&f.idStart, "id-start", 1, "the first record id (0 or more; with --duration, sending stops before an id would pass 2^63-1)")
	fl.DurationVar(&f.timeout, "timeout", time.Minute, "how long to wait for acks, and the server's close, once everything is sent")
	fl.BoolVar(&f.progress, "progress", true, "show a progress bar on stderr when it is a terminal")
	fl.StringVar(&f.ackedIDs, "acked-ids", "", "write the ids of the acked records to this file, one per line, ascending")
	cmd.MarkFlagsMutuallyExclusive("count", "duration")
	return cmd
}

// The bounds of load's flags: what one process can hold (a connection is
// a socket; the windows take 8 bytes a record in flight, 512 MiB at most).
const (
	maxLoadConns  = 1 << 16
	maxLoadWindow = 1 << 20
	maxLoadSlots  = 1 << 26
)

// config checks the flags and turns them into a loadgen.Config.
func (f *loadFlags) config() (loadgen.Config, error) {
	if f.count == 0 && f.duration == 0 {
		f.count = 10000
	}
	switch {
	case f.conns < 1:
		return loadgen.Config{}, errors.New("--conns must be at least 1")
	case f.count < 0 || f.duration < 0 || f.rate < 0:
		return loadgen.Config{}, errors.New("--count, --duration and --rate cannot be negative")
	case f.count > int64(^uint(0)>>1):
		return loadgen.Config{}, fmt.Errorf("--count %d is too large", f.count)
	case f.idStart < 0:
		return loadgen.Config{}, fmt.Errorf("--id-start %d cannot be negative", f.idStart)
	case f.count > 0 && f.idStart > math.MaxInt64-(f.count-1):
		// The ids run from --id-start to --id-start + --count - 1, spread
		// over the connections.
		return loadgen.Config{}, fmt.Errorf("--id-start %d: the last of --count %d ids would pass %d", f.idStart, f.count, int64(math.MaxInt64))
	case f.conns > maxLoadConns:
		return loadgen.Config{}, fmt.Errorf("--conns %d is too many: at most %d", f.conns, maxLoadConns)
	case f.window < 1 || f.window > maxLoadWindow:
		return loadgen.Config{}, fmt.Errorf("--window must be between 1 and %d", maxLoadWindow)
	case int64(f.conns)*int64(f.window) > maxLoadSlots:
		// Each connection keeps a slot per record of its window.
		return loadgen.Config{}, fmt.Errorf("--conns %d × --window %d records in flight is too many: at most %d", f.conns, f.window, maxLoadSlots)
	case f.size < 1 || f.size > 64<<20:
		return loadgen.Config{}, errors.New("--size must be between 1 and 64MiB")
	case wire.Framing(f.framing) != wire.Lines && wire.Framing(f.framing) != wire.OctetCounted:
		return loadgen.Config{}, fmt.Errorf("--framing %q: want lines or octet-counted", f.framing)
	case f.timeout <= 0:
		return loadgen.Config{}, errors.New("--timeout must be positive")
	}
	return loadgen.Config{
		Addr: f.addr, Conns: f.conns, Records: int(f.count), Duration: f.duration, Rate: f.rate,
		Window: f.window, StartID: f.idStart, Size: f.size, Framing: wire.Framing(f.framing),
		AckTimeout: f.timeout, CollectIDs: f.ackedIDs != "",
	}, nil
}

// writeAckedIDs writes ids to the file path, one per line, ascending.
func writeAckedIDs(path string, ids []int64) error {
	slices.Sort(ids)
	b := make([]byte, 0, len(ids)*8)
	for _, id := range ids {
		b = strconv.AppendInt(b, id, 10)
		b = append(b, '\n')
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("--acked-ids: %w", err)
	}
	return nil
}

func newLoadBar(w io.Writer, cfg loadgen.Config) *progressbar.ProgressBar {
	max := int64(cfg.Records)
	desc := "acked"
	if cfg.Records == 0 {
		max = -1 // a spinner: the total is not known
		desc = fmt.Sprintf("acked (for %s)", cfg.Duration)
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

// showProgress moves bar (writing to w) to acked every 100ms until the
// returned function is called, which finishes the bar; nothing when bar is
// nil.
func showProgress(bar *progressbar.ProgressBar, w io.Writer, acked *atomic.Uint64) (stop func()) {
	if bar == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				bar.Set64(int64(acked.Load()))
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		bar.Finish()
		fmt.Fprintln(w)
	}
}

// loadReport prints a load run's result for people. The nack reasons and
// errors in it are the server's text: see printable.
func loadReport(r *loadgen.Result) string {
	var b strings.Builder
	unanswered := int64(r.Sent) - int64(r.Acked) - int64(r.Nacked)
	fmt.Fprintf(&b, "sent %d  acked %d  nacked %d  unanswered %d\n", r.Sent, r.Acked, r.Nacked, max(unanswered, 0))
	if r.Nacked > 0 {
		reasons := make([]string, 0, len(r.Nacks))
		for k := range r.Nacks {
			reasons = append(reasons, k)
		}
		sort.Slice(reasons, func(i, j int) bool {
			if r.Nacks[reasons[i]] != r.Nacks[reasons[j]] {
				return r.Nacks[reasons[i]] > r.Nacks[reasons[j]]
			}
			return reasons[i] < reasons[j]
		})
		b.WriteString("nacks by reason:")
		for i, k := range reasons {
			if i == loadgen.MaxFirstNacks {
				fmt.Fprintf(&b, " (and %d more)", len(reasons)-i)
				break
			}
			fmt.Fprintf(&b, " %d × %q", r.Nacks[k], k)
		}
		b.WriteString("\nfirst nacks:\n")
		for _, n := range r.FirstNacks {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	if r.Acked > 0 && r.Elapsed > 0 {
		fmt.Fprintf(&b, "%s acked rows/s over %s\n", humanRate(r.AckedPerSec()), r.Elapsed.Round(time.Millisecond))
		fmt.Fprintf(&b, "ack latency p50 %s  p99 %s  max %s\n", roundDur(r.Latency.Quantile(0.5)),
			roundDur(r.Latency.Quantile(0.99)), roundDur(r.Latency.Max()))
	}
	// Refused connections are said once, with how they were refused: a
	// `nack 0` is a refusal; a close before any reply may be one (no room)
	// or a drain that ended first, and is said as what it is.
	if nacked, parts := refusals(r); nacked > 0 {
		fmt.Fprintf(&b, "error: the server refused %d of %d connections:%s\n", nacked, r.Conns, parts)
	}
	if n := r.Refused - refusedByNack(r); n > 0 {
		fmt.Fprintf(&b, "error: the server closed %d of %d connections before any reply "+
			"(no room for them, or it was draining or gone before it answered)\n", n, r.Conns)
	}
	// A server that drains (or restarts, or dies) closes every connection:
	// that is one event, said once, not once per connection.
	var others []error
	closed, timedOut := 0, 0
	var late uint64
	var timeout time.Duration
	for _, e := range r.Errors {
		var te *loadgen.AckTimeoutError
		switch {
		case errors.Is(e, loadgen.ErrRefused):
		case loadgen.ClosedByServer(e):
			closed++
		case errors.As(e, &te):
			// The server kept the connection open and did not answer: said
			// once, with the flag that bounded the wait.
			timedOut++
			late += te.Unanswered
			timeout = te.Timeout
		default:
			others = append(others, e)
		}
	}
	if closed > 0 {
		fmt.Fprintf(&b, "error: the server closed %d connections before the load was done (draining, restarting or gone); "+
			"%d records sent were never answered\n", closed, max(unanswered, 0))
	}
	if timedOut > 0 {
		fmt.Fprintf(&b, "error: %d records on %d connections neither acked nor nacked: no answer within --timeout %s\n",
			late, timedOut, timeout)
	}
	// The same failure usually hits every connection: show a few.
	for i, e := range others {
		if i == 3 {
			fmt.Fprintf(&b, "error: ... and %d more connections\n", len(others)-i)
			break
		}
		fmt.Fprintf(&b, "error: %v\n", e)
	}
	return printable(b.String())
}

// refusals says how connections were refused with a `nack 0`: how many,
// and " 12 × `nack 0 too many connections`" by reason.
func refusals(r *loadgen.Result) (int, string) {
	var parts []string
	for _, reason := range slices.Sorted(maps.Keys(r.Refusals)) {
		parts = append(parts, fmt.Sprintf(" %d × `nack 0 %s`", r.Refusals[reason], reason))
	}
	return refusedByNack(r), strings.Join(parts, ",")
}

// refusedByNack counts the connections refused with a `nack 0`; the rest
// of r.Refused were closed before any reply, which a client cannot tell
// from a drain that ended before the server answered.
func refusedByNack(r *loadgen.Result) int {
	n := 0
	for _, c := range r.Refusals {
		n += c
	}
	return n
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
