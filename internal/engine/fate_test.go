package engine

// This file tests a source stage's count of what became of its records
// (Stage.Fates) where its door refuses part of a read.

import (
	"testing"
	"time"

	"github.com/stagedserver/seda/stage"
)

// TestFatesCountOnlyTheRefusedPartOfAnAdmission: under admission control
// the token bucket admits 64 of the 100 records a read offers. The door
// counts the 36 it refused (lost: the source has no Fate method); the 64
// it admitted become events and are counted once, as stored when they
// finish. Counting the whole read as refused would report 100 lost as
// well as 64 stored, for 100 records.
func TestFatesCountOnlyTheRefusedPartOfAnAdmission(t *testing.T) {
	src, _ := NewSourceStage(stage.Settings{Name: "src"}, nil, nil)
	a := &Admission{s: src, target: time.Second, stop: make(chan struct{}), done: make(chan struct{})}
	now := time.Now()
	a.setRate(1000, sinceEpoch(now)) // a record a millisecond; a bucket of 64
	src.adm.Store(a)
	rt := sourceRuntime{src}
	k := rt.Admit(now, 100)
	if k != 64 {
		t.Fatalf("admitted %d of 100 from a full bucket of 64, want 64", k)
	}
	for i := range k {
		rt.NewEvent([]byte("x"), uint64(i), stage.Origin{}).Done(nil)
	}
	if f := src.Fates(false); f.Stored != 64 || f.Lost != 36 || f.Total() != 100 {
		t.Errorf("fates %s (total %d); want 64 stored and the 36 records the bucket refused lost, 100 in all", f, f.Total())
	}
}
