package engine

// This file tests how a refusal reaches an event's origin: named by the
// stage that refused it, with its class intact.

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stagedserver/seda/stage"
)

// A refusal reaches the event's origin as the stage that refused it
// refuses it, `stage "parse": reason`, with its class intact: with several
// parsers or routes a client must learn which one refused. Busy stays
// bare, since clients retry on the word; an error that names its stage
// already (a sink's) is not named twice; and a DoneAll over a stage's
// events names the stage for each.
func TestRefusalNamesTheStage(t *testing.T) {
	invalid := stage.WithClass(errors.New("bad record"), stage.ErrInvalid)
	large := stage.WithClass(errors.New("too large"), stage.ErrTooLarge)
	db := stage.WithClass(errors.New("duplicate key"), stage.ErrDatabase)
	parse := newHandlerStage(stage.Settings{Name: "parse", Workers: 1, Batch: 64},
		stage.HandlerFunc(func(_ context.Context, batch []*stage.Event, _ stage.Emitter) error {
			var rest []*stage.Event
			for _, ev := range batch {
				switch ev.Seq % 5 {
				case 1:
					ev.Done(invalid)
				case 2:
					ev.Done(large)
				case 3:
					ev.Done(stage.ErrBusy)
				case 4:
					ev.Done(fmt.Errorf("stage %q: record %d refused: %w", "store", ev.Seq, db))
				default:
					rest = append(rest, ev)
				}
			}
			stage.DoneAll(rest, invalid)
			return nil
		}), nil)
	const n = 20
	res := run(t, n, parse)
	for i := uint64(1); i <= n; i++ {
		errs := res.get(i)
		if len(errs) != 1 || errs[0] == nil {
			t.Fatalf("event %d: completions %v, want one refusal", i, errs)
		}
		err := errs[0]
		var want string
		var class error
		switch i % 5 {
		case 1, 0:
			want, class = `stage "parse": bad record`, stage.ErrInvalid
		case 2:
			want, class = `stage "parse": too large`, stage.ErrTooLarge
		case 3:
			want, class = "busy", stage.ErrBusy
		case 4:
			want, class = fmt.Sprintf(`stage "store": record %d refused: duplicate key`, i), stage.ErrDatabase
		}
		if err.Error() != want || !errors.Is(err, class) {
			t.Errorf("event %d refused with %q (class %s), want %q (class %v)", i, err, stage.ErrorClass(err), want, class)
		}
	}
}

// DoneAll over events that different stages hold names, for each run of
// them, the stage that holds it; an event no stage holds (made outside
// the runtime) is refused with the error as it is.
func TestDoneAllNamesEachHolder(t *testing.T) {
	a := newSourceStage(stage.Settings{Name: "a"}, nil, nil)
	b := newSourceStage(stage.Settings{Name: "b"}, nil, nil)
	res := newResults()
	evs := []*stage.Event{
		a.NewEvent(nil, 1, stage.Origin{To: res}),
		a.NewEvent(nil, 2, stage.Origin{To: res}),
		b.NewEvent(nil, 3, stage.Origin{To: res}),
		a.NewEvent(nil, 4, stage.Origin{To: res}),
		{Seq: 5, Origin: stage.Origin{To: res}},
	}
	stage.DoneAll(evs, stage.WithClass(errors.New("refused"), stage.ErrInvalid))
	want := map[uint64]string{1: `stage "a": refused`, 2: `stage "a": refused`, 3: `stage "b": refused`, 4: `stage "a": refused`, 5: "refused"}
	for seq, w := range want {
		errs := res.get(seq)
		if len(errs) != 1 || errs[0] == nil || errs[0].Error() != w || !errors.Is(errs[0], stage.ErrInvalid) {
			t.Errorf("event %d: completions %v, want one %q of class invalid", seq, errs, w)
		}
	}
	if a.InFlight() != 0 || b.InFlight() != 0 {
		t.Errorf("in flight: a %d, b %d", a.InFlight(), b.InFlight())
	}
}

// A batch a stop's abort ends (the handler returns ctx's error, or wraps
// it, as a driver does) is failed busy, its text unchanged: the records
// were given up, not refused, and a client must resend them. So is an
// event posted to a queue the stop has closed.
func TestAbortedBatchIsBusy(t *testing.T) {
	for _, tc := range []struct {
		name string
		ret  func(ctx context.Context) error
		want string
	}{
		{"bare", func(ctx context.Context) error { return ctx.Err() }, `stage "store": context canceled`},
		{"wrapped", func(ctx context.Context) error { return fmt.Errorf("write: %w", ctx.Err()) }, `stage "store": write: context canceled`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{})
			store := newHandlerStage(stage.Settings{Name: "store", Workers: 1, Concurrency: 1, Batch: 1},
				stage.HandlerFunc(func(ctx context.Context, _ []*stage.Event, _ stage.Emitter) error {
					close(started)
					<-ctx.Done()
					return tc.ret(ctx)
				}), nil)
			src := newSourceStage(stage.Settings{Name: "src"}, nil, nil)
			src.connect(store, nil)
			if err := store.start(context.Background()); err != nil {
				t.Fatal(err)
			}
			res := newResults()
			em := src.NewEmitter()
			em.Emit(context.Background(), src.NewEvent(nil, 1, stage.Origin{To: res}))
			em.Flush(context.Background())
			<-started
			store.abort()
			store.wg.Wait()
			store.closeQueue()
			// Posted after the stop closed the queue: refused shutting down.
			em.Emit(context.Background(), src.NewEvent(nil, 2, stage.Origin{To: res}))
			em.Flush(context.Background())
			if err := store.close(); err != nil {
				t.Fatal(err)
			}
			for seq, want := range map[uint64]string{1: tc.want, 2: `stage "store": shutting down`} {
				errs := res.get(seq)
				if len(errs) != 1 || errs[0] == nil || errs[0].Error() != want || !errors.Is(errs[0], stage.ErrBusy) {
					t.Errorf("event %d: completions %v (class %s), want one %q of class busy", seq, errs, classOf(errs), want)
				}
			}
			if errs := res.get(1); len(errs) == 1 && !errors.Is(errs[0], context.Canceled) {
				t.Errorf("event 1's error %v no longer says context.Canceled", errs[0])
			}
		})
	}
}

func classOf(errs []error) string {
	if len(errs) == 0 {
		return "none"
	}
	return stage.ErrorClass(errs[0])
}
