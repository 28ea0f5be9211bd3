package netio

// This file tests the window that turns verdicts into ack and nack
// lines: acks, nack ranges, bounded room and output, and the reasons it
// keeps and cuts; with benchmarks.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stagedserver/seda/internal/wire"
	"github.com/stagedserver/seda/stage"
)

func TestReason(t *testing.T) {
	long := bytes.Repeat([]byte("é"), 300)
	for _, tc := range []struct{ in, want string }{
		{"busy", "busy"},
		{"a\nb\tc", "a b c"},
		{"", "refused"},
		{"bad \xff byte", "bad ? byte"},
	} {
		if got := reason(fmt.Errorf("%s", tc.in)); got != tc.want {
			t.Errorf("reason(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	got := reason(fmt.Errorf("%s", long))
	if len(got) > maxReason+3 || !bytes.HasSuffix([]byte(got), []byte("é...")) {
		t.Errorf("long reason cut badly: %d bytes, %q", len(got), got[len(got)-8:])
	}
}

func TestWindow(t *testing.T) {
	var w window
	first := w.reserve(200) // grows past the initial 64
	if first != 1 {
		t.Fatalf("first = %d", first)
	}
	for seq := uint64(200); seq >= 2; seq-- {
		r := ""
		if seq%50 == 0 {
			r = "nope"
		}
		w.finish(seq, r, "invalid")
	}
	if out := w.advance(nil, 1<<20); len(out) != 0 {
		t.Fatalf("acked before record 1 finished: %q", out)
	}
	w.reserve(100) // grows while records are pending
	w.finish(1, "", "invalid")
	want := "nack 50 nope\nnack 100 nope\nnack 150 nope\nnack 200 nope\nack 200\n"
	if out := w.advance(nil, 1<<20); string(out) != want {
		t.Fatalf("advance = %q, want %q", out, want)
	}
	w.finish(300, "", "invalid")
	w.finish(201, "x", "invalid")
	if out := w.advance(nil, 1<<20); string(out) != "nack 201 x\nack 201\n" {
		t.Fatalf("advance = %q", out)
	}
}

// advance given little room stops before a line that would not fit,
// leaves the rest for later, and its outputs put together are what one
// call with room to spare gives: every nack in order, each before the ack
// covering it, the acks cumulative and moving forward.
func TestWindowAdvanceBounded(t *testing.T) {
	const n = 1000
	long := strings.Repeat("é", maxReason) // cut to maxReasonLen bytes
	fill := func(w *window) {
		w.reserve(n)
		for seq := uint64(1); seq <= n; seq++ {
			switch {
			case seq%7 == 0:
				w.finish(seq, long, "invalid")
			case seq%3 == 0:
				w.finish(seq, "nope", "invalid")
			default:
				w.finish(seq, "", "invalid")
			}
		}
	}
	var whole window
	fill(&whole)
	all := whole.advance(nil, 1<<30)

	for _, room := range []int{maxNackLine + maxAckLine, 300, 1000, 4096} {
		var w window
		fill(&w)
		var nacks []string
		var acked uint64
		calls := 0
		for w.acked < n {
			if calls++; calls > 2*n {
				t.Fatalf("room %d: the window does not move (acked %d)", room, w.acked)
			}
			out := w.advance(nil, room)
			if len(out) > room {
				t.Fatalf("room %d: advance wrote %d bytes", room, len(out))
			}
			if len(out) == 0 {
				t.Fatalf("room %d: nothing written with records finished (acked %d)", room, w.acked)
			}
			for _, line := range strings.SplitAfter(string(out), "\n") {
				if line == "" {
					continue
				}
				f := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 3)
				seq, _ := strconv.ParseUint(f[1], 10, 64)
				switch f[0] {
				case "nack":
					if seq <= acked {
						t.Fatalf("room %d: nack %d after ack %d", room, seq, acked)
					}
					nacks = append(nacks, f[1])
				case "ack":
					if seq <= acked {
						t.Fatalf("room %d: ack %d does not move from %d", room, seq, acked)
					}
					acked = seq
				}
			}
		}
		var want []string
		for seq := 1; seq <= n; seq++ {
			if seq%7 == 0 || seq%3 == 0 {
				want = append(want, strconv.Itoa(seq))
			}
		}
		if fmt.Sprint(nacks) != fmt.Sprint(want) || acked != n {
			t.Fatalf("room %d: nacks %v, acked %d", room, nacks, acked)
		}
		if w.advance(nil, room) != nil || len(w.tab) != 0 || w.held != 0 {
			t.Fatalf("room %d: output or reasons left after everything was acked", room)
		}
	}
	if !strings.Contains(string(all), "nack 7 "+long[:maxReasonLen-1]) || strings.Contains(string(all), long) {
		t.Fatalf("a long reason was not cut to %d bytes", maxReasonLen)
	}
	// Too little room for even an ack line: nothing moves.
	var w window
	fill(&w)
	if out := w.advance(nil, maxAckLine-1); out != nil || w.acked != 0 {
		t.Fatalf("advance with %d bytes of room wrote %q", maxAckLine-1, out)
	}
}

// Reasons are kept per record while the table of distinct ones has room;
// past it a record's nack gives its error class, the records come out
// with the right verdicts, and nothing is left once all is acked.
func TestWindowReasons(t *testing.T) {
	var w window
	const n = 1000
	w.reserve(n)
	kept := map[uint64]bool{} // records whose own reason was kept
	for seq := uint64(1); seq <= n; seq++ {
		switch {
		case seq%2 == 0:
			w.finish(seq, "busy", stage.ClassBusy)
		case seq%5 == 0:
			w.finish(seq, "", "")
		default:
			kept[seq] = len(w.tab) < maxTab
			w.finish(seq, fmt.Sprintf("bad record %d", seq), stage.ClassInvalid) // distinct
		}
	}
	if len(w.tab) != maxTab || len(kept) <= maxTab {
		t.Fatalf("table %d entries of %d distinct reasons: they should fill it", len(w.tab), len(kept))
	}
	out := string(w.advance(nil, 1<<20))
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	i := 0
	for seq := uint64(1); seq <= n; seq++ {
		var want string
		switch {
		case seq%2 == 0:
			want = fmt.Sprintf("nack %d busy", seq)
		case seq%5 == 0:
			continue
		case kept[seq]:
			want = fmt.Sprintf("nack %d bad record %d", seq, seq)
		default:
			want = fmt.Sprintf("nack %d invalid", seq)
		}
		if lines[i] != want {
			t.Fatalf("line %d: %q, want %q", i, lines[i], want)
		}
		i++
	}
	if lines[i] != fmt.Sprintf("ack %d", n) || i != len(lines)-1 {
		t.Fatalf("tail %q", lines[i:])
	}
	if len(w.tab) != 0 || w.held != 0 {
		t.Fatalf("after every record was acked: table %d, %d bytes held", len(w.tab), w.held)
	}
}

// Records refused each for a long reason of its own hold no more than
// maxHeldReasons bytes of text: past it their nacks give their class.
func TestWindowReasonBytesBounded(t *testing.T) {
	var w window
	const n = 2000
	w.reserve(n)
	for seq := uint64(1); seq <= n; seq++ {
		w.finish(seq, fmt.Sprintf("bad record at offset %d: %s", seq, strings.Repeat("x", 150)), stage.ClassInvalid)
		if w.held > maxHeldReasons {
			t.Fatalf("after record %d: %d bytes of reasons held, over %d", seq, w.held, maxHeldReasons)
		}
	}
	out := string(w.advance(nil, 1<<20))
	if !strings.Contains(out, "nack 1 bad record at offset 1: ") || !strings.HasSuffix(out, fmt.Sprintf("-%d invalid\nack %d\n", n, n)) {
		t.Fatalf("output does not start with the reasons and end with the class: %q...%q", out[:100], out[len(out)-100:])
	}
}

// A run of consecutive records refused for the same reason is one
// `nack A-B reason` line; a lone one stays `nack N reason`.
func TestWindowRangeNacks(t *testing.T) {
	var w window
	w.reserve(20)
	for seq := uint64(1); seq <= 20; seq++ {
		switch {
		case seq <= 10 || seq >= 15:
			w.finish(seq, "busy", "invalid")
		case seq == 11:
			w.finish(seq, "", "invalid")
		case seq <= 13:
			w.finish(seq, "x", "invalid")
		default:
			w.finish(seq, "y", "invalid")
		}
	}
	want := "nack 1-10 busy\nnack 12-13 x\nnack 14 y\nnack 15-20 busy\nack 20\n"
	if out := w.advance(nil, 1<<20); string(out) != want {
		t.Fatalf("advance = %q, want %q", out, want)
	}
	// A run ends where a record is still pending; the next call starts
	// another.
	w.reserve(10)
	for seq := uint64(21); seq <= 30; seq++ {
		if seq != 26 {
			w.finish(seq, "busy", "invalid")
		}
	}
	if out := w.advance(nil, 1<<20); string(out) != "nack 21-25 busy\nack 25\n" {
		t.Fatalf("advance = %q", out)
	}
	w.finish(26, "busy", "invalid")
	if out := w.advance(nil, 1<<20); string(out) != "nack 26-30 busy\nack 30\n" {
		t.Fatalf("advance = %q", out)
	}
}

// verdicts expands a window's output into each record's verdict ("" for
// acked, else the nack's reason), checking every line with the protocol
// client's parser and that nacks and acks move forward.
func verdicts(t *testing.T, out []byte, acked *uint64, got map[uint64]string) {
	t.Helper()
	for _, line := range strings.SplitAfter(string(out), "\n") {
		if line == "" {
			continue
		}
		r, err := wire.ParseReply([]byte(strings.TrimSuffix(line, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		if r.N <= *acked {
			t.Fatalf("%q after ack %d", line, *acked)
		}
		if !r.Nack {
			for seq := *acked + 1; seq <= r.N; seq++ {
				if _, ok := got[seq]; !ok {
					got[seq] = ""
				}
			}
			*acked = r.N
			continue
		}
		for seq := r.N; seq <= r.Last(); seq++ {
			if _, dup := got[seq]; dup {
				t.Fatalf("record %d nacked twice (%q)", seq, line)
			}
			got[seq] = r.Reason
		}
	}
}

// Whatever the verdicts and however little room advance is given, its
// outputs put together give every record its verdict, each line fits the
// room, and with room to spare no two nack lines could have been one.
func TestWindowRangesBounded(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	reasons := []string{"busy", "too large", "bad frame: " + strings.Repeat("x", 180)}
	for round := range 200 {
		n := 1 + rng.IntN(2000)
		want := make([]string, n+1)
		for seq := 1; seq <= n; seq++ {
			if seq > 1 && rng.IntN(10) < 8 { // runs
				want[seq] = want[seq-1]
			} else if rng.IntN(3) > 0 {
				want[seq] = reasons[rng.IntN(len(reasons))]
			}
		}
		fill := func(w *window) {
			w.reserve(n)
			for _, seq := range rng.Perm(n) {
				w.finish(uint64(seq+1), want[seq+1], "invalid")
			}
		}
		room := maxNackLine + maxAckLine + rng.IntN(600)
		if round%4 == 0 {
			room = 1 << 20
		}
		var w window
		fill(&w)
		checkTable(t, &w)
		got := map[uint64]string{}
		var acked uint64
		for calls := 0; w.acked < uint64(n); calls++ {
			if calls > 2*n {
				t.Fatalf("round %d, room %d: the window does not move (acked %d)", round, room, w.acked)
			}
			out := w.advance(nil, room)
			if len(out) > room || len(out) == 0 {
				t.Fatalf("round %d, room %d: advance wrote %d bytes", round, room, len(out))
			}
			verdicts(t, out, &acked, got)
			checkTable(t, &w)
			if room == 1<<20 {
				checkMaximal(t, out)
			}
		}
		for seq := 1; seq <= n; seq++ {
			if got[uint64(seq)] != want[seq] {
				t.Fatalf("round %d, room %d: record %d got %q, want %q", round, room, seq, got[uint64(seq)], want[seq])
			}
		}
		if acked != uint64(n) || len(w.tab) != 0 || w.held != 0 {
			t.Fatalf("round %d: acked %d of %d, reasons left %d (%d bytes)", round, acked, n, len(w.tab), w.held)
		}
	}
}

// checkMaximal fails when two nack lines of out in a row are for
// consecutive records refused for the same reason.
func checkMaximal(t *testing.T, out []byte) {
	t.Helper()
	var prev wire.Reply
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		r, _ := wire.ParseReply([]byte(line))
		if r.Nack && prev.Nack && r.N == prev.Last()+1 && r.Reason == prev.Reason {
			t.Fatalf("%q then %q: one run in two lines", prev, r)
		}
		prev = r
	}
}

func BenchmarkWindowBusyRun(b *testing.B) {
	var w window
	out := make([]byte, 0, 1<<20)
	for b.Loop() {
		first := w.reserve(1000)
		for i := range uint64(1000) {
			w.finish(first+i, "busy", "invalid")
		}
		out = w.advance(out[:0], 1<<20)
	}
	_ = fmt.Sprint(len(out))
}

// checkTable fails unless w's reason table counts, for each entry, the
// waiting records refused for it, and holds the bytes of the entries in use.
func checkTable(t *testing.T, w *window) {
	t.Helper()
	refs := make([]int, len(w.tab))
	for seq := w.acked + 1; seq <= w.next; seq++ {
		if st := w.st[seq&uint64(len(w.st)-1)]; st >= stRefused {
			refs[st-stRefused]++
		}
	}
	held := 0
	for k, e := range w.tab {
		if e.refs != refs[k] || (e.refs == 0) != (e.text == "") {
			t.Fatalf("entry %d %q counts %d records, %d use it", k, e.text, e.refs, refs[k])
		}
		held += len(e.text)
	}
	if held != w.held {
		t.Fatalf("the table holds %d bytes, counted %d", held, w.held)
	}
}

// A connection whose window never empties (a client that keeps records in
// flight) keeps its nacks' texts however many reasons it has had over its
// life: a reason's entry is freed once the last record refused for it is
// acked, not when every record of the connection is.
func TestWindowReasonsFreedWhileInFlight(t *testing.T) {
	var w window
	for i := range 1000 {
		first := w.reserve(2) // a bad record, and one still pending after it
		r := fmt.Sprintf(`stage "parse": invalid json: expected ',' or '}' in an object, found character 'b' at offset %d`, i)
		w.finish(first, r, stage.ClassInvalid)
		checkTable(t, &w)
		// Acks the record before first (finished last turn) and nacks first;
		// first+1 stays pending, so the window is never empty.
		out := string(w.advance(nil, 1<<20))
		if want := fmt.Sprintf("nack %d %s\nack %d\n", first, r, first); out != want {
			t.Fatalf("turn %d: advance = %q, want %q (table %d entries, %d bytes)", i, out, want, len(w.tab), w.held)
		}
		checkTable(t, &w)
		w.finish(first+1, "", "")
	}
	if len(w.tab) > 1 || w.held != 0 {
		t.Fatalf("with no refused record waiting, the table has %d entries, %d bytes", len(w.tab), w.held)
	}
}

// While refused records wait to be acked, the table holds no more than
// maxHeldReasons bytes and maxTab texts; the entries of the records acked
// are freed and serve the reasons of later ones, under the same bounds.
func TestWindowReasonsBoundedWhileWaiting(t *testing.T) {
	for _, size := range []int{10, 150} { // the count binds first, then the bytes
		var w window
		reasons := map[uint64]string{}
		refuse := func(seq uint64) {
			reasons[seq] = fmt.Sprintf("bad record %d: %s", seq, strings.Repeat("x", size))
			w.finish(seq, reasons[seq], stage.ClassInvalid)
			if w.held > maxHeldReasons || len(w.tab) > maxTab {
				t.Fatalf("size %d, record %d: %d texts, %d bytes held", size, seq, len(w.tab), w.held)
			}
		}
		w.reserve(2001) // record 1 stays pending: nothing is acked
		for seq := uint64(2); seq <= 2001; seq++ {
			refuse(seq)
		}
		checkTable(t, &w)
		next := len(fmt.Sprintf("bad record %d: ", 2002)) + size
		if len(w.tab) < maxTab && w.held+next <= maxHeldReasons {
			t.Fatalf("size %d: the table is not full: %d texts, %d bytes", size, len(w.tab), w.held)
		}
		// Ack what fits in 8 KiB of output: the entries of the records it
		// nacks are freed while the rest wait.
		w.finish(1, "", "")
		var acked uint64
		got := map[uint64]string{}
		verdicts(t, w.advance(nil, 8<<10), &acked, got)
		checkTable(t, &w)
		if len(w.free) == 0 || w.acked == w.next {
			t.Fatalf("size %d: acked %d of %d, %d entries freed", size, w.acked, w.next, len(w.free))
		}
		first := w.reserve(2000)
		for seq := first; seq < first+2000; seq++ {
			refuse(seq)
		}
		checkTable(t, &w)
		for w.acked < w.next {
			verdicts(t, w.advance(nil, 1<<20), &acked, got)
		}
		// Every record's nack is its own reason or its class, and the new
		// records had their texts while old ones waited.
		texts := 0
		for seq := uint64(2); seq < first+2000; seq++ {
			switch got[seq] {
			case reasons[seq]:
				if seq >= first {
					texts++
				}
			case stage.ClassInvalid:
			default:
				t.Fatalf("size %d: record %d nacked %q", size, seq, got[seq])
			}
		}
		if texts == 0 {
			t.Fatalf("size %d: no record after the freed entries had its reason", size)
		}
		if len(w.tab) != 0 || w.held != 0 {
			t.Fatalf("size %d: all acked, the table has %d entries, %d bytes", size, len(w.tab), w.held)
		}
	}
}

// BenchmarkWindowAcked measures the success path: records acked with no
// nacks, in batches such as one read's.
func BenchmarkWindowAcked(b *testing.B) {
	var w window
	out := make([]byte, 0, 1<<20)
	for b.Loop() {
		first := w.reserve(1000)
		for i := range uint64(1000) {
			w.finish(first+i, "", "")
		}
		out = w.advance(out[:0], 1<<20)
	}
	_ = fmt.Sprint(len(out))
}
