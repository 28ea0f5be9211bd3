package natsq

// This file tests that a requeued copy whose PubAck was lost is asked
// again and stored once, not dead-lettered.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedserver/seda/internal/faultproxy"
	"github.com/stagedserver/seda/internal/natstest"
	"github.com/stagedserver/seda/internal/poll"
	"github.com/stagedserver/seda/stage"
)

// TestRequeueUnansweredAskedAgain: the link stalls as a stop requeues an
// envelope at its max_deliver-th delivery, so the copy's publish gets no
// PubAck; the client sends it once the link moves all the same. Asked
// again under the same id, the stream answers (a duplicate) and the
// original is acked: the records are stored, none dead-lettered. Before,
// the original was NAKed on the first try's timeout, and the next back
// dead-lettered its records while it stored the copy's.
func TestRequeueUnansweredAskedAgain(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	url := srv.URL()
	px, err := faultproxy.New(url[strings.LastIndex(url, "/")+1:])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = px.Close() })
	// The first publish, stalled, is unanswered for requeueWait: a
	// second, so that the test is quick. The link then moves, and the
	// second publish and the ack have the usual requeueWait: with a
	// second, a loaded machine could leave them unanswered too, and the
	// envelope was NAKed.
	wait0, ask0 := requeueWait, requeueAskAgain
	requeueWait = time.Second
	requeueAskAgain = func() {
		px.Resume()
		requeueWait = wait0 // read after this call, by the same goroutine
	}
	t.Cleanup(func() { requeueWait, requeueAskAgain = wait0, ask0 })

	qc := QueueConfig{Stream: "t_requeue_ask", MaxDeliver: 1, AckWait: time.Minute}
	release := make(chan struct{})
	reached := make(chan struct{})
	var once sync.Once
	s := &sink{seen: map[string]int{}, fail: func(ev *stage.Event) error {
		once.Do(func() { close(reached) })
		<-release
		return context.Canceled
	}}
	sp := newSplitClients(t, NewClient(Config{URL: url}, "test", nil),
		NewClient(Config{URL: "nats://" + px.Addr()}, "test", nil), qc, stage.Settings{Batch: 8}, s, nil)
	a := newAcks(3)
	sp.send(t, 1, 3, a)
	a.wait(t)
	<-reached
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := sp.cons.StopInput(ctx); err != nil {
		t.Fatal(err)
	}
	px.Stall() // the back's link stalls: the requeue's first publish is not answered
	sp.store.Abort()
	close(release)
	q := sp.consQueue
	poll.Until(t, "the envelope settled", func() bool { st := q.Stats(); return st.Naked+st.Acked+st.Requeued > 0 })
	px.Resume()
	sp.stop(t)
	if st := q.Stats(); st.Requeued != 1 || st.Naked != 0 || st.AckErrors != 0 {
		t.Fatalf("first back: %d requeued, %d NAKed, %d ack errors; want the copy found stored when asked again, and the original acked",
			st.Requeued, st.Naked, st.AckErrors)
	}
	s2 := &sink{seen: map[string]int{}}
	sp2 := newSplit(t, url, qc, stage.Settings{Batch: 8}, s2)
	poll.Until(t, "the three records stored", func() bool { return s2.count() >= 3 })
	js := natstest.JetStream(t, url)
	if n := deadMsgs(t, js, "t_requeue_ask"); n != 0 || sp2.consQueue.Stats().DeadLettered != 0 {
		t.Errorf("dead-letter stream: %d messages; want none", n)
	}
}
