package b8

// This file runs the rsyslog contender: finding rsyslogd, its
// configuration, and starting it.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// rsyslogd is where Debian's rsyslog package puts the daemon.
const rsyslogd = "/usr/sbin/rsyslogd"

// findRsyslog returns rsyslogd's path once rsyslogd and ompgsql are
// installed; the error says how to install them.
func findRsyslog() (string, error) {
	bin := rsyslogd
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("rsyslogd")
		if lerr != nil {
			return "", errors.New("b8: rsyslogd is not installed: run scripts/ensure-rsyslog.sh " +
				"(apt-get install rsyslog rsyslog-pgsql)")
		}
		bin = p
	}
	mods, _ := filepath.Glob("/usr/lib/*/rsyslog/ompgsql.so")
	if len(mods) == 0 {
		return "", errors.New("b8: rsyslog's ompgsql module is not installed: run scripts/ensure-rsyslog.sh " +
			"(apt-get install rsyslog-pgsql)")
	}
	return bin, nil
}

// rsyslogConf is rsyslogd's configuration for the benchmark: imtcp on a
// loopback port (it takes octet-counted frames as they come) into a
// ruleset whose one action is ompgsql, with an action queue dequeued in
// batches of 1000 (one transaction each) by 4 workers, as an operator
// would tune it for throughput. Queues block rather than discard when
// full (timeoutEnqueue of ten minutes), so TCP pushes back on the sender
// and no row is dropped. The rows go into table through a template that
// escapes quotes the standard SQL way.
func rsyslogConf(workDir string, port int, dsn, table string) (string, error) {
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("b8: DSN: %w", err)
	}
	pass := pc.Password
	if pass == "" {
		pass = "unused" // trust authentication; ompgsql wants one
	}
	q := func(s string) string { return strconv.Quote(s) }
	var b strings.Builder
	fmt.Fprintf(&b, `global(workDirectory=%s maxMessageSize="64k")
main_queue(queue.type="LinkedList" queue.size="100000" queue.timeoutEnqueue="600000")
module(load="imtcp")
module(load="ompgsql")
template(name="b8row" type="list" option.stdsql="on") {
  constant(value="INSERT INTO %s (host, app, msg) VALUES ('")
  property(name="hostname")
  constant(value="', '")
  property(name="app-name")
  constant(value="', '")
  property(name="msg")
  constant(value="')")
}
ruleset(name="b8" queue.type="LinkedList" queue.size="100000" queue.timeoutEnqueue="600000") {
  action(type="ompgsql" server=%s port=%s db=%s user=%s pass=%s template="b8row"
         queue.type="LinkedList" queue.size="100000" queue.dequeueBatchSize="1000"
         queue.workerThreads="4" queue.timeoutEnqueue="600000")
}
input(type="imtcp" address="127.0.0.1" port="%d" ruleset="b8")
`, q(workDir), table, q(pc.Host), q(strconv.Itoa(int(pc.Port))), q(pc.Database), q(pc.User), q(pass), port)
	return b.String(), nil
}

// startRsyslog runs rsyslogd in the foreground with the benchmark's
// configuration, in dir, and returns once its TCP input accepts
// connections.
func startRsyslog(ctx context.Context, bin, dir, dsn, table string) (*child, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf, err := rsyslogConf(dir, port, dsn, table)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-n", "-f", file, "-i", filepath.Join(dir, "rsyslogd.pid"))
	return startChild(ctx, "rsyslogd", cmd, nil, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
