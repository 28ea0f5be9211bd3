//go:build unix

package netio_test

// This file tests that SIGHUP reloads the certificate.

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// SIGHUP reloads the certificate at once, whatever the interval.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	f := newTLSFiles(t)
	r := newRig(t, withReload(map[string]any{"tls": stage.NewConfig(map[string]any{"cert": f.server.CertFile, "key": f.server.KeyFile})}, time.Hour),
		stage.Settings{Workers: 1}, nil)
	addr := r.src.Addr().String()
	replacePair(t, f.server, f.ca.Server(t, "after-hup"))
	if got := serverName(t, addr, f.ca.Pool()); got != "server" {
		t.Fatalf("reloaded before SIGHUP: %q", got)
	}
	// The source catches SIGHUP while it runs, so this does not end the test.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the certificate after SIGHUP", func() bool { return serverName(t, addr, f.ca.Pool()) == "after-hup" })
	e := r.waitLog("TLS certificate reloaded")
	if f, _ := fieldOf(e, "trigger"); f.String != "SIGHUP" {
		t.Errorf("reload trigger %q", f.String)
	}
}
