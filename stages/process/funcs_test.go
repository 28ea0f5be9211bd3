package process

// This file tests process.func: Funcs, running a function on events, and
// an unknown name.

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/stagedserver/seda/stage"
)

func TestFuncsAdd(t *testing.T) {
	var fs Funcs // the zero value is ready to use
	ok := func(context.Context, *stage.Event) (bool, error) { return true, nil }
	if err := fs.Add("a", ok); err != nil {
		t.Fatal(err)
	}
	if err := fs.Add("a", ok); err == nil || !strings.Contains(err.Error(), "already added") {
		t.Errorf("duplicate Add: %v", err)
	}
	if err := fs.Add("", ok); err == nil {
		t.Error("Add with an empty name succeeded")
	}
	if err := fs.Add("b", nil); err == nil {
		t.Error("Add of a nil func succeeded")
	}
	if got := fs.Names(); !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("Names = %v", got)
	}
}

func TestFunc(t *testing.T) {
	var fs Funcs
	err := fs.Add("triage", func(_ context.Context, ev *stage.Event) (bool, error) {
		switch string(ev.Payload) {
		case "drop":
			return false, nil
		case "bad":
			return true, errors.New("bad record")
		case "panic":
			panic("boom")
		}
		ev.Set("seen", true)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := stage.NewRegistry()
	if err := RegisterFuncs(r, &fs); err != nil {
		t.Fatal(err)
	}
	h, err := build(t, r, "process.func", map[string]any{"func": "triage"})
	if err != nil {
		t.Fatal(err)
	}
	out, done, evs := run(t, h, "keep", "drop", "bad", "panic", "keep too")
	if got := out.seqs(""); !reflect.DeepEqual(got, []uint64{1, 5}) {
		t.Errorf("emitted %v, want [1 5]", got)
	}
	if v, _ := evs[0].Field("seen"); v != true {
		t.Error("the func's change to the event is lost")
	}
	want := map[uint64]string{2: "ok", 3: `stage "t": bad record`, 4: `stage "t": func "triage" failed`}
	if !reflect.DeepEqual(done.seqs, want) {
		t.Errorf("finished %v, want %v", done.seqs, want)
	}
}

func TestFuncUnknown(t *testing.T) {
	var fs Funcs
	r := stage.NewRegistry()
	if err := RegisterFuncs(r, &fs); err != nil {
		t.Fatal(err)
	}
	_, err := build(t, r, "process.func", map[string]any{"func": "nope"})
	fieldErr(t, err, "func", `unknown func "nope" (known: none)`)
	for _, n := range []string{"zeta", "alpha"} {
		if err := fs.Add(n, func(context.Context, *stage.Event) (bool, error) { return true, nil }); err != nil {
			t.Fatal(err)
		}
	}
	_, err = build(t, r, "process.func", map[string]any{"func": "nope"})
	fieldErr(t, err, "func", `unknown func "nope" (known: alpha, zeta)`)
	if err := RegisterFuncs(stage.NewRegistry(), nil); err == nil {
		t.Error("RegisterFuncs with nil Funcs succeeded")
	}
}
