package netio

// This file tests the framers (lines, octet-counted, syslog) against
// reference framings, with fuzzers and benchmarks.

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// collect is a recSink that records what a framer found, as strings
// ("data:..." / "too large" / "bad frame").
type collect struct {
	got []string
	max int
	t   *testing.T
}

func (c *collect) add(k recKind, rec []byte) {
	switch k {
	case recData:
		if len(rec) > c.max {
			c.t.Fatalf("record of %d bytes over max_frame %d", len(rec), c.max)
		}
		c.got = append(c.got, "data:"+string(rec))
	case recTooLarge:
		c.got = append(c.got, "too large")
	case recBadFrame:
		c.got = append(c.got, "bad frame")
	case recBusy:
		c.got = append(c.got, "busy")
	}
}

// feedChunks feeds data to f in chunks whose sizes come from cuts.
func feedChunks(f framer, data, cuts []byte, out recSink) {
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if len(cuts) > 0 {
			n = min(int(cuts[i%len(cuts)])%23+1, len(data))
		}
		// Feed a copy, and scribble on it afterwards: the framer must not
		// keep references into a read buffer it was handed.
		chunk := append([]byte(nil), data[:n]...)
		f.feed(chunk, out)
		for j := range chunk {
			chunk[j] = '#'
		}
		data = data[n:]
	}
	f.end(out)
}

// refLines frames data as the protocol says, all at once.
func refLines(data []byte, max int) []string {
	var want []string
	for _, p := range bytes.Split(data, []byte("\n")) {
		p = bytes.TrimSuffix(p, []byte("\r"))
		switch {
		case len(p) == 0:
		case len(p) > max:
			want = append(want, "too large")
		default:
			want = append(want, "data:"+string(p))
		}
	}
	return want
}

var lenPrefix = regexp.MustCompile(`^([1-9][0-9]{0,8}) `)
var lenStart = regexp.MustCompile(`^[1-9][0-9]{0,8}$`)

// refOctets frames RFC 6587 octet counting, all at once.
func refOctets(data []byte, max int) []string {
	var want []string
	for len(data) > 0 {
		m := lenPrefix.FindSubmatch(data)
		if m == nil {
			if !lenStart.Match(data) {
				want = append(want, "bad frame")
			}
			return want // else: input ends inside a length
		}
		l, _ := strconv.Atoi(string(m[1]))
		data = data[len(m[0]):]
		if l > max {
			want = append(want, "too large")
			if l >= len(data) {
				return want
			}
			data = data[l:]
			continue
		}
		if l > len(data) {
			return want // truncated
		}
		want = append(want, "data:"+string(data[:l]))
		data = data[l:]
	}
	return want
}

// refSyslog frames as framing: syslog says, all at once: a frame that
// starts with a digit is octet-counted, any other is a line.
func refSyslog(data []byte, max int) []string {
	var want []string
	for len(data) > 0 {
		if c := data[0]; c >= '0' && c <= '9' && (lenPrefix.Match(data) || lenStart.Match(data)) {
			m := lenPrefix.FindSubmatch(data)
			if m == nil {
				return want // a length cut short by the end: dropped
			}
			l, _ := strconv.Atoi(string(m[1]))
			data = data[len(m[0]):]
			switch {
			case l > max:
				want = append(want, "too large")
			case l <= len(data):
				want = append(want, "data:"+string(data[:l]))
			}
			if l >= len(data) {
				return want // the last frame, or truncated
			}
			data = data[l:]
			continue
		}
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		want = append(want, refLines(line, max)...)
	}
	return want
}

func checkSame(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records %q, want %d %q", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("record %d: got %q, want %q", i+1, got[i], want[i])
		}
	}
}

func FuzzLines(f *testing.F) {
	f.Add([]byte("a\nbb\r\n\n\rccc\nlast"), []byte{1, 2, 3}, 4)
	f.Add([]byte("xxxxxxxxxx\nyy\n"), []byte{0}, 3)
	f.Add([]byte("abc\r"), []byte{2}, 3)
	f.Add([]byte("abcd\r\nabcde\r\n"), []byte{5, 1}, 4)
	f.Fuzz(func(t *testing.T, data, cuts []byte, max int) {
		max = int(uint(max)%64) + 1
		c := &collect{max: max, t: t}
		feedChunks(newFramer(Lines, max, 8), data, cuts, c) // 8: records past it drop part's room
		checkSame(t, c.got, refLines(data, max))
	})
}

func FuzzOctetCounted(f *testing.F) {
	f.Add([]byte("5 hello3 abc"), []byte{1, 4}, 8)
	f.Add([]byte("12 hello world!2 ok"), []byte{3}, 5)
	f.Add([]byte("3 abcx hello"), []byte{0}, 8)
	f.Add([]byte("05 hello"), []byte{0}, 8)
	f.Add([]byte("1234567890 x"), []byte{2}, 8)
	f.Add([]byte("4 ab"), []byte{1}, 8)
	f.Fuzz(func(t *testing.T, data, cuts []byte, max int) {
		max = int(uint(max)%64) + 1
		c := &collect{max: max, t: t}
		feedChunks(newFramer(OctetCounted, max, 8), data, cuts, c) // 8: records past it drop part's room
		checkSame(t, c.got, refOctets(data, max))
	})
}

// FuzzSyslogFraming: framing syslog, fed in any chunks, gives what
// refSyslog gives: each frame framed as its first byte says.
func FuzzSyslogFraming(f *testing.F) {
	f.Add([]byte("<13>Nov 28 22:37:48 vm viarsys: hello\n14 <13>1 - - - - -<14>x\r\n\n"), []byte{1, 7}, 64)
	f.Add([]byte("5 hello<1>a\n3 abc"), []byte{2}, 8)
	f.Add([]byte("<1>long line here\n9 123456789<2>b"), []byte{3}, 5)
	f.Add([]byte("x\n05 bad"), []byte{0}, 8)
	f.Add([]byte("12"), []byte{1}, 8)
	f.Add([]byte("2026-12-07T14:41:06Z a\n1234567890 b\n0 c\n"), []byte{2, 9}, 32)
	f.Fuzz(func(t *testing.T, data, cuts []byte, max int) {
		max = int(uint(max)%64) + 1
		c := &collect{max: max, t: t}
		feedChunks(newFramer(Syslog, max, 8), data, cuts, c) // 8: records past it drop part's room
		checkSame(t, c.got, refSyslog(data, max))
	})
}

// framing: syslog reads what real senders wrote on one connection: rsyslog
// forwarding with @@ (lines), logger --octet-count, and both mixed.
func TestSyslogFraming(t *testing.T) {
	const (
		rsys = "<13>Nov 28 22:37:48 vm viarsys: hello\n<13>Nov 28 22:37:48 vm myapp[15652]: with pid\n"
		oc   = "54 <13>Nov 28 22:37:43 vm myapp[15004]: hello 3164 oc pid"
	)
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"rsyslog @@", rsys, []string{"data:<13>Nov 28 22:37:48 vm viarsys: hello", "data:<13>Nov 28 22:37:48 vm myapp[15652]: with pid"}},
		{"logger --octet-count", oc + oc, []string{"data:" + oc[3:], "data:" + oc[3:]}},
		{"mixed", oc + rsys + oc, []string{"data:" + oc[3:], "data:<13>Nov 28 22:37:48 vm viarsys: hello",
			"data:<13>Nov 28 22:37:48 vm myapp[15652]: with pid", "data:" + oc[3:]}},
		{"octet frame, then a stray LF", oc + "\n" + oc, []string{"data:" + oc[3:], "data:" + oc[3:]}},
		{"last line unterminated", "<13>a\n<13>b", []string{"data:<13>a", "data:<13>b"}},
		// Digits with no space after them are no length: the frame is a
		// line, as a sender without <PRI> writes one starting with a
		// date; the lines after it are read as before.
		{"digits, then no space", "<13>a\n12x <13>b\n<13>c\n", []string{"data:<13>a", "data:12x <13>b", "data:<13>c"}},
		{"a date first", "<13>a\n2026-12-07T14:41:06Z host a: two\n<13>c\n",
			[]string{"data:<13>a", "data:2026-12-07T14:41:06Z host a: two", "data:<13>c"}},
		{"a leading zero", "05:12 x\n5 hello", []string{"data:05:12 x", "data:hello"}},
		{"ten digits", "1733580000123 x\n<1>y\n", []string{"data:1733580000123 x", "data:<1>y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, cut := range []byte{0, 1, 4, 22} {
				c := &collect{max: 1024, t: t}
				var cuts []byte
				if cut > 0 {
					cuts = []byte{cut - 1}
				}
				feedChunks(newFramer(Syslog, 1024, 64<<10), []byte(tc.in), cuts, c)
				checkSame(t, c.got, tc.want)
			}
		})
	}
	fr := newFramer(Syslog, 1024, 64<<10)
	fr.feed([]byte("12x"), &collect{max: 1024, t: t})
	if err := fr.err(); err != nil {
		t.Errorf("err() = %v, want none: digits with no space begin a line", err)
	}
}

type discard struct{ n int }

func (d *discard) add(recKind, []byte) { d.n++ }

// benchFrame frames 64 KiB of 199-byte records, as lines or (octets)
// octet-counted.
func benchFrame(b *testing.B, f Framing, octets bool) {
	var chunk []byte
	rec := bytes.Repeat([]byte("x"), 199)
	for len(chunk) < 64<<10-300 {
		if !octets {
			chunk = append(append(chunk, rec...), '\n')
		} else {
			chunk = append(append(chunk, "199 "...), rec...)
		}
	}
	fr := newFramer(f, DefaultMaxFrame, 64<<10)
	d := &discard{}
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		fr.feed(chunk, d)
	}
	b.ReportMetric(float64(d.n)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkFrameLines(b *testing.B)              { benchFrame(b, Lines, false) }
func BenchmarkFrameOctetCounted(b *testing.B)       { benchFrame(b, OctetCounted, true) }
func BenchmarkFrameSyslogLines(b *testing.B)        { benchFrame(b, Syslog, false) }
func BenchmarkFrameSyslogOctetCounted(b *testing.B) { benchFrame(b, Syslog, true) }

// partCap is the room a framer keeps for a record spanning reads.
func partCap(fr framer) int {
	switch f := fr.(type) {
	case *lineFramer:
		return cap(f.part)
	case *octetFramer:
		return cap(f.part)
	case *syslogFramer:
		return cap(f.lines.part) + cap(f.oct.part)
	}
	panic("unknown framer")
}

// Once a record that spanned many reads is finished, the framer keeps no
// more room for the next than a read's size: an idle connection that once
// sent a record of max_frame does not pin that much. A record that spans
// a few small reads keeps its room, and every record comes out whole.
func TestFramerDropsBigPart(t *testing.T) {
	const readBuf, big = 4096, 200 << 10
	rec := strings.Repeat("x", big)
	for _, tc := range []struct {
		f    Framing
		data string
	}{
		{Lines, rec + "\nsmall\n"},
		{OctetCounted, fmt.Sprintf("%d %s5 small", big, rec)},
		{Syslog, rec + "\n" + fmt.Sprintf("%d %s5 small", big, rec)},
	} {
		fr := newFramer(tc.f, 1<<20, readBuf)
		c := &collect{max: 1 << 20, t: t}
		data := []byte(tc.data)
		for len(data) > 0 {
			n := min(readBuf, len(data))
			fr.feed(data[:n], c)
			data = data[n:]
			if len(c.got) > 0 && fr.buffered() == 0 && partCap(fr) > readBuf {
				t.Fatalf("%s: after record %d, %d bytes kept for the next", tc.f, len(c.got), partCap(fr))
			}
		}
		fr.end(c)
		if partCap(fr) > readBuf {
			t.Fatalf("%s: at the end of input, %d bytes kept", tc.f, partCap(fr))
		}
		for i, g := range c.got {
			if g != "data:"+rec && g != "data:small" {
				t.Fatalf("%s: record %d is %d bytes", tc.f, i+1, len(g))
			}
		}
		if n := len(c.got); n < 2 || c.got[n-1] != "data:small" {
			t.Fatalf("%s: %d records", tc.f, n)
		}
	}
}

// A framer's held is the bytes of a record spanning reads once they are
// more than a read's size, and 0 otherwise; refuse gives the record up:
// reported busy at once, its rest skipped unbuffered, and the records
// after it framed as before, in every framing.
func TestFramerHeldAndRefuse(t *testing.T) {
	const readBuf, big = 4096, 3 * 4096
	rec := strings.Repeat("x", big)
	for _, tc := range []struct {
		f    Framing
		data string
	}{
		{Lines, rec + "\nsmall\n"},
		{OctetCounted, fmt.Sprintf("%d %s5 small", big, rec)},
		{Syslog, rec + "\n5 small"},
		{Syslog, fmt.Sprintf("%d %ssmall\n", big, rec)},
	} {
		fr := newFramer(tc.f, 1<<20, readBuf)
		c := &collect{max: 1 << 20, t: t}
		data := []byte(tc.data)
		refused := false
		for len(data) > 0 {
			n := min(readBuf, len(data))
			fr.feed(data[:n], c)
			data = data[n:]
			h := fr.held()
			if want := fr.buffered(); want <= readBuf && h != 0 || want > readBuf && h != want {
				t.Fatalf("%s: held %d with %d buffered", tc.f, h, want)
			}
			if h > 0 && !refused {
				refused = true
				fr.refuse(c)
				if fr.held() != 0 || fr.buffered() != 0 || len(c.got) != 1 || c.got[0] != "busy" {
					t.Fatalf("%s: refused, held %d, buffered %d, records %q", tc.f, fr.held(), fr.buffered(), c.got)
				}
			}
		}
		fr.end(c)
		if !refused || strings.Join(c.got, ",") != "busy,data:small" {
			t.Fatalf("%s: records %q, want the large one busy and the small one", tc.f, c.got)
		}
	}
}
