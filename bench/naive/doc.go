// Package naive is the naive-server baseline of benchmark B3: what a
// server without staging looks like. It speaks the netio.tcp line protocol
// (records separated by "\n", replies "ack N" and "nack N reason"), runs
// one goroutine per connection, and for each record decodes the JSON,
// runs one autocommitted INSERT through a pgxpool and writes the ack
// before reading the next record.
package naive
