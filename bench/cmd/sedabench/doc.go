// Command sedabench runs the benchmark suite of docs/BENCHMARKS.md and
// writes each benchmark's section of bench/RESULTS.md: the command, the
// date, the machine, every figure and every ratio. Each benchmark runs the
// project side by side with its baseline, alternating, in this one
// process (B4, B7, B8 and B9 also run pipectl as processes), so that a noisy
// machine moves both alike and their ratio means something.
//
// It is a tool for the project's developers, kept apart from pipectl so
// that the shipped command links no benchmark. Run it from the
// repository's root:
//
//	make bench                                  # the whole suite
//	go run ./bench/cmd/sedabench --only b1,b2 --runs 7
//	go run ./bench/cmd/sedabench --only b3 --b3-records 200000 --dry-run
//	go run ./bench/cmd/sedabench --only b1 --strict
//
// After everything else it lists the targets missed, one line each; with
// --strict it then exits non-zero if any was.
//
// The benchmarks that need PostgreSQL start a throwaway one (see
// internal/pgtemp) unless --dsn names one. B4, B7, B8 and B9 run pipectl
// as processes of their own: the binary --pipectl names (`make bench`
// builds bin/pipectl once and passes it), or else each builds cmd/pipectl
// with the go command. The suite is listed in suite.go, the one place a
// benchmark is registered.
package main
