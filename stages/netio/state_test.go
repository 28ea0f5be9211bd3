package netio

// This file tests the transitions a connection's state allows.

import "testing"

// The transitions conn.to allows are exactly those connState documents.
func TestConnStateTransitions(t *testing.T) {
	allowed := map[[2]connState]bool{
		{connOpen, connEnding}:     true,
		{connEnding, connClosing}:  true,
		{connClosing, connClosed}:  true,
		{connOpen, connDead}:       true,
		{connEnding, connDead}:     true,
		{connOpen, connAborted}:    true,
		{connEnding, connAborted}:  true,
		{connClosing, connAborted}: true,
		{connDead, connAborted}:    true,
	}
	for from := connOpen; from <= connAborted; from++ {
		for to := connOpen; to <= connAborted; to++ {
			if got := from.canGo(to); got != allowed[[2]connState{from, to}] {
				t.Errorf("%s -> %s allowed: %v", from, to, got)
			}
		}
	}
}
