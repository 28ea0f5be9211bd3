package stage

import "github.com/stagedserver/seda/stats"

// SourceStatser is implemented by sources that keep stats.Source; /stats
// shows them under "source".
type SourceStatser interface {
	SourceStats() stats.Source
}
