package e2e

// This file tests the drain while clients send, as pipectl run on SIGTERM
// and as Stop in process: new connections refused, every acked record
// stored, nothing abandoned.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stagedserver/seda/internal/gobuild"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
)

// idSpan separates the ids of the streaming clients: client c sends ids
// c*idSpan+1, c*idSpan+2, ... so that a stored id names its client and
// record number.
const idSpan = 1_000_000

// streamer sends records as fast as the server takes them until the
// server ends the connection (the drain half-closes it) or the test does.
type streamer struct {
	c    *wire.Client
	base int64
	done chan struct{}
}

func startStreamers(t *testing.T, ctx context.Context, addr string, n int) []*streamer {
	t.Helper()
	ss := make([]*streamer, n)
	for i := range ss {
		c, err := wire.Dial(ctx, addr, wire.Lines)
		if err != nil {
			t.Fatal(err)
		}
		s := &streamer{c: c, base: int64(i+1) * idSpan, done: make(chan struct{})}
		ss[i] = s
		go func() {
			defer close(s.done)
			for seq := int64(1); seq < idSpan; seq++ {
				select {
				case <-c.Done():
					return
				case <-ctx.Done():
					return
				default:
				}
				if _, err := c.Send(jsonRecord(s.base + seq)); err != nil {
					return
				}
				if seq%50 == 0 {
					if c.Flush() != nil {
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}
	t.Cleanup(func() {
		for _, s := range ss {
			s.c.Close()
			<-s.done
		}
	})
	return ss
}

func totalAcked(ss []*streamer) uint64 {
	var n uint64
	for _, s := range ss {
		n += s.c.Acked()
	}
	return n
}

// waitRefused dials addr until a connection is refused; it returns how
// many dials were accepted first.
func waitRefused(t *testing.T, addr string) int {
	t.Helper()
	accepted, resets := 0, 0
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			accepted++
			nc.Close()
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if errors.Is(err, syscall.ECONNRESET) {
			// Queued in the backlog of the listener as it closed: the
			// kernel resets it. A refusal too; wait for the plain one.
			resets++
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial after the stop began: %v, want connection refused", err)
		}
		if resets > 0 {
			t.Logf("%d dials were reset by the closing listener before the first refusal", resets)
		}
		return accepted
	}
	t.Fatalf("connections still accepted %s after the stop began", wait)
	return accepted
}

// checkDrained waits for each streamer's connection to end, then checks
// the table against what each client saw: every record acked (and not
// nacked) is stored, and nothing is stored beyond the client's last ack,
// so every record the server read was acked before it closed.
func checkDrained(t *testing.T, dsn string, ss []*streamer) {
	t.Helper()
	stored := storedIDs(t, dsn, "events")
	var acked, nacked int
	for i, s := range ss {
		select {
		case <-s.c.Done():
		case <-time.After(wait):
			t.Fatalf("client %d: the server did not end the connection", i)
		}
		<-s.done
		a := s.c.Acked()
		nk := map[uint64]bool{}
		for _, r := range s.c.Nacks() {
			for seq := r.N; seq <= r.Last() && seq > 0; seq++ { // a range nack refuses many
				nk[seq] = true
			}
		}
		acked += int(a) - len(nk)
		nacked += len(nk)
		if err := s.c.Err(); !errors.Is(err, io.EOF) {
			t.Errorf("client %d: connection ended with %v, want a clean EOF after the acks", i, err)
		}
		for seq := uint64(1); seq <= a; seq++ {
			if !nk[seq] && !stored[s.base+int64(seq)] {
				t.Errorf("client %d: record %d was acked but is not stored", i, seq)
			}
		}
		for id := range stored {
			if id > s.base && id < s.base+idSpan && uint64(id-s.base) > a {
				t.Errorf("client %d: record %d is stored but was never acked (last ack %d)", i, id-s.base, a)
			}
		}
		t.Logf("client %d: sent %d, acked %d, nacks %v, end %v", i, s.c.Sent(), a, s.c.Nacks(), s.c.Err())
	}
	t.Logf("stored %d rows = %d acked records (%d nacked)", len(stored), acked, nacked)
	if len(stored) != acked {
		t.Errorf("stored %d rows, acked %d records", len(stored), acked)
	}
}

// withPassword returns dsn (a URL) with a password for its user.
func withPassword(t testing.TB, dsn, pw string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String()
}

// TestDrainOnSIGTERM sends SIGTERM to `pipectl run` while four clients
// send: it exits 0 within the drain deadline, new connections are
// refused, every record acked is stored, and every record the server read
// was acked (nothing stored beyond the last ack each client read before
// EOF). The DSN carries a password, which must show neither in pipectl's
// output nor in /stats.
func TestDrainOnSIGTERM(t *testing.T) {
	t.Parallel()
	const pw = "drainSecretPW42"
	bin := gobuild.ForTest(t, gobuild.Options{})
	dsn := withPassword(t, pg.NewDatabase(t), pw)
	file := writeFile(t, "drain.yaml", strings.Replace(strings.ReplaceAll(ingest("", storeDefaults), "${DSN}", dsn),
		"stages:", "admin: {listen: 127.0.0.1:0}\nstages:", 1))
	p := startPipectl(t, bin, file, "--drain", "20s")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ss := startStreamers(t, ctx, p.addr, 4)
	poll.Until(t, "2000 records acked", func() bool { return totalAcked(ss) >= 2000 })

	resp, err := http.Get("http://" + p.admin + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), pw) {
		t.Errorf("/stats shows the DSN password: %s", body)
	}

	before := totalAcked(ss)
	p.signal(t, syscall.SIGTERM)
	accepted := waitRefused(t, p.addr)
	code := p.wait(t, 25*time.Second) // the drain deadline, and some
	t.Logf("SIGTERM after %d acks; %d dials accepted before the first refusal; exit %d", before, accepted, code)
	if code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0:\n%s", code, p.out)
	}
	checkDrained(t, dsn, ss)
	if strings.Contains(p.out.String(), pw) {
		t.Errorf("pipectl's output shows the DSN password:\n%s", p.out)
	}
	if !strings.Contains(p.out.String(), "drained and stopped") {
		t.Errorf("pipectl did not report a drain:\n%s", p.out)
	}
}

// TestDrainInProcess is the in-process variant: Stop while clients send
// drains completely (nothing abandoned), refuses new connections, and
// leaves no goroutine behind.
func TestDrainInProcess(t *testing.T) {
	dsn := pg.NewDatabase(t)
	ignore := goleak.IgnoreCurrent()
	r := startPipeline(t, registry(t), ingest("", storeDefaults), map[string]string{"DSN": dsn}, nil, "accept")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ss := startStreamers(t, ctx, r.addr, 4)
	poll.Until(t, "2000 records acked", func() bool { return totalAcked(ss) >= 2000 })

	type result struct {
		abandoned uint64
		forced    bool
		err       error
	}
	stopped := make(chan result, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		rep, err := r.p.Stop(sctx)
		stopped <- result{rep.Abandoned, rep.Forced, err}
	}()
	accepted := waitRefused(t, r.addr)
	var res result
	select {
	case res = <-stopped:
	case <-time.After(wait):
		t.Fatal("Stop did not return")
	}
	t.Logf("Stop: abandoned %d, forced %v, err %v; %d dials accepted before the first refusal", res.abandoned, res.forced, res.err, accepted)
	if res.err != nil || res.abandoned != 0 || res.forced {
		t.Errorf("Stop: abandoned %d, forced %v, %v; want a complete drain", res.abandoned, res.forced, res.err)
	}
	checkDrained(t, dsn, ss)
	for _, s := range ss {
		s.c.Close()
		<-s.done
	}
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("goroutines left after Stop: %v", err)
	}
}
