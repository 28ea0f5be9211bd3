package netio

// This file holds a connection's ack window: which records are finished,
// and the ack and nack lines they owe.

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/stagedserver/seda/stage"
)

// window tracks which of a connection's records are finished, so that the
// acks can be cumulative: acked is the highest number W such that every
// record up to W is finished. The states of records acked+1..next live in
// a ring indexed by number, grown when more are in flight than it holds:
// at most max_unacked plus one read's records, since the reader pauses at
// max_unacked (conn.waitForRoom).
//
// A refused record's reason is kept in its state byte: stClass+i for
// the name of its error class, classes[i], or stRefused+k for reason
// tab[k], a small table of the distinct reasons of the refused records
// waiting to be acked (a burst of "busy" nacks is one entry). Each entry
// counts the waiting records that use it, and advance frees it (its text,
// and its slot for the next new reason) as it passes the last of them: a
// client that always keeps records in flight never empties its window,
// and a table emptied only then would fill with the reasons of records
// acked long ago and leave every later nack with its class alone. The
// table is bounded twice: by what a byte can index and by maxHeldReasons
// bytes of text. Past either, a record's nack gives its error class
// ("invalid") instead of its own text, which needs no room at all: a
// client that sends records refused each for a reason of its own (a byte
// offset in the text) and never reads its nacks would otherwise make its
// window hold a reason per record, up to max_unacked of them.
type window struct {
	acked, next uint64
	st          []uint8      // stPending, stOK, stClass+i, stRefused+k; index seq&(len-1)
	tab         []heldReason // the reasons of waiting refused records; text "" when free
	free        []uint8      // the indexes of tab's free entries
	held        int          // bytes of text in tab
}

// heldReason is an entry of a window's reason table: a reason and how many
// records waiting to be acked were refused for it.
type heldReason struct {
	text string
	refs int
}

// classes are the error classes a record's nack falls back to, in the
// order of their states from stClass.
var classes = [...]string{stage.ClassBusy, stage.ClassInvalid, stage.ClassTooLarge, stage.ClassDatabase, stage.ClassOther}

const (
	stPending uint8 = iota
	stOK
	stClass                                   // stClass+i: refused; the reason is classes[i]
	stRefused = stClass + uint8(len(classes)) // stRefused+k: refused for reason tab[k]
	maxTab    = 256 - int(stRefused)

	// maxHeldReasons bounds the text of the reasons a connection's window
	// holds, in bytes: room for the reasons of a few hundred typical
	// nacks, or 80 of the longest.
	maxHeldReasons = 16 << 10
)

// reserve numbers n new records and returns the first number.
func (w *window) reserve(n int) uint64 {
	first := w.next + 1
	if need := w.next + uint64(n) - w.acked; need > uint64(len(w.st)) {
		size := max(64, len(w.st))
		for uint64(size) < need {
			size *= 2
		}
		st := make([]uint8, size)
		for seq := w.acked + 1; seq <= w.next; seq++ {
			st[seq&uint64(size-1)] = w.st[seq&uint64(len(w.st)-1)]
		}
		w.st = st
	}
	w.next += uint64(n)
	return first
}

// finish records that seq is finished; a non-empty reason refuses it,
// class (one of classes; another counts as stage.ClassOther) naming its
// error class for when the window holds too many reasons to keep this
// one. A reason is at most maxReasonLen bytes (reason makes it so; a
// longer one is cut here), so that every nack line fits in maxNackLine.
func (w *window) finish(seq uint64, reason, class string) {
	if seq <= w.acked || seq > w.next {
		return // not ours to count: ignore rather than corrupt the ring
	}
	i := seq & uint64(len(w.st)-1)
	if reason == "" {
		w.st[i] = stOK
		return
	}
	if len(reason) > maxReasonLen {
		j := maxReasonLen
		for j > 0 && !utf8.RuneStart(reason[j]) {
			j--
		}
		reason = reason[:j]
	}
	for k := len(w.tab) - 1; k >= 0; k-- { // a free entry's "" matches no reason
		if w.tab[k].text == reason {
			w.tab[k].refs++
			w.st[i] = stRefused + uint8(k)
			return
		}
	}
	if w.held+len(reason) <= maxHeldReasons {
		k := len(w.tab)
		if n := len(w.free); n > 0 {
			k = int(w.free[n-1])
			w.free = w.free[:n-1]
			w.tab[k] = heldReason{reason, 1}
		} else if k < maxTab {
			w.tab = append(w.tab, heldReason{reason, 1})
		}
		if k < len(w.tab) {
			w.held += len(reason)
			w.st[i] = stRefused + uint8(k)
			return
		}
	}
	c := len(classes) - 1 // other
	for j, name := range classes {
		if name == class {
			c = j
		}
	}
	w.st[i] = stClass + uint8(c)
}

// reasonOf returns the reason of refused record seq in state st.
func (w *window) reasonOf(st uint8) string {
	if st < stRefused {
		return classes[st-stClass]
	}
	return w.tab[st-stRefused].text
}

// release drops n records' uses of reason tab[k], freeing the entry when
// no record waiting uses it any more.
func (w *window) release(k uint8, n int) {
	e := &w.tab[k]
	if e.refs -= n; e.refs > 0 {
		return
	}
	w.held -= len(e.text)
	*e = heldReason{}
	w.free = append(w.free, k)
}

// ready reports whether the next record to ack is finished: advance has
// output to produce.
func (w *window) ready() bool {
	return w.acked < w.next && w.st[(w.acked+1)&uint64(len(w.st)-1)] != stPending
}

// The longest lines advance writes: "ack " and a number; "nack " and a
// number (or a range A-B), the reason, the newline.
const (
	maxReasonLen = maxReason + len("...")
	maxAckLine   = len("ack ") + 20 + 1
	maxNackLine  = len("nack ") + 20 + 1 + maxReasonLen + 1
	maxRangeLine = maxNackLine + len("-") + 20
)

// Any room advance is given when nothing is pending (max_pending_output,
// at least minPendingOut) holds a nack line and the ack after it, so the
// window always moves once the output is written: this fails to compile
// otherwise. (A range grows one record at a time only while its line
// fits, so one record's nack line is all that must fit.)
const _ = uint(minPendingOut - maxNackLine - maxAckLine)

// advance moves acked over the finished records and appends the output
// they owe: for the refused ones, in order, a nack line each, or one
// `nack A-B reason` line for a run of consecutive records refused for the
// same reason (a burst shed at the door, a full queue's busy refusals);
// then one cumulative ack line. It appends at most room bytes: it stops
// before a record whose nack line (or the run's line grown by it), with
// the ack line after it, would not fit, and leaves the records from there
// on for a later call. Every nack therefore comes before the ack that
// covers it, and acks only move forward.
func (w *window) advance(out []byte, room int) []byte {
	if room < maxAckLine {
		return out
	}
	start, base := w.acked, len(out)
	mask := uint64(len(w.st) - 1)
	// The open run: records runA..acked refused for runR (state runSt),
	// its line not yet written.
	var runA uint64
	var runR string
	var runSt uint8
	for w.acked < w.next {
		seq := w.acked + 1
		st := w.st[seq&mask]
		if st == stPending {
			break
		}
		if st == stOK {
			// Acked records owe no line: pass them all in a loop of its
			// own, which keeps the success path free of the refusals'
			// bookkeeping.
			if runA != 0 {
				out = appendNack(out, runA, w.acked, runR)
				runA = 0
			}
			for {
				w.st[(w.acked+1)&mask] = stPending
				w.acked++
				if w.acked == w.next || w.st[(w.acked+1)&mask] != stOK {
					break
				}
			}
			continue
		}
		if runA != 0 && st == runSt &&
			len(out)-base+len("nack ")+digits(runA)+1+digits(w.next)+1+len(runR)+1+maxAckLine <= room {
			// The run goes on over every record after it in its state
			// (a burst shed busy): its line fits even ending at next,
			// so no record needs the checks below.
			n := 0
			for w.acked < w.next && w.st[(w.acked+1)&mask] == runSt {
				w.st[(w.acked+1)&mask] = stPending
				w.acked++
				n++
			}
			if runSt >= stRefused {
				w.release(runSt-stRefused, n)
			}
			continue
		}
		// Refused: its line starts a run or continues the open one.
		if runA != 0 && (st == runSt || w.reasonOf(st) == runR) {
			// The run goes on: its line then ends in seq.
			if len(out)-base+len("nack ")+digits(runA)+1+digits(seq)+1+len(runR)+1+maxAckLine > room {
				break
			}
		} else {
			if runA != 0 {
				out = appendNack(out, runA, w.acked, runR)
				runA = 0
			}
			r := w.reasonOf(st)
			if len(out)-base+len("nack ")+digits(seq)+1+len(r)+1+maxAckLine > room {
				break
			}
			runA, runR, runSt = seq, r, st
		}
		if st >= stRefused { // passed: its reason is in out or runR now
			w.release(st-stRefused, 1)
		}
		w.st[seq&mask] = stPending
		w.acked = seq
	}
	if runA != 0 {
		out = appendNack(out, runA, w.acked, runR)
	}
	if w.acked == w.next && len(w.tab) > 0 {
		// Every entry is free now: start the table afresh, so that the
		// search in finish stays short after a burst of reasons.
		clear(w.tab)
		w.tab = w.tab[:0]
		w.free = w.free[:0]
		w.held = 0
	}
	if w.acked != start {
		out = append(out, "ack "...)
		out = strconv.AppendUint(out, w.acked, 10)
		out = append(out, '\n')
	}
	return out
}

// appendNack appends the nack line of records a..b (a single record when
// a == b) refused for reason r.
func appendNack(out []byte, a, b uint64, r string) []byte {
	out = append(out, "nack "...)
	out = strconv.AppendUint(out, a, 10)
	if b != a {
		out = append(out, '-')
		out = strconv.AppendUint(out, b, 10)
	}
	out = append(out, ' ')
	out = append(out, r...)
	return append(out, '\n')
}

// digits is the length of n in decimal.
func digits(n uint64) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

// wireReason is the reason a client reads for a record refused with err:
// the bare word "busy" for any refusal of the busy class, since clients
// resend on that word (a stop's abort fails a sink's batch with `stage
// "store": context canceled`, busy: the records are to be sent again),
// else reason(err).
func wireReason(err error) string {
	if errors.Is(err, stage.ErrBusy) {
		return busyReason
	}
	return reason(err)
}

// maxReason bounds a nack reason, in bytes.
const maxReason = 200

// reason makes an error's text fit one nack line: secrets redacted (a
// stage's error may quote its DSN, and the line goes to the client),
// valid UTF-8, control characters as spaces, cut at maxReason bytes on a
// rune boundary.
func reason(err error) string {
	s := strings.ToValidUTF8(stage.Redact(err.Error()), "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxReason {
		i := maxReason
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i] + "..."
	}
	if s = strings.TrimSpace(s); s == "" {
		return "refused"
	}
	return s
}
