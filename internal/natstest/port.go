package natstest

// This file picks the test server's port: one the kernel never hands out
// on its own, so that nothing takes it while Restart has the server
// stopped.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// errPortTaken says another socket holds the port the server is to
// listen on.
var errPortTaken = errors.New("port taken")

// lowestPort and highestPort bound the ports picked: above the ports of
// services a machine may run.
const (
	lowestPort  = 20000
	highestPort = 65535
)

// ephemeralRange returns the ports the kernel gives a socket that binds
// port 0 or connects unbound (Linux's ip_local_port_range). Where that
// cannot be read, Linux's default, 32768-60999 (other systems differ:
// FreeBSD hands out 10000-65535, macOS and Windows 49152-65535, so there
// the port picked may be one the kernel hands out too).
func ephemeralRange() (low, high int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && 0 < lo && lo <= hi {
				return lo, hi
			}
		}
	}
	return 32768, 60999
}

// portsOutside returns how many ports between lowestPort and highestPort
// lie below low and above high, and the i-th of them.
func portsOutside(low, high int) (n int, at func(i int) int) {
	below := max(0, min(low, highestPort+1)-lowestPort)
	above := max(0, highestPort-max(high, lowestPort-1))
	return below + above, func(i int) int {
		if i < below {
			return lowestPort + i
		}
		return max(high, lowestPort-1) + 1 + (i - below)
	}
}

// candidatePort returns a port for a new server: at random among those
// between lowestPort and highestPort outside the kernel's range, so that
// no connection's local port and no other listener on a port of the
// kernel's choosing takes it while the server is stopped. (A port the
// kernel chose was free again once the server stopped, and a connection
// made meanwhile, of any process, could get it as its local port: the
// restart then failed, address in use, for as long as that connection
// lived.) With no port outside the range, a port the kernel chooses.
func candidatePort() (int, error) {
	if n, at := portsOutside(ephemeralRange()); n > 0 {
		return at(rand.IntN(n)), nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// probe reports whether the server can listen on port now, by listening
// there and closing at once: an error wraps errPortTaken. The server's
// own listen error is not seen by its start, which waits readyWait for a
// listener that never comes.
func probe(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("%w: %w", errPortTaken, err)
	}
	return l.Close()
}
