package main

// This file tests pipectl top's frame: its table, width, sparklines and
// bars, plain mode, memory line, and escaped server text.

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stagedserver/seda/internal/loadgen"
	"github.com/stagedserver/seda/stats"
)

func TestTopFrame(t *testing.T) {
	m := newTopModel("127.0.0.1:9464")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, f := range []string{"stats1.json", "stats2.json", "stats1.json", "stats2.json"} {
		s := readSnapshot(t, f)
		s.at = t0.Add(time.Duration(i) * 2 * time.Second)
		m.update(s, nil)
	}
	frame := strings.Join(m.render(0), "\n") + "\n"
	golden(t, "top_frame.golden", frame)

	// The queue filled up: accept's bar is full and its history ends at the
	// top of the sparkline; store's emptied and ends at the bottom.
	for _, want := range []string{"[████████████████]", "▂█▂█", "█▁█▁"} {
		if !strings.Contains(frame, want) {
			t.Errorf("frame lacks %q:\n%s", want, frame)
		}
	}
}

func TestTopFrameWidthAndErrors(t *testing.T) {
	m := newTopModel("127.0.0.1:9464")
	m.update(readSnapshot(t, "stats1.json"), nil)
	m.update(nil, errors.New("connection refused"))
	lines := m.render(40)
	if !strings.Contains(strings.Join(lines, "\n"), "error: connection refused") {
		t.Errorf("the fetch error is not shown: %q", lines)
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 40 {
			t.Errorf("line of %d cells in a 40-cell terminal: %q", n, l)
		}
	}
}

func TestSparklineAndBar(t *testing.T) {
	st := stats.Stage{Queue: stats.Queue{Capacity: 100}}
	if got := sparkline([]int{0, 1, 50, 100}, st); got != "▁▂▅█" {
		t.Errorf("sparkline = %q", got)
	}
	if got := sparkline([]int{0, 0}, st); got != "▁▁" {
		t.Errorf("sparkline of an idle queue = %q", got)
	}
	st.Queue.Depth = 1
	if got := depthBar(st); got != "[█░░░░░░░░░░░░░░░]" {
		t.Errorf("a non-empty queue shows at least one cell: %q", got)
	}
	st.Inline = true
	if got := sparkline([]int{5}, st); got != "" {
		t.Errorf("an inline stage has no history: %q", got)
	}
}

func TestTopPlain(t *testing.T) {
	srv := statsServer(t, "", "stats1.json", "stats2.json")
	code, out, errOut := runCLI(t, "top", "--addr", srv.URL, "--interval", "10ms", "--count", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("escape sequences in plain output: %q", out)
	}
	if n := strings.Count(out, "pipectl top"); n != 2 {
		t.Errorf("%d frames, want 2:\n%s", n, out)
	}
}

// top's memory line shows the bytes held against the limit, where the
// limit comes from, and what the doors did past it.
func TestTopMemoryLine(t *testing.T) {
	got := memoryLine(&stats.Memory{LimitBytes: 128 << 20, HeldBytes: 32 << 20, Basis: "memory_limit", Overflow: "reject",
		Refused: 7, GoLimitBytes: 192 << 20})
	want := "memory  32MiB held of 128MiB (25%, memory_limit, reject)  refused 7  GOMEMLIMIT 192MiB"
	if got != want {
		t.Fatalf("memory line\n got %q\nwant %q", got, want)
	}
	if memoryLine(nil) != "" {
		t.Fatal("a line without figures")
	}
}

// Text from the server reaches the terminal escaped: a stage's error
// quoting a record with escape sequences (clear the screen, set the
// window's title), or an error answer, prints them as \x1b, not as
// commands.
func TestServerTextIsPrintable(t *testing.T) {
	const evil = "invalid input: \"\x1b[2J\x1b]0;owned\x07\u009b31m\xff\""
	s := readSnapshot(t, "stats1.json")
	s.Stages[0].Health = stats.Health{State: stats.HealthDown, Error: evil + "\nsecond line"}
	s.Stages[0].Name = "in\x1b[31m"
	m := newTopModel("127.0.0.1:9464")
	m.update(s, nil)
	m.update(nil, errors.New("fetch stats: 500: "+evil))
	outs := map[string]string{"top": strings.Join(m.render(0), "\n"), "stats": statsTable(nil, s)}
	for name, out := range outs {
		for _, c := range []string{"\x1b", "\x07", "\u009b", "\xff"} {
			if strings.Contains(out, c) {
				t.Errorf("%s prints %q raw:\n%s", name, c, out)
			}
		}
		if !strings.Contains(out, `invalid input: "\x1b[2J\x1b]0;owned\a\u009b31m\xff"`) || !strings.Contains(out, `in\x1b[31m`) {
			t.Errorf("%s does not show the text escaped:\n%s", name, out)
		}
	}
	if !strings.Contains(outs["stats"], "second line") || !strings.Contains(outs["top"], "owned\\a\\u009b31m\\xff\" second line") {
		t.Errorf("a multi-line error: stats keeps its lines, top joins them")
	}
	r := &loadgen.Result{Sent: 2, Nacked: 1, Nacks: map[string]uint64{evil: 1},
		FirstNacks: []loadgen.Nack{{Record: 1, Reason: evil}}, Errors: []error{errors.New(evil)}}
	if out := loadReport(r); strings.ContainsAny(out, "\x1b\x07\u009b") || strings.Contains(out, "\xff") {
		t.Errorf("load prints the server's text raw:\n%s", out)
	}
	if got := printable("plain ünïcode\nline"); got != "plain ünïcode\nline" {
		t.Errorf("printable changed plain text: %q", got)
	}
}
