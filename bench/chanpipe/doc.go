// Package chanpipe is the channel-pipeline baseline of benchmark B3: the
// example pipeline's three stages (TCP lines in, JSON decode, PostgreSQL
// COPY) written the way a Go programmer writes them without the framework:
// a goroutine per connection that reads, frames and decodes, one buffered
// channel to a fixed set of database goroutines that batch (max records,
// linger) and store, and a writer goroutine per connection that sends the
// cumulative acks as batches commit.
//
// The decode and store steps are the project's real handlers (process.json
// and db.postgres), passed in by the caller, so that the benchmark compares
// only what joins them: completion ports, worker pools and the netio.tcp
// source against channels and goroutines.
package chanpipe
