package netio

// This file holds netio.udp's count of datagrams the kernel dropped, on
// Linux (SO_RXQ_OVFL).

import (
	"encoding/binary"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// oobSize holds the one control message asked for: SO_RXQ_OVFL's count.
var oobSize = unix.CmsgSpace(4)

// reportOverruns asks the kernel to tell, with each datagram, how many it
// has dropped on the socket so far (SO_RXQ_OVFL), and reports whether it
// will.
func reportOverruns(pc *net.UDPConn) bool {
	rc, err := pc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// readDatagram reads one datagram into b and its control messages into
// oob, and returns its sender. ReadMsgUDPAddrPort allocates nothing,
// where ReadMsgUDP allocated the sender's *UDPAddr for every datagram.
func readDatagram(pc *net.UDPConn, b, oob []byte) (n, oobn int, from netip.AddrPort, err error) {
	n, oobn, _, from, err = pc.ReadMsgUDPAddrPort(b, oob)
	return n, oobn, from, err
}

// overruns returns the kernel's count of datagrams dropped on the socket
// so far, when oob carries it (the kernel sends it once the count is not
// zero).
func overruns(oob []byte) (uint32, bool) {
	if len(oob) == 0 {
		return 0, false
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_RXQ_OVFL && len(m.Data) >= 4 {
			return binary.NativeEndian.Uint32(m.Data), true
		}
	}
	return 0, false
}
