#!/usr/bin/env bash
# veil-gateway fetches DCAP collateral for its OWN quote (--pccs URL,
# --pccs-cache DIR, as veil-node does for its own) and puts it into its own
# report, the "gateway" member of /v1/attestation/report (cached and per
# nonce).  With the sim TEE the collateral to serve is the sim's own: a
# first gateway keeps its sim keys in --sim-state DIR, its report's
# collateral is taken, and the PCCS stand-in (pccs_server.py) serves it to
# the next gateways with the same keys.  Checked: the PCCS is asked for the
# quote's FMSPC; the cached and nonce reports carry exactly what it served,
# and the extracted gateway report verifies (`veil verify --kind report
# --allow-sim`); the cache file is written; the metrics; a PCCS answering
# 500 leaves the gateway serving, with one warning, its reports without
# collateral (refused by veil verify unless given --collateral); a PCCS
# that hangs does not hold up shutdown; the flags are not in the measured
# configuration.
# Env: VEIL_BIN (dir with veil and veil-gateway).
# shellcheck disable=SC2016,SC2034  # the eval strings expand when run
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

require_built "veil-gateway pccs" "$GW_BIN" "$VEIL"
require_tools "veil-gateway pccs" python3 jq curl openssl
setup_tmp
mkdir -p "$tmp/st" "$tmp/cache"

# start_gw NAME ARGS...: a sim gateway with its keys in $tmp/st; sets U, GPID.
start_gw() {
	local name="$1"
	shift
	start_server "$name" "$GW_BIN" --listen 127.0.0.1:0 --plain-http --tee sim \
		--sim-state "$tmp/st" --db "sqlite:$tmp/$name.db" --registry-poll-ms 0 "$@" &&
		wait_ready "$URL" || return 1
	U="$URL"
	GPID=$PID
}
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }


# cached NAME: the gateway's own report from the cached answer (no nonce)
# into $tmp/NAME.json.
cached() {
	curl -sf -m 10 "$U/v1/attestation/report" | jq '.gateway' >"$tmp/$1.json" 2>/dev/null &&
		jqt -e 'type == "object"' "$tmp/$1.json"
}
cached_has() { cached "$1" && jqt -e '.collateral | type == "object"' "$tmp/$1.json"; }
# nonce_report NAME: the gateway's own report for a fresh nonce $N.
nonce_report() {
	N="$(openssl rand -hex 32)"
	curl -sf -m 10 "$U/v1/attestation/report?nonce=$N" | jq '.gateway' >"$tmp/$1.json" 2>/dev/null &&
		jqt -e 'has("quote")' "$tmp/$1.json"
}
# verify NAME ARGS...: `veil verify` of $tmp/NAME.json for $N (sim allowed).
verify() {
	local f="$1"
	shift
	"$VEIL" verify "$tmp/$f.json" --kind report --nonce "$N" --allow-sim "$@" >"$tmp/$f.verdict" 2>&1
}
# served NAME: $tmp/NAME.json's collateral is what the PCCS served ($tmp/col.json).
served() { collateral_is "$tmp/$1.json" "$tmp/col.json"; }

# ---- 1. a sim gateway without --pccs: its own collateral, to serve --------------------
if ! start_gw a; then
	notok "a sim gateway with --sim-state starts"
	exit 1
fi
check "--sim-state keeps the gateway's sim keys in DIR/sim-tee.pem" test -s "$tmp/st/sim-tee.pem"
check "without --pccs the gateway's report carries the sim's own collateral" cached_has a0
jq '.collateral' "$tmp/a0.json" >"$tmp/col.json"
nonce_report a1
check "without --pccs its nonce report verifies with its own collateral" verify a1
check "the sim gateway without --pccs has no collateral metrics" \
	eval '[ -z "$(metric "$U" veil_gateway_collateral_fetch_failures_total)" ]'
stop "$GPID"
c0="$("$GW_BIN" --tee sim --print-config 2>/dev/null)"
c1="$("$GW_BIN" --tee sim --print-config --pccs http://127.0.0.1:1 --pccs-cache "$tmp/cache" \
	--sim-state "$tmp/st" 2>/dev/null)"
check "--pccs, --pccs-cache and --sim-state are not in the measured configuration" \
	eval '[ -n "$c0" ] && [ "$c0" = "$c1" ]'
"$GW_BIN" --db "sqlite:$tmp/x.db" --tee sim --pccs ftp://x >/dev/null 2>&1
check "--pccs ftp://x is refused (exit 2)" [ $? = 2 ]
"$GW_BIN" --db "sqlite:$tmp/x.db" --tee sim --sim-state "$tmp/nonexistent" >/dev/null 2>&1
check "--sim-state of a missing directory is refused (exit 2)" [ $? = 2 ]
sleep 1 # the next sim makes its own collateral with other times than col.json's

# ---- 2. a PCCS serving it ------------------------------------------------------------
if ! start_pccs good --collateral "$tmp/col.json"; then
	notok "the PCCS stand-in starts"
	exit 1
fi
GOOD_PID=$SPID
if ! start_gw b --pccs "$S" --pccs-cache "$tmp/cache"; then
	notok "a sim gateway with --pccs starts"
	exit 1
fi
ok "a sim gateway with --pccs starts"
check "the cached gateway report gets the fetched collateral" retry 50 0.1 cached_has b0
check "... exactly what the PCCS served (not the sim's own)" served b0
fm="$(jq -r '.tcb_info | fromjson | .fmspc' "$tmp/col.json")"
check "the PCCS was asked for TCB info for the gateway quote's FMSPC ($fm)" \
	grep -q "^GET /tdx/certification/v4/tcb?fmspc=$fm\$" "$tmp/good.req"
nonce_report b1
check "a nonce report's gateway report carries the served collateral" served b1
check "... and verifies (veil verify --kind report --allow-sim)" verify b1
check "... UpToDate" jqt -e '.ok == true and .status == "UpToDate"' "$tmp/b1.verdict"
cf="$tmp/cache/tdx-$(printf '%s' "$fm" | tr 'A-F' 'a-f')-platform.json"
check "the collateral is cached in --pccs-cache ($(basename "$cf"))" \
	jqt -e --slurpfile s "$tmp/col.json" '.tcb_info == $s[0].tcb_info' "$cf"
check "metrics: veil_gateway_collateral_fetch_failures_total 0" \
	[ "$(metric "$U" veil_gateway_collateral_fetch_failures_total)" = 0 ]
check "metrics: veil_gateway_collateral_next_update_seconds more than a day" \
	eval '[ "$(metric "$U" veil_gateway_collateral_next_update_seconds)" -gt 86400 ]'
check "the gateway logs what it fetched" \
	grep -q "gateway.*collateral: DCAP collateral for FMSPC $fm" "$tmp/b.log"
stop "$GPID"
stop "$GOOD_PID"

# ---- 3. a PCCS answering 500 ---------------------------------------------------------
if start_pccs down --status 500 && start_gw c --pccs "$S"; then
	ok "PCCS 500: the gateway starts and is ready"
	check "PCCS 500: a warning is logged" \
		retry 50 0.1 grep -q "warn.*collateral: fetching DCAP collateral.*failed" "$tmp/c.log"
	check "PCCS 500: the warning is logged once" \
		[ "$(grep -c "collateral: fetching DCAP collateral.*failed" "$tmp/c.log")" = 1 ]
	cached c0
	check "PCCS 500: the cached gateway report has no collateral (not the sim's own either)" \
		jqt -e 'has("quote") and (has("collateral") | not)' "$tmp/c0.json"
	nonce_report c1
	check "PCCS 500: nonce reports are served, without collateral" \
		jqt -e 'has("quote") and (has("collateral") | not)' "$tmp/c1.json"
	verify c1
	vrc=$?
	check "PCCS 500: veil verify refuses it: no collateral" eval \
		'[ $vrc = 1 ] && jqt -e ".ok == false and (.error | test(\"no collateral in the report\"))" "$tmp/c1.verdict"'
	check "PCCS 500: ... and accepts it with --collateral" verify c1 --collateral "$tmp/col.json"
	check "PCCS 500: metrics count the failure" \
		eval '[ "$(metric "$U" veil_gateway_collateral_fetch_failures_total)" -ge 1 ]'
	check "PCCS 500: metrics: no collateral (0 s to nextUpdate)" \
		[ "$(metric "$U" veil_gateway_collateral_next_update_seconds)" = 0 ]
	check "the PCCS answering 500 was asked" grep -q "^GET /tdx/certification/v4/tcb" "$tmp/down.req"
	stop "$GPID"
else
	notok "PCCS 500: the PCCS and the gateway start"
fi

# ---- 4. a PCCS that hangs does not hold up shutdown ------------------------------------
if start_pccs slow --collateral "$tmp/col.json" --delay 30 && start_gw f --pccs "$S"; then
	check "hanging PCCS: the PCCS is being asked" retry 50 0.1 grep -q "^GET " "$tmp/slow.req"
	nonce_report f1
	check "hanging PCCS: nonce reports are served meanwhile, without collateral" \
		jqt -e 'has("quote") and (has("collateral") | not)' "$tmp/f1.json"
	t0=$SECONDS
	kill "$GPID"
	wait "$GPID"
	frc=$?
	check "hanging PCCS: SIGTERM stops the gateway in under 5 s, exit 0 (took $((SECONDS - t0)) s, rc $frc)" \
		eval '[ $frc = 0 ] && [ $((SECONDS - t0)) -lt 5 ]'
	# at exit the gateway leaves the fetcher (a CPU worker may still be
	# using it) to the process's end: no wait at all
	check "hanging PCCS: ... without waiting for the fetch (under 2 s)" \
		eval '[ $((SECONDS - t0)) -lt 2 ]'
else
	notok "hanging PCCS: the PCCS and the gateway start"
fi

[ "$fails" -eq 0 ]
