// This file tests that StopDetached removes only a socket directory
// pgtemp made.

package pgtemp

import (
	"os"
	"path/filepath"
	"testing"
)

// StopDetached removes the socket directory a postmaster.pid names only
// when it is one setup makes: the file is the server's user's to write,
// and a prefix check let "/tmp/pgtemp-sock-x/../../etc" through to a
// RemoveAll run as root.
func TestOwnSocketDir(t *testing.T) {
	own, err := os.MkdirTemp("/tmp", "pgtemp-sock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(own)
	link := filepath.Join("/tmp", "pgtemp-sock-link-"+filepath.Base(t.TempDir()))
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(link)
	for dir, want := range map[string]bool{
		own:                   true,
		own + "/../../etc":    false,
		own + "/..":           false,
		own + "/sub":          false, // not a directory setup makes (nor there)
		link:                  false, // a symlink to elsewhere
		"/etc":                false,
		"/tmp/pgtemp-sock-":   false, // does not exist
		"":                    false,
		"/var/pgtemp-sock-ab": false,
	} {
		if got := ownSocketDir(dir); got != want {
			t.Errorf("ownSocketDir(%q) = %v, want %v", dir, got, want)
		}
	}
}
