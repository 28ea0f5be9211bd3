package process

// This file holds process.func: user functions registered by name and
// run on each event.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

// Func is a user function run by process.func on each event. It may read
// and change ev.Payload and the event's fields (ev.Field, ev.Value, ev.Set).
// It returns keep=false to drop the
// event (finished with Done(nil): counted as handled) or an error to refuse
// it (finished with Done(err); err's text is the client's nack reason).
// It must not call ev.Done itself, and it is called concurrently from the
// stage's workers.
type Func func(ctx context.Context, ev *stage.Event) (keep bool, err error)

// Funcs is a set of named Funcs that an embedding program makes available
// to process.func stages. The zero value is an empty set ready to use; a
// Funcs is safe for concurrent use.
type Funcs struct {
	mu sync.RWMutex
	m  map[string]Func
}

// Add registers fn under name. It fails if name is empty, fn is nil or the
// name is taken.
func (f *Funcs) Add(name string, fn Func) error {
	if name == "" {
		return errors.New("process: add func: empty name")
	}
	if fn == nil {
		return fmt.Errorf("process: add func %q: nil func", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.m[name]; dup {
		return fmt.Errorf("process: add func %q: name already added", name)
	}
	if f.m == nil {
		f.m = map[string]Func{}
	}
	f.m[name] = fn
	return nil
}

func (f *Funcs) lookup(name string) (Func, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn, ok := f.m[name]
	return fn, ok
}

// Names returns the added names, sorted.
func (f *Funcs) Names() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ns := make([]string, 0, len(f.m))
	for n := range f.m {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// RegisterFuncs registers the kind process.func, which runs the functions
// of f. A stage names its function with the field `func`; the name is
// looked up when the stage is built, so functions must be added before the
// pipeline is loaded.
func RegisterFuncs(r *stage.Registry, f *Funcs) error {
	if f == nil {
		return errors.New("process: register process.func: nil Funcs")
	}
	return r.Register(stage.Kind{
		Name: "process.func",
		Doc: "Runs a Go function that the embedding program added to a process.Funcs and registered with " +
			"process.RegisterFuncs. The function returns keep=false to drop the event (acked) or an error to " +
			"refuse it (nacked with the error's text); a panic refuses only that event.",
		Fields: []stage.Field{
			{Name: "func", Type: stage.String, Required: true, Doc: "the name the function was added under (Funcs.Add)"},
		},
		NewHandler: func(cfg stage.Config, env stage.Env) (stage.Handler, error) {
			name := cfg.String("func")
			fn, ok := f.lookup(name)
			if !ok {
				known := "none"
				if ns := f.Names(); len(ns) > 0 {
					known = strings.Join(ns, ", ")
				}
				return nil, &stage.FieldError{Field: "func", Err: fmt.Errorf("unknown func %q (known: %s)", name, known)}
			}
			log := env.Logger
			if log == nil {
				log = zap.NewNop()
			}
			return &funcHandler{name: name, fn: fn, log: log}, nil
		},
	})
}

type funcHandler struct {
	name string
	fn   Func
	log  *zap.Logger
}

var _ stage.Handler = (*funcHandler)(nil)

func (h *funcHandler) Handle(ctx context.Context, batch []*stage.Event, out stage.Emitter) error {
	for _, ev := range batch {
		keep, err := h.call(ctx, ev)
		switch {
		case err != nil:
			ev.Done(err)
		case !keep:
			ev.Done(nil)
		default:
			out.Emit(ctx, ev)
		}
	}
	return nil
}

// call runs the function on one event, turning a panic into an error for
// that event alone: the rest of the batch goes on.
func (h *funcHandler) call(ctx context.Context, ev *stage.Event) (keep bool, err error) {
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("func panicked; refusing its event",
				zap.String("func", h.name), zap.Any("panic", v), zap.Uint64("seq", ev.Seq), zap.StackSkip("stack", 2))
			keep, err = false, fmt.Errorf("func %q failed", h.name)
		}
	}()
	return h.fn(ctx, ev)
}
