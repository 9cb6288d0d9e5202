#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests.
#
#   scripts/pgtemp.sh start DIR   initdb in DIR, start a server on 127.0.0.1 at a
#                                 free port (and a unix socket in DIR), create
#                                 the database "veil"; prints its URI
#                                 postgres://postgres@127.0.0.1:PORT/veil as the
#                                 last line of stdout (also saved in DIR/uri)
#   scripts/pgtemp.sh stop DIR    stop that server and remove DIR
#
# FOR TESTS ONLY: the cluster runs with fsync=off and full_page_writes=off and
# is initialised with --no-sync, so nothing it holds survives a crash of the
# machine; and it trusts every local connection without a password.  Never
# point it at data you care about.  synchronous_commit is left at its default
# (on), so a test still sees the commit semantics a real server gives.
#
# DIR must not exist or be an empty directory (e.g. from mktemp -d).  Run as
# root, the PostgreSQL programs run as the `postgres` user (runuser) and DIR is
# given to it, so DIR's parents must be searchable by that user (/tmp is).
# On any failure the server is stopped and what was created is removed, so
# nothing is left running.  Environment: PGTEMP_BIN overrides the directory of
# initdb/pg_ctl (default: the newest /usr/lib/postgresql/*/bin); PGTEMP_DB
# names the database (default veil).
set -euo pipefail

die() { echo "pgtemp: $*" >&2; exit 1; }

usage() {
	echo "usage: $0 start DIR | stop DIR" >&2
	exit 2
}

[ $# -eq 2 ] || usage
CMD="$1"
DIR="$2"
case "$DIR" in
/*) ;;
*) DIR="$(pwd)/$DIR" ;;
esac
DIR="${DIR%/}"
if [ -z "$DIR" ] || [ "$DIR" = "/" ]; then die "refusing DIR '/'"; fi
case "$DIR" in
*[\'\"\ \\]* | *[[:cntrl:]]*) die "DIR must not hold quotes, spaces or backslashes: $DIR" ;;
esac

find_bin() {
	local d best=""
	if [ -n "${PGTEMP_BIN:-}" ]; then
		[ -x "$PGTEMP_BIN/initdb" ] || die "PGTEMP_BIN=$PGTEMP_BIN has no initdb"
		echo "$PGTEMP_BIN"
		return
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
		[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && best="$d"
	done
	[ -n "$best" ] || die "no PostgreSQL server programs (/usr/lib/postgresql/*/bin/initdb); install postgresql"
	echo "$best"
}

# Runs a PostgreSQL program as the cluster's owner: postgres when we are root
# (the server refuses to run as root), ourselves otherwise.
AS=()
if [ "$(id -u)" -eq 0 ]; then
	id postgres >/dev/null 2>&1 || die "running as root, but there is no postgres user"
	AS=(runuser -u postgres --)
fi
as_owner() { "${AS[@]}" "$@"; }

free_port() {
	# Ask the kernel for a free port; the server binds it a moment later (a
	# race with other programs, retried by the caller).
	if command -v python3 >/dev/null; then
		python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
	else
		echo $((20000 + RANDOM % 40000))
	fi
}

cmd_stop() {
	local bin pid
	[ -d "$DIR" ] || return 0
	# A start that failed leaves DIR empty (when DIR was given existing).
	if [ -z "$(ls -A "$DIR")" ]; then rmdir -- "$DIR"; return 0; fi
	[ -f "$DIR/.pgtemp" ] || die "$DIR was not made by pgtemp.sh; not removing it"
	bin="$(cat "$DIR/.pgtemp")"
	if [ -f "$DIR/data/postmaster.pid" ]; then
		# immediate: the data is thrown away next, no shutdown checkpoint.
		if ! as_owner "$bin/pg_ctl" -D "$DIR/data" -m immediate -w -t 20 stop >/dev/null 2>&1; then
			pid="$(head -n 1 "$DIR/data/postmaster.pid" 2>/dev/null || true)"
			if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
				kill -QUIT "$pid" 2>/dev/null || true
				for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			fi
		fi
	fi
	rm -rf -- "$DIR"
}

# Globals, not locals: the EXIT trap reads them after cmd_start has returned
# or exited.
BIN="" CREATED=0 STARTED=0
cmd_start() {
	local port sock_len try db="${PGTEMP_DB:-veil}"
	BIN="$(find_bin)"
	if [ -e "$DIR" ]; then
		[ -d "$DIR" ] || die "$DIR exists and is not a directory"
		[ -z "$(ls -A "$DIR")" ] || die "$DIR is not empty"
	else
		mkdir -p -- "$DIR"
		CREATED=1
	fi
	# From here on, a failure stops what was started and removes what was
	# made.
	cleanup() {
		local rc=$?
		if [ "$rc" -ne 0 ]; then
			if [ "$STARTED" -eq 1 ]; then
				as_owner "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
			fi
			if [ -f "$DIR/log" ]; then
				echo "pgtemp: server log (last 20 lines):" >&2
				tail -n 20 "$DIR/log" >&2 || true
			fi
			if [ "$CREATED" -eq 1 ]; then
				rm -rf -- "$DIR"
			else
				find "$DIR" -mindepth 1 -delete 2>/dev/null || true
			fi
		fi
		exit "$rc"
	}
	trap cleanup EXIT
	trap 'exit 1' INT TERM HUP

	echo "$BIN" >"$DIR/.pgtemp"
	chmod 0700 "$DIR"
	if [ ${#AS[@]} -gt 0 ]; then
		chown postgres: "$DIR" "$DIR/.pgtemp"
		as_owner test -w "$DIR" ||
			die "the postgres user cannot reach $DIR; use a DIR whose parents it may search (e.g. under /tmp)"
	fi

	# --no-sync: FOR TESTS ONLY (see the top of this file).
	as_owner "$BIN/initdb" -D "$DIR/data" --no-sync -A trust -U postgres \
		-E UTF8 --locale=C --no-instructions >"$DIR/initdb.log" 2>&1 ||
		{ cat "$DIR/initdb.log" >&2; die "initdb failed"; }
	cat >"$DIR/data/pg_hba.conf" <<-'EOF'
	# pgtemp: local connections only, no password (tests)
	local all all trust
	host  all all 127.0.0.1/32 trust
	EOF

	for try in 1 2 3 4 5; do
		port="$(free_port)"
		# The unix socket DIR/.s.PGSQL.PORT must fit sun_path (108 bytes).
		sock_len=$(( ${#DIR} + 12 + ${#port} ))
		[ "$sock_len" -lt 108 ] || die "$DIR is too long for a unix socket path"
		# fsync/full_page_writes off: FOR TESTS ONLY (see the top).
		cat >"$DIR/data/postgresql.auto.conf" <<-EOF
		listen_addresses = '127.0.0.1'
		port = $port
		unix_socket_directories = '$DIR'
		fsync = off
		full_page_writes = off
		shared_buffers = 32MB
		max_connections = 60
		log_min_messages = warning
		log_line_prefix = '%m [%p] '
		EOF
		if [ ${#AS[@]} -gt 0 ]; then chown postgres: "$DIR/data/postgresql.auto.conf"; fi
		STARTED=1
		if as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -t 30 start >/dev/null 2>&1; then
			break
		fi
		as_owner "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
		STARTED=0
		grep -q 'could not bind\|Address already in use\|could not create any TCP/IP sockets' "$DIR/log" 2>/dev/null ||
			die "the server did not start"
		[ "$try" -lt 5 ] || die "no free port after $try tries"
	done

	if [ "$db" != "postgres" ]; then
		as_owner "$BIN/createdb" -h "$DIR" -p "$port" -U postgres "$db" ||
			die "createdb $db failed"
	fi
	echo "postgres://postgres@127.0.0.1:$port/$db" >"$DIR/uri"
	trap - EXIT INT TERM HUP
	cat "$DIR/uri"
}

case "$CMD" in
start) cmd_start ;;
stop) cmd_stop ;;
*) usage ;;
esac
