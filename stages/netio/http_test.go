package netio_test

// This file tests netio.http end to end on loopback: its answers, busy,
// mutual TLS, max_conns, slow and gone clients, the drain, the token,
// and the bytes counted.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stats"
)

func newHTTPRig(t *testing.T, values map[string]any, sinkSet stage.Settings, h stage.HandlerFunc) (*rig, *netio.HTTPSource) {
	t.Helper()
	src, err := newSource(netio.HTTPKind, listening(values))
	if err != nil {
		t.Fatal(err)
	}
	r := startRig(t, src, stage.Settings{Name: "in", Kind: netio.HTTPKind, Workers: 1, Concurrency: 1, Capacity: 64}, sinkSet, h)
	return r, src.(*netio.HTTPSource)
}

// answer is a response: its status, Retry-After and JSON body.
type answer struct {
	status     int
	retryAfter string
	Acked      int `json:"acked"`
	Nacked     []struct {
		Record int    `json:"record"`
		Reason string `json:"reason"`
	} `json:"nacked"`
	Error string `json:"error"`
}

func (a answer) nacks() string {
	var s []string
	for _, n := range a.Nacked {
		s = append(s, fmt.Sprintf("%d:%s", n.Record, n.Reason))
	}
	return strings.Join(s, ",")
}

func post(t *testing.T, c *http.Client, url string, body []byte, header map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%d: body %q is not JSON: %v", resp.StatusCode, raw, err)
	}
	a.status, a.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	return a
}

// The answers of netio.http: 200 with every record acked, 422 listing the
// refused ones numbered from 1 (empty lines not numbered), gzip bodies,
// 413 over max_body (nothing taken), 401 without the token, 404 and 405.
func TestHTTPAnswers(t *testing.T) {
	r, src := newHTTPRig(t, map[string]any{"path": "/ingest", "max_body": int64(1024), "max_frame": int64(64), "token": "s3cret"}, stage.Settings{Workers: 1}, nil)
	url := "http://" + src.Addr().String() + "/ingest"
	c := &http.Client{}
	auth := map[string]string{"Authorization": "Bearer s3cret"}

	if a := post(t, c, url, []byte("{\"n\":1}\n{\"n\":2}\n{\"n\":3}"), auth); a.status != 200 || a.Acked != 3 || a.Nacked != nil {
		t.Fatalf("all good: %+v", a)
	}
	body := "{\"n\":4}\r\n\n{\"bad\":5}\n\n" + strings.Repeat("x", 65) + "\n{\"n\":7}\n"
	if a := post(t, c, url, []byte(body), auth); a.status != 422 || a.Acked != 2 || a.nacks() != "2:"+badReason+",3:too large" {
		t.Fatalf("some refused: %+v", a)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("{\"n\":8}\n{\"n\":9}\n"))
	zw.Close()
	if a := post(t, c, url, gz.Bytes(), map[string]string{"Authorization": "Bearer s3cret", "Content-Encoding": "gzip"}); a.status != 200 || a.Acked != 2 {
		t.Fatalf("gzip: %+v", a)
	}
	before := len(r.payloads())
	if a := post(t, c, url, bytes.Repeat([]byte("{\"n\":10}\n"), 200), auth); a.status != 413 || a.Error == "" {
		t.Fatalf("over max_body: %+v", a)
	}
	var bomb bytes.Buffer // small as sent, over max_body decoded
	zw = gzip.NewWriter(&bomb)
	zw.Write(bytes.Repeat([]byte("{\"n\":11}\n"), 1000))
	zw.Close()
	if a := post(t, c, url, bomb.Bytes(), map[string]string{"Authorization": "Bearer s3cret", "Content-Encoding": "gzip"}); a.status != 413 {
		t.Fatalf("gzip over max_body once decoded (%d bytes sent): %+v", bomb.Len(), a)
	}
	if got := len(r.payloads()); got != before {
		t.Fatalf("the sink saw %d records of bodies over max_body", got-before)
	}
	if a := post(t, c, url, []byte("{}\n"), nil); a.status != 401 {
		t.Fatalf("no token: %+v", a)
	}
	if a := post(t, c, url, []byte("{}\n"), map[string]string{"Authorization": "Bearer wrong"}); a.status != 401 {
		t.Fatalf("wrong token: %+v", a)
	}
	if a := post(t, c, "http://"+src.Addr().String()+"/other", []byte("{}\n"), auth); a.status != 404 {
		t.Fatalf("other path: %+v", a)
	}
	get, _ := http.NewRequest(http.MethodGet, url, nil)
	get.Header.Set("Authorization", "Bearer s3cret")
	if resp, err := c.Do(get); err != nil || resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if a := post(t, c, url, []byte("{}\n"), map[string]string{"Authorization": "Bearer s3cret", "Content-Encoding": "br"}); a.status != 415 {
		t.Fatalf("brotli: %+v", a)
	}
	if a := post(t, c, url, []byte("not gzip"), map[string]string{"Authorization": "Bearer s3cret", "Content-Encoding": "gzip"}); a.status != 400 {
		t.Fatalf("bad gzip: %+v", a)
	}
	st := r.in.Stage().Stats().Source
	if st.ProtocolErrors["unauthorized"] != 2 || st.ProtocolErrors["body_too_large"] != 2 || st.ProtocolErrors["bad_request"] != 2 ||
		st.Nacks.Other != 1 || st.Nacks.TooLarge != 1 || st.BytesIn == 0 || st.Connections.Accepted == 0 {
		t.Fatalf("source counters %+v", *st)
	}
}

// Busy is 503 with Retry-After: over max_requests (counted in
// protocol_errors, cause max_requests), and when the next stage's queue
// is full under overflow: reject.
func TestHTTPBusy(t *testing.T) {
	gate := make(chan struct{})
	entered := make(chan struct{}, 16)
	var r *rig
	r, src := newHTTPRig(t, map[string]any{"max_requests": 1}, stage.Settings{Workers: 1, Concurrency: 1, Capacity: 1, Batch: 1, Overflow: port.Reject},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			entered <- struct{}{}
			<-gate
			return r.finish(ctx, b, out)
		})
	r.gate = gate
	url := "http://" + src.Addr().String() + "/"
	c := &http.Client{}
	var wg sync.WaitGroup
	var first answer
	wg.Add(1)
	go func() {
		defer wg.Done()
		first = post(t, c, url, bytes.Repeat([]byte("{\"a\":1}\n"), 10), nil)
	}()
	<-entered // the first request holds the one slot, its first record in the sink
	if a := post(t, c, url, []byte("{}\n"), nil); a.status != 503 || a.retryAfter != "1" {
		t.Fatalf("over max_requests: %+v", a)
	}
	// Counted per request (its records were never read, so nacks.busy,
	// which counts records, cannot count them).
	if n := r.in.Stage().Stats().Source.ProtocolErrors["max_requests"]; n != 1 {
		t.Fatalf("protocol_errors.max_requests %d after a 503 over max_requests, want 1", n)
	}
	// Record 1 is in the sink and record 2 fills the queue, so records
	// 3..10 are refused as they are emitted: wait for those refusals
	// before the sink moves, or later records would find room.
	poll.Until(t, "records 3..10 refused busy", func() bool {
		return r.in.Stage().Stats().Source.Nacks.Busy == 8
	})
	close(gate)
	wg.Wait()
	// Record 1 in the sink, one more queued (capacity 1), the rest
	// refused busy: 503, as any busy record makes it.
	if first.status != 503 || first.retryAfter != "1" || len(first.Nacked) != 8 || first.Acked+len(first.Nacked) != 10 ||
		!strings.HasSuffix(first.nacks(), "10:busy") {
		t.Fatalf("records refused busy: %+v", first)
	}
	poll.Until(t, "the busy nacks counted", func() bool {
		return r.in.Stage().Stats().Source.Nacks.Busy == uint64(len(first.Nacked))
	})
}

// netio.http over mutual TLS: a client with a certificate is answered,
// one without is refused in the handshake and counted.
func TestHTTPMutualTLS(t *testing.T) {
	f := newTLSFiles(t)
	r, src := newHTTPRig(t, map[string]any{"tls": stage.NewConfig(map[string]any{"cert": f.server.CertFile, "key": f.server.KeyFile, "client_ca": f.ca.CertFile})},
		stage.Settings{Workers: 1}, nil)
	url := "https://" + src.Addr().String() + "/"
	with := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.ca.Pool(), Certificates: []tls.Certificate{f.client.TLS}}}}
	defer with.CloseIdleConnections()
	if a := post(t, with, url, []byte("{\"tls\":true}\n"), nil); a.status != 200 || a.Acked != 1 {
		t.Fatalf("with a certificate: %+v", a)
	}
	without := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.ca.Pool()}}}
	defer without.CloseIdleConnections()
	if resp, err := without.Post(url, "application/x-ndjson", strings.NewReader("{}\n")); err == nil {
		resp.Body.Close()
		t.Fatalf("without a certificate: %s", resp.Status)
	}
	poll.Until(t, "the refused handshake counted", func() bool {
		return r.in.Stage().Stats().Source.ProtocolErrors["tls_handshake"] == 1
	})
	if st := r.in.Stage().Stats().Source; st.Connections.Refused != 1 || st.Connections.Accepted != 1 {
		t.Fatalf("source counters %+v", *st)
	}
}

// A request that reaches the handler once Close is under way is answered
// 503, to be sent again: a handler that wrote nothing would have net/http
// answer 200 OK, which reads as every record stored.
func TestHTTPClosedAnswersBusy(t *testing.T) {
	_, src := newHTTPRig(t, nil, stage.Settings{Workers: 1}, nil)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	src.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}\n")))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after Close: %d %q, want 503 with Retry-After", w.Code, w.Body.String())
	}
}

// A client that goes away before its answer does not free its
// max_requests slot while its events are unfinished: they hold views of
// its body, and max_requests bodies at a time is what bounds the
// source's memory (memory_limit counts only the records). Before, the
// slot was freed at once, and bodies piled up behind a slow sink.
func TestHTTPGoneClientKeepsItsSlot(t *testing.T) {
	gate := make(chan struct{})
	var r *rig
	r, src := newHTTPRig(t, map[string]any{"max_requests": 1}, stage.Settings{Workers: 1, Concurrency: 1, Batch: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate
			return r.finish(ctx, b, out)
		})
	r.gate = gate
	url := "http://" + src.Addr().String() + "/"

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("{\"a\":1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	gone := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gone <- err
	}()
	poll.Until(t, "the record in the sink", func() bool { return r.in.Stage().Stats().Out == 1 })
	cancel()
	if err := <-gone; err == nil {
		t.Fatal("the cancelled request was answered")
	}
	// Its event is still in the sink: the slot is still taken. (Were it
	// free, this request's record would wait behind the gate: the
	// timeout makes that a failure, not a hang.)
	if a := post(t, &http.Client{Timeout: wait}, url, []byte("{}\n"), nil); a.status != 503 || !strings.Contains(a.Error, "max_requests") {
		t.Fatalf("while a gone client's record is unfinished: %+v, want 503 over max_requests", a)
	}
	close(gate)
	poll.Until(t, "the slot free once the record is finished", func() bool {
		return post(t, &http.Client{}, url, []byte("{}\n"), nil).status == 200
	})
}

// rawPost sends a request on c, with Connection: close, and returns its
// answer's status.
func rawPost(c net.Conn, body string) (int, error) {
	c.SetDeadline(time.Now().Add(wait))
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// netio.http holds at most max_conns connections at once: clients that
// open connections and sit idle cannot take every file descriptor. The
// ones past it wait, unaccepted, and are served once others close.
func TestHTTPMaxConns(t *testing.T) {
	const maxConns, more = 2, 3
	_, src := newHTTPRig(t, map[string]any{"max_conns": maxConns}, stage.Settings{Workers: 1}, nil)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", src.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var idle []net.Conn
	for range maxConns {
		idle = append(idle, dial())
	}
	poll.Until(t, "max_conns idle connections accepted", func() bool {
		return netio.HTTPConns(src) == maxConns && httpAccepted(src) == maxConns
	})
	type result struct {
		status int
		err    error
	}
	results := make(chan result, more)
	for i := range more {
		c := dial()
		go func() {
			st, err := rawPost(c, fmt.Sprintf("{\"n\":%d}\n", i))
			results <- result{st, err}
		}()
	}
	// While the idle ones are held, the others wait to be accepted,
	// unanswered. (A bound on how long to look, not a timing: with the
	// limit none is answered however long one waits.)
	select {
	case r := <-results:
		t.Fatalf("a client was answered (%d, %v) while max_conns idle connections were held; want it waiting", r.status, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	for _, c := range idle {
		c.Close()
	}
	for range more {
		if r := <-results; r.err != nil || r.status != http.StatusOK {
			t.Fatalf("a client waiting for a connection got %d, %v", r.status, r.err)
		}
	}
}

// httpAccepted is how many connections src has accepted.
func httpAccepted(src *netio.HTTPSource) uint64 {
	var st stats.Stage
	src.Figures(&st)
	return st.Source.Connections.Accepted
}

// A 401, 404 or 405 ends its connection: a client at the wrong door,
// without the token or with the wrong method is not worth a keep-alive
// connection held for it. The token is checked before the method: a
// tokenless GET gets 401, so that a client without the token cannot hold
// a slot of max_conns with a GET every idle period.
func TestHTTPRefusalsClose(t *testing.T) {
	_, src := newHTTPRig(t, map[string]any{"path": "/ingest", "token": "s3cret"}, stage.Settings{Workers: 1}, nil)
	for _, tc := range []struct {
		method, path, auth string
		status             int
	}{
		{http.MethodPost, "/other", "Bearer s3cret", 404},
		{http.MethodPost, "/ingest", "", 401},
		{http.MethodPost, "/ingest", "Bearer wrong", 401},
		{http.MethodGet, "/ingest", "", 401},
		{http.MethodGet, "/ingest", "Bearer s3cret", 405},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+src.Addr().String()+tc.path, strings.NewReader("{}\n"))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !resp.Close {
			t.Fatalf("%s %s with %q: %d, Connection: close %v; want %d and close", tc.method, tc.path, tc.auth, resp.StatusCode, resp.Close, tc.status)
		}
	}
}

// newSlowHTTPRig is newHTTPRig with the body stall timeout set to stall.
func newSlowHTTPRig(t *testing.T, values map[string]any, stall time.Duration) (*rig, *netio.HTTPSource) {
	t.Helper()
	src, err := newSource(netio.HTTPKind, listening(values))
	if err != nil {
		t.Fatal(err)
	}
	netio.SetHTTPStall(src.(*netio.HTTPSource), stall)
	r := startRig(t, src, stage.Settings{Name: "in", Kind: netio.HTTPKind, Workers: 1, Concurrency: 1, Capacity: 64}, stage.Settings{Workers: 1}, nil)
	return r, src.(*netio.HTTPSource)
}

// slowSender sends a request's headers and the first byte of its body,
// and then nothing, once its request holds a slot.
func slowSender(t *testing.T, src *netio.HTTPSource) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", src.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(wait))
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	poll.Until(t, "the slow request reading its body", func() bool { return netio.HTTPReading(src) == 1 })
	return c
}

// A client that sends the start of a body and then stalls is cut off
// (408) once nothing has come for the stall timeout: it does not hold its
// slot of max_requests, locking out everyone else (503), for the whole
// read timeout of five minutes.
func TestHTTPStalledBodyCutOff(t *testing.T) {
	_, src := newSlowHTTPRig(t, map[string]any{"max_requests": 1}, 300*time.Millisecond)
	slow := slowSender(t, src)
	url := "http://" + src.Addr().String() + "/"
	c := &http.Client{}
	var a answer
	poll.Until(t, "an honest client served while a slow one stalls", func() bool {
		a = post(t, c, url, []byte("{\"n\":1}\n"), nil)
		return a.status != http.StatusServiceUnavailable
	})
	if a.status != http.StatusOK {
		t.Fatalf("the honest client: %+v", a)
	}
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("the stalled client got %d (close %v), want 408 and close", resp.StatusCode, resp.Close)
	}
}

// StopInput cuts off a request still reading its body (503, nothing of
// it taken), so that a drain with a slow sender connected finishes
// without waiting for it until its deadline.
func TestHTTPDrainCutsSlowBody(t *testing.T) {
	r, src := newSlowHTTPRig(t, nil, time.Hour)
	slow := slowSender(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r.source.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.source.Drain(ctx); err != nil {
		t.Fatalf("drain with a slow sender connected: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the slow sender got %d, want 503", resp.StatusCode)
	}
	if got := r.payloads(); len(got) != 0 {
		t.Fatalf("records of a cut-off body were taken: %q", got)
	}
	if n := r.in.Stage().Stats().Source.ProtocolErrors["shutting_down"]; n != 1 {
		t.Errorf("protocol_errors.shutting_down %d after a body cut off by the stop, want 1", n)
	}
}

// A request that comes on an open connection once the source is stopping
// is answered 503 with Retry-After before its body is read, and counted
// in protocol_errors, cause shutting_down, per request as a 503 over
// max_requests is (how many records its body held is not known, so
// nacks.busy cannot count it). It was counted nowhere: /stats showed no
// trace of the requests a stop turned away.
func TestHTTPShutdownRefusalCounted(t *testing.T) {
	r, src := newHTTPRig(t, nil, stage.Settings{Workers: 1}, nil)
	c, err := net.Dial("tcp", src.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(wait))
	// The start of a request, on a connection the server has accepted
	// (StopInput closes the listener, which would reset one still in its
	// backlog).
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\n")
	poll.Until(t, "the connection accepted", func() bool {
		return r.in.Stage().Stats().Source.Connections.Accepted == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r.source.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "Content-Length: 3\r\n\r\n{}\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !resp.Close {
		t.Fatalf("a request once stopping got %d (Retry-After %q, close %v), want 503 with Retry-After, closed",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close)
	}
	st := r.in.Stage().Stats().Source
	if n := st.ProtocolErrors["shutting_down"]; n != 1 {
		t.Errorf("protocol_errors.shutting_down %d after a 503 for the stop, want 1", n)
	}
	if st.Nacks != (stats.Nacks{}) {
		t.Errorf("nacks %+v after a request refused unread; want none (its records are not known)", st.Nacks)
	}
	if got := r.payloads(); len(got) != 0 {
		t.Fatalf("records of a request refused for the stop were taken: %q", got)
	}
}

// A token key given but empty (`token: ${INGEST_TOKEN}` with the variable
// unset) is an error at the key, not a source that lets everyone in;
// the key left out is no token.
func TestHTTPEmptyTokenRefused(t *testing.T) {
	for _, tok := range []string{"", "  "} {
		_, err := newSource(netio.HTTPKind, listening(map[string]any{"token": tok}))
		var fe *stage.FieldError
		if !errors.As(err, &fe) || fe.Field != "token" {
			t.Fatalf("token %q: %v", tok, err)
		}
	}
	if _, err := newSource(netio.HTTPKind, listening(nil)); err != nil {
		t.Fatalf("no token: %v", err)
	}

	// Through the loader: the error points at the key.
	yaml := "name: t\nstages:\n  in:\n    kind: netio.http\n    listen: 127.0.0.1:0\n    token: ${INGEST_TOKEN}\n    next: out\n  out:\n    kind: test.sink\n"
	p, err := yamlPipeline(t, yaml)
	if err == nil {
		p.Stop(context.Background())
		t.Fatal("pipeline built with an empty token")
	}
	if !strings.Contains(err.Error(), "p.yaml:6:") || !strings.Contains(err.Error(), "token") {
		t.Fatalf("error not at the key: %v", err)
	}
}

// The token check takes exactly the token (spaces around it aside): not
// a prefix of it, nor a longer text starting with it, nor none.
func TestHTTPTokenCheck(t *testing.T) {
	_, src := newHTTPRig(t, map[string]any{"token": "s3cret"}, stage.Settings{Workers: 1}, nil)
	url := "http://" + src.Addr().String() + "/"
	c := &http.Client{}
	for auth, want := range map[string]int{
		"Bearer s3cret": 200, "Bearer  s3cret ": 200,
		"Bearer s3cre": 401, "Bearer s3cretX": 401, "Bearer ": 401, "s3cret": 401, "Basic s3cret": 401, "": 401,
	} {
		if a := post(t, c, url, []byte("{}\n"), map[string]string{"Authorization": auth}); a.status != want {
			t.Fatalf("Authorization %q: %+v, want %d", auth, a, want)
		}
	}
}

// A client that half-closes its side after its request (nc -N, socat,
// shutdown(SHUT_WR)) still gets the real answer once its records are
// finished, here 422 naming record 2. net/http ends the request's context
// when it reads that EOF, and the handler took it for a client gone away
// and returned without writing: net/http then answered an empty 200. The
// sink holds the records until the server has read the EOF.
func TestHTTPHalfClosedClientGetsTheAnswer(t *testing.T) {
	src, err := newSource(netio.HTTPKind, listening(nil))
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	netio.SetWaiting(src.(*netio.HTTPSource), func(req *http.Request) {
		go func() {
			<-req.Context().Done() // the client's EOF, read by net/http
			open()
		}()
	})
	var r *rig
	r = startRig(t, src, stage.Settings{Name: "in", Kind: netio.HTTPKind, Workers: 1, Concurrency: 1, Capacity: 64},
		stage.Settings{Workers: 1, Concurrency: 1, Batch: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate
			return r.finish(ctx, b, out)
		})
	t.Cleanup(open) // before the rig's stop, should the test fail early
	c, err := net.Dial("tcp", src.(*netio.HTTPSource).Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := "{\"ok\":1}\n{\"bad\":2}\n"
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a answer
	_ = json.Unmarshal(raw, &a)
	if resp.StatusCode != http.StatusUnprocessableEntity || a.Acked != 1 || a.nacks() != "2:"+badReason {
		t.Fatalf("got %d %q; want 422 with record 1 acked and record 2 refused %q", resp.StatusCode, raw, badReason)
	}
}

// source.bytes_in counts the body bytes read from the connection, in every
// outcome: a gzip body as sent, not as decoded; a body cut short as far
// as it came, not what its Content-Length claimed; a body found over
// max_body as it was read (one byte past the limit), not nothing.
func TestHTTPBytesInCountsWhatWasRead(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("{\"a\":1}\n"), 100))
	zw.Close()
	for _, tc := range []struct {
		name   string
		send   func(t *testing.T, addr string) int // the status
		status int
		want   uint64
	}{
		{"gzip", func(t *testing.T, addr string) int {
			return post(t, &http.Client{}, "http://"+addr+"/", gz.Bytes(), map[string]string{"Content-Encoding": "gzip"}).status
		}, 200, uint64(gz.Len())},
		{"gzip chunked", func(t *testing.T, addr string) int {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", io.MultiReader(bytes.NewReader(gz.Bytes())))
			req.Header.Set("Content-Encoding", "gzip")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}, 200, uint64(gz.Len())},
		{"cut short", func(t *testing.T, addr string) int {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\":1}\n{\"")
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(wait))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}, 400, 10},
		{"chunked over max_body", func(t *testing.T, addr string) int {
			// A reader of unknown length: the client sends it chunked.
			body := io.MultiReader(strings.NewReader(strings.Repeat("{\"a\":1}\n", 250)))
			resp, err := http.Post("http://"+addr+"/", "application/x-ndjson", body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}, 413, 1025},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, src := newHTTPRig(t, map[string]any{"max_body": int64(1024)}, stage.Settings{Workers: 1}, nil)
			if got := tc.send(t, src.Addr().String()); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if got := r.in.Stage().Stats().Source.BytesIn; got != tc.want {
				t.Errorf("bytes_in %d, want %d", got, tc.want)
			}
		})
	}
}

// The Authorization scheme is matched without regard to case (RFC 7235
// section 2.1): "bearer" and "BEARER" pass with the token, and the token
// itself is still compared exactly.
func TestHTTPBearerSchemeAnyCase(t *testing.T) {
	_, src := newHTTPRig(t, map[string]any{"token": "s3cret"}, stage.Settings{Workers: 1}, nil)
	url := "http://" + src.Addr().String() + "/"
	c := &http.Client{}
	for auth, want := range map[string]int{
		"Bearer s3cret": 200,
		"bearer s3cret": 200,
		"BEARER s3cret": 200,
		"bearer S3CRET": 401,
		"Basic s3cret":  401,
		"Bearers3cret":  401,
	} {
		if a := post(t, c, url, []byte("{}\n"), map[string]string{"Authorization": auth}); a.status != want {
			t.Errorf("Authorization: %s: %d, want %d", auth, a.status, want)
		}
	}
}
