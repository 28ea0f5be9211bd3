#!/usr/bin/env bash
# stress.sh: run the tests many times under the race detector, to find
# flaky ones (for local use; CI runs `make test`, not this). Each round is
# `go test -race -count=STRESS_COUNT STRESS_PKGS` with GOMAXPROCS set to one
# value of STRESS_PROCS (0 leaves it unset), beside STRESS_HOGS busy loops
# that take CPU from the tests. A test that fails here waits on a timing;
# make it wait on the event it means (docs/DESIGN.md, Testing).
set -uo pipefail
cd "$(dirname "$0")/.."
count=${STRESS_COUNT:-20}
pkgs=${STRESS_PKGS:-./port ./stage ./pipeline ./stages/... ./natsq}
procs=${STRESS_PROCS:-0 1}
hogs=${STRESS_HOGS:-2}
logdir=${LOGDIR:-$(mktemp -d)}

hogpids=()
stop_hogs() { for p in "${hogpids[@]}"; do kill "$p" 2>/dev/null; done; hogpids=(); }
trap stop_hogs EXIT
for _ in $(seq "$hogs"); do
	yes >/dev/null &
	hogpids+=($!)
done

# go test's own timeout is 10 minutes a package; stages/db passes once in
# about 90 s under -race, and slower with the busy loops, so a count of 5
# ran out of it. Three minutes a pass.
timeout=$((count * 3))m

failed=0
for n in $procs; do
	log=$logdir/stress-gomaxprocs-$n.log
	echo "stress: GOMAXPROCS=${n/#0/unset}, $hogs busy loops: go test -race -count=$count $pkgs"
	if [ "$n" = 0 ]; then
		# shellcheck disable=SC2086 # pkgs is a list of patterns
		go test -race -count="$count" -timeout "$timeout" $pkgs >"$log" 2>&1
	else
		# shellcheck disable=SC2086
		GOMAXPROCS=$n go test -race -count="$count" -timeout "$timeout" $pkgs >"$log" 2>&1
	fi
	rc=$?
	grep -E '^(ok|FAIL|---)' "$log" | grep -v -- '--- PASS' || true
	if [ $rc -ne 0 ]; then
		failed=1
		echo "stress: failures (whole log: $log):"
		grep -E -A6 -- '--- FAIL' "$log" | head -100
	fi
done
if [ $failed -ne 0 ]; then
	echo "stress: FAILED"
	exit 1
fi
# A temporary log directory goes once nothing failed.
[ -n "${LOGDIR:-}" ] || rm -rf "$logdir"
echo "stress: no failure"
