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
// (its replicas and limits from the stage's queue keys), taking subject
// seda.STREAM, and a dead-letter stream STREAM_dead (limits retention,
// kept dead_max_age). Every process running the stage pulls from one
// durable consumer named after the stage (explicit acks, ack_wait), so
// several processes share the work: JetStream hands each message to one
// of them. Streams and the consumer are created (or updated to the file's
// limits) by whichever process starts first.
//
// # Publishing: what an ack means now
//
// In a process that routes events to the stage but does not run it, the
// pipeline puts a stand-in stage with the stage's name and queue settings
// whose handler (Queue.Publisher) publishes each event of its batches
// asynchronously and finishes the event when JetStream answers with a
// PubAck. A netio client's `ack N` then means "record N is stored in
// JetStream": written to the stream's file store on the server (and, with
// replicas, on a majority of them), which survives the death of every
// pipeline process and a restart of the server. It does not mean
// committed to PostgreSQL: that happens later, in a back process. The
// server writes its store to the disk as its sync_interval says (2 minutes
// by default); a machine that loses power can lose what was not yet
// synced unless the server runs with `sync_interval: always` or the stream
// has replicas on other machines.
//
// A publish that gets no PubAck (a timeout, a lost connection, a server
// restarting) is retried, with the same Nats-Msg-Id, until it is stored or
// the pipeline is stopped for good; the stream's duplicate window
// (`duplicates`) stores a retried message once. A stream at its limits
// (max_msgs or max_bytes, discard new) is a full queue: under overflow
// block the publisher retries with backoff while its local queue fills
// behind it and the sources stop reading (TCP pushes back on the
// clients); under overflow reject the event is finished with
// stage.ErrBusy (netio: `nack N busy`).
//
// # Consuming: acks after the stage finishes
//
// In a process that runs the stage, a source (Queue.Consumer) pulls
// messages and posts each as an event to the stage's local port; the
// stage runs as it would in one process. The event's Origin is the
// message itself: when the stage finishes the event (db.postgres: after
// the commit), Done settles the message, as a completion packet settles a
// read in an IOCP server:
//   - finished without error: acked; JetStream removes it from the stream;
//   - failed for a reason that may pass (busy, the database away, a
//     panic): NAKed with a delay of backoff, doubled per delivery up to
//     max_backoff, so that it is delivered again, to any process;
//   - refused for good (an error of class invalid, too_large or database,
//     see stage.ErrorClass), failed for the max_deliver-th time, delivered
//     more than max_deliver times without being finished (the processes
//     that took it died), or not in this package's encoding: published to
//     STREAM_dead with its reason (headers Seda-Dead-Reason and
//     Seda-Dead-Class), and terminated in the work stream only once the
//     dead-letter stream has it. The client was acked long before, so this
//     is where such failures surface: counted in /stats (nats.dead) and
//     /metrics (pipeline_stage_nats_dead_lettered_total).
//
// A process that dies leaves its unacked messages to JetStream, which
// delivers them again after ack_wait: a record may be stored twice, so the
// store must be idempotent (db.postgres with a key and conflict: ignore).
// Delivery is at least once; with an idempotent store, every record a
// client saw acked is stored exactly once.
//
// A drain (SIGTERM) stops pulling, hands the messages already received to
// the stage, lets the stage finish every event and acks them before the
// process exits; messages still unsettled when the drain deadline passes
// are left to redelivery.
//
// # Encoding
//
// A message carries the event's payload and its decoded fields (typed, in
// a small binary form), plus headers for tracing (which pipeline and
// process published it, which record, when it was read); encoding.go
// documents the layout, and is the only place that knows it.
//
// # Figures
//
// Queue.Fill puts the queue into a stage's /stats entry (the stand-in's
// publisher and the consumer call it as their Figures, see stage.Kind): the consumer's
// pending plus ack-pending counts (the server's, the same in every
// process) as the queue's depth, the stream's max_msgs as its capacity,
// and a nats object with this process's counters (published, acked,
// NAKed, dead-lettered by reason). Where the stage runs elsewhere its
// entry is marked remote.
package natsq
