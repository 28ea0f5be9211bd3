package pipeline

// This file holds what lets one pipeline run across processes, for any
// queue transport registered in the Registry (stage.Transport; natsq's is
// "nats"): the transports' top-level sections, a stage's queue on a
// transport (queue.transport), partial runs (Options.Stages), and the
// stand-ins and consumers that connect the stages to such queues, and the
// background start of the stages behind such a queue.

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// localTransport is queue.transport's value for the in-process port.
const localTransport = "local"

// transportSections returns the top-level sections of reg's transports,
// for the loader and the reference.
func transportSections(reg *stage.Registry) []stage.Field {
	var fs []stage.Field
	for _, t := range reg.Transports() {
		fs = append(fs, stage.Field{Name: t.Name, Type: stage.Object, Fields: t.Fields, Doc: t.Doc})
	}
	return fs
}

// stageFields returns the keys every stage takes: stage.CommonFields,
// with queue.transport and the queue keys of reg's transports added to
// queue.
func stageFields(reg *stage.Registry) []stage.Field {
	fs := stage.CommonFields()
	ts := reg.Transports()
	names := []string{localTransport}
	docs := []string{localTransport + ": an in-process port"}
	var extra []stage.Field
	seen := map[string]bool{}
	for _, f := range queueFields(fs) {
		seen[f.Name] = true // a common key (max_bytes) a transport also reads is declared once
	}
	for _, t := range ts {
		names = append(names, t.Name)
		docs = append(docs, t.Name+": "+t.QueueDoc)
		for _, f := range t.QueueFields {
			if !seen[f.Name] {
				seen[f.Name] = true
				extra = append(extra, f)
			}
		}
	}
	for i := range fs {
		if fs[i].Name != "queue" {
			continue
		}
		q := fs[i]
		q.Fields = append(append(append([]stage.Field(nil), q.Fields...), stage.Field{
			Name: "transport", Type: stage.String, Default: localTransport, Enum: names,
			Doc: strings.Join(docs, "; ") + ", so that the stage may run in other processes",
		}), extra...)
		if len(ts) > 0 {
			q.Doc = "the stage's queue: an in-process port, or one a transport carries between processes (transport " + strings.Join(names[1:], ", ") + ")"
		}
		fs[i] = q
	}
	return fs
}

// transportSections reads the top-level sections of the transports into
// cfg, and checks them.
func (l *loader) transportSections(sc *scope, top stage.Config, cfg *Config) {
	for _, t := range l.reg.Transports() {
		section := top.Object(t.Name)
		if cfg.Transports == nil {
			cfg.Transports = map[string]stage.Config{}
		}
		cfg.Transports[t.Name] = section
		if t.CheckSection == nil {
			continue
		}
		if err := protect(func() error { return t.CheckSection(section) }); err != nil {
			at := sc.at(t.Name)
			var fe *stage.FieldError
			if errors.As(err, &fe) {
				at = posOr(sc.fpos, t.Name+"."+fe.Field, at)
			}
			l.errAt(at, "%v", err)
		}
	}
}

// queueTransport reads a stage's queue.transport and, for a transport,
// the queue keys it takes into s.
func (l *loader) queueTransport(sc *scope, s *StageConfig, q stage.Config, kind *stage.Kind) {
	if _, written := sc.fpos["queue.transport"]; written && !q.Has("transport") {
		return // a bad transport, reported as it was decoded
	}
	name := q.String("transport")
	if name == localTransport {
		for _, t := range l.reg.Transports() {
			for _, f := range t.QueueFields {
				if q.Has(f.Name) && !isCommonQueueField(f.Name) {
					l.errAt(sc.at("queue."+f.Name), "%s", sc.msg("queue.%s applies to a queue on %s only (queue.transport: %s)", f.Name, t.Name, t.Name))
				}
			}
		}
		return
	}
	t, ok := l.reg.Transport(name)
	if !ok {
		return // a bad transport, reported as it was decoded
	}
	if kind != nil && kind.IsSource() {
		l.errAt(sc.at("queue.transport"), "%s", sc.msg("a source (kind %q) takes no input, so its queue cannot be on %s", kind.Name, t.Name))
		return
	}
	var sub stage.Config
	for _, f := range t.QueueFields {
		if v, ok := q.Value(f.Name); ok {
			if q.Has(f.Name) {
				sub.Set(f.Name, v)
			} else {
				sub.SetDefault(f.Name, v)
			}
		}
	}
	qc, _ := stage.Bind(t.QueueFields, sub) // every value was checked as it was decoded
	if t.CheckQueue != nil {
		if err := protect(func() error { return t.CheckQueue(qc) }); err != nil {
			at := sc.at("queue.transport")
			var fe *stage.FieldError
			if errors.As(err, &fe) {
				at = posOr(sc.fpos, fe.Field, at)
			}
			l.errAt(at, "%s", sc.msg("%v", err))
			return
		}
	}
	s.Transport, s.TransportConfig = name, qc
}

// selectStages returns which of nodes run in this process: all of them
// when names is empty. It reports names that are no stage, and every
// route between a stage that runs here and one that does not, unless the
// route's target has its queue on a transport: only a transport carries
// events between processes.
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
			if !ok || run[i] == run[j] || nodes[j].cfg.Transport != "" {
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
			fail(r.pos, "stage %q: the route to %q crosses processes (%q runs here, %q does not), and only a queue on a transport can carry it: give %q queue: {transport: nats, stream: NAME}",
				n.cfg.Name, r.to, here, there, r.to)
		}
	}
	return run
}

// queue is one stage's queue on a transport, as this process uses it.
type queue struct {
	pub  stage.Handler // the stand-in's handler, publishing to the queue
	cons stage.Source  // the source that consumes it and feeds the stage
}

// openQueues makes the queues on transports that this process uses: of
// each stage a stage run here routes to (its stand-in publishes), and of
// each stage run here (a consumer feeds it). It makes those of the other
// stages on a transport too, and drops them, so that the transport sees
// every queue of the file whatever runs here: two stages on one stream
// are refused by every process, not only by one that uses both.
// Problems are reported through fail, at the queue key a *stage.FieldError
// names (queue.stream) or else at queue.transport.
func (p *Pipeline) openQueues(cfg *Config, nodes []node, routes [][]string, run []bool, reg *stage.Registry, fail func(Pos, string, ...any)) []*queue {
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n.cfg.Name] = i
	}
	need := make([]bool, len(nodes))
	for i, n := range nodes {
		if !run[i] {
			continue
		}
		need[i] = need[i] || n.cfg.Transport != ""
		for _, r := range routes[i] {
			if j, ok := index[r]; ok && nodes[j].cfg.Transport != "" {
				need[j] = true
			}
		}
	}
	opened := map[string]func(stage.Config, stage.Env) (stage.Handler, stage.Source, error){}
	queues := make([]*queue, len(nodes))
	for j, n := range nodes {
		if n.cfg.Transport == "" {
			continue
		}
		sc := n.cfg
		mk, ok := opened[sc.Transport]
		if !ok {
			t, found := reg.Transport(sc.Transport)
			if !found {
				fail(posOr(sc.FieldPos, "queue.transport", sc.Pos), "stage %q: unknown queue transport %q", sc.Name, sc.Transport)
				continue
			}
			err := protect(func() (err error) {
				mk, err = t.Open(cfg.Transports[t.Name], cfg.Name, p.log.Named(t.Name))
				return err
			})
			p.logPanic(sc.Name, "transport "+t.Name+" open", err)
			if err != nil {
				fail(posOr(sc.FieldPos, "queue.transport", sc.Pos), "stage %q: transport %s: %v", sc.Name, t.Name, err)
				continue
			}
			opened[sc.Transport] = mk
		}
		set := sc.Settings
		set.Name, set.Kind = sc.Name, sc.Kind
		env := stage.Env{Stage: sc.Name, Settings: set.WithDefaults(), Logger: p.log.Named(sc.Name)}
		var pub stage.Handler
		var cons stage.Source
		err := protect(func() (err error) {
			pub, cons, err = mk(sc.TransportConfig, env)
			return err
		})
		p.logPanic(sc.Name, "transport "+sc.Transport+" queue", err)
		if err != nil {
			at := posOr(sc.FieldPos, "queue.transport", sc.Pos)
			var fe *stage.FieldError
			if errors.As(err, &fe) {
				at = posOr(sc.FieldPos, fe.Field, at)
			}
			fail(at, "stage %q: transport %s: %v", sc.Name, sc.Transport, err)
			continue
		}
		q := &queue{pub: pub, cons: cons}
		if !need[j] {
			p.closeQueues([]*queue{q}) // nothing was opened
			continue
		}
		queues[j] = q
	}
	return queues
}

// shown is one entry of /stats: a stage that runs here, or the stand-in
// that publishes to the queue of one that runs elsewhere.
type shown struct {
	st     *engine.Stage
	fill   func(*stats.Stage) // the queue's figures, for a stage fed by a transport's consumer
	front  *engine.Stage      // the hidden stand-in, where the stage and a stand-in of its queue run here
	kind   string
	remote bool
}

// assemble puts the built stages together: for each stage whose queue is
// on a transport, the stand-in that publishes to it (where a stage of
// this process routes to it) and the consumer that feeds it (where it
// runs here). It connects the stages, orders them for the lifecycle
// (every stage after those upstream of it) and lists what /stats shows.
func (p *Pipeline) assemble(nodes []node, routes [][]string, order []int, run []bool, built []engine.Lifecycle, queues []*queue) {
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n.cfg.Name] = i
	}
	pub := make([]engine.Lifecycle, len(nodes))
	for i := range nodes {
		if !run[i] {
			continue
		}
		for _, r := range routes[i] {
			j := index[r]
			if q := queues[j]; q != nil && pub[j].Stage() == nil {
				sc := nodes[j].cfg
				set := sc.Settings
				set.Name, set.Kind, set.Inline = sc.Name, sc.Kind, false
				set.Terminal = true // its out counts the events the transport took
				_, pub[j] = engine.NewHandlerStage(set, q.pub, p.log.Named(sc.Name))
			}
		}
	}
	cons := make([]engine.Lifecycle, len(nodes))
	for j, n := range nodes {
		if q := queues[j]; q != nil && run[j] && built[j].Stage() != nil {
			set := stage.Settings{Name: n.cfg.Name, Kind: n.cfg.Transport + ".consumer", Batch: built[j].Stage().Settings().Batch}
			_, cons[j] = engine.NewSourceStage(set, q.cons, p.log.Named(n.cfg.Name))
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
		var b behind
		for _, st := range []engine.Lifecycle{pub[j], cons[j], built[j]} {
			if st.Stage() != nil {
				switch st {
				case pub[j]:
					b.pub = len(p.stages)
				case cons[j]:
					b.cons = len(p.stages)
					b.empty, _ = queues[j].cons.(stage.Emptier)
					b.connect, _ = queues[j].cons.(connecter)
				case built[j]:
					b.stage = len(p.stages)
				}
				p.order = append(p.order, len(p.stages))
				p.stages = append(p.stages, st)
				p.isSource = append(p.isSource, st.IsSource())
			}
		}
		if cons[j].Stage() != nil {
			b.fed = pub[j].Stage() != nil
			p.behind = append(p.behind, b)
		}
	}
	for j, n := range nodes {
		switch {
		case built[j].Stage() != nil:
			sh := shown{st: built[j].Stage(), kind: n.cfg.Kind}
			if q := queues[j]; q != nil {
				if f, ok := q.cons.(interface{ Figures(*stats.Stage) }); ok {
					sh.fill = p.guardFigures(n.cfg.Name, f.Figures)
				}
				sh.front = pub[j].Stage() // nil unless a stage here routes to it
			}
			p.shown = append(p.shown, sh)
		case pub[j].Stage() != nil:
			// The stand-in's handler fills in the queue's figures itself.
			p.shown = append(p.shown, shown{st: pub[j].Stage(), kind: n.cfg.Kind, remote: true})
		}
	}
}

// stats returns the /stats entry of one shown stage.
//
// Where the stage and a stand-in of its queue both run here (one process
// with its queue on a transport), the stand-in is not shown, but its
// local queue holds records on their way to the transport, and under
// overflow reject it is the one that refuses them busy. So the entry
// takes the queue's depth, bytes and capacity from the stand-in's
// figures, which its handler fills as a split front's (the transport's
// queue seen from the publishing side: what the transport holds, which
// includes what the stage's own local queue has taken from it, and what
// waits here to be published), and the transport's own figures with
// them (natsq's local_depth is then the stand-in's local queue, so that
// depth adds up as on a split front), and adds the stand-in's rejected to
// the stage's own. Without this the records waiting to be published, and the
// busy refusals, appeared nowhere in /stats
// (TestOneProcessQueueShowsTheStandInsBacklog).
//
// The entry's health is the worse of the stage's (with what its consumer
// adds) and the stand-in's, with the worse one's since and reason (the
// stage's on a tie), and its failures count the stand-in's failed
// publishes too: a stand-in down while the connection stayed up (the
// stream no longer taking the queue's subjects) made /readyz answer 503
// naming the queue while the one entry /stats shows read ok
// (TestOneProcessQueueShowsTheStandInsHealth).
// mergeHealth is the health of a stage shown with its hidden stand-in:
// the worse of the two, with that one's since and reason; on a tie the
// stage's reason, since the later of the two when ok (ok since the last
// of them recovered) and the earlier when not (wrong since the first
// went wrong). The failures are both's.
func mergeHealth(own, standIn stats.Health) stats.Health {
	h := own
	h.Worsen(standIn.State, standIn.Since, standIn.Error)
	if h.State == standIn.State && own.State == standIn.State {
		ok := own.State == stats.HealthOK || own.State == ""
		if ok == standIn.Since.After(own.Since) {
			h.Since = standIn.Since
		}
	}
	h.Failures = own.Failures + standIn.Failures
	return h
}

func (s shown) stats() stats.Stage {
	st := s.st.Stats()
	st.Kind = s.kind
	st.Remote = s.remote
	own := st.Rejected
	if s.fill != nil {
		s.fill(&st)
	}
	if s.front != nil {
		f := s.front.Stats()
		st.Queue.Depth, st.Queue.Bytes, st.Queue.Capacity = f.Queue.Depth, f.Queue.Bytes, f.Queue.Capacity
		if f.Transport != nil {
			st.Transport = f.Transport
		}
		st.Rejected = own + f.Rejected
		st.Health = mergeHealth(st.Health, f.Health)
	}
	return st
}

// closeQueues closes what openQueues made when New fails: the
// publishers' handlers (their sources never started).
func (p *Pipeline) closeQueues(queues []*queue) {
	for _, q := range queues {
		if q == nil {
			continue
		}
		if c, ok := q.pub.(interface{ Close() error }); ok {
			_ = protect(c.Close) // nothing was opened yet
		}
	}
}

// guardFigures returns fill with a panic in it recovered: /stats then
// shows the stage without its queue's figures, and the first panic is
// logged, once (the endpoint may be polled every 100 ms).
func (p *Pipeline) guardFigures(name string, fill func(*stats.Stage)) func(*stats.Stage) {
	var logged atomic.Bool
	return func(st *stats.Stage) {
		err := protect(func() error { fill(st); return nil })
		if err != nil && !logged.Swap(true) {
			p.logPanic(name, "figures", err)
		}
	}
}

// queueFields returns the keys of the queue object among fs.
func queueFields(fs []stage.Field) []stage.Field {
	for _, f := range fs {
		if f.Name == "queue" {
			return f.Fields
		}
	}
	return nil
}

// isCommonQueueField reports whether name is a key every queue takes: a
// transport that declares it too (natsq's max_bytes) reads the value
// written for the queue.
func isCommonQueueField(name string) bool {
	for _, f := range queueFields(stage.CommonFields()) {
		if f.Name == name {
			return true
		}
	}
	return false
}

// behind is a stage fed by a transport's consumer, and that consumer
// (indexes in Pipeline.stages). Start does not wait for it: the queue
// holds what its upstream stages publish until it runs (a database that is
// down at start stops neither the sources nor their acks; see
// startBehind).
type behind struct {
	stage, cons int
	empty       stage.Emptier // the consumer's, if it has one
	// fed: a stand-in of this process (p.stages[pub]) publishes to the
	// consumer's stream (its front runs here too), so the consumer stops
	// taking input only once that stand-in has drained (drainAll).
	fed bool
	pub int
	// connect: the consumer's, if it has one (see connecter).
	connect connecter
}

// connecter is a transport's consumer that can connect before it starts:
// startBehind connects it while the stage it feeds starts, so that /stats
// shows the stream's backlog while a database away at start holds the
// stage's start. Connect takes nothing from the queue; the release it
// returns gives back the connection (Start takes one of its own).
type connecter interface {
	Connect(ctx context.Context) (release func(), err error)
}

// isConsumer reports whether stage i of p.stages is a transport's
// consumer: a source that never ends its input on its own.
func (p *Pipeline) isConsumer(i int) bool {
	for _, b := range p.behind {
		if i == b.cons {
			return true
		}
	}
	return false
}

// isBehind reports whether stage i of p.stages starts in the background.
func (p *Pipeline) isBehind(i int) bool {
	for _, b := range p.behind {
		if i == b.stage || i == b.cons {
			return true
		}
	}
	return false
}

// startBehind starts, each in a goroutine of its own, the stages behind a
// transport's queue, then their consumers. Stop ends a start in progress
// (stopBehind); a start that fails on its own stops the pipeline, and
// Stop returns its error.
func (p *Pipeline) startBehind() {
	if len(p.behind) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.behindStop = cancel
	for _, b := range p.behind {
		p.behindWG.Go(func() {
			defer p.connectEarly(ctx, b)()
			for _, i := range []int{b.stage, b.cons} {
				if err := p.stages[i].Start(ctx); err != nil {
					if ctx.Err() == nil {
						p.failBehind(err)
					}
					return
				}
				p.mu.Lock()
				p.started[i] = true
				p.mu.Unlock()
			}
			p.log.Info("stage started behind its queue", zap.String("pipeline", p.name),
				zap.String("stage", p.stages[b.stage].Stage().Name()))
		})
	}
}

// connectEarly connects b's consumer, if it can, in the background while
// b's stage starts: without it a back whose database was away at start
// never connected to the transport (the consumer starts only after its
// stage), and showed its local queue, empty, and no backlog. The function
// it returns ends the connecting and gives the connection back; call it
// once the consumer's Start has returned or will not be called. A failure
// (other than the end of ctx) is logged: the consumer's own Start
// connects again and reports it.
func (p *Pipeline) connectEarly(ctx context.Context, b behind) func() {
	if b.connect == nil {
		return func() {}
	}
	name := p.stages[b.stage].Stage().Name()
	cctx, cancel := context.WithCancel(ctx)
	var release func()
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := p.guard(name, "connect", func() error {
			var err error
			release, err = b.connect.Connect(cctx)
			return err
		})
		if err != nil && cctx.Err() == nil {
			p.log.Warn("connecting the queue early failed", zap.String("pipeline", p.name),
				zap.String("stage", name), zap.String("error", stage.Redact(err.Error())))
		}
	}()
	return func() {
		cancel()
		<-done
		if release != nil {
			_ = p.guard(name, "release", func() error { release(); return nil })
		}
	}
}

// failBehind records why a stage behind a queue failed to start, and
// ends the run (waitForEnd returns).
func (p *Pipeline) failBehind(err error) {
	p.failOnce.Do(func() {
		p.mu.Lock()
		p.behindErr = err
		p.mu.Unlock()
		p.log.Error("stage failed to start behind its queue; stopping the pipeline",
			zap.String("pipeline", p.name), zap.String("error", stage.Redact(err.Error())))
		close(p.failed)
	})
}

// stopBehind ends the background starts still in progress and waits for
// them, so that the stop procedure sees each stage started or not; it
// returns why one failed on its own, if one did.
func (p *Pipeline) stopBehind() error {
	if p.behindStop != nil {
		p.behindStop()
	}
	p.behindWG.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.behindErr
}
