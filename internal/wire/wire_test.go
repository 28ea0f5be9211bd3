package wire

// This file tests the client against scripted servers on loopback: reply
// parsing (with a fuzzer), acks, nacks and range nacks, bad lines,
// octet counting, bounded nacks, and Runs.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseReply(t *testing.T) {
	good := []struct {
		line string
		want Reply
	}{
		{"ack 1", Reply{N: 1}},
		{"ack 18446744073709551615", Reply{N: 1<<64 - 1}},
		{"nack 3 too large", Reply{Nack: true, N: 3, Reason: "too large"}},
		{"nack 0 too many connections", Reply{Nack: true, Reason: "too many connections"}},
		{"ack 0", Reply{}},
		{"nack 3-7 busy", Reply{Nack: true, N: 3, Through: 7, Reason: "busy"}},
		{"nack 1-18446744073709551615 x", Reply{Nack: true, N: 1, Through: 1<<64 - 1, Reason: "x"}},
	}
	for _, tc := range good {
		got, err := ParseReply([]byte(tc.line))
		if err != nil || got != tc.want {
			t.Errorf("ParseReply(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	for _, line := range []string{"", "ack", "ack ", "ack x", "ack 01", "ack -1", "ack 1 ", "ACK 1", "nack 1",
		"nack 1 ", "nack x busy", "nack 2 a\tb", "ack 18446744073709551616", "hello", "ack 1\r",
		"nack 3-3 busy", "nack 5-3 busy", "nack 0-4 busy", "nack 3- busy", "nack -3 busy", "nack 3-04 busy",
		"nack 3--4 busy", "nack 3-4-5 busy", "ack 3-4", "nack 3-4", "nack 1-18446744073709551616 x"} {
		if r, err := ParseReply([]byte(line)); err == nil {
			t.Errorf("ParseReply(%q) = %+v, want an error", line, r)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"ack 1", "nack 2 busy", "nack 0 too many connections", "ack 01", "nack 3", "ack 99999999999999999999",
		"nack 2-9 busy", "nack 9-2 busy", "nack 0-1 x", "nack 1-1 x", "nack 1-2-3 x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseReply(line)
		if err != nil {
			return
		}
		// A line that parses is in canonical form: printing the reply gives
		// the line back.
		if r.String() != string(line) {
			t.Fatalf("ParseReply(%q) = %+v, which prints as %q", line, r, r.String())
		}
		// A range is of two records or more, from record 1 on; a nack
		// refuses Last-N+1 records.
		if r.Through != 0 && (!r.Nack || r.N == 0 || r.Through <= r.N) {
			t.Fatalf("ParseReply(%q) = %+v: not a range", line, r)
		}
		if r.Nack && r.N > 0 && r.Records() != r.Last()-r.N+1 {
			t.Fatalf("ParseReply(%q) = %+v refuses %d records", line, r, r.Records())
		}
	})
}

// fakeServer accepts one connection, reads records with readLine, and
// answers each line of script once the record count reaches its number.
func fakeServer(t *testing.T, script func(conn net.Conn, lines <-chan string)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		lines := make(chan string)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(lines)
			sc := bufio.NewScanner(nc)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		script(nc, lines)
		nc.Close()
		for range lines {
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func TestClientAcksNacksAndWait(t *testing.T) {
	addr := fakeServer(t, func(nc net.Conn, lines <-chan string) {
		for i := 0; i < 3; i++ {
			<-lines
		}
		io.WriteString(nc, "nack 2 bad\nack 3\n")
	})
	var got []string
	c, err := DialOptions(context.Background(), addr, Options{OnReply: func(r Reply) { got = append(got, r.String()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, r := range []string{"a", "b", "c"} {
		c.Send([]byte(r))
	}
	if _, err := c.Send([]byte("x\ny")); err == nil {
		t.Fatal("a record with a newline was sent under lines framing")
	}
	c.Flush()
	if err := c.WaitTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if c.Err() != io.EOF || c.Acked() != 3 || len(c.Nacks()) != 1 || strings.Join(got, "|") != "nack 2 bad|ack 3" {
		t.Fatalf("err %v acked %d nacks %v replies %q", c.Err(), c.Acked(), c.Nacks(), got)
	}
}

func TestClientRejectsBadServerLines(t *testing.T) {
	for _, tc := range []struct{ reply, want string }{
		{"ack 1\nbogus\n", "server line 2"},
		{"ack 5\n", "only 1 records were sent"},
		{"ack 1\nack 1\n", "does not move forward"},
		{"ack 1\nnack 1 late\n", "already settled"},
		{"nack 1-2 busy\n", "only 1 records were sent"},
		{"ack 1", "without a newline"},
		{strings.Repeat("x", MaxLine+10) + "\n", "longer than"},
	} {
		addr := fakeServer(t, func(nc net.Conn, lines <-chan string) {
			<-lines
			io.WriteString(nc, tc.reply)
			nc.(*net.TCPConn).CloseWrite() // the client reads the reply, then the end
			for range lines {              // until the client closes
			}
		})
		c, err := Dial(context.Background(), addr, Lines)
		if err != nil {
			t.Fatal(err)
		}
		c.Send([]byte("one"))
		c.Flush()
		err = c.WaitTimeout(10 * time.Second)
		<-c.Done()
		if c.Err() == nil || !strings.Contains(c.Err().Error(), tc.want) {
			t.Errorf("reply %q: client error %v, want %q", tc.reply, c.Err(), tc.want)
		}
		if tc.want != "server line 2" && tc.want != "already settled" && tc.want != "does not move forward" && err == nil {
			t.Errorf("reply %q: Wait succeeded", tc.reply)
		}
		c.Close()
	}
}

func TestOctetCountedSend(t *testing.T) {
	addr := fakeServer(t, func(nc net.Conn, lines <-chan string) {
		if l1, l2 := <-lines, <-lines; l1 != "5 hello12 with" || l2 != "newline" {
			io.WriteString(nc, "nack 1 unexpected "+l1+"|"+l2+"\n")
			return
		}
		io.WriteString(nc, "ack 2\n")
	})
	c, err := Dial(context.Background(), addr, OctetCounted)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Send([]byte("hello"))
	c.Send([]byte("with\nnewline"))
	c.SendRaw([]byte("\n"), 0)
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitTimeout(10 * time.Second); err != nil || len(c.Nacks()) != 0 {
		t.Fatalf("%v, nacks %v", err, c.Nacks())
	}
}

func TestKeepNacksBoundsMemory(t *testing.T) {
	c := &Client{keep: 2, changed: make(chan struct{})}
	c.sent = 5
	for n := uint64(1); n <= 5; n++ {
		if err := c.apply(Reply{Nack: true, N: n, Reason: "busy"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.Nacks(); len(got) != 2 || got[0].N != 1 || got[1].N != 2 {
		t.Fatalf("kept %v, want the first two", got)
	}
}

// Range nacks settle every record of the range, count each, and may
// arrive beside single nacks in any order; a range overlapping a record
// settled already ends the client.
func TestClientRangeNacks(t *testing.T) {
	addr := fakeServer(t, func(nc net.Conn, lines <-chan string) {
		for range 10 {
			<-lines
		}
		io.WriteString(nc, "nack 2-4 busy\nnack 9 bad\nnack 6-7 busy\nack 4\n")
		io.WriteString(nc, "ack 10\n")
	})
	var got []string
	c, err := DialOptions(context.Background(), addr, Options{OnReply: func(r Reply) { got = append(got, r.String()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 10 {
		c.Send(fmt.Appendf(nil, "r%d", i))
	}
	c.Flush()
	if err := c.WaitTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if c.Acked() != 10 || c.Nacked() != 6 || len(c.Nacks()) != 3 ||
		strings.Join(got, "|") != "nack 2-4 busy|nack 9 bad|nack 6-7 busy|ack 4|ack 10" {
		t.Fatalf("acked %d, nacked %d, nacks %v, replies %q", c.Acked(), c.Nacked(), c.Nacks(), got)
	}

	c2 := &Client{changed: make(chan struct{})}
	c2.sent = 10
	for _, r := range []Reply{{Nack: true, N: 3, Through: 5, Reason: "busy"}, {Nack: true, N: 1, Reason: "x"}} {
		if err := c2.apply(r); err != nil {
			t.Fatal(err)
		}
	}
	if c2.settled != 1 {
		t.Fatalf("settled %d, want 1: record 2 is open", c2.settled)
	}
	if err := c2.apply(Reply{Nack: true, N: 5, Through: 6, Reason: "busy"}); err == nil || !strings.Contains(err.Error(), "already settled") {
		t.Fatalf("a range over a record nacked already: %v", err)
	}
	if err := c2.apply(Reply{Nack: true, N: 2, Reason: "x"}); err != nil || c2.settled != 5 {
		t.Fatalf("settled %d, %v; want 5", c2.settled, err)
	}
}

func TestRuns(t *testing.T) {
	var s Runs
	for _, r := range []Run{{10, 12}, {20, 20}, {1, 3}, {14, 15}, {5, 5}} {
		if !s.Add(r.First, r.Last) {
			t.Fatalf("Add(%v) refused", r)
		}
	}
	for _, r := range []Run{{12, 13}, {3, 3}, {4, 10}, {13, 14}, {19, 21}, {1, 100}} {
		if s.Add(r.First, r.Last) {
			t.Fatalf("Add(%v) overlapping %v accepted", r, s.All())
		}
	}
	if fmt.Sprint(s.All()) != "[{1 3} {5 5} {10 12} {14 15} {20 20}]" {
		t.Fatalf("runs %v", s.All())
	}
	if s.Reach(0) != 3 || s.Reach(4) != 5 || s.Reach(9) != 12 || s.Reach(13) != 15 || s.Reach(16) != 16 {
		t.Fatalf("Reach: %d %d %d %d %d", s.Reach(0), s.Reach(4), s.Reach(9), s.Reach(13), s.Reach(16))
	}
	if !s.Contains(11) || s.Contains(13) || s.Contains(4) || !s.Contains(20) {
		t.Fatal("Contains")
	}
	s.Forget(11)
	if fmt.Sprint(s.All()) != "[{12 12} {14 15} {20 20}]" {
		t.Fatalf("after Forget(11): %v", s.All())
	}
	s.Forget(100)
	if len(s.All()) != 0 {
		t.Fatalf("after Forget(100): %v", s.All())
	}
}
