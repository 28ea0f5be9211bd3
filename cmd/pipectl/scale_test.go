package main

// This file tests pipectl scale against a stand-in admin endpoint: what
// it posts, what it prints, and a refusal.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stats"
)

// scale posts what its flags say, with the token, and prints the knobs
// the pipeline answers with; a refusal is an error with the server's
// reason.
func TestScale(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/stages/store/scale" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "no such stage", http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		got = nil
		if err := json.Unmarshal(b, &got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(stats.Stage{Name: "store",
			Pool: stats.Pool{Workers: 8, Concurrency: 2},
			Control: &stats.Control{
				Workers: &stats.Knob{Now: 8, Auto: false, Min: 2, Max: 16},
				Batch:   &stats.Knob{Now: 1024, Auto: true, Min: 1, Max: 1024}}})
	}))
	defer srv.Close()

	code, out, errOut := runCLI(t, "scale", "store", "--addr", srv.URL, "--token", "s3cret", "--workers", "8", "--batch", "auto")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got["workers"] != 8.0 || got["batch"] != "auto" || got["concurrency"] != nil {
		t.Errorf("posted %v, want workers 8 and batch auto only", got)
	}
	if want := "store: workers 8 (pinned), concurrency 2, batch 1024 (auto, 1 to 1024)\n"; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}

	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"scale", "store", "--addr", srv.URL, "--token", "s3cret"}, "say what to change"},
		{[]string{"scale", "store", "--addr", srv.URL, "--concurrency", "auto"}, "has no controller"},
		{[]string{"scale", "store", "--addr", srv.URL, "--workers", "lots"}, `want a whole number or auto, got "lots"`},
		{[]string{"scale", "store", "--addr", srv.URL, "--workers", "2"}, "401 Unauthorized: unauthorized"},
		{[]string{"scale", "nope", "--addr", srv.URL, "--token", "s3cret", "--workers", "2"}, "404 Not Found: no such stage"},
		{[]string{"scale", "--addr", srv.URL, "--workers", "2"}, "accepts 1 arg"},
	} {
		code, _, errOut := runCLI(t, c.args...)
		if code == 0 || !strings.Contains(errOut, c.says) {
			t.Errorf("%v: exit %d, stderr %q; want a failure saying %q", c.args, code, errOut, c.says)
		}
	}
}

// A stage that cannot be resized (a source's fixed pool) is refused with
// the runtime's reason and what to do instead.
func TestScaleFixedPool(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `stage "accept": `+engine.ErrNotResizable.Error(), http.StatusConflict)
	}))
	defer srv.Close()
	code, _, errOut := runCLI(t, "scale", "accept", "--addr", srv.URL, "--workers", "8")
	if code == 0 || !strings.Contains(errOut, "409 Conflict") || !strings.Contains(errOut, "show as fixed") {
		t.Errorf("scale of a fixed pool: exit %d, %q; want a refusal that says the pool is fixed", code, errOut)
	}
}
