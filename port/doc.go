// Package port is a completion port for goroutines: a bounded FIFO queue of
// packets and a limit on how many of the workers that take from it run at
// once. It is the Windows I/O completion port (IOCP) carried over to Go, and
// the hop between the stages of a staged server: an I/O pool, a processing
// pool and a database pool each take from their own port and post to the
// next one.
//
// # The Windows API, and what stands for it here
//
//   - CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, n) makes a port:
//     New(Options{Concurrency: n}). Its NumberOfConcurrentThreads is
//     Options.Concurrency, and 0 means the number of processors in both
//     (runtime.GOMAXPROCS here).
//   - A thread that calls GetQueuedCompletionStatus on a port becomes one of
//     its pool threads; here a goroutine says so with Port.Join, which
//     returns its Worker, and stops being one with Worker.Leave.
//   - PostQueuedCompletionStatus(port, bytes, key, overlapped) is Port.Post:
//     Packet.N is the byte count, Packet.Key the completion key (which
//     connection or client this is; the port never looks at it) and
//     Packet.Value the work item, the role of the OVERLAPPED structure.
//     Packet.Err carries the failure of the operation the packet completes.
//   - GetQueuedCompletionStatus is Worker.Get and GetQueuedCompletionStatusEx
//     is Worker.GetBatch.
//   - CloseHandle on the port makes waiting threads fail with
//     ERROR_ABANDONED_WAIT_0; here Port.Close makes Get return ErrClosed, but
//     only once what was queued has been delivered.
//
// # Rules
//
// A worker holds a run slot from the moment Get returns a packet until it
// calls Get, GetBatch or Leave again; at most Concurrency workers hold one.
// Waiting workers are released last-in, first-out, so that a few goroutines
// stay hot and the rest stay parked. Packets are delivered first-in,
// first-out. Post and Get allocate nothing, and a port with no work uses no
// CPU: waiting workers and posters are parked, never spinning.
//
// # What differs from Windows
//
// The kernel sees when a pool thread blocks (on a file, a lock, a socket)
// and lets another thread run in its place; the Go scheduler tells nobody
// when a goroutine blocks. A worker about to block therefore says so:
// Worker.Blocking(fn) gives its slot away while fn runs and takes it back
// when fn returns, even over the limit, as Windows does when a blocked
// thread wakes up. A worker that holds packets but gave its slot up while
// it waited for more (a GetBatch that lingers for a fuller batch) takes
// one back with Worker.Acquire, which waits while every slot is taken and
// is served before packets are handed out again.
//
// Windows fixes a port's NumberOfConcurrentThreads when the port is made.
// Here Port.SetConcurrency changes it while the port runs (a controller or
// an operator resizing a stage). A lower limit interrupts nobody: it is
// reached the way Windows gets back under its limit after blocked threads
// wake, as running workers come back for more work and are not replaced.
//
// Windows keeps its waiting threads in a LIFO in the kernel. Here each
// worker parks on its own wake channel, and the port keeps a stack of them:
// whoever posts a packet hands it straight to the worker on top and wakes
// that one only.
//
// A Windows port's queue grows without bound. Here it holds at most
// Options.Capacity packets, and Options.Overflow says what a Post does when
// it is full: Block waits for room (backpressure that reaches the producer)
// and Reject fails at once with ErrFull (admission control). TryPost never
// waits, whatever the Overflow. Post and Get also take a context, which
// Windows' timeout parameter becomes.
package port
