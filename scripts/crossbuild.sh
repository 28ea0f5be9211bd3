#!/usr/bin/env bash
# crossbuild.sh [GOOS...]: type-check and vet the whole module, tests
# included, for other operating systems (default: windows and darwin), so
# that platform-specific code stays behind build tags with a fallback.
# Nothing runs, so nothing is optimized: go vet compiles every package it
# needs with -N -l (no optimization, no inlining), which checks the same
# code at about two thirds of the CPU of an optimized build. go vet
# type-checks every package, test files included, so a separate go build
# would add only the link of the commands.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(windows darwin)
for goos in "${targets[@]}"; do
	echo "crossbuild: GOOS=$goos go vet -gcflags=all='-N -l' ./..."
	GOOS=$goos CGO_ENABLED=0 go vet -gcflags=all='-N -l' ./...
done
echo "crossbuild: ${targets[*]} clean"
