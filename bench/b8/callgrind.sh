#!/usr/bin/env bash
# callgrind.sh: instructions per record of BenchmarkLightPath, counted by
# valgrind's callgrind: unlike CPU time, nearly the same for the same code
# whatever else the machine is doing. It runs the benchmark with N and 2N
# records and divides the difference by N, so that start-up and set-up
# cancel out. It needs a PostgreSQL that is not a child of the benchmark
# (callgrind cannot take the signal a child's exit sends): SEDA_TEST_DSN
# names one, a superuser DSN (e.g. what `pipectl run --ephemeral` prints).
#
#   SEDA_TEST_DSN=postgres://... bash bench/b8/callgrind.sh [tuned|as-written] [N]
#
# Batch sizes follow timing, which valgrind slows some fifty times; read
# the figure as a comparison between two versions of the code, not as the
# cost at full speed.
set -euo pipefail
case=${1:-tuned}
n=${2:-20000}
: "${SEDA_TEST_DSN:?set SEDA_TEST_DSN to a PostgreSQL superuser DSN (not a child of this process)}"
cd "$(dirname "$0")"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# No cgo and no asynchronous preemption: callgrind mishandles the signals.
CGO_ENABLED=0 go test -c -o "$dir/b8.test" .
count() {
	GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$1" \
		"$dir/b8.test" -test.run '^$' -test.bench "LightPath/$case\$" -test.benchtime "$1x" >"$dir/out.$1" 2>"$dir/log.$1" ||
		{ cat "$dir/out.$1"; tail -20 "$dir/log.$1"; exit 1; }
	awk '/^(summary|totals):/ {print $2; exit}' "$dir/cg.$1"
}
a=$(count "$n")
b=$(count "$((2 * n))")
grep -h Benchmark "$dir/out.$n" "$dir/out.$((2 * n))"
echo "instructions: $a for $n records, $b for $((2 * n)); per record: $(((b - a) / n))"
