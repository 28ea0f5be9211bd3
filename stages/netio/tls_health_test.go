package netio_test

// This file tests what an operator sees of a TLS source's certificate
// through a pipeline's admin endpoint: a refused reload in /stats'
// health, and the certificate's expiry in /metrics.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/certtest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stats"
)

// tlsAdminPipeline starts a pipeline named t with an admin endpoint on
// loopback and two sources, "in" (netio.tcp) and "web" (netio.http), on
// the TLS files of p, looked at every few milliseconds; it returns the
// admin endpoint's base URL.
func tlsAdminPipeline(t *testing.T, p certtest.Pair) string {
	t.Helper()
	reg := stage.NewRegistry()
	if err := netio.Register(reg); err != nil {
		t.Fatal(err)
	}
	// The spec has no key for the reload period: a kind of the test's
	// own sets it on each source before Start.
	for _, name := range []string{netio.Kind, netio.HTTPKind} {
		k, _ := reg.Lookup(name)
		fast := *k
		fast.Name = "test.fast." + name
		fast.NewSource = func(cfg stage.Config, env stage.Env) (stage.Source, error) {
			src, err := k.NewSource(cfg, env)
			if err == nil {
				netio.SetTLSReload(src, 5*time.Millisecond)
			}
			return src, err
		}
		if err := reg.Register(fast); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.Register(stage.Kind{Name: "test.sink", Doc: "finishes events", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
				stage.DoneAll(b, nil)
				return nil
			}), nil
		}}); err != nil {
		t.Fatal(err)
	}
	tlsKey := fmt.Sprintf("{cert: %s, key: %s}", p.CertFile, p.KeyFile)
	yaml := "name: t\nadmin: {listen: 127.0.0.1:0}\nstages:\n" +
		"  in:\n    kind: test.fast.netio.tcp\n    listen: 127.0.0.1:0\n    tls: " + tlsKey + "\n    next: out\n" +
		"  web:\n    kind: test.fast.netio.http\n    listen: 127.0.0.1:0\n    tls: " + tlsKey + "\n    next: out\n" +
		"  out:\n    kind: test.sink\n"
	pc, err := pipeline.Parse("p.yaml", []byte(yaml), reg, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	pl, err := pipeline.New(pc, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := pl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		pl.Stop(ctx)
	})
	return "http://" + pl.AdminAddr()
}

// adminGet returns the body of GET url, failing the test on anything but
// a 200.
func adminGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, b)
	}
	return string(b)
}

// adminStages returns the stages of the pipeline's /stats by name, and
// the raw JSON.
func adminStages(t *testing.T, base string) (map[string]stats.Stage, string) {
	t.Helper()
	raw := adminGet(t, base+"/stats")
	var s struct{ Stages []stats.Stage }
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatalf("/stats: %v: %s", err, raw)
	}
	byName := map[string]stats.Stage{}
	for _, st := range s.Stages {
		byName[st.Name] = st
	}
	return byName, raw
}

// notAfterGauge returns the value of stage's certificate expiry gauge in
// /metrics; ok is false when the series is absent.
func notAfterGauge(t *testing.T, base, stage string) (v float64, ok bool) {
	t.Helper()
	series := `pipeline_source_tls_cert_not_after_seconds{pipeline="t",stage="` + stage + `"} `
	for line := range strings.SplitSeq(adminGet(t, base+"/metrics"), "\n") {
		if rest, found := strings.CutPrefix(line, series); found {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return v, true
		}
	}
	return 0, false
}

// writeAtomically replaces path's content with b at once, as a renewal
// that renames a finished file into place does.
func writeAtomically(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A reload refused (here a certificate file of garbage) makes the source
// read degraded in /stats, naming the file and the error, on netio.tcp
// and netio.http alike, while the refused file is on disk; a good one
// loaded makes it ok again. /metrics has the served certificate's
// not_after as Unix seconds, the old one's while the new is refused. A
// refused reload showed only in the log, and the old certificate served
// on until it expired with the stage ok.
func TestTLSRefusedReloadDegrades(t *testing.T) {
	ca := certtest.NewCA(t, t.TempDir(), "test")
	now := time.Now()
	first := ca.ServerValid(t, "server", now.Add(-time.Hour), now.Add(30*24*time.Hour))
	base := tlsAdminPipeline(t, first)
	sources := []string{"in", "web"}

	gaugeIs := func(name string, want time.Time) bool {
		v, ok := notAfterGauge(t, base, name)
		return ok && v == float64(want.Unix())
	}
	stages, _ := adminStages(t, base)
	for _, name := range sources {
		st := stages[name]
		if st.Health.State != stats.HealthOK || st.Source == nil || st.Source.TLS == nil ||
			!st.Source.TLS.NotAfter.Equal(first.TLS.Leaf.NotAfter) {
			t.Fatalf("%s at start: health %+v, source %+v, want ok and the certificate expiring at %s",
				name, st.Health, st.Source, first.TLS.Leaf.NotAfter)
		}
		if v, ok := notAfterGauge(t, base, name); !ok || v != float64(first.TLS.Leaf.NotAfter.Unix()) {
			t.Fatalf("%s: /metrics' not_after %v (present: %v), want %d", name, v, ok, first.TLS.Leaf.NotAfter.Unix())
		}
	}
	if _, ok := notAfterGauge(t, base, "out"); ok {
		t.Error("/metrics has a certificate expiry for the sink, which has no TLS")
	}

	writeAtomically(t, first.CertFile, []byte("not a certificate\n"))
	var raw string
	poll.Until(t, "both sources degraded by the refused reload", func() bool {
		stages, raw = adminStages(t, base)
		for _, name := range sources {
			h := stages[name].Health
			if h.State != stats.HealthDegraded || !strings.Contains(h.Error, first.CertFile) ||
				!strings.Contains(h.Error, "failed to find any PEM data") {
				return false
			}
		}
		return true
	})
	t.Logf("in's health: %+v", stages["in"].Health)
	key := mustRead(t, first.KeyFile)
	for line := range strings.SplitSeq(string(key), "\n") {
		if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(raw, line) {
			t.Fatalf("/stats holds the private key's text %q: %s", line, raw)
		}
	}
	for _, name := range sources {
		if !gaugeIs(name, first.TLS.Leaf.NotAfter) {
			t.Errorf("%s: while the garbage is refused, /metrics' not_after is not the served certificate's", name)
		}
	}

	renewed := ca.ServerValid(t, "renewed", now.Add(-time.Hour), now.Add(60*24*time.Hour))
	replacePair(t, first, renewed)
	poll.Until(t, "both sources ok, serving the renewal", func() bool {
		stages, _ = adminStages(t, base)
		for _, name := range sources {
			st := stages[name]
			if st.Health.State != stats.HealthOK || st.Source.TLS == nil || st.Source.TLS.Subject != renewed.TLS.Leaf.Subject.String() {
				return false
			}
		}
		return true
	})
	for _, name := range sources {
		if !gaugeIs(name, renewed.TLS.Leaf.NotAfter) {
			v, _ := notAfterGauge(t, base, name)
			t.Errorf("%s: /metrics' not_after %v after the renewal, want %d", name, v, renewed.TLS.Leaf.NotAfter.Unix())
		}
	}
}
