package pipeline

// This file holds protect and guard, which call a transport's code from
// the pipeline's own goroutines and turn a panic in it into an error (the
// engine recovers those of a stage's own methods).

import (
	"errors"
	"fmt"
	"runtime/debug"

	"go.uber.org/zap"

	"github.com/stagedserver/seda/stage"
)

// kindPanic is a panic recovered from a kind's or a transport's code, with
// the stack it was raised on.
type kindPanic struct {
	value any
	stack []byte
}

// Error redacts the panic's value as errors are: a transport may panic
// with its URL, password and all.
func (e *kindPanic) Error() string {
	return "panicked: " + stage.Redact(fmt.Sprint(e.value))
}

// protect calls fn and returns a panic in it as a *kindPanic. The
// constructor is guarded where it is called (construct), a stage's other
// methods by the engine (Start, Handle, StopInput, Drain, Close); a
// transport's checks, Open, queue maker, and its consumer's Empty and
// Figures run on the pipeline's goroutines, where an unrecovered panic
// would end the process and leave every other stage unclosed.
func protect(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &kindPanic{value: v, stack: debug.Stack()}
		}
	}()
	return fn()
}

// guard calls fn, the step (connect, release, ...) of the transport
// queue of the stage called name, with protect. A panic becomes the
// stage's error, and its stack goes to the log, where whoever fixes the
// transport will look; fn's own errors come back as they are.
func (p *Pipeline) guard(name, step string, fn func() error) error {
	err := protect(fn)
	if p.logPanic(name, step, err) {
		return fmt.Errorf("stage %q: %s: %w", name, step, err)
	}
	return err
}

// logPanic logs err with its stack when it is a panic protect recovered
// from the step of the stage called name, and reports whether it was.
func (p *Pipeline) logPanic(name, step string, err error) bool {
	var kp *kindPanic
	if !errors.As(err, &kp) {
		return false
	}
	p.log.Error("stage panicked", zap.String("pipeline", p.name), zap.String("stage", name), zap.String("step", step),
		zap.String("panic", stage.Redact(fmt.Sprint(kp.value))), zap.String("stack", string(kp.stack)))
	return true
}
