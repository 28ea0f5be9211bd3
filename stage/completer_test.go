package stage

// This file tests that comparing two Completers never panics.

import "testing"

type funcCompleter func()

func (funcCompleter) Complete(*Event, error) {}

type wrapCompleter struct{ inner Completer }

func (wrapCompleter) Complete(*Event, error) {}

type ptrCompleter struct{ _ int } // not zero-size: two are two addresses

func (*ptrCompleter) Complete(*Event, error) {}

// sameCompleter never panics: == on two Completers of one type panics when
// the type holds a func, directly or in a struct's interface field (its
// type says it is comparable). Pointers are compared.
func TestSameCompleterNeverPanics(t *testing.T) {
	p, q := &ptrCompleter{}, &ptrCompleter{}
	for _, c := range []struct {
		a, b Completer
		want bool
	}{
		{funcCompleter(func() {}), funcCompleter(func() {}), false},
		{wrapCompleter{funcCompleter(func() {})}, wrapCompleter{funcCompleter(func() {})}, false},
		{p, p, true},
		{p, q, false},
		{nil, nil, true},
		{p, nil, false},
	} {
		if got := sameCompleter(c.a, c.b); got != c.want {
			t.Errorf("sameCompleter(%T, %T) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
