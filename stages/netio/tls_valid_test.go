package netio

// This file tests a certificate's validity over time: a renewal loaded
// once valid, health near and past expiry, and clock skew.

import (
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/certtest"
	"github.com/stagedserver/seda/stats"
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
	served := func() string { return s.cur.Load().conf.Certificates[0].Leaf.Subject.CommonName }
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

// A certificate that expires while it serves makes the source's health
// degraded, saying so; within a week of expiry it is degraded already.
func TestTLSHealthNearAndPastExpiry(t *testing.T) {
	ca := certtest.NewCA(t, t.TempDir(), "test")
	start := time.Now()
	p := ca.ServerValid(t, "server", start.Add(-time.Hour), start.Add(30*24*time.Hour))
	s, err := newCertStore(tlsOptions{Cert: p.CertFile, Key: p.KeyFile}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	notAfter := p.TLS.Leaf.NotAfter
	for _, tc := range []struct {
		at    time.Time
		state string
		why   string
		since time.Time
	}{
		{start, stats.HealthOK, "", time.Time{}},
		{notAfter.Add(-certExpirySoon + time.Minute), stats.HealthDegraded, "expires at", notAfter.Add(-certExpirySoon)},
		{notAfter.Add(time.Minute), stats.HealthDegraded, "expired at", notAfter},
	} {
		s.now = func() time.Time { return tc.at }
		st := stats.Stage{Health: stats.Health{State: stats.HealthOK}, Source: &stats.Source{}}
		s.figures(&st)
		if st.Health.State != tc.state || !strings.Contains(st.Health.Error, tc.why) ||
			tc.state != stats.HealthOK && !st.Health.Since.Equal(tc.since) {
			t.Errorf("at %s: health %+v, want %s (%q) since %s", tc.at, st.Health, tc.state, tc.why, tc.since)
		}
		if st.Source.TLS == nil || !st.Source.TLS.NotAfter.Equal(notAfter) {
			t.Errorf("at %s: figures %+v, want not_after %s", tc.at, st.Source.TLS, notAfter)
		}
	}
	// A stage already down stays down: the certificate does not hide it.
	st := stats.Stage{Health: stats.Health{State: stats.HealthDown, Error: "db"}, Source: &stats.Source{}}
	s.figures(&st)
	if st.Health.State != stats.HealthDown || st.Health.Error != "db" {
		t.Errorf("health %+v, want down as it was", st.Health)
	}
}

// A short-lived certificate (Let's Encrypt's six-day profile, step-ca's
// 24 hours) reads ok while fresh and degraded in the last third of its
// life, not from the moment it loads as it would a week before expiry.
func TestTLSHealthShortLived(t *testing.T) {
	ca := certtest.NewCA(t, t.TempDir(), "test")
	now := time.Now()
	for _, life := range []time.Duration{6 * 24 * time.Hour, 24 * time.Hour} {
		p := ca.ServerValid(t, "short", now.Add(-time.Minute), now.Add(-time.Minute+life))
		s, err := newCertStore(tlsOptions{Cert: p.CertFile, Key: p.KeyFile}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		leaf := p.TLS.Leaf
		lastThird := leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 3)
		for _, tc := range []struct {
			at    time.Time
			state string
		}{
			{now, stats.HealthOK},
			{lastThird.Add(-time.Minute), stats.HealthOK},
			{lastThird.Add(time.Minute), stats.HealthDegraded},
		} {
			s.now = func() time.Time { return tc.at }
			st := stats.Stage{Health: stats.Health{State: stats.HealthOK}, Source: &stats.Source{}}
			s.figures(&st)
			if st.Health.State != tc.state ||
				tc.state == stats.HealthDegraded && (!st.Health.Since.Equal(lastThird) || !strings.Contains(st.Health.Error, "expires at")) {
				t.Errorf("valid for %s, at %s: health %+v, want %s (since %s when degraded)", life, tc.at, st.Health, tc.state, lastThird)
			}
		}
	}
}

// A certificate loaded in the last third of its life reads degraded since
// it was loaded, not since a moment before the source served it.
func TestTLSHealthDegradedSinceLoad(t *testing.T) {
	ca := certtest.NewCA(t, t.TempDir(), "test")
	now := time.Now()
	p := ca.ServerValid(t, "late", now.Add(-20*time.Hour), now.Add(4*time.Hour))
	before := time.Now()
	s, err := newCertStore(tlsOptions{Cert: p.CertFile, Key: p.KeyFile}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	st := stats.Stage{Health: stats.Health{State: stats.HealthOK}, Source: &stats.Source{}}
	s.figures(&st)
	if st.Health.State != stats.HealthDegraded || st.Health.Since.Before(before) || st.Health.Since.After(after) {
		t.Errorf("health %+v, want degraded since the load, between %s and %s", st.Health, before, after)
	}
}

// On reload, a renewal valid from a few seconds from now is loaded at
// once (a minute of clock skew is allowed), and one valid from later is
// refused and loaded once it is within that minute of valid.
func TestTLSReloadWithinClockSkew(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "test")
	cur := ca.Server(t, "server")
	s, err := newCertStore(tlsOptions{Cert: cur.CertFile, Key: cur.KeyFile, ReloadEvery: time.Hour}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	served := func() string { return s.cur.Load().conf.Certificates[0].Leaf.Subject.CommonName }
	start := time.Now()
	s.now = func() time.Time { return start }

	ahead := ca.ServerValid(t, "ahead", start.Add(5*time.Second), start.Add(48*time.Hour))
	install(t, ahead, cur)
	s.tick()
	if got := served(); got != "ahead" {
		t.Fatalf("a renewal valid from 5 s from now is not loaded: serving %q", got)
	}

	later := ca.ServerValid(t, "later", start.Add(time.Hour), start.Add(48*time.Hour))
	install(t, later, cur)
	s.tick()
	if got := served(); got != "ahead" {
		t.Fatalf("a renewal valid from an hour from now was loaded: serving %q", got)
	}
	at := later.TLS.Leaf.NotBefore.Add(-certSkew)
	s.now = func() time.Time { return at.Add(-time.Second) }
	s.tick()
	if got := served(); got != "ahead" {
		t.Fatalf("a renewal more than a minute from valid was loaded: serving %q", got)
	}
	s.now = func() time.Time { return at }
	s.tick()
	if got := served(); got != "later" {
		t.Fatalf("a renewal a minute from valid is not loaded: serving %q", got)
	}
}

// install copies p's certificate and key over dst's files, as a renewal
// does.
func install(t *testing.T, p, dst certtest.Pair) {
	t.Helper()
	for _, f := range [][2]string{{p.CertFile, dst.CertFile}, {p.KeyFile, dst.KeyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A refused reload reads degraded, since the first refusal, until a
// reload succeeds; beside a certificate near expiry both reasons show,
// since the earlier of the two.
func TestTLSRefusalDegradesUntilLoaded(t *testing.T) {
	ca := certtest.NewCA(t, t.TempDir(), "test")
	start := time.Now()
	cur := ca.ServerValid(t, "server", start.Add(-time.Hour), start.Add(30*24*time.Hour))
	s, err := newCertStore(tlsOptions{Cert: cur.CertFile, Key: cur.KeyFile, ReloadEvery: time.Hour}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	health := func(at time.Time) stats.Health {
		s.now = func() time.Time { return at }
		st := stats.Stage{Health: stats.Health{State: stats.HealthOK}, Source: &stats.Source{}}
		s.figures(&st)
		return st.Health
	}
	garbage := func(at time.Time, text string) {
		if err := os.WriteFile(cur.CertFile, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		s.now = func() time.Time { return at }
		s.tick()
	}
	refusedAt := start.Add(time.Minute)
	garbage(refusedAt, "garbage\n")
	if h := health(refusedAt.Add(time.Minute)); h.State != stats.HealthDegraded || !h.Since.Equal(refusedAt) ||
		!strings.Contains(h.Error, "refused on reload") || !strings.Contains(h.Error, cur.CertFile) {
		t.Errorf("after a refused reload: health %+v, want degraded since %s, naming %s", h, refusedAt, cur.CertFile)
	}
	garbage(refusedAt.Add(time.Hour), "other garbage\n") // refused again: still since the first
	nearExpiry := cur.TLS.Leaf.NotAfter.Add(-time.Hour)
	if h := health(nearExpiry); h.State != stats.HealthDegraded || !h.Since.Equal(refusedAt) ||
		!strings.Contains(h.Error, "expires at") || !strings.Contains(h.Error, "refused on reload") {
		t.Errorf("refused, and near expiry: health %+v, want degraded since %s, saying both", h, refusedAt)
	}
	renewed := ca.ServerValid(t, "renewed", start.Add(-time.Hour), start.Add(60*24*time.Hour))
	install(t, renewed, cur)
	s.now = func() time.Time { return start.Add(2 * time.Hour) }
	s.tick()
	if h := health(start.Add(3 * time.Hour)); h.State != stats.HealthOK || h.Error != "" {
		t.Errorf("after a good reload: health %+v, want ok", h)
	}
}
