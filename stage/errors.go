package stage

// This file holds the error classes an event may be finished with
// (invalid, too large, database), ErrorClass and WithClass.

import "errors"

// Error classes. An error that finishes an event (Event.Done) may carry one
// of them, so that sources count their nacks by class and clients can tell
// a record worth resending (busy) from one that will never pass (invalid,
// too large). Test with errors.Is, or ErrorClass for the class's name.
// ErrBusy (event.go) is the fourth.
var (
	// ErrInvalid marks a record that cannot be decoded or is refused for
	// its content: bad JSON, bad syslog, a bad frame, a value that does
	// not fit its column. Resending it as is will fail again.
	ErrInvalid = errors.New("invalid")
	// ErrTooLarge marks a record over a size limit (max_frame, max_body).
	ErrTooLarge = errors.New("too large")
	// ErrDatabase marks a record the database refused (a constraint, a
	// type it would not take).
	ErrDatabase = errors.New("database")
)

// The names ErrorClass returns.
const (
	ClassBusy     = "busy"
	ClassInvalid  = "invalid"
	ClassTooLarge = "too_large"
	ClassDatabase = "database"
	ClassOther    = "other"
)

// ErrorClass names the class of err: "busy", "invalid", "too_large",
// "database", or "other" for an error of none of these classes (and for
// nil). When err is of several classes, the first in that order wins.
func ErrorClass(err error) string {
	switch {
	case err == nil:
		return ClassOther
	case errors.Is(err, ErrBusy):
		return ClassBusy
	case errors.Is(err, ErrInvalid):
		return ClassInvalid
	case errors.Is(err, ErrTooLarge):
		return ClassTooLarge
	case errors.Is(err, ErrDatabase):
		return ClassDatabase
	}
	return ClassOther
}

// WithClass returns err marked as of class (ErrInvalid, ErrTooLarge,
// ErrDatabase, ErrBusy): errors.Is(result, class) holds, errors.Is and
// errors.As still find what err wraps, and the text is err's, unchanged, so
// a nack reason reads as before. WithClass(nil, class) is nil.
func WithClass(err, class error) error {
	if err == nil {
		return nil
	}
	return &classed{err: err, class: class}
}

type classed struct {
	err, class error
}

func (e *classed) Error() string   { return e.err.Error() }
func (e *classed) Unwrap() []error { return []error{e.err, e.class} }
