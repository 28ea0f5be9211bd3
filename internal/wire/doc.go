// Package wire is a client for the netio.tcp wire protocol, used by tests,
// `pipectl load`, the benchmarks and the reliability tests.
//
// A Client numbers the records it sends from 1, as the server does, and
// reads the server's replies in a goroutine of its own: `ack N` (every
// record up to N is finished), `nack N reason` (record N was refused) and
// `nack A-B reason` (records A to B were refused, for one reason). Acked
// returns the cumulative ack, Nacked how many records were refused, Wait
// waits until every record sent is settled (acked, or nacked when the
// server gave up on the connection), and a reply callback sees each reply
// as it arrives (a range nack is one Reply). A line the protocol does
// not allow (a malformed reply, an ack going backwards or beyond what was
// sent, a line too long) ends the client with an error saying which line
// and why.
package wire
