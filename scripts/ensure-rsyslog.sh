#!/usr/bin/env bash
# ensure-rsyslog.sh: make sure rsyslogd and its PostgreSQL output module
# (ompgsql) are here, for benchmark B8, which runs rsyslogd imtcp ->
# ompgsql beside the pipeline. Idempotent; installs Debian's rsyslog and
# rsyslog-pgsql only when missing. rsyslog-pgsql asks (through
# dbconfig-common) to set up a database of its own: answered no, since the
# benchmark gives rsyslogd its own configuration and database.
set -euo pipefail

say() { printf 'ensure-rsyslog: %s\n' "$*"; }

if [ -x /usr/sbin/rsyslogd ] && compgen -G '/usr/lib/*/rsyslog/ompgsql.so' >/dev/null; then
	say "rsyslogd and ompgsql are installed"
	exit 0
fi
say "installing rsyslog and rsyslog-pgsql"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
echo "rsyslog-pgsql rsyslog-pgsql/dbconfig-install boolean false" | "${sudo[@]}" debconf-set-selections
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq rsyslog rsyslog-pgsql
