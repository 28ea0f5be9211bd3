package natsq

// This file holds the Client: the one connection to NATS (or the
// embedded server) that every queue of a pipeline shares.

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
)

// Client is a pipeline's connection to NATS, shared by every nats queue
// of the process. It connects when the first publisher or consumer
// starts and closes when the last one closes. Build one with NewClient;
// its methods are safe for concurrent use.
type Client struct {
	cfg      Config
	pipeline string
	log      *zap.Logger
	// pubAckWait bounds a publisher's wait for a batch's PubAcks
	// (DefaultPubAckWait; a test shortens it before the first open).
	pubAckWait time.Duration

	// conn serialises open and release, which may take long (connecting
	// retries until the server answers; closing flushes). mu guards the
	// fields below and is held only briefly, so that Stats answers while
	// a connect is retried.
	conn    sync.Mutex
	mu      sync.Mutex
	users   int
	nc      *nats.Conn
	js      jetstream.JetStream
	emb     *embedded       // the in-process server, while it runs (Config.Embedded)
	streams map[string]bool // streams this client has created or checked
	// downSince is when the connection was last found down (a connect
	// began, or the connection dropped), zero while it is up; downErr
	// is why, redacted (see disconnected).
	downSince time.Time
	downErr   string
}

// NewClient returns a client for the pipeline called pipeline; nothing
// connects until a queue's publisher or consumer starts. log may be nil.
func NewClient(cfg Config, pipeline string, log *zap.Logger) *Client {
	if log == nil {
		log = zap.NewNop()
	}
	return &Client{cfg: cfg, pipeline: pipeline, log: log, streams: map[string]bool{}, pubAckWait: defaultPubAckWait}
}

// connName is the connection's default name: which pipeline, where.
func (c *Client) connName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%s/%d", c.pipeline, host, os.Getpid())
}

// open connects if need be and counts one user; it retries until ctx
// ends, logging each failure, as db.postgres does while its database is
// away at start.
func (c *Client) open(ctx context.Context) (jetstream.JetStream, error) {
	c.conn.Lock()
	defer c.conn.Unlock()
	c.mu.Lock()
	if c.nc != nil {
		c.users++
		js := c.js
		c.mu.Unlock()
		return js, nil
	}
	if c.downSince.IsZero() {
		c.downSince = time.Now()
	}
	c.mu.Unlock()
	nc, js, emb, err := c.connect(ctx)
	if err != nil {
		// Given up (ctx ended): nothing waits for the connection now. A
		// later open starts counting again.
		c.mu.Lock()
		c.downSince, c.downErr = time.Time{}, ""
		c.mu.Unlock()
		return nil, err
	}
	c.mu.Lock()
	c.nc, c.js, c.emb = nc, js, emb
	c.users++
	c.downSince, c.downErr = time.Time{}, ""
	c.mu.Unlock()
	return js, nil
}

// connect makes the connection (starting the in-process server first
// under Config.Embedded), retrying until ctx ends.
func (c *Client) connect(ctx context.Context) (*nats.Conn, jetstream.JetStream, *embedded, error) {
	opts, err := c.cfg.options(c.connName())
	if err != nil {
		return nil, nil, nil, err
	}
	opts = append(opts,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed on purpose
				c.log.Warn("nats: disconnected; reconnecting", zap.String("error", errText(err)))
				c.mu.Lock()
				if c.downSince.IsZero() {
					c.downSince = time.Now()
				}
				c.downErr = errText(err)
				c.mu.Unlock()
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.log.Info("nats: reconnected", zap.String("server", stage.Redact(nc.ConnectedUrlRedacted())))
			c.mu.Lock()
			c.downSince, c.downErr = time.Time{}, ""
			c.mu.Unlock()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			c.log.Warn("nats: asynchronous error", zap.String("error", errText(err)))
		}),
	)
	url := c.cfg.url()
	var emb *embedded
	if c.cfg.Embedded != nil {
		if emb, err = startEmbedded(ctx, c.cfg.Embedded, c.cfg, c.log); err != nil {
			return nil, nil, nil, err
		}
		url = ""
		opts = append(opts, nats.InProcessServer(emb.srv))
	}
	fail := func(err error) (*nats.Conn, jetstream.JetStream, *embedded, error) {
		if emb != nil {
			emb.stop()
		}
		return nil, nil, nil, err
	}
	var nc *nats.Conn
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if nc, err = nats.Connect(url, opts...); err == nil {
			break
		}
		c.log.Warn("nats: cannot connect; retrying", zap.String("url", stage.Redact(url)),
			zap.Int("attempt", attempt), zap.Duration("wait", wait), zap.String("error", errText(err)))
		c.mu.Lock()
		c.downErr = errText(err)
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("connect to %s: %w (last: %s)", stage.Redact(url), ctx.Err(), errText(err)))
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(pubAcksInFlight),
		jetstream.WithPublishAsyncTimeout(pubAckForget(c.pubAckWait)))
	if err != nil {
		nc.Close()
		return fail(fmt.Errorf("jetstream: %w", err))
	}
	server := stage.Redact(nc.ConnectedUrlRedacted())
	if emb != nil {
		server = "embedded, in-process"
	}
	c.log.Info("nats: connected", zap.String("server", server))
	return nc, js, emb, nil
}

// release gives back what open took; the last user closes the
// connection, after flushing what is buffered (acks) to the server.
func (c *Client) release() {
	c.conn.Lock()
	defer c.conn.Unlock()
	c.mu.Lock()
	c.users--
	nc, emb := c.nc, c.emb
	if c.users > 0 || nc == nil {
		c.mu.Unlock()
		return
	}
	c.nc, c.js, c.emb = nil, nil, nil
	c.downSince, c.downErr = time.Time{}, ""
	c.mu.Unlock()
	if err := nc.FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		c.log.Warn("nats: flush on close", zap.String("error", errText(err)))
	}
	nc.Close()
	if emb != nil {
		emb.stop()
	}
}

// connected reports whether the connection is up.
func (c *Client) connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nc != nil && c.nc.IsConnected()
}

// disconnected returns, while the connection is not up, since when it
// has not been (a connect began, or the connection dropped) and the last
// error; zero while it is up. A drop nats.go has not yet told of is
// taken to have happened at now, and kept, so that the time does not
// move on at each call.
func (c *Client) disconnected(now time.Time) (since time.Time, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.nc != nil && c.nc.IsConnected():
		return time.Time{}, ""
	case c.downSince.IsZero() && c.nc != nil:
		c.downSince = now
	case c.downSince.IsZero(): // open has not begun yet
		return now, c.downErr
	}
	return c.downSince, c.downErr
}

// server names the server the client connects to, for a health's why:
// its URLs with any password hidden, or the in-process server.
func (c *Client) server() string {
	if c.cfg.Embedded != nil {
		return "the embedded server"
	}
	return stage.Redact(c.cfg.url())
}

// jetStream returns the JetStream context while connected, else nil.
func (c *Client) jetStream() jetstream.JetStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.js
}

// errText is err's text with any password in a URL hidden.
func errText(err error) string {
	if err == nil {
		return ""
	}
	if ue, ok := errors.AsType[*neturl.Error](err); ok && ue.Op == "parse" {
		// Its text quotes the URL, whose password Redact cannot find in
		// a URL that does not parse (Config.Check refuses one first).
		return "a URL cannot be parsed (it is not shown, as it may hold a password)"
	}
	return stage.Redact(err.Error())
}

// Queue is one stage's queue on JetStream, as seen from one process: the
// stage's events are published to the stream by the stages that route to
// it (Publisher), and taken from it by the processes that run the stage
// (Consumer). Build one with Client.Queue.
type Queue struct {
	c        *Client
	stage    string // the stage whose queue this is
	cfg      QueueConfig
	overflow port.Overflow
	capacity int // the local queue's capacity on either side
	log      *zap.Logger

	ensure sync.Mutex // serialises ensureStreams
	bufs   codec.Pool // envelopes' buffers, publisher's and consumer's

	deadLog     logLimit // the dead-letter warnings of the stage, one a second
	deadFailLog logLimit // the warnings that dead-lettering failed, one a second

	st queueCounters
}

// Queue returns the queue of the stage named stageName. overflow is the
// stage's queue.overflow: what a publisher does when the stream is at its
// limits; capacity is its queue.capacity, the size of the local queue on
// each side.
func (c *Client) Queue(stageName string, cfg QueueConfig, overflow port.Overflow, capacity int) *Queue {
	q := &Queue{c: c, stage: stageName, cfg: cfg.withDefaults(), overflow: overflow, capacity: capacity,
		log: c.log.With(zap.String("stage", stageName), zap.String("stream", cfg.Stream))}
	q.st.init()
	return q
}

// Stream returns the name of the queue's stream.
func (q *Queue) Stream() string { return q.cfg.Stream }

// ensureStreams creates the work stream and its dead-letter stream, or
// updates their limits to the configuration. A stream of that name with
// another retention (not made by a pipeline) is an error that says so.
func (q *Queue) ensureStreams(ctx context.Context, js jetstream.JetStream) error {
	if err := q.checkDeadMaxBytes(js.Conn().MaxPayload()); err != nil {
		return err
	}
	q.ensure.Lock()
	defer q.ensure.Unlock()
	q.c.mu.Lock()
	done := q.c.streams[q.cfg.Stream]
	q.c.mu.Unlock()
	if done {
		return nil
	}
	cfg := q.cfg
	work := jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: fmt.Sprintf("seda: the queue of stage %q", q.stage),
		// Envelopes go to seda.STREAM.N (see natsq/internal/codec); seda.STREAM
		// is kept so that messages of an older encoding reach the
		// consumer (and the dead-letter stream) rather than sit unseen.
		Subjects:   []string{subject(cfg.Stream), subject(cfg.Stream) + ".>"},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Discard:    jetstream.DiscardNew,
		Replicas:   cfg.Replicas,
		MaxMsgs:    cfg.MaxMsgs,
		MaxBytes:   cfg.MaxBytes,
		MaxAge:     cfg.MaxAge,
		Duplicates: cfg.Duplicates,
	}
	// The dead-letter stream has a byte limit, discarding old: past it
	// the oldest dead letters make room for the newest. Without a limit a
	// client sending bad records could fill the server's disk: a dead
	// letter, stored uncompressed with its reason, took up to about 39
	// times the bytes of the record sent, and was kept dead_max_age.
	dead := jetstream.StreamConfig{
		Name:        deadStream(cfg.Stream),
		Description: fmt.Sprintf("seda: dead letters of stage %q (stream %s)", q.stage, cfg.Stream),
		Subjects:    []string{subject(deadStream(cfg.Stream))},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		Replicas:    cfg.Replicas,
		MaxBytes:    cfg.DeadMaxBytes,
		MaxAge:      cfg.DeadMaxAge,
		Duplicates:  cfg.Duplicates,
	}
	for _, sc := range []jetstream.StreamConfig{work, dead} {
		if err := q.retry(ctx, "create stream "+sc.Name, func(ctx context.Context) error {
			// Every process of a split pipeline ensures the streams when it
			// starts. A stream already as configured is left alone: an
			// update, even to the same configuration, has the server
			// rewrite its store's settings, and in nats-server 2.15.2 that
			// races with another process creating its consumer (the race
			// detector caught it in fileStore.UpdateConfig).
			if s, err := js.Stream(ctx, sc.Name); err == nil && sameStream(s.CachedInfo().Config, sc) {
				return nil
			}
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		}); err != nil {
			return err
		}
	}
	q.c.mu.Lock()
	q.c.streams[q.cfg.Stream] = true
	q.c.mu.Unlock()
	return nil
}

// deadStoreRoom is what a stored dead letter takes besides its headers
// and data, which max_payload bounds: its subject (at most 210 bytes) and
// the file store's framing of a message (34 bytes), rounded up.
const deadStoreRoom = 1 << 10

// checkDeadMaxBytes refuses a dead_max_bytes below the largest dead letter:
// one is cut to fit the server's max_payload (see publishDead), and the
// stream stores it with its subject. Below that, JetStream drops each
// dead letter as it stores it, or refuses it, and nothing says so. It is
// checked at start because only the connection knows max_payload, which
// the server's configuration sets.
func (q *Queue) checkDeadMaxBytes(maxPayload int64) error {
	least := maxPayload + deadStoreRoom
	if q.cfg.DeadMaxBytes <= 0 || q.cfg.DeadMaxBytes >= least {
		return nil
	}
	return &stage.FieldError{Field: "queue.dead_max_bytes", Err: fmt.Errorf(
		"%d bytes is less than one dead letter of stream %s may take (%d: the server's max_payload, %d, and %d for its subject and framing), so each would be dropped as it is stored; set at least %d, or 0 for no limit",
		q.cfg.DeadMaxBytes, deadStream(q.cfg.Stream), least, maxPayload, deadStoreRoom, least)}
}

// sameStream reports whether a stream's configuration (have, as the
// server reports it, its defaults filled in) already is what ensureStreams
// asks for (want). A default it does not know makes it answer false, which
// costs one update.
func sameStream(have, want jetstream.StreamConfig) bool {
	unlimited := func(n int64) int64 {
		if n == 0 {
			return -1
		}
		return n
	}
	return have.Description == want.Description &&
		slices.Equal(have.Subjects, want.Subjects) &&
		have.Retention == want.Retention &&
		have.Storage == want.Storage &&
		have.Discard == want.Discard &&
		have.Replicas == max(want.Replicas, 1) &&
		have.MaxMsgs == unlimited(want.MaxMsgs) &&
		have.MaxBytes == unlimited(want.MaxBytes) &&
		have.MaxAge == want.MaxAge &&
		(want.Duplicates == 0 || have.Duplicates == want.Duplicates)
}

// retry runs op until it succeeds, fails for a reason retrying cannot
// mend (the server refused the request), or ctx ends.
func (q *Queue) retry(ctx context.Context, what string, op func(context.Context) error) error {
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := op(octx)
		cancel()
		if err == nil {
			return nil
		}
		var api *jetstream.APIError
		if errors.As(err, &api) && api.Code != 503 {
			return fmt.Errorf("%s: %w", what, err)
		}
		q.st.mu.Lock()
		q.st.startErr = what + ": " + errText(err) // shown only while a consumer starts
		q.st.mu.Unlock()
		fields := []zap.Field{zap.Int("attempt", attempt), zap.String("error", errText(err))}
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			fields = append(fields, zap.String("hint", "no JetStream answered: is the server run with JetStream on (nats-server -js)?"))
		}
		q.log.Warn("nats: "+what+" failed; retrying", fields...)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
