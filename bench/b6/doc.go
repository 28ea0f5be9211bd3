// Package b6 is benchmark B6 of docs/BENCHMARKS.md: overload on a slow
// database, with admission control. A statement-level trigger sleeps 50 ms
// per INSERT or COPY; the store is pinned at batch 200, 4 workers and 4
// connections. Against that setup it measures the rate the pipeline
// sustains, then offers 5× that rate open-loop to the pipeline with
// `admission: {target: 250ms}` on its source, and, side by side, for a
// shorter while to the same pipeline without it. It reports the acked rate
// against the sustained one, the p99 ack latency against the target,
// whether every record was answered and every refusal was `busy`, and the
// peak RSS, and draws the run over time (Result.WriteSVG).
package b6
