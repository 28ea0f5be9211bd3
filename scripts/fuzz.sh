#!/usr/bin/env bash
# fuzz.sh: run every Fuzz target of the module for FUZZTIME (default 3s)
# each. The seed corpora in testdata/fuzz run as plain tests in the race
# step too; this adds fresh inputs. For a longer local run: make fuzz
# FUZZTIME=1m.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}
# One fuzzing worker per core by default (FUZZPARALLEL sets another
# number).
parallel=${FUZZPARALLEL:-$(nproc)}
# -tags nonats: pipeline's tests then register no queue transport, and
# FuzzParse's binary leaves natsq and the NATS server out (fuzzing
# instruments every package linked in; nats-server was two thirds of a
# cold build of that target). Only pipeline's test files use the tag.
tags=nonats

# Targets are found in the source (a test file's `func FuzzName(f
# *testing.F)`), not with `go test -list`, which would build and vet every
# package's test binary first: on a cold cache that alone took minutes.
targets=()
while IFS=: read -r file line; do
	name=${line#func }
	name=${name%%(*}
	targets+=("./$(dirname "${file#./}") $name")
done < <(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . | sort)

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no Fuzz targets found"
	exit 0
fi
echo "fuzz: ${#targets[@]} targets, $fuzztime each, $parallel worker(s)"
failed=()
for entry in "${targets[@]}"; do
	read -r pkg name <<<"$entry"
	echo "fuzz: $pkg $name"
	# A failure leaves its input in the package's testdata/fuzz/$name, where
	# `go test` replays it from then on.
	dir=$(go list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$name
	before=$(ls "$dir" 2>/dev/null | sort || true)
	out=$(mktemp)
	if go test -vet=off -tags "$tags" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel "$parallel" "$pkg" 2>&1 | tee "$out"; then
		rm -f "$out"
		continue
	fi
	after=$(ls "$dir" 2>/dev/null | sort || true)
	# Go 1.26's fuzz coordinator can report its own -fuzztime deadline as a
	# failure when a worker is slow to stop (go.dev/issue/75804, fixed in Go
	# 1.27). That failure writes no input and says only "context deadline
	# exceeded"; the fuzzing itself ran its full time. Anything else fails.
	if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' "$out" &&
		! grep -qE '^\s+--- FAIL|panic:|Failing input written' "$out"; then
		echo "fuzz: $name: the coordinator's deadline race (go.dev/issue/75804), no failing input; counted as passed"
	else
		failed+=("$pkg $name")
	fi
	rm -f "$out"
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
