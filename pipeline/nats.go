package pipeline

import (
	"errors"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/natsq"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// This file holds what lets one pipeline run across processes: the
// `nats:` section, queues on NATS JetStream (queue.transport nats), and
// partial runs (Options.Stages). See package natsq for the transport.

// natsField is the top-level `nats:` section.
func natsField() stage.Field {
	return stage.Field{Name: "nats", Type: stage.Object, Fields: natsq.Fields(),
		Doc: "the connection to NATS, used by the stages whose queue.transport is nats (see Across processes)"}
}

// stageFields returns the keys every stage takes: stage.CommonFields,
// with the keys that put a stage's queue on JetStream added to queue.
func stageFields() []stage.Field {
	fs := stage.CommonFields()
	for i := range fs {
		if fs[i].Name != "queue" {
			continue
		}
		q := fs[i]
		q.Fields = append(append(append([]stage.Field(nil), q.Fields...),
			natsq.TransportField(), natsq.StreamField()), natsq.QueueFields()...)
		q.Doc = "the stage's queue: an in-process port, or a JetStream stream (transport nats)"
		fs[i] = q
	}
	return fs
}

// natsSection reads the `nats:` section into cfg.
func (l *loader) natsSection(sc *scope, top stage.Config, cfg *Config) {
	cfg.Nats = natsq.ConfigFrom(top.Object("nats"))
	if err := cfg.Nats.Check(); err != nil {
		at := sc.at("nats")
		var fe *stage.FieldError
		if errors.As(err, &fe) {
			at = posOr(sc.fpos, "nats."+fe.Field, at)
		}
		l.errAt(at, "%v", err)
	}
}

// queueTransport reads a stage's queue.transport and, for nats, the keys
// of its stream into s.Nats.
func (l *loader) queueTransport(sc *scope, s *StageConfig, q stage.Config, kind *stage.Kind) {
	if _, written := sc.fpos["queue.transport"]; written && !q.Has("transport") {
		return // a bad transport, reported as it was decoded
	}
	switch v, _ := q.Value("transport"); v {
	case "nats":
	case "local":
		for _, f := range append(natsq.QueueFields(), natsq.StreamField()) {
			if q.Has(f.Name) {
				l.errAt(sc.at("queue."+f.Name), "%s", sc.msg("queue.%s applies to a queue on NATS only (queue.transport: nats)", f.Name))
			}
		}
		return
	default:
		return // a bad transport, reported as it was decoded
	}
	if kind != nil && kind.IsSource() {
		l.errAt(sc.at("queue.transport"), "%s", sc.msg("a source (kind %q) takes no input, so its queue cannot be a stream", kind.Name))
		return
	}
	qc := natsq.QueueConfigFrom(q)
	if err := qc.Check(); err != nil {
		at := sc.at("queue.transport")
		var fe *stage.FieldError
		if errors.As(err, &fe) {
			at = posOr(sc.fpos, fe.Field, at)
		}
		l.errAt(at, "%s", sc.msg("%v", err))
		return
	}
	s.Nats = &qc
}

// selectStages returns which of nodes run in this process: all of them
// when names is empty. It reports names that are no stage, and every
// route between a stage that runs here and one that does not, unless the
// route's target has its queue on NATS: only a stream carries events
// between processes.
func selectStages(file string, nodes []node, names []string, fail func(Pos, string, ...any)) []bool {
	run := make([]bool, len(nodes))
	if len(names) == 0 {
		for i := range run {
			run[i] = true
		}
		return run
	}
	index := make(map[string]int, len(nodes))
	all := make([]string, len(nodes))
	for i, n := range nodes {
		index[n.cfg.Name] = i
		all[i] = n.cfg.Name
	}
	for _, name := range names {
		i, ok := index[name]
		if !ok {
			fail(Pos{File: file}, "--stages: no stage named %q%s; stages: %s", name, suggest(name, all), listNames(all))
			continue
		}
		run[i] = true
	}
	for i, n := range nodes {
		for _, r := range n.refs {
			j, ok := index[r.to]
			if !ok || run[i] == run[j] || nodes[j].cfg.Nats != nil {
				continue
			}
			here, there := n.cfg.Name, r.to
			if !run[i] {
				here, there = there, here
			}
			if nodes[j].cfg.Settings.Inline {
				fail(r.pos, "stage %q: %q is inline, so it runs in %q's workers and must run where %q does (%q runs here, %q does not)",
					n.cfg.Name, r.to, n.cfg.Name, n.cfg.Name, here, there)
				continue
			}
			fail(r.pos, "stage %q: the route to %q crosses processes (%q runs here, %q does not), and only a queue on NATS can carry it: give %q queue: {transport: nats, stream: NAME}",
				n.cfg.Name, r.to, here, there, r.to)
		}
	}
	return run
}

// shown is one entry of /stats: a stage that runs here, or the stand-in
// that publishes to the queue of one that runs elsewhere.
type shown struct {
	st     *engine.Stage
	q      *natsq.Queue // nil for a local queue
	kind   string
	remote bool
}

// assemble puts the built stages together: for each stage whose queue is
// on NATS, the stand-in that publishes to the stream (where a stage of
// this process routes to it) and the consumer that feeds it (where it
// runs here). It connects the stages, orders them for the lifecycle
// (every stage after those upstream of it) and lists what /stats shows.
func (p *Pipeline) assemble(cfg *Config, nodes []node, routes [][]string, order []int, run []bool, built []engine.Lifecycle) {
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n.cfg.Name] = i
	}
	queues := make([]*natsq.Queue, len(nodes))
	queue := func(j int) *natsq.Queue {
		if queues[j] == nil {
			if p.nats == nil {
				p.nats = natsq.NewClient(cfg.Nats, cfg.Name, p.log.Named("nats"))
			}
			sc := nodes[j].cfg
			set := sc.Settings.WithDefaults()
			queues[j] = p.nats.Queue(sc.Name, *sc.Nats, set.Overflow, set.Capacity)
		}
		return queues[j]
	}
	pub := make([]engine.Lifecycle, len(nodes))
	for i := range nodes {
		if !run[i] {
			continue
		}
		for _, r := range routes[i] {
			j := index[r]
			if sc := nodes[j].cfg; sc.Nats != nil && pub[j].Stage() == nil {
				set := sc.Settings
				set.Name, set.Kind, set.Inline = sc.Name, sc.Kind, false
				set.Terminal = true // its out counts the events the stream took
				_, pub[j] = engine.NewHandlerStage(set, queue(j).Publisher(), p.log.Named(sc.Name))
			}
		}
	}
	cons := make([]engine.Lifecycle, len(nodes))
	for j, n := range nodes {
		if run[j] && n.cfg.Nats != nil && built[j].Stage() != nil {
			set := stage.Settings{Name: n.cfg.Name, Kind: "nats.consumer", Batch: built[j].Stage().Settings().Batch}
			_, cons[j] = engine.NewSourceStage(set, queue(j).Consumer(), p.log.Named(n.cfg.Name))
			cons[j].Connect(built[j].Stage(), nil)
		}
	}
	target := func(j int) *engine.Stage {
		if pub[j].Stage() != nil {
			return pub[j].Stage()
		}
		return built[j].Stage()
	}
	for i, st := range built {
		if st.Stage() == nil {
			continue
		}
		var next *engine.Stage
		if j, ok := index[nodes[i].cfg.Next]; ok {
			next = target(j)
		}
		rs := make(map[string]*engine.Stage, len(routes[i]))
		for _, r := range routes[i] {
			rs[r] = target(index[r])
		}
		st.Connect(next, rs)
	}
	// In topological order of the file's stages, a stand-in takes its
	// stage's place (its upstream stages come before it) and a consumer
	// comes just before the stage it feeds.
	for _, j := range order {
		for _, st := range []engine.Lifecycle{pub[j], cons[j], built[j]} {
			if st.Stage() != nil {
				p.order = append(p.order, len(p.stages))
				p.stages = append(p.stages, st)
				p.isSource = append(p.isSource, st.IsSource())
			}
		}
	}
	for j, n := range nodes {
		switch {
		case built[j].Stage() != nil:
			p.shown = append(p.shown, shown{st: built[j].Stage(), q: queues[j], kind: n.cfg.Kind})
		case pub[j].Stage() != nil:
			p.shown = append(p.shown, shown{st: pub[j].Stage(), q: queues[j], kind: n.cfg.Kind, remote: true})
		}
	}
}

// stats returns the /stats entry of one shown stage.
func (s shown) stats() stats.Stage {
	st := s.st.Stats()
	st.Kind = s.kind
	st.Remote = s.remote
	if s.q != nil {
		s.q.Fill(&st)
	}
	return st
}
