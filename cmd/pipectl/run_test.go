package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/internal/pgtemp"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// buildPipectl builds this command into a temporary directory.
func buildPipectl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pipectl")
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", append(args, ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestRunEndToEnd runs the real pipeline.yaml (on free ports) with `pipectl
// run`, which starts a throwaway PostgreSQL; loads 2000 records through
// `pipectl load`; checks that every one was acked and is in the table; and
// stops it with SIGTERM, which must drain and exit 0.
func TestRunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	if _, err := pgtemp.FindBinDir(); err != nil {
		t.Skipf("no PostgreSQL server binaries (make test installs them): %v", err)
	}
	bin := buildPipectl(t)

	src, err := os.ReadFile(filepath.Join(repoRoot, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dataAddr, adminAddr := freeAddr(t), freeAddr(t)
	yaml := strings.NewReplacer("127.0.0.1:7000", dataAddr, "127.0.0.1:9464", adminAddr).Replace(string(src))
	file := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "-f", file)
	cmd.Env = append(os.Environ(), "DATABASE_URL=")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var out []string
	var dsn string
	ready := false
	timeout := time.After(90 * time.Second)
	for !ready {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("pipectl run ended before it was ready:\n%s\nstderr:\n%s", strings.Join(out, "\n"), stderr.String())
			}
			out = append(out, l)
			if d, ok := strings.CutPrefix(l, "postgres: postgres://"); ok {
				dsn = "postgres://" + strings.Fields(d)[0]
			}
			ready = strings.Contains(l, "admin on http://"+adminAddr)
		case <-timeout:
			cmd.Process.Kill()
			for range lines {
			}
			cmd.Wait()
			t.Fatalf("pipectl run not ready after 90s:\n%s\nstderr:\n%s", strings.Join(out, "\n"), stderr.String())
		}
	}
	if dsn == "" {
		t.Fatalf("no DSN printed:\n%s", strings.Join(out, "\n"))
	}

	code, loadOut, loadErr := runCLI(t, "load", "--addr", dataAddr, "--count", "2000", "--conns", "4")
	if code != 0 || !strings.Contains(loadOut, "sent 2000  acked 2000  nacked 0  unanswered 0") {
		t.Errorf("load: exit %d\n%s%s", code, loadOut, loadErr)
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var n, distinct, lo, hi int64
	err = conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT id), min(id), max(id) FROM events`).Scan(&n, &distinct, &lo, &hi)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2000 || distinct != 2000 || lo != 1 || hi != 2000 {
		t.Errorf("events: %d rows, %d distinct ids, from %d to %d; want 2000 rows with ids 1..2000", n, distinct, lo, hi)
	}

	code, statsOut, statsErr := runCLI(t, "stats", "--addr", adminAddr, "--interval", "0")
	if code != 0 || !strings.Contains(statsOut, "store") {
		t.Errorf("stats: exit %d\n%s%s", code, statsOut, statsErr)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		out = append(out, l)
	}
	err = cmd.Wait()
	all := strings.Join(out, "\n")
	if err != nil {
		t.Errorf("pipectl run after SIGTERM: %v\n%s\nstderr:\n%s", err, all, stderr.String())
	}
	for _, want := range []string{"draining", "drained and stopped", "postgres: stopped and removed"} {
		if !strings.Contains(all, want) {
			t.Errorf("run's output lacks %q:\n%s", want, all)
		}
	}
}
