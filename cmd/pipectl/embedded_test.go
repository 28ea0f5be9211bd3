package main

// This file tests the warning about a --stages split across a queue on an
// embedded NATS server without listen, from lint and from run.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/gobuild"
)

// embeddedFile writes a pipeline whose store's queue is on an embedded
// NATS server (listen as given; "" leaves it out), its TCP source on
// tcpAddr, and returns its path.
func embeddedFile(t *testing.T, tcpAddr, listen string) string {
	t.Helper()
	dir := t.TempDir()
	emb := "{store_dir: " + filepath.Join(dir, "nats") + "}"
	if listen != "" {
		emb = "{store_dir: " + filepath.Join(dir, "nats") + ", listen: " + listen + "}"
	}
	yaml := `name: t
nats:
  embedded: ` + emb + `
stages:
  accept:
    kind: netio.tcp
    listen: ` + tcpAddr + `
    next: parse
  parse:
    kind: process.json
    inline: true
    next: store
  store:
    kind: db.postgres
    table: events
    columns: {id: id, body: $}
    key: [id]
    conflict: ignore
    queue: {transport: nats, stream: t_store}
`
	file := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

const embeddedSplitHint = "set nats.embedded.listen (127.0.0.1:4222, say) and give the other processes nats.url"

// TestLintWarnsEmbeddedSplit: with --stages cutting the route to store,
// whose queue is on an embedded server without listen, lint warns at
// store's queue.transport, naming the stage and the key to set, and still
// passes; without --stages, or with listen set, it says nothing.
func TestLintWarnsEmbeddedSplit(t *testing.T) {
	file := embeddedFile(t, "127.0.0.1:0", "")
	for _, c := range []struct{ stages, want string }{
		{"accept,parse", `--stages runs "parse", which routes to it, here and it in another process, which cannot consume its stream`},
		{"store", `--stages runs it here and "parse", which routes to it, in another process, which cannot publish to its stream`},
	} {
		code, out, errOut := runCLI(t, "lint", "--stages", c.stages, file)
		want := file + `:19:24: warning: stage "store": its queue is on the embedded NATS server (nats.embedded), which has no listen and so opens no port: ` +
			c.want + "; " + embeddedSplitHint + "\nok\n"
		if code != 0 || out != want {
			t.Errorf("--stages %s: exit %d, stdout %q, stderr %q;\nwant exit 0 and %q", c.stages, code, out, errOut, want)
		}
	}
	for _, c := range []struct {
		file   string
		stages []string
	}{
		{file, nil}, // one process: nothing crosses it
		{file, []string{"--stages", "accept,parse,store"}},
		{embeddedFile(t, "127.0.0.1:0", "127.0.0.1:0"), []string{"--stages", "accept,parse"}},
	} {
		code, out, errOut := runCLI(t, append(append([]string{"lint"}, c.stages...), c.file)...)
		if code != 0 || out != "ok\n" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 0 and ok alone", c.stages, code, out, errOut)
		}
	}
}

// TestRunWarnsEmbeddedSplit runs the front of such a split: run warns on
// stderr, then runs as asked. stderr is read once the process has exited
// and Wait has returned: os/exec copies it from its own pipe in a
// goroutine of its own, so at "Ctrl-C drains" on stdout the warning,
// written before, may not be in the buffer yet; after Wait all of it is.
func TestRunWarnsEmbeddedSplit(t *testing.T) {
	bin := gobuild.ForTest(t, gobuild.Options{Race: raceBuild})
	file := embeddedFile(t, freeAddr(t), "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startRun(t, ctx, bin, t.TempDir(), file, "--stages", "accept,parse")
	all, err := p.stop(t, syscall.SIGTERM)
	if err != nil {
		t.Errorf("pipectl run after SIGTERM: %v\n%s\nstderr:\n%s", err, all, p.stderr.String())
	}
	if stderr := p.stderr.String(); !strings.Contains(stderr, `warning: stage "store": its queue is on the embedded NATS server`) ||
		!strings.Contains(stderr, embeddedSplitHint) {
		t.Errorf("run --stages accept,parse: no warning of the embedded server's missing listen; stderr:\n%s", stderr)
	}
}
