package stage_test

// This file tests the error classes: ErrorClass and WithClass.

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/stagedserver/seda/stage"
)

func TestErrorClass(t *testing.T) {
	base := &fs.PathError{Op: "open", Path: "x", Err: fs.ErrNotExist}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "other"},
		{errors.New("boom"), "other"},
		{stage.ErrBusy, "busy"},
		{fmt.Errorf("stage %q: %w", "s", stage.ErrBusy), "busy"},
		{stage.WithClass(errors.New("invalid json: x at offset 1"), stage.ErrInvalid), "invalid"},
		{stage.WithClass(errors.New("too large"), stage.ErrTooLarge), "too_large"},
		{fmt.Errorf("stage %q: record 3 refused: %w", "db", stage.WithClass(base, stage.ErrDatabase)), "database"},
	} {
		if got := stage.ErrorClass(tc.err); got != tc.want {
			t.Errorf("ErrorClass(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	// The text is unchanged and what the error wraps is still found.
	err := fmt.Errorf("record 3: %w", stage.WithClass(base, stage.ErrDatabase))
	if err.Error() != "record 3: open x: file does not exist" {
		t.Errorf("text %q", err)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, stage.ErrDatabase) {
		t.Errorf("%v: lost what it wraps", err)
	}
	if stage.WithClass(nil, stage.ErrInvalid) != nil {
		t.Error("WithClass(nil) is not nil")
	}
}

// A decoder marks a bad record as invalid; a source counts its nack under
// that class, and the reason the client reads is the error's own text.
func ExampleWithClass() {
	err := stage.WithClass(errors.New("invalid json: unexpected end of input at offset 17"), stage.ErrInvalid)
	fmt.Println(stage.ErrorClass(err))
	fmt.Println(err)
	fmt.Println(stage.ErrorClass(fmt.Errorf("stage %q: %w", "store", stage.ErrBusy)))
	// Output:
	// invalid
	// invalid json: unexpected end of input at offset 17
	// busy
}
