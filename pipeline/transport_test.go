//go:build !nonats

package pipeline

// This file registers the queue transport for the tests as pipectl does:
// pipeline itself knows none. Built with -tags nonats (scripts/fuzz.sh
// does, for FuzzParse) the tests register none, and the test binary leaves
// natsq and the NATS server it embeds out: fuzzing instruments every
// package of the binary, and nats-server was most of the pipeline
// target's build.

import (
	"github.com/stagedserver/seda/natsq"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// registerTransports registers natsq's transport in reg.
func registerTransports(reg *stage.Registry) error { return natsq.Register(reg) }

// transportSeries is the series natsq's transport declares.
func transportSeries() []stats.Series { return natsq.Series() }
