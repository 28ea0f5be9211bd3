package netio

// This file tests that a key file replaced by one of the same size and
// time is seen as a change.

import (
	"os"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/certtest"
)

// A key replaced by another of the same size, with the same modification
// time (written within one tick of the file system's clock), is a change:
// a renewal that writes the certificate and then the key, looked at
// between the two writes, was refused (new certificate, old key) and then
// never tried again, and TestTLSReload timed out now and then.
func TestTLSSameSizeSameTimeIsAChange(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "test")
	cur, next := ca.Server(t, "server"), ca.Server(t, "renewed")
	s, err := newCertStore(tlsOptions{Cert: cur.CertFile, Key: cur.KeyFile, ReloadEvery: time.Hour}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	replace := func(from, to string) {
		t.Helper()
		fi, err := os.Stat(to)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(to, fi.ModTime(), fi.ModTime()); err != nil { // one clock tick
			t.Fatal(err)
		}
	}
	replace(next.CertFile, cur.CertFile)
	if !s.changed() {
		t.Fatal("a new certificate is no change")
	}
	s.reload("files changed") // between the two writes: refused, old key
	if s.changed() {
		t.Fatal("changed right after a reload")
	}
	if fi, _ := os.Stat(next.KeyFile); fi.Size() != mustSize(t, cur.KeyFile) {
		t.Fatal("the two keys differ in size: the case needs equal sizes (certtest makes ECDSA P-256 keys, all one size)")
	}
	replace(next.KeyFile, cur.KeyFile)
	if !s.changed() {
		t.Fatal("a key replaced by one of the same size at the same modification time is no change: the matching pair is never loaded")
	}
}

func mustSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
