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

// lowestPort is the least port picked: above the ports of services a
// machine may run.
const lowestPort = 20000

// ephemeralLow returns the least port the kernel gives a socket that
// binds port 0 or connects unbound (Linux's ip_local_port_range); where
// that cannot be read, 32768, the least of the usual defaults (Linux
// 32768, BSD, macOS and Windows 49152).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 0 {
				return n
			}
		}
	}
	return 32768
}

// candidatePort returns a port for a new server: at random between
// lowestPort and ephemeralLow, so that no connection's local port and no
// other listener on a port of the kernel's choosing takes it while the
// server is stopped. (A port the kernel chose was free again once the
// server stopped, and a connection made meanwhile, of any process, could
// get it as its local port: the restart then failed, address in use, for
// as long as that connection lived.) With no such range, a port the
// kernel chooses.
func candidatePort() (int, error) {
	if low := ephemeralLow(); low > lowestPort {
		return lowestPort + rand.IntN(low-lowestPort), nil
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
