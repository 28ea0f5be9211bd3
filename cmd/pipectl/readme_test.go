package main

// This file tests README.md: its generated sections are up to date, and
// the syslog pipeline it shows stores a row.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/pgtemp"
	"github.com/stagedserver/seda/internal/pgtemp/pgtesting"
	"github.com/stagedserver/seda/pipeline"
)

const repoRoot = "../.."

// TestReadmeGenerated fails when README.md's reference or embedding
// example differs from what `pipectl doc --update README.md` (make docs)
// writes.
func TestReadmeGenerated(t *testing.T) {
	path := filepath.Join(repoRoot, "README.md")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	secs, err := readmeSections(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	want, err := replaceSections(string(old), secs)
	if err != nil {
		t.Fatal(err)
	}
	if want != string(old) {
		t.Errorf("README.md's generated sections are out of date: run `make docs`")
	}
}

// TestReadmeSyslogExample runs the syslog pipeline the README shows on
// free ports and a throwaway PostgreSQL, sends it one RFC 5424 frame the way
// logger --octet-count does, and checks that the row is stored.
func TestReadmeSyslogExample(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(text), "<!-- syslog:begin -->\n```yaml\n")
	yaml, _, ok2 := strings.Cut(rest, "```\n<!-- syslog:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no syslog example between its markers")
	}
	yaml = strings.NewReplacer("127.0.0.1:5140", "127.0.0.1:0", "127.0.0.1:9465", "127.0.0.1:0").Replace(yaml)
	reg, err := newRegistry()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pipeline.Parse("README.md#syslog", []byte(yaml), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(throwawayStages(cfg)) != 1 {
		t.Fatal("the syslog example's store should take the local PostgreSQL")
	}
	srv := pgtesting.NewServer(t, pgtemp.Options{Fast: true})
	for _, sc := range throwawayStages(cfg) {
		sc.Config.Set("dsn", srv.DSN())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := pipeline.New(cfg, pipeline.Options{Registry: reg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			p.Stop(context.Background())
		}
	}()
	addr := p.Addr("accept").String()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// As logger --octet-count sends, then as rsyslog's @@host:port does
	// (a line, its default forward format, no colon after the tag).
	msg := "<34>1 2026-11-25T22:14:15.003Z mymachine su - ID47 - 'su root' failed on /dev/pts/8"
	const line = "<13>Nov 28 21:52:31 vm viarsys hello"
	fmt.Fprintf(conn, "%d %s%s\n", len(msg), msg, line)
	conn.Close()

	db, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var host, app, stored string
	for i := 0; ; i++ {
		var n int
		err = db.QueryRow(ctx, "select count(*) from syslog").Scan(&n)
		if err == nil && n == 2 || i == 600 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range [][3]string{{"mymachine", "su", "'su root' failed on /dev/pts/8"}, {"vm", "viarsys", "hello"}} {
		err = db.QueryRow(ctx, "select host, app, msg from syslog where msg = $1", want[2]).Scan(&host, &app, &stored)
		if err != nil {
			t.Fatalf("no row for %q: %v (stats %+v)", want[2], err, p.Stats())
		}
		if host != want[0] || app != want[1] {
			t.Fatalf("stored host %q app %q for %q", host, app, stored)
		}
	}
	stopped = true
	if _, err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestReplaceSections(t *testing.T) {
	secs := []generatedSection{{"<!-- a:begin -->", "<!-- a:end -->", "new"}}
	got, err := replaceSections("x\n<!-- a:begin -->\nold\nlines\n<!-- a:end -->\ny\n", secs)
	if err != nil || got != "x\n<!-- a:begin -->\nnew\n<!-- a:end -->\ny\n" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := replaceSections("no markers", secs); err == nil {
		t.Error("no error without markers")
	}
}
