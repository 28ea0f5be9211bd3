package main

// This file holds `pipectl doc`: the pipeline YAML reference, printed or
// written into README.md's generated sections.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/pipeline"
)

// The README's generated YAML reference lies between these markers.
const (
	refBegin = "<!-- reference:begin -->"
	refEnd   = "<!-- reference:end -->"
)

func newDocCmd() *cobra.Command {
	var update string
	cmd := &cobra.Command{
		Use:   "doc",
		Short: "Print the reference of the pipeline YAML format (every key of every kind)",
		Long: `Doc prints, in Markdown, the top-level keys of a pipeline file, the keys every
stage takes and each registered kind with its fields, types, defaults and
documentation: generated from the same specs lint checks files against.
With --update README.md it rewrites the README's generated sections
instead: the reference, between ` + refBegin + ` and ` + refEnd + `, and
the embedding example, from ` + embedSource + ` (make docs does this).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ref, err := referenceText()
			if err != nil {
				return err
			}
			if update == "" {
				_, err = cmd.OutOrStdout().Write(ref)
				return err
			}
			old, err := os.ReadFile(update)
			if err != nil {
				return err
			}
			secs, err := readmeSections(filepath.Dir(update))
			if err != nil {
				return err
			}
			text, err := replaceSections(string(old), secs)
			if err != nil {
				return fmt.Errorf("%s: %w", update, err)
			}
			if text == string(old) {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: generated sections up to date\n", update)
				return nil
			}
			if err := os.WriteFile(update, []byte(text), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: generated sections rewritten\n", update)
			return nil
		},
	}
	cmd.Flags().StringVar(&update, "update", "", "rewrite the generated sections of this README (in the repository root)")
	return cmd
}

// referenceText is the reference for pipectl's registry.
func referenceText() ([]byte, error) {
	reg, err := newRegistry()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := pipeline.WriteReference(&b, reg); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// embedSource is the example program the README shows, relative to the
// repository root.
const embedSource = "examples/embed/main.go"

// generatedSection is one part of a Markdown file that is generated.
type generatedSection struct {
	begin, end string
	body       string
}

// readmeSections returns the generated parts of README.md: the reference
// (its headings one level down, under the README's own), and the embedding
// example's source read from root.
func readmeSections(root string) ([]generatedSection, error) {
	ref, err := referenceText()
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(string(ref), "\n"), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "#") {
			lines[i] = "#" + l
		}
	}
	src, err := os.ReadFile(filepath.Join(root, embedSource))
	if err != nil {
		return nil, err
	}
	return []generatedSection{
		{refBegin, refEnd, strings.Join(lines, "\n")},
		{"<!-- embed:begin -->", "<!-- embed:end -->", "```go\n" + strings.TrimRight(string(src), "\n") + "\n```"},
	}, nil
}

// replaceSections returns text with the part between each section's
// markers replaced by its body.
func replaceSections(text string, secs []generatedSection) (string, error) {
	for _, s := range secs {
		i := strings.Index(text, s.begin)
		j := strings.Index(text, s.end)
		if i < 0 || j < i {
			return "", fmt.Errorf("no %s ... %s section", s.begin, s.end)
		}
		text = text[:i+len(s.begin)] + "\n" + s.body + "\n" + text[j:]
	}
	return text, nil
}
