package netio

// This file holds the netio.http source: its spec, its constructor and
// its life (Start, StopInput, Drain, Close).

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/netutil"

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
	// httpStallTimeout bounds the wait for a request's headers, and for
	// each next piece of its body: a client that stops sending in the
	// middle of a body is cut off then, rather than holding its slot of
	// max_requests until httpReadTimeout.
	httpStallTimeout = 10 * time.Second
	// closeAnswerWait bounds how long Close waits for the requests it
	// ends to write their 503 before it closes every connection.
	closeAnswerWait = time.Second
)

// Causes of HTTP protocol errors (stats.Source.ProtocolErrors).
const (
	causeBodyTooLarge = "body_too_large"
	// causeMaxRequests is a request answered 503 because max_requests
	// were being served. It is counted per request, not in nacks.busy,
	// which counts records: its body was never read, so how many records
	// it held is not known.
	causeMaxRequests = "max_requests"
	// causeShuttingDown is a request answered 503 because the source was
	// stopping before its body was read (or while it was, cut off). It
	// is no fault of the client, which sends the body again, but it is
	// counted as a request over max_requests is, and for the same reason:
	// per request, since how many records the body held is not known, so
	// nacks.busy, which counts records, cannot hold it.
	causeShuttingDown = "shutting_down"
)

// httpOptions are netio.http's configuration, read once from its
// stage.Config (bound to HTTPFields).
type httpOptions struct {
	Listen      string
	Path        string // the path records are POSTed to
	MaxBody     int    // largest body, as sent and decoded; a larger one gets 413
	MaxFrame    int    // largest record (line); a larger one is refused as too large
	MaxRequests int    // requests handled at once; one more gets 503 with Retry-After
	MaxConns    int    // connections at once; more wait to be accepted
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
		{Name: "max_conns", Type: stage.Int, Default: DefaultMaxConns, Range: stage.AtLeast(1),
			Doc: "connections at once, as netio.tcp's; at it, a new connection waits to be accepted (in the kernel's backlog) until one closes"},
		{Name: "token", Type: stage.String, Secret: true,
			Doc: "when set, every request must send `Authorization: Bearer TOKEN`; one without it gets 401. Set but empty (an unset ${VAR}) is an error"},
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
		MaxConns:    cfg.Int("max_conns"),
		Token:       cfg.String("token"),
		IdleTimeout: cfg.Duration("idle_timeout"),
		TLS:         tlsFromConfig(cfg),
		Admission:   cfg.Object("admission").Duration("target"),
	}
	if !strings.HasPrefix(o.Path, "/") {
		return nil, &stage.FieldError{Field: "path", Err: fmt.Errorf("%q: want an absolute path, starting with /", o.Path)}
	}
	if cfg.Has("token") && strings.TrimSpace(o.Token) == "" {
		// Most likely `token: ${INGEST_TOKEN}` with the variable unset:
		// taken as no token, it would let everyone in without a word.
		return nil, &stage.FieldError{Field: "token", Err: errors.New("empty: give the token, or leave the key out to take requests without one (is its environment variable unset?)")}
	}
	if cfg.Has("admission") && !cfg.Object("admission").Has("target") {
		return nil, &stage.FieldError{Field: "admission", Err: errors.New("admission control needs a target: the p99 latency from read to finish to keep under, e.g. {target: 250ms}")}
	}
	if o.TLS != nil {
		if err := o.TLS.check(); err != nil {
			return nil, err
		}
	}
	return &HTTPSource{opts: o, tokenSum: sha256.Sum256([]byte(o.Token)), slots: make(chan struct{}, o.MaxRequests), stall: httpStallTimeout}, nil
}

// HTTPSource is a netio.http source: clients POST NDJSON bodies (one
// record per line) to its path and get an answer once every record of the
// body is finished. See the package documentation for the statuses.
type HTTPSource struct {
	opts     httpOptions
	tokenSum [sha256.Size]byte // of opts.Token, which authorized compares with

	// Set by Start.
	rt     stage.SourceRuntime
	hold   readingHolder // rt's count of bodies being read (bodyHold)
	name   string
	log    *zap.Logger
	ln     net.Listener // bounded at max_conns (netutil.LimitListener)
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

	slots    chan struct{}            // max_requests
	stall    time.Duration            // httpStallTimeout; tests shorten it
	waiting  func(*http.Request)      // nil; tests see a request waiting for its records
	bodyRead func(*http.Request)      // nil; tests see a request whose body was read
	reading  map[*bodyReader]struct{} // under mu: bodies being read, which StopInput cuts
	stopping atomic.Bool
	nextReq  atomic.Uint64
	cnt      counters
	protoLog logLimit
	// open counts the connections open now (TLS ones included, before
	// their handshakes).
	open atomic.Int64
}

var _ source = (*HTTPSource)(nil)

// Fate says what becomes of a record that is not stored (see
// stage.Fate): its request is answered with an error (or cut off), and
// the client is to resend it.
func (s *HTTPSource) Fate(error) stage.Fate { return stage.FateResend }

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
	s.hold = readingOf(rt)
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
	// At max_conns, Accept waits for a connection to close before it
	// takes the next from the kernel, whose backlog (and then the
	// client's SYN retries) holds the rest. Each idle connection costs a
	// file descriptor and a goroutine, so without a bound clients that
	// open connections and sit idle could take every descriptor the
	// process has.
	s.ln = netutil.LimitListener(ln, s.opts.MaxConns)
	ln = s.ln
	if s.certs != nil {
		s.certs.start()
		ln = &tlsListener{Listener: ln, s: s}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: httpStallTimeout,
		ReadTimeout:       httpReadTimeout, // a body sent ever so slowly does not hold a request slot for good (see bodyReader)
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
		s.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.open.Add(-1)
		if !isTLS || tc.served.Load() {
			s.cnt.closed.Add(1)
		}
	}
}

// StopInput stops taking requests: the listener closes, keep-alive ends,
// a request still reading its body is cut off (503, nothing of it taken:
// the client sends it again) and a request that still comes on an open
// connection gets 503. It returns once every request taken has handed its
// records on.
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
	for br := range s.reading {
		br.cut()
	}
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

// Close ends the requests waiting for their records and cuts off the
// ones still reading their bodies, each answered 503 with Retry-After
// (their records are left for the clients to resend), waits up to a
// second for those answers to be written, then closes the listener and
// every connection, and returns once every goroutine of the source has
// returned.
func (s *HTTPSource) Close() error {
	s.mu.Lock()
	if !s.started || s.closed {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.closed, s.stopped = true, true
	s.stopping.Store(true)
	s.srv.SetKeepAlivesEnabled(false)
	s.ln.Close() // no new connections while the handlers answer
	for br := range s.reading {
		br.cut()
	}
	s.mu.Unlock()
	// Ending ctx ends the requests waiting for their records, and the
	// bodies cut above end the ones still reading: each answers 503, which
	// tells its client to send the body again. Cutting the connections at
	// once would lose those answers, so the handlers get closeAnswerWait to
	// write them (reply flushes each before its handler returns). The wait
	// is bounded, and closing the connections then ends any write a client
	// that does not read holds up, so no client can hold the stop.
	s.cancel()
	answered := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(answered)
	}()
	t := time.NewTimer(closeAnswerWait)
	select {
	case <-answered:
	case <-t.C:
	}
	t.Stop()
	s.srv.Close() // closes the listener and every connection
	<-s.served
	<-answered
	if s.certs != nil {
		s.certs.close()
	}
	return nil
}

// Figures puts the source's counters into its /stats entry, and with
// TLS its certificate (see certStore.figures).
func (s *HTTPSource) Figures(st *stats.Stage) {
	ss := s.cnt.snapshot()
	st.Source = &ss
	s.mu.Lock()
	certs := s.certs // Start sets it under mu
	s.mu.Unlock()
	certs.figures(st)
}
