package pipeline

// This file holds the Config a pipeline file loads into (or a program
// builds), and the positioned errors about it.

import (
	"fmt"
	"strings"
	"time"

	"github.com/stagedserver/seda/stage"
)

// Config is a pipeline description: what a pipeline.yaml holds once loaded
// and checked. Load fills it from a file; a program may also build one by
// hand. New turns it into a runnable Pipeline.
type Config struct {
	File  string // where it was loaded from; "" when built in code
	Name  string
	Admin AdminConfig
	Log   LogConfig
	Drain time.Duration // drain deadline for phase one of Stop; 0 means 30s
	// Memory is memory_limit: the bytes of records the pipeline may hold.
	Memory MemoryConfig
	// Transports holds the top-level sections of the queue transports
	// (nats:), by transport name, each bound to its transport's Fields.
	Transports map[string]stage.Config
	Stages     []*StageConfig // in file order
}

// AdminConfig configures the admin HTTP endpoint (/stats, /metrics,
// /healthz, /readyz).
type AdminConfig struct {
	Listen string // host:port; "" means no admin endpoint
	// Token, when set, must be sent by every request as
	// "Authorization: Bearer TOKEN"; without a token the endpoint binds
	// loopback addresses only.
	Token string
	// ListenPos is where Listen is written in the file, when it is.
	ListenPos Pos
}

// LogConfig configures the pipeline's zap logger.
type LogConfig struct {
	Level  string // debug, info, warn, error; "" means info
	Format string // console or json; "" means console
}

// StageConfig is one stage of a Config.
type StageConfig struct {
	Name string
	Kind string
	Next string // the default next stage; "" means none
	// Routes lists every stage this one may emit to, Next first and then
	// the values of the kind's Ref fields (process.route's targets), each
	// once. The loader fills it. New takes the same routes from Next and
	// the Ref fields itself, so a Config built in code may leave Routes
	// empty; a name it lists besides is a route too.
	Routes   []string
	Settings stage.Settings // common knobs (Name and Kind repeated there)
	Config   stage.Config   // the kind's own fields, defaults filled in
	// Transport, when set, names the queue transport that carries the
	// stage's queue (queue.transport: nats): the stage may then run in
	// other processes. TransportConfig holds the queue keys it takes
	// (stream, ...), bound to its QueueFields.
	Transport       string
	TransportConfig stage.Config
	Pos             Pos // where the stage's name is written
	// FieldPos maps a dotted field path ("dsn", "batch.max",
	// "routes.1.next") to where its value is written, so that errors found
	// after loading can point at it. A value given by a YAML alias
	// (columns: *cols), and everything in it, is written where the alias
	// is, in this stage: the anchor's text may be in another stage.
	FieldPos map[string]Pos
}

// Pos is a position in a pipeline file; Line and Col count from 1.
type Pos struct {
	File      string
	Line, Col int
}

func (p Pos) String() string {
	if p.Line == 0 {
		if p.File == "" {
			return "-"
		}
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one problem in a pipeline description, with where it is.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Errors is every problem found in one pipeline description, in file order.
// Load and New report all of them at once rather than the first.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Stage returns the stage named name, or nil.
func (c *Config) Stage(name string) *StageConfig {
	for _, s := range c.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}
