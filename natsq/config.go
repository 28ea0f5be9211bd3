package natsq

// This file holds the configuration of the transport: the `nats:` section
// and a stage's queue keys, with their spec and checks.

import (
	"crypto/tls"
	"fmt"
	neturl "net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stagedserver/seda/stage"
)

// TransportName is what queue.transport says to put a stage's queue on
// NATS JetStream, and the key of the pipeline file's `nats:` section and
// of a stage's figures in /stats.
const TransportName = "nats"

// DefaultURL is the server a pipeline connects to when nats.url is empty.
const DefaultURL = nats.DefaultURL

// Config is the connection to NATS: the pipeline file's top-level `nats:`
// section. One connection serves every nats queue of a process.
type Config struct {
	URL      string // nats://host:port, comma-separated for a cluster; "" means DefaultURL
	Name     string // the connection's name, shown by the server; "" means pipeline/host/pid
	Creds    string // a credentials file (JWT and nkey seed)
	NKey     string // an nkey seed file
	User     string
	Password string // secret
	Token    string // secret
	TLS      TLSConfig
	// ConnectTimeout bounds one connection attempt; 0 means 5s.
	ConnectTimeout time.Duration
	// Embedded, when set, runs the server in this process (see
	// embedded.go); URL and the ways to authenticate are then unused.
	Embedded *EmbeddedConfig
}

// TLSConfig configures TLS to the server; TLS is on when any field is set
// or the URL's scheme is tls://.
type TLSConfig struct {
	CA         string // PEM file of the CAs that sign the server's certificate
	Cert, Key  string // PEM files of the client certificate, for mutual TLS
	ServerName string // the name to verify the server's certificate against
}

func (t TLSConfig) on() bool { return t.CA != "" || t.Cert != "" || t.Key != "" || t.ServerName != "" }

// Fields returns the keys of the `nats:` section, for the pipeline loader
// and the generated reference.
func Fields() []stage.Field {
	return []stage.Field{
		{Name: "url", Type: stage.String, Doc: "server URL(s), comma-separated; empty: " + DefaultURL},
		{Name: "name", Type: stage.String, Doc: "the connection's name as the server shows it; empty: PIPELINE/HOST/PID"},
		{Name: "creds", Type: stage.String, Doc: "credentials file (user JWT and nkey seed)"},
		{Name: "nkey", Type: stage.String, Doc: "nkey seed file"},
		{Name: "user", Type: stage.String, Doc: "user name"},
		{Name: "password", Type: stage.String, Secret: true, Doc: "password"},
		{Name: "token", Type: stage.String, Secret: true, Doc: "authentication token"},
		{Name: "tls", Type: stage.Object, Doc: "TLS to the server; on when any key is set or the URL is tls://", Fields: []stage.Field{
			{Name: "ca", Type: stage.String, Doc: "PEM file of the CAs to trust"},
			{Name: "cert", Type: stage.String, Doc: "PEM client certificate, for mutual TLS"},
			{Name: "key", Type: stage.String, Doc: "PEM key of the client certificate"},
			{Name: "server_name", Type: stage.String, Doc: "name to verify the server's certificate against"},
		}},
		{Name: "connect_timeout", Type: stage.Duration, Default: 5 * time.Second, Range: stage.AtLeast(int64(time.Millisecond)), Doc: "bound on one connection attempt; the pipeline retries until it connects"},
		{Name: "embedded", Type: stage.Object, Fields: embeddedFields(),
			Doc: "run a JetStream server inside this process, its file store in store_dir: a durable queue in one process; takes no url"},
	}
}

// ConfigFrom reads the `nats:` section as decoded by the loader.
func ConfigFrom(c stage.Config) Config {
	c, _ = stage.Bind(Fields(), c) // defaults filled; a bad value was reported when decoded
	t := c.Object("tls")
	var emb *EmbeddedConfig
	if c.Has("embedded") {
		e := c.Object("embedded")
		emb = &EmbeddedConfig{StoreDir: e.String("store_dir"), Listen: e.String("listen")}
	}
	return Config{
		Embedded: emb,
		URL:      c.String("url"), Name: c.String("name"), Creds: c.String("creds"), NKey: c.String("nkey"),
		User: c.String("user"), Password: c.String("password"), Token: c.String("token"),
		TLS:            TLSConfig{CA: t.String("ca"), Cert: t.String("cert"), Key: t.String("key"), ServerName: t.String("server_name")},
		ConnectTimeout: c.Duration("connect_timeout"),
	}
}

// Check reports a problem with the configuration: files that cannot be
// read, half a client certificate, two ways to authenticate.
func (c Config) Check() error {
	if err := checkURLs(c.URL); err != nil {
		return err
	}
	if c.Embedded != nil {
		if err := c.Embedded.check(c); err != nil {
			return err
		}
	}
	for _, f := range []struct{ key, path string }{
		{"creds", c.Creds}, {"nkey", c.NKey}, {"tls.ca", c.TLS.CA}, {"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("nats.%s: %w", f.key, err)
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return fmt.Errorf("nats.tls: cert and key go together")
	}
	n := 0
	for _, s := range []string{c.Creds, c.NKey, c.User, c.Token} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("nats: use one of creds, nkey, user/password and token")
	}
	return nil
}

// checkURLs parses each URL of list as nats.go does (comma-separated,
// nats:// when no scheme is given), so that one it cannot parse is a
// configuration error, not a connect retried for ever. Neither the URL
// nor url.Parse's reason is shown: either may hold part of a password.
func checkURLs(list string) error {
	if strings.TrimSpace(list) == "" {
		return nil
	}
	for i, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		if _, err := neturl.Parse(u); err != nil {
			return &stage.FieldError{Field: "url", Err: fmt.Errorf("URL %d cannot be parsed (it is not shown, as it may hold a password): "+
				"a space, \"@\", \"/\" or \"%%\" in a user or password must be percent-encoded", i+1)}
		}
	}
	return nil
}

// options returns the nats.go options for c.
func (c Config) options(name string) ([]nats.Option, error) {
	if c.Name != "" {
		name = c.Name
	}
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		// A pipeline never gives up on its server: while it is away the
		// queues push back, and the pipeline carries on once it returns.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
	}
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey: %w", err)
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	}
	if c.TLS.on() {
		opts = append(opts, nats.Secure(&tls.Config{ServerName: c.TLS.ServerName, MinVersion: tls.VersionTLS12}))
		if c.TLS.CA != "" {
			opts = append(opts, nats.RootCAs(c.TLS.CA))
		}
		if c.TLS.Cert != "" {
			opts = append(opts, nats.ClientCert(c.TLS.Cert, c.TLS.Key))
		}
	}
	return opts, nil
}

func (c Config) url() string {
	if strings.TrimSpace(c.URL) == "" {
		return DefaultURL
	}
	return c.URL
}

// QueueConfig is one stage's queue on JetStream: the stage's `queue:` keys
// besides capacity and overflow. The zero value of a field means its
// default (see QueueFields).
type QueueConfig struct {
	Stream     string        // the work stream; its dead letters go to Stream+"_dead"
	Replicas   int           // stream replicas (1, 3 or 5 in a cluster)
	MaxMsgs    int64         // the stream's message limit; 0 or -1: none
	MaxBytes   int64         // the stream's byte limit; 0 or -1: none
	MaxAge     time.Duration // 0: none
	Duplicates time.Duration // the window in which a retried publish is stored once
	MaxDeliver int           // deliveries of a message before it is dead-lettered
	AckWait    time.Duration // redelivery when a delivered message is not acked this long
	Backoff    time.Duration // first delay of a NAKed message; doubled each time
	MaxBackoff time.Duration // longest delay of a NAKed message
	// MaxAckPending bounds the messages (envelopes) delivered and not yet
	// acked, over every process that runs the stage.
	MaxAckPending int
	DeadMaxAge    time.Duration // how long dead letters are kept; 0: for ever
	// DeadMaxBytes bounds the dead-letter stream, whose oldest dead
	// letters are dropped to make room (discard old); 0 or -1: none.
	DeadMaxBytes int64
	// EnvelopeEvents and EnvelopeBytes bound one message (an envelope of
	// events, see natsq/internal/codec): at most this many events, and this many
	// bytes of data unless it holds one event.
	EnvelopeEvents int
	EnvelopeBytes  int64
	// Compress is how envelopes are compressed: "s2" or "none".
	Compress string
}

// Envelope defaults, chosen by measurement (docs/BENCHMARKS.md, B7).
const (
	DefaultEnvelopeEvents = 1024
	DefaultEnvelopeBytes  = 256 << 10
)

// QueueFields returns the keys a stage's `queue:` takes for transport
// nats, besides transport and stream, with their defaults.
func QueueFields() []stage.Field {
	return []stage.Field{
		{Name: "replicas", Type: stage.Int, Default: 1, Range: stage.Between(1, 5), Doc: "nats: replicas of the stream (3 or 5 in a cluster)"},
		{Name: "max_msgs", Type: stage.Int, Default: 1_000_000, Range: stage.AtLeast(0), Doc: "nats: messages the stream holds at most; then publishers see a full queue (discard new); 0: no limit"},
		{Name: "max_bytes", Type: stage.Size, Default: int64(1 << 30), Doc: "nats: bytes the stream holds at most (discard new); 0: no limit"},
		{Name: "max_age", Type: stage.Duration, Default: time.Duration(0), Doc: "nats: messages older than this are dropped unconsumed; 0: never"},
		{Name: "duplicates", Type: stage.Duration, Default: defaultDuplicates, Range: stage.AtLeast(int64(time.Second)), Doc: "nats: window in which a retried publish (same Nats-Msg-Id) is stored once"},
		{Name: "max_deliver", Type: stage.Int, Default: 5, Range: stage.Between(1, 1000), Doc: "nats: deliveries of a message that keeps failing before it goes to the dead-letter stream STREAM_dead"},
		{Name: "ack_wait", Type: stage.Duration, Default: 30 * time.Second, Range: stage.AtLeast(int64(time.Second)), Doc: "nats: a delivered message not finished this long is delivered again (to any process)"},
		{Name: "backoff", Type: stage.Duration, Default: time.Second, Range: stage.AtLeast(int64(time.Millisecond)), Doc: "nats: delay before a failed message is delivered again; doubled at each failure"},
		{Name: "max_backoff", Type: stage.Duration, Default: time.Minute, Range: stage.AtLeast(int64(time.Millisecond)), Doc: "nats: longest delay before a failed message is delivered again"},
		{Name: "max_ack_pending", Type: stage.Int, Default: 1024, Range: stage.Between(1, 1<<24), Doc: "nats: messages (envelopes of events) delivered and not yet finished, over every process running the stage"},
		{Name: "dead_max_age", Type: stage.Duration, Default: 7 * 24 * time.Hour, Doc: "nats: how long the dead-letter stream keeps a message; 0: for ever"},
		{Name: "dead_max_bytes", Type: stage.Size, Default: int64(1 << 30), Doc: "nats: bytes the dead-letter stream holds at most; past them its oldest dead letters are dropped (discard old), so the newest are kept; at least the server's max_payload plus 1KiB, the most one dead letter takes (a smaller limit would drop each as it is stored), checked at start, where the connection tells max_payload; 0: no limit"},
		{Name: "envelope_events", Type: stage.Int, Default: DefaultEnvelopeEvents, Range: stage.Between(1, 1<<20), Doc: "nats: events one message (an envelope) carries at most"},
		{Name: "compress", Type: stage.String, Default: "s2", Enum: []string{"s2", "none"}, Doc: "nats: s2: envelopes are compressed (S2), so that the server stores and moves fewer bytes; none: sent as they are"},
		{Name: "envelope_bytes", Type: stage.Size, Default: int64(DefaultEnvelopeBytes), Range: stage.Between(1<<10, 64<<20), Doc: "nats: bytes one message (an envelope) carries at most, unless it holds one event; kept under the server's max_payload, which bounds one event: a record travels with the fields decoded from it, so one whose record and fields take more than max_payload (1MiB by default; about half of it in raw JSON) is refused as too large"},
	}
}

// TransportField and StreamField are the keys of a stage's `queue:` that
// put it on JetStream.
func TransportField() stage.Field {
	return stage.Field{Name: "transport", Type: stage.String, Default: "local", Enum: []string{"local", "nats"},
		Doc: "local: an in-process port; nats: a JetStream stream (queue.stream), so that the stage may run in other processes"}
}

// StreamField is the key naming a nats queue's stream.
func StreamField() stage.Field {
	return stage.Field{Name: "stream", Type: stage.String, Doc: "transport nats: the JetStream stream (work-queue retention, file storage; dead letters in STREAM_dead)"}
}

// QueueConfigFrom reads a stage's queue keys as decoded by the loader
// (stream and the keys of QueueFields).
func QueueConfigFrom(c stage.Config) QueueConfig {
	fields := append(QueueFields(), StreamField())
	var sub stage.Config
	for _, f := range fields {
		if v, ok := c.Value(f.Name); ok {
			sub.Set(f.Name, v)
		}
	}
	c, _ = stage.Bind(fields, sub) // defaults filled; a bad value was reported when decoded
	return QueueConfig{
		Stream:        c.String("stream"),
		Replicas:      c.Int("replicas"),
		MaxMsgs:       int64(c.Int("max_msgs")),
		MaxBytes:      c.Size("max_bytes"),
		MaxAge:        c.Duration("max_age"),
		Duplicates:    c.Duration("duplicates"),
		MaxDeliver:    c.Int("max_deliver"),
		AckWait:       c.Duration("ack_wait"),
		Backoff:       c.Duration("backoff"),
		MaxBackoff:    c.Duration("max_backoff"),
		MaxAckPending: c.Int("max_ack_pending"),
		DeadMaxAge:    c.Duration("dead_max_age"),
		DeadMaxBytes:  c.Size("dead_max_bytes"),

		EnvelopeEvents: c.Int("envelope_events"),
		EnvelopeBytes:  c.Size("envelope_bytes"),
		Compress:       c.String("compress"),
	}
}

// withDefaults fills the zero fields.
func (q QueueConfig) withDefaults() QueueConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if q.Replicas <= 0 {
		q.Replicas = 1
	}
	if q.MaxMsgs <= 0 {
		q.MaxMsgs = -1
	}
	if q.MaxBytes <= 0 {
		q.MaxBytes = -1
	}
	if q.DeadMaxBytes <= 0 {
		q.DeadMaxBytes = -1
	}
	def(&q.Duplicates, defaultDuplicates)
	if q.MaxDeliver <= 0 {
		q.MaxDeliver = 5
	}
	def(&q.AckWait, 30*time.Second)
	def(&q.Backoff, time.Second)
	def(&q.MaxBackoff, time.Minute)
	if q.MaxBackoff < q.Backoff {
		q.MaxBackoff = q.Backoff
	}
	if q.MaxAckPending <= 0 {
		q.MaxAckPending = 1024
	}
	if q.EnvelopeEvents <= 0 {
		q.EnvelopeEvents = DefaultEnvelopeEvents
	}
	if q.EnvelopeBytes <= 0 {
		q.EnvelopeBytes = DefaultEnvelopeBytes
	}
	if q.Compress == "" {
		q.Compress = "s2"
	}
	return q
}

// streamName is what JetStream accepts as a stream name, kept to a set
// that is also safe in a subject.
var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

// defaultDuplicates is queue.duplicates unset.
const defaultDuplicates = 2 * time.Minute

// Check reports a problem with the queue's configuration, naming the key.
func (q QueueConfig) Check() error {
	dup := q.Duplicates // JetStream refuses a window longer than a stream's max age
	if dup <= 0 {
		dup = defaultDuplicates
	}
	switch {
	case q.Stream == "":
		return &stage.FieldError{Field: "queue.stream", Err: fmt.Errorf("a nats queue needs a stream name")}
	case !streamName.MatchString(q.Stream):
		return &stage.FieldError{Field: "queue.stream", Err: fmt.Errorf("stream name %q: use letters, digits, '_' and '-'", q.Stream)}
	case strings.HasSuffix(q.Stream, "_dead"):
		return &stage.FieldError{Field: "queue.stream", Err: fmt.Errorf("stream name %q: names ending in _dead are the dead-letter streams", q.Stream)}
	case q.Replicas < 0 || q.Replicas > 5:
		return &stage.FieldError{Field: "queue.replicas", Err: fmt.Errorf("replicas must be 1 to 5, got %d", q.Replicas)}
	case q.MaxMsgs < -1:
		return &stage.FieldError{Field: "queue.max_msgs", Err: fmt.Errorf("max_msgs must be 0 (no limit) or positive, got %d", q.MaxMsgs)}
	case q.MaxDeliver < 0:
		return &stage.FieldError{Field: "queue.max_deliver", Err: fmt.Errorf("max_deliver must be at least 1, got %d", q.MaxDeliver)}
	case q.MaxAckPending < 0:
		return &stage.FieldError{Field: "queue.max_ack_pending", Err: fmt.Errorf("max_ack_pending must be at least 1, got %d", q.MaxAckPending)}
	case q.MaxAge > 0 && dup > q.MaxAge:
		return &stage.FieldError{Field: "queue.max_age", Err: fmt.Errorf("max_age %s is shorter than duplicates (%s): JetStream keeps a message's id for dedup no longer than the message; lower duplicates too", q.MaxAge, dup)}
	case q.DeadMaxAge > 0 && dup > q.DeadMaxAge:
		return &stage.FieldError{Field: "queue.dead_max_age", Err: fmt.Errorf("dead_max_age %s is shorter than duplicates (%s), which the dead-letter stream shares: JetStream keeps a message's id for dedup no longer than the message; lower duplicates too", q.DeadMaxAge, dup)}
	}
	return nil
}

// subject is where the messages of stream go; dead letters go to the
// subject of the dead-letter stream.
func subject(stream string) string { return "seda." + stream }

func deadStream(stream string) string { return stream + "_dead" }

// consumerName is the durable consumer of a stage: its name, with the
// characters JetStream refuses in a name replaced by '_'.
func consumerName(stageName string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '/', '\\':
			return '_'
		}
		return r
	}, stageName)
}
