// This file tests a connection the client resets (RST) mid-record.
package netio_test

import (
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
	"go.uber.org/zap/zapcore"
)

// TestResetDropsTheUnfinishedRecord: a client that resets its connection
// (SO_LINGER 0, then close) with a line unfinished has not sent that
// record; it must not be stored as one, as a clean close's last line is.
// The reset was read as a clean close: the one-byte peek that waits for
// input took the socket's ECONNRESET, and the read after it found EOF.
func TestResetDropsTheUnfinishedRecord(t *testing.T) {
	for _, framing := range []netio.Framing{netio.Lines, netio.Syslog} {
		t.Run(string(framing), func(t *testing.T) {
			r := newRig(t, map[string]any{"framing": string(framing)}, stage.Settings{Workers: 1}, nil)
			nc, err := net.Dial("tcp", r.src.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := io.WriteString(nc, "<13>a\n<13>b\n<13>unfinished"); err != nil {
				t.Fatal(err)
			}
			poll.Until(t, "the two finished records stored", func() bool { return len(r.payloads()) >= 2 })
			if err := nc.(*net.TCPConn).SetLinger(0); err != nil {
				t.Fatal(err)
			}
			nc.Close() // a reset
			// The connection closes once what was framed of it is
			// finished (ack: commit): the unfinished line too, had it
			// been taken for a record.
			poll.Until(t, "the connection closed", func() bool { return r.in.Stage().Stats().Source.Connections.Closed == 1 })
			if got, want := fmt.Sprint(r.payloads()), fmt.Sprint([]string{"<13>a", "<13>b"}); got != want {
				t.Fatalf("stored %s, want %s: the line the reset cut off is no record", got, want)
			}
		})
	}
}

// TestResetBetweenRecordsIsQuiet: a reset that cuts no record off closes
// the connection as a shut does, without a warning: a load balancer's
// health check resets each probe, and a warning a probe drowned the log.
func TestResetBetweenRecordsIsQuiet(t *testing.T) {
	r := newRig(t, nil, stage.Settings{Workers: 1}, nil)
	for i, data := range []string{"", "a\n"} {
		nc, err := net.Dial("tcp", r.src.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(nc, data); err != nil {
			t.Fatal(err)
		}
		if data != "" {
			// Its ack read first: an ack the server writes after the
			// reset fails, and that is a warning of its own.
			want := "ack 1\n"
			got := make([]byte, len(want))
			if _, err := io.ReadFull(nc, got); err != nil || string(got) != want {
				t.Fatalf("read %q, %v; want %q", got, err, want)
			}
		}
		if err := nc.(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		nc.Close()
		poll.Until(t, "the connection closed", func() bool { return r.in.Stage().Stats().Source.Connections.Closed == uint64(i+1) })
	}
	if got := r.payloads(); len(got) != 1 {
		t.Errorf("stored %q, want the one record", got)
	}
	for _, e := range r.logs.All() {
		if e.Level >= zapcore.WarnLevel {
			t.Errorf("logged %s %q %v; want a reset between records closed quietly", e.Level, e.Message, e.Context)
		}
	}
}
