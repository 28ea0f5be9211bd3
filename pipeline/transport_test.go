//go:build !nonats

package pipeline

import (
	"github.com/stagedserver/seda/natsq"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// The tests register the queue transport as pipectl does: pipeline itself
// knows none. Built with -tags nonats (scripts/fuzz.sh does, for
// FuzzParse) they register none, and the test binary leaves natsq and the
// NATS server it embeds out: fuzzing instruments every package of the
// binary, and nats-server was most of the pipeline target's build.

// registerTransports registers natsq's transport in reg.
func registerTransports(reg *stage.Registry) error { return natsq.Register(reg) }

// transportSeries is the series natsq's transport declares.
func transportSeries() []stats.Series { return natsq.Series() }
