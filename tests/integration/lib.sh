# shellcheck shell=bash disable=SC2034  # the variables are for the tests that source this file
# Helpers shared by the integration tests (tests/integration/test_*.sh).
# Sourced, never run: scripts/run-tests.sh runs only test_*.sh.
#
#   set -uo pipefail
#   cd "$(dirname "$0")/../.." || exit 1      # the repository root
#   . tests/integration/lib.sh
#
# (a test that does not need the repository root sources
# "$(dirname "$0")/lib.sh" instead; have_node_modules and pg_start name paths
# from the root, so they need it).  Sourcing defines the functions below and
# these variables:
#
#   VEIL_BIN     directory of the binaries (default build/bin)
#   VEIL_SHARED  the shared models and vectors (default ../shared)
#   VEIL NODE_BIN GW_BIN PROXY_BIN   $VEIL_BIN/veil, veil-node, veil-gateway,
#                veil-proxy
#   MODEL        $VEIL_SHARED/models/stories260K.gguf
#   fails        the number of "not ok" lines so far; a test ends with
#                [ "$fails" -eq 0 ] (or exit $((fails > 0)))
#
# (VEIL_BIN and VEIL_SHARED keep the values the environment gives them; the
# rest are set from those two.)
#
# Processes: start_server runs servers in the background, each on port 0 of
# 127.0.0.1, and reads the port from its log; setup_tmp makes $tmp and an
# EXIT trap that stops every pid in the array `pids` (start_server adds to
# it, a test may add its own), runs the at_exit commands and removes $tmp.
# Bash runs that trap on a normal end, on `exit` after a failed step, and
# when SIGTERM or SIGHUP kills the test (a runner's timeout), so no server
# outlives its test; only SIGKILL leaves them behind.

VEIL_BIN="${VEIL_BIN:-build/bin}"
VEIL_SHARED="${VEIL_SHARED:-../shared}"
VEIL="$VEIL_BIN/veil"
NODE_BIN="$VEIL_BIN/veil-node"
GW_BIN="$VEIL_BIN/veil-gateway"
PROXY_BIN="$VEIL_BIN/veil-proxy"
MODEL="$VEIL_SHARED/models/stories260K.gguf"
fails=0

# ---- TAP lines ----------------------------------------------------------------

# ok NAME / notok NAME [DETAIL] / skip NAME WHY: one TAP line each; notok
# counts the failure in $fails (DETAIL, when given, goes in parentheses).
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+ ($2)}"; fails=$((fails + 1)); }
skip() { echo "ok - $1 # SKIP $2"; }

# check NAME CMD...: ok NAME when CMD succeeds, notok NAME when it fails.
check() {
	local _name="$1"
	shift
	if "$@"; then ok "$_name"; else notok "$_name"; fi
}

# jqt ARGS...: `jq -e ARGS` with no output: true when the filter's last value
# is neither false nor null (a file that is not JSON is false too).
jqt() { jq -e "$@" >/dev/null 2>&1; }

# tap_relay: passes the "ok - " / "not ok - " lines read from stdin through
# (counting each "not ok" in $fails) and prints every other line as a "# "
# comment.  Feed it with a here-string (tap_relay <<<"$out"), not a pipe: a
# pipe would run it in a subshell and lose the count.
tap_relay() {
	local line
	while IFS= read -r line; do
		case "$line" in
		"ok - "*) echo "$line" ;;
		"not ok - "*) echo "$line"; fails=$((fails + 1)) ;;
		*) echo "# $line" ;;
		esac
	done
}

# relay_js_client SCRIPT CMD ARGS...: runs `node SCRIPT CMD ARGS...` (a
# tests/js client that prints TAP lines, catches its own exceptions as
# "not ok" lines and exits 0, or 1 when one of its checks failed) and relays
# its output with tap_relay.  Any other ending is a failure of its own: an
# exit status other than 0 or 1, or 1 without a "not ok" line (what node
# does on an error outside the client's checks, e.g. a module that does not
# load).
relay_js_client() {
	local _script="$1" _out _rc _before="$fails"
	shift
	_out="$(node "$_script" "$@" 2>&1)"
	_rc=$?
	tap_relay <<<"$_out"
	if [ "$_rc" -ne 0 ] && [ "$_rc" -ne 1 ]; then
		notok "$1: client exited $_rc"
	elif [ "$_rc" -eq 1 ] && [ "$fails" -eq "$_before" ]; then
		notok "$1: client exited 1 without a failed check"
	fi
}

# ---- what a test needs --------------------------------------------------------

# require_built LABEL PATH...: when a PATH is not an executable, one failure
# "LABEL: PATH1 or PATH2 not built" and exit 1 (a missing binary is a broken
# build, not a reason to skip).
require_built() {
	local label="$1" p missing=0 list=""
	shift
	for p in "$@"; do
		[ -x "$p" ] || missing=1
		list="${list:+$list or }$p"
	done
	if [ "$missing" = 1 ]; then
		notok "$label: $list not built"
		exit 1
	fi
}

# require_tools LABEL TOOL...: when a TOOL is not on PATH, one failure
# "LABEL: TOOL is needed" and exit 1.
require_tools() {
	local label="$1" t
	shift
	for t in "$@"; do
		if ! command -v "$t" >/dev/null 2>&1; then
			notok "$label: $t is needed"
			exit 1
		fi
	done
}

# gw_key DB NAME [ARGS...]: `veil-gateway keys create --db DB --name NAME
# ARGS...`; sets KEY (the key) and KID (its id), or one failure (with the
# command's output as "#" lines) and exit 1.
gw_key() {
	local db="$1" name="$2"
	shift 2
	"$GW_BIN" keys create --db "$db" --name "$name" "$@" >"$tmp/key-$name.out" 2>&1
	KEY="$(tail -n 1 "$tmp/key-$name.out")"
	KID="$(sed -n 's/^created key \([0-9]*\) .*/\1/p' "$tmp/key-$name.out")"
	if ! [[ "$KEY" =~ ^sk-veil- ]] || [ -z "$KID" ]; then
		notok "keys create --name $name $*"
		sed 's/^/#   /' "$tmp/key-$name.out"
		exit 1
	fi
}

# skip_unless_shared LABEL FILE: the test needs FILE from $VEIL_SHARED; when it
# is absent, one skip line for LABEL and exit 0.
skip_unless_shared() {
	if [ ! -f "$2" ]; then
		skip "$1" "$2 missing (set VEIL_SHARED)"
		exit 0
	fi
}

# have_node_modules MODULE...: true when node is on PATH and each MODULE is
# installed in tests/js/node_modules (scripts/deps.sh runs npm ci there).
have_node_modules() {
	local m
	command -v node >/dev/null 2>&1 || return 1
	for m in "$@"; do
		[ -d "tests/js/node_modules/$m" ] || return 1
	done
}

# have_postgres: true when the PostgreSQL server programs scripts/pgtemp.sh
# needs are installed (or $PGTEMP_BIN names them).
have_postgres() {
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -n "${PGTEMP_BIN:-}" ]
}

# ---- temporary directory, processes, cleanup ------------------------------------

pids=()
_lib_at_exit=()

# setup_tmp: makes the test's directory $tmp and installs the EXIT trap that
# stops every pid in `pids` (stop_pids), runs the at_exit commands in order,
# then removes $tmp (KEEP_TMP=1 keeps it: logs and answers to look at).
setup_tmp() {
	tmp="$(mktemp -d)"
	trap _lib_cleanup EXIT
}

# at_exit CMD: a shell command (a string, run with eval) for the EXIT trap,
# after the servers are stopped and before $tmp is removed.
at_exit() { _lib_at_exit+=("$1"); }

_lib_cleanup() {
	local c
	stop_pids
	for c in "${_lib_at_exit[@]}"; do eval "$c"; done
	if [ -n "${KEEP_TMP:-}" ]; then echo "# kept $tmp"; else rm -rf "$tmp"; fi
}

# _lib_child_running PID: PID is a child of this shell that runs (exists, is
# not a zombie).  A pid the test already waited for may have been reused by
# another process by now: that one is not this shell's child, so it is left
# alone.
_lib_child_running() {
	local _s _ppid
	# no fork here: stop_pids polls this for every pid, ten times a second
	{ read -r _s <"/proc/$1/stat"; } 2>/dev/null || return 1
	_s="${_s##*) }"   # after "PID (COMM) ": STATE PPID ...
	_ppid="${_s#* }"
	_ppid="${_ppid%% *}"
	[ "${_s%% *}" != Z ] && [ "$_ppid" = "$$" ]
}

# stop_pids: SIGTERM to every pid in `pids` that still runs; what still runs
# 5 s later (a server stuck in its graceful shutdown) gets SIGKILL; then all
# are reaped.
stop_pids() {
	local _p _left _end=$((SECONDS + 5))
	for _p in "${pids[@]}"; do _lib_child_running "$_p" && kill "$_p" 2>/dev/null; done
	while [ "$SECONDS" -lt "$_end" ]; do
		_left=0
		for _p in "${pids[@]}"; do _lib_child_running "$_p" && _left=1; done
		[ "$_left" = 0 ] && break
		sleep 0.1
	done
	for _p in "${pids[@]}"; do _lib_child_running "$_p" && kill -KILL "$_p" 2>/dev/null; done
	for _p in "${pids[@]}"; do wait "$_p" 2>/dev/null; done
}

# start_server NAME CMD...: runs CMD in the background, stdout and stderr in
# $tmp/NAME.log, its pid added to `pids`; waits (up to 20 s) for the log's
# "listening on http(s)://127.0.0.1:PORT" line, which every veil server
# prints (and so do the tests' relays).  Sets PID, PORT and URL
# (http(s)://127.0.0.1:PORT, as logged).  Fails when CMD exits first or never
# logs the line, with the log's last 5 lines as "# " comments.
start_server() {
	local name="$1" log="$tmp/$1.log"
	shift
	"$@" >"$log" 2>&1 &
	PID=$!
	pids+=("$PID")
	PORT=""
	URL=""
	for _ in $(seq 1 200); do
		URL="$(grep -so 'listening on https\?://127.0.0.1:[0-9]*' "$log" | tail -1 | sed 's/^listening on //')"
		PORT="${URL##*:}"
		[ -n "$PORT" ] && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "# $name did not start:"
	tail -5 "$log" | sed 's/^/#   /'
	return 1
}

# retry TIMES DELAY CMD...: runs CMD up to TIMES times, DELAY seconds apart,
# until it succeeds; fails when it never does.
retry() {
	local _n="$1" _delay="$2" _i
	shift 2
	for ((_i = 1; _i <= _n; _i++)); do
		"$@" && return 0
		[ "$_i" -lt "$_n" ] && sleep "$_delay"
	done
	return 1
}

# _lib_readyz URL: GET URL/readyz answers 200 (any TLS certificate: a node's
# is self-signed, its key is checked against the attestation elsewhere).
_lib_readyz() { [ "$(curl -sk -o /dev/null -w '%{http_code}' "$1/readyz")" = 200 ]; }

# wait_ready URL: waits (up to 10 s) until GET URL/readyz answers 200.
wait_ready() { retry 100 0.1 _lib_readyz "$1"; }

# _lib_gateway_answers URL KEY: a one-token chat request through the gateway
# at URL with API key KEY answers 200.
_lib_gateway_answers() {
	[ "$(curl -s -m 20 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" \
		-H 'Content-Type: application/json' \
		-d '{"model":"stories260K","messages":[{"role":"user","content":"Hi"}],"max_tokens":1}' \
		"$1/v1/chat/completions")" = 200 ]
}

# wait_gateway_answers URL KEY: waits (up to 30 s) until a chat request with
# KEY through the gateway at URL answers 200, i.e. the gateway has verified a
# node serving stories260K.  The request that answers is billed like any
# other: usage counts taken afterwards include it.
wait_gateway_answers() { retry 150 0.2 _lib_gateway_answers "$1" "$2"; }

# free_port: prints a TCP port of 127.0.0.1 that was free a moment ago (for
# programs that cannot listen on port 0 and report the port).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# tls_spki_sha256 PORT: the SHA-256 (hex) of the SubjectPublicKeyInfo of the
# TLS key that answers on 127.0.0.1:PORT, as attestation reports bind it.
tls_spki_sha256() {
	openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null | openssl x509 -pubkey -noout |
		openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1
}

# start_pccs NAME ARGS...: the PCCS stand-in (tests/integration/pccs_server.py,
# ARGS its options) logging its requests to $tmp/NAME.req; sets S (its URL)
# and SPID.
start_pccs() {
	local name="$1"
	shift
	: >"$tmp/$name.req"
	start_server "$name" python3 tests/integration/pccs_server.py --log "$tmp/$name.req" "$@" ||
		return 1
	S="$URL"
	SPID=$PID
}

# collateral_is REPORT COL: the "collateral" of the report in file REPORT is
# the dcap-qvl collateral in file COL (the CRLs compared as DER, whatever
# the hex case).
collateral_is() {
	jq -e --slurpfile s "$2" '
		.collateral as $r | $s[0] as $c |
		all("tcb_info", "tcb_info_signature", "tcb_info_issuer_chain", "qe_identity",
		    "qe_identity_signature", "qe_identity_issuer_chain", "pck_crl_issuer_chain";
		    $r[.] == $c[.]) and
		all("pck_crl", "root_ca_crl"; ($r[.] | ascii_downcase) == ($c[.] | ascii_downcase))' \
		"$1" >/dev/null 2>&1
}

# metric URL NAME: the value of the sample NAME (with its labels, if any) of
# GET URL/metrics; nothing when it is absent.
metric() { curl -s -m 10 "$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }

# pg_start: starts a throwaway PostgreSQL cluster (scripts/pgtemp.sh) in a
# new directory, stopped and removed by the EXIT trap; sets PG_URI
# (postgres://...) and PGBIN (the directory of pg_dump and friends).  On
# failure prints pgtemp's last errors as "# " comments and fails.  Needs
# setup_tmp first.
pg_start() {
	local dir
	dir="$(mktemp -d)"
	at_exit "bash scripts/pgtemp.sh stop '$dir' >/dev/null 2>&1; rm -rf '$dir'"
	if ! PG_URI="$(bash scripts/pgtemp.sh start "$dir" 2>"$tmp/pgtemp.err" | tail -n 1)" ||
		[[ "$PG_URI" != postgres://* ]]; then
		sed 's/^/#   /' "$tmp/pgtemp.err" | tail -n 10
		return 1
	fi
	PGBIN="$(cat "$dir/.pgtemp")"
}
