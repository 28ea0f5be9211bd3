//go:build !linux

package netio

// This file holds netio.udp's count of datagrams the kernel dropped where
// the kernel does not report them: none.

import "net"

// oobSize: no control messages are read off Linux.
const oobSize = 0

// reportOverruns reports false: only Linux tells a socket's drops
// (SO_RXQ_OVFL), so drops.socket_overrun stays 0 elsewhere.
func reportOverruns(*net.UDPConn) bool { return false }

// readDatagram reads one datagram into b.
func readDatagram(pc *net.UDPConn, b, _ []byte) (n, oobn int, err error) {
	n, _, err = pc.ReadFromUDP(b)
	return n, 0, err
}

func overruns([]byte) (uint32, bool) { return 0, false }
