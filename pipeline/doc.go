// Package pipeline turns a pipeline description into running stages and
// drives them: loading and checking a pipeline.yaml into a Config (Load,
// Parse), building the stages from a stage.Registry (New), starting and
// stopping them in order (Start, Stop, Run), and the admin HTTP endpoint
// that shows them (/stats, /metrics, /healthz, /readyz).
//
// # Building
//
// New constructs every stage through its kind's constructor, gives it a
// queue and a worker pool (internal/engine), and connects it to its next
// stage and routes. A Config may come from Load or be built in code (with
// a Name, which New requires as the loader does); an embedding program registers its own kinds in the Registry it passes,
// exactly as the stage families do.
//
// # Lifecycle
//
// Start starts the stages sinks first and sources last, so that nothing is
// emitted to a stage that is not running. Stop works in two phases, in the
// manner of net/http's Server.Shutdown and Server.Close:
//
//   - Phase one drains: the sources stop taking input, each queue is closed
//     once everything upstream of it has stopped emitting, the workers
//     finish what is queued, and the sources write their acks.
//   - Phase two, when the drain deadline passes (or a second signal comes),
//     aborts what is left and reports how many events were abandoned.
//
// Either way StopReport.Fates says what became of the events finished or
// abandoned while the pipeline stopped, and of the records a source's door
// refused meanwhile (of which no event was made): stored, redelivered
// later by a transport, lost (nobody could be told), or left for their
// clients to resend (see stage.Fate). A complete drain may count records
// lost or left to resend too: those the door refused.
//
// Every goroutine the pipeline starts (workers, the admin server and its
// connections) is joined before Stop returns.
//
// # Admin endpoint
//
// GET / is a live dashboard (the stage graph, every stage's figures and
// charts of the last minutes, redrawn twice a second from /stats; its assets
// are embedded, nothing comes from another origin); GET /history holds the
// charts' last five minutes. GET /stats is the JSON form of Stats; GET
// /metrics is the same figures in Prometheus text format, labelled with
// the pipeline's name, from a registry private to the pipeline; /healthz
// answers 200 while the process serves; /readyz answers 200 only while the
// pipeline is running. The endpoint binds loopback addresses only unless
// admin.token is set (and without it answers only requests whose Host
// names a loopback address or localhost, against DNS rebinding), and then
// every request must carry
// "Authorization: Bearer TOKEN", or the cookie that POST /login sets for a
// browser that gave the token in the dashboard's form. Configuration is never shown there, so
// secret fields (a DSN) cannot leak through it; stage.Redact hides DSN passwords
// in anything that is logged.
package pipeline
