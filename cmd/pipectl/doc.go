// Command pipectl runs, checks, draws, watches and loads pipelines of the
// staged server framework (see DESIGN.md and README.md). The benchmark
// suite is a command of its own, bench/cmd/sedabench, which pipectl does
// not link.
//
//	pipectl run [-f pipeline.yaml] [--data-dir DIR | --ephemeral] [--admin ADDR]
//	pipectl psql [--data-dir DIR] [-- PSQL-ARGS...]
//	pipectl db start|stop|status|url [--data-dir DIR]
//	pipectl lint FILE...
//	pipectl graph FILE [--format dot|mermaid]
//	pipectl stats [--addr 127.0.0.1:9464] [--token T] [--json]
//	pipectl top [--addr 127.0.0.1:9464] [--interval 1s]
//	pipectl scale STAGE [--workers N|auto] [--concurrency N] [--batch N|auto] [--addr A] [--token T]
//	pipectl load --addr 127.0.0.1:7000 [--conns 64] [--rate N] [--count N | --duration D]
//	pipectl doc
//	pipectl version (or --version)
//
// Every command is a function of its flags and of the io.Writers it is
// given, so the tests drive them in-process; only main calls os.Exit.
package main
