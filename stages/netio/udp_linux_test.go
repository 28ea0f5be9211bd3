package netio

// This file tests that the kernel's count of dropped datagrams reaches
// the source's overruns (Linux only).

import (
	"net"
	"testing"
	"time"
)

// The kernel's count of datagrams dropped on a full socket arrives with
// the next one read, and overruns reads it.
func TestUDPOverrunsReported(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if !reportOverruns(pc) {
		t.Fatal("SO_RXQ_OVFL refused")
	}
	pc.SetReadBuffer(1024) // the kernel's minimum: a few datagrams
	c, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 512)
	for range 200 {
		c.Write(payload)
	}
	// A datagram carries the count as it was when the datagram was
	// queued: read what the socket holds, then one sent after the drops.
	b, oob := make([]byte, 2048), make([]byte, oobSize)
	pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		if _, _, _, err := readDatagram(pc, b, oob); err != nil {
			break
		}
	}
	pc.SetReadDeadline(time.Time{})
	c.Write([]byte("after"))
	_, oobn, _, err := readDatagram(pc, b, oob)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := overruns(oob[:oobn])
	if !ok || n == 0 || n >= 200 {
		t.Fatalf("overruns = %d, %v; want some of the 200 datagrams sent into a full socket", n, ok)
	}
	t.Logf("the kernel dropped %d of 200", n)
}
