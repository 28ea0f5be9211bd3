package pipeline

// This file holds Scale: pinning or releasing a running stage's knobs.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/engine"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// Knob is one value of a Scale request: a number that pins the knob, or
// "auto" (Auto), which hands it back to its controller. The zero Knob
// leaves the knob as it is. In JSON it is a number or the string "auto".
type Knob struct {
	N    int  // the value to pin at; with Auto, unused
	Auto bool // hand the knob back to its controller
	Set  bool // the request names this knob
}

// Pin returns a Knob that pins at n.
func Pin(n int) Knob { return Knob{N: n, Set: true} }

// Auto is a Knob that hands the knob back to its controller.
var Auto = Knob{Auto: true, Set: true}

// UnmarshalJSON reads a number or "auto".
func (k *Knob) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == `"auto"` {
		*k = Auto
		return nil
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		return fmt.Errorf("want a whole number or \"auto\", got %s", b)
	}
	*k = Pin(n)
	return nil
}

// ParseKnob reads a Knob as written on a command line: a whole number or
// "auto".
func ParseKnob(s string) (Knob, error) {
	if s == "auto" {
		return Auto, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return Knob{}, fmt.Errorf("want a whole number or auto, got %q", s)
	}
	return Pin(n), nil
}

// MarshalJSON writes the number or "auto".
func (k Knob) MarshalJSON() ([]byte, error) {
	if k.Auto {
		return []byte(`"auto"`), nil
	}
	return []byte(strconv.Itoa(k.N)), nil
}

// String is the number or "auto".
func (k Knob) String() string {
	if k.Auto {
		return "auto"
	}
	return strconv.Itoa(k.N)
}

// Scale is a request to resize a running stage (pipectl scale; POST
// /stages/{name}/scale). Each knob it names changes; the others stay.
type Scale struct {
	Workers     Knob `json:"workers,omitzero"`     // pool size, or auto
	Concurrency Knob `json:"concurrency,omitzero"` // run slots (no auto: they are the CPUs' share)
	Batch       Knob `json:"batch,omitzero"`       // batch size, or auto
}

// String lists the knobs the request names: "workers=8 batch=auto".
func (sc Scale) String() string {
	var b []byte
	for _, k := range []struct {
		name string
		k    Knob
	}{{"workers", sc.Workers}, {"concurrency", sc.Concurrency}, {"batch", sc.Batch}} {
		if k.k.Set {
			if len(b) > 0 {
				b = append(b, ' ')
			}
			b = append(b, k.name+"="+k.k.String()...)
		}
	}
	return string(b)
}

// Errors of Pipeline.Scale, for callers that answer by kind (the admin
// endpoint: 404, 409, 400).
var (
	ErrUnknownStage = errors.New("no such stage")
	ErrBadScale     = errors.New("bad scale request")
	// ErrRemoteStage: the stage is in the file, but its workers run in
	// another process (the one that consumes its transport queue, or runs
	// it under --stages); it is resized there.
	ErrRemoteStage = errors.New("runs in another process")
)

// Scale resizes the named stage while the pipeline runs: its pool
// (workers), run slots (concurrency) and batch size, each pinned at a
// number or, for workers and batch, handed back to its controller with
// auto. Nothing running is interrupted (engine.Lifecycle.SetWorkers and
// SetConcurrency say how). Every value is checked before any is applied.
// It returns the stage's figures afterwards. Errors wrap ErrUnknownStage,
// ErrRemoteStage, ErrBadScale or engine.ErrNotResizable, and name the
// stage.
func (p *Pipeline) Scale(name string, sc Scale) (stats.Stage, error) {
	l, err := p.scalable(name)
	if err != nil {
		return stats.Stage{}, err
	}
	if !sc.Workers.Set && !sc.Concurrency.Set && !sc.Batch.Set {
		return stats.Stage{}, fmt.Errorf("stage %q: %w: name workers, concurrency or batch", name, ErrBadScale)
	}
	check := func(what string, k Knob, hi int, auto bool) error {
		switch {
		case !k.Set:
		case k.Auto && !auto:
			return fmt.Errorf("stage %q: %w: %s has no controller; give a number", name, ErrBadScale, what)
		case !k.Auto && (k.N < 1 || k.N > hi):
			return fmt.Errorf("stage %q: %w: %s %d: want 1 to %d%s", name, ErrBadScale, what, k.N, hi, map[bool]string{true: ", or auto"}[auto])
		}
		return nil
	}
	if err := errors.Join(check("workers", sc.Workers, stage.MaxWorkers, true),
		check("concurrency", sc.Concurrency, stage.MaxWorkers, false),
		check("batch", sc.Batch, stage.MaxBatch, true)); err != nil {
		return stats.Stage{}, err
	}
	value := func(k Knob) int {
		if k.Auto {
			return 0
		}
		return k.N
	}
	if sc.Concurrency.Set {
		if err := l.SetConcurrency(sc.Concurrency.N); err != nil {
			return stats.Stage{}, err
		}
	}
	if sc.Workers.Set {
		if err := l.SetWorkers(value(sc.Workers)); err != nil {
			return stats.Stage{}, err
		}
	}
	if sc.Batch.Set {
		if err := l.SetBatch(value(sc.Batch)); err != nil {
			return stats.Stage{}, err
		}
	}
	p.log.Info("stage resized", zap.String("stage", name), zap.Stringer("scale", sc))
	return l.Stage().Stats(), nil
}

// scalable returns the lifecycle of the stage called name that /stats
// shows: the stage itself where it runs here. A stage whose queue is on a
// transport has up to three lifecycles of that name in p.stages (the
// stand-in that publishes to the queue, the consumer that feeds the stage,
// and the stage), so taking the first of that name resized the stand-in
// while /stats showed the stage's pool unchanged.
func (p *Pipeline) scalable(name string) (engine.Lifecycle, error) {
	for _, sh := range p.shown {
		if sh.st.Name() != name {
			continue
		}
		if sh.remote {
			return engine.Lifecycle{}, fmt.Errorf("stage %q: %w: its queue is on a transport and its workers run in the process that consumes it; scale it on that process's admin endpoint", name, ErrRemoteStage)
		}
		for _, l := range p.stages {
			if l.Stage() == sh.st {
				return l, nil
			}
		}
	}
	if _, declared := p.byName[name]; declared {
		return engine.Lifecycle{}, fmt.Errorf("stage %q: %w: this process does not run it (see its --stages); scale it on the admin endpoint of the process that does", name, ErrRemoteStage)
	}
	return engine.Lifecycle{}, fmt.Errorf("stage %q: %w", name, ErrUnknownStage)
}

// decodeScale reads a Scale request body: one JSON object naming only
// the three knobs, each once and in lower case, and nothing after it.
// (encoding/json alone takes the last of a repeated key, "WORKERS" for
// "workers", and ignores what follows the first value.)
func decodeScale(b []byte) (Scale, error) {
	bad := func(format string, args ...any) (Scale, error) {
		return Scale{}, fmt.Errorf("%w: "+format, append([]any{ErrBadScale}, args...)...)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return bad("want a JSON object")
	}
	var sc Scale
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bad("%v", err)
		}
		name, _ := t.(string)
		var k *Knob
		switch name {
		case "workers":
			k = &sc.Workers
		case "concurrency":
			k = &sc.Concurrency
		case "batch":
			k = &sc.Batch
		default:
			return bad("unknown field %q: want workers, concurrency or batch", name)
		}
		if k.Set { // a knob decoded is Set (UnmarshalJSON)
			return bad("%s given twice", name)
		}
		if err := dec.Decode(k); err != nil {
			return bad("%s: %v", name, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the object's end
		return bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("more after the object")
	}
	return sc, nil
}
