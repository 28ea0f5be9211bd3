package pipeline

// This file holds New: building a pipeline's stages from a Config and a
// Registry, and the Pipeline type.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/port"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// DefaultDrain is the drain deadline of Run when neither Options.DrainTimeout
// nor Config.Drain sets one.
const DefaultDrain = 30 * time.Second

// ErrClosed is returned by Start once the pipeline has been stopped (or has
// failed to start): a Pipeline runs at most once.
var ErrClosed = errors.New("pipeline: closed")

// Options are what New needs besides the Config. The zero value is not
// enough: Registry is required.
type Options struct {
	// Registry holds the kinds the Config's stages name.
	Registry *stage.Registry
	// Logger receives the pipeline's and the stages' logs; nil means one
	// built from Config.Log with NewLogger.
	Logger *zap.Logger
	// DrainTimeout, when positive, overrides Config.Drain: how long Run
	// lets phase one of Stop take.
	DrainTimeout time.Duration
	// AdminListen, when set, overrides Config.Admin.Listen.
	AdminListen string
	// Stages, when not empty, names the stages this process runs (pipectl
	// run --stages): the others run in other processes. A route between a
	// stage that runs and one that does not must lead to a stage whose
	// queue is on NATS (queue.transport nats); New reports any other.
	Stages []string
}

// Pipeline is a set of connected stages built from a Config, with the
// lifecycle that starts and stops them in order and an optional admin HTTP
// endpoint. Build one with New; run it with Run, or with Start and Stop.
//
// A Pipeline's methods are safe for concurrent use.
type Pipeline struct {
	name   string
	log    *zap.Logger
	ownLog bool // log was built by New and is synced on stop
	drain  time.Duration
	admin  AdminConfig

	// Built once by New, read-only afterwards.
	stages   []engine.Lifecycle       // the stages run here, with the stand-ins and consumers of nats queues
	byName   map[string]*engine.Stage // every stage of the file; nil for one that runs in another process
	isSource []bool
	order    []int                // topological: every stage after all of its upstream stages
	shown    []shown              // what /stats lists, in file order
	graph    map[string]graphInfo // by stage name, for the dashboard
	series   []stats.Series       // the series the queue transports declare, for /metrics
	mem      *engine.Memory       // the bytes of records held, against memory_limit (memory.go)
	behind   []behind             // stages fed by a transport's consumer: started in the background
	warnings Errors               // what New allowed but is likely a mistake (Warnings)

	// start serialises Start against the beginning of Stop, so that Stop
	// sees a pipeline that is either not started or completely started.
	start sync.Mutex

	mu         sync.Mutex
	state      state
	began      time.Time     // when Start began
	ended      time.Time     // when Stop finished
	started    []bool        // stages whose Start succeeded
	adm        *adminServer  // nil when there is no admin endpoint
	stopDone   chan struct{} // closed when the stop procedure has finished
	force      chan struct{} // closed to force phase two
	forceOnce  sync.Once
	forceCause error // the ctx.Err() of the Stop that forced phase two; under mu
	report     StopReport
	stopErr    error
	// cancelStart ends the context of a Start in progress: Stop calls it.
	cancelStart context.CancelFunc
	stopCalled  chan struct{} // closed when Stop is called (or a failed Start stops); p.mu guards the closing

	// The background start of the stages behind a transport's queue.
	behindStop context.CancelFunc // ends their Start; nil until Start
	behindWG   sync.WaitGroup
	behindErr  error         // why one of them failed to start
	failed     chan struct{} // closed when one failed to start: the pipeline stops
	failOnce   sync.Once
}

type state int

const (
	stateStarting state = iota // built, not yet (or not yet completely) started
	stateRunning
	stateDraining
	stateStopped
)

var stateNames = [...]string{"starting", "running", "draining", "stopped"}

func (s state) String() string { return stateNames[s] }

// New builds a pipeline from cfg: it constructs every stage through its
// kind's constructor, makes its queue and worker pool, and connects the
// stages along Next, the values of each kind's Ref fields (as the loader
// does, so a Config built in code needs no Routes) and any other name
// Routes lists. Nothing runs until Start.
//
// New reports every problem it finds as Errors, each positioned at the
// stage (or, for a constructor's *stage.FieldError, at the field) it is
// about: an empty Name, unknown kinds, constructor failures, references to
// unknown stages, references to a source, cycles, a read of a field no
// event reaching the stage can carry (fields.go: it asks the handlers New
// built; Parse builds none, so this is the only place it is made), and an
// admin endpoint on a non-loopback address without a token. Such a read
// by a sink (a db.postgres column, which stores a missing field as NULL)
// is no error but a warning, which the Pipeline's Warnings returns. When New fails, the handlers it
// had already constructed are closed. Check makes the checks that need no
// stage built, alone.
func New(cfg *Config, opts Options) (*Pipeline, error) {
	if cfg == nil {
		return nil, errors.New("pipeline: New: nil config")
	}
	if opts.Registry == nil {
		return nil, errors.New("pipeline: New: Options.Registry is nil")
	}
	log := opts.Logger
	ownLog := false
	if log == nil {
		var err error
		if log, err = NewLogger(cfg.Log); err != nil {
			return nil, fmt.Errorf("pipeline %q: %w", cfg.Name, err)
		}
		ownLog = true
	}
	p := &Pipeline{
		name:   cfg.Name,
		log:    log,
		ownLog: ownLog,
		drain:  cfg.Drain,
		admin:  cfg.Admin,
		byName: make(map[string]*engine.Stage, len(cfg.Stages)),
	}
	for _, t := range opts.Registry.Transports() {
		p.series = append(p.series, t.Series...)
	}
	if opts.DrainTimeout > 0 {
		p.drain = opts.DrainTimeout
	}
	if p.drain <= 0 {
		p.drain = DefaultDrain
	}
	if opts.AdminListen != "" {
		p.admin.Listen = opts.AdminListen
	}

	var errs Errors
	fail := func(pos Pos, format string, args ...any) {
		errs = append(errs, &Error{Pos: pos, Msg: stage.Redact(fmt.Sprintf(format, args...))})
	}
	nodes, routes, order, run := plan(cfg, opts, fail)
	for _, n := range nodes {
		p.byName[n.cfg.Name] = nil // until built, or for good when it runs elsewhere
	}
	// Build every stage whose kind is known even when the topology is
	// wrong, so that all the problems are reported at once.
	built := make([]engine.Lifecycle, len(nodes))
	handlers := make([]stage.Handler, len(nodes)) // for checkFields; nil for a source
	for i, n := range nodes {
		if n.kind == nil || !run[i] {
			continue
		}
		if st, h, ok := p.build(n.cfg, n.kind, routes[i], fail); ok {
			built[i], handlers[i] = st, h
			p.byName[n.cfg.Name] = st.Stage()
		}
	}
	if order != nil {
		checkFields(nodes, routes, order, handlers, fail, func(pos Pos, format string, args ...any) {
			p.warnings = append(p.warnings, &Error{Pos: pos, Msg: stage.Redact("warning: " + fmt.Sprintf(format, args...))})
		})
	}
	var queues []*queue
	if len(errs) == 0 {
		queues = p.openQueues(cfg, nodes, routes, run, opts.Registry, fail)
	}
	if len(errs) > 0 {
		for _, st := range built {
			if st.Stage() != nil {
				p.closeHandler(st)
			}
		}
		p.closeQueues(queues)
		return nil, errs
	}
	p.assemble(nodes, routes, order, run, built, queues)
	limit, basis := cfg.Memory.Limit, "memory_limit"
	if limit <= 0 {
		limit, basis = DefaultMemoryLimit()
	}
	p.mem = engine.NewMemory(limit, cfg.Memory.Block, basis)
	for _, st := range p.stages {
		st.UseMemory(p.mem) // the sources' events count against it
	}
	p.graph = make(map[string]graphInfo, len(nodes))
	for i, n := range nodes {
		p.graph[n.cfg.Name] = graphInfo{routes: routes[i], next: n.cfg.Next, source: n.kind.IsSource()}
	}
	p.started = make([]bool, len(p.stages))
	p.failed = make(chan struct{})
	p.stopCalled = make(chan struct{})
	return p, nil
}

// Warnings returns what New allowed but is likely a mistake, positioned
// as Errors are, each message starting "warning: ": a sink (Kind.Terminal)
// reading a field no event reaching it can carry, which it stores as
// missing for every event (a db.postgres column: NULL). Config.Warnings
// holds those that need no stage built; a program that prints those
// prints these too (pipectl lint and run do).
func (p *Pipeline) Warnings() Errors { return slices.Clone(p.warnings) }

// Check reports the problems New would find in cfg and opts before it
// constructs anything: an empty Name, an admin endpoint off loopback
// without a token (Options.AdminListen counted), a stage without a name
// or declared twice, unknown kinds, references to unknown stages or to a
// source, cycles, and Options.Stages naming no stage or cutting a route
// that no transport carries. It builds nothing and connects to nothing, so
// that a program can refuse a bad file or flag before it starts what the
// stages will need (pipectl run's local PostgreSQL). Its errors are New's,
// word for word; New makes the same checks and then more (the kinds'
// constructors, the transports' queues). Without opts.Logger, cfg.Log is
// checked as New checks it.
func Check(cfg *Config, opts Options) error {
	if cfg == nil {
		return errors.New("pipeline: Check: nil config")
	}
	if opts.Registry == nil {
		return errors.New("pipeline: Check: Options.Registry is nil")
	}
	if opts.Logger == nil {
		if _, _, err := cfg.Log.parse(); err != nil {
			return fmt.Errorf("pipeline %q: %w", cfg.Name, err)
		}
	}
	var errs Errors
	plan(cfg, opts, func(pos Pos, format string, args ...any) {
		errs = append(errs, &Error{Pos: pos, Msg: stage.Redact(fmt.Sprintf(format, args...))})
	})
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// plan makes the checks of New that need no stage built (Check's), and
// returns the stages as nodes, each one's routes, the topological order
// and which of them run in this process. Problems go to fail.
func plan(cfg *Config, opts Options, fail func(Pos, string, ...any)) (nodes []node, routes [][]string, order []int, run []bool) {
	// The name is in /stats, the logs, the metrics' labels and the names of
	// the queue transports' streams, where an empty one reads wrong or
	// collides; the loader refuses a file without one, and a Config built
	// in code is held to the same rule with the loader's words.
	if strings.TrimSpace(cfg.Name) == "" {
		fail(Pos{File: cfg.File}, "name must not be empty")
	}
	admin := cfg.Admin
	if opts.AdminListen != "" {
		admin.Listen = opts.AdminListen
	}
	if err := checkAdminAddr(admin); err != nil {
		pos := Pos{File: cfg.File} // the listen address of Options, or the token's absence
		if opts.AdminListen == "" && cfg.Admin.ListenPos.Line > 0 {
			pos = cfg.Admin.ListenPos
		}
		fail(pos, "%v", err)
	}
	nodes = make([]node, 0, len(cfg.Stages))
	declared := make(map[string]bool, len(cfg.Stages))
	for _, sc := range cfg.Stages {
		if sc == nil {
			continue
		}
		if sc.Name == "" {
			fail(sc.Pos, "a stage has no name")
			continue
		}
		if declared[sc.Name] {
			fail(sc.Pos, "stage %q is declared twice", sc.Name)
			continue
		}
		declared[sc.Name] = true
		k, ok := opts.Registry.Lookup(sc.Kind)
		if !ok {
			fail(posOr(sc.FieldPos, "kind", sc.Pos), "stage %q: unknown kind %q", sc.Name, sc.Kind)
		}
		nodes = append(nodes, node{cfg: sc, kind: k, refs: refsOf(sc, kindFields(k))})
	}
	routes, order = checkTopology(nodes, fail)
	run = selectStages(cfg.File, nodes, opts.Stages, fail)
	return nodes, routes, order, run
}

// build constructs one stage of kind k; nil when it cannot (the problem is
// reported through fail). The stage's configuration is bound to the kind's
// spec first, so a Config built in Go is checked as the loader checks a
// file, and a constructor that panics (a getter asked for a field the spec
// lacks: a bug in the kind) is reported as the stage's error. routes are
// the stages it may emit to (checkTopology's), for its Env.
func (p *Pipeline) build(sc *StageConfig, k *stage.Kind, routes []string, fail func(Pos, string, ...any)) (engine.Lifecycle, stage.Handler, bool) {
	set := sc.Settings
	set.Name, set.Kind = sc.Name, sc.Kind
	set.Terminal = k.Terminal
	env := stageEnv(set, routes, p.log.Named(sc.Name))
	ctorErr := func(err error) {
		var fe *stage.FieldError
		if errors.As(err, &fe) {
			fail(posOr(sc.FieldPos, fe.Field, sc.Pos), "stage %q: %v", sc.Name, err)
			return
		}
		fail(sc.Pos, "stage %q: %v", sc.Name, err)
	}
	if !checkSettings(sc, fail) {
		return engine.Lifecycle{}, nil, false
	}
	cfg, err := stage.Bind(k.Fields, sc.Config)
	if err != nil {
		for _, e := range unjoin(err) {
			ctorErr(e)
		}
		return engine.Lifecycle{}, nil, false
	}
	if sc.Transport != "" {
		// queue.overflow is the stream's (the front refuses what it
		// cannot publish); the local queue the transport's consumer
		// fills here only waits for room. Refusing there would NAK
		// envelopes whenever the stage falls behind, and dead-letter
		// acked records at their max_deliver-th delivery.
		set.Overflow = port.Block
	}
	life, h, err := construct(k, cfg, env, set)
	if err != nil {
		ctorErr(err)
		return engine.Lifecycle{}, nil, false
	}
	return life, h, true
}

// stageEnv is the Env a stage's constructor gets: set is the stage's
// Settings with its name, kind and Terminal filled in.
func stageEnv(set stage.Settings, routes []string, log *zap.Logger) stage.Env {
	env := stage.Env{Stage: set.Name, Logger: log, Routes: routes, Settings: set.WithDefaults()}
	env.MaxWorkers = env.Settings.Workers
	if env.Settings.AutoWorkers {
		env.MaxWorkers = engine.AutoWorkersCeiling(env.Settings.Concurrency)
	}
	return env
}

// checkSettings reports the common knobs of sc that are out of the
// bounds the loader holds a file to (stage.CommonFields), each at its key:
// a Config built in Go skips the loader, and a workers of 1<<20 started a
// million goroutines. 0 leaves a knob to its default, as an unset key
// does.
func checkSettings(sc *StageConfig, fail func(Pos, string, ...any)) bool {
	ok := true
	check := func(key string, v, hi int64) {
		if v < 0 || v > hi {
			fail(posOr(sc.FieldPos, key, sc.Pos), "stage %q: %s: %d is out of range: want 1 to %d, or 0 for the default", sc.Name, key, v, hi)
			ok = false
		}
	}
	set := sc.Settings
	check("workers", int64(set.Workers), stage.MaxWorkers)
	check("concurrency", int64(set.Concurrency), stage.MaxWorkers)
	check("queue.capacity", int64(set.Capacity), stage.MaxCapacity)
	check("batch.max", int64(set.Batch), stage.MaxBatch)
	check("queue.max_bytes", set.MaxBytes, 1<<50)
	if set.Linger < 0 {
		fail(posOr(sc.FieldPos, "batch.linger", sc.Pos), "stage %q: batch.linger: %v is negative", sc.Name, set.Linger)
		ok = false
	}
	return ok
}

// construct calls the kind's constructor, turning a panic into an error,
// and makes the stage that runs what it returns; h is the handler, for a
// kind that makes one.
func construct(k *stage.Kind, cfg stage.Config, env stage.Env, set stage.Settings) (life engine.Lifecycle, h stage.Handler, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("kind %q: constructor panicked (a bug in the kind): %v", k.Name, v)
		}
	}()
	switch {
	case k.NewSource != nil:
		src, err := k.NewSource(cfg, env)
		if err == nil && src == nil {
			err = fmt.Errorf("kind %q: constructor returned no source", k.Name)
		}
		if err != nil {
			return life, nil, err
		}
		_, life = engine.NewSourceStage(set, src, env.Logger)
	case k.NewInput != nil:
		in, err := k.NewInput(cfg, env)
		if err == nil && in == nil {
			err = fmt.Errorf("kind %q: constructor returned no input", k.Name)
		}
		if err != nil {
			return life, nil, err
		}
		_, life = engine.NewInputStage(set, in, env.Logger)
	default:
		h, err = k.NewHandler(cfg, env)
		if err == nil && h == nil {
			err = fmt.Errorf("kind %q: constructor returned no handler", k.Name)
		}
		if err != nil {
			return life, nil, err
		}
		_, life = engine.NewHandlerStage(set, h, env.Logger)
	}
	return life, h, nil
}

// unjoin returns the errors joined in err (errors.Join), or err itself.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (p *Pipeline) closeHandler(st engine.Lifecycle) {
	if st.IsSource() {
		return // a source that never started holds nothing
	}
	if err := st.Close(); err != nil { // a panic in it comes back as its error (the engine recovers it)
		p.log.Error("closing stage", zap.String("stage", st.Stage().Name()), zap.String("error", stage.Redact(err.Error())))
	}
}

// Name returns the pipeline's name.
func (p *Pipeline) Name() string { return p.name }

// Addr returns the address the stage called name listens on (a network
// source's, once started), or nil: for a stage that does not listen, does
// not run here or does not exist.
func (p *Pipeline) Addr(name string) net.Addr {
	if st := p.byName[name]; st != nil {
		return st.Addr()
	}
	return nil
}

// StageStats returns the figures of the stage called name as Stats shows
// them; false when no such stage is shown.
func (p *Pipeline) StageStats(name string) (stats.Stage, bool) {
	for _, sh := range p.shown {
		if sh.st.Name() == name {
			return sh.stats(), true
		}
	}
	return stats.Stage{}, false
}

// Stats is a snapshot of the pipeline, shaped as GET /stats serves it.
type Stats struct {
	Pipeline string        `json:"pipeline"`
	UptimeS  float64       `json:"uptime_s"`
	State    string        `json:"state"` // starting, running, draining or stopped
	Memory   *stats.Memory `json:"memory,omitempty"`
	Stages   []stats.Stage `json:"stages"`
}

// Stats returns a snapshot of every stage, in file order. It never shows
// configuration, so secret fields cannot leak through it. It is cheap
// enough to poll every 100 ms and safe to call at any time, during Stop
// too.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	s := Stats{Pipeline: p.name, State: p.state.String()}
	switch {
	case p.began.IsZero():
	case !p.ended.IsZero():
		s.UptimeS = p.ended.Sub(p.began).Seconds()
	default:
		s.UptimeS = time.Since(p.began).Seconds()
	}
	p.mu.Unlock()
	m := p.mem.Stats()
	m.GoLimitBytes = goMemoryLimit()
	s.Memory = &m
	s.Stages = make([]stats.Stage, len(p.shown))
	for i, sh := range p.shown {
		s.Stages[i] = sh.stats()
	}
	return s
}

func (p *Pipeline) currentState() state {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}
