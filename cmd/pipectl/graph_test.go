package main

// This file tests pipectl graph: the pipeline's topology as dot and
// Mermaid, and process.route's edges.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGraph(t *testing.T) {
	for _, format := range []string{"dot", "mermaid"} {
		code, out, errOut := runCLI(t, "graph", filepath.Join("..", "..", "pipeline.yaml"), "--format", format)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", format, code, errOut)
		}
		golden(t, "graph."+format, out)
	}
	code, _, errOut := runCLI(t, "graph", filepath.Join("..", "..", "pipeline.yaml"), "--format", "png")
	if code != 1 || !strings.Contains(errOut, "png") {
		t.Errorf("unknown format: exit %d, stderr %q", code, errOut)
	}
}

// TestGraphProcessRoute draws process.route's edges: a route's next
// unlabelled and default labelled, and, where default and a route's next
// name the same stage, one edge labelled with both. Labelled "default"
// alone, that edge read as if only the events matching no route went
// there.
func TestGraphProcessRoute(t *testing.T) {
	const head = `name: r
stages:
  in: {kind: netio.tcp, listen: 127.0.0.1:7000, next: split}
  split:
    kind: process.route
    routes:
      - {if: 'level == "error"', next: errors}
      - {if: 'level == "info"', next: store}
`
	const sinks = `  errors: {kind: db.postgres, dsn: "postgres://u@localhost/db", table: errors, columns: {body: $}}
  store: {kind: db.postgres, dsn: "postgres://u@localhost/db", table: events, columns: {body: $}}
  rest: {kind: db.postgres, dsn: "postgres://u@localhost/db", table: rest, columns: {body: $}}
`
	for _, tc := range []struct {
		name, def    string
		dot, mermaid string
	}{
		{"default apart", "rest", `	n0 -> n1;
	n1 -> n2 [style=dashed];
	n1 -> n3 [style=dashed];
	n1 -> n4 [style=dashed, label="default"];
}
`, `	n0 --> n1
	n1 -.-> n2
	n1 -.-> n3
	n1 -.->|"default"| n4
`},
		{"default shared with a route", "store", `	n0 -> n1;
	n1 -> n2 [style=dashed];
	n1 -> n3 [style=dashed, label="routes, default"];
}
`, `	n0 --> n1
	n1 -.-> n2
	n1 -.->|"routes, default"| n3
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "route.yaml")
			if err := os.WriteFile(file, []byte(head+"    default: "+tc.def+"\n"+sinks), 0o644); err != nil {
				t.Fatal(err)
			}
			for format, want := range map[string]string{"dot": tc.dot, "mermaid": tc.mermaid} {
				code, out, errOut := runCLI(t, "graph", file, "--format", format)
				if code != 0 {
					t.Fatalf("%s: exit %d: %s", format, code, errOut)
				}
				if !strings.HasSuffix(out, want) {
					t.Errorf("%s: edges:\n%s\nwant them to end:\n%s", format, out, want)
				}
			}
		})
	}
}
