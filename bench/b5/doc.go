// Package b5 is benchmark B5 of docs/BENCHMARKS.md: defaults against
// tuning. In one run, alternating, it loads the same records into
// PostgreSQL three ways: the three-stage pipeline written without any
// tuning key (parse its own stage, no batch, workers or queue keys: the
// controllers size it), the same pipeline tuned by hand the way
// pipeline.yaml was (parse inline, store batch 2000 with linger 2ms, 8
// workers, 8 connections, queue 16384), and four parallel `psql \copy`
// of the rows (PostgreSQL's own ceiling). It reports the ratios, and what
// the controllers settled on in the untuned pipeline and how long they
// took, from its /stats sampled every 100 ms.
package b5
