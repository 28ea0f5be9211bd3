package rig

// This file holds the variants a load client drives, each behind Server:
// the framework's pipeline, the channel pipeline with the same handlers,
// and the naive server.

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/bench/chanpipe"
	"github.com/stagedserver/seda/bench/naive"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
)

// Server is one of the variants running: where to send load and how to
// stop it.
type Server interface {
	Addr() string
	Stop(ctx context.Context) error
}

// pipelineServer is the framework's pipeline.
type pipelineServer struct {
	p    *pipeline.Pipeline
	addr string
}

// StartPipeline builds and starts the example pipeline writing to table.
func StartPipeline(ctx context.Context, dsn, table, overflow string) (Server, *pipeline.Pipeline, error) {
	p, addr, err := StartYAML(ctx, "b3.yaml", PipelineYAML, pipelineEnv(dsn, table, overflow), pipeline.Options{})
	if err != nil {
		return nil, nil, err
	}
	return &pipelineServer{p: p, addr: addr}, p, nil
}

func (s *pipelineServer) Addr() string { return s.addr }

func (s *pipelineServer) Stop(ctx context.Context) error {
	rep, err := s.p.Stop(ctx)
	if err == nil && rep.Abandoned > 0 {
		err = fmt.Errorf("pipeline stop abandoned %d events", rep.Abandoned)
	}
	return err
}

// chanServer is the channel pipeline with the same handlers.
type chanServer struct{ s *chanpipe.Server }

// StartChan starts the channel pipeline with the parse and store handlers
// built from the example pipeline's configuration.
func StartChan(ctx context.Context, dsn, table string) (Server, error) {
	reg, err := Registry()
	if err != nil {
		return nil, err
	}
	cfg, err := PipelineConfig(reg, dsn, table, "")
	if err != nil {
		return nil, err
	}
	handler := func(name string) (stage.Handler, error) {
		sc := cfg.Stage(name)
		k, ok := reg.Lookup(sc.Kind)
		if !ok {
			return nil, fmt.Errorf("rig: kind %q not registered", sc.Kind)
		}
		return k.NewHandler(sc.Config, stage.Env{Stage: name, Logger: zap.NewNop(), Routes: []string{sc.Next}})
	}
	parse, err := handler("parse")
	if err != nil {
		return nil, err
	}
	store, err := handler("store")
	if err != nil {
		return nil, err
	}
	st := cfg.Stage("store").Settings
	s, err := chanpipe.Start(ctx, chanpipe.Config{
		Parse: parse, Store: store,
		Workers: st.Workers, BatchMax: st.Batch, Linger: st.Linger, QueueCap: st.Capacity,
	})
	if err != nil {
		return nil, err
	}
	return chanServer{s}, nil
}

func (c chanServer) Addr() string                   { return c.s.Addr() }
func (c chanServer) Stop(ctx context.Context) error { return c.s.Close(ctx) }

type naiveServer struct{ s *naive.Server }

// StartNaive starts the naive server.
func StartNaive(ctx context.Context, dsn, table string) (Server, error) {
	s, err := naive.Start(ctx, naive.Config{DSN: dsn, Table: table})
	if err != nil {
		return nil, err
	}
	return naiveServer{s}, nil
}

func (n naiveServer) Addr() string               { return n.s.Addr() }
func (n naiveServer) Stop(context.Context) error { return n.s.Close() }
