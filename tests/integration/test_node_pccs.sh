#!/usr/bin/env bash
# veil-node fetches DCAP collateral for its own quotes (--pccs URL,
# --pccs-cache DIR) and puts it into every report, in place of any the
# attester made.  With the sim TEE the collateral to serve is the sim's own:
# a first node keeps its sim keys in --sim-state DIR, its report's collateral
# is taken, and a PCCS stand-in (pccs_server.py, the Intel PCS v4 paths and
# headers of include/veil/pccs.h) serves it to the next nodes with the same
# keys.  Checked: the PCCS is asked; the cached and nonce reports carry
# exactly what it served and verify; the cache file is written and used by
# a restart whose PCCS is gone; a PCCS answering 500 or unreachable leaves
# the node serving, with a warning, and reports without collateral that
# `veil verify` refuses unless given --collateral; a tampered PCCS makes
# reports fail, never pass; a PCCS that hangs holds up neither reports nor
# shutdown; the sim without --pccs is unchanged, and the flags are not in
# the measured configuration; `veil verify --kind tdx --pccs` finds what to
# fetch for a sim quote (the sim's PCK issuer) as for a real one.
# Env: VEIL_BIN (dir with veil and veil-node), VEIL_SHARED (default ../shared).
# shellcheck disable=SC2016,SC2034  # the eval strings expand (and read c0, c1, vrc) when run
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

require_built "veil-node" "$NODE_BIN" "$VEIL"
require_tools "veil-node pccs" python3 jq curl openssl
skip_unless_shared "veil-node pccs" "$MODEL"
setup_tmp
mkdir -p "$tmp/st" "$tmp/cache"

# start_node NAME ARGS...: a sim node with its keys in $tmp/st; sets U, NPID.
start_node() {
	local name="$1"
	shift
	start_server "$name" "$NODE_BIN" --listen 127.0.0.1:0 --tee sim --sim-state "$tmp/st" \
		--threads 1 --model "$MODEL" --plain-http "$@" && wait_ready "$URL" || return 1
	U="$URL"
	NPID=$PID
}
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }


# cached NAME: the report without a nonce into $tmp/NAME.json.
cached() { curl -sf -m 10 -o "$tmp/$1.json" "$U/v1/attestation/report"; }
# cached_has NAME: ... and it carries collateral.
cached_has() { cached "$1" && jqt -e '.collateral | type == "object"' "$tmp/$1.json"; }
# nonce_report NAME: a report for a fresh nonce $N into $tmp/NAME.json.
nonce_report() {
	N="$(openssl rand -hex 32)"
	curl -sf -m 10 -o "$tmp/$1.json" "$U/v1/attestation/report?nonce=$N"
}
# verify NAME ARGS...: `veil verify` of $tmp/NAME.json for $N (sim allowed),
# the verdict in $tmp/NAME.verdict.
verify() {
	local f="$1"
	shift
	"$VEIL" verify "$tmp/$f.json" --kind report --nonce "$N" --allow-sim "$@" >"$tmp/$f.verdict" 2>&1
}
# served NAME: $tmp/NAME.json's collateral is what the PCCS served ($tmp/col.json).
served() { collateral_is "$tmp/$1.json" "$tmp/col.json"; }

# ---- 1. a sim node without --pccs: unchanged, its collateral to serve -------------
if ! start_node a; then
	notok "a sim node with --sim-state starts"
	exit 1
fi
check "--sim-state keeps the sim keys in DIR/sim-tee.pem" test -s "$tmp/st/sim-tee.pem"
check "without --pccs the sim's reports carry the sim's own collateral" cached_has a0
jq '.collateral' "$tmp/a0.json" >"$tmp/col.json"
nonce_report a1
check "without --pccs a nonce report verifies with its own collateral" verify a1
check "the sim node without --pccs has no collateral metrics" \
	eval '[ -z "$(metric "$U" veil_node_collateral_fetch_failures_total)" ]'
stop "$NPID"
c0="$("$NODE_BIN" --model "$MODEL" --tee sim --print-config 2>/dev/null)"
c1="$("$NODE_BIN" --model "$MODEL" --tee sim --print-config --pccs http://127.0.0.1:1 \
	--pccs-cache "$tmp/cache" --sim-state "$tmp/st" 2>/dev/null)"
check "--pccs, --pccs-cache and --sim-state are not in the measured configuration" \
	eval '[ -n "$c0" ] && [ "$c0" = "$c1" ]'
"$NODE_BIN" --model "$MODEL" --tee sim --pccs ftp://x >/dev/null 2>&1
check "--pccs ftp://x is refused (exit 2)" [ $? = 2 ]
"$NODE_BIN" --model "$MODEL" --tee sim --pccs-cache "$tmp/nonexistent" >/dev/null 2>&1
check "--pccs-cache of a missing directory is refused (exit 2)" [ $? = 2 ]
sleep 1 # the next sim makes its own collateral with other times than col.json's

# ---- 2. a PCCS serving it -----------------------------------------------------------
if ! start_pccs good --collateral "$tmp/col.json"; then
	notok "the PCCS stand-in starts"
	exit 1
fi
GOOD="$S" GOOD_PID=$SPID
if ! start_node b --pccs "$GOOD" --pccs-cache "$tmp/cache"; then
	notok "a sim node with --pccs starts"
	exit 1
fi
ok "a sim node with --pccs starts"
check "the cached report gets the fetched collateral" retry 50 0.1 cached_has b0
check "... exactly what the PCCS served (not the sim's own)" served b0
fm="$(jq -r '.tcb_info | fromjson | .fmspc' "$tmp/col.json")"
check "the PCCS was asked for TCB info for the quote's FMSPC ($fm)" \
	grep -q "^GET /tdx/certification/v4/tcb?fmspc=$fm\$" "$tmp/good.req"
check "... the QE identity, the PCK CRL of the platform CA and the root CA CRL" eval \
	'grep -q "^GET /tdx/certification/v4/qe/identity$" "$tmp/good.req" &&
	 grep -q "^GET /sgx/certification/v4/pckcrl?ca=platform&encoding=der$" "$tmp/good.req" &&
	 grep -q "^GET /sgx/certification/v4/rootcacrl$" "$tmp/good.req"'
nonce_report b1
check "a nonce report carries the served collateral" served b1
check "... and verifies (veil verify --kind report --allow-sim)" verify b1
check "... UpToDate" jqt -e '.ok == true and .status == "UpToDate"' "$tmp/b1.verdict"
# veil verify --pccs on the bare sim quote: what to fetch is found from the
# sim's PCK issuer as from Intel's (the verdict then fails: the sim's root
# is not Intel's)
jq -r '.quote' "$tmp/b1.json" | python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read().strip()))' >"$tmp/b1.quote"
mkdir -p "$tmp/vcache"
"$VEIL" verify "$tmp/b1.quote" --kind tdx --pccs "$GOOD" --pccs-cache "$tmp/vcache" >"$tmp/b1q.verdict" 2>&1
check "veil verify --kind tdx --pccs fetches collateral for a sim quote (sim PCK issuer)" \
	eval 'test -s "$tmp/vcache/tdx-$(printf "%s" "$fm" | tr A-F a-f)-platform.json" &&
	      jqt -e ".ok == false and (.error | test(\"not the pinned trust anchor\"))" "$tmp/b1q.verdict"'
cf="$tmp/cache/tdx-$(printf '%s' "$fm" | tr 'A-F' 'a-f')-platform.json"
check "the collateral is cached in --pccs-cache ($(basename "$cf"))" \
	jqt -e --slurpfile s "$tmp/col.json" '.tcb_info == $s[0].tcb_info' "$cf"
check "metrics: no fetch failure" [ "$(metric "$U" veil_node_collateral_fetch_failures_total)" = 0 ]
check "metrics: nextUpdate more than a day away" \
	eval '[ "$(metric "$U" veil_node_collateral_next_update_seconds)" -gt 86400 ]'
check "the node logs what it fetched" grep -q "collateral: DCAP collateral for FMSPC $fm" "$tmp/b.log"
stop "$NPID"
# A cache directory that cannot be written (/proc: not even root creates a
# file there) costs only the cache: the collateral is good and served (it
# used to count as a failed fetch, retried for ever).
if start_node bro --pccs "$GOOD" --pccs-cache /proc; then
	for _ in $(seq 1 50); do cached_has bro0 2>/dev/null && served bro0 && break; sleep 0.1; done
	check "an unwritable --pccs-cache: reports still carry the served collateral, no failure counted" \
		eval 'served bro0 && [ "$(metric "$U" veil_node_collateral_fetch_failures_total)" = 0 ]'
	check "... and the log says it was not cached" grep -q "collateral not cached" "$tmp/bro.log"
	stop "$NPID"
else
	notok "a node with --pccs-cache /proc starts"
fi
stop "$GOOD_PID" # its port is unreachable from here on
DEAD="$GOOD"

# ---- 3. a PCCS answering 500, one unreachable -----------------------------------------
if ! start_pccs down --status 500; then
	notok "the failing PCCS stand-in starts"
	exit 1
fi
for what in 500 unreachable; do
	if [ $what = 500 ]; then url="$S"; else url="$DEAD"; fi
	if ! start_node "c$what" --pccs "$url"; then
		notok "PCCS $what: the node starts"
		continue
	fi
	ok "PCCS $what: the node starts and is ready"
	check "PCCS $what: a warning is logged" \
		retry 50 0.1 grep -q "warn.*collateral: fetching DCAP collateral.*failed" "$tmp/c$what.log"
	check "PCCS $what: the warning is logged once (retries in 30 s)" \
		[ "$(grep -c "collateral: fetching DCAP collateral.*failed" "$tmp/c$what.log")" = 1 ]
	cached "c$what-0"
	check "PCCS $what: the cached report has no collateral (not the sim's own either)" \
		jqt -e 'has("collateral") | not' "$tmp/c$what-0.json"
	nonce_report "c$what-1"
	check "PCCS $what: nonce reports are served, without collateral" \
		jqt -e 'has("quote") and (has("collateral") | not)' "$tmp/c$what-1.json"
	verify "c$what-1"
	vrc=$?
	check "PCCS $what: veil verify refuses it: no collateral" eval \
		'[ $vrc = 1 ] && jqt -e ".ok == false and (.error | test(\"no collateral in the report\"))" "$tmp/c$what-1.verdict"'
	check "PCCS $what: ... and accepts it with --collateral" verify "c$what-1" --collateral "$tmp/col.json"
	check "PCCS $what: metrics count the failure" \
		eval '[ "$(metric "$U" veil_node_collateral_fetch_failures_total)" -ge 1 ]'
	check "PCCS $what: metrics: no collateral (0 s to nextUpdate)" \
		[ "$(metric "$U" veil_node_collateral_next_update_seconds)" = 0 ]
	stop "$NPID"
done
check "the PCCS answering 500 was asked" grep -q "^GET /tdx/certification/v4/tcb" "$tmp/down.req"

# ---- 4. a restart with the PCCS gone uses the cache -----------------------------------
if start_node d --pccs "$DEAD" --pccs-cache "$tmp/cache"; then
	check "PCCS gone, cache fresh: the cached report gets the cached collateral" \
		retry 50 0.1 cached_has d0
	check "... the one served before" served d0
	nonce_report d1
	check "... a nonce report with it verifies" verify d1
	check "... no warning" eval '! grep -q "collateral.*failed" "$tmp/d.log"'
	check "... metrics: no fetch failure" [ "$(metric "$U" veil_node_collateral_fetch_failures_total)" = 0 ]
	stop "$NPID"
else
	notok "PCCS gone, cache fresh: the node starts"
fi

# ---- 5. a tampered PCCS: reports fail, never pass -------------------------------------
jq '.tcb_info_signature |= (if startswith("0") then "1" else "0" end) + .[1:]' \
	"$tmp/col.json" >"$tmp/bad.json"
if start_pccs bad --collateral "$tmp/bad.json" && start_node e --pccs "$S"; then
	check "tampered PCCS: the report carries what it served" retry 50 0.1 cached_has e0
	nonce_report e1
	verify e1
	vrc=$?
	check "tampered PCCS: veil verify refuses the report" eval \
		'[ $vrc = 1 ] && jqt -e ".ok == false" "$tmp/e1.verdict"'
	stop "$NPID"
else
	notok "tampered PCCS: the PCCS and the node start"
fi

# ---- 6. a PCCS that hangs does not hold up start or shutdown --------------------------
if start_pccs slow --collateral "$tmp/col.json" --delay 30 && start_node f --pccs "$S"; then
	ok "hanging PCCS: the node starts and is ready"
	check "hanging PCCS: the PCCS is being asked" retry 50 0.1 grep -q "^GET " "$tmp/slow.req"
	cached f0
	check "hanging PCCS: the cached report is served meanwhile, without collateral" \
		jqt -e 'has("quote") and (has("collateral") | not)' "$tmp/f0.json"
	t0=$SECONDS
	kill "$NPID"
	wait "$NPID"
	frc=$?
	check "hanging PCCS: SIGTERM stops the node in under 5 s, exit 0 (took $((SECONDS - t0)) s, rc $frc)" \
		eval '[ $frc = 0 ] && [ $((SECONDS - t0)) -lt 5 ]'
	check "hanging PCCS: ... without waiting for the fetch" grep -q "not waiting for it" "$tmp/f.log"
else
	notok "hanging PCCS: the PCCS and the node start"
fi

[ "$fails" -eq 0 ]
