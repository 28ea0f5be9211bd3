// Package netio provides the network sources. netio.tcp is a TCP server
// that frames records out of its connections, numbers them per
// connection, hands them to the next stage as events, and acknowledges
// them to the client once they are finished. netio.udp takes one record
// per datagram (see UDPSource), netio.http NDJSON bodies POSTed to a path
// (see HTTPSource). Register adds the kinds to a stage.Registry. A source
// is built one way, from its kind's stage.Config (NewSource, NewUDPSource,
// NewHTTPSource, which the pipeline calls with the configuration bound to
// the kind's spec, defaults filled in).
//
// Every source counts what /stats shows under "source"
// (stats.Source): connections accepted, closed and refused, protocol
// errors by cause, refused records by error class (stage.ErrorClass),
// bytes read, and records lost without a refusal anyone hears of.
//
// Every source asks the runtime's door (stage.SourceRuntime.Admit) once
// per read, before making events: past the pipeline's memory_limit, or
// while the first queue on the way on (past inline stages) is full under
// `overflow: reject`, netio.tcp nacks the read's records busy (one range
// nack), netio.http answers 503 and netio.udp drops the datagram
// (drops.memory_limit); under memory_limit's
// overflow block the door waits, and the source stops reading meanwhile.
// The bytes of records still being read count as held too: netio.tcp's
// record that outgrows a read (from that read until it is framed or its
// connection goes), which asks the door once then (refused, it is nacked
// busy at once and skipped; admitted, it finishes past the limit), and
// netio.http's body as it is read, let go just before its door.
//
// # The IOCP mapping
//
// The source is built the way a Windows I/O completion port server is:
//
//   - The source owns a completion port (port.Port) and a pool of workers
//     joined to it (the stage's workers and concurrency; its
//     queue.capacity is the port's). queue.overflow: reject is refused:
//     the source always applies backpressure to its sockets, and reject
//     belongs on the stage after it.
//   - Each connection has exactly one read outstanding, as a server keeps
//     one WSARecv pending per socket. The reader first waits for input
//     without a buffer (a one-byte MSG_PEEK on the runtime's poller: the
//     zero-byte-read trick, so idle connections hold no memory), then
//     reads into a pooled buffer of read_buffer bytes owned by the source.
//   - A completed read is posted to the port as a packet: Key is the
//     connection id (the completion key), N the bytes transferred, Value
//     the buffer and connection (the OVERLAPPED), Err io.EOF at the end
//     of input.
//   - A worker takes the packet, frames the bytes with the connection's
//     framer (whose state lives with the connection; since one read is
//     outstanding, a connection's buffers are framed in order), makes one
//     event per record and emits them to the next stage. Only then does
//     the reader issue its next read. A stalled pipeline therefore stops
//     the reads, the kernel's receive buffer fills, and TCP flow control
//     pushes back on the client: the port is the only queue, and it is
//     bounded.
//   - A connection's records read and not yet acked (under ack: none, not
//     yet finished) are bounded by max_unacked: at it the reader issues no
//     read until acks move. One record stuck downstream (a batch being
//     retried) while later ones finish would otherwise let the
//     connection's ack window, its nack reasons and the read buffers its
//     events pin grow without limit; instead TCP pushes back on that
//     client alone. A connection holds at most max_unacked records plus
//     one read's worth.
//   - Acks go straight to the connection's owner, a goroutine per
//     connection that writes what the connection owes, as an IOCP
//     server's write completions are handled per socket. Whoever
//     finishes an event calls Event.Done, which calls the connection's
//     Complete: it records the verdict in the connection's window under
//     its lock and, when the next record to acknowledge is finished, wakes
//     the owner. It never blocks and never waits for room (a database
//     worker blocked on a full netio port while netio workers are
//     blocked on the full database queue would deadlock), and the acks
//     never take room in the port the reads need.
//   - The owner turns the completions into output in order: `nack N
//     reason` for each refused record, then `ack W` for the highest W
//     such that every record up to W is finished. The reasons a
//     window holds are bounded too, to 16 KiB of text: past that a
//     record's nack gives its error class (`nack 7 invalid`), so a client
//     whose records are refused each for a reason of its own cannot make
//     the window hold one per record. A reason's text is let go once the
//     last record refused for it is acked, so a client that always keeps
//     records in flight gets its nacks' texts all its connection's life. A refusal of the busy class is
//     written as the bare word (`nack 7 busy`), the word clients resend
//     on, whatever its text (a forced stop's `stage "store": context
//     canceled` is one). The owner never waits for a client while it makes text: it makes text
//     only while the connection's pending output (the text queued and
//     what the kernel's send buffer has not taken of its current write)
//     is under max_pending_output, never taking it past that. Finished
//     records beyond stay in the connection's window, unacked (so
//     max_unacked bounds them and pauses the reads), and the owner turns
//     them into text after each chunk it writes. One read of tiny bad
//     records can owe megabytes of nacks; the client that reads them gets
//     them all, a bounded piece at a time, each nack before the ack
//     covering it.
//   - A client that stops reading fills its receive buffer and then the
//     server's send buffer, and the owner's write takes nothing. Each
//     write has write_timeout to take something; one that takes nothing
//     that long closes the connection, logged at warn as not reading
//     (connection id, remote address, the bytes of acks pending). A slow
//     reader that takes some of each write is served however slowly.
//
// # Protocol
//
// framing lines: records end with \n, a trailing \r is dropped, empty
// lines are skipped and take no number; an unterminated last line is a
// record if the client shuts its side after it (a reset is no shut: the
// line it cut off is dropped, and the connection closed as failed).
// framing octet-counted:
// RFC 6587 `LEN SP MSG` with LEN a decimal without leading zeros; anything
// else where a length is expected is a protocol error: the record gets
// `nack N bad frame: DETAIL` (what was wrong, e.g. `byte 'a' where a frame
// length digit or space was expected`), the connection reads no more and
// is closed once its earlier records are acknowledged. framing syslog
// chooses per frame, as rsyslog's imtcp and syslog-ng do (RFC 6587
// section 3.4): a frame that starts with a digit is octet-counted, any
// other ends at \n as with lines; so rsyslog's default forwarding
// (`*.* @@host:port`), `logger --tcp` and `logger --octet-count` are all
// read. Digits not followed by a space are no length there: the frame is
// a line (a sender without <PRI> may start one with a date). A connection closed for a protocol error is counted
// (stats.Source.ProtocolErrors, by cause) and logged at warn with its
// remote address and the cause, at most one line a second per stage.
// Records are numbered per connection from 1. A record over max_frame gets
// `nack N too large` and is skipped without being buffered; the connection
// stays usable. It is logged at info, and a frame the end of a
// connection's input cuts short is dropped, counted in
// protocol_errors.truncated_frame and logged at warn, each at
// most one line a second per stage with the running count: a client can
// cause either as often as it likes. A connection over max_conns gets
// `nack 0 too many connections` and is closed, every one however many come
// at once (the line is written before anything else is done with it; over
// TLS it needs the handshake first, run in one of the 64 slots of
// lingering refusals and bounded by the handshake's ten seconds, and a
// refused client that finds every slot taken is closed before its
// handshake, without the line), unless a connection has been idle for idle_evict (sending nothing, owed
// nothing): then the one idle longest is closed to make room, told
// `nack 0 idle for D at max_conns: closed to make room`, so idle sockets
// cannot lock new clients out for idle_timeout. With ack: none nothing is
// written; a record refused downstream is logged at warn instead
// (connection id, remote address, record number, reason), at most one line
// a second per stage, each with the running count of refusals.
//
// # Lifecycle
//
// Start binds the listener. StopInput closes it and stops every reader
// (a read deadline in the past); what was read is framed and emitted. A
// record the client had only partly sent is dropped unacknowledged, for
// the client to send again.
// Drain waits until each connection owes nothing, then half-closes it and
// discards its input until the client closes or drain_linger passes:
// closing a socket with unread input makes the kernel send a reset, which
// destroys acks still in flight. What it discards counts in bytes_in.
// Under ack: none there are no acks to protect, and lingering would only
// take in and throw away what a client that keeps sending sent meanwhile,
// its writes succeeding: the connection is closed at once instead, once
// the input that has already arrived is read (without waiting, for
// drain_linger at most; outside Unix it lingers as under ack: commit), so
// the client's next writes fail and a sender with a queue of its own
// (rsyslog) keeps what it had not sent. The records in what was read
// (framed on from where the reads stopped) are lost, and the client is
// never told, so each is counted as an event refused (in /stats' in and
// errors, and lost in the drain report) and the connection logs their
// number at warn. Close closes everything and joins every goroutine.
//
// # netio.udp
//
// One datagram is one record; a trailing \n or \r\n is dropped and an
// empty datagram is no record. Nothing can be acknowledged, so it behaves
// as ack: none: a record refused downstream is logged at warn (the
// sender's address, record number, reason), at most one line a second per
// stage with the running count of refusals; it is counted as a nack by
// class, except that one refused busy (a full queue further on under
// overflow: reject) is counted with the datagrams lost to a full queue,
// drops.queue_full. UDP has no backpressure: a reader that waited for room
// would only move the loss into the kernel, so the reader never waits. A
// datagram that finds the source's queue full is dropped, whatever
// queue.overflow says, and counted (drops.queue_full), as is one over
// max_frame (drops.oversized) and, on Linux, one the kernel dropped
// because the socket's buffer was full (drops.socket_overrun, from
// SO_RXQ_OVFL; socket_buffer sets SO_RCVBUF). StopInput closes the socket
// and hands on what was read; Drain waits until it is finished.
//
// # netio.http
//
// Clients POST to path a body of NDJSON records, one per line, framed as
// framing lines frames a connection: a trailing \r is dropped, and empty
// lines are skipped and take no number, so the records of a body are
// numbered from 1 over its non-empty lines. Content-Encoding: gzip is
// accepted. The body is bounded by max_body both as sent and once
// decoded, so a small compressed body cannot unfold into a large one. The
// answer comes once every record of the body is finished, in JSON, also
// to a client that half-closed its side after its request (nc -N):
//
//   - 200 {"acked":N}: every record was acked;
//   - 422 {"acked":N,"nacked":[{"record":K,"reason":"..."}]}: some were
//     refused (a record over max_frame is refused "too large"); a request
//     keeps one copy of each of up to 64 distinct reasons, and past them
//     a record refused for a new one is given its error class (`invalid`),
//     as netio.tcp does, so the reasons a body holds stay bounded;
//   - 503 with Retry-After: busy: max_requests are being served, admission
//     control admits fewer records, the pipeline holds its memory_limit,
//     or a record was refused busy (a full
//     queue under overflow: reject; the body lists which), or the source is
//     stopping. A client sends the body again; records acked in it are then
//     stored twice unless the sink ignores duplicates (db.postgres
//     conflict: ignore with a key);
//   - 413: the body is over max_body, and none of its records was taken;
//   - 401: token is set and the request lacks `Authorization: Bearer
//     TOKEN` (a token key given but empty, as an unset ${VAR} leaves it,
//     is a load error rather than no token); 404 for another path, 405 for another method, 415 for another
//     Content-Encoding, 400 for a body that cannot be read. The token is
//     checked before the method (a GET without it gets 401). A 401, 404
//     or 405 closes the connection.
//
// The source holds at most max_conns connections at once (1024 by
// default, as netio.tcp); past it a new connection waits, unaccepted, in
// the kernel's backlog until one closes, so clients that open connections
// and sit idle cannot take every file descriptor the process has.
//
// Refused requests (401, 413, 400, 415) and failed TLS handshakes count as
// protocol errors, logged at warn with the client's address at most once a
// second; so does a 503 over max_requests, under the cause max_requests,
// once per request (its body is not read, so its records are not counted
// in nacks.busy). A 503 because the source is stopping, before the body
// is read or as its reading is cut off, is counted alike, under the cause
// shutting_down, but not logged: a stop refusing requests is expected;
// one whose body was read as StopInput came has its records counted in
// nacks.busy instead, as a body admission control refuses has. A
// request holds its body in memory, and its slot of
// max_requests, until its records are finished (also when its client has
// gone away), so max_requests times max_body bounds the source's memory
// (a body's buffer may reach twice max_body as it grows; besides it, a
// request keeps only each refused record's number and reason); its headers
// must arrive within ten seconds, each next piece of its body within ten
// seconds of the last (a body that stalls gets 408, its slot freed) and
// the whole request within five minutes. StopInput closes the listener,
// ends keep-alive, cuts off requests still reading their bodies (503:
// nothing of them is taken, and their clients send them again) and
// answers 503 to requests still coming; Drain waits until every request
// taken is answered. A forced stop (Close once Drain's deadline has
// passed) answers the requests still waiting for their records 503 with
// Retry-After (the records are left for their clients to resend, and
// those not finished yet are counted in nacks.busy, once), and gives
// those answers up to a second to be written before it closes
// every connection.
//
// # TLS
//
// netio.tcp and netio.http take tls: {cert, key, client_ca}: TLS 1.2 or
// later; with client_ca the TLS is mutual, and a client without a
// certificate one of those CAs signed is refused in the handshake
// (counted in connections.refused and protocol_errors.tls_handshake). The
// handshake runs in the connection's own goroutine, bounded by ten
// seconds, never in the accept loop. The files are loaded again on SIGHUP
// and when their content changes (looked at every two
// seconds); new handshakes get the new certificate, connections open keep
// theirs, and files that do not load keep the previous certificate, with
// a warning, and make the source's health degraded, naming the files and
// the error, until files that load replace them (a restart with them
// would fail to start). A certificate expired or not yet valid does not load: Start
// fails with its dates, and a reload keeps the previous one (one not yet
// valid is tried again once it is valid, without another change). A
// minute of clock skew is allowed on not_before: a certificate valid from
// a few seconds from now, as an issuer whose clock runs ahead dates it,
// loads at Start and on reload. /stats
// shows the certificate served (source.tls: subject, not_before,
// not_after; /metrics its not_after as
// pipeline_source_tls_cert_not_after_seconds), and the source's health is degraded from a week before it
// expires, or for the last third of a shorter life (a certificate valid
// for 24 hours from its last 8 hours), so that short-lived certificates
// read ok while fresh. Over TLS a reader holds its read buffer while the connection
// is idle (the socket being readable says nothing of what the TLS layer
// holds decrypted).
package netio
