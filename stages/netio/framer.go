package netio

import (
	"bytes"
	"fmt"
)

// recKind is what a framer found.
type recKind uint8

const (
	recData     recKind = iota // a record
	recTooLarge                // a record over max_frame, skipped; it takes a number
	recBadFrame                // a protocol error: the connection is unusable from here
)

// recSink receives what a framer finds. rec is valid only during the call:
// the sink copies what it keeps.
type recSink interface {
	add(k recKind, rec []byte)
}

// framer cuts a byte stream into records. It keeps the state of a record
// that spans reads, so a connection has one, and it is fed the
// connection's reads in order (one read is outstanding per connection, so
// one worker at a time feeds it).
type framer interface {
	// feed frames p. After recBadFrame it ignores all further input.
	feed(p []byte, out recSink)
	// end is called at a clean end of input (the client's FIN); it reports
	// a truncated trailing record the framer had to drop, if any.
	end(out recSink) (dropped int)
	// buffered is how many bytes of an unfinished record are held.
	buffered() int
	// err says what was wrong after recBadFrame.
	err() error
}

func newFramer(f Framing, maxFrame int) framer {
	if f == OctetCounted {
		return &octetFramer{max: maxFrame}
	}
	return &lineFramer{max: maxFrame}
}

// lineFramer frames `lines`: records end with \n, a trailing \r is
// dropped, empty lines are skipped. A record over max is reported once as
// too large and then skipped up to its \n without being buffered, so a
// record never costs more than max+1 bytes of memory.
type lineFramer struct {
	max      int
	part     []byte // the start of a record spanning reads; at most max+1 bytes
	skipping bool   // inside an over-long record: drop input up to the next \n
}

func (f *lineFramer) feed(p []byte, out recSink) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if f.skipping {
				return
			}
			// max+1: the last byte may be a \r that is not part of the record.
			if len(f.part)+len(p) > f.max+1 {
				f.skipping = true
				f.part = f.part[:0]
				out.add(recTooLarge, nil)
				return
			}
			f.part = append(f.part, p...)
			return
		}
		line := p[:i]
		p = p[i+1:]
		if f.skipping {
			f.skipping = false
			continue
		}
		if len(f.part) > 0 {
			if len(f.part)+len(line) > f.max+1 {
				f.part = f.part[:0]
				out.add(recTooLarge, nil)
				continue
			}
			f.part = append(f.part, line...)
			line = f.part
			f.part = f.part[:0]
		}
		f.line(line, out)
	}
}

func (f *lineFramer) line(line []byte, out recSink) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	switch {
	case len(line) == 0:
	case len(line) > f.max:
		out.add(recTooLarge, nil)
	default:
		out.add(recData, line)
	}
}

// end takes an unterminated last line as a record: the client closed its
// side after it, so it is complete.
func (f *lineFramer) end(out recSink) int {
	if !f.skipping && len(f.part) > 0 {
		f.line(f.part, out)
	}
	f.part, f.skipping = f.part[:0], false
	return 0
}

func (f *lineFramer) buffered() int { return len(f.part) }
func (f *lineFramer) err() error    { return nil }

// maxLenDigits bounds an octet count: at most 999,999,999 bytes.
const maxLenDigits = 9

// octetFramer frames RFC 6587 octet counting: MSG-LEN SP MSG, where
// MSG-LEN is NONZERO-DIGIT *DIGIT. A frame over max is reported as too
// large and its bytes skipped (counted, not buffered). Anything else where
// a length is expected is a protocol error.
type octetFramer struct {
	max    int
	state  uint8 // octLen, octMsg, octSkip, octBroken
	n      int   // the length being read, then the bytes of the frame left
	digits int
	part   []byte
	bad    error
}

const (
	octLen uint8 = iota
	octMsg
	octSkip
	octBroken
)

func (f *octetFramer) feed(p []byte, out recSink) {
	for len(p) > 0 {
		switch f.state {
		case octLen:
			c := p[0]
			p = p[1:]
			switch {
			case c == ' ' && f.digits > 0:
				if f.n > f.max {
					out.add(recTooLarge, nil)
					f.state = octSkip
				} else {
					f.state = octMsg
				}
			case c >= '0' && c <= '9' && !(c == '0' && f.digits == 0) && f.digits < maxLenDigits:
				f.n = f.n*10 + int(c-'0')
				f.digits++
			default:
				f.broken(c)
				out.add(recBadFrame, nil)
				return
			}
		case octMsg:
			take := min(f.n, len(p))
			if len(f.part) == 0 && take == f.n {
				out.add(recData, p[:take]) // whole frame in this read: no copy
			} else {
				f.part = append(f.part, p[:take]...)
				if take == f.n {
					out.add(recData, f.part)
					f.part = f.part[:0]
				}
			}
			p = p[take:]
			if f.n -= take; f.n == 0 {
				f.state, f.digits = octLen, 0
			}
		case octSkip:
			take := min(f.n, len(p))
			p = p[take:]
			if f.n -= take; f.n == 0 {
				f.state, f.digits = octLen, 0
			}
		default: // octBroken
			return
		}
	}
}

func (f *octetFramer) broken(c byte) {
	switch {
	case c == ' ':
		f.bad = fmt.Errorf("empty frame length")
	case c == '0' && f.digits == 0:
		f.bad = fmt.Errorf("frame length starts with 0")
	case c >= '0' && c <= '9':
		f.bad = fmt.Errorf("frame length has more than %d digits", maxLenDigits)
	default:
		f.bad = fmt.Errorf("byte %q where a frame length digit or space was expected", c)
	}
	f.state = octBroken
	f.part = nil
}

func (f *octetFramer) end(recSink) int {
	dropped := 0
	switch f.state {
	case octLen:
		dropped = f.digits
	case octMsg:
		dropped = len(f.part)
	}
	f.part = f.part[:0]
	return dropped
}

func (f *octetFramer) buffered() int { return len(f.part) }
func (f *octetFramer) err() error    { return f.bad }
