package main

// This file tests pipectl load against a pipeline in the test process:
// acks, nacks, refusals, rate and duration, bounded flags, and the report
// when a drain or --timeout cuts it short.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stages/process"
)

// idSink is the test kind test.ids: it notes the id of every event and
// refuses those whose id is a multiple of refuse_every.
type idSink struct {
	mu    sync.Mutex
	seen  map[int64]int
	every int64
}

func (s *idSink) Handle(ctx context.Context, batch []*stage.Event, _ stage.Emitter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range batch {
		v, _ := ev.Value("id")
		id := v.Int()
		s.seen[id]++
		if s.every > 0 && id%s.every == 0 {
			ev.Done(errors.New("test refuses"))
			continue
		}
		ev.Done(nil)
	}
	return nil
}

// startTestPipeline runs netio.tcp -> process.json -> test.ids on a free
// port and returns the source's address and the sink.
func startTestPipeline(t *testing.T, refuseEvery int64) (string, *idSink, *pipeline.Pipeline) {
	t.Helper()
	return startTestPipelineWith(t, refuseEvery, "")
}

// startTestPipelineWith is startTestPipeline with more keys for accept,
// such as "max_conns: 2".
func startTestPipelineWith(t *testing.T, refuseEvery int64, acceptKeys string) (string, *idSink, *pipeline.Pipeline) {
	t.Helper()
	reg := stage.NewRegistry()
	sink := &idSink{seen: map[int64]int{}, every: refuseEvery}
	for _, err := range []error{
		netio.Register(reg),
		process.Register(reg),
		reg.Register(stage.Kind{
			Name: "test.ids", Terminal: true,
			NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) { return sink, nil },
		}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if acceptKeys != "" {
		acceptKeys = "    " + acceptKeys + "\n"
	}
	yaml := `
name: loadtest
stages:
  accept:
    kind: netio.tcp
    listen: 127.0.0.1:0
    drain_linger: 100ms
    next: parse
` + acceptKeys + `
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: sink
  sink:
    kind: test.ids
    workers: 2
`
	cfg, err := pipeline.Parse("loadtest.yaml", []byte(yaml), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := p.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	addr := p.Addr("accept").String()
	return addr, sink, p
}

func TestLoadAllAcked(t *testing.T) {
	addr, sink, _ := startTestPipeline(t, 0)
	code, out, errOut := runCLI(t, "load", "--addr", addr, "--count", "3001", "--conns", "4", "--window", "50", "--id-start", "10")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "sent 3001  acked 3001  nacked 0  unanswered 0") || !strings.Contains(out, "ack latency p50") {
		t.Errorf("report:\n%s", out)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.seen) != 3001 {
		t.Errorf("%d distinct ids stored, want 3001", len(sink.seen))
	}
	for id := int64(10); id < 10+3001; id++ {
		if sink.seen[id] != 1 {
			t.Fatalf("id %d stored %d times", id, sink.seen[id])
		}
	}
}

// TestLoadAckedIDs checks that --acked-ids lists exactly the acked records
// ids, ascending, and leaves the nacked ones out.
func TestLoadAckedIDs(t *testing.T) {
	addr, sink, _ := startTestPipeline(t, 100)
	file := filepath.Join(t.TempDir(), "acked.txt")
	code, out, _ := runCLI(t, "load", "--addr", addr, "--count", "1000", "--conns", "3", "--acked-ids", file)
	if code != 1 || !strings.Contains(out, "sent 1000  acked 990  nacked 10") {
		t.Fatalf("exit %d (want 1, some nacked):\n%s", code, out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(b))
	if len(lines) != 990 {
		t.Fatalf("%d ids in %s, want 990", len(lines), file)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	prev := int64(0)
	for _, l := range lines {
		id, err := strconv.ParseInt(l, 10, 64)
		if err != nil || id <= prev {
			t.Fatalf("line %q after %d: not an ascending id (%v)", l, prev, err)
		}
		prev = id
		if id%100 == 0 {
			t.Errorf("id %d was nacked, yet listed", id)
		}
		if sink.seen[id] != 1 {
			t.Errorf("acked id %d stored %d times", id, sink.seen[id])
		}
	}
}

func TestLoadNacks(t *testing.T) {
	addr, _, _ := startTestPipeline(t, 100)
	code, out, _ := runCLI(t, "load", "--addr", addr, "--count", "1000", "--conns", "3", "--framing", "lines")
	if code != 1 {
		t.Errorf("exit %d with nacked records, want 1", code)
	}
	for _, want := range []string{"sent 1000  acked 990  nacked 10  unanswered 0", `10 × "stage \"sink\": test refuses"`, "first nacks:"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestLoadRateAndDuration(t *testing.T) {
	addr, sink, _ := startTestPipeline(t, 0)
	code, out, errOut := runCLI(t, "load", "--addr", addr, "--duration", "300ms", "--rate", "1000", "--conns", "2")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	sink.mu.Lock()
	n := len(sink.seen)
	sink.mu.Unlock()
	// At 1000/s for 0.3 s: never more than the rate allows (plus the first
	// record of each connection), and something was sent.
	if n == 0 || n > 302 {
		t.Errorf("%d records in 300ms at 1000/s", n)
	}
	if !strings.Contains(out, fmt.Sprintf("sent %d  acked %d", n, n)) {
		t.Errorf("report does not match the %d records stored:\n%s", n, out)
	}
}

func TestLoadNoServer(t *testing.T) {
	code, out, _ := runCLI(t, "load", "--addr", "127.0.0.1:1", "--count", "10", "--conns", "1")
	if code != 1 || !strings.Contains(out, "error: conn 0:") {
		t.Errorf("exit %d, report:\n%s", code, out)
	}
}

// Flags past what one process can hold are refused with a clear error,
// before anything is allocated: --window 1000000000000 was a fatal out of
// memory.
func TestLoadFlagsBounded(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--window", "1000000000000"}, "--window must be between 1 and 1048576"},
		{[]string{"--window", "0"}, "--window must be between 1 and 1048576"},
		{[]string{"--conns", "2000000000"}, "--conns 2000000000 is too many: at most 65536"},
		{[]string{"--conns", "65536", "--window", "65536"}, "records in flight is too many"},
		// A negative start, or ids past the largest int64, panicked in
		// the record's making.
		{[]string{"--id-start", "-1"}, "--id-start -1 cannot be negative"},
		{[]string{"--id-start", "9223372036854775800"}, "--id-start 9223372036854775800: the last of --count 10 ids would pass"},
	} {
		code, out, errOut := runCLI(t, append([]string{"load", "--addr", "127.0.0.1:1", "--count", "10"}, c.args...)...)
		if code != 1 || !strings.Contains(out+errOut, c.want) {
			t.Errorf("load %v: exit %d, want an error saying %q:\n%s%s", c.args, code, c.want, out, errOut)
		}
	}
}

// A load that the server's drain interrupts ends with one line that says
// so, not one error per connection.
func TestLoadInterruptedByDrain(t *testing.T) {
	addr, sink, p := startTestPipeline(t, 0)
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := runCLI(t, "load", "--addr", addr, "--duration", "30s", "--rate", "2000", "--conns", "8")
		done <- result{code, out, errOut}
	}()
	poll.Until(t, "200 records", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.seen) >= 200
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	var errs []string
	for _, l := range strings.Split(r.out, "\n") {
		if strings.HasPrefix(l, "error:") {
			errs = append(errs, l)
		}
	}
	if r.code != 1 || len(errs) != 1 || !strings.Contains(errs[0], "the server closed 8 connections before the load was done") {
		t.Errorf("exit %d, error lines %q; want exit 1 and one line saying the server closed the 8 connections\n%s%s", r.code, errs, r.out, r.err)
	}
}

// TestLoadRefused checks that connections the server refuses are reported
// as refused, with how: at max_conns netio.tcp answers `nack 0 too many
// connections`; a server with no room may also close a connection before
// any reply. Neither is a server "draining, restarting or gone".
//
// How many of the 6 are refused depends on when each dials: a connection
// that finishes its 100 records and closes frees its slot for a later
// one. So the check is that some were refused, each said as such, and
// every record of the others acked.
func TestLoadRefused(t *testing.T) {
	addr, _, _ := startTestPipelineWith(t, 0, "max_conns: 2")
	code, out, errOut := runCLI(t, "load", "--addr", addr, "--count", "600", "--conns", "6", "--timeout", "10s")
	t.Logf("%s", out)
	refused := 0
	for _, re := range []*regexp.Regexp{refusedLine, closedLine} {
		if m := re.FindStringSubmatch(out); m != nil {
			n, _ := strconv.Atoi(m[1])
			refused += n
		}
	}
	// A refused connection's records count as sent or not depending on
	// whether its writes went out before the refusal: only acked is sure.
	acked := fmt.Sprintf("  acked %d  nacked 0  ", (6-refused)*100)
	if code != 1 || refused < 1 || refused > 4 || !strings.Contains(out, acked) ||
		strings.Contains(out, "draining, restarting or gone") {
		t.Errorf("load on a server with max_conns 2: exit %d\n%s%s\nwant exit 1, 1 to 4 connections said refused, and %q", code, out, errOut, acked)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close() // no room: closed before any reply
		}
	})
	code, out, errOut = runCLI(t, "load", "--addr", ln.Addr().String(), "--count", "100", "--conns", "2", "--timeout", "10s")
	// Unanswered, a drain's close looks the same: the line says so.
	if code != 1 || !strings.Contains(out, "error: the server closed 2 of 2 connections before any reply (no room for them, or it was draining or gone") {
		t.Errorf("load on a server that closes every connection: exit %d\n%s%s", code, out, errOut)
	}
}

// When load's own --timeout passes with records unanswered, the report
// says so, naming the flag: it said "records neither acked nor nacked:
// ... wire: closed: use of closed network connection", which reads as if
// the server had closed the connection.
func TestLoadTimeoutSaysSo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	end := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	defer close(end)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				// Reads everything, answers nothing, and keeps the
				// connection open past the client's half-close.
				defer c.Close()
				io.Copy(io.Discard, c)
				<-end
			})
		}
	})
	code, out, errOut := runCLI(t, "load", "--addr", ln.Addr().String(), "--count", "20", "--conns", "2", "--timeout", "50ms")
	want := "error: 20 records on 2 connections neither acked nor nacked: no answer within --timeout 50ms\n"
	if code != 1 || !strings.Contains(out, want) || strings.Contains(out, "closed") {
		t.Errorf("load on a server that never answers: exit %d, want 1 and %q:\n%s%s", code, want, out, errOut)
	}
}

// refusedLine finds load's line on refused connections: how many of 6.
var refusedLine = regexp.MustCompile(`error: the server refused ([0-9]+) of 6 connections: `)

// closedLine finds load's line on connections closed before any reply
// (no room, or a drain): how many of 6.
var closedLine = regexp.MustCompile(`error: the server closed ([0-9]+) of 6 connections before any reply`)
