package main

// This file tests pipectl stats against recorded snapshots: the table,
// rates, tokens, JSON, printable text, and exit status when stdout or
// the server goes away.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/stats"
)

func readSnapshot(t *testing.T, name string) *snapshot {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// statsServer serves the canned snapshots in turn (the last one from then
// on) and requires token when it is not empty.
func statsServer(t *testing.T, token string, files ...string) *httptest.Server {
	t.Helper()
	var bodies [][]byte
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats" {
			http.NotFound(w, r)
			return
		}
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		i := min(int(n.Add(1))-1, len(bodies)-1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(bodies[i])
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStatsTableTotals(t *testing.T) {
	srv := statsServer(t, "", "stats1.json")
	code, out, errOut := runCLI(t, "stats", "--addr", srv.URL, "--interval", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "stats_totals.golden", out)
}

func TestStatsTableRates(t *testing.T) {
	prev, cur := readSnapshot(t, "stats1.json"), readSnapshot(t, "stats2.json")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev.at, cur.at = t0, t0.Add(2*time.Second)
	got := statsTable(prev, cur)
	golden(t, "stats_rates.golden", got)
	// accept took 25000 records in 2s.
	if !strings.Contains(got, "12.5k") {
		t.Errorf("no 12.5k/s rate for accept in\n%s", got)
	}
}

func TestStatsTwoSamples(t *testing.T) {
	srv := statsServer(t, "", "stats1.json", "stats2.json")
	code, out, errOut := runCLI(t, "stats", "--addr", srv.URL, "--interval", "10ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// The second sample is shown, with rates: none of the rate cells is "-".
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[5], "store: DOWN for ") || !strings.HasPrefix(lines[6], "accept: admission") {
		t.Fatalf("want title, header, 3 stage lines, store's health line and accept's admission line, got\n%s", out)
	}
	if f := strings.Fields(lines[2]); f[0] != "accept" || f[2] != "ok" || f[3] != "8192/8192" || f[11] == "-" || f[12] == "-" {
		t.Errorf("accept line %q: want the second sample's depth and rates", lines[2])
	}
}

func TestStatsToken(t *testing.T) {
	srv := statsServer(t, "s3cret", "stats1.json")
	code, _, errOut := runCLI(t, "stats", "--addr", srv.URL, "--interval", "0")
	if code == 0 || !strings.Contains(errOut, "401") {
		t.Errorf("without token: exit %d, stderr %q; want a failure naming 401", code, errOut)
	}
	code, out, errOut := runCLI(t, "stats", "--addr", srv.URL, "--interval", "0", "--token", "s3cret")
	if code != 0 || !strings.Contains(out, "accept") {
		t.Errorf("with token: exit %d, stderr %q, stdout %q", code, errOut, out)
	}
	// From the environment, which other users cannot read in ps.
	t.Setenv(tokenEnv, "s3cret")
	code, out, errOut = runCLI(t, "stats", "--addr", srv.URL, "--interval", "0")
	if code != 0 || !strings.Contains(out, "accept") {
		t.Errorf("with $%s: exit %d, stderr %q, stdout %q", tokenEnv, code, errOut, out)
	}
	code, _, errOut = runCLI(t, "stats", "--addr", srv.URL, "--interval", "0", "--token", "wrong")
	if code == 0 || !strings.Contains(errOut, "401") {
		t.Errorf("--token wrong with $%s set: exit %d, stderr %q; want the flag to win, and a 401", tokenEnv, code, errOut)
	}
}

// A 401 says which token was sent, from where, and never the token: it
// said only "401 Unauthorized: unauthorized", whether no token was sent
// or a wrong --token shadowed $PIPECTL_TOKEN.
func TestUnauthorizedSaysWhichToken(t *testing.T) {
	// Every path (stats' and scale's) wants the token.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	for _, c := range []struct {
		env  string
		args []string
		says string
	}{
		{"", []string{"--token", "wr0ng"}, "(the token from --token was sent)"},
		{"wr0ng", nil, "(the token from $PIPECTL_TOKEN was sent)"},
		{"s3cret", []string{"--token", "wr0ng"}, "(the token from --token was sent)"},
		{"", nil, "(no token was sent: give --token or set $PIPECTL_TOKEN)"},
	} {
		t.Setenv(tokenEnv, c.env)
		for _, cmd := range [][]string{
			{"stats", "--addr", srv.URL, "--interval", "0"},
			{"top", "--addr", srv.URL, "--count", "1"},
			{"scale", "store", "--addr", srv.URL, "--workers", "2"},
		} {
			args := append(cmd, c.args...)
			code, out, errOut := runCLI(t, args...)
			if code != 1 || !strings.Contains(errOut, "401 Unauthorized") || !strings.Contains(errOut, c.says) || strings.Contains(out+errOut, "wr0ng") {
				t.Errorf("$%s=%q pipectl %s: exit %d, stderr %q; want a 401 saying %q, without the token", tokenEnv, c.env, strings.Join(args, " "), code, errOut, c.says)
			}
		}
	}
}

// A server's status line is printed with its control characters shown,
// as its body is: a hostile endpoint cannot retitle or clear a terminal.
func TestStatusLinePrintable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = bufio.NewReader(c).ReadString('\n') // the request line is enough
			_, _ = io.WriteString(c, "HTTP/1.1 500 \x1b]2;PWNED\x07\x1b[2J oops\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno")
			c.Close()
		}
	})
	for _, args := range [][]string{
		{"stats", "--addr", ln.Addr().String(), "--interval", "0"},
		{"scale", "store", "--workers", "2", "--addr", ln.Addr().String()},
	} {
		code, _, errOut := runCLI(t, args...)
		if code == 0 || !strings.Contains(errOut, "500") || strings.ContainsAny(errOut, "\x1b\x07") {
			t.Errorf("%s: exit %d, stderr %q; want a failure naming 500 without control characters", args[0], code, errOut)
		}
	}
}

func TestStatsJSON(t *testing.T) {
	srv := statsServer(t, "", "stats1.json")
	code, out, errOut := runCLI(t, "stats", "--addr", srv.URL, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var s snapshot
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if s.Pipeline != "ingest" || len(s.Stages) != 3 || s.Stages[2].Pool.Blocked != 6 {
		t.Errorf("decoded %+v", s)
	}
}

func TestStatsNoServer(t *testing.T) {
	code, _, errOut := runCLI(t, "stats", "--addr", "127.0.0.1:1", "--interval", "0")
	if code != 1 || !strings.Contains(errOut, "admin endpoint") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestHumanFigures(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{{0, "0"}, {950, "950"}, {1234, "1.23k"}, {12345, "12.3k"}, {123456, "123k"}, {1.25e6, "1.25M"}} {
		if got := humanRate(c.v); got != c.want {
			t.Errorf("humanRate(%v) = %q, want %q", c.v, got, c.want)
		}
	}
	for _, c := range []struct {
		ms   float64
		want string
	}{{0, "-"}, {math.NaN(), "-"}, {0.05, "50µs"}, {2.1, "2.10ms"}, {12.34, "12.3ms"}, {1250, "1.25s"}} {
		if got := msCell(c.ms); got != c.want {
			t.Errorf("msCell(%v) = %q, want %q", c.ms, got, c.want)
		}
	}
}

// TestPoolCells checks what RUN/WORKERS, BLOCKED and BATCH say of each
// sort of pool: auto or pinned for a stage that pipectl scale resizes,
// fixed for a source's own pool, remote (and no phantom workers or
// blocked) for a stage whose workers run in other processes.
func TestPoolCells(t *testing.T) {
	auto := &stats.Control{Workers: &stats.Knob{Now: 2, Auto: true, Min: 2, Max: 16},
		Batch: &stats.Knob{Now: 512, Auto: true, Min: 1, Max: 4096}}
	for _, c := range []struct {
		name                 string
		st                   stats.Stage
		pool, blocked, batch string
	}{
		{"handler", stats.Stage{Pool: stats.Pool{Workers: 2, Running: 1, Blocked: 1}, Control: auto}, "1/2 auto", "1", "512 auto"},
		{"source", stats.Stage{Pool: stats.Pool{Workers: 4, Running: 2}}, "2/4 fixed", "0", "-"},
		{"source under admission", stats.Stage{Pool: stats.Pool{Workers: 4}, Control: &stats.Control{Admission: &stats.Admission{}}}, "0/4 fixed", "0", "-"},
		{"remote", stats.Stage{Remote: true, Pool: stats.Pool{Workers: 8, Blocked: 8}, Control: auto}, "remote", "-", "-"},
		{"inline", stats.Stage{Inline: true}, "-", "-", "-"},
	} {
		if p, b, bt := poolCell(c.st), poolNum(c.st, c.st.Pool.Blocked), batchCell(c.st); p != c.pool || b != c.blocked || bt != c.batch {
			t.Errorf("%s: RUN/WORKERS %q, BLOCKED %q, BATCH %q; want %q, %q, %q", c.name, p, b, bt, c.pool, c.blocked, c.batch)
		}
	}
}

// closedStdout is stdout once `| head -1` has exited: every write fails
// with EPIPE (main asks for SIGPIPE, so the write fails rather than the
// process dying).
type closedStdout struct{}

func (closedStdout) Write([]byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: "/dev/stdout", Err: syscall.EPIPE}
}

// pipectl stats | head -1 and pipectl top | head -1 end quietly, with
// status 0: the reader has what it wanted. They printed "broken pipe" and
// exited 1, failing a script under set -o pipefail.
func TestClosedStdoutIsNotAFailure(t *testing.T) {
	body, err := os.ReadFile("testdata/stats1.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	for _, args := range [][]string{
		{"stats", "--addr", srv.URL, "--interval", "0"},
		{"top", "--addr", srv.URL, "--count", "1"},
	} {
		var errOut strings.Builder
		if code := execute(args, strings.NewReader(""), closedStdout{}, &errOut); code != 0 || errOut.Len() > 0 {
			t.Errorf("pipectl %s with stdout closed: exit %d, stderr %q", strings.Join(args, " "), code, errOut.String())
		}
	}
}

// A command that fails while its stdout is closed (pipectl run | head -1,
// whose drain is then cut short) says so on stderr and exits 1: once any
// write had found stdout closed, every plain error was exit 0, unsaid. A
// command whose only error is that write (stats | head) still exits 0.
func TestFailureWithStdoutClosed(t *testing.T) {
	for _, c := range []struct {
		name string
		fail error // the command's own failure after its write, if any
		code int
	}{
		{"a drain cut short", errors.New("drain: 3000 of them abandoned"), 1},
		{"a drain cut short, with the write's error", errors.New("drain: 3000 of them abandoned"), 1},
		{"only the write's error", nil, 0},
	} {
		var errOut strings.Builder
		out := &closedWriter{w: closedStdout{}}
		root := newRootCmd(strings.NewReader(""), out, &errOut)
		root.AddCommand(&cobra.Command{
			Use: "fake",
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, werr := fmt.Fprintln(cmd.OutOrStdout(), "a line")
				if c.fail == nil {
					return werr
				}
				if strings.HasSuffix(c.name, "error") {
					return errors.Join(fmt.Errorf("print: %w", werr), c.fail)
				}
				return c.fail
			},
		})
		root.SetArgs([]string{"fake"})
		code := exitStatus(root.Execute(), &errOut)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d", c.name, code, c.code)
		}
		if c.fail != nil && (!strings.Contains(errOut.String(), "pipectl: ") || !strings.Contains(errOut.String(), c.fail.Error())) {
			t.Errorf("%s: stderr %q, want the error", c.name, errOut.String())
		}
		if c.fail == nil && errOut.Len() > 0 {
			t.Errorf("%s: stderr %q, want nothing", c.name, errOut.String())
		}
	}
}

// An EPIPE from a server (a connection it reset), not from stdout, is a
// failure like any other: it is said, and the status is 1.
func TestServerEPIPEIsAFailure(t *testing.T) {
	err := fmt.Errorf("scale: %w", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)})
	var errOut strings.Builder
	if code := exitStatus(err, &errOut); code != 1 || !strings.Contains(errOut.String(), "broken pipe") {
		t.Errorf("an EPIPE from the network: exit %d, stderr %q; want 1 and the error", code, errOut.String())
	}
}

// The password of a user:password@ in --addr is never printed: stats said
// "fetch stats from http://admin:hunter2@..." and top showed it in its
// title on every frame.
func TestAddrPasswordRedacted(t *testing.T) {
	body, err := os.ReadFile("testdata/stats1.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/prefix/stats" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	withUser := strings.Replace(srv.URL, "http://", "http://admin:hunter2@", 1)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"stats", "--addr", withUser + "/elsewhere", "--interval", "0"}, 1}, // a 404
		{[]string{"stats", "--addr", withUser + "/elsewhere", "--json"}, 1},
		{[]string{"top", "--addr", withUser + "/elsewhere", "--count", "1"}, 1},
		{[]string{"top", "--addr", withUser + "/prefix", "--count", "1"}, 0}, // a frame, with its title
		{[]string{"top", "--addr", strings.TrimPrefix(withUser, "http://") + "/prefix", "--count", "1"}, 0},
		{[]string{"scale", "--addr", withUser + "/elsewhere", "store", "--workers", "2"}, 1},
	} {
		code, out, errOut := runCLI(t, c.args...)
		if code != c.code || strings.Contains(out+errOut, "hunter2") || (code != 0 && !strings.Contains(errOut, "404")) {
			t.Errorf("pipectl %s: exit %d, want %d, without the password:\n%s%s", strings.Join(c.args, " "), code, c.code, out, errOut)
		}
		if c.args[0] != "scale" && !strings.Contains(out+errOut, "admin:xxxxx@") {
			t.Errorf("pipectl %s does not say the address, redacted:\n%s%s", strings.Join(c.args, " "), out, errOut)
		}
	}
}
