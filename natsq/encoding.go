package natsq

// This file holds the envelope encoding: how a batch's events become one
// JetStream message and back (described at the constants below).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/stagedserver/seda/stage"
)

// The envelope encoding. Everything about how events become a JetStream
// message and back is in this file, so that a change of the event's field
// representation touches nothing else.
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
// events it holds (the queue's depth in events, see Queue.Fill).
//
// Headers (all text), per envelope, not per event:
//
//	Nats-Msg-Id  a unique id per envelope, kept across publish retries, so
//	             that JetStream stores a retried publish once
//	Seda-Trace   "PIPELINE PUBLISHER EVENTS ARRIVED": the publishing
//	             pipeline, its connection's name (pipeline/host/pid), how
//	             many events the envelope holds and when its source read
//	             the earliest of them (Unix ns; 0: unknown)
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
const (
	encodingVersion = 3
	compressedS2    = 4

	hdrTrace     = "Seda-Trace"
	hdrReason    = "Seda-Dead-Reason"
	hdrClass     = "Seda-Dead-Class"
	hdrStreamSeq = "Seda-Stream-Seq"
	hdrIndex     = "Seda-Envelope-Index"
	hdrDelivered = "Seda-Delivered"
)

// errUndecodable marks a message that is not in this encoding.
var errUndecodable = errors.New("undecodable message")

// envelopeBuilder packs events into envelopes. Its zero value is not
// ready: see newEnvelopeBuilder. It is not safe for concurrent use.
type envelopeBuilder struct {
	maxEvents, maxBytes int
	compress            bool // S2, version 4
	bufs                *bufPool

	data    []byte
	events  []*stage.Event
	arrived int64 // earliest arrival of the events, Unix ns; 0: none known
}

// newEnvelopeBuilder returns a builder of envelopes of at most maxEvents
// events and maxBytes bytes (see add), compressed or not; their data come
// from bufs, which may be nil.
func newEnvelopeBuilder(maxEvents, maxBytes int, compress bool, bufs *bufPool) *envelopeBuilder {
	return &envelopeBuilder{maxEvents: maxEvents, maxBytes: maxBytes, compress: compress, bufs: bufs}
}

// add appends ev to the envelope being built. It returns false, leaving
// the envelope as it was, when ev does not fit: the envelope holds
// maxEvents events already, or ev would take it past maxBytes (an envelope
// of one event may be larger: the server's max_payload is its bound). An
// event whose fields cannot be encoded is an error and is not added.
func (b *envelopeBuilder) add(ev *stage.Event) (bool, error) {
	if len(b.events) >= b.maxEvents {
		return false, nil
	}
	if len(b.data) == 0 {
		b.data = append(b.bufs.get(b.maxBytes + 4<<10)[:0], encodingVersion)
	}
	start := len(b.data)
	var err error
	b.data, err = appendEvent(b.data, ev)
	if err != nil {
		b.data = b.data[:start]
		return true, err
	}
	if len(b.data) > b.maxBytes && len(b.events) > 0 {
		b.data = b.data[:start]
		return false, nil
	}
	b.events = append(b.events, ev)
	if t := ev.Arrived(); !t.IsZero() {
		if ns := t.UnixNano(); b.arrived == 0 || ns < b.arrived {
			b.arrived = ns
		}
	}
	return true, nil
}

// empty reports whether the envelope being built holds no event.
func (b *envelopeBuilder) empty() bool { return len(b.events) == 0 }

// take returns the message of the envelope built so far, with its events,
// and starts a new one. stream is the work stream; id the envelope's
// Nats-Msg-Id. The message's data may be given back to the builder's
// bufPool once the message is no longer needed.
func (b *envelopeBuilder) take(stream, pipeline, from, id string) (*nats.Msg, []*stage.Event) {
	n := strconv.Itoa(len(b.events))
	trace := pipeline + " " + from + " " + n + " " + strconv.FormatInt(b.arrived, 10)
	data := b.data
	if b.compress {
		out := b.bufs.get(1 + s2.MaxEncodedLen(len(data)-1))
		out[0] = compressedS2
		out = out[:1+len(s2.Encode(out[1:cap(out)], data[1:]))]
		b.bufs.put(data)
		data = out
	}
	m := &nats.Msg{Subject: subject(stream) + "." + n, Data: data, Header: nats.Header{nats.MsgIdHdr: {id}, hdrTrace: {trace}}}
	evs := b.events
	b.data, b.events, b.arrived = nil, nil, 0
	return m, evs
}

// appendEvent appends one event's record to an envelope's data.
func appendEvent(data []byte, ev *stage.Event) ([]byte, error) {
	data = binary.AppendUvarint(data, ev.Seq)
	data = appendBytes(data, ev.Payload)
	data = binary.AppendUvarint(data, uint64(ev.NumFields()))
	for name, v := range ev.Fields() {
		data = appendBytes(data, []byte(name))
		t := v.Type()
		switch t {
		case stage.ValueNull:
			data = append(data, byte(t))
		case stage.ValueString, stage.ValueNumber, stage.ValueJSON:
			data = append(data, byte(t))
			data = appendBytes(data, v.Bytes())
		case stage.ValueInt:
			data = append(data, byte(t))
			data = binary.AppendVarint(data, v.Int())
		case stage.ValueFloat:
			data = append(data, byte(t))
			data = binary.LittleEndian.AppendUint64(data, math.Float64bits(v.Float()))
		case stage.ValueBool:
			b := byte(0)
			if v.Bool() {
				b = 1
			}
			data = append(data, byte(t), b)
		default: // ValueAny: its JSON text
			text, err := v.MarshalJSON()
			if err != nil {
				return data, fmt.Errorf("encode field %q: %w", name, err)
			}
			data = append(data, byte(stage.ValueJSON))
			data = appendBytes(data, text)
		}
	}
	return data, nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// openEnvelope decompresses an envelope if need be, checks its framing,
// and returns its data in version 3 (data itself, or a new buffer) with
// where each of its events' records starts in it, the data's length last:
// event i is plain[at[i]:at[i+1]]. A message that is not an envelope of
// either version, holds no event, or whose records or fields are cut or
// of an unknown type is errUndecodable.
//
// A new buffer comes from bufs (which may be nil), and may be given back
// once no event refers to it.
func openEnvelope(data []byte, at []int, bufs *bufPool) (plain []byte, _ []int, err error) {
	plain = data
	if len(data) > 0 && data[0] == compressedS2 {
		n, err := s2.DecodedLen(data[1:])
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", errUndecodable, err)
		}
		plain = bufs.get(n + 1)[:n+1]
		plain[0] = encodingVersion
		if _, err := s2.Decode(plain[1:], data[1:]); err != nil {
			bufs.put(plain)
			return nil, nil, fmt.Errorf("%w: %v", errUndecodable, err)
		}
	}
	at, err = splitEnvelope(plain, at)
	return plain, at, err
}

// splitEnvelope is openEnvelope for data in version 3.
func splitEnvelope(data []byte, at []int) ([]int, error) {
	if len(data) == 0 || data[0] != encodingVersion {
		v := -1
		if len(data) > 0 {
			v = int(data[0])
		}
		return nil, fmt.Errorf("%w: encoding version %d, want %d", errUndecodable, v, encodingVersion)
	}
	at = at[:0]
	for i := 1; i < len(data); {
		at = append(at, i)
		n, err := skipRecord(data[i:])
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: %v", errUndecodable, len(at)-1, err)
		}
		i += n
	}
	if len(at) == 0 {
		return nil, fmt.Errorf("%w: an envelope without events", errUndecodable)
	}
	return append(at, len(data)), nil
}

// skipRecord returns the length of the event's record at the start of b.
func skipRecord(b []byte) (int, error) {
	_, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, errors.New("bad sequence number")
	}
	rest := b[k:]
	_, rest, ok := readBytes(rest)
	if !ok {
		return 0, errors.New("bad payload length")
	}
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)) {
		return 0, errors.New("bad field count")
	}
	rest = rest[k:]
	for i := uint64(0); i < n; i++ {
		var ok bool
		if _, rest, ok = readBytes(rest); !ok || len(rest) == 0 {
			return 0, fmt.Errorf("field %d: bad name", i)
		}
		t := stage.ValueType(rest[0])
		rest = rest[1:]
		switch t {
		case stage.ValueNull:
		case stage.ValueString, stage.ValueNumber, stage.ValueJSON:
			if _, rest, ok = readBytes(rest); !ok {
				return 0, fmt.Errorf("field %d: bad length", i)
			}
		case stage.ValueInt:
			_, m := binary.Varint(rest)
			if m <= 0 {
				return 0, fmt.Errorf("field %d: bad integer", i)
			}
			rest = rest[m:]
		case stage.ValueFloat:
			if len(rest) < 8 {
				return 0, fmt.Errorf("field %d: short float", i)
			}
			rest = rest[8:]
		case stage.ValueBool:
			if len(rest) < 1 {
				return 0, fmt.Errorf("field %d: short bool", i)
			}
			rest = rest[1:]
		default:
			return 0, fmt.Errorf("field %d: unknown type %d", i, t)
		}
	}
	return len(b) - len(rest), nil
}

// recordHead returns the sequence number and payload of a record that
// splitEnvelope has checked, and the encoded fields after them. Nothing is
// copied.
func recordHead(rec []byte) (seq uint64, payload, fields []byte) {
	seq, k := binary.Uvarint(rec)
	payload, fields, _ = readBytes(rec[k:])
	return seq, payload[:len(payload):len(payload)], fields
}

// decodeFields sets the fields of a record that splitEnvelope has checked
// on ev. names interns field names, so that the few names a stream carries
// are allocated once; it is not safe for concurrent use.
func decodeFields(ev *stage.Event, fields []byte, names map[string]string) {
	n, k := binary.Uvarint(fields)
	b := fields[k:]
	for range n {
		nb, rest, _ := readBytes(b)
		name, seen := names[string(nb)]
		if !seen {
			name = string(nb)
			if len(names) < 1024 {
				names[name] = name
			}
		}
		t, b2 := stage.ValueType(rest[0]), rest[1:]
		var v stage.Value
		switch t {
		case stage.ValueNull:
			v = stage.NullValue()
		case stage.ValueString, stage.ValueNumber, stage.ValueJSON:
			var text []byte
			text, b2, _ = readBytes(b2)
			switch t {
			case stage.ValueString:
				v = stage.BytesValue(text)
			case stage.ValueNumber:
				v = stage.NumberValue(text)
			default:
				v = stage.JSONValue(text)
			}
		case stage.ValueInt:
			x, m := binary.Varint(b2)
			v, b2 = stage.IntValue(x), b2[m:]
		case stage.ValueFloat:
			v, b2 = stage.FloatValue(math.Float64frombits(binary.LittleEndian.Uint64(b2))), b2[8:]
		case stage.ValueBool:
			v, b2 = stage.BoolValue(b2[0] != 0), b2[1:]
		}
		ev.SetValue(name, v)
		b = b2
	}
}

// readBytes reads uvarint(len) bytes from b.
func readBytes(b []byte) (v, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// eventsOn returns how many events the envelopes on subj (one of the
// work stream's, seda.STREAM.N) hold each; 0 for any other subject.
func eventsOn(subj string) uint64 {
	i := strings.LastIndexByte(subj, '.')
	n, err := strconv.ParseUint(subj[i+1:], 10, 32)
	if i < 0 || err != nil {
		return 0
	}
	return n
}

// bufPool keeps envelopes' buffers for reuse: an envelope is some
// hundred kilobytes, and allocating each anew costs the garbage collector
// and the kernel (the runtime gives freed pages back) more than the rest
// of the hop. A nil *bufPool allocates. Safe for concurrent use.
type bufPool struct{ p sync.Pool }

// maxPooled is the largest buffer kept.
const maxPooled = 4 << 20

// get returns a buffer of length n.
func (b *bufPool) get(n int) []byte {
	if b != nil {
		if v, ok := b.p.Get().(*[]byte); ok && cap(*v) >= n {
			return (*v)[:n]
		}
	}
	// Rounded up to a power of two, so that envelopes of about the same
	// size reuse each other's buffers.
	return make([]byte, n, 1<<bits.Len(uint(max(n, 1<<10)-1)))
}

// put gives buf back; nothing may refer to it any more.
func (b *bufPool) put(buf []byte) {
	if b != nil && cap(buf) <= maxPooled && cap(buf) > 0 {
		b.p.Put(&buf)
	}
}

// deadData is the data of the dead letter of one event: an envelope of
// that event's record alone.
func deadData(rec []byte) []byte {
	return append([]byte{encodingVersion}, rec...)
}

// envTrace is what an envelope's Seda-Trace header says.
type envTrace struct {
	Pipeline  string    // the publishing pipeline
	Publisher string    // its connection's name
	Events    int       // events in the envelope
	Arrived   time.Time // when the earliest was read; zero: unknown
}

// traceOf reads the Seda-Trace header; ok is false when there is none or
// it is not in this encoding.
func traceOf(h nats.Header) (tr envTrace, ok bool) {
	f := strings.Fields(h.Get(hdrTrace))
	if len(f) != 4 {
		return envTrace{}, false
	}
	n, err1 := strconv.Atoi(f[2])
	ns, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return envTrace{}, false
	}
	tr = envTrace{Pipeline: f[0], Publisher: f[1], Events: n}
	if ns > 0 {
		tr.Arrived = time.Unix(0, ns)
	}
	return tr, true
}
