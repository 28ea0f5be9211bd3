package main

// This file holds the warning that a process split with --stages keeps a
// queue on an embedded NATS server that opens no port, so that the other
// processes of the split cannot reach it.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stagedserver/seda/natsq"
	"github.com/stagedserver/seda/pipeline"
)

// embeddedSplitWarnings returns a warning for each stage whose queue is on
// NATS while the file's nats section runs an embedded server without
// listen, when names (--stages) puts the stage and a stage that routes to
// it in different processes: the server is reached in process only, so
// the other side never sees the stream. A front's records then wait in
// its store_dir for a later run of every stage there, and a back consumes
// only what such a run left: possible on purpose (a back run alone to
// drain a backlog), so a warning, not an error. It is positioned at the
// stage's queue.transport and names nats.embedded.listen, the key to set.
func embeddedSplitWarnings(cfg *pipeline.Config, names []string) pipeline.Errors {
	if len(names) == 0 {
		return nil
	}
	section, ok := cfg.Transports[natsq.TransportName]
	if !ok {
		return nil
	}
	emb := natsq.ConfigFrom(section).Embedded
	if emb == nil || emb.Listen != "" {
		return nil
	}
	here := func(name string) bool { return slices.Contains(names, name) }
	var ws pipeline.Errors
	for _, sc := range cfg.Stages {
		if sc.Transport != natsq.TransportName {
			continue
		}
		var across []string // the stages routing to sc on the other side
		for _, up := range cfg.Stages {
			if slices.Contains(up.Routes, sc.Name) && here(up.Name) != here(sc.Name) {
				across = append(across, fmt.Sprintf("%q", up.Name))
			}
		}
		if len(across) == 0 {
			continue
		}
		from := strings.Join(across, ", ")
		what := fmt.Sprintf("--stages runs it here and %s, which routes to it, in another process, which cannot publish to its stream", from)
		if !here(sc.Name) {
			what = fmt.Sprintf("--stages runs %s, which routes to it, here and it in another process, which cannot consume its stream", from)
		}
		pos := sc.Pos
		if p, ok := sc.FieldPos["queue.transport"]; ok {
			pos = p
		}
		ws = append(ws, &pipeline.Error{Pos: pos, Msg: fmt.Sprintf(
			"warning: stage %q: its queue is on the embedded NATS server (nats.embedded), which has no listen and so opens no port: "+
				"%s; set nats.embedded.listen (127.0.0.1:4222, say) and give the other processes nats.url", sc.Name, what)})
	}
	return ws
}
