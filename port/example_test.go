package port_test

// This file is the package's examples: a two-pool server, and one example
// per behaviour of Post, TryPost, Close, Get, GetBatch, Blocking and
// SetConcurrency.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/stagedserver/seda/port"
)

// A server in three pools, as IOCP servers are built: I/O workers take
// completed reads and parse them, processing workers turn them into rows,
// and database workers write the rows. Each pool takes from its own port
// and posts to the next; the completion key (the connection) travels with
// the packet. The database pool runs one worker at a time but has three,
// so that while one waits on the database (inside Blocking) another runs.
func Example() {
	ctx := context.Background()
	reads := port.New[string](port.Options{Concurrency: 2})
	rows := port.New[string](port.Options{Concurrency: 2})
	writes := port.New[string](port.Options{Concurrency: 1, Capacity: 4})

	var mu sync.Mutex
	var table []string // the "database"

	// pool starts n workers on in; each handles packets until in is closed
	// and drained. The returned func waits for them.
	pool := func(n int, in *port.Port[string], handle func(*port.Worker[string], port.Packet[string])) func() {
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := in.Join()
				defer w.Leave()
				for {
					pk, err := w.Get(ctx)
					if err != nil {
						return // port.ErrClosed: nothing more will come
					}
					handle(w, pk)
				}
			}()
		}
		return wg.Wait
	}

	ioDone := pool(2, reads, func(_ *port.Worker[string], pk port.Packet[string]) {
		msg := strings.TrimSpace(pk.Value[:pk.N]) // N: bytes read
		_ = rows.Post(ctx, port.Packet[string]{Key: pk.Key, Value: msg})
	})
	procDone := pool(2, rows, func(_ *port.Worker[string], pk port.Packet[string]) {
		row := fmt.Sprintf("conn %d: %s", pk.Key, strings.ToUpper(pk.Value))
		_ = writes.Post(ctx, port.Packet[string]{Key: pk.Key, Value: row})
	})
	dbDone := pool(3, writes, func(w *port.Worker[string], pk port.Packet[string]) {
		w.Blocking(func() { // a database round trip: let another worker run
			mu.Lock()
			table = append(table, pk.Value)
			mu.Unlock()
		})
	})

	// Completed reads from two connections (keys 1 and 2).
	for i, line := range []string{"hello\n", "ping\n", "bye\n", "quit\n"} {
		_ = reads.Post(ctx, port.Packet[string]{Key: uint64(1 + i%2), N: len(line), Value: line + "(unread)"})
	}

	// Shut down front to back: each pool drains its port, then the next
	// port is closed.
	reads.Close()
	ioDone()
	rows.Close()
	procDone()
	writes.Close()
	dbDone()

	slices.Sort(table)
	for _, row := range table {
		fmt.Println(row)
	}
	fmt.Println("written:", writes.Stats().Delivered)
	// Output:
	// conn 1: BYE
	// conn 1: HELLO
	// conn 2: PING
	// conn 2: QUIT
	// written: 4
}

// The zero Options is valid.
func ExampleNew() {
	p := port.New[int](port.Options{})
	s := p.Stats()
	fmt.Println(s.Capacity, s.Depth)
	// Output: 8192 0
}

// Packets come out in the order they went in.
func ExamplePort_Post() {
	ctx := context.Background()
	p := port.New[string](port.Options{})
	for _, v := range []string{"a", "b", "c"} {
		_ = p.Post(ctx, port.Packet[string]{Value: v})
	}
	w := p.Join()
	defer w.Leave()
	for range 3 {
		pk, _ := w.Get(ctx)
		fmt.Print(pk.Value)
	}
	fmt.Println()
	// Output: abc
}

// Under Overflow Reject a full port refuses at once: admission control.
func ExamplePort_Post_reject() {
	ctx := context.Background()
	p := port.New[int](port.Options{Capacity: 2, Overflow: port.Reject})
	for i := range 3 {
		err := p.Post(ctx, port.Packet[int]{Value: i})
		fmt.Println(i, err)
	}
	fmt.Println("rejected:", p.Stats().Rejected)
	// Output:
	// 0 <nil>
	// 1 <nil>
	// 2 port: queue full
	// rejected: 1
}

// A cancelled Post leaves the queue as it was.
func ExamplePort_Post_cancel() {
	p := port.New[int](port.Options{Capacity: 1})
	_ = p.TryPost(port.Packet[int]{Value: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Post(ctx, port.Packet[int]{Value: 2})
	fmt.Println(err, p.Stats().Depth)
	// Output: context canceled 1
}

// TryPost never waits, even on a port whose Post would.
func ExamplePort_TryPost() {
	p := port.New[int](port.Options{Capacity: 1, Overflow: port.Block})
	fmt.Println(p.TryPost(port.Packet[int]{Value: 1}))
	fmt.Println(p.TryPost(port.Packet[int]{Value: 2}))
	// Output:
	// <nil>
	// port: queue full
}

// After Close, what was queued is still delivered, then Get fails.
func ExamplePort_Close() {
	ctx := context.Background()
	p := port.New[string](port.Options{})
	_ = p.Post(ctx, port.Packet[string]{Value: "last"})
	p.Close()
	fmt.Println(p.Post(ctx, port.Packet[string]{Value: "late"}))
	w := p.Join()
	defer w.Leave()
	pk, err := w.Get(ctx)
	fmt.Println(pk.Value, err)
	_, err = w.Get(ctx)
	fmt.Println(errors.Is(err, port.ErrClosed))
	// Output:
	// port: closed
	// last <nil>
	// true
}

// The worker that started waiting last is woken first.
func ExampleWorker_Get() {
	ctx := context.Background()
	p := port.New[int](port.Options{Concurrency: 3})
	served := make(chan string)
	for i, name := range []string{"first", "second", "third"} {
		go func() {
			w := p.Join()
			defer w.Leave()
			if _, err := w.Get(ctx); err == nil {
				served <- name
			}
		}()
		for p.Stats().Waiting < i+1 {
			runtime.Gosched() // let it park before the next one starts
		}
	}
	for range 3 {
		_ = p.Post(ctx, port.Packet[int]{})
		fmt.Println(<-served)
	}
	// Output:
	// third
	// second
	// first
}

// GetBatch takes what is queued, up to the buffer's length, and does not
// wait for more.
func ExampleWorker_GetBatch() {
	ctx := context.Background()
	p := port.New[int](port.Options{})
	for i := range 5 {
		_ = p.Post(ctx, port.Packet[int]{Value: i})
	}
	w := p.Join()
	defer w.Leave()
	buf := make([]port.Packet[int], 3)
	for range 2 {
		n, _ := w.GetBatch(ctx, buf)
		for _, pk := range buf[:n] {
			fmt.Print(pk.Value, " ")
		}
		fmt.Println("|", n)
	}
	// Output:
	// 0 1 2 | 3
	// 3 4 | 2
}

// A worker inside Blocking holds no run slot, so another may run.
func ExampleWorker_Blocking() {
	ctx := context.Background()
	p := port.New[int](port.Options{Concurrency: 1})
	_ = p.Post(ctx, port.Packet[int]{})
	w := p.Join()
	defer w.Leave()
	_, _ = w.Get(ctx)
	fmt.Println("running:", p.Stats().Running)
	w.Blocking(func() {
		fmt.Println("running while blocked:", p.Stats().Running)
	})
	fmt.Println("running:", p.Stats().Running)
	// Output:
	// running: 1
	// running while blocked: 0
	// running: 1
}

// Lowering the limit interrupts nobody: two workers hold slots under a
// limit of 2; at a limit of 1 both keep running, and the first to come
// back gives its slot up without anyone taking it.
func ExamplePort_SetConcurrency() {
	ctx := context.Background()
	p := port.New[int](port.Options{Concurrency: 2})
	for i := range 4 {
		_ = p.Post(ctx, port.Packet[int]{Value: i})
	}
	a, b := p.Join(), p.Join()
	defer a.Leave()
	defer b.Leave()
	_, _ = a.Get(ctx)
	_, _ = b.Get(ctx)
	p.SetConcurrency(1)
	fmt.Println("running:", p.Stats().Running, "limit:", p.Concurrency())
	a.Leave() // a comes back: its slot is not handed on
	fmt.Println("running:", p.Stats().Running)
	pk, _ := b.Get(ctx) // b gives its slot up and takes it again: 0 < 1
	fmt.Println("b got", pk.Value, "running:", p.Stats().Running)
	// Output:
	// running: 2 limit: 1
	// running: 1
	// b got 2 running: 1
}
