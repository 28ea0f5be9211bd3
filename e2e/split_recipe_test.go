package e2e

// This file tests the README's split recipe (examples/split) as written:
// two backs on one `pipectl db` database, each killed in turn while records
// are sent, and every acked record stored exactly once.

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/gobuild"
)

// TestSplitRecipeSurvivesBackKills runs the README's split recipe as
// written: examples/split/pipeline.yaml, the local PostgreSQL started on
// its own with `pipectl db start` in the working directory, two backs
// (--stages store) and a front (--stages accept,parse) with DATABASE_URL
// unset, so that every back finds the shared database itself. Each back
// in turn is killed with SIGKILL while records are sent: the database
// stays up (pipectl db status), the other back stores on, and every
// record acked is stored exactly once. Only ack_wait is shortened (30s to
// 3s), so that what a dead back held is delivered again soon.
func TestSplitRecipeSurvivesBackKills(t *testing.T) {
	t.Parallel()
	bin := gobuild.ForTest(t, gobuild.Options{})
	ns := startNatsServer(t)
	work := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "examples", "split", "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(string(src), "ack_wait: 30s", "ack_wait: 3s", 1)
	if yaml == string(src) {
		t.Fatal("examples/split/pipeline.yaml has no ack_wait: 30s to shorten")
	}
	file := filepath.Join(work, "pipeline.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "NATS_URL="+ns.url(), "DATABASE_URL=", "LISTEN=127.0.0.1:0")
	db := func(verb string) (string, int) {
		t.Helper()
		c := exec.Command(bin, "db", verb)
		c.Dir, c.Env = work, env
		out, err := c.CombinedOutput()
		if _, ok := err.(*exec.ExitError); err != nil && !ok {
			t.Fatalf("pipectl db %s: %v", verb, err)
		}
		return string(out), c.ProcessState.ExitCode()
	}
	if out, code := db("start"); code != 0 {
		t.Fatalf("pipectl db start: exit %d\n%s", code, out)
	}
	t.Cleanup(func() { db("stop") })
	url, code := db("url")
	url = strings.TrimSpace(url)
	if code != 0 {
		t.Fatalf("pipectl db url: exit %d: %s", code, url)
	}

	back := func() *proc {
		return launchPipectlIn(t, work, env, bin, file, "--stages", "store", "--admin", "127.0.0.1:0")
	}
	b1, b2 := back(), back()
	front := launchPipectlIn(t, work, env, bin, file, "--stages", "accept,parse", "--admin", "127.0.0.1:0")
	if front.addr == "" {
		t.Fatalf("the front printed no listening address:\n%s", front.out)
	}
	for _, b := range []*proc{b1, b2} {
		if !strings.Contains(b.out.String(), url) || !strings.Contains(b.out.String(), "shared") {
			t.Fatalf("a back does not use the shared database %s:\n%s", url, b.out)
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	rs := newResender(func() string { return front.addr }, 50, 2*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const n = 3000
	// send sends ids from..from+n-1 over 4 connections, resending what
	// is not acked, and returns once every one is acked.
	send := func(from int64) error {
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := range int64(4) {
			var ids []int64
			for id := from + w; id < from+n; id += 4 {
				ids = append(ids, id)
			}
			wg.Go(func() { errs <- rs.run(ctx, ids) })
		}
		wg.Wait()
		close(errs)
		return errors.Join(<-errs, <-errs, <-errs, <-errs)
	}
	sendWhile := func(from int64, kill func()) {
		t.Helper()
		sent := make(chan error, 1)
		go func() { sent <- send(from) }()
		kill()
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	}

	if err := send(1); err != nil {
		t.Fatal(err)
	}
	waitStored(t, url, n)
	stored := storeOut(t, hc, b1) + storeOut(t, hc, b2)
	t.Logf("both backs up: %d rows stored through them", stored)

	// Back 1 dies while records are sent; back 2 stores them (and what
	// back 1 held, once ack_wait has passed).
	sendWhile(n+1, func() {
		b1.signal(t, syscall.SIGKILL)
		b1.wait(t, wait)
	})
	waitStored(t, url, 2*n)
	if out, code := db("status"); code != 0 || !strings.Contains(out, "shared") {
		t.Fatalf("pipectl db status after kill -9 of back 1: exit %d\n%s", code, out)
	}

	// Then back 2, with back 1 started again.
	b1 = back()
	sendWhile(2*n+1, func() {
		b2.signal(t, syscall.SIGKILL)
		b2.wait(t, wait)
	})
	waitStored(t, url, 3*n)
	if out, code := db("status"); code != 0 || !strings.Contains(out, "shared") {
		t.Fatalf("pipectl db status after kill -9 of back 2: exit %d\n%s", code, out)
	}
	stopAll(t, front, b1)
	if !strings.Contains(b1.out.String(), "postgres: left as it is") {
		t.Errorf("back 1 does not say it left the shared database running:\n%s", b1.out)
	}
	checkExactlyOnce(t, rs, url, 3*n)
}
