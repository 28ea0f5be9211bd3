package natsq

// This file runs a NATS server with JetStream inside the pipeline's
// process (`nats: {embedded: {store_dir: DIR}}`), so that one `pipectl
// run` has a durable queue before a stage, as the OpenTelemetry
// Collector's persistent queue or Vector's disk buffer give one process:
// records acked into the stream survive a database outage and a kill -9
// of the process, and are stored when the database returns or the process
// starts again on the same directory.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

// EmbeddedConfig is the `nats.embedded` section: a JetStream server in the
// pipeline's own process, its file store in StoreDir.
type EmbeddedConfig struct {
	// StoreDir holds the JetStream file store (created if need be). One
	// process at a time may use it; a second is refused.
	StoreDir string
	// Listen, when set (host:port; port 0: any free port, logged), lets
	// other processes connect to the server (`nats.url: nats://host:port`
	// in theirs), so that they may publish to its streams or run its
	// stages. Empty: no port is opened, and only this process reaches the
	// server.
	Listen string
}

// embeddedFields are the keys of nats.embedded.
func embeddedFields() []stage.Field {
	return []stage.Field{
		{Name: "store_dir", Type: stage.String, Doc: "the directory of the JetStream file store (created if need be); one process at a time"},
		{Name: "listen", Type: stage.String, Doc: "host:port on which other processes may connect to the server; empty: no port, only this process; off loopback it needs nats.token (or user and password), which every connection must then give"},
	}
}

func (e *EmbeddedConfig) check(c Config) error {
	switch {
	case e.StoreDir == "":
		return &stage.FieldError{Field: "embedded.store_dir", Err: errors.New("an embedded server needs store_dir")}
	case c.URL != "":
		return &stage.FieldError{Field: "url", Err: errors.New("an embedded server takes no url (the process connects to it in-process)")}
	case c.Creds != "", c.NKey != "", c.TLS.on():
		// They configure a connection to a server elsewhere; the
		// embedded server has none of them, and connecting would be
		// retried for ever.
		field := "tls"
		switch {
		case c.Creds != "":
			field = "creds"
		case c.NKey != "":
			field = "nkey"
		}
		return &stage.FieldError{Field: field, Err: errors.New("not with an embedded server, which is reached in process and takes token, or user and password, from the processes that connect to its listen")}
	case e.Listen != "":
		host, _, err := listenAddr(e.Listen)
		if err != nil {
			return &stage.FieldError{Field: "embedded.listen", Err: err}
		}
		if !loopback(host) && c.Token == "" && (c.User == "" || c.Password == "") {
			return &stage.FieldError{Field: "embedded.listen", Err: fmt.Errorf("%q is not a loopback address: set token (or user and password), which the processes that connect must then give, or listen on 127.0.0.1", e.Listen)}
		}
	}
	return nil
}

// loopback reports whether host is a loopback address or localhost ("":
// every interface, is not).
func loopback(host string) bool {
	ip := net.ParseIP(host)
	return strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback()
}

func listenAddr(a string) (string, int, error) {
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// embedded is a running in-process server and the lock on its store.
type embedded struct {
	srv  *server.Server
	lock *os.File
}

// embeddedReady bounds the wait for the server to recover its store and
// take connections.
const embeddedReady = 2 * time.Minute

// startEmbedded starts the server of cfg, requiring auth's token, or
// user and password, of every connection (this process's in-process one
// gives them too); log receives its warnings and errors (its notices at
// debug). It waits for the server to take connections until ctx ends or
// embeddedReady passes, and no longer once the server reports it cannot
// run (its listen address taken, its store unusable): then the error
// says why.
func startEmbedded(ctx context.Context, cfg *EmbeddedConfig, auth Config, log *zap.Logger) (*embedded, error) {
	dir, err := filepath.Abs(cfg.StoreDir)
	if err != nil {
		return nil, fmt.Errorf("nats.embedded.store_dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats.embedded.store_dir: %w", err)
	}
	lock, err := lockStore(filepath.Join(dir, "seda.lock"))
	if err != nil {
		return nil, fmt.Errorf("nats.embedded.store_dir %s: %w", dir, err)
	}
	opts := &server.Options{
		ServerName: "seda-embedded",
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		DontListen: cfg.Listen == "",
		HTTPPort:   0,
	}
	switch {
	case auth.User != "":
		opts.Username, opts.Password = auth.User, auth.Password
	case auth.Token != "":
		opts.Authorization = auth.Token
	}
	if cfg.Listen != "" {
		if opts.Host, opts.Port, err = listenAddr(cfg.Listen); err != nil {
			lock.Close()
			return nil, fmt.Errorf("nats.embedded.listen: %w", err)
		}
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT // nats-server's 0 is its default port, 4222
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("nats.embedded: %w", err)
	}
	fatal := make(chan string, 1)
	srv.SetLogger(serverLog{l: log.Named("server"), fatal: fatal}, false, false)
	srv.Start()
	fail := func(err error) (*embedded, error) {
		srv.Shutdown()
		srv.WaitForShutdown()
		lock.Close()
		return nil, err
	}
	for end := time.Now().Add(embeddedReady); !srv.ReadyForConnections(50 * time.Millisecond); {
		select {
		case msg := <-fatal:
			return fail(fmt.Errorf("nats.embedded: the server cannot start: %s", msg))
		case <-ctx.Done():
			return fail(fmt.Errorf("nats.embedded: starting the server: %w", ctx.Err()))
		default:
		}
		if time.Now().After(end) {
			return fail(fmt.Errorf("nats.embedded: the server did not start within %s", embeddedReady))
		}
	}
	fields := []zap.Field{zap.String("store_dir", dir)}
	if cfg.Listen != "" {
		fields = append(fields, zap.String("listen", srv.ClientURL()))
	}
	log.Info("nats: embedded server started", fields...)
	return &embedded{srv: srv, lock: lock}, nil
}

// stop shuts the server down (its store flushed) and releases the store.
func (e *embedded) stop() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.lock.Close()
}

// serverLog is nats-server's logger on zap. The server reports what keeps
// it from running (a listen address taken, an unusable store) with
// Fatalf, and goes on waiting; the first such message also goes to fatal.
type serverLog struct {
	l     *zap.Logger
	fatal chan<- string
}

func (s serverLog) Noticef(f string, v ...any) { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLog) Warnf(f string, v ...any)   { s.l.Warn(fmt.Sprintf(f, v...)) }
func (s serverLog) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	s.l.Error(msg)
	select {
	case s.fatal <- msg:
	default:
	}
}
func (s serverLog) Errorf(f string, v ...any) { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLog) Debugf(f string, v ...any) { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLog) Tracef(string, ...any)     {}
