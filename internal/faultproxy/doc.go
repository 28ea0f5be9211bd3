// Package faultproxy is a TCP proxy for tests that puts network faults
// between a client and a server: the pipeline's connections to PostgreSQL
// go through it, and a test resets them, partitions them, stalls them and
// heals them while records flow.
//
//	px, err := faultproxy.New("127.0.0.1:5432") // listens on 127.0.0.1, a free port
//	defer px.Close()
//	dsn := "postgres://u@" + px.Addr() + "/db"  // the client dials the proxy
//	px.Reset()      // every open connection ends with a TCP RST, both sides
//	px.Partition()  // no byte forwarded; connections held, new ones accepted and silent
//	px.Heal()       // the held connections are reset, then forwarding resumes
//	px.Stall()      // no byte forwarded, as in a partition ...
//	px.Resume()     // ... but the held connections go on, their bytes delivered late
//
// Each accepted connection is a link: the proxy dials the target once the
// link may forward (at once, or when a partition heals or a stall ends),
// then copies bytes both ways, each direction through a gate that
// Partition and Stall close. A gate closed holds the bytes read before it
// (one buffer) and reads no more, so the sender's socket buffers fill as
// they would behind a silent network. Neither end learns anything: no
// byte, no FIN, no RST, until Heal resets the links held, or Resume lets
// them go on. A byte being written when Partition or Stall is called may
// still arrive; none read after it returns does.
//
// Reset, and Heal for the links it ends, close both sides with SO_LINGER
// 0, so that each peer gets an RST, as when a middlebox drops the
// connection: a client in the middle of a COPY sees "connection reset by
// peer", and PostgreSQL sees its client gone and aborts the COPY.
//
// The proxy listens on loopback only. Close stops listening, resets every
// link and waits for the proxy's goroutines.
package faultproxy
