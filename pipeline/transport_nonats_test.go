//go:build nonats

package pipeline

// This file stands in for transport_test.go under -tags nonats: no
// transport is registered.

import (
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

func registerTransports(*stage.Registry) error { return nil }

func transportSeries() []stats.Series { return nil }
