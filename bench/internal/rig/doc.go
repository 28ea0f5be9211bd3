// Package rig is the benchmarks' shared harness: what B3 to B11 set up
// around the code they measure, so that each benchmark package holds only
// its own runs and figures.
//
//   - a throwaway PostgreSQL with its durable defaults (StartPostgres), and
//     its CPU read from /proc once a run's backends have exited
//     (ClientBackends, SettledCPU);
//   - the events table (id bigint primary key, body jsonb) and the check
//     that every acked id is stored once (CreateTable, DropTable,
//     CheckStored), statements and one-value queries (ExecSQL, QueryInt,
//     QueryString, Ident);
//   - the example pipeline B3 measures (PipelineYAML, Registry) and
//     starting a pipeline from YAML in this process (StartYAML);
//   - the variants a load client drives behind Server: the pipeline, the
//     channel pipeline with the same handlers (package chanpipe) and the
//     naive server (package naive);
//   - the COPY file of the records the load client sends, for the
//     `psql \copy` baselines (WriteCopyFile);
//   - the pipectl binary the benchmarks that run pipelines as processes
//     start: the one `make bench` built and handed over, or one built with
//     the go command when none was (Pipectl).
//
// It lives under bench/internal: nothing outside bench/ imports it.
package rig
