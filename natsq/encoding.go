package natsq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stagedserver/seda/stage"
)

// The message encoding. Everything about how an event becomes a JetStream
// message and back is in this file, so that a change of the event's field
// representation touches nothing else.
//
// Data (version 2), with uvarint and varint as encoding/binary writes them:
//
//	0x02                       the version
//	uvarint(len) payload       the record as it arrived
//	uvarint(n)                 the number of fields, then n times:
//	  uvarint(len) name        the field's name (a path, as Event.Set takes it)
//	  type                     one byte: stage.ValueType
//	  value                    null: nothing; string, number (json.Number's
//	                           text), json (an object or array as JSON text):
//	                           uvarint(len) bytes; int: varint; float: 8 bytes,
//	                           IEEE 754 little-endian; bool: one byte 0 or 1;
//	                           any (another Go value): its JSON text, and it
//	                           arrives as json
//
// On the way back a field's text refers to the message's data (no copy),
// as a decoder's fields refer to the record it decoded.
//
// Headers (all text):
//
//	Nats-Msg-Id  a unique id per event, kept across publish retries, so
//	             that JetStream stores a retried publish once
//	Seda-Trace   "PIPELINE PUBLISHER SEQ ARRIVED": the publishing
//	             pipeline, its connection's name (pipeline/host/pid), the
//	             event's sequence number at its source (the record number
//	             on its connection, for netio) and when the source read it
//	             (Unix ns; 0: unknown)
//
// A dead letter carries the original data and headers plus
//
//	Seda-Dead-Reason  why it was given up (the last error)
//	Seda-Dead-Class   refused | max_deliver | undecodable
//	Seda-Stream-Seq   its sequence number in the work stream
//	Seda-Delivered    how many times it was delivered
const (
	encodingVersion = 2

	hdrTrace     = "Seda-Trace"
	hdrReason    = "Seda-Dead-Reason"
	hdrClass     = "Seda-Dead-Class"
	hdrStreamSeq = "Seda-Stream-Seq"
	hdrDelivered = "Seda-Delivered"
)

// errUndecodable marks a message that is not in this encoding.
var errUndecodable = errors.New("undecodable message")

// encodeEvent returns the message that carries ev to subject.
func encodeEvent(ev *stage.Event, subject, pipeline, from, id string) (*nats.Msg, error) {
	size := 1 + binary.MaxVarintLen64*2 + len(ev.Payload)
	for name, v := range ev.Fields() {
		size += 2*binary.MaxVarintLen64 + 1 + len(name) + len(v.Bytes())
	}
	data := make([]byte, 0, size)
	data = append(data, encodingVersion)
	data = binary.AppendUvarint(data, uint64(len(ev.Payload)))
	data = append(data, ev.Payload...)
	data = binary.AppendUvarint(data, uint64(ev.NumFields()))
	for name, v := range ev.Fields() {
		data = binary.AppendUvarint(data, uint64(len(name)))
		data = append(data, name...)
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
				return nil, fmt.Errorf("encode field %q: %w", name, err)
			}
			data = append(data, byte(stage.ValueJSON))
			data = appendBytes(data, text)
		}
	}
	var arrived int64
	if t := ev.Arrived(); !t.IsZero() {
		arrived = t.UnixNano()
	}
	trace := pipeline + " " + from + " " + strconv.FormatUint(ev.Seq, 10) + " " + strconv.FormatInt(arrived, 10)
	h := nats.Header{nats.MsgIdHdr: {id}, hdrTrace: {trace}}
	return &nats.Msg{Subject: subject, Data: data, Header: h}, nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// splitMessage returns the payload of a message made by encodeEvent and
// the encoded fields after it. Neither is copied.
func splitMessage(data []byte) (payload, fields []byte, err error) {
	if len(data) == 0 || data[0] != encodingVersion {
		v := -1
		if len(data) > 0 {
			v = int(data[0])
		}
		return nil, nil, fmt.Errorf("%w: encoding version %d, want %d", errUndecodable, v, encodingVersion)
	}
	payload, rest, ok := readBytes(data[1:])
	if !ok {
		return nil, nil, fmt.Errorf("%w: bad payload length", errUndecodable)
	}
	return payload[:len(payload):len(payload)], rest, nil
}

// decodeFields sets the fields encoded by encodeEvent on ev. names
// interns field names, so that the few names a stream carries are
// allocated once; it is not safe for concurrent use.
func decodeFields(ev *stage.Event, fields []byte, names map[string]string) error {
	n, k := binary.Uvarint(fields)
	if k <= 0 || n > uint64(len(fields)) {
		return fmt.Errorf("%w: bad field count", errUndecodable)
	}
	b := fields[k:]
	for i := uint64(0); i < n; i++ {
		nb, rest, ok := readBytes(b)
		if !ok || len(rest) == 0 {
			return fmt.Errorf("%w: field %d: bad name", errUndecodable, i)
		}
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
			if text, b2, ok = readBytes(b2); !ok {
				return fmt.Errorf("%w: field %q: bad length", errUndecodable, name)
			}
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
			if m <= 0 {
				return fmt.Errorf("%w: field %q: bad integer", errUndecodable, name)
			}
			v, b2 = stage.IntValue(x), b2[m:]
		case stage.ValueFloat:
			if len(b2) < 8 {
				return fmt.Errorf("%w: field %q: short float", errUndecodable, name)
			}
			v, b2 = stage.FloatValue(math.Float64frombits(binary.LittleEndian.Uint64(b2))), b2[8:]
		case stage.ValueBool:
			if len(b2) < 1 {
				return fmt.Errorf("%w: field %q: short bool", errUndecodable, name)
			}
			v, b2 = stage.BoolValue(b2[0] != 0), b2[1:]
		default:
			return fmt.Errorf("%w: field %q: unknown type %d", errUndecodable, name, t)
		}
		ev.SetValue(name, v)
		b = b2
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d bytes after the fields", errUndecodable, len(b))
	}
	return nil
}

// readBytes reads uvarint(len) bytes from b.
func readBytes(b []byte) (v, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// traceOf reads the Seda-Trace header: the event's sequence number at its
// source and when the source read it (zero when unknown).
func traceOf(h nats.Header) (seq uint64, arrived time.Time) {
	f := strings.Fields(h.Get(hdrTrace))
	if len(f) != 4 {
		return 0, time.Time{}
	}
	seq, _ = strconv.ParseUint(f[2], 10, 64)
	if ns, err := strconv.ParseInt(f[3], 10, 64); err == nil && ns > 0 {
		arrived = time.Unix(0, ns)
	}
	return seq, arrived
}
