// Package codec is the envelope encoding of natsq: how the events of a
// batch become one JetStream message and back. Everything about it is here,
// so that a change of the event's field representation touches nothing
// else; natsq puts the data, subject and headers below into messages.
//
// One message, an envelope, carries the events of one publisher's batch,
// up to the queue's envelope_events and envelope_bytes: records that travel
// together pay the per-message costs (a PubAck, the server's store and
// delivery, a consumer ack) once, as a Kafka producer batch or a Flink
// network buffer does.
//
// Data (version 3), with uvarint and varint as encoding/binary writes them:
//
//	0x03                       the version
//	then, until the end of the data, one record per event:
//	  uvarint(seq)             the event's sequence number at its source
//	                           (the record number on its connection, for netio)
//	  uvarint(len) payload     the record as it arrived
//	  uvarint(n)               the number of fields, then n times:
//	    uvarint(len) name      the field's name (a path, as Event.Set takes it)
//	    type                   one byte: stage.ValueType
//	    value                  null: nothing; string, number (json.Number's
//	                           text), json (an object or array as JSON text):
//	                           uvarint(len) bytes; int: varint; float: 8 bytes,
//	                           IEEE 754 little-endian; bool: one byte 0 or 1;
//	                           any (another Go value): its JSON text, and it
//	                           arrives as json
//
// Version 4 is version 3 compressed: 0x04, then the records above (all of
// them, without the version byte) as one S2 block
// (github.com/klauspost/compress/s2, Snappy-compatible framing of a
// block). A queue compresses when its `compress` key says s2, the
// default: JSON records shrink several times, and the server's work
// (copying, storing, hashing and delivering bytes) shrinks with them.
//
// An envelope holds at least one event. On the way back an event's payload
// and text fields refer to the message's data (no copy), as a decoder's
// fields refer to the record it decoded; the envelope's data lives until
// its last event is finished.
//
// Subject: seda.STREAM.N, where N is the number of events in the
// envelope, so that the stream's per-subject message counts add up to the
// events it holds (the queue's depth in events, natsq.Queue.Fill).
//
// Headers (all text), per envelope, not per event:
//
//	Nats-Msg-Id  a unique id per envelope, kept across publish retries, so
//	             that JetStream stores a retried publish once
//	Seda-Trace   "PIPELINE PUBLISHER EVENTS ARRIVED": the publishing
//	             pipeline, its connection's name (pipeline/host/pid), how
//	             many events the envelope holds and when its source read
//	             the earliest of them (Unix ns; 0: unknown)
//	Seda-First-Seq  on an envelope put back into the stream as a fresh
//	             message (a stop cut it short at its max_deliver-th
//	             delivery), its sequence number in the work stream when
//	             it was first stored; its Nats-Msg-Id is then
//	             "requeue-STREAM-SEQ", SEQ the sequence of the message
//	             it replaces
//
// A dead letter is one event (an envelope of one, so that it can be
// published again as it is) or, when the envelope cannot be decoded, the
// message as it was. It carries the envelope's Seda-Trace plus
//
//	Seda-Dead-Reason     why it was given up (the event's last error)
//	Seda-Dead-Class      refused | max_deliver | undecodable
//	Seda-Stream-Seq      its envelope's sequence number in the work stream
//	Seda-Envelope-Index  its place in the envelope (from 0); absent for an
//	                     undecodable message
//	Seda-Delivered       how many times its envelope was delivered
//	Seda-First-Seq       as on its envelope, when it was requeued
package codec
