// Package natstest runs a real NATS server with JetStream inside the test
// process: the one helper behind every test that needs NATS (unit tests of
// package natsq, pipeline integration tests, and the e2e tests, whose
// pipectl processes connect to it over loopback).
//
//	srv := natstest.Start(t, natstest.Options{})
//	cfg := natsq.Config{URL: srv.URL()}
//
// The server listens on 127.0.0.1 on a free port from 20000 to 65535
// outside the range the kernel hands out (Linux's ip_local_port_range;
// where none is outside it, one the kernel picks), and keeps its
// JetStream file store in a temporary directory of the test. Restart
// stops it and starts it again on the same port with the same store, as
// an operator restarting nats-server does: streams, consumers and stored
// messages survive, and clients reconnect. So no connection the kernel
// places can take the port while the server is stopped (one of a port
// the kernel chose could); should another socket hold it, Restart tries
// again for up to 30 s. The server is shut down, and its goroutines
// joined, when the test ends.
//
// The server comes from the official module, github.com/nats-io/nats-server/v2,
// so tests run the same code as production servers, without a binary to
// install.
package natstest
