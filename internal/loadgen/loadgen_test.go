package loadgen_test

// This file tests a load run against stand-in servers on loopback:
// records, IDs, rate and duration, acks and nacks, malformed and dropped
// connections, ack timeouts; and the Histogram.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/internal/loadgen"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRecord(t *testing.T) {
	for _, id := range []int64{0, 7, 123456789} {
		b := loadgen.Record(nil, id)
		var rec struct {
			ID               int64
			Host, Level, Msg string
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatalf("record %d: %v: %s", id, err, b)
		}
		if rec.ID != id || rec.Host == "" || rec.Level == "" || rec.Msg == "" {
			t.Errorf("record %d: %+v", id, rec)
		}
		if id == 123456789 && (len(b) < 80 || len(b) > 110) {
			t.Errorf("record is %d bytes, want about 90", len(b))
		}
	}
}

func TestPaddedRecord(t *testing.T) {
	natural := len(loadgen.Record(nil, 12345))
	for _, size := range []int{0, 1, 60, natural, natural + 1, 500} {
		rec := loadgen.PaddedRecord(nil, 12345, size)
		var m map[string]any
		if err := json.Unmarshal(rec, &m); err != nil {
			t.Fatalf("size %d: %s: %v", size, rec, err)
		}
		if m["id"] != float64(12345) {
			t.Errorf("id %v", m["id"])
		}
		if want := max(size, natural); len(rec) != want {
			t.Errorf("size %d: record of %d bytes, want %d: %s", size, len(rec), want, rec)
		}
	}
}

// Ids near the ends of int64 make valid records: PaddedRecord indexed its
// levels by id%6, which is negative (and panicked) for a negative id, such
// as one wrapped round past the largest int64.
func TestPaddedRecordExtremeIDs(t *testing.T) {
	for _, id := range []int64{-1, -7, math.MinInt64, math.MaxInt64, math.MaxInt64 - 3} {
		rec := loadgen.PaddedRecord(nil, id, 0)
		var m struct{ ID int64 }
		if err := json.Unmarshal(rec, &m); err != nil || m.ID != id {
			t.Errorf("id %d: %s: %v", id, rec, err)
		}
	}
}

// Ids stop at the largest int64: Run refuses Records whose last id would
// pass it, and a Duration run stops sending there instead of wrapping its
// ids round to negative ones.
func TestRunIDsDoNotOverflow(t *testing.T) {
	addr := ackServer(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Records: 10, StartID: math.MaxInt64 - 8}); err == nil {
		t.Error("Run sent ids past the largest int64 without an error")
	}
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 3, Duration: 20 * time.Second, StartID: math.MaxInt64 - 9, CollectIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Sent != 10 || len(res.AckedIDs) != 10 {
		t.Fatalf("sent %d, %d acked ids (the first %v); want the 10 ids up to the largest int64",
			res.Sent, len(res.AckedIDs), res.AckedIDs[:min(len(res.AckedIDs), 12)])
	}
	for _, id := range res.AckedIDs {
		if id < math.MaxInt64-9 {
			t.Errorf("acked id %d: below the start, wrapped round", id)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h loadgen.Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if d := got - c.want; d < -c.want/30 || d > c.want/30 {
			t.Errorf("q%.2f = %v, want %v within 3%%", c.q, got, c.want)
		}
	}
	if h.Count() != 1000 || h.Max() != time.Millisecond {
		t.Errorf("count %d max %v", h.Count(), h.Max())
	}
}

// ackServer acks every record after it is read, and nacks ids divisible
// by nackEvery (when not 0) and records that are not JSON ("malformed").
func ackServer(t *testing.T, nackEvery int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				w := bufio.NewWriter(c)
				var seq uint64
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						break
					}
					seq++
					var rec struct{ ID int64 }
					if json.Unmarshal(line, &rec) != nil {
						fmt.Fprintf(w, "nack %d malformed\n", seq)
					} else if nackEvery > 0 && rec.ID%nackEvery == 0 {
						fmt.Fprintf(w, "nack %d busy\n", seq)
					}
					w.WriteString("ack " + strconv.FormatUint(seq, 10) + "\n")
					if r.Buffered() == 0 {
						w.Flush()
					}
				}
				w.Flush()
			})
		}
	})
	return ln.Addr().String()
}

func TestRunCountsAndIDs(t *testing.T) {
	addr := ackServer(t, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var acked atomic.Uint64
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 4, Records: 2000, Window: 50, StartID: 1, CollectIDs: true, Acked: &acked})
	if err != nil {
		t.Fatal(err)
	}
	if acked.Load() != res.Acked {
		t.Errorf("Config.Acked counted %d, the result says %d", acked.Load(), res.Acked)
	}
	if len(res.FirstNacks) != loadgen.MaxFirstNacks {
		t.Errorf("first nacks %v, want %d", res.FirstNacks, loadgen.MaxFirstNacks)
	}
	for _, n := range res.FirstNacks {
		if n.Reason != "busy" || n.Record == 0 || !strings.HasPrefix(n.String(), fmt.Sprintf("conn %d record %d: busy", n.Conn, n.Record)) {
			t.Errorf("first nack %+v (%s)", n, n)
		}
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Sent != 2000 || res.Acked != 1800 || res.Nacked != 200 || res.Nacks["busy"] != 200 {
		t.Fatalf("sent %d acked %d nacked %d %v", res.Sent, res.Acked, res.Nacked, res.Nacks)
	}
	seen := map[int64]bool{}
	for _, id := range res.AckedIDs {
		if id%10 == 0 || id < 1 || id > 2000 || seen[id] {
			t.Fatalf("acked id %d: nacked, out of range or twice", id)
		}
		seen[id] = true
	}
	if len(seen) != 1800 || res.Latency.Count() != 1800 {
		t.Errorf("%d acked ids, %d latencies; want 1800", len(seen), res.Latency.Count())
	}
}

func TestRunDurationAndRate(t *testing.T) {
	addr := ackServer(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 2, Duration: 300 * time.Millisecond, Rate: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	// The rate caps what is sent: at most the records due by the end.
	if res.Sent == 0 || res.Sent > 2000 || res.Acked != res.Sent {
		t.Errorf("sent %d acked %d; want 0 < sent <= 2000, all acked", res.Sent, res.Acked)
	}
}

// OnAck sees exactly the acked ids, each once, and never a nacked one.
func TestRunOnAck(t *testing.T) {
	addr := ackServer(t, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[int64]int{}
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 4, Records: 2000, Window: 50, StartID: 1,
		OnAck: func(id int64) { mu.Lock(); seen[id]++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1800 || res.Acked != 1800 || len(res.AckedIDs) != 0 {
		t.Fatalf("%d ids seen, %d acked, %d collected; want 1800, 1800, 0", len(seen), res.Acked, len(res.AckedIDs))
	}
	for id, n := range seen {
		if id%10 == 0 || id < 1 || id > 2000 || n != 1 {
			t.Fatalf("acked id %d seen %d times: nacked, out of range or repeated", id, n)
		}
	}
}

// PerSecond's seconds add up to the run's totals.
func TestRunPerSecond(t *testing.T) {
	addr := ackServer(t, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 3, Duration: 1200 * time.Millisecond, Rate: 3000, PerSecond: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	var sent, acked, nacked, lat uint64
	for _, s := range res.Seconds {
		sent, acked, nacked, lat = sent+s.Sent, acked+s.Acked, nacked+s.Nacked, lat+s.Latency.Count()
	}
	if len(res.Seconds) < 2 || sent != res.Sent || acked != res.Acked || nacked != res.Nacked || lat != res.Acked {
		t.Fatalf("%d seconds adding up to sent %d acked %d nacked %d latencies %d; the run: %d %d %d",
			len(res.Seconds), sent, acked, nacked, lat, res.Sent, res.Acked, res.Nacked)
	}
}

// rangeServer acks every record, except that on each connection records
// 10k+3 to 10k+6 are refused in one range nack, written before the ack
// covering them.
func rangeServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				w := bufio.NewWriter(c)
				var seq uint64
				for {
					if _, err := r.ReadBytes('\n'); err != nil {
						break
					}
					seq++
					switch seq % 10 {
					case 3, 4, 5: // answered with 6
					case 6:
						fmt.Fprintf(w, "nack %d-%d busy\nack %d\n", seq-3, seq, seq)
					default:
						fmt.Fprintf(w, "ack %d\n", seq)
					}
					if r.Buffered() == 0 {
						w.Flush()
					}
				}
				w.Flush()
			})
		}
	})
	return ln.Addr().String()
}

// A range nack counts each of its records as nacked: none of them is
// acked, has a latency or an acked id.
func TestRunRangeNacks(t *testing.T) {
	addr := rangeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 1, Records: 1000, Window: 64, StartID: 1, CollectIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Sent != 1000 || res.Acked != 600 || res.Nacked != 400 || res.Nacks["busy"] != 400 || res.Latency.Count() != 600 {
		t.Fatalf("sent %d acked %d nacked %d %v, %d latencies", res.Sent, res.Acked, res.Nacked, res.Nacks, res.Latency.Count())
	}
	for _, id := range res.AckedIDs {
		if m := id % 10; m >= 3 && m <= 6 {
			t.Fatalf("id %d acked: its record was nacked", id)
		}
	}
	if len(res.FirstNacks) == 0 || res.FirstNacks[0].String() != "conn 0 records 3-6: busy" {
		t.Fatalf("first nacks %v", res.FirstNacks)
	}
}

// connServer serves a line protocol server whose first connection is
// refused with "nack 0 too many connections", and whose others nack
// every record busy, then, once it has answered records, end with "nack
// 0 idle" (the server ending a connection it has served).
func connServer(t *testing.T, records int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if i == 0 {
					fmt.Fprintf(c, "nack 0 too many connections\n")
					return
				}
				r := bufio.NewReader(c)
				for seq := 1; seq <= records; seq++ {
					if _, err := r.ReadBytes('\n'); err != nil {
						return
					}
					fmt.Fprintf(c, "nack %d busy\n", seq)
				}
				fmt.Fprintf(c, "nack 0 idle for 1m0s\n")
			})
		}
	})
	return ln.Addr().String()
}

// A `nack 0` is about the connection, not a record: the nacks by reason
// add up to the records nacked, a first reply of `nack 0` is a refusal,
// and one after other replies (the server ending a connection it served)
// is none.
func TestRunConnectionNacks(t *testing.T) {
	addr := connServer(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 2, Records: 6})
	if err != nil {
		t.Fatal(err)
	}
	var byReason uint64
	for _, n := range res.Nacks {
		byReason += n
	}
	if res.Nacked != 3 || byReason != res.Nacked || res.Nacks["busy"] != 3 {
		t.Errorf("nacked %d, by reason %v (%d): want 3 busy", res.Nacked, res.Nacks, byReason)
	}
	if res.Refused != 1 || res.Refusals["too many connections"] != 1 || len(res.Refusals) != 1 {
		t.Errorf("refused %d %v, want 1 too many connections", res.Refused, res.Refusals)
	}
}

// Config.Record makes the records: the server sees what it returned for
// each id.
func TestRunRecord(t *testing.T) {
	addr := ackServer(t, 7) // nacks the records whose JSON id is a multiple of 7
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 2, Records: 100, StartID: 1,
		Record: func(b []byte, id int64) []byte { return fmt.Appendf(b, `{"id":%d}`, id%10) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	// ids 1..100 map to 0..9: 7 and 0 are nacked, 20 records of 100.
	if res.Acked != 80 || res.Nacked != 20 {
		t.Fatalf("acked %d nacked %d, want 80 and 20: the records were not Record's", res.Acked, res.Nacked)
	}
}

func TestRunMalformed(t *testing.T) {
	addr := ackServer(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := loadgen.Config{Addr: addr, Conns: 4, Records: 4000, Window: 100, StartID: 1, CollectIDs: true, Malformed: 0.05}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	var want uint64
	for id := int64(1); id <= 4000; id++ {
		if cfg.IsMalformed(id) {
			want++
		}
	}
	if want < 120 || want > 280 { // 5% of 4,000 is 200
		t.Fatalf("%d of 4000 ids malformed, want about 200", want)
	}
	if res.Malformed != want || res.Nacked != want || res.Nacks["malformed"] != want || res.Acked != 4000-want {
		t.Fatalf("malformed %d (want %d), acked %d nacked %d %v", res.Malformed, want, res.Acked, res.Nacked, res.Nacks)
	}
	for _, id := range res.AckedIDs {
		if cfg.IsMalformed(id) {
			t.Fatalf("malformed id %d acked", id)
		}
	}
	if rec := loadgen.MalformedRecord(nil, 7); json.Valid(rec) || !strings.HasPrefix(string(rec), `{"id":7,`) {
		t.Errorf("MalformedRecord: %s", rec)
	}
}

func TestRunDropConns(t *testing.T) {
	addr := ackServer(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const conns, records = 16, 3200
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: conns, Records: records, Window: 20, StartID: 1, CollectIDs: true, DropConns: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("a dropped connection is not an error: %v", err)
	}
	if res.Dropped == 0 || res.Dropped == conns {
		t.Fatalf("%d of %d connections dropped, want about half", res.Dropped, conns)
	}
	// A dropped connection stops halfway through its 200 records.
	if want := uint64(records - res.Dropped*records/conns/2); res.Sent != want {
		t.Errorf("sent %d, want %d", res.Sent, want)
	}
	if res.Acked+res.Nacked+res.Unanswered != res.Sent || uint64(len(res.AckedIDs)) != res.Acked {
		t.Errorf("sent %d, acked %d, nacked %d, unanswered %d, %d acked ids", res.Sent, res.Acked, res.Nacked, res.Unanswered, len(res.AckedIDs))
	}
}

// lateServer reads every record and acks them all only once the client
// has half-closed: later than any ack timeout.
func lateServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				var seq uint64
				for {
					if _, err := r.ReadBytes('\n'); err != nil {
						break
					}
					seq++
				}
				fmt.Fprintf(c, "ack %d\n", seq)
			})
		}
	})
	return ln.Addr().String()
}

// The ack timeout bounds the whole wait for what is owed, and the result
// agrees with itself: acks the server sends after it (on the client's
// half-close) were read in a second wait as long as the first, and the
// run reported every record acked and also "unsettled".
func TestRunAckTimeoutIsOneWait(t *testing.T) {
	addr := lateServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 1, Records: 50, AckTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rerr := res.Err()
	if (rerr == nil) != (res.Acked == res.Sent) {
		t.Fatalf("sent %d acked %d, error %v: the error and the counts disagree", res.Sent, res.Acked, rerr)
	}
	if rerr != nil && !strings.Contains(rerr.Error(), "records neither acked nor nacked") {
		t.Errorf("error %v, want it to say records are unsettled", rerr)
	}
}

// silentServer reads records and never answers; it keeps each connection
// open after the client's half-close until the test ends.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	end := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(end); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(io.Discard, c)
				<-end
			})
		}
	})
	return ln.Addr().String()
}

// When the ack timeout passes with records owed, the error says so: it
// said "wire: closed: use of closed network connection", which reads as
// if the server had closed the connection.
func TestRunAckTimeoutSaysSo(t *testing.T) {
	addr := silentServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 2, Records: 20, AckTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 2 {
		t.Fatalf("errors %v, want one for each connection", res.Errors)
	}
	for _, e := range res.Errors {
		var te *loadgen.AckTimeoutError
		if !errors.As(e, &te) || te.Unanswered != 10 || te.Sent != 10 || te.Timeout != 50*time.Millisecond ||
			!strings.Contains(e.Error(), "no answer within the ack timeout (50ms)") || strings.Contains(e.Error(), "closed") {
			t.Errorf("error %v, want an AckTimeoutError: 10 of 10 with no answer within 50ms", e)
		}
		if loadgen.ClosedByServer(e) || errors.Is(e, loadgen.ErrRefused) {
			t.Errorf("error %v taken for the server's close", e)
		}
	}
}
