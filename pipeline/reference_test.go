package pipeline

// This file tests the generated YAML reference against
// testdata/reference.md.

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
)

var updateReference = flag.Bool("update-reference", false, "rewrite testdata/reference.md")

// TestWriteReference compares the reference generated for the test kinds
// with testdata/reference.md (go test -run TestWriteReference
// -update-reference rewrites it).
func TestWriteReference(t *testing.T) {
	var b strings.Builder
	if err := WriteReference(&b, loaderRegistry(t)); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	var again strings.Builder
	if err := WriteReference(&again, loaderRegistry(t)); err != nil || again.String() != got {
		t.Fatal("output differs between runs")
	}
	for _, want := range []string{
		"| `name` | string |  | yes |",
		"| `drain` | duration | `30s` |",
		"| `stages` | map of stages |  | yes |",
		"| `queue.capacity` | int | `8192` |  | events queued at most; unset in a terminal stage (db.postgres): 32768 (1 to 16777216) |",
		"| `batch.linger` | duration | `0s` |",
		"### `test.route`\n\nA fake router.\n",
		"| `routes[].next` | string |  |  | target stage (names a stage) |",
		"| `dsn` | string |  |  | connection string (secret: never logged) |",
		"Terminal: it finishes events itself and takes no `next`.",
		"A source: it makes events from outside input",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
	const golden = "testdata/reference.md"
	if *updateReference {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("reference differs from %s (rerun with -update-reference and review the diff):\n%s", golden, got)
	}
}

func TestWriteReferenceEmpty(t *testing.T) {
	var b strings.Builder
	if err := WriteReference(&b, stage.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "No kinds are registered.") || !strings.Contains(b.String(), "`kind`") {
		t.Errorf("got:\n%s", b.String())
	}
}
