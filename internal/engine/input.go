package engine

// This file holds the adapter that runs a stage.Input as a stage.Source:
// the kind reads records, the runtime does the rest.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/internal/track"
	"github.com/stagedserver/seda/stage"
)

// inputSource runs a stage.Input. One goroutine reads (Input.Read) into
// a channel of a batch's worth of records; another makes events of them,
// emits them, and flushes whenever the channel is empty, that is before
// it would wait for the reader. So records read in a burst travel in
// batches, and a record is never held back while Read waits for input.
// A full next queue (overflow block) stops the emitter, then the reader:
// backpressure reaches Read. So does the pipeline's memory limit: past
// it, Read is not called until the pipeline holds less (an Input has
// nobody to refuse records to).
type inputSource struct {
	in stage.Input
	rt stage.SourceRuntime
	st *Stage // the stage rt is of: its door (memory.go) and catch

	readCtx  context.Context // ends at StopInput: Read returns
	stopRead context.CancelFunc
	ctx      context.Context // ends at Close: unblocks emits
	cancel   context.CancelFunc

	recs        chan record   // the reader's; closed when it returns
	emitterDone chan struct{} // closed when every record read is emitted
	wg          sync.WaitGroup
	connected   bool
	errLog      time.Time // when a read error was last logged
	health      *health   // the stage's, told of each read's outcome
}

// record is one Read's result, with when it was read.
type record struct {
	b   []byte
	ack func(error)
	at  time.Time
}

var _ stage.Source = (*inputSource)(nil)

// ackFunc turns an Input's ack function into a Completer without an
// allocation: a func value fits an interface as it is.
type ackFunc func(error)

func (f ackFunc) Complete(_ *stage.Event, err error) { f(err) }

func (s *inputSource) Start(ctx context.Context, rt stage.SourceRuntime) error {
	s.rt = rt
	if err := s.connect(ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	s.connected = true
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.readCtx, s.stopRead = context.WithCancel(s.ctx)
	if r, ok := rt.(sourceRuntime); ok {
		// A read is an attempt: its errors make the stage's health, and
		// Read may report attempts of its own (stage.ReportAttempt).
		s.health = &r.s.health
		s.readCtx = context.WithValue(s.readCtx, track.HealthKey{}, s.health)
	}
	s.recs = make(chan record, min(max(rt.Settings().Batch, 1), 1024))
	s.emitterDone = make(chan struct{})
	s.wg.Add(2)
	go s.read()
	go s.emit()
	return nil
}

// read calls Read until the input ends, StopInput or Close.
func (s *inputSource) read() {
	defer s.wg.Done()
	defer close(s.recs)
	pause := time.Duration(0)
	for {
		s.st.waitRoom() // returns at StopInput and Close
		b, ack, err := s.readOne()
		if s.health != nil && s.readCtx.Err() == nil && !errors.Is(err, stage.ErrEndOfInput) {
			var now int64 // a success reads no clock
			if err != nil {
				now = track.Nanotime()
			}
			s.health.report(now, err)
		}
		// A record returned with an error is emitted before the error is
		// acted on, as io.Reader's data is (the last line of a file with
		// ErrEndOfInput): dropped, it would never be acked.
		if err == nil || b != nil {
			select {
			case s.recs <- record{b: b, ack: ack, at: time.Now()}:
			case <-s.ctx.Done(): // Close: the record is not taken
				if ack != nil {
					ack(errClosed)
				}
				return
			}
			if err == nil {
				pause = 0
				continue
			}
		} else if ack != nil {
			// An ack with no record: there is nothing to take, and the
			// ack is called once all the same, with why.
			ack(err)
		}
		switch {
		case s.readCtx.Err() != nil:
			return
		case errors.Is(err, stage.ErrEndOfInput):
			s.rt.EndInput()
			return
		}
		// Another error: the input may recover (a file being rotated, a
		// peer restarting). Log it at most once a second and read again
		// after a pause that grows to a second.
		pause = min(max(2*pause, 10*time.Millisecond), time.Second)
		if now := time.Now(); now.Sub(s.errLog) >= time.Second {
			s.errLog = now
			s.rt.Logger().Warn("read failed; reading again", zap.String("stage", s.rt.Name()),
				zap.String("error", stage.Redact(err.Error())), zap.Duration("pause", pause))
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-s.readCtx.Done():
			t.Stop()
			return
		}
	}
}

func (s *inputSource) connect(ctx context.Context) (err error) {
	defer s.st.catch("Connect", &err)
	return s.in.Connect(ctx)
}

// readOne calls Read. A panic in it is taken as a read error (catch logs
// it with its stack and counts it): the input is read again after the
// pause, as after any error, rather than the process dying.
func (s *inputSource) readOne() (b []byte, ack func(error), err error) {
	defer s.st.catch("Read", &err)
	return s.in.Read(s.readCtx)
}

// errClosed refuses a record read as the source was closed.
var errClosed = errors.New("the source was closed")

// emit makes events of what read reads and hands them on.
func (s *inputSource) emit() {
	defer s.wg.Done()
	defer close(s.emitterDone)
	em := s.rt.NewEmitter()
	var seq uint64
	one := func(r record) {
		seq++
		var origin stage.Origin
		if r.ack != nil {
			origin.To = ackFunc(r.ack)
		}
		_ = em.Emit(s.ctx, s.rt.NewEventAt(r.b, seq, origin, r.at)) // a refusal finishes it: the ack says why
	}
	for r := range s.recs {
		one(r)
	more:
		for {
			select {
			case r, ok := <-s.recs:
				if !ok {
					break more
				}
				one(r)
			default:
				break more
			}
		}
		em.Flush(s.ctx) // the reader has nothing more now: hand the batch over
	}
	em.Flush(s.ctx)
}

// StopInput stops reading and returns once every record read is emitted.
func (s *inputSource) StopInput(ctx context.Context) error {
	if s.stopRead == nil {
		return nil
	}
	s.stopRead()
	select {
	case <-s.emitterDone:
		return nil
	case <-ctx.Done():
		return ctx.Err() // Close unblocks the emitter
	}
}

// Drain stops reading if StopInput was not called and waits until every
// event is finished, and so every record acked.
func (s *inputSource) Drain(ctx context.Context) error {
	if err := s.StopInput(ctx); err != nil {
		return err
	}
	if s.rt == nil {
		return nil
	}
	return s.rt.WaitFinished(ctx)
}

// Close stops everything, joins the goroutines and closes the input.
func (s *inputSource) Close() error {
	if !s.connected {
		return nil
	}
	s.connected = false
	s.cancel()
	s.wg.Wait()
	return s.in.Close()
}
