package netio_test

// This file tests TLS on netio.tcp: acks over TLS, mutual TLS, reloading
// the certificate, bad files, YAML, a client not reading, and a
// certificate's validity at start, at reload and in stats.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/certtest"
	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stats"
)

// tlsFiles is a CA, a server certificate and a client certificate.
type tlsFiles struct {
	ca     *certtest.CA
	server certtest.Pair
	client certtest.Pair
}

func newTLSFiles(t *testing.T) tlsFiles {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "test")
	return tlsFiles{ca: ca, server: ca.Server(t, "server"), client: ca.Client(t, "client")}
}

// dialTLS connects a wire client over TLS configured by conf (nil: no
// client certificate), trusting roots; the error is the handshake's.
func dialTLS(t *testing.T, addr string, roots *x509.CertPool, conf *tls.Config) (*wire.Client, error) {
	t.Helper()
	if conf == nil {
		conf = &tls.Config{}
	}
	conf.RootCAs = roots
	tc, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	// With TLS 1.3 a refused client certificate shows on the first read:
	// the handshake completes on the client's side before the server's
	// verdict. A write and a read make it show here.
	c := wire.NewClient(tc, wire.Options{})
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// TLS on netio.tcp: records and acks cross encrypted, and the client reads
// EOF after its last ack when it half-closes.
func TestTLSAcks(t *testing.T) {
	f := newTLSFiles(t)
	r := newRig(t, map[string]any{"tls": stage.NewConfig(map[string]any{"cert": f.server.CertFile, "key": f.server.KeyFile})}, stage.Settings{Workers: 1}, nil)
	c, err := dialTLS(t, r.src.Addr().String(), f.ca.Pool(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		c.Send(fmt.Appendf(nil, "rec %d", i))
	}
	c.Send([]byte("a bad one"))
	c.Flush()
	if err := c.WaitTimeout(wait); err != nil || c.Acked() != 101 || len(c.Nacks()) != 1 {
		t.Fatalf("acked %d, nacks %v, %v", c.Acked(), c.Nacks(), err)
	}
	c.CloseWrite()
	waitEOF(t, c)
	st := r.in.Stage().Stats().Source
	if st.Connections.Accepted != 1 || st.Connections.Refused != 0 || len(st.ProtocolErrors) != 0 {
		t.Fatalf("source counters %+v", *st)
	}
}

// With client_ca, a client with a certificate the CA signed is served;
// one without a certificate, with one another CA signed, or below TLS 1.2
// is refused in the handshake, counted and logged.
func TestMutualTLS(t *testing.T) {
	f := newTLSFiles(t)
	other := certtest.NewCA(t, t.TempDir(), "other").Client(t, "stranger")
	r := newRig(t, map[string]any{"tls": stage.NewConfig(map[string]any{"cert": f.server.CertFile, "key": f.server.KeyFile, "client_ca": f.ca.CertFile})},
		stage.Settings{Workers: 1}, nil)
	addr := r.src.Addr().String()

	c, err := dialTLS(t, addr, f.ca.Pool(), &tls.Config{Certificates: []tls.Certificate{f.client.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	c.Send([]byte("hello"))
	c.Flush()
	if err := c.WaitTimeout(wait); err != nil || c.Acked() != 1 {
		t.Fatalf("client with a certificate: acked %d, %v", c.Acked(), err)
	}

	for i, conf := range []*tls.Config{
		{}, // no certificate
		{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &other.TLS, nil }}, // another CA's
		{Certificates: []tls.Certificate{f.client.TLS}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
	} {
		c, err := dialTLS(t, addr, f.ca.Pool(), conf)
		if err == nil {
			c.Send([]byte("let me in"))
			c.Flush()
			err = c.WaitTimeout(wait)
			if err == nil && c.Acked() > 0 {
				t.Fatalf("client %d was served", i)
			}
		}
		t.Logf("client %d refused: %v", i, err)
	}
	poll.Until(t, "3 refused handshakes counted", func() bool {
		return r.in.Stage().Stats().Source.ProtocolErrors["tls_handshake"] == 3
	})
	st := r.in.Stage().Stats().Source
	if st.Connections.Refused != 3 || st.Connections.Accepted != 1 {
		t.Fatalf("source counters %+v", *st)
	}
	e := r.waitLog("protocol error")
	if f, _ := fieldOf(e, "cause"); f.String != "tls_handshake" {
		t.Errorf("logged cause %q", f.String)
	}
	if got := r.payloads(); len(got) != 1 {
		t.Errorf("sink saw %q, want only the served client's record", got)
	}
}

// serverName returns the common name of the certificate the server
// presents now.
func serverName(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	return tc.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// replacePair writes next's files over cur's.
func replacePair(t *testing.T, cur, next certtest.Pair) {
	t.Helper()
	for _, p := range [][2]string{{next.CertFile, cur.CertFile}, {next.KeyFile, cur.KeyFile}} {
		b, err := os.ReadFile(p[0])
		if err != nil {
			t.Fatal(err)
		}
		tmp := p[1] + ".new"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// The certificate is reloaded without a restart when its files change,
// and on SIGHUP; a broken pair keeps the one loaded before.
func TestTLSReload(t *testing.T) {
	f := newTLSFiles(t)
	r := newRig(t, withReload(map[string]any{"tls": stage.NewConfig(map[string]any{"cert": f.server.CertFile, "key": f.server.KeyFile})}, 5*time.Millisecond),
		stage.Settings{Workers: 1}, nil)
	addr := r.src.Addr().String()
	if got := serverName(t, addr, f.ca.Pool()); got != "server" {
		t.Fatalf("server presents %q", got)
	}
	replacePair(t, f.server, f.ca.Server(t, "renewed"))
	poll.Until(t, "the renewed certificate", func() bool { return serverName(t, addr, f.ca.Pool()) == "renewed" })

	// A key that does not match: logged, the renewed certificate stays.
	// (Replacing the pair, one file and then the other, may have logged
	// one already: the watcher can see the new certificate with the old
	// key.)
	warnings := func() int { return r.logs.FilterMessageSnippet("TLS files not reloaded").Len() }
	before := warnings()
	other := f.ca.Server(t, "mismatch")
	tmp := f.server.KeyFile + ".new" // replaced whole, so the watcher sees one change
	if err := os.WriteFile(tmp, mustRead(t, other.KeyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.server.KeyFile); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the warning", func() bool { return warnings() > before })
	if got := serverName(t, addr, f.ca.Pool()); got != "renewed" {
		t.Fatalf("after a broken reload the server presents %q", got)
	}
	// That broken files are not tried again until they change again is
	// TestTLSSameSizeSameTimeIsAChange's (no change right after a reload),
	// which needs no wait for the watcher's later looks.
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Files that do not load fail Start with the field named; a missing key
// fails New.
func TestTLSBadFiles(t *testing.T) {
	f := newTLSFiles(t)
	if _, err := newSource(netio.Kind, map[string]any{"listen": "127.0.0.1:0", "tls": stage.NewConfig(map[string]any{"cert": f.server.CertFile})}); err == nil ||
		!strings.Contains(err.Error(), "tls.key") {
		t.Errorf("New without a key: %v", err)
	}
	for _, tc := range []struct {
		tls  map[string]any
		want string
	}{
		{map[string]any{"cert": filepath.Join(t.TempDir(), "none.pem"), "key": f.server.KeyFile}, "tls.cert"},
		{map[string]any{"cert": f.server.CertFile, "key": f.client.KeyFile}, "tls.cert"},
		{map[string]any{"cert": f.server.CertFile, "key": f.server.KeyFile, "client_ca": f.server.KeyFile}, "tls.client_ca"},
	} {
		src, err := newSource(netio.Kind, map[string]any{"listen": "127.0.0.1:0", "tls": stage.NewConfig(tc.tls)})
		if err != nil {
			t.Fatal(err)
		}
		_, lc := engine.NewSourceStage(stage.Settings{Name: "in", Kind: netio.Kind, Workers: 1, Concurrency: 1, Capacity: 8}, src, nil)
		err = lc.Start(context.Background())
		if err == nil {
			lc.Close()
			t.Errorf("%+v: started", tc.tls)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want it to name %s", tc.tls, err, tc.want)
		}
	}
}

// The YAML key is tls: {cert, key, client_ca}, read through the loader.
func TestTLSFromYAML(t *testing.T) {
	f := newTLSFiles(t)
	yaml := fmt.Sprintf("name: t\nstages:\n  in:\n    kind: netio.tcp\n    listen: 127.0.0.1:0\n"+
		"    tls: {cert: %s, key: %s, client_ca: %s}\n    next: out\n  out:\n    kind: test.sink\n",
		f.server.CertFile, f.server.KeyFile, f.ca.CertFile)
	p, err := yamlPipeline(t, yaml)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(ctx)
	addr := p.Addr("in").String()
	c, err := dialTLS(t, addr, f.ca.Pool(), &tls.Config{Certificates: []tls.Certificate{f.client.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	c.Send([]byte("over mutual TLS"))
	c.Flush()
	if err := c.WaitTimeout(wait); err != nil || c.Acked() != 1 {
		t.Fatalf("acked %d, %v", c.Acked(), err)
	}
	c.Close()
	if c, err := dialTLS(t, addr, f.ca.Pool(), nil); err == nil {
		c.Send([]byte("no certificate"))
		c.Flush()
		if c.WaitTimeout(wait) == nil {
			t.Fatal("a client without a certificate was served")
		}
	}
}

// A TLS client that stops reading is cut off when a write of its nacks
// runs out of write_timeout, and the log says why truly: TLS cannot go on
// after a cut write. It said the kernel took nothing, which after a
// partly taken write was not so.
func TestTLSClientNotReadingIsCutOff(t *testing.T) {
	f := newTLSFiles(t)
	reason := errors.New("refused because " + strings.Repeat("this reason is long ", 8))
	r := newRig(t, map[string]any{
		"tls":                stage.NewConfig(map[string]any{"cert": f.server.CertFile, "key": f.server.KeyFile}),
		"max_pending_output": int64(256), "socket_buffer": int64(4096), "write_timeout": 300 * time.Millisecond,
	}, stage.Settings{Workers: 2, Concurrency: 2},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			for i, ev := range b {
				if i%2 == 0 {
					ev.Done(reason) // every other one: nacks one line each, not ranges
				} else {
					ev.Done(nil)
				}
			}
			return nil
		})
	raw, err := net.Dial("tcp", r.src.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.(*net.TCPConn).SetReadBuffer(4096)
	deaf := tls.Client(raw, &tls.Config{RootCAs: f.ca.Pool(), ServerName: "localhost"})
	deaf.SetDeadline(time.Now().Add(wait))
	if err := deaf.Handshake(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b bytes.Buffer
		for i := range 20000 { // ~2 MB of nacks: far more than the socket buffers hold
			fmt.Fprintf(&b, "deaf %d\n", i)
		}
		deaf.Write(b.Bytes()) // fails once the server cuts it off; that is the point
	}()
	e := r.waitLog("not reading")
	why, _ := fieldOf(e, "reason")
	if !strings.Contains(why.String, "took nothing for write_timeout 300ms") {
		t.Fatalf("cut-off reason %q, want it to say the kernel took nothing for write_timeout 300ms", why.String)
	}
	raw.Close()
	<-done
}

// A renewal that drops in an expired certificate is refused: the warning
// names it expired, and the certificate loaded before still serves. It
// was loaded, logged as reloaded, and every handshake failed as if the
// clients were at fault.
func TestTLSReloadRefusesExpired(t *testing.T) {
	f := newTLSFiles(t)
	r := newRig(t, withReload(map[string]any{"tls": stage.NewConfig(map[string]any{"cert": f.server.CertFile, "key": f.server.KeyFile})}, 5*time.Millisecond),
		stage.Settings{Workers: 1}, nil)
	addr := r.src.Addr().String()
	if got := serverName(t, addr, f.ca.Pool()); got != "server" {
		t.Fatalf("server presents %q", got)
	}
	now := time.Now()
	replacePair(t, f.server, f.ca.ServerValid(t, "expired", now.Add(-48*time.Hour), now.Add(-24*time.Hour)))
	// The watcher may first see the new certificate with the old key
	// (refused as a mismatch); it sees the whole pair later.
	poll.Until(t, "the expired certificate refused, or loaded", func() bool {
		for _, e := range r.logs.All() {
			if e.Message == "TLS certificate reloaded" ||
				e.Message == "TLS files not reloaded; keeping the certificate loaded before" && strings.Contains(fmt.Sprint(e.ContextMap()["error"]), "expired") {
				return true
			}
		}
		return false
	})
	if n := r.logs.FilterMessage("TLS certificate reloaded").Len(); n != 0 {
		t.Fatalf("the expired certificate was loaded (%d reloads logged)", n)
	}
	if got := serverName(t, addr, f.ca.Pool()); got != "server" {
		t.Fatalf("after an expired renewal the server presents %q", got)
	}
	if tl := r.in.Stage().Stats().Source.TLS; tl == nil || !tl.NotAfter.Equal(f.server.TLS.Leaf.NotAfter) {
		t.Fatalf("/stats shows the certificate %+v, want the one still served, expiring at %s", tl, f.server.TLS.Leaf.NotAfter)
	}
}

// A certificate expired or not yet valid fails Start, naming the stage,
// the field, the file and the dates, on netio.tcp and netio.http alike:
// a source started with it would refuse every client that verifies it.
func TestTLSStartOutsideValidityFails(t *testing.T) {
	ca := certtest.NewCA(t, t.TempDir(), "test")
	now := time.Now()
	for _, tc := range []struct {
		pair certtest.Pair
		want string
	}{
		{ca.ServerValid(t, "expired", now.Add(-48*time.Hour), now.Add(-24*time.Hour)), "is expired"},
		{ca.ServerValid(t, "early", now.Add(24*time.Hour), now.Add(48*time.Hour)), "is not yet valid"},
	} {
		for _, kind := range []string{netio.Kind, netio.HTTPKind} {
			src, err := newSource(kind, map[string]any{"listen": "127.0.0.1:0",
				"tls": stage.NewConfig(map[string]any{"cert": tc.pair.CertFile, "key": tc.pair.KeyFile})})
			if err != nil {
				t.Fatal(err)
			}
			_, lc := engine.NewSourceStage(stage.Settings{Name: "in", Kind: kind, Workers: 1, Concurrency: 1, Capacity: 8}, src, nil)
			err = lc.Start(context.Background())
			if err == nil {
				lc.Close()
				t.Errorf("%s with %s: started", kind, tc.pair.CertFile)
				continue
			}
			leaf := tc.pair.TLS.Leaf
			for _, w := range []string{`stage "in"`, "tls.cert", tc.pair.CertFile, tc.want,
				leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339)} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %v, want it to say %s", kind, err, w)
				}
			}
		}
	}
}

// /stats shows the certificate served, its not_after among them, and
// the source's health turns degraded within a week of it, or in the last
// third of a shorter life: an alert can come before the handshakes fail.
func TestTLSStatsShowCertificate(t *testing.T) {
	ca := certtest.NewCA(t, t.TempDir(), "test")
	now := time.Now()
	for _, tc := range []struct {
		pair   certtest.Pair
		health string
	}{
		{ca.ServerValid(t, "month", now.Add(-time.Hour), now.Add(30*24*time.Hour)), stats.HealthOK},
		{ca.ServerValid(t, "day", now.Add(-time.Hour), now.Add(23*time.Hour)), stats.HealthOK},
		{ca.ServerValid(t, "day-late", now.Add(-20*time.Hour), now.Add(4*time.Hour)), stats.HealthDegraded},
	} {
		for _, kind := range []string{netio.Kind, netio.HTTPKind} {
			src, err := newSource(kind, listening(map[string]any{"tls": stage.NewConfig(map[string]any{"cert": tc.pair.CertFile, "key": tc.pair.KeyFile})}))
			if err != nil {
				t.Fatal(err)
			}
			r := startRig(t, src, stage.Settings{Name: "in", Kind: kind, Workers: 1, Concurrency: 1, Capacity: 8}, stage.Settings{Workers: 1}, nil)
			st := r.in.Stage().Stats()
			leaf := tc.pair.TLS.Leaf
			if tl := st.Source.TLS; tl == nil || !tl.NotAfter.Equal(leaf.NotAfter) || tl.Subject != leaf.Subject.String() {
				t.Errorf("%s: /stats shows the certificate %+v, want %s expiring at %s", kind, tl, leaf.Subject, leaf.NotAfter)
			}
			b, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			if want := `"not_after":"` + leaf.NotAfter.Format(time.RFC3339); !strings.Contains(string(b), want) {
				t.Errorf("%s: /stats JSON %s, want it to hold %s", kind, b, want)
			}
			if st.Health.State != tc.health || (tc.health != stats.HealthOK && !strings.Contains(st.Health.Error, "expires at")) {
				t.Errorf("%s with a certificate expiring at %s: health %+v, want %s", kind, leaf.NotAfter, st.Health, tc.health)
			}
		}
	}
}

// A certificate valid from a few seconds from now, as an issuer whose
// clock runs ahead dates it, starts the source on netio.tcp and
// netio.http alike (a minute of clock skew is allowed); one valid from
// two minutes from now still fails Start.
func TestTLSStartWithinClockSkew(t *testing.T) {
	ca := certtest.NewCA(t, t.TempDir(), "test")
	now := time.Now()
	ahead := ca.ServerValid(t, "ahead", now.Add(5*time.Second), now.Add(90*24*time.Hour))
	beyond := ca.ServerValid(t, "beyond", now.Add(2*time.Minute), now.Add(90*24*time.Hour))
	for _, kind := range []string{netio.Kind, netio.HTTPKind} {
		src, err := newSource(kind, listening(map[string]any{"tls": stage.NewConfig(map[string]any{"cert": ahead.CertFile, "key": ahead.KeyFile})}))
		if err != nil {
			t.Fatal(err)
		}
		r := startRig(t, src, stage.Settings{Name: "in", Kind: kind, Workers: 1, Concurrency: 1, Capacity: 8}, stage.Settings{Workers: 1}, nil)
		if tl := r.in.Stage().Stats().Source.TLS; tl == nil || tl.Subject != ahead.TLS.Leaf.Subject.String() {
			t.Errorf("%s: /stats shows the certificate %+v, want %s", kind, tl, ahead.TLS.Leaf.Subject)
		}

		src, err = newSource(kind, map[string]any{"listen": "127.0.0.1:0",
			"tls": stage.NewConfig(map[string]any{"cert": beyond.CertFile, "key": beyond.KeyFile})})
		if err != nil {
			t.Fatal(err)
		}
		_, lc := engine.NewSourceStage(stage.Settings{Name: "in2", Kind: kind, Workers: 1, Concurrency: 1, Capacity: 8}, src, nil)
		if err := lc.Start(context.Background()); err == nil {
			lc.Close()
			t.Errorf("%s with a certificate valid from two minutes from now: started", kind)
		} else if !strings.Contains(err.Error(), "is not yet valid") {
			t.Errorf("%s: %v, want it to say the certificate is not yet valid", kind, err)
		}
	}
}
