// Package e2e holds the end-to-end and reliability tests of the project:
// whole pipelines (netio.tcp → process.* → db.postgres) run against a real
// PostgreSQL, in-process or as a `pipectl run` subprocess, driven by
// clients speaking the wire protocol over 127.0.0.1.
//
// The package has no API; everything is in its _test.go files:
//
//   - stages_test.go: volume and exactly-once storage, bad records on a
//     connection, PostgreSQL restarted mid-run, idempotent resends, syslog
//     frames from logger(1);
//   - crash_test.go: SIGKILL of `pipectl run` at random moments with a
//     resending client;
//   - drain_test.go: SIGTERM and Stop while clients send;
//   - overload_test.go: overflow block (backpressure, bounded memory) and
//     overflow reject (nack busy, retries);
//   - faults_test.go: PostgreSQL down at start, rows PostgreSQL refuses;
//   - badinput_test.go: slow, surplus and deaf clients;
//   - security_test.go: admin binding and token, DSN passwords kept out of
//     logs and /stats;
//   - dbfaults_test.go: the database's network failing under load (reset
//     mid-COPY, a partition, a stall, a restart), through a fault proxy;
//   - outage_test.go: PostgreSQL stopped under a steady load;
//   - control_test.go: the controllers settling untuned knobs, admission;
//   - nats_test.go, natsfaults_test.go, split_recipe_test.go: pipelines
//     split across processes over NATS JetStream, and the embedded durable
//     queue, with processes and the server killed;
//   - senders_test.go: real clients (rsyslog, logger, curl, openssl);
//   - dashboard_test.go: the admin dashboard in headless chromium.
//
// Each test bounds its own time; `go test -short` shrinks the large ones.
// The processes a test starts (pipectl, nats-server, rsyslogd) are killed
// with the test binary if it dies without cleaning up (gobuild.DieWithCaller).
package e2e
