#!/usr/bin/env bash
# ensure-tools.sh: make sure the build tools `make test` needs beyond Go
# are here: a C compiler (the race detector needs cgo) and util-linux's
# logger (the syslog end-to-end test sends with it). Idempotent; installs
# Debian's packages only for what is missing.
set -euo pipefail

say() { printf 'ensure-tools: %s\n' "$*"; }

missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v logger >/dev/null 2>&1 || missing+=(bsdutils)
if [ ${#missing[@]} -eq 0 ]; then
	say "gcc and logger are installed"
	exit 0
fi
say "installing ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}"
