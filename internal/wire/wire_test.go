package wire

import (
	"bufio"
	"context"
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
	}
	for _, tc := range good {
		got, err := ParseReply([]byte(tc.line))
		if err != nil || got != tc.want {
			t.Errorf("ParseReply(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	for _, line := range []string{"", "ack", "ack ", "ack x", "ack 01", "ack -1", "ack 1 ", "ACK 1", "nack 1",
		"nack 1 ", "nack x busy", "nack 2 a\tb", "ack 18446744073709551616", "hello", "ack 1\r"} {
		if r, err := ParseReply([]byte(line)); err == nil {
			t.Errorf("ParseReply(%q) = %+v, want an error", line, r)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"ack 1", "nack 2 busy", "nack 0 too many connections", "ack 01", "nack 3", "ack 99999999999999999999"} {
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
		{"ack 1", "without a newline"},
		{strings.Repeat("x", MaxLine+10) + "\n", "longer than"},
	} {
		addr := fakeServer(t, func(nc net.Conn, lines <-chan string) {
			<-lines
			io.WriteString(nc, tc.reply)
			time.Sleep(10 * time.Millisecond) // let the client read before the close
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
	c := &Client{nacked: map[uint64]bool{}, keep: 2, changed: make(chan struct{})}
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
