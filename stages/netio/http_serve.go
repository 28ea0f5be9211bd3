package netio

// This file holds how netio.http serves a request: it checks it, makes an
// event of each record of its body, and answers once every one is
// finished.

import (
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stagedserver/seda/stage"
	"go.uber.org/zap"
)

// httpReply is the JSON body of every answer.
type httpReply struct {
	Acked  int         `json:"acked"`
	Nacked []httpNack  `json:"nacked,omitempty"`
	Error  string      `json:"error,omitempty"`
	status int         // not sent
	header http.Header // not sent
}

type httpNack struct {
	Record int    `json:"record"`
	Reason string `json:"reason"`
}

// reply writes rp and flushes it to the connection, with its length, so
// the answer is whole on the wire by the time the handler returns. Close
// waits for the handlers and then cuts every connection: an answer still
// in net/http's buffer then (it writes it out after the handler returns)
// would be lost, and the client would see EOF.
func (s *HTTPSource) reply(w http.ResponseWriter, rp httpReply) {
	body, _ := json.Marshal(rp) // plain fields: it cannot fail
	body = append(body, '\n')
	for k, v := range rp.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rp.status)
	w.Write(body)
	http.NewResponseController(w).Flush()
}

func (s *HTTPSource) fail(w http.ResponseWriter, status int, msg string) {
	s.reply(w, httpReply{status: status, Error: msg})
}

// busy answers 503 with Retry-After: the client is to send the request
// again later.
func (s *HTTPSource) busy(w http.ResponseWriter, msg string) {
	s.reply(w, httpReply{status: http.StatusServiceUnavailable, Error: msg, header: http.Header{"Retry-After": {retryAfter}}})
}

// shuttingDown answers 503 with Retry-After, closing the connection, a
// request refused because the source is stopping before its records were
// taken, and counts it in protocol_errors (cause shutting_down, see
// causeShuttingDown). It logs nothing: a stop refusing requests is
// expected, and a line would take the second of the protocol errors' log.
func (s *HTTPSource) shuttingDown(w http.ResponseWriter, msg string) {
	s.cnt.protocolError(causeShuttingDown)
	w.Header().Set("Connection", "close")
	s.busy(w, msg)
}

// ServeHTTP takes one request: checks it, reads its body, makes an event
// of each record, and answers once every one is finished.
func (s *HTTPSource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		// Close is under way: a handler that wrote nothing would have
		// net/http answer 200 OK, which reads as every record stored.
		s.mu.Unlock()
		s.shuttingDown(w, "shut down")
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	switch {
	case r.URL.Path != s.opts.Path:
		// A client that knocks at the wrong door (or, for 401, without
		// the key, or for 405, with the wrong method) is not worth a
		// keep-alive connection held for it.
		w.Header().Set("Connection", "close")
		s.fail(w, http.StatusNotFound, fmt.Sprintf("no such path: POST NDJSON records to %s", s.opts.Path))
		return
	case s.opts.Token != "" && !s.authorized(r):
		// Checked before the method: a tokenless client must not learn
		// more, nor keep its connection, by sending a GET.
		s.protocolError(r, causeUnauthorized, errors.New("no or a wrong bearer token"))
		w.Header().Set("WWW-Authenticate", `Bearer realm="seda"`)
		w.Header().Set("Connection", "close")
		s.fail(w, http.StatusUnauthorized, "send Authorization: Bearer TOKEN")
		return
	case r.Method != http.MethodPost:
		// Closed as a 401 or 404 is: a client that GETs every idle
		// period would otherwise hold a slot of max_conns for ever.
		w.Header().Set("Allow", http.MethodPost)
		w.Header().Set("Connection", "close")
		s.fail(w, http.StatusMethodNotAllowed, "POST NDJSON records, one per line")
		return
	case s.stopping.Load():
		s.shuttingDown(w, "shutting down")
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.protocolError(r, causeMaxRequests, fmt.Errorf("%d requests are being handled", s.opts.MaxRequests))
		s.busy(w, fmt.Sprintf("busy: %d requests are being handled (max_requests)", s.opts.MaxRequests))
		return
	}
	if r.ContentLength > int64(s.opts.MaxBody) {
		s.protocolError(r, causeBodyTooLarge, fmt.Errorf("Content-Length %d", r.ContentLength))
		w.Header().Set("Connection", "close")
		s.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is over max_body of %d", r.ContentLength, s.opts.MaxBody))
		return
	}
	br := s.startBody(w, r)
	if br == nil {
		s.shuttingDown(w, "shutting down")
		return
	}
	// The body counts against the memory limit while it is read, and is
	// let go before the door is asked for its records (which are then
	// charged as events): a door does not count a read's own records,
	// and a body larger than the limit could never be admitted if it did.
	hold := &bodyHold{to: s.hold}
	defer hold.letGo() // a panic in readBody, which net/http recovers, must not keep it
	body, err := readBody(br, r.Header.Get("Content-Encoding"), s.opts.MaxBody, hold)
	hold.letGo()
	s.endBody(br)
	// What was read from the connection, whatever became of it: neither
	// what Content-Length claims (a body that stalls or is cut short
	// sends less) nor what gzip decoded it to.
	s.cnt.bytesIn.Add(uint64(br.read))
	switch {
	case err != nil && br.stopped.Load():
		// StopInput cut it off: nothing of it is taken, and the client
		// sends it again (to this server once it is back, or another).
		s.shuttingDown(w, "shutting down")
		return
	case err != nil && br.stalled:
		s.protocolError(r, causeBadRequest, fmt.Errorf("body stalled: nothing for %s", s.stall))
		w.Header().Set("Connection", "close")
		s.fail(w, http.StatusRequestTimeout, fmt.Sprintf("the body stalled: nothing of it came for %s", s.stall))
		return
	case errors.Is(err, errBodyTooLarge):
		s.protocolError(r, causeBodyTooLarge, err)
		w.Header().Set("Connection", "close")
		s.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over max_body of %d bytes", s.opts.MaxBody))
		return
	case errors.Is(err, errEncoding):
		s.protocolError(r, causeBadRequest, err)
		s.fail(w, http.StatusUnsupportedMediaType, err.Error())
		return
	case err != nil:
		s.protocolError(r, causeBadRequest, err)
		s.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.bodyRead != nil {
		s.bodyRead(r)
	}
	s.serveRecords(w, r, body)
}

// serveRecords makes an event of each record of body, hands them on,
// waits for every one to finish and answers: 200 when all were acked, 503
// when any was refused busy (the client sends the body again; what was
// acked is stored twice unless the sink ignores duplicates), else 422
// listing the refused ones.
func (s *HTTPSource) serveRecords(w http.ResponseWriter, r *http.Request, body []byte) {
	arrived := time.Now()
	events := 0
	for _, tooLarge := range records(body, s.opts.MaxFrame) {
		if !tooLarge {
			events++
		}
	}
	// The door: admission control, and the pipeline's memory limit (past
	// it, refused, or under its overflow block waited for).
	if events > 0 && !s.rt.AdmitAll(arrived, events) {
		s.cnt.nackClassN(stage.ClassBusy, uint64(events))
		s.busy(w, "busy: the pipeline admits fewer records now (admission control or memory_limit)")
		return
	}
	req := &httpRequest{s: s, left: events, done: make(chan struct{})}
	if events == 0 {
		close(req.done)
	}
	origin := stage.Origin{To: req, Key: s.nextReq.Add(1)}
	s.mu.Lock()
	if s.stopped {
		// StopInput came after the body was read: none of its records
		// is taken. They are known here, so they are counted as the
		// admission refusal's are, in nacks.busy.
		s.mu.Unlock()
		s.cnt.nackClassN(stage.ClassBusy, uint64(events))
		s.busy(w, "shutting down")
		return
	}
	s.emitting.Add(1)
	s.mu.Unlock()
	em := s.rt.NewEmitter()
	n := 0
	for line, tooLarge := range records(body, s.opts.MaxFrame) {
		n++
		if tooLarge {
			req.refused(n, "too large", stage.ClassTooLarge)
			s.cnt.nackClass(stage.ClassTooLarge)
			continue
		}
		_ = em.Emit(s.ctx, s.rt.NewEventAt(line, uint64(n), origin, arrived)) // a refusal finishes it: Complete
	}
	em.Flush(s.ctx)
	s.emitting.Done()

	if s.waiting != nil {
		s.waiting(r)
	}
	// The request's context is not waited on: it ends when net/http reads
	// EOF from the client, which a client that half-closes after its
	// request (nc -N, socat, shutdown(SHUT_WR)) sends, and it still reads
	// the answer. A handler that returned then without writing had
	// net/http answer an empty 200, whatever became of the records. The
	// request keeps its slot until its events finish (they hold views of
	// its body, and max_requests bodies at a time is what bounds the
	// source's memory), and then answers: to a client really gone the
	// write fails, harmlessly.
	select {
	case <-req.done:
	case <-s.ctx.Done():
		// A forced stop: the records not finished yet are given up,
		// and the client is told to send them again. Most will never
		// be finished (the stop left them queued), so no Complete
		// would count them: they are counted here, busy, and a
		// Complete that still comes for one counts nothing.
		s.cnt.nackClassN(stage.ClassBusy, uint64(req.abandon()))
		s.busy(w, "shut down before the records were finished")
		return
	}
	slices.SortFunc(req.nacks, func(a, b httpNack) int { return cmp.Compare(a.Record, b.Record) })
	rp := httpReply{status: http.StatusOK, Acked: n - len(req.nacks), Nacked: req.nacks}
	switch {
	case req.busy:
		rp.status = http.StatusServiceUnavailable
		rp.header = http.Header{"Retry-After": {retryAfter}}
	case len(rp.Nacked) > 0:
		rp.status = http.StatusUnprocessableEntity
	}
	s.reply(w, rp)
}

// authorized reports whether r carries the token. It compares SHA-256
// digests in constant time, as the admin endpoint does: comparing the
// texts themselves returns early when their lengths differ, which tells
// a client probing with tokens of every length how long the token is.
// The scheme's case does not matter (RFC 7235 section 2.1): "bearer TOKEN"
// is as good as "Bearer TOKEN".
func (s *HTTPSource) authorized(r *http.Request) bool {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	ok := strings.EqualFold(scheme, "Bearer")
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return ok && subtle.ConstantTimeCompare(got[:], s.tokenSum[:]) == 1
}

// protocolError counts a refused request and logs it at warn, with the
// client's address and the cause, at most once a second.
func (s *HTTPSource) protocolError(r *http.Request, cause string, err error) {
	n := s.cnt.protocolError(cause)
	if s.protoLog.allow() {
		s.log.Warn("request refused", zap.String("remote", r.RemoteAddr), zap.String("cause", cause),
			zap.Error(err), zap.Uint64("protocol_errors", n))
	}
}

// httpRequest is the Completer of one request's events: it keeps the
// refused records' numbers and reasons (an acked record costs nothing)
// and signals when the last one is finished.
type httpRequest struct {
	s         *HTTPSource
	mu        sync.Mutex
	nacks     []httpNack        // in the order refused
	reasons   map[string]string // the reasons given, each kept once
	busy      bool              // some record was refused busy
	abandoned bool              // answered 503 by a forced stop (abandon)
	left      int
	done      chan struct{}
}

func (q *httpRequest) Complete(ev *stage.Event, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil && !q.abandoned {
		q.s.cnt.nack(err)
		q.refusedLocked(int(ev.Seq), wireReason(err), stage.ErrorClass(err))
	}
	if q.left--; q.left == 0 {
		close(q.done)
	}
}

// abandon gives up the records of the request not finished yet, as a
// forced stop answers it 503, and returns how many they are: the caller
// counts them busy, so a Complete that comes for one later counts nothing.
func (q *httpRequest) abandon() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.abandoned = true
	return q.left
}

// maxReasons is how many distinct reasons a request keeps one copy of;
// past it a record refused for a reason not kept is given its error
// class's name instead.
const maxReasons = 64

// refused notes that record rec (numbered from 1) was refused for why, an
// error of class (stage.ErrorClass). A body whose records are refused
// alike holds one copy of the reason. Past maxReasons distinct reasons, a
// new one is given as its class's name (`invalid`), as netio.tcp does
// past its bound: a body of a million records each refused for a reason
// of its own (an offset in the text) would otherwise hold a string per
// record, some 220 bytes each. The reasons kept are still looked up, so a
// record refused for one of them shares its copy.
func (q *httpRequest) refused(rec int, why, class string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.refusedLocked(rec, why, class)
}

// refusedLocked is refused, called with q.mu held.
func (q *httpRequest) refusedLocked(rec int, why, class string) {
	if kept, ok := q.reasons[why]; ok {
		why = kept
	} else if len(q.reasons) < maxReasons {
		if q.reasons == nil {
			q.reasons = map[string]string{}
		}
		q.reasons[why] = why
	} else {
		why = class
	}
	q.nacks = append(q.nacks, httpNack{Record: rec, Reason: why})
	q.busy = q.busy || class == stage.ClassBusy
}
