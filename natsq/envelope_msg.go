package natsq

// This file puts envelopes into NATS messages and reads a message's trace
// back. The envelope encoding (data, subject and headers) is described in
// one place, package natsq/internal/codec.

import (
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/stagedserver/seda/natsq/internal/codec"
	"github.com/stagedserver/seda/stage"
)

// takeMsg returns the message of the envelope b built so far, with its
// events, and has b start a new one: on the work stream's subject for its
// number of events, with id as its Nats-Msg-Id and the Seda-Trace of
// pipeline and its publisher from.
func takeMsg(b *codec.Builder, stream, pipeline, from, id string) (*nats.Msg, []*stage.Event) {
	data, trace, evs := b.Take(pipeline, from)
	return &nats.Msg{
		Subject: subject(stream) + "." + strconv.Itoa(len(evs)),
		Data:    data,
		Header:  nats.Header{nats.MsgIdHdr: {id}, codec.HdrTrace: {trace}},
	}, evs
}

// traceOf reads a message's Seda-Trace header.
func traceOf(h nats.Header) (codec.Trace, bool) { return codec.ParseTrace(h.Get(codec.HdrTrace)) }
