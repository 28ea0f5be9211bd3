#!/usr/bin/env bash
# ensure-postgres.sh: make sure this machine can run a throwaway PostgreSQL
# (internal/pgtemp): the server binaries initdb, pg_ctl and postgres, and,
# for runs as root, the `postgres` OS user the server runs as.
#
# Idempotent: when everything is there it changes nothing. When the binaries
# are missing it installs Debian's postgresql package; if that install
# started the package's default cluster, the cluster is stopped again (pgtemp
# never uses it, and it would hold port 5432 for nothing).
set -euo pipefail

say() { printf 'ensure-postgres: %s\n' "$*"; }
die() { printf 'ensure-postgres: error: %s\n' "$*" >&2; exit 1; }

# find_bindir prints the first directory holding initdb, pg_ctl and
# postgres, searched as pgtemp searches: PATH, then /usr/lib/postgresql/*/bin
# highest version first.
find_bindir() {
	local initdb dir
	if initdb=$(command -v initdb 2>/dev/null); then
		dir=$(dirname -- "$(readlink -f -- "$initdb")")
		if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
			printf '%s\n' "$dir"
			return 0
		fi
	fi
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r); do
		if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
			printf '%s\n' "$dir"
			return 0
		fi
	done
	return 1
}

# as_root runs a command as root: directly, or through sudo.
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run: $* (run as root or install sudo)"
	fi
}

installed=0
if bindir=$(find_bindir); then
	say "PostgreSQL server binaries found in $bindir ($("$bindir/postgres" --version))"
else
	command -v apt-get >/dev/null 2>&1 ||
		die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found and this is not a Debian-like system: install PostgreSQL with your package manager"
	say "PostgreSQL server binaries not found: installing the postgresql package"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
	installed=1
	bindir=$(find_bindir) || die "postgresql installed, but initdb, pg_ctl and postgres are still not found"
	say "installed PostgreSQL: $bindir ($("$bindir/postgres" --version))"
fi

# As root, pgtemp runs PostgreSQL as the postgres OS user. Debian's package
# creates it; create it when the binaries came from elsewhere.
if id postgres >/dev/null 2>&1; then
	say "OS user postgres exists"
elif [[ $(id -u) -eq 0 ]]; then
	useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql --shell /bin/sh postgres
	say "created OS user postgres (system user)"
else
	say "OS user postgres does not exist; not needed, since PostgreSQL will run as $(id -un)"
fi

# The package's post-install may have started its default cluster (where an
# init system or invoke-rc.d allows it). Stop it: pgtemp starts its own.
# Clusters that were there before this script ran are left alone.
if [[ $installed -eq 1 ]]; then
	stopped=0
	if command -v pg_lsclusters >/dev/null 2>&1; then
		while read -r ver name _port status _rest; do
			if [[ $status == online* ]]; then
				as_root pg_ctlcluster "$ver" "$name" stop || as_root service postgresql stop || true
				say "stopped the cluster $ver/$name that the package install started"
				stopped=1
			fi
		done < <(pg_lsclusters --no-header 2>/dev/null || true)
	fi
	if [[ $stopped -eq 0 ]]; then
		say "no default cluster left running"
	fi
fi
say "ready"
