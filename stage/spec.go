package stage

// This file holds a kind's spec (Field, FieldType, Kind), the Registry,
// the common fields and byte sizes.

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stagedserver/seda/port"
)

// FieldType is the type of a configuration field, as written in YAML.
type FieldType int

const (
	String     FieldType = iota // a string
	Int                         // an integer
	Bool                        // true or false
	Size                        // a byte size: 65536, 64KiB, 1MiB, 2MB
	Duration                    // a Go duration: 2ms, 1s, 5m
	StringList                  // a list of strings: [a, b]
	StringMap                   // a mapping of strings, order kept: {a: x, b: y}
	Object                      // a mapping with its own Fields
	ObjectList                  // a list of mappings with their own Fields
)

var fieldTypeNames = [...]string{"string", "int", "bool", "size", "duration", "list of strings", "map of strings", "object", "list of objects"}

// String names the type as the docs and errors show it.
func (t FieldType) String() string {
	if int(t) < len(fieldTypeNames) {
		return fieldTypeNames[t]
	}
	return "FieldType(" + strconv.Itoa(int(t)) + ")"
}

// Field describes one configuration key of a kind: its type, its default,
// the values it allows and a line of documentation. The loader, the
// reference docs and lint all read this one declaration.
type Field struct {
	Name string
	Type FieldType
	// Default is the value an absent field takes, as a value of the
	// field's Go type (see Config): a string, an int, a bool, an int64 of
	// bytes for a Size, a time.Duration, a []string. nil means none.
	// Registry.Register refuses a default of the wrong type or one that
	// Enum or Range would refuse, so a broken default is the kind
	// author's error, found at registration, not the user's at 1:1.
	Default  any
	Required bool
	Doc      string  // one line
	Fields   []Field // for Object and ObjectList
	// Enum lists the values a String (or each item of a StringList) may
	// take; nil allows any.
	Enum []string
	// Range bounds an Int, Size (bytes) or Duration (nanoseconds) value;
	// nil allows any (a Size or Duration is never negative).
	Range *Range
	// Ref marks a String or StringList field whose values name stages:
	// the loader checks they exist and draws them as edges.
	Ref bool
	// Secret marks a field never shown in logs or /stats (a DSN).
	Secret bool
}

// Kind is a registered stage kind: its name, documentation,
// configuration spec and constructor. Exactly one of NewHandler,
// NewInput and NewSource is set: a processor or a sink is a Handler; a
// source is an Input (it reads records; the runtime does the rest) or,
// when it needs to do more itself (its own port and pool, per-connection
// acknowledgements), a Source.
//
// A constructor gets its configuration bound to Fields (defaults filled
// in, every value checked: see Config) and the stage's Env, and returns a
// *FieldError for a problem with one field, so that the loader points at
// it. It should not start anything: the pipeline starts the stage later,
// or never (pipectl lint only constructs it).
//
// What a constructor returns may have optional methods besides its
// interface's; the runtime finds them by type assertion, and these are
// all of them:
//
//   - Start(ctx context.Context) error, on a Handler: it sets something
//     up before the pipeline takes input (opens a connection pool, creates a table). Stages are
//     started sinks first; an error stops the pipeline from starting.
//     ctx bounds starting only. A stage whose queue is on a transport
//     is the exception: it starts in the background, after the rest
//     (see Transport), and an error then stops the pipeline.
//   - Close() error, on a Handler: release its resources; called once,
//     after the stage's workers have all returned (also when the pipeline
//     never started).
//   - FieldsRead() (paths []string, all bool), on a Handler: the event
//     fields it reads (dotted paths, as Event.Value takes them; "$", the
//     payload, need not be listed), or all=true when it may read any. A
//     handler without it is taken to read every field. A sink returns its
//     columns' paths, a filter its condition's.
//   - Project(paths []string, all bool), on a decoder: a Handler that
//     replaces an event's fields with ones decoded from its payload.
//     Before its stage's workers start (and before Handle is first
//     called), it is told what the stages after it read (FieldsRead
//     through next stages, routes and inline stages, up to the next
//     decoder), or all=true when one of them may read any field; it then
//     needs to set only those fields.
//   - FieldsMade() (paths []string, open bool), on a Handler: the fields
//     it sets, so that pipeline.New (and so pipectl lint and run)
//     refuses a stage that reads a field (FieldsRead, shard_by) no event
//     reaching it can carry: a filter on a misspelt syslog field, which
//     would never match (a sink's read is a warning: its column is NULL). A decoder's paths are all the fields the events
//     it emits carry, or open=true when they come from the data
//     (process.json's); any other handler's are the fields it adds to
//     those of the events it is handed (none: a filter), or open=true when
//     it may set any. A handler without it is taken to set any field, and
//     so is a source. A read is refused only when every way to its stage
//     passes a decoder whose set lacks the path (or a path it lies below,
//     or one below it) and no handler after that decoder may set any
//     field. New asks the handlers it builds; Parse builds none.
//   - MaxWorkers() int, on a Handler: the most workers it can use at once
//     (a database sink with a fixed connection pool): an auto pool starts
//     with no more (rather than a worker per run slot) and the pool
//     controller grows it no further. A pinned workers overrides it:
//     Env.MaxWorkers then tells the handler the pinned count. 0 means no
//     limit.
//   - Addr() net.Addr, on a Source: the address it listens on, nil
//     before it has started (pipeline.Pipeline.Addr returns it).
//   - Figures(st *stats.Stage), on a Source with a queue and pool of its
//     own or counters of its own: it fills in st.Queue, st.Pool and
//     st.Source for /stats. It is called after the runtime has judged
//     st.Health, which it may make worse (never better; st.Health.Worsen)
//     when it knows of trouble the stage's calls do not show.
//   - Fate(err error) Fate, on a Source or an Input: what becomes of a
//     record of it that is not stored (refused with err, refused at the
//     door: asked with ErrBusy, or abandoned by a forced stop: asked with
//     context.Canceled), for the shutdown
//     report; without it such records count as lost (see Fate).
//
// An Origin's Completer may have CompleteAll (see Completer).
type Kind struct {
	Name       string
	Doc        string
	Fields     []Field
	NewHandler func(cfg Config, env Env) (Handler, error)
	NewInput   func(cfg Config, env Env) (Input, error)
	NewSource  func(cfg Config, env Env) (Source, error)
	// Terminal kinds finish events themselves (a database sink) and take
	// no `next`.
	Terminal bool
	// NoNext, when set, says that the kind takes no `next` though it hands
	// events on, and what to write instead: a kind that sends every event
	// to stages its own Ref fields name (process.route) never emits to
	// next, so a next on it would be drawn and counted as a route yet
	// receive nothing. The loader and New refuse a next on such a stage,
	// with this text as the reason.
	NoNext string
	// Redelivered, if set, says what goes wrong when a stage configured
	// as cfg handles an event a second time, as it may when its queue is
	// on a transport that delivers again what a process did not finish
	// (natsq, after a crash): an error saying why (a row stored twice), or
	// nil when handling an event twice does no harm. `pipectl lint` and
	// `pipectl run` warn with it for such a stage (the pipeline package's
	// Config.Warnings).
	Redelivered func(cfg Config) error
}

// Registry maps kind names to kinds. The zero value is not usable; use
// NewRegistry. A Registry is safe for concurrent use.
type Registry struct {
	mu         sync.RWMutex
	kinds      map[string]*Kind
	transports map[string]*Transport
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{kinds: map[string]*Kind{}, transports: map[string]*Transport{}}
}

// Register adds k. It fails if the name is empty or taken, if neither or
// both constructors are set, or if the spec is broken: a field name
// repeated or common to every stage (kind, next, workers, ...), sub-fields
// on a field that is not an object, a default of the wrong type or outside
// the field's Enum or Range, Enum or Range on a type they do not apply to.
func (r *Registry) Register(k Kind) error {
	if k.Name == "" {
		return errors.New("stage: register: kind has no name")
	}
	if n := countSet(k.NewHandler != nil, k.NewInput != nil, k.NewSource != nil); n != 1 {
		return fmt.Errorf("stage: register %q: set exactly one of NewHandler, NewInput and NewSource", k.Name)
	}
	if err := CheckSpec(k.Fields); err != nil {
		return fmt.Errorf("stage: register %q: %w", k.Name, err)
	}
	for _, f := range k.Fields {
		if IsCommonField(f.Name) {
			return fmt.Errorf("stage: register %q: field %q is common to every stage and cannot be redeclared", k.Name, f.Name)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.kinds[k.Name]; dup {
		return fmt.Errorf("stage: register %q: kind already registered", k.Name)
	}
	kk := k
	r.kinds[k.Name] = &kk
	return nil
}

func countSet(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// IsSource reports whether the kind makes events (NewInput or NewSource).
func (k *Kind) IsSource() bool { return k.NewInput != nil || k.NewSource != nil }

// Lookup returns the kind registered under name.
func (r *Registry) Lookup(name string) (*Kind, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.kinds[name]
	return k, ok
}

// Kinds returns every registered kind, sorted by name.
func (r *Registry) Kinds() []*Kind {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ks := make([]*Kind, 0, len(r.kinds))
	for _, k := range r.kinds {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].Name < ks[j].Name })
	return ks
}

// CommonFields returns the keys every stage takes besides its kind's
// fields. The pipeline interprets them; kinds never see them.
func CommonFields() []Field {
	return []Field{
		{Name: "kind", Type: String, Required: true, Doc: "the stage kind (see the kinds below)"},
		{Name: "next", Type: String, Ref: true, Doc: "the stage that receives this stage's events; none: the end of the pipeline"},
		{Name: "inline", Type: Bool, Default: false, Doc: "no queue or pool: run inside the upstream stage's workers (operator chaining)"},
		{Name: "workers", Type: Int, Range: Between(1, MaxWorkers), Doc: "goroutines in the pool; unset: auto, the pool controller adds workers while the queue holds a batch and the workers are blocked (from concurrency up to 4× it, at least 16) and retires idle ones; a number pins it"},
		{Name: "concurrency", Type: Int, Range: Between(1, MaxWorkers), Doc: "workers running at once, the port's limit; unset: GOMAXPROCS"},
		{Name: "queue", Type: Object, Doc: "the stage's port", Fields: []Field{
			{Name: "capacity", Type: Int, Default: port.DefaultCapacity, Range: Between(1, MaxCapacity), Doc: fmt.Sprintf("events queued at most; unset in a terminal stage (db.postgres): %d", DefaultSinkCapacity)},
			{Name: "overflow", Type: String, Default: "block", Enum: []string{"block", "reject"}, Doc: "block: the sender waits (backpressure); reject: the event is refused as busy"},
			{Name: "max_bytes", Type: Size, Range: Between(0, 1<<50), Doc: "the queue is full also once the records queued add up to this many bytes (their payloads), and overflow applies; unset or 0: bounded in events only; transport nats: the bytes the stream holds at most (discard new), unset: 1GiB, 0: no limit"},
		}},
		{Name: "shard_by", Type: StringList, Doc: "fields whose values are a key: events with equal keys are handled by one worker at a time, in the order the stage received them (with batching, any number of workers, retries and inline stages); keys spread over 256 shards"},
		{Name: "batch", Type: Object, Doc: "events one worker takes at once; also written as a plain number (max)", Fields: []Field{
			{Name: "max", Type: Int, Range: Between(1, MaxBatch), Doc: fmt.Sprintf("events per batch at most; unset: auto, the batching controller sizes it (up to the queue capacity, at most %d, or %d in a terminal stage such as db.postgres); a number pins it", MaxAutoBatch, MaxAutoSinkBatch)},
			{Name: "linger", Type: Duration, Default: time.Duration(0), Doc: "how long a worker waits for a batch to fill once it has one event"},
		}},
	}
}

// IsCommonField reports whether name is one of CommonFields.
func IsCommonField(name string) bool {
	for _, f := range CommonFields() {
		if f.Name == name {
			return true
		}
	}
	return false
}

// FieldError is an error about one field of a stage's configuration. A
// constructor returns it so that the loader can point at the field's line
// and column.
type FieldError struct {
	Field string // dotted path from the stage, e.g. "batch.max" or "routes.1.if"
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ParseSize parses a byte size: a plain number of bytes, or a number with
// one of the units B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers
// of 1024); case-insensitive for the letters, no fractional numbers.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("bad size %q: want a number of bytes such as 65536 or 64KiB", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q: %w", s, err)
	}
	mult := int64(1)
	switch strings.ToLower(strings.TrimSpace(t[i:])) {
	case "", "b":
	case "kb", "k":
		mult = 1000
	case "mb", "m":
		mult = 1000 * 1000
	case "gb", "g":
		mult = 1000 * 1000 * 1000
	case "kib":
		mult = 1 << 10
	case "mib":
		mult = 1 << 20
	case "gib":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("bad size %q: unknown unit %q (use B, KB, MB, GB, KiB, MiB, GiB)", s, t[i:])
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q: too large", s)
	}
	return n * mult, nil
}
