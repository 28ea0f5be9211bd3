package b3

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/stagedserver/seda/bench/chanpipe"
	"github.com/stagedserver/seda/bench/naive"
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
			return nil, fmt.Errorf("b3: kind %q not registered", sc.Kind)
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

// CreateTable (re)creates table as (id bigint primary key, body jsonb).
func CreateTable(ctx context.Context, dsn, table string) error {
	return ExecSQL(ctx, dsn, "DROP TABLE IF EXISTS "+Ident(table),
		"CREATE TABLE "+Ident(table)+" (id bigint PRIMARY KEY, body jsonb)")
}

// DropTable drops table.
func DropTable(ctx context.Context, dsn, table string) error {
	return ExecSQL(ctx, dsn, "DROP TABLE IF EXISTS "+Ident(table))
}

// Ident quotes s as an SQL identifier.
func Ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// ExecSQL runs the statements on dsn, in order.
func ExecSQL(ctx context.Context, dsn string, sqls ...string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("b3: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("b3: %s: %w", strings.Fields(q)[0], err)
		}
	}
	return nil
}

// CheckStored verifies that every id in acked is in table, once (the
// primary key guarantees once), and returns how many rows the table holds.
func CheckStored(ctx context.Context, dsn, table string, acked []int64) (rows int64, err error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("b3: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+Ident(table)).Scan(&rows); err != nil {
		return 0, fmt.Errorf("b3: count: %w", err)
	}
	var missing int64
	err = conn.QueryRow(ctx, "SELECT count(*) FROM unnest($1::bigint[]) AS a(id) WHERE NOT EXISTS (SELECT 1 FROM "+
		Ident(table)+" t WHERE t.id = a.id)", acked).Scan(&missing)
	if err != nil {
		return rows, fmt.Errorf("b3: check acked ids: %w", err)
	}
	if missing > 0 {
		return rows, fmt.Errorf("b3: %d of %d acked ids are not in table %s", missing, len(acked), table)
	}
	return rows, nil
}

// stopTimeout bounds stopping a variant.
const stopTimeout = 2 * time.Minute
