#!/usr/bin/env bash
# ensure-tools.sh: make sure the tools `make test` needs beyond Go are
# here: a C compiler (the race detector needs cgo), and the real senders
# the end-to-end tests drive (e2e/senders_test.go): util-linux's logger,
# rsyslog with its gtls (GnuTLS) driver, curl and openssl. Idempotent;
# installs Debian's packages only for what is missing. The tests run
# rsyslogd themselves, in the foreground with a configuration of their
# own; the system's rsyslog service is not needed.
set -euo pipefail

say() { printf 'ensure-tools: %s\n' "$*"; }

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
have gcc || missing+=(gcc libc6-dev)
have logger || missing+=(bsdutils)
have rsyslogd || missing+=(rsyslog)
installed rsyslog-gnutls || missing+=(rsyslog-gnutls)
have curl || missing+=(curl)
have openssl || missing+=(openssl)
if [ ${#missing[@]} -eq 0 ]; then
	say "gcc, logger, rsyslogd (with gtls), curl and openssl are installed"
	exit 0
fi
say "installing ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
