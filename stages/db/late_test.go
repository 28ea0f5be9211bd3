package db

// This file tests writes delivered late: a write held on the network past
// write_timeout never overwrites a newer update, since its backend is
// fenced before the retry; and the fence's reach, bounds and refusal.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// holdProxy forwards TCP connections to PostgreSQL and can hold the
// client->server bytes of one link (or of the links open at a moment)
// while new links forward normally: a write's bytes delayed on the network
// past write_timeout, delivered late by release. internal/faultproxy
// holds every link at once, new ones too, which would hold the retry.
type holdProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	pattern []byte // hold the next link that sends this
	every   bool   // hold every link that sends pattern, not the next only
	links   []*holdLink
	closed  bool
}

type holdLink struct {
	client, server net.Conn
	gate           chan struct{} // non-nil: client->server bytes wait until it is closed
	held           bool          // was held at some time
	serverGone     chan struct{} // closed once the server has closed its end
}

// newHoldProxy returns dsn through a holdProxy, and the proxy, stopped
// when the test ends.
func newHoldProxy(t *testing.T, dsn string) (string, *holdProxy) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln, target: u.Host}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	u.Host = ln.Addr().String()
	return u.String(), p
}

func (p *holdProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		l := &holdLink{client: c, server: s, serverGone: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.links = append(p.links, l)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.down(l)
		go p.up(l)
	}
}

// down forwards server->client; once the client is gone it still reads
// the server until it closes, so that serverGone means the backend has
// read all it was sent and gone.
func (p *holdProxy) down(l *holdLink) {
	defer p.wg.Done()
	_, _ = io.Copy(l.client, l.server)
	_, _ = io.Copy(io.Discard, l.server)
	l.client.Close()
	close(l.serverGone)
}

// up forwards client->server, through the link's gate.
func (p *holdProxy) up(l *holdLink) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := l.client.Read(buf)
		p.mu.Lock()
		if n > 0 && p.pattern != nil && l.gate == nil && bytes.Contains(buf[:n], p.pattern) {
			if !p.every {
				p.pattern = nil
			}
			l.gate, l.held = make(chan struct{}), true
		}
		g := l.gate
		p.mu.Unlock()
		if g != nil {
			<-g
		}
		if n > 0 {
			if _, werr := l.server.Write(buf[:n]); werr != nil {
				l.server.Close()
				return
			}
		}
		if err != nil {
			_ = l.server.(*net.TCPConn).CloseWrite()
			return
		}
	}
}

// holdNext holds the next link to send pattern, from that read on.
func (p *holdProxy) holdNext(pattern string) {
	p.mu.Lock()
	p.pattern, p.every = []byte(pattern), false
	p.mu.Unlock()
}

// holdEvery holds every link that sends pattern, from that read on,
// until holdNone.
func (p *holdProxy) holdEvery(pattern string) {
	p.mu.Lock()
	p.pattern, p.every = []byte(pattern), true
	p.mu.Unlock()
}

// holdNone holds no more links (those held stay held until release).
func (p *holdProxy) holdNone() {
	p.mu.Lock()
	p.pattern, p.every = nil, false
	p.mu.Unlock()
}

// holdOpen holds every link now open.
func (p *holdProxy) holdOpen() {
	p.mu.Lock()
	for _, l := range p.links {
		if l.gate == nil {
			l.gate, l.held = make(chan struct{}), true
		}
	}
	p.mu.Unlock()
}

// release lets the held bytes through, late, and returns the links that
// were held.
func (p *holdProxy) release() []*holdLink {
	p.mu.Lock()
	defer p.mu.Unlock()
	var held []*holdLink
	for _, l := range p.links {
		if l.gate != nil {
			close(l.gate)
			l.gate = nil
		}
		if l.held {
			held = append(held, l)
		}
	}
	return held
}

func (p *holdProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.release()
	p.mu.Lock()
	for _, l := range p.links {
		l.client.Close()
		l.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestLateWriteDoesNotOverwriteNewer: a write whose bytes are held on the
// network past write_timeout is retried on a new connection and the key's
// next update commits after it; the held bytes then reach the old backend.
// They must find it gone: before the sink retries a write that got no
// answer it ends that write's backend, so the late statement never runs
// and the key keeps its last update.
func TestLateWriteDoesNotOverwriteNewer(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			via, px := newHoldProxy(t, dsn)
			s := startSink(t, upsertConfig(via, map[string]any{"method": method, "max_conns": 2, "write_timeout": time.Second}))
			rec := &recorder{}
			mk := func(seq int) *stage.Event { ev := update(rec, 7, seq); withSeq(ev, seq); return ev }
			handle(t, s, []*stage.Event{mk(1)})
			if method == "insert" {
				// The statement is prepared on the connection: the write
				// sends only its name, so hold the one open link.
				px.holdOpen()
			} else {
				px.holdNext("INSERT INTO") // the merge, after the COPY
			}
			handle(t, s, []*stage.Event{mk(2)}) // times out once, retried on a new connection
			handle(t, s, []*stage.Event{mk(3)})
			if got := stored(t, dsn); got[7] != 3 {
				t.Fatalf("before the late bytes: key 7 holds %d", got[7])
			}
			held := px.release() // the first attempt's bytes arrive late
			if len(held) != 1 {
				t.Fatalf("%d links held, want 1", len(held))
			}
			// Once the server has closed the held link, its backend has
			// either run the late bytes or was ended before them.
			poll.Until(t, "the held link's backend to end", func() bool {
				select {
				case <-held[0].serverGone:
					return true
				default:
					return false
				}
			})
			if acked, nacked := rec.results(); acked != 3 || len(nacked) != 0 {
				t.Fatalf("acked %d nacked %v", acked, nacked)
			}
			if got := stored(t, dsn); got[7] != 3 {
				t.Fatalf("key 7 holds seq %d after the late delivery, want its last update 3", got[7])
			}
		})
	}
}

// TestLastTryDoesNotOverwriteNewer: with retry.max, a batch whose every
// try breaks unanswered fails, and its client may send the record again
// and the key's next update after it. The last try's bytes, held on the
// network meanwhile, must find its backend gone as the earlier tries' do,
// or its stale row overwrites the newer one.
func TestLastTryDoesNotOverwriteNewer(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			via, px := newHoldProxy(t, dsn)
			retry := stage.NewConfig(map[string]any{"max": 1, "backoff": time.Millisecond})
			s := startSink(t, upsertConfig(via, map[string]any{"method": method, "max_conns": 2, "write_timeout": time.Second, "retry": retry}))
			rec := &recorder{}
			mk := func(seq int) *stage.Event { ev := update(rec, 7, seq); withSeq(ev, seq); return ev }
			handle(t, s, []*stage.Event{mk(1)})
			// The open link, and each new one as it sends the write, go
			// silent: both tries of seq 2 time out. A new link is held
			// from the bytes that make the write whole, so that its late
			// bytes could still run it: the copy's merge after the COPY,
			// the insert's Bind (the record), which pgx sends only once
			// the statement's Parse has been answered.
			px.holdOpen()
			if method == "copy" {
				px.holdEvery("INSERT INTO")
			} else {
				px.holdEvery(`"seq":2`)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Handle(ctx, []*stage.Event{mk(2)}, nil); err == nil || !strings.Contains(err.Error(), "after 1 retries") {
				t.Fatalf("seq 2, both tries silent: Handle returned %v, want the batch failed after 1 retry", err)
			}
			px.holdNone()
			handle(t, s, []*stage.Event{mk(3)})
			if got := stored(t, dsn); got[7] != 3 {
				t.Fatalf("before the late bytes: key 7 holds %d", got[7])
			}
			held := px.release() // both tries' bytes arrive late
			if len(held) < 2 {
				t.Fatalf("%d links held, want both tries'", len(held))
			}
			for i, l := range held {
				poll.Until(t, fmt.Sprintf("held link %d's backend to end", i), func() bool {
					select {
					case <-l.serverGone:
						return true
					default:
						return false
					}
				})
			}
			if got := stored(t, dsn); got[7] != 3 {
				t.Fatalf("key 7 holds seq %d after the late delivery, want its last update 3", got[7])
			}
		})
	}
}

// TestTimedOutConnectionFreesItsSlot: with max_conns: 1, the connection a
// write_timeout dropped gives its pool slot back at once, so the fence
// and the retry get a connection at their first try. pgx alone waited up
// to 15 s for the server to close the dropped connection before freeing
// the slot, and the fence failed at each write_timeout meanwhile.
func TestTimedOutConnectionFreesItsSlot(t *testing.T) {
	for _, method := range methods {
		t.Run(method, func(t *testing.T) {
			dsn := pg.NewDatabase(t)
			via, px := newHoldProxy(t, dsn)
			log, logs := observed()
			s := newSink(t, upsertConfig(via, map[string]any{"method": method, "max_conns": 1, "write_timeout": 2 * time.Second}), log)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			handle(t, s, []*stage.Event{update(rec, 7, 1)})
			px.holdOpen()
			if err := s.Handle(ctx, []*stage.Event{update(rec, 7, 2)}, nil); err != nil {
				t.Fatal(err)
			}
			if acked, nacked := rec.results(); acked != 2 || len(nacked) != 0 {
				t.Fatalf("acked %d nacked %v", acked, nacked)
			}
			var failed []string
			for _, e := range logs.FilterMessage("PostgreSQL write failed; retrying the batch").All() {
				failed = append(failed, fmt.Sprint(e.ContextMap()["error"]))
			}
			// One failure, the write_timeout; a second only if the
			// fence's own try was slow on a loaded machine.
			if len(failed) == 0 || len(failed) > 2 || !strings.Contains(failed[0], "(write_timeout)") {
				t.Fatalf("%d failed tries, want the write_timeout alone: %q", len(failed), failed)
			}
		})
	}
}

// roleSink starts a sink connecting as a role of its own (not a
// superuser) to a new database, with write_timeout 1s; revoke, when set,
// is run first by a superuser (to take a right from the role). It
// returns the sink, a superuser's connection, the role's DSN and the
// sink's log.
func roleSink(t *testing.T, revoke string) (*Sink, *pgx.Conn, string, *observer.ObservedLogs) {
	t.Helper()
	dsn := pg.NewDatabase(t)
	admin := connect(t, dsn)
	role, roleDSN := newRole(t, admin, dsn, "w_")
	exec(t, admin, "GRANT ALL ON SCHEMA public TO "+role)
	if revoke != "" {
		exec(t, admin, revoke)
	}
	log, logs := observed()
	s := newSink(t, config(roleDSN, map[string]any{"write_timeout": time.Second}), log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return s, admin, roleDSN, logs
}

// newRole makes a plain login role for the test database of dsn (admin
// connected to it as its owner), dropped when the test ends, and returns
// its name and a DSN that logs in as it. Roles are the cluster's: the
// name is prefix and the database's, so each test has its own.
func newRole(t *testing.T, admin *pgx.Conn, dsn, prefix string) (role, roleDSN string) {
	t.Helper()
	var db string
	if err := admin.QueryRow(context.Background(), "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	role = prefix + db
	exec(t, admin, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() {
		c := connect(t, dsn)
		_, _ = c.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return role, u.String()
}

// fenceRefusal is what fence logs, once, when PostgreSQL refuses it.
const fenceRefusal = "PostgreSQL refused to end or to show the backend of a write that got no answer; " +
	"waiting write_timeout before retrying, so a delayed write may still run after newer ones"

// TestFenceEndsOwnBackendsOnly: fence ends a backend of the sink's
// database and user and returns once it is gone. A PID that is not one
// is neither ended nor waited for, and is no refusal: another user's
// backend (a superuser's, another plain role's: ending either would be
// refused, and logged), a session of the sink's user on a server started
// since the write (after a restart, a PID may be a new session's), and a
// PID past int4 (a pooler's, never a backend's).
func TestFenceEndsOwnBackendsOnly(t *testing.T) {
	s, admin, dsn, logs := roleSink(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var db string
	if err := admin.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	otherRole := "o_" + db
	exec(t, admin, "CREATE ROLE "+otherRole+" LOGIN")
	t.Cleanup(func() {
		c := connect(t, dsn)
		_, _ = c.Exec(context.Background(), "DROP ROLE "+otherRole)
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(otherRole)
	other := connect(t, u.String())
	own := connect(t, dsn)
	var started int64
	if err := own.QueryRow(ctx, "SELECT "+serverStartSQL).Scan(&started); err != nil {
		t.Fatal(err)
	}
	for _, b := range []backend{
		{pid: admin.PgConn().PID()},
		{pid: other.PgConn().PID()},
		{pid: own.PgConn().PID(), serverStart: started - 3600e6},
		{pid: 0x80000005},
	} {
		if err := s.fence(ctx, b); err != nil {
			t.Fatalf("fence(%+v): %v", b, err)
		}
	}
	for _, c := range []*pgx.Conn{admin, other, own} {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("a backend that was not the write's was ended: %v", err)
		}
	}
	if n := logs.FilterMessage(fenceRefusal).Len(); n != 0 {
		t.Fatalf("fence was refused %d times: it tried to end a backend that is not its own", n)
	}
	pid := own.PgConn().PID()
	if err := s.fence(ctx, backend{pid: pid, serverStart: started}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid); n != 0 {
		t.Fatalf("backend %d still listed after fence returned", pid)
	}
}

// TestFenceRefused: where PostgreSQL refuses the sink's role
// pg_terminate_backend (EXECUTE revoked), or the sight of
// pg_stat_activity (SELECT revoked), fence says so once in the log,
// waits write_timeout, and then lets the retry go, leaving the backend
// alone: the batch is retried, not failed.
func TestFenceRefused(t *testing.T) {
	for name, revoke := range map[string]string{
		"terminate":        "REVOKE EXECUTE ON FUNCTION pg_terminate_backend(integer, bigint) FROM PUBLIC",
		"pg_stat_activity": "REVOKE SELECT ON pg_catalog.pg_stat_activity FROM PUBLIC",
	} {
		t.Run(name, func(t *testing.T) {
			s, _, dsn, logs := roleSink(t, revoke)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			other := connect(t, dsn) // a backend of the sink's role, busy with nothing
			pid := other.PgConn().PID()
			for range 2 {
				if err := s.fence(ctx, backend{pid: pid}); err != nil {
					t.Fatal(err)
				}
			}
			if n := logs.FilterMessage(fenceRefusal).Len(); n != 1 {
				t.Fatalf("the refusal logged %d times, want once", n)
			}
			if name == "terminate" {
				if err := other.Ping(ctx); err != nil {
					t.Fatalf("the backend was ended: %v", err)
				}
			}
		})
	}
}

// TestAfterConnectIsBounded: a new connection whose first query (when
// its server started, for the fence) gets no answer does not hold the
// pool's only slot: the pool runs it past connect_timeout and past the
// Acquire waiting for it, so it has write_timeout of its own, and the
// connection it broke is dropped. The database is healthy, and only two
// links went silent: the batch is written (within the test's bound; it
// waited until TCP gave up before).
func TestAfterConnectIsBounded(t *testing.T) {
	dsn := pg.NewDatabase(t)
	via, px := newHoldProxy(t, dsn)
	s := startSink(t, upsertConfig(via, map[string]any{"method": "copy", "max_conns": 1, "write_timeout": time.Second}))
	rec := &recorder{}
	handle(t, s, []*stage.Event{update(rec, 7, 1)})
	px.holdOpen()                           // the open link goes silent: the write times out
	px.holdNext("pg_postmaster_start_time") // and the next new link goes silent at its first query
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.Handle(ctx, []*stage.Event{update(rec, 7, 2)}, nil)
	if acked, nacked := rec.results(); err != nil || acked != 2 {
		t.Fatalf("Handle: %v; acked %d, nacked %v; want the batch written on a third link", err, acked, nacked)
	}
}

// TestAnsweredBreakIsNotFenced: a write PostgreSQL answered with an error
// as it closed the connection (its backend ended: 57P01, as when the
// server shuts down) needs no fence, since nothing of it can run later.
// The fence used to run after every such error, and for the length of a
// restart the store's health read "ending backend N, whose write got no
// answer" instead of PostgreSQL's own reason.
func TestAnsweredBreakIsNotFenced(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := startSink(t, config(dsn, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := conn.Conn().PgConn().PID()
	admin := connect(t, dsn)
	exec(t, admin, fmt.Sprintf("SELECT pg_terminate_backend(%d)", pid))
	poll.Until(t, "the backend to end", func() bool {
		return count(t, admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", int32(pid)) == 0
	})
	_, err = conn.Exec(ctx, "SELECT 1")
	if sqlState(err) != "57P01" || !conn.Conn().PgConn().IsClosed() {
		t.Fatalf("write on an ended backend: %v (closed %v), want 57P01 and the connection closed", err, conn.Conn().PgConn().IsClosed())
	}
	var cut backend
	s.release(conn, err, &cut)
	if cut.pid != 0 {
		t.Errorf("a write answered with %v is to be fenced (backend %d), want none", err, cut.pid)
	}
}
