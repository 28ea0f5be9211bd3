package netio

import (
	"os"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/certtest"
)

// A renewal not yet valid is refused, and loaded once it is valid, though
// the files do not change again: a refusal otherwise waits for the next
// change, which for a certificate issued ahead of time never comes.
func TestTLSNotYetValidIsLoadedOnceValid(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "test")
	cur := ca.Server(t, "server")
	s, err := newCertStore(tlsOptions{Cert: cur.CertFile, Key: cur.KeyFile, ReloadEvery: time.Hour}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	early := ca.ServerValid(t, "early", start.Add(time.Hour), start.Add(48*time.Hour))
	for _, p := range [][2]string{{early.CertFile, cur.CertFile}, {early.KeyFile, cur.KeyFile}} {
		b, err := os.ReadFile(p[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	served := func() string { return s.conf.Load().Certificates[0].Leaf.Subject.CommonName }
	s.now = func() time.Time { return start }
	s.tick()
	if got := served(); got != "server" {
		t.Fatalf("a certificate not yet valid was loaded: serving %q", got)
	}
	s.tick() // no change, not yet valid: nothing
	if got := served(); got != "server" {
		t.Fatalf("serving %q", got)
	}
	s.now = func() time.Time { return start.Add(time.Hour + time.Second) }
	s.tick()
	if got := served(); got != "early" {
		t.Fatalf("once valid, the renewal is not loaded: serving %q", got)
	}
}
