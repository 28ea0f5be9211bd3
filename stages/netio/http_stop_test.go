package netio_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// A forced stop (Drain's deadline passed, then Close) answers every
// request still waiting for its records 503 with Retry-After, as Close
// promises: the records are left for the clients to resend, and a client
// that saw its connection cut instead would not know to (Go's http.Client
// does not retry a POST on EOF). Before, Close cut the connections right
// after ending the waits, and the handlers' 503s lost that race.
func TestHTTPForcedStopAnswersWaiting(t *testing.T) {
	const clients, perBody = 3, 2
	gate := make(chan struct{})
	var r *rig
	r, src := newHTTPRig(t, nil, stage.Settings{Workers: 1, Concurrency: 1, Batch: 1},
		func(ctx context.Context, b []*stage.Event, out stage.Emitter) error {
			<-gate // holds the records until the test is done
			return r.finish(ctx, b, out)
		})
	r.gate = gate // the rig's cleanup opens it
	url := "http://" + src.Addr().String() + "/"
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: wait}

	type result struct {
		status     int
		retryAfter string
		err        error
	}
	results := make(chan result, clients)
	for i := range clients {
		body := strings.Repeat(fmt.Sprintf("{\"client\":%d}\n", i), perBody)
		go func() {
			resp, err := c.Post(url, "application/x-ndjson", strings.NewReader(body))
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err == nil && !json.Valid(raw) {
				err = fmt.Errorf("body %q is not JSON", raw)
			}
			results <- result{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), err: err}
		}()
	}
	poll.Until(t, "every record handed on", func() bool { return r.in.Stage().Stats().Out == clients*perBody })

	// The pipeline's forced stop: input stopped, a drain whose deadline
	// has passed, then Close.
	ctx, cancel := context.WithCancel(context.Background())
	if err := src.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := src.Drain(ctx); err == nil {
		t.Fatal("Drain with its records held returned no error")
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	for range clients {
		res := <-results
		if res.err != nil || res.status != http.StatusServiceUnavailable || res.retryAfter == "" {
			t.Errorf("a client waiting at the forced stop got %d (Retry-After %q), error %v; want 503 with Retry-After",
				res.status, res.retryAfter, res.err)
		}
	}
}
