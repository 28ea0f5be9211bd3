//go:build nonats

package pipeline

import (
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stats"
)

// With -tags nonats no transport is registered (see transport_test.go).

func registerTransports(*stage.Registry) error { return nil }

func transportSeries() []stats.Series { return nil }
