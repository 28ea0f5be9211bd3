package natsq

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stagedserver/seda/stage"
)

// The message encoding, version 1. Everything about how an event becomes a
// JetStream message and back is in this file, so that a change of the
// event's field representation touches nothing else.
//
// Data is the payload, length-prefixed, followed by the decoded fields:
//
//	uvarint(len(payload)) payload [fields]
//
// where fields, when the event has any, is one JSON object (the event's
// Fields, each stage.Value as its MarshalJSON writes it). On the way back JSON numbers that are integers fitting in 64
// bits become int64 and other numbers json.Number (the convention of
// process.json); strings, booleans, null, objects and arrays come back as
// string, bool, nil, map[string]any and []any. A Go value JSON has no type
// for (time.Time, a struct) arrives as its JSON form. An event with no
// fields arrives with none.
//
// Headers (all text):
//
//	Nats-Msg-Id    a unique id per event, kept across publish retries, so
//	               that JetStream stores a retried publish once
//	Seda-Encoding  "1": this layout
//	Seda-Pipeline  the publishing pipeline's name
//	Seda-From      the stage that handed the event to the queue
//	Seda-Seq       the event's sequence number at its source (the record
//	               number on its connection, for netio)
//	Seda-Arrived   when the source read the record, RFC 3339 with ns
//
// A dead letter carries the original data and headers plus
//
//	Seda-Dead-Reason  why it was given up (the last error)
//	Seda-Dead-Class   refused | max_deliver | undecodable
//	Seda-Stream-Seq   its sequence number in the work stream
//	Seda-Delivered    how many times it was delivered
const (
	encodingVersion = "1"

	hdrEncoding  = "Seda-Encoding"
	hdrPipeline  = "Seda-Pipeline"
	hdrFrom      = "Seda-From"
	hdrSeq       = "Seda-Seq"
	hdrArrived   = "Seda-Arrived"
	hdrReason    = "Seda-Dead-Reason"
	hdrClass     = "Seda-Dead-Class"
	hdrStreamSeq = "Seda-Stream-Seq"
	hdrDelivered = "Seda-Delivered"
)

// errUndecodable marks a message that is not in this encoding.
var errUndecodable = errors.New("undecodable message")

// encodeEvent returns the message that carries ev to subject.
func encodeEvent(ev *stage.Event, subject, pipeline, from, id string) (*nats.Msg, error) {
	var fields []byte
	if ev.NumFields() > 0 {
		m := make(map[string]stage.Value, ev.NumFields())
		for name, v := range ev.Fields() {
			m[name] = v
		}
		var err error
		if fields, err = json.Marshal(m); err != nil { // stage.Value is a json.Marshaler
			return nil, fmt.Errorf("encode fields: %w", err)
		}
	}
	data := make([]byte, 0, binary.MaxVarintLen64+len(ev.Payload)+len(fields))
	data = binary.AppendUvarint(data, uint64(len(ev.Payload)))
	data = append(data, ev.Payload...)
	data = append(data, fields...)
	h := nats.Header{
		nats.MsgIdHdr: {id},
		hdrEncoding:   {encodingVersion},
		hdrFrom:       {from},
		hdrSeq:        {strconv.FormatUint(ev.Seq, 10)},
	}
	if pipeline != "" {
		h[hdrPipeline] = []string{pipeline}
	}
	if t := ev.Arrived(); !t.IsZero() {
		h[hdrArrived] = []string{t.UTC().Format(time.RFC3339Nano)}
	}
	return &nats.Msg{Subject: subject, Data: data, Header: h}, nil
}

// decoded is an event as a message carried it.
type decoded struct {
	payload []byte
	fields  map[string]any
	seq     uint64    // at its source; 0 when not given
	arrived time.Time // zero when not given
}

// decodeEvent reads a message made by encodeEvent. data is not copied:
// the payload refers to it.
func decodeEvent(data []byte, h nats.Header) (decoded, error) {
	var d decoded
	if v := h.Get(hdrEncoding); v != encodingVersion {
		return d, fmt.Errorf("%w: encoding %q, want %q", errUndecodable, v, encodingVersion)
	}
	n, k := binary.Uvarint(data)
	if k <= 0 || n > uint64(len(data)-k) {
		return d, fmt.Errorf("%w: bad payload length", errUndecodable)
	}
	d.payload = data[k : k+int(n) : k+int(n)]
	if rest := data[k+int(n):]; len(rest) > 0 {
		dec := json.NewDecoder(bytes.NewReader(rest))
		dec.UseNumber()
		if err := dec.Decode(&d.fields); err != nil {
			return d, fmt.Errorf("%w: fields: %v", errUndecodable, err)
		}
		if dec.More() {
			return d, fmt.Errorf("%w: fields: data after the object", errUndecodable)
		}
		if d.fields == nil {
			return d, fmt.Errorf("%w: fields: not an object", errUndecodable)
		}
		numbers(d.fields)
	}
	if s := h.Get(hdrSeq); s != "" {
		d.seq, _ = strconv.ParseUint(s, 10, 64)
	}
	if s := h.Get(hdrArrived); s != "" {
		d.arrived, _ = time.Parse(time.RFC3339Nano, s)
	}
	return d, nil
}

// numbers turns, in place, every json.Number that is an integer fitting
// in 64 bits into an int64.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		return x // a fraction, or an integer too big for int64: its exact text
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}
