#!/usr/bin/env bash
# ensure-chromium.sh: make sure a headless Chromium is here for the
# dashboard's browser test (e2e, driven through chromedp). Idempotent:
# installs Debian's chromium package only when no chromium is found.
set -euo pipefail

say() { printf 'ensure-chromium: %s\n' "$*"; }

for c in chromium chromium-browser google-chrome; do
	if p=$(command -v "$c" 2>/dev/null); then
		say "found $p ($("$p" --version 2>/dev/null || echo 'version unknown'))"
		exit 0
	fi
done
command -v apt-get >/dev/null 2>&1 ||
	{ printf 'ensure-chromium: error: chromium not found and this is not a Debian-like system: install Chromium\n' >&2; exit 1; }
say "chromium not found: installing Debian's chromium package"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium
say "installed $(command -v chromium) ($(chromium --version 2>/dev/null || echo 'version unknown'))"
