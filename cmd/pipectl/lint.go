package main

// This file holds `pipectl lint`: load and build each pipeline file
// without starting it, and print its problems and warnings as
// FILE:LINE:COL: message.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
)

func newLintCmd() *cobra.Command {
	var stages []string
	cmd := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Check pipeline files; print FILE:LINE:COL: message for each problem",
		Long: `Lint loads each file as run would, strictly (unknown keys and kinds, dangling
next names, missing fields, bad sizes and durations), and builds every stage
without starting it, so that each kind checks its own fields and a field
read that no decoder before the stage sets (a filter on a misspelt syslog
field) is found. It prints every problem as FILE:LINE:COL: message and
exits 1 if there was any, else prints "ok". Warnings (FILE:LINE:COL:
warning: ...: a stage nothing routes to, a store behind a NATS queue that
a redelivery would harm, a store's column of a field no decoder before it
sets (always NULL), with --stages a queue on an embedded NATS server
without listen that the split would cross) are printed too and do not
fail the check. An empty db.postgres dsn is not a problem: run starts a
local PostgreSQL for it. With --stages, the files are checked as run
--stages would run them: a route between a stage that runs and one that
does not must lead to a stage whose queue is on NATS.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			reg, err := newRegistry()
			if err != nil {
				return err
			}
			stages = givenStages(cmd, stages)
			bad := false
			for _, f := range files {
				if lintFile(cmd.Context(), cmd.OutOrStdout(), f, reg, stages) {
					bad = true
				}
			}
			if bad {
				return &exitError{code: 1}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return err
		},
	}
	cmd.Flags().StringSliceVar(&stages, "stages", nil, "check the files as run --stages would run them")
	return cmd
}

// lintFile prints the problems of one file to w and reports whether there
// were any.
func lintFile(ctx context.Context, w io.Writer, file string, reg *stage.Registry, stages []string) bool {
	cfg, err := pipeline.Load(file, reg)
	if err == nil {
		for _, warning := range append(cfg.Warnings(reg), embeddedSplitWarnings(cfg, stages)...) {
			fmt.Fprintln(w, warning.Error())
		}
		var warnings pipeline.Errors
		warnings, err = buildCheck(ctx, cfg, pipeline.Options{Registry: reg, Stages: stages})
		for _, warning := range warnings {
			fmt.Fprintln(w, warning.Error())
		}
	}
	if err == nil {
		return false
	}
	var errs pipeline.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e.Error())
		}
		return true
	}
	fmt.Fprintf(w, "%s: %v\n", file, err)
	return true
}

// buildCheck builds cfg with pipeline.New as opts say (its Logger
// replaced by one that discards), and closes what it built: Stop before
// Start starts nothing and only closes the handlers. So each kind checks
// its own fields, and New's checks that need the stages built (a field
// read that no decoder before the stage sets) are made, with nothing
// started and nothing connected to. A db.postgres stage with an empty
// dsn, which run gives its local PostgreSQL, is built with lintDSN
// instead, on a copy of its configuration: cfg is left as it was. It
// returns New's warnings (Pipeline.Warnings), or New's error. lint checks
// each file with it, and run before it starts a local PostgreSQL.
func buildCheck(ctx context.Context, cfg *pipeline.Config, opts pipeline.Options) (pipeline.Errors, error) {
	c := *cfg
	c.Stages = slices.Clone(cfg.Stages)
	empty := throwawayStages(cfg)
	for i, sc := range c.Stages {
		if slices.Contains(empty, sc) {
			cp := *sc
			cp.Config, _ = stage.Bind(sc.Config.Fields(), sc.Config) // a copy: Set would write to sc's
			cp.Config.Set("dsn", lintDSN)
			c.Stages[i] = &cp
		}
	}
	opts.Logger = zap.NewNop()
	p, err := pipeline.New(&c, opts)
	if err != nil {
		return nil, err
	}
	warnings := p.Warnings()
	if _, err := p.Stop(ctx); err != nil {
		return warnings, err
	}
	return warnings, nil
}
