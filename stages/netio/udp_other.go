//go:build !linux

package netio

// This file holds netio.udp's count of datagrams the kernel dropped where
// the kernel does not report them: none.

import (
	"net"
	"net/netip"
)

// oobSize: no control messages are read off Linux.
const oobSize = 0

// reportOverruns reports false: only Linux tells a socket's drops
// (SO_RXQ_OVFL), so drops.socket_overrun stays 0 elsewhere.
func reportOverruns(*net.UDPConn) bool { return false }

// readDatagram reads one datagram into b and returns its sender, without
// allocating.
func readDatagram(pc *net.UDPConn, b, _ []byte) (n, oobn int, from netip.AddrPort, err error) {
	n, from, err = pc.ReadFromUDPAddrPort(b)
	return n, 0, from, err
}

func overruns([]byte) (uint32, bool) { return 0, false }
