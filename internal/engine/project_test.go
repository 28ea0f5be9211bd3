package engine

// This file tests projection: what a decoder is told the stages after it
// read, shard_by fields included.

import (
	"context"
	"slices"
	"testing"

	"github.com/stagedserver/seda/stage"
)

// testProjector records what it was told.
type testProjector struct {
	nop
	paths []string
	all   bool
	told  int
}

func (p *testProjector) Project(paths []string, all bool) {
	p.paths, p.all, p.told = paths, all, p.told+1
}
func (p *testProjector) FieldsRead() ([]string, bool) { return nil, false }

// reader reads the given paths.
type reader struct {
	nop
	paths []string
}

func (r reader) FieldsRead() ([]string, bool) { return r.paths, false }

type nop struct{}

func (nop) Handle(context.Context, []*stage.Event, stage.Emitter) error { return nil }

// A decoder is told, when it starts, the union of what the stages after
// it read, through routes and past inline stages; not what stages after a
// second decoder read; and everything when one of them does not say.
func TestProjectionIsWhatDownstreamReads(t *testing.T) {
	mk := func(name string, h stage.Handler) (*Stage, Lifecycle) {
		return NewHandlerStage(stage.Settings{Name: name, Inline: true}, h, nil)
	}
	dec := &testProjector{}
	_, lDec := mk("parse", dec)
	sFilter, lFilter := mk("filter", reader{paths: []string{"level", "a.b"}})
	sStore, lStore := mk("store", reader{paths: []string{"host", "$", "level"}})
	sAudit, lAudit := mk("audit", reader{paths: []string{"user.id"}})
	dec2 := &testProjector{}
	sDec2, lDec2 := mk("parse2", dec2)
	sAfter2, lAfter2 := mk("after2", reader{paths: []string{"only.after.second"}})
	lDec.Connect(sFilter, map[string]*Stage{"filter": sFilter})
	lFilter.Connect(sStore, map[string]*Stage{"store": sStore, "audit": sAudit, "parse2": sDec2})
	lStore.Connect(nil, nil)
	lAudit.Connect(nil, nil)
	lDec2.Connect(sAfter2, map[string]*Stage{"after2": sAfter2})
	lAfter2.Connect(nil, nil)
	for _, l := range []Lifecycle{lAfter2, lDec2, lAudit, lStore, lFilter, lDec} {
		if err := l.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(dec.paths)
	if want := []string{"a.b", "host", "level", "user.id"}; dec.all || !slices.Equal(dec.paths, want) || dec.told != 1 {
		t.Fatalf("told %d times: %v all=%v, want %v", dec.told, dec.paths, dec.all, want)
	}
	if !slices.Equal(dec2.paths, []string{"only.after.second"}) {
		t.Fatalf("second decoder told %v", dec2.paths)
	}

	// A stage that does not say what it reads: every field.
	dec3 := &testProjector{}
	_, l3 := mk("parse3", dec3)
	sAny, lAny := mk("func", nop{})
	l3.Connect(sAny, map[string]*Stage{"func": sAny})
	lAny.Connect(nil, nil)
	if err := l3.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !dec3.all || dec3.paths != nil {
		t.Fatalf("before a stage that reads anything: %v all=%v, want all", dec3.paths, dec3.all)
	}
}

// A stage's shard_by fields are read as its events enter it: a decoder
// before it is told them, also when the stage is a decoder itself (its
// key is read before it decodes).
func TestProjectionIncludesShardBy(t *testing.T) {
	dec := &testProjector{}
	_, lDec := NewHandlerStage(stage.Settings{Name: "parse", Inline: true}, dec, nil)
	dec2 := &testProjector{}
	sDec2, lDec2 := NewHandlerStage(stage.Settings{Name: "parse2", Inline: true, ShardBy: []string{"tenant"}}, dec2, nil)
	sStore, lStore := NewHandlerStage(stage.Settings{Name: "store", Inline: true, ShardBy: []string{"id", "host"}}, reader{paths: []string{"host"}}, nil)
	lDec.Connect(sDec2, map[string]*Stage{"parse2": sDec2})
	lDec2.Connect(sStore, map[string]*Stage{"store": sStore})
	lStore.Connect(nil, nil)
	for _, l := range []Lifecycle{lStore, lDec2, lDec} {
		if err := l.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(dec.paths, []string{"tenant"}) {
		t.Fatalf("first decoder told %v, want the second's shard_by", dec.paths)
	}
	slices.Sort(dec2.paths)
	if !slices.Equal(dec2.paths, []string{"host", "id"}) {
		t.Fatalf("second decoder told %v, want the store's shard_by and what it reads", dec2.paths)
	}
}
