package main

// This file holds `pipectl top`: the live view of a running pipeline's
// stages.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/stagedserver/seda/stats"
	"golang.org/x/term"
)

// historyLen is how many depth samples the sparkline shows.
const historyLen = 30

// barWidth is the width of a queue's depth/capacity bar in cells.
const barWidth = 16

var sparks = []rune("▁▂▃▄▅▆▇█")

// topModel is what top shows: the last snapshot, the one before it (for
// rates), and each stage's recent queue depths.
type topModel struct {
	addr    string
	prev    *snapshot
	cur     *snapshot
	history map[string][]int
	err     error // the last fetch failure, shown until a fetch succeeds
}

// newTopModel is the model of a top on addr, which its title shows: give
// it redacted (redactAddr).
func newTopModel(addr string) *topModel {
	return &topModel{addr: addr, history: map[string][]int{}}
}

func (m *topModel) update(s *snapshot, err error) {
	if err != nil {
		m.err = err
		return
	}
	m.err = nil
	m.prev, m.cur = m.cur, s
	seen := map[string]bool{}
	for _, st := range s.Stages {
		seen[st.Name] = true
		h := append(m.history[st.Name], st.Queue.Depth)
		if len(h) > historyLen {
			h = h[len(h)-historyLen:]
		}
		m.history[st.Name] = h
	}
	for name := range m.history {
		if !seen[name] {
			delete(m.history, name)
		}
	}
}

// render returns one frame as lines (no line ends), cut to width cells
// when width > 0.
func (m *topModel) render(width int) []string {
	var lines []string
	title := "pipectl top  " + m.addr
	if m.cur != nil {
		title = fmt.Sprintf("pipectl top  %s  pipeline %s%s  up %s", m.addr, orDash(m.cur.Pipeline),
			stateNote(m.cur.State), uptime(m.cur.Uptime))
	}
	lines = append(lines, title+"  (q quits)")
	if m.err != nil {
		lines = append(lines, "error: "+m.err.Error())
	}
	if m.cur == nil {
		return cut(lines, width)
	}
	if l := memoryLine(m.cur.Memory); l != "" {
		lines = append(lines, l)
	}
	rows := [][]string{{"STAGE", "KIND", "HEALTH", "QUEUE", "DEPTH/CAP", "RUN/WORKERS", "BATCH", "BLOCKED", "IN/S", "OUT/S", "P99", "OLDEST", "DEPTH HISTORY"}}
	for _, st := range m.cur.Stages {
		r := rateOf(m.prev, m.cur, st)
		rows = append(rows, []string{
			st.Name, st.Kind,
			healthCell(st),
			depthBar(st),
			queueCell(st),
			poolCell(st),
			batchCell(st),
			poolNum(st, st.Pool.Blocked),
			rateCell(r.ok, r.In),
			rateCell(r.ok, r.Out),
			msCell(st.Latency.P99),
			msCell(st.Latency.OldestMs),
			sparkline(m.history[st.Name], st),
		})
	}
	var b strings.Builder
	writeAligned(&b, rows, 2, 2, 3, 12)
	lines = append(lines, strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")...)
	lines = append(lines, healthLines(m.cur)...)
	lines = append(lines, admissionLines(m.cur)...)
	return cut(lines, width)
}

// cut makes each line printable (no control characters from the server
// reach the terminal) and cuts it to width cells when width > 0.
func cut(lines []string, width int) []string {
	for i, l := range lines {
		l = strings.ReplaceAll(printable(l), "\n", " ")
		if r := []rune(l); width > 0 && len(r) > width {
			l = string(r[:width])
		}
		lines[i] = l
	}
	return lines
}

// depthBar draws depth/capacity as a bar of barWidth cells; an inline
// stage or a source without a queue gets a blank one.
func depthBar(st stats.Stage) string {
	if st.Inline || st.Queue.Capacity <= 0 {
		return "[" + strings.Repeat(" ", barWidth) + "]"
	}
	fill := (st.Queue.Depth*barWidth + st.Queue.Capacity - 1) / st.Queue.Capacity
	fill = min(max(fill, 0), barWidth)
	return "[" + strings.Repeat("█", fill) + strings.Repeat("░", barWidth-fill) + "]"
}

// sparkline draws the depth history, scaled to its own peak so that small
// queues show movement too (the bar shows how full the queue is).
func sparkline(h []int, st stats.Stage) string {
	if st.Inline || len(h) == 0 {
		return ""
	}
	peak := 1
	for _, d := range h {
		peak = max(peak, d)
	}
	var b strings.Builder
	for _, d := range h {
		i := 0
		if d > 0 {
			i = 1 + d*(len(sparks)-2)/peak
		}
		b.WriteRune(sparks[min(i, len(sparks)-1)])
	}
	return b.String()
}

func newTopCmd() *cobra.Command {
	var (
		addr, token string
		interval    time.Duration
		count       int
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Watch every stage of a running pipeline live",
		Long: `Top polls /stats every --interval and shows, per stage, a depth/capacity bar,
running/workers, workers blocked (inside a database call, say: a full queue
whose workers are all blocked is waiting on the database, not stalled),
in/out rates per second, p99 latency and a sparkline of
the last 30 queue depths. q or Ctrl-C quits. When stdout is not a terminal
it prints plain frames, --count of them (0: until interrupted).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return fmt.Errorf("--interval must be positive")
			}
			if count < 0 {
				return fmt.Errorf("--count %d: want the number of frames, or 0 for until q or Ctrl-C", count)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			client, err := newStatsClient(addr, token)
			if err != nil {
				return err
			}
			t := &topRun{
				client:   client,
				model:    newTopModel(redactAddr(addr)),
				interval: interval,
				count:    count,
				out:      cmd.OutOrStdout(),
			}
			in, inOK := cmd.InOrStdin().(*os.File)
			out, outOK := stdoutFile(cmd.OutOrStdout())
			if inOK && outOK && term.IsTerminal(int(in.Fd())) && term.IsTerminal(int(out.Fd())) {
				return t.live(ctx, int(in.Fd()), int(out.Fd()))
			}
			return t.plain(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", defaultAdmin, "admin endpoint address (host:port or URL)")
	f.StringVar(&token, "token", "", tokenUsage)
	f.DurationVar(&interval, "interval", time.Second, "time between samples")
	f.IntVar(&count, "count", 0, "stop after this many frames; 0: until q or Ctrl-C")
	return cmd
}

type topRun struct {
	client   *statsClient
	model    *topModel
	interval time.Duration
	count    int
	out      io.Writer
}

// plain prints frames one after the other, without escapes.
func (t *topRun) plain(ctx context.Context) error {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for n := 0; t.count <= 0 || n < t.count; n++ {
		if n > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		s, err := t.client.fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t.model.update(s, nil)
		if n > 0 {
			fmt.Fprintln(t.out)
		}
		if _, err := io.WriteString(t.out, strings.Join(t.model.render(0), "\n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// live draws frames in place on the alternate screen, with the terminal in
// raw mode so that a single q quits; the terminal is restored on return.
func (t *topRun) live(ctx context.Context, inFd, outFd int) error {
	old, err := term.MakeRaw(inFd)
	if err != nil {
		return fmt.Errorf("top: raw mode: %w", err)
	}
	const (
		enter = "\x1b[?1049h\x1b[?25l" // alternate screen, hide cursor
		leave = "\x1b[?25h\x1b[?1049l"
	)
	io.WriteString(t.out, enter)
	defer func() {
		io.WriteString(t.out, leave)
		term.Restore(inFd, old)
	}()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		readKeys(ctx, inFd)
	}()
	defer wg.Wait()
	defer cancel()

	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for n := 0; t.count <= 0 || n < t.count; n++ {
		fctx, fcancel := context.WithTimeout(ctx, max(t.interval, 2*time.Second))
		s, err := t.client.fetch(fctx)
		fcancel()
		if ctx.Err() != nil {
			return nil
		}
		t.model.update(s, err)
		width, height, _ := term.GetSize(outFd)
		lines := t.model.render(width)
		if height > 0 && len(lines) > height {
			lines = lines[:height]
		}
		var b strings.Builder
		b.WriteString("\x1b[H")
		for i, l := range lines {
			if i > 0 {
				b.WriteString("\r\n")
			}
			b.WriteString(l + "\x1b[K")
		}
		b.WriteString("\x1b[J")
		if _, err := io.WriteString(t.out, b.String()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// memoryLine is the line of the pipeline's memory limit: the bytes of
// records held against it, and what the doors did past it.
func memoryLine(mem *stats.Memory) string {
	if mem == nil || mem.LimitBytes <= 0 {
		return ""
	}
	pct := 100 * float64(mem.HeldBytes) / float64(mem.LimitBytes)
	l := fmt.Sprintf("memory  %s held of %s (%.0f%%, %s, %s)", mib(mem.HeldBytes), mib(mem.LimitBytes), pct, mem.Basis, mem.Overflow)
	if mem.Refused > 0 {
		l += fmt.Sprintf("  refused %d", mem.Refused)
	}
	if mem.Waits > 0 {
		l += fmt.Sprintf("  waits %d", mem.Waits)
	}
	if mem.GoLimitBytes > 0 {
		l += "  GOMEMLIMIT " + mib(mem.GoLimitBytes)
	}
	return l
}

// mib writes n bytes in MiB, with one decimal under 10.
func mib(n int64) string {
	f := float64(n) / (1 << 20)
	if f < 10 {
		return fmt.Sprintf("%.1fMiB", f)
	}
	return fmt.Sprintf("%.0fMiB", f)
}
