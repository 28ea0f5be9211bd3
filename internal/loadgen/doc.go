// Package loadgen is the load client behind `pipectl load` and benchmarks
// B3 and B4: it drives a server speaking the netio.tcp line protocol
// (records separated by "\n", replies "ack N", "nack N reason" and the
// range "nack A-B reason", each of whose records counts as nacked) over
// many connections, with a window of unacknowledged records per connection
// and an optional rate limit, and measures the latency of every record
// from the moment it is written to the moment the ack covering it is read.
//
// Records are JSON objects {"id":N,"host":...,"level":...,"msg":...} of
// about 90 bytes. Connection c of C sends ids StartID+c, StartID+c+C,
// StartID+c+2C, ... so that ids are unique across connections and the ids
// acknowledged by a run can be checked against the table afterwards.
package loadgen
