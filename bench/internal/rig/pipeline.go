package rig

// This file holds the example pipeline the in-process variants run (its
// YAML and the registry of its kinds) and starting a pipeline from YAML on
// that registry.

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/db"
	"github.com/stagedserver/seda/stages/netio"
	"github.com/stagedserver/seda/stages/process"
)

// PipelineYAML is the example pipeline as pipeline.yaml had it before the
// controllers, tuned by hand (store batch 2000, 8 workers), so that B3's
// figures stay comparable from run to run (B5 compares the controllers
// with it), with the listen address, the DSN, the table and the store
// queue's overflow policy left as ${B3_LISTEN}, ${B3_DSN}, ${B3_TABLE} and
// ${B3_OVERFLOW}.
const PipelineYAML = `name: b3
log: {level: warn}
stages:
  accept:
    kind: netio.tcp
    listen: ${B3_LISTEN}
    framing: lines
    max_frame: 64KiB
    ack: commit
    workers: 4
    concurrency: 2
    queue: {capacity: 8192, overflow: block}
    next: parse
  parse:
    kind: process.json
    require: [id]
    inline: true
    next: store
  store:
    kind: db.postgres
    dsn: ${B3_DSN}
    table: ${B3_TABLE}
    create: true
    columns: {id: id, body: $}
    types: {id: bigint}
    key: [id]
    conflict: ignore
    method: copy
    batch: {max: 2000, linger: 2ms}
    workers: 8
    max_conns: 8
    concurrency: 2
    queue:
      capacity: 16384
      overflow: ${B3_OVERFLOW}
`

// Registry returns a registry with the kinds the pipeline uses.
func Registry() (*stage.Registry, error) {
	r := stage.NewRegistry()
	for _, reg := range []func(*stage.Registry) error{netio.Register, process.Register, db.Register} {
		if err := reg(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// PipelineConfig parses PipelineYAML for dsn and table; overflow is
// "block" or "reject" for the store queue ("" means block).
func PipelineConfig(reg *stage.Registry, dsn, table, overflow string) (*pipeline.Config, error) {
	env := pipelineEnv(dsn, table, overflow)
	return pipeline.Parse("b3.yaml", []byte(PipelineYAML), reg, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
}

// pipelineEnv is what PipelineYAML's ${VAR}s stand for.
func pipelineEnv(dsn, table, overflow string) map[string]string {
	if overflow == "" {
		overflow = "block"
	}
	return map[string]string{"B3_LISTEN": "127.0.0.1:0", "B3_DSN": dsn, "B3_TABLE": table, "B3_OVERFLOW": overflow}
}

// StartYAML builds the pipeline that yaml (named file, for errors)
// declares, with ${VAR}s from env only, on the benchmarks' registry, and
// starts it; opts' Registry and Logger are set here (the logger discards).
// It returns the address its stage "accept" listens on.
func StartYAML(ctx context.Context, file, yaml string, env map[string]string, opts pipeline.Options) (*pipeline.Pipeline, string, error) {
	reg, err := Registry()
	if err != nil {
		return nil, "", err
	}
	cfg, err := pipeline.Parse(file, []byte(yaml), reg, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return nil, "", err
	}
	opts.Registry, opts.Logger = reg, zap.NewNop()
	p, err := pipeline.New(cfg, opts)
	if err != nil {
		return nil, "", err
	}
	if err := p.Start(ctx); err != nil {
		return nil, "", err
	}
	addr := p.Addr("accept")
	if addr == nil {
		p.Stop(ctx)
		return nil, "", fmt.Errorf("%s: stage accept is not a listening source", file)
	}
	return p, addr.String(), nil
}
