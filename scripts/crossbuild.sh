#!/usr/bin/env bash
# crossbuild.sh [GOOS...]: type-check and vet the whole module, tests
# included, for other operating systems (default: windows and darwin), so
# that platform-specific code stays behind build tags with a fallback.
# Nothing runs and nothing is compiled for them: internal/cmd/crossvet
# (go vet's analyzers, loading every package from source) checks the code
# each GOOS selects in seconds, where `GOOS=windows go vet ./...` first
# compiles every dependency for Windows (minutes on a cold cache).
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(windows darwin)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Built for this machine: GOOS is set only for the checks.
go build -o "$tmp/crossvet" ./internal/cmd/crossvet
for goos in "${targets[@]}"; do
	echo "crossbuild: GOOS=$goos crossvet ./..."
	GOOS=$goos CGO_ENABLED=0 "$tmp/crossvet" ./...
done
echo "crossbuild: ${targets[*]} clean"
