#!/usr/bin/env bash
# crossbuild.sh [GOOS...]: build and vet the whole module, tests included,
# for other operating systems (default: windows and darwin), so that
# platform-specific code stays behind build tags with a fallback. Nothing
# runs: this checks that everything compiles and vets cleanly there.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(windows darwin)
for goos in "${targets[@]}"; do
	echo "crossbuild: GOOS=$goos go build ./... && go vet ./..."
	GOOS=$goos CGO_ENABLED=0 go build ./...
	GOOS=$goos CGO_ENABLED=0 go vet ./...
done
echo "crossbuild: ${targets[*]} clean"
