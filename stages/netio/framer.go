package netio

// This file holds netio.tcp's framers: how records are cut from a
// connection's byte stream (lines, octet-counted, syslog).

import (
	"bytes"
	"fmt"
	"strconv"
)

// recKind is what a framer found.
type recKind uint8

const (
	recData     recKind = iota // a record
	recTooLarge                // a record over max_frame, skipped; it takes a number
	recBadFrame                // a protocol error: the connection is unusable from here
	recBusy                    // a record refused at the door as it outgrew a read (refuse), skipped; it takes a number
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
	// whether the framer had to drop a truncated trailing record (one
	// begun: its length at least), and the bytes of it that had come.
	end(out recSink) (dropped int, truncated bool)
	// buffered is how many bytes of an unfinished record are held.
	buffered() int
	// held is buffered once it is more than a read's size, else 0: the
	// bytes the memory limit counts of a record that spans reads (the
	// room of one read is kept for every connection's next record).
	held() int
	// refuse gives up the unfinished record (the door refused it): it
	// reports it as recBusy and skips the rest of it, unbuffered.
	refuse(out recSink)
	// err says what was wrong after recBadFrame.
	err() error
}

// newFramer returns a framer of f for records of at most maxFrame bytes,
// fed reads of at most readBuf bytes.
func newFramer(f Framing, maxFrame, readBuf int) framer {
	switch f {
	case OctetCounted:
		return &octetFramer{max: maxFrame, keep: readBuf}
	case Syslog:
		return &syslogFramer{lines: lineFramer{max: maxFrame, keep: readBuf}, oct: octetFramer{max: maxFrame, keep: readBuf, notCount: true}}
	}
	return &lineFramer{max: maxFrame, keep: readBuf}
}

// emptied returns part emptied for the next record that spans reads: kept
// for reuse when it is no larger than a read, else dropped, so that a
// connection that once sent a record of max_frame does not pin that much
// for as long as it stays open, idle (1024 connections times a 2 MiB
// max_frame is 2 GiB).
func emptied(part []byte, keep int) []byte {
	if cap(part) > keep {
		return nil
	}
	return part[:0]
}

// Each framer below also frames one frame at a time (frame), which
// syslogFramer uses to choose the framing of every frame anew.

// lineFramer frames `lines`: records end with \n, a trailing \r is
// dropped, empty lines are skipped. A record over max is reported once as
// too large and then skipped up to its \n without being buffered, so a
// record never costs more than max+1 bytes of memory.
type lineFramer struct {
	max      int
	keep     int    // the most of part's room kept between records: a read's size
	part     []byte // the start of a record spanning reads; at most max+1 bytes
	skipping bool   // inside an over-long record: drop input up to the next \n
}

func (f *lineFramer) feed(p []byte, out recSink) {
	for len(p) > 0 {
		p, _ = f.frame(p, out)
	}
}

// frame frames p up to and including its first \n, and returns the rest
// and whether a line ended. Without a \n, all of p is taken (kept as the
// start of a record, or skipped inside an over-long one).
func (f *lineFramer) frame(p []byte, out recSink) ([]byte, bool) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		if f.skipping {
			return nil, false
		}
		// max+1: the last byte may be a \r that is not part of the record.
		if len(f.part)+len(p) > f.max+1 {
			f.skipping = true
			f.part = emptied(f.part, f.keep)
			out.add(recTooLarge, nil)
			return nil, false
		}
		f.part = append(f.part, p...)
		return nil, false
	}
	line, rest := p[:i], p[i+1:]
	if f.skipping {
		f.skipping = false
		return rest, true
	}
	if len(f.part) > 0 {
		if len(f.part)+len(line) > f.max+1 {
			f.part = emptied(f.part, f.keep)
			out.add(recTooLarge, nil)
			return rest, true
		}
		f.part = append(f.part, line...)
		line = f.part // the sink copies what it keeps: part may be reused
		f.part = emptied(f.part, f.keep)
	}
	f.line(line, out)
	return rest, true
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
func (f *lineFramer) end(out recSink) (int, bool) {
	if !f.skipping && len(f.part) > 0 {
		f.line(f.part, out)
	}
	f.part, f.skipping = emptied(f.part, f.keep), false
	return 0, false
}

func (f *lineFramer) buffered() int { return len(f.part) }
func (f *lineFramer) held() int     { return heldPart(f.part, f.keep) }
func (f *lineFramer) err() error    { return nil }

func (f *lineFramer) refuse(out recSink) {
	if len(f.part) == 0 || f.skipping {
		return
	}
	f.part, f.skipping = emptied(f.part, f.keep), true
	out.add(recBusy, nil)
}

// heldPart is a framer's held: the bytes of part once they are more than
// keep.
func heldPart(part []byte, keep int) int {
	if len(part) > keep {
		return len(part)
	}
	return 0
}

// maxLenDigits bounds an octet count: at most 999,999,999 bytes.
const maxLenDigits = 9

// octetFramer frames RFC 6587 octet counting: MSG-LEN SP MSG, where
// MSG-LEN is NONZERO-DIGIT *DIGIT. A frame over max is reported as too
// large and its bytes skipped (counted, not buffered). Anything else where
// a length is expected is a protocol error.
type octetFramer struct {
	max    int
	keep   int   // the most of part's room kept between frames: a read's size
	state  uint8 // octLen, octMsg, octSkip, octBroken
	n      int   // the length being read, then the bytes of the frame left
	digits int
	part   []byte
	bad    error
	// notCount, set by framing syslog, makes a frame whose length turns
	// out bad no protocol error: frame stops before the byte that showed
	// it, in state octNotCount, and the syslog framer reads the frame as
	// a line (see syslogFramer).
	notCount bool
}

const (
	octLen uint8 = iota
	octMsg
	octSkip
	octBroken
	octNotCount // the frame's start is no length (notCount): a line
)

func (f *octetFramer) feed(p []byte, out recSink) {
	for len(p) > 0 && f.state != octBroken {
		p, _ = f.frame(p, out)
	}
}

// frame frames p up to the end of its first frame, and returns the rest
// and whether a frame ended. It takes all of p when no frame ends in it,
// and stops at a protocol error (recBadFrame; the framer is broken).
func (f *octetFramer) frame(p []byte, out recSink) ([]byte, bool) {
	for len(p) > 0 {
		switch f.state {
		case octLen:
			c := p[0]
			if f.notCount && !(c == ' ' && f.digits > 0 || c >= '0' && c <= '9' && !(c == '0' && f.digits == 0) && f.digits < maxLenDigits) {
				f.state = octNotCount
				return p, false
			}
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
				return nil, false
			}
		case octMsg:
			take := min(f.n, len(p))
			if len(f.part) == 0 && take == f.n {
				out.add(recData, p[:take]) // whole frame in this read: no copy
			} else {
				f.part = append(f.part, p[:take]...)
				if take == f.n {
					out.add(recData, f.part)
					f.part = emptied(f.part, f.keep)
				}
			}
			p = p[take:]
			if f.n -= take; f.n == 0 {
				f.state, f.digits = octLen, 0
				return p, true
			}
		case octSkip:
			take := min(f.n, len(p))
			p = p[take:]
			if f.n -= take; f.n == 0 {
				f.state, f.digits = octLen, 0
				return p, true
			}
		default: // octBroken, octNotCount
			return nil, false
		}
	}
	return nil, false
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

// end drops a frame begun and not finished: its length cut short, or
// fewer bytes than it said ("10 cut", or "10 " and nothing, which is
// dropped as well even though no byte of the message came).
func (f *octetFramer) end(recSink) (dropped int, truncated bool) {
	switch f.state {
	case octLen:
		dropped, truncated = f.digits, f.digits > 0
	case octMsg:
		dropped, truncated = len(f.part), true
	}
	f.part = emptied(f.part, f.keep)
	return dropped, truncated
}

func (f *octetFramer) buffered() int { return len(f.part) }
func (f *octetFramer) held() int     { return heldPart(f.part, f.keep) }
func (f *octetFramer) err() error    { return f.bad }

func (f *octetFramer) refuse(out recSink) {
	if f.state != octMsg || len(f.part) == 0 {
		return
	}
	f.part, f.state = emptied(f.part, f.keep), octSkip // n: the bytes left to skip
	out.add(recBusy, nil)
}

// syslogFramer frames what syslog senders send over TCP, choosing the
// framing of each frame as rsyslog's imtcp and syslog-ng do (RFC 6587
// section 3.4): a frame that starts with a digit is octet-counted (LEN SP
// MSG), any other ends at \n (non-transparent framing, as rsyslog's
// `*.* @@host:port` and logger without --octet-count send). A sender may
// switch from one to the other between frames. A frame that starts with
// digits not followed by a space (a line without <PRI> that starts with
// a date, 2026-12-07T14:41:06Z ...) is read as a line, digits and all:
// as a protocol error it closed the connection, and every line after it
// on that connection was lost unseen (ack: none is framing syslog's
// default). A valid count is taken as one, as rsyslog does.
type syslogFramer struct {
	mode  uint8 // sysStart, sysLine, sysOctet
	lines lineFramer
	oct   octetFramer
}

const (
	sysStart uint8 = iota // between frames
	sysLine               // inside a frame that ends at \n
	sysOctet              // inside an octet-counted frame
)

func (f *syslogFramer) feed(p []byte, out recSink) {
	for len(p) > 0 && f.oct.state != octBroken {
		if f.mode == sysStart {
			f.mode = sysLine
			if c := p[0]; c >= '0' && c <= '9' {
				f.mode = sysOctet
			}
		}
		var done bool
		if f.mode == sysOctet {
			p, done = f.oct.frame(p, out)
			if f.oct.state == octNotCount {
				// No length after all: a line, starting with the
				// digits read so far (without a leading zero, so n
				// and digits give them back).
				var digits []byte
				if f.oct.digits > 0 {
					digits = strconv.AppendInt(make([]byte, 0, maxLenDigits), int64(f.oct.n), 10)
				}
				f.oct.state, f.oct.n, f.oct.digits = octLen, 0, 0
				f.mode = sysLine
				if len(digits) > 0 {
					f.lines.frame(digits, out) // no \n: kept as the line's start
				}
				continue
			}
		} else {
			p, done = f.lines.frame(p, out)
		}
		if done {
			f.mode = sysStart
		}
	}
}

// end takes an unterminated last line as a record, as lines does, and
// drops a truncated octet-counted frame, as octet-counted does.
func (f *syslogFramer) end(out recSink) (int, bool) {
	mode := f.mode
	f.mode = sysStart
	switch mode {
	case sysLine:
		return f.lines.end(out)
	case sysOctet:
		return f.oct.end(out)
	}
	return 0, false
}

func (f *syslogFramer) buffered() int { return f.lines.buffered() + f.oct.buffered() }
func (f *syslogFramer) held() int     { return f.lines.held() + f.oct.held() }
func (f *syslogFramer) err() error    { return f.oct.err() }

func (f *syslogFramer) refuse(out recSink) {
	switch f.mode {
	case sysLine:
		f.lines.refuse(out)
	case sysOctet:
		f.oct.refuse(out)
	}
}
