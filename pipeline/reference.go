package pipeline

// This file holds WriteReference: the pipeline file format's reference,
// generated from the specs.

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/stagedserver/seda/stage"
)

// WriteReference writes the reference of the pipeline file format in
// Markdown: the top-level keys, the keys every stage takes, then each kind
// of reg with its documentation and its fields. It is generated from the
// same specs the loader checks files against, so the documentation cannot
// drift from the code. The output depends only on reg (kinds sorted by
// name, fields in spec order).
func WriteReference(w io.Writer, reg *stage.Registry) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("## Top-level keys\n\n")
	if reg == nil {
		reg = stage.NewRegistry()
	}
	writeFieldTable(bw, append(topFields(reg), stage.Field{
		Name:     "stages",
		Type:     stage.Object,
		Required: true,
		Doc:      "the stages, in order: a mapping of stage name to stage (the keys below)",
	}), true)
	bw.WriteString("\n## Keys of every stage\n\n")
	bw.WriteString("Every stage takes these keys besides its kind's own. `batch: N` is short for `batch: {max: N}`. Values may use `${VAR}` or `${VAR:-default}` (the environment; unset means empty) and `$$` for a literal `$`.\n\n")
	writeFieldTable(bw, stageFields(reg), false)
	kinds := reg.Kinds()
	bw.WriteString("\n## Kinds\n")
	if len(kinds) == 0 {
		bw.WriteString("\nNo kinds are registered.\n")
	}
	for _, k := range kinds {
		fmt.Fprintf(bw, "\n### `%s`\n\n", k.Name)
		if k.Doc != "" {
			bw.WriteString(oneLine(k.Doc) + "\n\n")
		}
		var notes []string
		if k.IsSource() {
			notes = append(notes, "A source: it makes events from outside input; no stage may route to it and it cannot be inline.")
		}
		if k.Terminal {
			notes = append(notes, "Terminal: it finishes events itself and takes no `next`.")
		}
		if k.NoNext != "" {
			notes = append(notes, "It takes no `next`: "+k.NoNext+".")
		}
		if len(notes) > 0 {
			bw.WriteString(strings.Join(notes, " ") + "\n\n")
		}
		if len(k.Fields) == 0 {
			bw.WriteString("No keys besides the common ones.\n")
			continue
		}
		writeFieldTable(bw, k.Fields, false)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write reference: %w", err)
	}
	return nil
}

func writeFieldTable(w *bufio.Writer, fs []stage.Field, top bool) {
	w.WriteString("| key | type | default | required | description |\n| --- | --- | --- | --- | --- |\n")
	writeFieldRows(w, fs, "", top)
}

func writeFieldRows(w *bufio.Writer, fs []stage.Field, prefix string, top bool) {
	for _, f := range fs {
		name := prefix + f.Name
		typ := f.Type.String()
		if top && f.Name == "stages" {
			typ = "map of stages"
		}
		def := ""
		if f.Default != nil {
			def = "`" + cell(f.FormatValue(f.Default)) + "`"
		}
		req := ""
		if f.Required {
			req = "yes"
		}
		doc := cell(oneLine(f.Doc))
		var extra []string
		if t := f.EnumText(); t != "" {
			extra = append(extra, "one of "+t)
		}
		if t := f.RangeText(); t != "" {
			extra = append(extra, t)
		}
		if f.Ref {
			extra = append(extra, "names a stage")
		}
		if f.Secret {
			extra = append(extra, "secret: never logged")
		}
		if len(extra) > 0 {
			doc = strings.TrimSpace(doc + " (" + strings.Join(extra, "; ") + ")")
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | %s | %s |\n", cell(name), typ, def, req, doc)
		if len(f.Fields) > 0 {
			sep := "."
			if f.Type == stage.ObjectList {
				sep = "[]."
			}
			writeFieldRows(w, f.Fields, name+sep, false)
		}
	}
}

// cell escapes text for a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
