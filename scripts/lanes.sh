#!/usr/bin/env bash
# lanes.sh [STEP... --] LANE...: run make test's steps. The STEPs before
# "--" run first, one after another; then the LANEs run side by side. Each
# LANE is a quoted list of make targets run one after another (two lanes
# keep two cores busy: a cold build in one overlaps the tests and waits of
# the other). A word after:STEP in a lane waits there until STEP, in
# another lane, has ended, failed or not (it is not a step itself). Every
# step runs even when an earlier one failed, so that one run reports every
# failure. A step's output goes to its own log (LOGDIR, default a
# temporary directory) and is printed whole when the step ends, so lanes
# never interleave lines; a summary of each step's time, CPU time and
# result follows, and the exit status is 1 if any step failed. A temporary
# LOGDIR is removed when every step passed and kept when one failed.
set -uo pipefail
cd "$(dirname "$0")/.."
logdir=${LOGDIR:-$(mktemp -d)}
mkdir -p "$logdir"
start=$(date +%s)

# lane runs the steps of one lane in order, writing STEP.log and STEP.result
# (seconds and exit status) for each; the lock keeps the printed logs whole.
lane() {
	local TIMEFORMAT='%U %S'
	for step in "$@"; do
		if [[ $step == after:* ]]; then
			until [ -e "$logdir/${step#after:}.result" ]; do sleep 1; done
			continue
		fi
		local s e rc
		s=$(date +%s)
		# time reports the CPU (user and system) of the step's whole
		# process tree: its processes are all waited for.
		{ time make --no-print-directory "$step" >"$logdir/$step.log" 2>&1; } 2>"$logdir/$step.cpu"
		rc=$?
		e=$(date +%s)
		echo "$((e - s)) $rc $(cat "$logdir/$step.cpu")" >"$logdir/$step.result"
		{
			flock 9
			echo "=== $step ($((e - s)) s, exit $rc)"
			cat "$logdir/$step.log"
		} 9>"$logdir/.print"
	done
}

first=()
if [[ " $* " == *" -- "* ]]; then
	while [ "$1" != -- ]; do
		first+=("$1")
		shift
	done
	shift
fi
# An after:STEP must name a step of another lane, or its lane would wait
# for ever; a result left in LOGDIR by an earlier run must not end a wait.
steps=" "
for l in "$@"; do
	for w in $l; do [[ $w == after:* ]] || steps+="$w "; done
done
for l in "$@"; do
	for w in $l; do
		[[ $w == after:* ]] || continue
		if [[ $steps != *" ${w#after:} "* || " $l " == *" ${w#after:} "* ]]; then
			echo "lanes.sh: $w: no step ${w#after:} in another lane" >&2
			exit 2
		fi
	done
done
rm -f "$logdir"/*.result

all=("${first[@]}")
[ ${#first[@]} -eq 0 ] || lane "${first[@]}"

pids=()
for l in "$@"; do
	# shellcheck disable=SC2086 # a lane is a list of words
	lane $l &
	pids+=($!)
	all+=($l)
done
for p in "${pids[@]}"; do wait "$p"; done

failed=()
echo "=== make test: steps (wall seconds, CPU seconds user+system, result): ${first[*]:+${first[*]} first, then }lanes side by side: $*"
for step in "${all[@]}"; do
	[[ $step != after:* ]] || continue
	read -r secs rc user sys <"$logdir/$step.result" || { secs=? rc=1; }
	result=ok
	[ "$rc" = 0 ] || { result=FAIL; failed+=("$step"); }
	cpu=$(awk -v u="${user:-0}" -v s="${sys:-0}" 'BEGIN { printf "%.0f", u + s }')
	printf '  %-12s %5s s  %5s CPU-s  %s\n' "$step" "$secs" "$cpu" "$result"
done
total="  total        $(($(date +%s) - start)) s"
if [ ${#failed[@]} -gt 0 ] || [ -n "${LOGDIR:-}" ]; then
	echo "$total (logs in $logdir)"
else
	rm -rf "$logdir"
	echo "$total"
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "make test: FAILED: ${failed[*]}"
	exit 1
fi
echo "make test: every step passed"
