package main

// This file tests that pipectl run survives a closed stdout and stderr
// (no death by SIGPIPE) and still drains and exits 0.

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/gobuild"
	"github.com/stagedserver/seda/internal/poll"
)

// TestRunSurvivesClosedPipe runs pipectl run with its stdout and stderr on
// one pipe whose reader takes 300 bytes and closes it, as in `pipectl run
// 2>&1 | head -c 300` (or `make run | tee log` after Ctrl-C has killed
// tee). pipectl must not die of SIGPIPE: it goes on starting and serving
// (what it writes is dropped), drains on SIGTERM, exits 0, and stops its
// PostgreSQL with a clean shutdown.
func TestRunSurvivesClosedPipe(t *testing.T) {
	bin := gobuild.ForTest(t, gobuild.Options{Race: raceBuild})
	file, dataAddr, adminAddr := pipelineFile(t)
	dataDir := filepath.Join(t.TempDir(), "db")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-f", file, "--data-dir", dataDir)
	gobuild.DieWithCaller(cmd)
	cmd.Env = append(os.Environ(), "DATABASE_URL=")
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var waitErr error
	done := make(chan struct{}) // closed once pipectl has exited, waitErr set
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})
	head := make([]byte, 300)
	_, err = io.ReadFull(r, head)
	r.Close()
	if err != nil {
		t.Fatalf("read 300 bytes of pipectl's output: %v (got %q)", err, head)
	}

	hc := &http.Client{Timeout: 2 * time.Second}
	poll.Until(t, "pipectl to answer /readyz with 200 after its output pipe closed", func() bool {
		select {
		case <-done:
			t.Fatalf("pipectl ended once its output pipe closed: %v (the output began %q)", waitErr, head)
		default:
		}
		resp, err := hc.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if code, out, errOut := runCLI(t, "load", "--addr", dataAddr, "--count", "500", "--conns", "2"); code != 0 {
		t.Fatalf("load: exit %d\n%s%s", code, out, errOut)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-done
	if waitErr != nil {
		t.Fatalf("pipectl after SIGTERM with its output pipe closed: %v (want exit status 0)", waitErr)
	}
	log, err := os.ReadFile(filepath.Join(dataDir, "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(log); !strings.Contains(s, "received fast shutdown request") || strings.Contains(s, "immediate shutdown") {
		t.Errorf("PostgreSQL was not stopped with a fast shutdown; its log:\n%s", s)
	}
}
