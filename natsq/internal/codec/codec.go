package codec

// This file holds the envelope encoding: packing events into a message's
// data (Builder), reading them back (Open, RecordHead, DecodeFields),
// and the trace header.

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

	"github.com/stagedserver/seda/stage"
)

// The versions of the data, and the headers' names (see the package
// documentation).
const (
	Version   = 3 // records as they are
	VersionS2 = 4 // records compressed with S2

	HdrTrace     = "Seda-Trace"
	HdrReason    = "Seda-Dead-Reason"
	HdrClass     = "Seda-Dead-Class"
	HdrStreamSeq = "Seda-Stream-Seq"
	HdrIndex     = "Seda-Envelope-Index"
	HdrDelivered = "Seda-Delivered"
	HdrTruncated = "Seda-Dead-Truncated" // a dead letter's data was cut to fit max_payload: its length before
	HdrFirstSeq  = "Seda-First-Seq"      // a requeued envelope's sequence number when first stored
)

// ErrUndecodable marks a message that is not in this encoding.
var ErrUndecodable = errors.New("undecodable message")

// Builder packs events into envelopes. Its zero value is not
// ready: see NewBuilder. It is not safe for concurrent use.
type Builder struct {
	maxEvents, maxBytes int
	maxOne              int  // an envelope of one event's data at most
	compress            bool // S2, version 4
	bufs                *Pool

	data    []byte
	events  []*stage.Event
	arrived int64 // earliest arrival of the events, Unix ns; 0: none known
}

// NewBuilder returns a builder of envelopes of at most maxEvents
// events and maxBytes bytes, or of one event of at most maxOne bytes (see
// Add), compressed or not; their data come from bufs, which may be nil.
// maxOne is below the server's max_payload, the bound Open puts on
// the data it decompresses.
func NewBuilder(maxEvents, maxBytes, maxOne int, compress bool, bufs *Pool) *Builder {
	return &Builder{maxEvents: maxEvents, maxBytes: maxBytes, maxOne: max(maxOne, maxBytes), compress: compress, bufs: bufs}
}

// Add appends ev to the envelope being built. It returns false, leaving
// the envelope as it was, when ev does not fit: the envelope holds
// maxEvents events already, or ev would take it past maxBytes. An
// envelope of one event may be larger, up to maxOne, compressed or not:
// an event that alone takes more is an error of class too_large, as is an
// event whose fields cannot be encoded an error; neither is added.
func (b *Builder) Add(ev *stage.Event) (bool, error) {
	if len(b.events) >= b.maxEvents {
		return false, nil
	}
	if len(b.data) == 0 {
		b.data = append(b.bufs.Get(b.maxBytes + 4<<10)[:0], Version)
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
	if len(b.data) > b.maxOne {
		n := len(b.data) - start
		b.data = b.data[:start]
		return true, stage.WithClass(fmt.Errorf("the record and its fields take %d bytes, more than a message carries (%d, under the server's max_payload)", n, b.maxOne), stage.ErrTooLarge)
	}
	b.events = append(b.events, ev)
	if t := ev.Arrived(); !t.IsZero() {
		if ns := t.UnixNano(); b.arrived == 0 || ns < b.arrived {
			b.arrived = ns
		}
	}
	return true, nil
}

// Empty reports whether the envelope being built holds no event.
func (b *Builder) Empty() bool { return len(b.events) == 0 }

// Take returns the data of the envelope built so far, its Seda-Trace
// header (pipeline: the publishing pipeline; publisher: its connection's
// name) and its events, and starts a new envelope. The data may be given
// back to the builder's Pool once nothing refers to it.
func (b *Builder) Take(pipeline, publisher string) (data []byte, trace string, evs []*stage.Event) {
	trace = pipeline + " " + publisher + " " + strconv.Itoa(len(b.events)) + " " + strconv.FormatInt(b.arrived, 10)
	data = b.data
	if b.compress {
		out := b.bufs.Get(1 + s2.MaxEncodedLen(len(data)-1))
		out[0] = VersionS2
		out = out[:1+len(s2.Encode(out[1:cap(out)], data[1:]))]
		b.bufs.Put(data)
		data = out
	}
	evs = b.events
	b.data, b.events, b.arrived = nil, nil, 0
	return data, trace, evs
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

// Open decompresses an envelope if need be, checks its framing,
// and returns its data in version 3 (data itself, or a new buffer) with
// where each of its events' records starts in it, the data's length last:
// event i is plain[at[i]:at[i+1]]. A message that is not an envelope of
// either version, holds no event, or whose records or fields are cut or
// of an unknown type is ErrUndecodable; so is one that says it
// decompresses to more than maxPlain bytes (the server's max_payload: no
// Builder makes more), which is refused before anything is allocated,
// and one of more than maxEvents events (the most a Builder of the
// stream's publishers puts in one), which is refused as its records are
// counted: records of a few bytes each would otherwise make hundreds of
// thousands of events of one message.
//
// A new buffer comes from bufs (which may be nil), and may be given back
// once no event refers to it.
func Open(data []byte, at []int, maxPlain, maxEvents int, bufs *Pool) (plain []byte, _ []int, err error) {
	plain = data
	if len(data) > 0 && data[0] == VersionS2 {
		n, err := s2.DecodedLen(data[1:])
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrUndecodable, err)
		}
		if n >= maxPlain {
			return nil, nil, fmt.Errorf("%w: it says it decompresses to %d bytes, more than a message carries (%d)", ErrUndecodable, n, maxPlain)
		}
		plain = bufs.Get(n + 1)[:n+1]
		plain[0] = Version
		if _, err := s2.Decode(plain[1:], data[1:]); err != nil {
			bufs.Put(plain)
			return nil, nil, fmt.Errorf("%w: %v", ErrUndecodable, err)
		}
	}
	at, err = split(plain, at, maxEvents)
	return plain, at, err
}

// split is Open for data in version 3.
func split(data []byte, at []int, maxEvents int) ([]int, error) {
	if len(data) == 0 || data[0] != Version {
		v := -1
		if len(data) > 0 {
			v = int(data[0])
		}
		return nil, fmt.Errorf("%w: encoding version %d, want %d", ErrUndecodable, v, Version)
	}
	at = at[:0]
	for i := 1; i < len(data); {
		if len(at) == maxEvents {
			return nil, fmt.Errorf("%w: more than %d events, more than a publisher puts in one message", ErrUndecodable, maxEvents)
		}
		at = append(at, i)
		n, err := skipRecord(data[i:])
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: %v", ErrUndecodable, len(at)-1, err)
		}
		i += n
	}
	if len(at) == 0 {
		return nil, fmt.Errorf("%w: an envelope without events", ErrUndecodable)
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

// RecordHead returns the sequence number and payload of a record that
// Open has checked, and the encoded fields after them. Nothing is
// copied.
func RecordHead(rec []byte) (seq uint64, payload, fields []byte) {
	seq, k := binary.Uvarint(rec)
	payload, fields, _ = readBytes(rec[k:])
	return seq, payload[:len(payload):len(payload)], fields
}

// DecodeFields sets the fields of a record that Open has checked
// on ev. names interns field names, so that the few names a stream carries
// are allocated once; it is not safe for concurrent use.
func DecodeFields(ev *stage.Event, fields []byte, names map[string]string) {
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

// EventsOn returns how many events the envelopes on subj (one of the
// work stream's, seda.STREAM.N) hold each; 0 for any other subject.
func EventsOn(subj string) uint64 {
	i := strings.LastIndexByte(subj, '.')
	n, err := strconv.ParseUint(subj[i+1:], 10, 32)
	if i < 0 || err != nil {
		return 0
	}
	return n
}

// Pool keeps envelopes' buffers for reuse: an envelope is some
// hundred kilobytes, and allocating each anew costs the garbage collector
// and the kernel (the runtime gives freed pages back) more than the rest
// of the hop. A nil *Pool allocates. Safe for concurrent use.
type Pool struct{ p sync.Pool }

// maxPooled is the largest buffer kept.
const maxPooled = 4 << 20

// Get returns a buffer of length n.
func (b *Pool) Get(n int) []byte {
	if b != nil {
		if v, ok := b.p.Get().(*[]byte); ok && cap(*v) >= n {
			return (*v)[:n]
		}
	}
	// Rounded up to a power of two, so that envelopes of about the same
	// size reuse each other's buffers.
	return make([]byte, n, 1<<bits.Len(uint(max(n, 1<<10)-1)))
}

// Put gives buf back; nothing may refer to it any more.
func (b *Pool) Put(buf []byte) {
	if b != nil && cap(buf) <= maxPooled && cap(buf) > 0 {
		b.p.Put(&buf)
	}
}

// DeadData is the data of the dead letter of one event: an envelope of
// that event's record alone.
func DeadData(rec []byte) []byte {
	return append([]byte{Version}, rec...)
}

// Trace is what an envelope's Seda-Trace header says.
type Trace struct {
	Pipeline  string    // the publishing pipeline
	Publisher string    // its connection's name
	Events    int       // events in the envelope
	Arrived   time.Time // when the earliest was read; zero: unknown
}

// ParseTrace reads a Seda-Trace header's value; ok is false when it is
// empty or not in this encoding.
func ParseTrace(h string) (tr Trace, ok bool) {
	f := strings.Fields(h)
	if len(f) != 4 {
		return Trace{}, false
	}
	n, err1 := strconv.Atoi(f[2])
	ns, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return Trace{}, false
	}
	tr = Trace{Pipeline: f[0], Publisher: f[1], Events: n}
	if ns > 0 {
		tr.Arrived = time.Unix(0, ns)
	}
	return tr, true
}
