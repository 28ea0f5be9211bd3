package netio_test

// This file tests what a drain does with a client that keeps sending
// under ack: none: what the source read and did not store is counted and
// reported, and the connection is closed at once, not lingered on.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/pipeline"
	"github.com/stagedserver/seda/stage"
	"github.com/stagedserver/seda/stages/netio"
)

// A sender under ack: none that keeps sending through the drain. The sink
// holds the first records until the source has stopped taking input, and
// max_unacked: 1 pauses the reads meanwhile, so the lines sent after them
// wait in the socket: the drain reads them and cannot store them. Every
// complete line the source read (bytes_in) must be stored or counted lost
// in the drain report and in /stats, the loss logged at warn with the
// connection, and the connection closed at once: the client sees its
// writes fail, though drain_linger is a minute.
// Over TLS the socket under it is read so.
func TestDrainAckNoneCountsDiscarded(t *testing.T) {
	t.Run("tcp", func(t *testing.T) { drainAckNone(t, false) })
	t.Run("tls", func(t *testing.T) { drainAckNone(t, true) })
}

func drainAckNone(t *testing.T, overTLS bool) {
	reg := stage.NewRegistry()
	if err := netio.Register(reg); err != nil {
		t.Fatal(err)
	}
	var stored, held atomic.Int64
	release := make(chan struct{})
	if err := reg.Register(stage.Kind{Name: "test.count", Doc: "stores every record once released", Terminal: true,
		NewHandler: func(stage.Config, stage.Env) (stage.Handler, error) {
			return stage.HandlerFunc(func(_ context.Context, b []*stage.Event, _ stage.Emitter) error {
				held.Add(int64(len(b)))
				<-release
				stored.Add(int64(len(b)))
				stage.DoneAll(b, nil)
				return nil
			}), nil
		}}); err != nil {
		t.Fatal(err)
	}
	var f tlsFiles
	tlsKey := ""
	if overTLS {
		f = newTLSFiles(t)
		tlsKey = fmt.Sprintf("    tls: {cert: %s, key: %s}\n", f.server.CertFile, f.server.KeyFile)
	}
	yaml := "name: t\nstages:\n  in:\n    kind: netio.tcp\n    listen: 127.0.0.1:0\n    ack: none\n    drain_linger: 1m\n" +
		"    max_unacked: 1\n    read_buffer: 4KiB\n" + tlsKey + "    next: out\n  out:\n    kind: test.count\n"
	pc, err := pipeline.Parse("p.yaml", []byte(yaml), reg, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	p, err := pipeline.New(pc, pipeline.Options{Registry: reg, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	addr := p.Addr("in").String()
	var nc interface {
		net.Conn
		CloseWrite() error
	}
	if overTLS {
		nc, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: f.ca.Pool()})
	} else {
		nc, err = net.DialTCP("tcp", nil, p.Addr("in").(*net.TCPAddr))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	go io.Copy(io.Discard, nc) // ack: none: nothing comes; a sender that does not read

	// The writer sends until a write fails, or gives up after far more
	// than the socket buffers hold, having never seen one fail, and shuts
	// its side (which ends a linger).
	const lines, giveUp = 2000, 200000
	var written atomic.Int64
	var ends []int // ends[i]: the bytes sent up to and including line i+1
	var werr error
	var wg sync.WaitGroup
	wg.Go(func() {
		total := 0
		for i := 1; i <= giveUp; i++ {
			n, err := fmt.Fprintf(nc, "<13>record %d\n", i)
			if err != nil {
				werr = err
				return
			}
			total += n
			ends = append(ends, total)
			written.Add(1)
		}
		nc.CloseWrite()
	})
	poll.Until(t, "the first records held in the sink and more lines sent", func() bool {
		return held.Load() > 0 && written.Load() >= lines
	})
	var rep pipeline.StopReport
	var serr error
	var stop sync.WaitGroup
	stop.Go(func() { rep, serr = p.Stop(ctx) })
	// Once the listener is closed, the source reads no more.
	poll.Until(t, "the listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	stop.Wait()
	wg.Wait()
	if serr != nil {
		t.Fatal(serr)
	}
	if werr == nil {
		t.Errorf("the client wrote %d lines with no error: the connection was not closed (lingered on)", giveUp)
	}
	st, _ := p.StageStats("in")
	if st.Source == nil {
		t.Fatal("no source stats")
	}
	read := sort.SearchInts(ends, int(st.Source.BytesIn)+1) // complete lines in bytes_in
	if rep.Fates.Lost == 0 || uint64(stored.Load())+rep.Fates.Lost != uint64(read) {
		t.Errorf("read %d lines (bytes_in %d); stored %d and %d lost (report %s): want every line read stored or lost, some lost",
			read, st.Source.BytesIn, stored.Load(), rep.Fates.Lost, rep.Fates)
	}
	if st.In != uint64(read) || st.Errors != rep.Fates.Lost {
		t.Errorf("stage stats: in %d, errors %d: want in %d, errors %d (the records lost)", st.In, st.Errors, read, rep.Fates.Lost)
	}
	ws := logs.FilterMessageSnippet("discarded").All()
	if len(ws) != 1 {
		t.Fatalf("want one warning of the records discarded, got %v", logs.All())
	}
	fs := ws[0].ContextMap()
	if fmt.Sprint(fs["records"]) != fmt.Sprint(rep.Fates.Lost) || fs["conn"] == nil || fs["remote"] != nc.LocalAddr().String() {
		t.Errorf("warning %v: want records %d and the connection", fs, rep.Fates.Lost)
	}
}
