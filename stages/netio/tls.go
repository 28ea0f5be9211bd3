package netio

// This file holds TLS for a source: its configuration, the
// certificates, reloaded while it runs, and a connection's handshake.

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// tlsOptions turn TLS on for a source (netio.tcp, netio.http): the YAML
// key `tls: {cert, key, client_ca}`.
type tlsOptions struct {
	Cert string // PEM file: the server's certificate, then any intermediates; required
	Key  string // PEM file: its private key; required
	// ClientCA is a PEM file of CA certificates. When set, TLS is mutual:
	// a client without a certificate that one of them signed is refused
	// during the handshake.
	ClientCA string
	// ReloadEvery is how often the files are looked at for changes (their
	// content); 0 means DefaultTLSReload. SIGHUP
	// reloads them at once.
	ReloadEvery time.Duration
}

// DefaultTLSReload is how often a source looks at its TLS files for
// changes.
const DefaultTLSReload = 2 * time.Second

// tlsHandshakeTimeout bounds a client's TLS handshake: a client that
// connects and says nothing holds no goroutine longer.
const tlsHandshakeTimeout = 10 * time.Second

// certExpirySoon is how long before its certificate expires a source's
// health turns degraded, at most: an alert on health then comes while
// there is still time to renew it, not once every handshake fails. A
// certificate valid for less than three times that reads degraded for
// the last third of its life instead (expiryWindow): a fixed week would
// leave one valid for six days or for 24 hours, as short-lived
// certificates are, degraded from the moment it is issued, through every
// renewal.
const certExpirySoon = 7 * 24 * time.Hour

// expiryWindow is how long before leaf expires a source's health turns
// degraded: a third of its validity period, at most certExpirySoon.
func expiryWindow(leaf *x509.Certificate) time.Duration {
	return min(certExpirySoon, leaf.NotAfter.Sub(leaf.NotBefore)/3)
}

// certSkew is how far ahead of this host's clock a certificate's
// not_before may be and still load. An issuer whose clock runs a few
// seconds ahead dates a fresh certificate in what is here the future; it
// is loaded, at Start or on reload, rather than failing the start for
// seconds a client, judging by its own clock, may well not see.
const certSkew = time.Minute

// tlsField is the `tls` key of the kinds that take it.
func tlsField() stage.Field {
	return stage.Field{Name: "tls", Type: stage.Object,
		Doc: "TLS (1.2 or later) on the listener; the files are reloaded on SIGHUP or when they change, without a restart; " +
			"a certificate expired, or not valid for more than a minute yet, fails Start, and a reload to one is refused (the loaded one stays)",
		Fields: []stage.Field{
			{Name: "cert", Type: stage.String, Doc: "PEM file: the server's certificate, then any intermediates"},
			{Name: "key", Type: stage.String, Doc: "PEM file: the certificate's private key"},
			{Name: "client_ca", Type: stage.String,
				Doc: "PEM file of CA certificates; when set, TLS is mutual: a client without a certificate one of them signed is refused"},
		}}
}

// tlsFromConfig reads the `tls` key of cfg: nil when it is absent or
// names no file.
func tlsFromConfig(cfg stage.Config) *tlsOptions {
	if !cfg.Has("tls") {
		return nil
	}
	t := cfg.Object("tls")
	o := &tlsOptions{Cert: t.String("cert"), Key: t.String("key"), ClientCA: t.String("client_ca")}
	if *o == (tlsOptions{}) {
		return nil
	}
	return o
}

// check reports a missing file name; whether the files load is known
// only at Start, which loads them.
func (o *tlsOptions) check() error {
	switch {
	case o.Cert == "":
		return &stage.FieldError{Field: "tls.cert", Err: errors.New("required with tls: the PEM file of the server's certificate")}
	case o.Key == "":
		return &stage.FieldError{Field: "tls.key", Err: errors.New("required with tls: the PEM file of the certificate's private key")}
	}
	return nil
}

// certStore holds a source's TLS configuration and reloads it when its
// files change or on SIGHUP. A reload that fails (a key that does not
// match, a file half written, a certificate expired or not yet valid)
// keeps what was loaded, is logged, and makes the source's health
// degraded until a reload succeeds (figures); the next change tries
// again, and a certificate not yet valid is tried again once it is
// (within certSkew of it).
type certStore struct {
	opts    tlsOptions
	log     *zap.Logger
	cur     atomic.Pointer[loadedConf] // what new handshakes get
	refused atomic.Pointer[refusal]    // the files on disk, refused; nil once a reload succeeds
	now     func() time.Time           // time.Now; tests set it

	// The watcher's own, untouched by other goroutines.
	stamps  [3]fileStamp // cert, key, client_ca as last loaded
	retryAt time.Time    // when a refused certificate becomes valid; zero: none waits
	stop    chan struct{}
	done    chan struct{}
}

// loadedConf is a configuration loaded and when: health degraded because
// the certificate nears its expiry is so since the later of the start of
// its last stretch (expiryWindow) and its load, never before the source
// served it.
type loadedConf struct {
	conf *tls.Config
	at   time.Time
}

// refusal is a reload refused: the files on disk are not what the source
// serves, and a restart with them would fail to start. The source reads
// degraded while it stands, not only in the log: a renewal that failed
// is otherwise seen when the old certificate expires.
type refusal struct {
	since time.Time // the first refusal since the last load
	err   string    // the last refusal's error: names the field and the files, never their content
}

type fileStamp struct {
	present bool
	sum     [sha256.Size]byte
}

// newCertStore loads the files once; the error names the field whose file
// is wrong.
func newCertStore(o tlsOptions, log *zap.Logger) (*certStore, error) {
	if o.ReloadEvery == 0 {
		o.ReloadEvery = DefaultTLSReload
	}
	s := &certStore{opts: o, log: log, now: time.Now}
	s.stamps = s.stampsNow()
	conf, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(&loadedConf{conf: conf, at: s.now()})
	return s, nil
}

// files are the store's files, in the order of stamps.
func (s *certStore) files() [3]string { return [3]string{s.opts.Cert, s.opts.Key, s.opts.ClientCA} }

var tlsFileFields = [3]string{"tls.cert", "tls.key", "tls.client_ca"}

// stampsNow returns a digest of each file's content; a file that cannot
// be read has the zero stamp. The content, not the size and modification
// time: a key replaced by another of the same size within the clock tick
// the file system stamps times with (a few milliseconds), as a renewal
// that writes the certificate and then the key does, kept both, and a
// watcher that had looked between the two writes (new certificate, old
// key: refused) never tried the matching pair. The files are small and
// read every ReloadEvery.
func (s *certStore) stampsNow() [3]fileStamp {
	var stamps [3]fileStamp
	for i, f := range s.files() {
		if f == "" {
			continue
		}
		if b, err := os.ReadFile(f); err == nil {
			stamps[i] = fileStamp{present: true, sum: sha256.Sum256(b)}
		}
	}
	return stamps
}

// validityError is a certificate used outside its validity period.
type validityError struct {
	file string
	leaf *x509.Certificate
	now  time.Time
}

func (e *validityError) Error() string {
	what := "expired"
	if e.notYet() {
		what = "not yet valid"
	}
	msg := fmt.Sprintf("%s: the certificate %q is %s: valid from %s to %s, and it is %s", e.file, e.leaf.Subject.String(), what,
		e.leaf.NotBefore.UTC().Format(time.RFC3339), e.leaf.NotAfter.UTC().Format(time.RFC3339), e.now.UTC().Format(time.RFC3339))
	if e.notYet() {
		msg += fmt.Sprintf(" (%s of clock skew is allowed)", certSkew)
	}
	return msg
}

// notYet reports whether the certificate becomes valid later.
func (e *validityError) notYet() bool { return e.now.Before(e.leaf.NotBefore) }

// load reads the files into a server configuration: TLS 1.2 or later,
// the certificate, and with client_ca a client certificate required and
// verified. A certificate expired, or not valid for more than certSkew
// yet, is refused: every client that verifies it would fail its
// handshake, which the source counts as the client's fault
// (protocol_errors.tls_handshake), while a reload that refuses it keeps
// the working one, and a start that refuses it says why at once.
func (s *certStore) load() (*tls.Config, error) {
	for i, f := range s.files() {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, &stage.FieldError{Field: tlsFileFields[i], Err: err}
		}
	}
	cert, err := tls.LoadX509KeyPair(s.opts.Cert, s.opts.Key)
	if err != nil {
		return nil, &stage.FieldError{Field: "tls.cert", Err: fmt.Errorf("loading %s and %s: %w", s.opts.Cert, s.opts.Key, err)}
	}
	if cert.Leaf == nil { // LoadX509KeyPair parses it unless GODEBUG x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, &stage.FieldError{Field: "tls.cert", Err: fmt.Errorf("parsing %s: %w", s.opts.Cert, err)}
		}
	}
	if now := s.now(); now.Add(certSkew).Before(cert.Leaf.NotBefore) || now.After(cert.Leaf.NotAfter) {
		return nil, &stage.FieldError{Field: "tls.cert", Err: &validityError{file: s.opts.Cert, leaf: cert.Leaf, now: now}}
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if s.opts.ClientCA != "" {
		pem, err := os.ReadFile(s.opts.ClientCA)
		if err != nil {
			return nil, &stage.FieldError{Field: "tls.client_ca", Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &stage.FieldError{Field: "tls.client_ca", Err: fmt.Errorf("%s holds no PEM certificate", s.opts.ClientCA)}
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// serverConfig returns the configuration a listener is given: each
// handshake takes the one loaded last.
func (s *certStore) serverConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := s.cur.Load().conf
			if len(nextProtos) > 0 {
				c = c.Clone()
				c.NextProtos = nextProtos
			}
			return c, nil
		},
	}
}

// start watches for SIGHUP and for changes of the files until close.
func (s *certStore) start() {
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer close(s.done)
		defer signal.Stop(hup)
		t := time.NewTicker(s.opts.ReloadEvery)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-hup:
				s.reload("SIGHUP")
			case <-t.C:
				s.tick()
			}
		}
	}()
}

func (s *certStore) close() {
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
}

// tick reloads the files when they changed, or when a certificate refused
// as not yet valid has become valid: the files need not change again.
func (s *certStore) tick() {
	switch {
	case s.changed():
		s.reload("files changed")
	case !s.retryAt.IsZero() && !s.now().Before(s.retryAt):
		s.reload("certificate now valid")
	}
}

// changed reports whether a file's content differs from when it was last
// loaded (or tried).
func (s *certStore) changed() bool { return s.stampsNow() != s.stamps }

// reload loads the files again; on failure the configuration loaded last
// stays, and the files are not tried again until they change again, or,
// for a certificate not yet valid, until it is within certSkew of it.
func (s *certStore) reload(why string) {
	s.stamps = s.stampsNow()
	s.retryAt = time.Time{}
	conf, err := s.load()
	if err != nil {
		if ve := (*validityError)(nil); errors.As(err, &ve) && ve.notYet() {
			s.retryAt = ve.leaf.NotBefore.Add(-certSkew)
		}
		r := &refusal{since: s.now(), err: err.Error()}
		if prev := s.refused.Load(); prev != nil {
			r.since = prev.since
		}
		s.refused.Store(r)
		s.log.Warn("TLS files not reloaded; keeping the certificate loaded before", zap.String("trigger", why), zap.Error(err))
		return
	}
	s.cur.Store(&loadedConf{conf: conf, at: s.now()})
	s.refused.Store(nil)
	leaf := conf.Certificates[0].Leaf
	fs := []zap.Field{zap.String("trigger", why), zap.String("cert", s.opts.Cert)}
	if leaf != nil {
		fs = append(fs, zap.String("subject", leaf.Subject.String()), zap.Time("not_after", leaf.NotAfter))
	}
	s.log.Info("TLS certificate reloaded", fs...)
}

// figures puts the certificate new handshakes get into a source's /stats
// entry (st.Source, which the caller has set), and makes the source's
// health degraded from expiryWindow before the certificate expires
// (after that, every client that verifies it fails its handshake), and
// while the files on disk were refused on reload. A nil store (no TLS)
// adds nothing.
func (s *certStore) figures(st *stats.Stage) {
	if s == nil || st.Source == nil {
		return
	}
	cur := s.cur.Load()
	leaf := cur.conf.Certificates[0].Leaf // load sets it
	st.Source.TLS = &stats.SourceTLS{Subject: leaf.Subject.String(), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
	now := s.now()
	var whys []string
	var since time.Time
	soon := leaf.NotAfter.Add(-expiryWindow(leaf))
	if soon.Before(cur.at) { // loaded in its last stretch already
		soon = cur.at
	}
	switch {
	case now.After(leaf.NotAfter):
		whys = append(whys, fmt.Sprintf("TLS certificate %s expired at %s: clients that verify it fail their handshake",
			s.opts.Cert, leaf.NotAfter.UTC().Format(time.RFC3339)))
		since = leaf.NotAfter
	case !now.Before(soon):
		whys = append(whys, fmt.Sprintf("TLS certificate %s expires at %s, in %s", s.opts.Cert,
			leaf.NotAfter.UTC().Format(time.RFC3339), leaf.NotAfter.Sub(now).Round(time.Minute)))
		since = soon
	}
	if r := s.refused.Load(); r != nil {
		whys = append(whys, fmt.Sprintf("TLS files refused on reload (the certificate loaded before still serves; "+
			"a restart with these files would fail): %s", r.err))
		if since.IsZero() || r.since.Before(since) {
			since = r.since
		}
	}
	if len(whys) > 0 {
		st.Health.Worsen(stats.HealthDegraded, since, strings.Join(whys, "; "))
	}
}

// rawConn returns the TCP connection under a TLS one (and under its
// progressConn).
func rawConn(nc net.Conn) net.Conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if pc, ok := nc.(*progressConn); ok {
		nc = pc.Conn
	}
	return nc
}

// closeWrite shuts the write side of nc: over TLS, a close_notify alert
// and then the TCP half-close, so the client reads EOF either way.
func closeWrite(nc net.Conn) {
	if tc, ok := nc.(*tls.Conn); ok {
		tc.CloseWrite()
	}
	if tc, ok := rawConn(nc).(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// handshake runs the TLS handshake, bounded by tlsHandshakeTimeout, and
// reports whether it succeeded. A failure (no TLS at all, an old version,
// no or a bad client certificate under mutual TLS) is a refused
// connection and a protocol error: counted, logged at most once a second,
// and the connection closed without more words.
func (c *conn) handshake(tc *tls.Conn) bool {
	s := c.s
	tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	err := errors.New("input stopped")
	if !s.stopping.Load() { // StopInput sets stopping, then a deadline in the past: one of us sees the other
		err = tc.Handshake()
	}
	tc.SetDeadline(time.Time{})
	if err == nil {
		c.served.Store(true)
		s.cnt.accepted.Add(1)
		st := tc.ConnectionState()
		fs := []zap.Field{zap.String("tls_version", tls.VersionName(st.Version))}
		if len(st.PeerCertificates) > 0 {
			fs = append(fs, zap.String("client", st.PeerCertificates[0].Subject.String()))
		}
		c.log.Debug("TLS handshake done", fs...)
		return true
	}
	if !s.stopping.Load() {
		s.cnt.refused.Add(1)
		s.protocolError(c.log, causeTLSHandshake, err)
	}
	c.mu.Lock()
	c.to(connDead)
	c.mu.Unlock()
	c.nc.Close()
	return false
}
