package main

// This file holds the registry every command loads pipelines with: the
// stage families and the NATS queue transport.

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/stagedserver/seda/natsq"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/db"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stages/process"
)

// newRegistry returns the registry every command loads pipelines with:
// the kinds of stages/netio, stages/process and stages/db, and natsq's
// queue transport (queue.transport: nats). process.func is
// registered with an empty set of functions: pipectl has none of its own,
// but lint and doc should know the kind (an embedding program registers
// its functions; see examples/embed).
func newRegistry() (*stage.Registry, error) {
	r := stage.NewRegistry()
	for _, reg := range []func(*stage.Registry) error{
		netio.Register,
		process.Register,
		db.Register,
		func(r *stage.Registry) error { return process.RegisterFuncs(r, &process.Funcs{}) },
		natsq.Register,
	} {
		if err := reg(r); err != nil {
			return nil, fmt.Errorf("register kinds: %w", err)
		}
	}
	return r, nil
}

// lintDSN stands in for an empty dsn when a file is only checked: `pipectl
// run` would start a local PostgreSQL for it, so it is not an error.
// Nothing connects to it.
const lintDSN = "postgres://pipectl-lint@127.0.0.1:1/lint?sslmode=disable"

// throwawayStages returns the db.postgres stages of cfg whose dsn is empty:
// those `pipectl run` gives its local PostgreSQL.
func throwawayStages(cfg *pipeline.Config) []*pipeline.StageConfig {
	var out []*pipeline.StageConfig
	for _, sc := range cfg.Stages {
		if sc.Kind == db.Kind && sc.Config.String("dsn") == "" {
			out = append(out, sc)
		}
	}
	return out
}

// givenStages is the value of a --stages flag: names, or, when the flag
// was given an empty list (--stages "", an unset $STAGES), a list of one
// empty name, which pipeline.New refuses (--stages: no stage named "")
// as it does --stages ",". An empty list means every stage, and running
// every stage of a process meant to run some is not what was asked.
func givenStages(cmd *cobra.Command, names []string) []string {
	if len(names) == 0 && cmd.Flags().Changed("stages") {
		return []string{""}
	}
	return names
}

// running returns the stages of scs that run in this process: all of
// them when names (pipectl run --stages) is empty.
func running(scs []*pipeline.StageConfig, names []string) []*pipeline.StageConfig {
	if len(names) == 0 {
		return scs
	}
	var out []*pipeline.StageConfig
	for _, sc := range scs {
		if slices.Contains(names, sc.Name) {
			out = append(out, sc)
		}
	}
	return out
}
