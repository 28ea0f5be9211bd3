// Package natsq puts a stage's queue on NATS JetStream, so that one
// pipeline runs across processes and machines: front processes run the
// network stages, back processes the database writers, and a JetStream
// stream stands between them where a completion port would be. It is what
// `queue: {transport: nats, stream: NAME}` in a pipeline file means:
// Register registers it in a stage.Registry as a queue transport (the
// pipeline package knows none by name; pipectl links this one in, as it
// links the stage families), and `pipectl run --stages` picks which
// stages a process runs.
//
// # The stream
//
// Each nats queue is a stream with work-queue retention and file storage
// (its replicas and limits from the stage's queue keys), taking subjects
// seda.STREAM.N (an envelope of N events; seda.STREAM too, for messages
// of older versions), and a dead-letter stream STREAM_dead (limits
// retention, kept dead_max_age, at most dead_max_bytes: past them the
// oldest dead letters are dropped). Every process running the stage pulls
// from one durable consumer named after the stage (explicit acks,
// ack_wait, at most max_ack_pending envelopes unacked), so several
// processes share the work: JetStream hands each envelope to one of them. Streams and the consumer are created (or updated to the file's
// limits) by whichever process starts first.
//
// # Envelopes
//
// A message carries many events: an envelope. The stand-in packs the
// events of each batch it handles into envelopes of at most
// envelope_events events and envelope_bytes bytes (1024 and 256 KiB by
// default, chosen by measurement: see docs/BENCHMARKS.md, B7), compressed
// with S2 unless `compress: none`, so that a PubAck, the server's store and
// delivery, and a consumer ack are paid once per envelope, as a Kafka
// producer batch or a Flink network buffer pays them once per buffer. Under
// load an envelope holds the stage's batch (about 900 events in B7); with
// one record now and then, it holds that one record and nothing waits.
// Package natsq/internal/codec documents the layout, and is the only place
// that knows it;
// tracing (which pipeline and process published it, how many events, when
// the earliest was read) travels in one header per envelope.
//
// # Publishing: what an ack means now
//
// In a process that routes events to the stage but does not run it, the
// pipeline puts a stand-in stage with the stage's name and queue settings
// whose handler (Queue.Publisher) publishes the envelopes of its batches
// asynchronously, at most 256 PubAcks in flight in the process, and
// finishes an envelope's events when JetStream answers with its PubAck. A
// netio client's `ack N` then means "record N is stored in JetStream":
// written to the stream's file store on the server (and, with replicas,
// on a majority of them), which survives the death of every pipeline
// process and a restart of the server. It does not mean committed to
// PostgreSQL: that happens later, in a back process. The server writes
// its store to the disk as its sync_interval says (2 minutes by default);
// a machine that loses power can lose what was not yet synced unless the
// server runs with `sync_interval: always` or the stream has replicas on
// other machines. A process killed with SIGKILL loses nothing the server
// acknowledged: the operating system holds the writes.
//
// An envelope that gets no PubAck (a timeout, a lost connection, a server
// restarting) is published again, with the same Nats-Msg-Id, until it is
// stored or the pipeline is stopped for good; the stream's duplicate
// window (`duplicates`) stores a retried envelope once. A stream at its
// limits (max_msgs, which counts envelopes, or max_bytes; discard new) is
// a full queue: under overflow block the publisher retries with backoff
// while its local queue fills behind it and the sources stop reading (TCP
// pushes back on the clients); under overflow reject the envelope's events
// are finished with stage.ErrBusy (netio: `nack N busy`). Either way
// /stats counts the envelope's events once in nats.full, however often
// they are tried (each try is in nats.publish_retries): under reject they
// are the stage's rejections, under block the events the full stream held
// back.
//
// Fast batch publishing (ADR-50, `allow_batched` streams, nats-server
// 2.14 and later, so v2.15.2 has it) acks a batch of messages once; it is
// not used: nats.go v1.55.0 has no client for it (only the stream
// setting; the publisher lives in orbit.go's jetstreamext), and an
// envelope already pays one PubAck for hundreds of events.
//
// # Consuming: acks after the stage finishes
//
// In a process that runs the stage, a source (Queue.Consumer) pulls
// envelopes (a few ahead) and posts their events to the stage's local
// port, many envelopes' worth at a time, so that the stage's batches (the
// database's statements) are as large as in one process; the stage runs
// as it would in one process. Each event's Origin is its envelope: when
// the stage finishes the event (db.postgres: after the commit), Done
// counts it against the envelope, as a completion packet settles a read
// in an IOCP server, and when the last is finished the envelope is
// settled:
//   - every event finished without error (or refused and dead-lettered,
//     below): acked; JetStream removes it from the stream;
//   - an event failed for a reason that may pass (busy, the database away,
//     a panic): the whole envelope is NAKed with a delay of backoff,
//     doubled per delivery up to max_backoff, and delivered again, to any
//     process, the events already stored included. Whole-envelope
//     redelivery was chosen over republishing the failed events: it keeps
//     one message per envelope from publish to ack (no second publish to
//     lose or duplicate), and the repeats cost nothing with the store the
//     package requires anyway, an idempotent one (a key and conflict:
//     ignore); a transient failure usually fails the whole batch anyway;
//   - an event refused for good (an error of class invalid, too_large or
//     database, see stage.ErrorClass), or failing at the max_deliver-th
//     delivery, is published to STREAM_dead on its own (an envelope of
//     that one event) with its reason (headers Seda-Dead-Reason, cut at
//     1 KiB, Seda-Dead-Class, Seda-Envelope-Index; a dead letter that
//     would pass max_payload has its data cut, and Seda-Dead-Truncated
//     gives its length before), before its envelope is acked
//     or NAKed; its dead-letter id (stream sequence and index) stores it
//     once however often its envelope comes back;
//   - an envelope delivered more than max_deliver times without being
//     settled (the processes that took it died) has each of its events
//     dead-lettered, and one not in this package's encoding (or of more
//     events than envelope_events and than 65,536: more than a publisher
//     puts in one) goes to STREAM_dead whole, then is terminated.
//
// The client was acked long before, so dead letters are where such
// failures surface: counted in /stats (nats.dead) and /metrics
// (pipeline_stage_nats_dead_lettered_total).
//
// While an envelope's events wait in the stage (a slow or absent
// database), the consumer sends InProgress for it every third of ack_wait,
// so that JetStream does not deliver it again to another process
// meanwhile. A process that dies stops sending; JetStream delivers its
// envelopes again after ack_wait: a record may be stored twice, so the
// store must be idempotent (db.postgres with a key and conflict: ignore).
// Delivery is at least once; with an idempotent store, every record a
// client saw acked is stored exactly once.
//
// A drain (SIGTERM) stops pulling, hands the events already received to
// the stage, lets the stage finish every event and settles their
// envelopes before the process exits; envelopes still unsettled when the
// drain deadline passes are left to redelivery. An event the stop itself
// fails (context.Canceled once phase two cancels the stage, or the
// consumer closing) is not dead-lettered for that error, whatever its
// delivery: its envelope is NAKed. JetStream counts the NAK as a delivery
// (a NAK cannot say why), so an envelope cut short at its max_deliver-th
// delivery is instead requeued: published again to the work stream as a
// fresh message, whose deliveries count from one (the same subject and
// data, its Seda-Trace, Seda-First-Seq, its first stream sequence, on
// which its dead letters' ids key, and a Nats-Msg-Id of its own, which
// the duplicate window does not take for the original's), and the
// original acked once the copy is stored. A publish that gets no answer
// in 5 s is asked once more under the same id (a stream that has the copy
// answers it as a duplicate). When the stream refuses the copy (at
// max_msgs or max_bytes: the original still takes its room), neither try
// is answered, or the connection is closing, the envelope is NAKed as
// before, and its next delivery dead-letters it; so is one some of whose
// events were dead-lettered (a copy would run them again). Should a copy
// stored unanswered, or the original's lost ack, leave both in the
// stream, both come back: the original, dead-lettered, and the copy,
// stored. Requeued envelopes are counted in
// /stats (nats.envelopes_requeued) and /metrics
// (pipeline_stage_nats_envelopes_requeued_total). A process that dies requeues nothing:
// the deliveries of an envelope that kills every process taking it are
// counted, and it ends in STREAM_dead.
//
// # A durable queue in one process
//
// `nats: {embedded: {store_dir: DIR}}` runs nats-server (its Go module)
// inside the process, with its JetStream file store in DIR, connected
// in-process; it opens no port unless `listen: HOST:PORT` is given, and
// then other processes may join it as they would an external server,
// giving the `token` (or `user` and `password`) it is configured with,
// which every connection must give; a listen address off loopback needs
// one. `creds`, `nkey` and `tls` are refused with it. One
// `pipectl run` with every stage and `queue: {transport: nats, stream:
// NAME}` on its store then has a durable queue before the store, as the
// OpenTelemetry Collector's persistent queue or Vector's disk buffer: the
// stand-in acks records into the stream while PostgreSQL is down, they
// survive a kill -9 of the process, and the consumer stores them when the
// database returns or the process starts again on DIR; the backlog is the
// store's depth in /stats. DIR is locked against a second process.
//
// # Figures
//
// Queue.Fill puts the queue into a stage's /stats entry (the stand-in's
// publisher and the consumer call it as their Figures, see stage.Kind):
// the events the stream holds (its envelopes not yet acked, from the
// envelopes' subjects; the server's figures, the same in every process)
// as the queue's depth, and on a publishing process also those waiting
// there to be published (the stand-in's local queue, and envelopes not
// yet PubAcked), with their bytes as the queue's bytes; as its capacity
// the stream's max_msgs or max_bytes, whichever is reached first at the
// envelopes' present size and bytes (a stand-in adds its local queue's
// capacity, and a publishing process the events in envelopes not yet
// PubAcked, which the depth counts too: the depth reaches the capacity
// when the stream and the local queue are full, and does not pass it);
// and a nats object with this process's counters
// (published, refused by a full stream, taken, acked, NAKed: events;
// dead-lettered: events, by reason; requeued: envelopes). The server's pending and ack-pending counts there are
// envelopes. Where the stage runs elsewhere its
// entry is marked remote.
package natsq
