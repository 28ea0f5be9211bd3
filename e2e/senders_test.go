package e2e

// This file tests with senders nobody here wrote: rsyslog, logger, curl
// and openssl, as scripts/ensure-tools.sh installs them (make test runs
// it). A test needing one fails when it is missing.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedserver/seda/internal/certtest"
	"github.com/stagedserver/seda/internal/gobuild"
	"github.com/stagedserver/seda/internal/poll"
)

// tool returns the path of a program, looking on PATH and in the sbin
// directories (rsyslogd lives in /usr/sbin).
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExec(p) {
			return p
		}
	}
	t.Fatalf("%s is not installed: run `bash scripts/ensure-tools.sh` (make test does)", name)
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&0o111 != 0
}

// syslogPipeline is the README's syslog pipeline on free ports, with a
// netio.udp source as well, storing host, app, msg and the raw line.
func syslogPipeline(dsn string) string {
	return fmt.Sprintf(`name: senders
stages:
  tcp:
    kind: netio.tcp
    listen: 127.0.0.1:0
    framing: syslog
    ack: none
    next: parse
  udp:
    kind: netio.udp
    listen: 127.0.0.1:0
    next: parse
  parse:
    kind: process.syslog
    next: store
  store:
    kind: db.postgres
    dsn: %s
    table: logs
    create: true
    columns: {host: hostname, app: app_name, msg: msg, raw: $}
    types: {raw: text}
    batch: {max: 500, linger: 5ms}
`, dsn)
}

// syslogRow is a stored row.
type syslogRow struct{ host, app, msg string }

// syslogRows returns the rows stored, by app.
func syslogRows(t *testing.T, dsn string) map[string][]syslogRow {
	t.Helper()
	got := map[string][]syslogRow{}
	withConn(t, dsn, func(ctx context.Context, c *pgx.Conn) {
		rows, err := c.Query(ctx, "SELECT coalesce(host,''), coalesce(app,''), coalesce(msg,'') FROM logs")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var r syslogRow
			if err := rows.Scan(&r.host, &r.app, &r.msg); err != nil {
				t.Fatal(err)
			}
			got[r.app] = append(got[r.app], r)
		}
	})
	return got
}

// rsyslogd runs rsyslogd in the foreground with conf (its work directory,
// pid file and socket in dir) until the test stops it or ends.
type rsyslogd struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startRsyslogd(t *testing.T, dir, conf string) *rsyslogd {
	t.Helper()
	bin := tool(t, "rsyslogd")
	if err := os.MkdirAll(filepath.Join(dir, "work"), 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &rsyslogd{out: &syncBuffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(bin, "-n", "-f", path, "-i", filepath.Join(dir, "rsyslogd.pid"))
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	gobuild.DieWithCaller(r.cmd)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// stop sends SIGTERM and waits for rsyslogd to exit.
func (r *rsyslogd) stop(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(wait):
		t.Fatalf("rsyslogd did not stop on SIGTERM:\n%s", r.out)
	}
}

// 5,000 messages through rsyslog forwarding the usual way, `*.* @@host:port`
// with no framing or template set (RSYSLOG_TraditionalForwardFormat, each
// message ending at LF), reach PostgreSQL with app_name parsed.
func TestRsyslogForwarding(t *testing.T) {
	const n = 5000
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), syslogPipeline(dsn), nil, nil, "tcp")
	dir := t.TempDir()
	sock := filepath.Join(dir, "log.sock")
	rs := startRsyslogd(t, dir, fmt.Sprintf(`global(workDirectory=%q)
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket=%q RateLimit.Interval="0")
*.* @@%s
`, filepath.Join(dir, "work"), sock, r.addr))
	poll.Until(t, "rsyslogd's socket", func() bool {
		select {
		case <-rs.done:
			t.Fatalf("rsyslogd exited:\n%s", rs.out)
		default:
		}
		_, err := os.Stat(sock)
		return err == nil
	})
	var lines strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&lines, "forwarded message %d\n", i)
	}
	file := writeFile(t, "messages.txt", lines.String())
	if out, err := exec.Command(tool(t, "logger"), "-u", sock, "-t", "rsysapp", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("logger: %v\n%s", err, out)
	}
	var rows []syslogRow
	poll.Until(t, fmt.Sprintf("%d rows from rsyslog", n), func() bool {
		rows = syslogRows(t, dsn)["rsysapp"]
		return len(rows) >= n
	})
	rs.stop(t)
	seen := map[string]bool{}
	for _, row := range rows {
		if row.host == "" || !strings.HasPrefix(row.msg, "forwarded message ") {
			t.Fatalf("row %+v: want a host name and the message without its tag", row)
		}
		seen[row.msg] = true
	}
	if len(rows) != n || len(seen) != n {
		t.Fatalf("%d rows, %d distinct messages; want %d", len(rows), len(seen), n)
	}
	if all := syslogRows(t, dsn); len(all) != 1 {
		t.Errorf("rows under other apps: %v", keys(all))
	}
	st := stageStats(t, r.p, "tcp").Source
	t.Logf("%d messages from rsyslog stored with app_name %q (host %q); tcp source: %d connections, %d bytes, protocol errors %v",
		n, "rsysapp", rows[0].host, st.Connections.Accepted, st.BytesIn, st.ProtocolErrors)
	if len(st.ProtocolErrors) != 0 {
		t.Errorf("protocol errors: %v", st.ProtocolErrors)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// logger(1) over TCP (RFC 5424 ending at LF, RFC 3164, octet-counted) and
// over UDP: every message is stored with its app and msg exact.
func TestLoggerSenders(t *testing.T) {
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), syslogPipeline(dsn), nil, nil, "tcp")
	_, tcpPort, _ := net.SplitHostPort(r.addr)
	_, udpPort, _ := net.SplitHostPort(sourceAddr(t, r.p, "udp"))
	logger := tool(t, "logger")
	cases := []struct {
		app  string
		args []string
	}{
		{"tcp5424", []string{"--tcp", "-P", tcpPort}},
		{"tcp3164", []string{"--tcp", "--rfc3164", "-P", tcpPort}},
		{"tcpoctet", []string{"--tcp", "--octet-count", "-P", tcpPort}},
		{"tcpoctet3164", []string{"--tcp", "--octet-count", "--rfc3164", "-P", tcpPort}},
		{"tcppid", []string{"--tcp", "-i", "-P", tcpPort}},
		{"udp5424", []string{"--udp", "-P", udpPort}},
		{"udp3164", []string{"--udp", "--rfc3164", "-P", udpPort}},
	}
	for _, c := range cases {
		args := append([]string{"-n", "127.0.0.1", "-t", c.app}, c.args...)
		args = append(args, "--", "hello from logger: "+c.app+" [with brackets] and: colons")
		if out, err := exec.Command(logger, args...).CombinedOutput(); err != nil {
			t.Fatalf("logger %v: %v\n%s", args, err, out)
		}
	}
	var got map[string][]syslogRow
	poll.Until(t, fmt.Sprintf("%d rows from logger", len(cases)), func() bool {
		got = syslogRows(t, dsn)
		return len(got) >= len(cases)
	})
	for _, c := range cases {
		rows := got[c.app]
		want := "hello from logger: " + c.app + " [with brackets] and: colons"
		if len(rows) != 1 || rows[0].msg != want || rows[0].host == "" {
			t.Errorf("%s: rows %+v, want one with msg %q and a host", c.app, rows, want)
			continue
		}
		t.Logf("%-13s stored app=%q msg=%q host=%q", c.app, rows[0].app, rows[0].msg, rows[0].host)
	}
	if len(got) != len(cases) {
		t.Errorf("apps stored: %v", keys(got))
	}
}

// curl posts NDJSON to netio.http: 200 {"acked":N}, 422 listing the
// refused records numbered from 1 (the empty line not numbered), 413 over
// max_body, a gzip body, and 401 without the token.
func TestCurlNDJSON(t *testing.T) {
	dsn := pg.NewDatabase(t)
	r := startPipeline(t, registry(t), fmt.Sprintf(`name: http
stages:
  intake:
    kind: netio.http
    listen: 127.0.0.1:0
    path: /ingest
    max_body: 4KiB
    token: t0ken
    next: parse
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: %s
    table: events
    create: true
    key: [id]
    columns: {id: id, body: $}
    types: {id: bigint}
`, dsn), nil, nil, "intake")
	url := "http://" + r.addr + "/ingest"
	curl := tool(t, "curl")
	post := func(body []byte, extra ...string) (int, string) {
		t.Helper()
		args := append([]string{"-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Type: application/x-ndjson",
			"--data-binary", "@-", url}, extra...)
		cmd := exec.Command(curl, args...)
		cmd.Stdin = bytes.NewReader(body)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		s := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(s, '\n')
		var code int
		fmt.Sscan(s[i+1:], &code)
		return code, strings.TrimSpace(s[:max(i, 0)])
	}
	auth := []string{"-H", "Authorization: Bearer t0ken"}

	code, body := post([]byte("{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n"), auth...)
	if code != 200 || body != `{"acked":3}` {
		t.Fatalf("all good: %d %s", code, body)
	}
	code, body = post([]byte("{\"id\":10}\n\nnot json\n{\"id\":12}\n{\"x\":1}\n"), auth...)
	var rp struct {
		Acked  int `json:"acked"`
		Nacked []struct {
			Record int    `json:"record"`
			Reason string `json:"reason"`
		} `json:"nacked"`
	}
	if err := json.Unmarshal([]byte(body), &rp); err != nil || code != 422 || rp.Acked != 2 || len(rp.Nacked) != 2 ||
		rp.Nacked[0].Record != 2 || !strings.HasPrefix(rp.Nacked[0].Reason, `stage "parse": invalid json`) ||
		rp.Nacked[1].Record != 4 || rp.Nacked[1].Reason != `stage "parse": missing field "id"` {
		t.Fatalf("some refused: %d %s", code, body)
	}
	code, body = post(bytes.Repeat([]byte("{\"id\":99}\n"), 500), auth...)
	if code != 413 {
		t.Fatalf("over max_body: %d %s", code, body)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("{\"id\":20}\n{\"id\":21}\n"))
	zw.Close()
	code, body = post(gz.Bytes(), append(auth, "-H", "Content-Encoding: gzip")...)
	if code != 200 || body != `{"acked":2}` {
		t.Fatalf("gzip: %d %s", code, body)
	}
	if code, body = post([]byte("{\"id\":30}\n")); code != 401 {
		t.Fatalf("no token: %d %s", code, body)
	}
	ids := storedIDs(t, dsn, "events")
	want := []int64{1, 2, 3, 10, 12, 20, 21}
	if len(ids) != len(want) {
		t.Fatalf("stored %v, want %v", ids, want)
	}
	for _, id := range want {
		if !ids[id] {
			t.Fatalf("stored %v, want %v", ids, want)
		}
	}
	t.Logf("curl: 200 %s, 422 %+v, 413 over max_body, 401 without the token", `{"acked":3}`, rp)
}

// tlsPipeline is netio.tcp (lines, acks) and netio.http, both over mutual
// TLS, into PostgreSQL.
func tlsPipeline(dsn string, srv certtest.Pair, ca *certtest.CA) string {
	return fmt.Sprintf(`name: tls
stages:
  tcp:
    kind: netio.tcp
    listen: 127.0.0.1:0
    tls: {cert: %[2]s, key: %[3]s, client_ca: %[4]s}
    next: parse
  https:
    kind: netio.http
    listen: 127.0.0.1:0
    tls: {cert: %[2]s, key: %[3]s, client_ca: %[4]s}
    next: parse
  parse:
    kind: process.json
    require: [id]
    next: store
  store:
    kind: db.postgres
    dsn: %[1]s
    table: events
    create: true
    columns: {id: id, body: $}
    types: {id: bigint}
`, dsn, srv.CertFile, srv.KeyFile, ca.CertFile)
}

// openssl s_client with a client certificate the CA signed is acked; one
// without a certificate is refused. curl over HTTPS the same.
func TestOpensslClientCertificate(t *testing.T) {
	dsn := pg.NewDatabase(t)
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "seda-test")
	srv, cli := ca.Server(t, "server"), ca.Client(t, "client")
	r := startPipeline(t, registry(t), tlsPipeline(dsn, srv, ca), nil, nil, "tcp")
	openssl := tool(t, "openssl")
	sclient := func(extra ...string) *exec.Cmd {
		return exec.Command(openssl, append([]string{"s_client", "-connect", r.addr, "-CAfile", ca.CertFile,
			"-verify_return_error", "-quiet"}, extra...)...)
	}

	// With the certificate: the record is acked.
	cmd := sclient("-cert", cli.CertFile, "-key", cli.KeyFile)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	out := &syncBuffer{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	io.WriteString(stdin, "{\"id\":1,\"via\":\"openssl\"}\n")
	ack := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ack ") || strings.HasPrefix(sc.Text(), "nack ") {
				ack <- sc.Text()
				return
			}
		}
		close(ack)
	}()
	select {
	case line := <-ack:
		if line != "ack 1" {
			t.Fatalf("s_client with a certificate read %q, want ack 1\n%s", line, out)
		}
		t.Logf("s_client with a client certificate: %q", line)
	case <-time.After(wait):
		t.Fatalf("no ack for s_client with a certificate\n%s", out)
	}
	stdin.Close()
	cmd.Process.Kill()
	cmd.Wait()

	// Without: refused in the handshake, nothing stored.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd = exec.CommandContext(ctx, openssl, "s_client", "-connect", r.addr, "-CAfile", ca.CertFile, "-quiet")
	cmd.Stdin = strings.NewReader("{\"id\":2,\"via\":\"no certificate\"}\n")
	res, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("s_client without a certificate was not refused:\n%s", res)
	}
	if bytes.Contains(res, []byte("ack ")) || !bytes.Contains(res, []byte("alert")) {
		t.Fatalf("s_client without a certificate (%v):\n%s", err, res)
	}
	t.Logf("s_client without a client certificate: %s", firstLine(res, "alert"))
	st := stageStats(t, r.p, "tcp").Source
	if st.Connections.Refused != 1 || st.ProtocolErrors["tls_handshake"] != 1 {
		t.Errorf("tcp source counters %+v", *st)
	}

	// curl over HTTPS: with the certificate 200, without refused.
	https := "https://" + sourceAddr(t, r.p, "https") + "/"
	curl := tool(t, "curl")
	c := exec.Command(curl, "-sS", "-w", "\n%{http_code}", "--cacert", ca.CertFile, "--cert", cli.CertFile, "--key", cli.KeyFile,
		"--data-binary", "{\"id\":3,\"via\":\"curl\"}", https)
	if res, err := c.Output(); err != nil || !strings.HasSuffix(strings.TrimSpace(string(res)), "200") {
		t.Fatalf("curl with a certificate: %v\n%s", err, res)
	}
	c = exec.Command(curl, "-sS", "--cacert", ca.CertFile, "--data-binary", "{\"id\":4}", https)
	if res, err := c.CombinedOutput(); err == nil {
		t.Fatalf("curl without a certificate was answered:\n%s", res)
	} else {
		t.Logf("curl without a client certificate: %s", strings.TrimSpace(string(res)))
	}
	ids := storedIDs(t, dsn, "events")
	if len(ids) != 2 || !ids[1] || !ids[3] {
		t.Fatalf("stored %v, want 1 (openssl) and 3 (curl)", ids)
	}
}

func firstLine(b []byte, sub string) string {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// readmeRsyslogGTLS returns the rsyslog configuration the README shows
// for its gtls driver.
func readmeRsyslogGTLS(t *testing.T) string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(text), "<!-- rsyslog-gtls:begin -->\n```\n")
	conf, _, ok2 := strings.Cut(rest, "```\n<!-- rsyslog-gtls:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no rsyslog gtls configuration between its markers")
	}
	return conf
}

// rsyslog's gtls driver, configured as the README shows (its text, with
// this test's files, address and port), forwards over mutual TLS to
// netio.tcp with framing: syslog.
func TestRsyslogGTLS(t *testing.T) {
	const n = 200
	dsn := pg.NewDatabase(t)
	dir := t.TempDir()
	ca := certtest.NewCA(t, dir, "seda-test")
	srv, cli := ca.Server(t, "server"), ca.Client(t, "rsyslog-client")
	r := startPipeline(t, registry(t), strings.Replace(syslogPipeline(dsn), "    framing: syslog\n",
		fmt.Sprintf("    framing: syslog\n    tls: {cert: %s, key: %s, client_ca: %s}\n", srv.CertFile, srv.KeyFile, ca.CertFile), 1),
		nil, nil, "tcp")
	host, port, _ := net.SplitHostPort(r.addr)
	sock := filepath.Join(dir, "log.sock")
	conf := strings.NewReplacer(
		"/etc/seda/ca.pem", ca.CertFile, "/etc/seda/client.pem", cli.CertFile, "/etc/seda/client-key.pem", cli.KeyFile,
		`target="ingest.example.com"`, fmt.Sprintf("target=%q", host), `port="6514"`, fmt.Sprintf("port=%q", port),
		`StreamDriverPermittedPeers="ingest.example.com"`, `StreamDriverPermittedPeers="localhost"`, // the test server's name
	).Replace(readmeRsyslogGTLS(t))
	rs := startRsyslogd(t, dir, fmt.Sprintf(`$WorkDirectory %s
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket=%q RateLimit.Interval="0")
`, filepath.Join(dir, "work"), sock)+conf)
	poll.Until(t, "rsyslogd's socket", func() bool {
		select {
		case <-rs.done:
			t.Fatalf("rsyslogd exited:\n%s", rs.out)
		default:
		}
		_, err := os.Stat(sock)
		return err == nil
	})
	var lines strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&lines, "over gtls %d\n", i)
	}
	file := writeFile(t, "messages.txt", lines.String())
	if out, err := exec.Command(tool(t, "logger"), "-u", sock, "-t", "gtlsapp", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("logger: %v\n%s", err, out)
	}
	poll.Until(t, fmt.Sprintf("%d rows over gtls", n), func() bool { return len(syslogRows(t, dsn)["gtlsapp"]) >= n })
	rs.stop(t)
	rows := syslogRows(t, dsn)["gtlsapp"]
	if len(rows) != n || !strings.HasPrefix(rows[0].msg, "over gtls ") {
		t.Fatalf("%d rows (%+v), want %d", len(rows), rows[0], n)
	}
	st := stageStats(t, r.p, "tcp").Source
	if st.Connections.Accepted == 0 || len(st.ProtocolErrors) != 0 {
		t.Errorf("tcp source counters %+v\nrsyslogd:\n%s", *st, rs.out)
	}
}
