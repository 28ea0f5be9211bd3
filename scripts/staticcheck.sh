#!/usr/bin/env bash
# staticcheck.sh ARGS...: run staticcheck, installing the pinned version
# into GOBIN (or GOPATH/bin, ~/go/bin by default) when it is missing or
# another version.
set -euo pipefail
version=0.8.2
bindir=$(go env GOBIN)
[ -n "$bindir" ] || bindir=$(go env GOPATH)/bin
bin=$bindir/staticcheck
if ! [ -x "$bin" ] || ! "$bin" -version 2>/dev/null | grep -qF "($version)"; then
	echo "installing staticcheck v$version into $bindir" >&2
	go install "honnef.co/go/tools/cmd/staticcheck@v$version"
fi
exec "$bin" "$@"
