package netio

// This file tests that reading a datagram allocates nothing.

import (
	"net"
	"testing"
)

// Reading a datagram allocates nothing, its sender's address included:
// the reader runs once per datagram.
func TestUDPReadAllocatesNothing(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, oob := make([]byte, 64), make([]byte, oobSize)
	payload := []byte("datagram")
	var n int
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		n, _, _, err = readDatagram(pc, b, oob)
	})
	if err != nil || n != len(payload) {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per datagram written and read, want 0", allocs)
	}
}
