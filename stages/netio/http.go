package netio

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// HTTPKind is the kind name netio.http sources are registered under.
const HTTPKind = "netio.http"

// Defaults of netio.http's fields.
const (
	DefaultHTTPPath        = "/"
	DefaultMaxBody         = 10 << 20
	DefaultMaxRequests     = 32
	DefaultHTTPIdleTimeout = 2 * time.Minute
	maxMaxBody             = 1 << 30
	retryAfter             = "1" // seconds, in a 503's Retry-After
	httpReadTimeout        = 5 * time.Minute
)

// Causes of HTTP protocol errors (SourceStats.ProtocolErrors).
const causeBodyTooLarge = "body_too_large"

// httpOptions are netio.http's configuration, read once from its
// stage.Config (bound to HTTPFields).
type httpOptions struct {
	Listen      string
	Path        string // the path records are POSTed to
	MaxBody     int    // largest body, as sent and decoded; a larger one gets 413
	MaxFrame    int    // largest record (line); a larger one is refused as too large
	MaxRequests int    // requests handled at once; one more gets 503 with Retry-After
	// Token, when set, must come with every request as
	// `Authorization: Bearer TOKEN`; a request without it gets 401.
	Token       string
	IdleTimeout time.Duration // close a keep-alive connection idle this long
	TLS         *tlsOptions   // nil: plain HTTP
	// Admission, when positive, puts the source under admission control
	// with this p99 target from read to finish (as netio.tcp's): a
	// request whose records the controller does not all admit gets 503.
	Admission time.Duration
}

// HTTPFields is the configuration spec of netio.http.
func HTTPFields() []stage.Field {
	return []stage.Field{
		{Name: "listen", Type: stage.String, Required: true, Doc: "host:port to serve HTTP on (127.0.0.1:8080; :0 picks a port)"},
		{Name: "path", Type: stage.String, Default: DefaultHTTPPath, Doc: "the path clients POST their records to; other paths get 404"},
		{Name: "max_body", Type: stage.Size, Default: int64(DefaultMaxBody), Range: stage.Between(1, maxMaxBody),
			Doc: "largest request body, as sent and once decoded (gzip); a larger one gets 413 and none of its records is taken"},
		{Name: "max_frame", Type: stage.Size, Default: int64(DefaultMaxFrame), Range: stage.Between(1, maxMaxFrame),
			Doc: "largest record (line of the body); a larger one is refused as too large (422)"},
		{Name: "max_requests", Type: stage.Int, Default: DefaultMaxRequests, Range: stage.Between(1, 1<<16),
			Doc: "requests handled at once (each holds its body in memory); one more gets 503 with Retry-After"},
		{Name: "token", Type: stage.String, Secret: true,
			Doc: "when set, every request must send `Authorization: Bearer TOKEN`; one without it gets 401"},
		{Name: "idle_timeout", Type: stage.Duration, Default: DefaultHTTPIdleTimeout, Range: stage.AtLeast(int64(time.Millisecond)),
			Doc: "close a keep-alive connection idle this long"},
		tlsField(),
		{Name: "admission", Type: stage.Object,
			Doc:    "admission control, as netio.tcp's: a request whose records are not all admitted gets 503 with Retry-After (unset: off)",
			Fields: []stage.Field{admissionTarget()}},
	}
}

// NewHTTPSource is netio.http's constructor: it reads cfg, bound to
// HTTPFields, and returns an *HTTPSource that listens once started.
func NewHTTPSource(cfg stage.Config, env stage.Env) (stage.Source, error) {
	o := httpOptions{
		Listen:      cfg.String("listen"),
		Path:        cfg.String("path"),
		MaxBody:     int(cfg.Size("max_body")),
		MaxFrame:    int(cfg.Size("max_frame")),
		MaxRequests: cfg.Int("max_requests"),
		Token:       cfg.String("token"),
		IdleTimeout: cfg.Duration("idle_timeout"),
		TLS:         tlsFromConfig(cfg),
		Admission:   cfg.Object("admission").Duration("target"),
	}
	if !strings.HasPrefix(o.Path, "/") {
		return nil, &stage.FieldError{Field: "path", Err: fmt.Errorf("%q: want an absolute path, starting with /", o.Path)}
	}
	if cfg.Has("admission") && !cfg.Object("admission").Has("target") {
		return nil, &stage.FieldError{Field: "admission", Err: errors.New("admission control needs a target: the p99 latency from read to finish to keep under, e.g. {target: 250ms}")}
	}
	if o.TLS != nil {
		if err := o.TLS.check(); err != nil {
			return nil, err
		}
	}
	return &HTTPSource{opts: o, slots: make(chan struct{}, o.MaxRequests)}, nil
}

// HTTPSource is a netio.http source: clients POST NDJSON bodies (one
// record per line) to its path and get an answer once every record of the
// body is finished. See the package documentation for the statuses.
type HTTPSource struct {
	opts httpOptions

	// Set by Start.
	rt     stage.SourceRuntime
	name   string
	log    *zap.Logger
	ln     net.Listener
	srv    *http.Server
	certs  *certStore
	tlsCfg *tls.Config
	ctx    context.Context // ends at Close: unblocks emits and waiting handlers
	cancel context.CancelFunc
	served chan struct{} // closed when Serve has returned

	mu                       sync.Mutex
	started, stopped, closed bool
	handlers                 sync.WaitGroup // requests being served
	emitting                 sync.WaitGroup // handlers making and handing on events

	slots    chan struct{} // max_requests
	stopping atomic.Bool
	nextReq  atomic.Uint64
	cnt      counters
	protoLog logLimit
}

var _ source = (*HTTPSource)(nil)

// Addr returns the address the source listens on, or nil before Start.
func (s *HTTPSource) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Start binds the listener and serves.
func (s *HTTPSource) Start(ctx context.Context, rt stage.SourceRuntime) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("netio.http: started twice")
	}
	s.rt, s.name = rt, rt.Name()
	s.log = rt.Logger().With(zap.String("stage", s.name))
	if s.opts.TLS != nil {
		certs, err := newCertStore(*s.opts.TLS, s.log)
		if err != nil {
			return fmt.Errorf("netio.http: %w", err)
		}
		s.certs, s.tlsCfg = certs, certs.serverConfig("http/1.1")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("netio.http: listen on %q: %w", s.opts.Listen, err)
	}
	if s.opts.Admission > 0 {
		rt.StartAdmission(s.opts.Admission)
	}
	s.started = true
	s.ln = ln
	if s.certs != nil {
		s.certs.start()
		ln = &tlsListener{Listener: ln, s: s}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       httpReadTimeout, // a body sent ever so slowly does not hold a request slot for good
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ConnState:         s.connState,
		ErrorLog:          zap.NewStdLog(s.log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
	}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		s.srv.Serve(ln)
	}()
	s.log.Info("listening", zap.Stringer("addr", s.ln.Addr()), zap.String("transport", "http"), zap.String("path", s.opts.Path),
		zap.Bool("tls", s.certs != nil), zap.Bool("mutual_tls", s.opts.TLS != nil && s.opts.TLS.ClientCA != ""),
		zap.Bool("token", s.opts.Token != ""))
	return nil
}

// connState counts connections: a plain one when it is accepted, a TLS
// one once its handshake succeeded (tlsConn.Read).
func (s *HTTPSource) connState(c net.Conn, st http.ConnState) {
	tc, isTLS := c.(*tlsConn)
	switch st {
	case http.StateNew:
		if !isTLS {
			s.cnt.accepted.Add(1)
		}
	case http.StateClosed, http.StateHijacked:
		if !isTLS || tc.served.Load() {
			s.cnt.closed.Add(1)
		}
	}
}

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

func (s *HTTPSource) reply(w http.ResponseWriter, rp httpReply) {
	for k, v := range rp.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rp.status)
	json.NewEncoder(w).Encode(rp)
}

func (s *HTTPSource) fail(w http.ResponseWriter, status int, msg string) {
	s.reply(w, httpReply{status: status, Error: msg})
}

// busy answers 503 with Retry-After: the client is to send the request
// again later.
func (s *HTTPSource) busy(w http.ResponseWriter, msg string) {
	s.reply(w, httpReply{status: http.StatusServiceUnavailable, Error: msg, header: http.Header{"Retry-After": {retryAfter}}})
}

// ServeHTTP takes one request: checks it, reads its body, makes an event
// of each record, and answers once every one is finished.
func (s *HTTPSource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	switch {
	case r.URL.Path != s.opts.Path:
		s.fail(w, http.StatusNotFound, fmt.Sprintf("no such path: POST NDJSON records to %s", s.opts.Path))
		return
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		s.fail(w, http.StatusMethodNotAllowed, "POST NDJSON records, one per line")
		return
	case s.opts.Token != "" && !s.authorized(r):
		s.protocolError(r, causeUnauthorized, errors.New("no or a wrong bearer token"))
		w.Header().Set("WWW-Authenticate", `Bearer realm="seda"`)
		s.fail(w, http.StatusUnauthorized, "send Authorization: Bearer TOKEN")
		return
	case s.stopping.Load():
		w.Header().Set("Connection", "close")
		s.busy(w, "shutting down")
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.busy(w, fmt.Sprintf("busy: %d requests are being handled (max_requests)", s.opts.MaxRequests))
		return
	}
	if r.ContentLength > int64(s.opts.MaxBody) {
		s.protocolError(r, causeBodyTooLarge, fmt.Errorf("Content-Length %d", r.ContentLength))
		w.Header().Set("Connection", "close")
		s.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is over max_body of %d", r.ContentLength, s.opts.MaxBody))
		return
	}
	body, err := readBody(r.Body, r.Header.Get("Content-Encoding"), s.opts.MaxBody)
	if n := r.ContentLength; n > 0 {
		s.cnt.bytesIn.Add(uint64(min(n, int64(s.opts.MaxBody)+1)))
	} else {
		s.cnt.bytesIn.Add(uint64(len(body)))
	}
	switch {
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
	recs := splitRecords(body, s.opts.MaxFrame, nil)
	s.serveRecords(w, r, recs)
}

// serveRecords makes an event of each record, hands them on, waits for
// every one to finish and answers: 200 when all were acked, 503 when any
// was refused busy (the client sends the body again; what was acked is
// stored twice unless the sink ignores duplicates), else 422 listing the
// refused ones.
func (s *HTTPSource) serveRecords(w http.ResponseWriter, r *http.Request, recs []httpRec) {
	arrived := time.Now()
	events := 0
	for _, rc := range recs {
		if !rc.tooLarge {
			events++
		}
	}
	// The door: admission control, and the pipeline's memory limit (past
	// it, refused, or under its overflow block waited for).
	if events > 0 {
		if admit := s.rt.Admit(arrived, events); admit < events {
			s.cnt.nackClassN(stage.ClassBusy, uint64(events))
			s.busy(w, "busy: the pipeline admits fewer records now (admission control or memory_limit)")
			return
		}
	}
	req := &httpRequest{s: s, results: make([]string, len(recs)), left: events, done: make(chan struct{})}
	if events == 0 {
		close(req.done)
	}
	origin := stage.Origin{To: req, Key: s.nextReq.Add(1)}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		s.busy(w, "shutting down")
		return
	}
	s.emitting.Add(1)
	s.mu.Unlock()
	em := s.rt.NewEmitter()
	for i, rc := range recs {
		if rc.tooLarge {
			req.results[i] = "too large"
			s.cnt.nackClass(stage.ClassTooLarge)
			continue
		}
		_ = em.Emit(s.ctx, s.rt.NewEventAt(rc.line, uint64(i+1), origin, arrived)) // a refusal finishes it: Complete
	}
	em.Flush(s.ctx)
	s.emitting.Done()

	select {
	case <-req.done:
	case <-r.Context().Done():
		return // the client went away; the events finish without it
	case <-s.ctx.Done():
		s.busy(w, "shut down before the records were finished")
		return
	}
	rp := httpReply{status: http.StatusOK}
	busy := false
	for i, res := range req.results {
		if res == "" {
			rp.Acked++
			continue
		}
		rp.Nacked = append(rp.Nacked, httpNack{Record: i + 1, Reason: res})
		busy = busy || req.busy[i]
	}
	switch {
	case busy:
		rp.status = http.StatusServiceUnavailable
		rp.header = http.Header{"Retry-After": {retryAfter}}
	case len(rp.Nacked) > 0:
		rp.status = http.StatusUnprocessableEntity
	}
	s.reply(w, rp)
}

// authorized reports whether r carries the token, compared in constant
// time.
func (s *HTTPSource) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.opts.Token)) == 1
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

// httpRequest is the Completer of one request's events: it keeps each
// record's outcome and signals when the last one is finished.
type httpRequest struct {
	s       *HTTPSource
	mu      sync.Mutex
	results []string // by record - 1: "" acked, else the nack reason
	busy    map[int]bool
	left    int
	done    chan struct{}
}

func (q *httpRequest) Complete(ev *stage.Event, err error) {
	if err != nil {
		q.s.cnt.nack(err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := int(ev.Seq) - 1; err != nil && i >= 0 && i < len(q.results) {
		q.results[i] = reason(err)
		if errors.Is(err, stage.ErrBusy) {
			if q.busy == nil {
				q.busy = map[int]bool{}
			}
			q.busy[i] = true
		}
	}
	if q.left--; q.left == 0 {
		close(q.done)
	}
}

// StopInput stops taking requests: the listener closes, keep-alive ends,
// and a request that still comes on an open connection gets 503. It
// returns once every request taken has handed its records on.
func (s *HTTPSource) StopInput(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.stopping.Store(true)
	s.srv.SetKeepAlivesEnabled(false)
	s.ln.Close()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.emitting.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stage %q: stop input: %w", s.name, ctx.Err())
	}
}

// Drain waits until every request taken has been answered, the
// connections are closed and every record is finished (a client that went
// away before its answer leaves its records to finish without it).
func (s *HTTPSource) Drain(ctx context.Context) error {
	if err := s.StopInput(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	// Shutdown's error from closing the listener again is no news:
	// StopInput closed it.
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("stage %q: drain: %w", s.name, err)
	}
	// A client that went away before its answer left events in flight.
	return s.rt.WaitFinished(ctx) // the error names the stage
}

// Close closes the listener and every connection, ends the requests
// waiting for their records (503), and returns once every goroutine of
// the source has returned.
func (s *HTTPSource) Close() error {
	s.mu.Lock()
	if !s.started || s.closed {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.closed, s.stopped = true, true
	s.stopping.Store(true)
	s.mu.Unlock()
	s.cancel()
	s.srv.Close() // closes the listener and every connection
	<-s.served
	s.handlers.Wait()
	if s.certs != nil {
		s.certs.close()
	}
	return nil
}

// Figures puts the source's counters into its /stats entry.
func (s *HTTPSource) Figures(st *stats.Stage) {
	ss := s.cnt.snapshot()
	st.Source = &ss
}

// tlsListener hands http.Server connections whose TLS handshake runs on
// their first read, in the server's goroutine for the connection, so that
// a failed handshake is counted (refused, protocol error tls_handshake)
// and logged here rather than lost in the server's error log.
type tlsListener struct {
	net.Listener
	s *HTTPSource
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.s.tlsCfg), s: l.s}, nil
}

// tlsConn is a server TLS connection that shakes hands on its first read.
type tlsConn struct {
	*tls.Conn
	s      *HTTPSource
	once   sync.Once
	err    error
	served atomic.Bool
}

func (c *tlsConn) Read(p []byte) (int, error) {
	c.once.Do(c.handshake)
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}

func (c *tlsConn) handshake() {
	ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
	defer cancel()
	if c.err = c.HandshakeContext(ctx); c.err == nil {
		c.served.Store(true)
		c.s.cnt.accepted.Add(1)
		return
	}
	s := c.s
	s.cnt.refused.Add(1)
	n := s.cnt.protocolError(causeTLSHandshake)
	if s.protoLog.allow() {
		s.log.Warn("TLS handshake failed; closing the connection", zap.String("remote", c.RemoteAddr().String()),
			zap.String("cause", causeTLSHandshake), zap.Error(c.err), zap.Uint64("protocol_errors", n))
	}
}
