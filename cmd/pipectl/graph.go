package main

// This file holds pipectl graph: a pipeline file's topology as a Graphviz
// dot or Mermaid graph (pipeline.Config.Graph draws it).

import (
	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/pipeline"
)

func newGraphCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "graph FILE",
		Short: "Print a pipeline's topology as a Graphviz dot or Mermaid graph",
		Long: `Graph prints the stages of FILE and the routes between them: a node per
stage with its kind and its queue capacity (or "inline"), a solid edge to
its next stage, dashed edges to its other routes: every stage a field of
its kind names (process.route's routes and default, and any Ref field a
kind declares), each labelled with that field unless it is a next. A
route's next is named too where another field names the same stage: an
edge labelled "routes, default" takes both matching and unmatched events.

  pipectl graph pipeline.yaml | dot -Tsvg > pipeline.svg`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := newRegistry()
			if err != nil {
				return err
			}
			cfg, err := pipeline.Load(args[0], reg)
			if err != nil {
				return err
			}
			return cfg.Graph(cmd.OutOrStdout(), format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "dot", "dot or mermaid")
	return cmd
}
