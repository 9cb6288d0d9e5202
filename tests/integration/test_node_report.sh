#!/usr/bin/env bash
# veil-node's nonce attestation reports are made off the event loop and
# bounded: with the sim TEE slowed down to a real quote's pace and beyond
# (VEIL_SIM_QUOTE_DELAY_MS, a sim-only test knob), a report being made must
# not hold up /healthz, the cached report or a streamed completion; more
# than the cap (8) pending gets 503 attestation_busy with Retry-After; the
# reports that were made verify with `veil verify`; clients that leave while
# their report is made, and a SIGTERM while reports are pending, are safe.
# Env: VEIL_BIN (dir with veil and veil-node), VEIL_SHARED (default ../shared).
# shellcheck disable=SC2016  # the eval / bash -c strings expand when run
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

require_built "veil-node" "$NODE_BIN" "$VEIL"
skip_unless_shared "veil-node reports" "$MODEL"
setup_tmp

DELAY_MS=1500   # each sim quote; a real TDX quote is tens of ms
CAP=8           # ATTEST_MAX_PENDING in src/node/attest.c
FAST=0.8        # seconds: what must not wait for a report

# start_node NAME: a sim node whose quotes take DELAY_MS; sets U and NPID.
start_node() {
	start_server "$1" env VEIL_SIM_QUOTE_DELAY_MS=$DELAY_MS "$NODE_BIN" --listen 127.0.0.1:0 \
		--tee sim --threads 1 --model "$MODEL" --plain-http --allow-plaintext &&
		wait_ready "$URL" || return 1
	U="$URL"
	NPID=$PID
}

# lt A B: A < B (decimals).
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
# status W: the status of "STATUS SECONDS" in W; seconds W: the seconds.
status() { printf '%s' "${1% *}"; }
seconds() { printf '%s' "${1#* }"; }
# fast W: W is a 200 that took less than FAST seconds.
fast() { [ "$(status "$1")" = 200 ] && lt "$(seconds "$1")" "$FAST"; }
# code NAME: the status of $tmp/NAME.w (report_bg).
code() { cut -d' ' -f1 "$tmp/$1.w"; }

# report_bg NAME NONCE: GET a nonce report in the background into
# $tmp/NAME.json, its status and seconds in $tmp/NAME.w; sets CPID.
report_bg() {
	curl -s -m 60 -D "$tmp/$1.h" -o "$tmp/$1.json" -w '%{http_code} %{time_total}' \
		"$U/v1/attestation/report?nonce=$2" >"$tmp/$1.w" 2>/dev/null &
	CPID=$!
}

# verifies NAME NONCE: $tmp/NAME.json is a report that `veil verify` accepts
# for NONCE (sim allowed).
verifies() {
	"$VEIL" verify "$tmp/$1.json" --kind report --nonce "$2" --allow-sim >/dev/null 2>&1
}

if ! start_node rep; then
	notok "a sim node with VEIL_SIM_QUOTE_DELAY_MS=$DELAY_MS starts"
	exit 1
fi
ok "a sim node with VEIL_SIM_QUOTE_DELAY_MS=$DELAY_MS starts"
check "the node warns that sim quotes are slowed down" grep -q "VEIL_SIM_QUOTE_DELAY_MS" "$tmp/rep.log"

# ---- a report being made does not block the loop --------------------------------
n0="$(openssl rand -hex 32)"
report_bg r0 "$n0"
sleep 0.2   # the report is being made from here on for ~1.3 s
# the three at once, each on its own connection: each must be fast on its own
curl -s -m 10 -o /dev/null -w '%{http_code} %{time_total}' "$U/healthz" >"$tmp/hz.w" &
p1=$!
curl -sN -m 10 -o "$tmp/s0.sse" -w '%{http_code} %{time_total}' -H 'Content-Type: application/json' \
	-d '{"model":"stories260K","prompt":"Once","max_tokens":4,"stream":true}' "$U/v1/completions" >"$tmp/st.w" &
p2=$!
curl -s -m 10 -o "$tmp/cached.json" -w '%{http_code} %{time_total}' "$U/v1/attestation/report" >"$tmp/cr.w" &
p3=$!
wait "$p1" "$p2" "$p3" "$CPID"
hz="$(cat "$tmp/hz.w")" st="$(cat "$tmp/st.w")" cr="$(cat "$tmp/cr.w")" r0="$(cat "$tmp/r0.w")"
echo "# healthz: $hz; stream: $st; cached report: $cr; nonce report: $r0"
check "the nonce report took the sim delay (>= 1.4 s: the knob works)" \
	eval '[ "$(status "$r0")" = 200 ] && ! lt "$(seconds "$r0")" 1.4'
check "/healthz answers within ${FAST}s while a nonce report is made" fast "$hz"
check "a streamed completion finishes within ${FAST}s while a nonce report is made" \
	eval 'fast "$st" && [ "$(tail -c 14 "$tmp/s0.sse")" = "data: [DONE]" ]'
check "the cached report is served within ${FAST}s while a nonce report is made" \
	eval 'fast "$cr" && jqt ".version == \"veil-report/1\"" "$tmp/cached.json"'
check "the nonce report made off the loop verifies (veil verify --allow-sim)" verifies r0 "$n0"
bad="$(printf 'zz%.0s' $(seq 32))"
check "a 64-character nonce that is not hex is a 400" \
	test "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$U/v1/attestation/report?nonce=$bad")" = 400

# ---- more than the cap at once: 503 attestation_busy + Retry-After ----------------
N=12
cpids=()
for i in $(seq 1 $N); do
	nonce[i]="$(openssl rand -hex 32)"
done
for i in $(seq 1 $N); do
	report_bg "c$i" "${nonce[i]}"
	cpids+=("$CPID")
done
# until every request is in (8 pending, the rest refused); the first takes 1.5 s
for _ in $(seq 1 10); do
	sleep 0.1
	mt="$(curl -s -m 10 -o "$tmp/metrics.txt" -w '%{time_total}' "$U/metrics")"
	pend="$(awk '$1 == "veil_node_attestation_reports_pending" { print $2 }' "$tmp/metrics.txt")"
	[ "${pend:-}" = "$CAP" ] && break
done
echo "# /metrics in ${mt}s, reports pending: ${pend:-absent}"
check "/metrics answers within ${FAST}s with $CAP reports pending" lt "$mt" "$FAST"
check "veil_node_attestation_reports_pending is $CAP while the cap is full" test "${pend:-x}" = "$CAP"
wait "${cpids[@]}"
n200=0 n503=0 nother=0 vbad=0 ebad=0
for i in $(seq 1 $N); do
	read -r code _ <"$tmp/c$i.w"
	case "$code" in
	200)
		n200=$((n200 + 1))
		verifies "c$i" "${nonce[i]}" || vbad=$((vbad + 1))
		;;
	503)
		n503=$((n503 + 1))
		jq -e '.error.code == "attestation_busy" and (.error.message | length > 0)' "$tmp/c$i.json" \
			>/dev/null 2>&1 && grep -qi '^retry-after: *[0-9]' "$tmp/c$i.h" || ebad=$((ebad + 1))
		;;
	*) nother=$((nother + 1)) ;;
	esac
done
echo "# $N concurrent nonce reports: $n200 x 200, $n503 x 503, $nother other"
check "$N concurrent nonce reports: at least $CAP made, some refused, nothing else" \
	eval '[ "$n200" -ge "$CAP" ] && [ "$n503" -ge 1 ] && [ "$nother" -eq 0 ]'
check "every refused one is a 503 attestation_busy in OpenAI's shape with Retry-After" test "$ebad" -eq 0
check "every report made under load verifies with its own nonce" test "$vbad" -eq 0
busy="$(metric "$U" veil_node_attestation_busy_total)"
check "veil_node_attestation_busy_total counts the refusals" test "${busy:-x}" = "$n503"

# ---- clients that leave while their report is made --------------------------------
for i in 1 2 3; do
	curl -s -m 0.3 -o /dev/null "$U/v1/attestation/report?nonce=$(openssl rand -hex 32)" 2>/dev/null
done
left="$(metric "$U" veil_node_attestation_reports_pending)"
check "three clients left while their reports were being made (pending: ${left:-absent})" \
	test "${left:-0}" -ge 1
for _ in $(seq 1 100); do
	[ "$(metric "$U" veil_node_attestation_reports_pending)" = 0 ] && break
	sleep 0.1
done
check "reports whose clients left are dropped: none pending afterwards" \
	test "$(metric "$U" veil_node_attestation_reports_pending)" = 0
n1="$(openssl rand -hex 32)"
report_bg r1 "$n1"
wait "$CPID"
check "the node still makes reports after clients left, and they verify" \
	eval '[ "$(code r1)" = 200 ] && verifies r1 "$n1"'

# ---- SIGTERM while reports are pending: they are answered, the node exits 0 -------
n2="$(openssl rand -hex 32)"
n3="$(openssl rand -hex 32)"
report_bg r2 "$n2"; p2=$CPID
report_bg r3 "$n3"; p3=$CPID
sleep 0.3
kill -TERM "$NPID"
wait "$p2" "$p3"
for _ in $(seq 1 100); do kill -0 "$NPID" 2>/dev/null || break; sleep 0.1; done
wait "$NPID"; rc=$?
check "SIGTERM: the two nonce reports pending are still answered, and they verify" \
	eval '[ "$(code r2)" = 200 ] && [ "$(code r3)" = 200 ] && verifies r2 "$n2" && verifies r3 "$n3"'
check "SIGTERM: the node exits 0 after its reports" bash -c '[ "$0" -eq 0 ] && grep -q "node: stopped" "$1"' \
	"$rc" "$tmp/rep.log"
check "no sanitizer report in the node's log" bash -c '! grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$0"' \
	"$tmp/rep.log"

# ---- SIGTERM twice (forced) while a report is pending: no crash, exit 0 -------------
if start_node forced; then
	report_bg r4 "$(openssl rand -hex 32)"; p4=$CPID
	sleep 0.3
	kill -TERM "$NPID"; sleep 0.05; kill -TERM "$NPID"
	wait "$p4"
	for _ in $(seq 1 100); do kill -0 "$NPID" 2>/dev/null || break; sleep 0.1; done
	wait "$NPID"; rc=$?
	check "two SIGTERMs with a report pending: the node exits 0 (the report is dropped or answered)" \
		bash -c '[ "$0" -eq 0 ] && ! grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$1"' "$rc" "$tmp/forced.log"
else
	notok "a second sim node starts"
fi

# ---- a burst of gateway reports: no node left out ----------------------------------
# Each fresh gateway report asks every node for a report with its nonce; a
# burst of 12 would be 12 at once at a node that takes 8 (4 of them left
# out of their reports): the gateway asks a node for at most 4 at a time.
if [ -x "$GW_BIN" ] &&
	start_server burst env VEIL_SIM_QUOTE_DELAY_MS=300 "$NODE_BIN" --listen 127.0.0.1:0 \
		--tee sim --threads 1 --model "$MODEL"; then
	printf '[{"url": "https://127.0.0.1:%s", "model": "stories260K", "id": "b"}]\n' "$PORT" >"$tmp/nodes.json"
	if start_server gw "$GW_BIN" --listen 127.0.0.1:0 --plain-http --db "sqlite:$tmp/gw.db" \
		--nodes "$tmp/nodes.json" --allow-sim; then
		G="$URL"
		for _ in $(seq 1 100); do
			[ "$(curl -s -m 10 "$G/v1/attestation/report" | jq '.nodes | length' 2>/dev/null)" = 1 ] && break
			sleep 0.1
		done
		gpids=()
		for i in $(seq 1 12); do
			gn[i]="$(openssl rand -hex 32)"
			curl -s -m 60 -o "$tmp/g$i.json" "$G/v1/attestation/report?nonce=${gn[i]}" &
			gpids+=("$!")
		done
		wait "${gpids[@]}"
		whole=0
		for i in $(seq 1 12); do
			jq -e --arg n "${gn[i]}" '(.nodes | length) == 1 and .nodes[0].report.nonce == $n' \
				"$tmp/g$i.json" >/dev/null 2>&1 && whole=$((whole + 1))
		done
		echo "# 12 fresh gateway reports at once: $whole carry the node's report"
		check "12 fresh gateway reports at once each carry the node's report with their nonce" \
			test "$whole" -eq 12
		NU="https://127.0.0.1:$(sed 's/.*127.0.0.1:\([0-9]*\).*/\1/' "$tmp/nodes.json")"
		# Others fill the node's 8 report slots (2 more are refused): the
		# gateway's fresh report meets 503 attestation_busy, asks again
		# while its time lasts, and still carries the node.
		fpids=()
		for i in $(seq 1 10); do
			curl -sk -m 30 -o /dev/null "$NU/v1/attestation/report?nonce=$(openssl rand -hex 32)" &
			fpids+=("$!")
		done
		for _ in $(seq 1 50); do
			[ "$(curl -sk -m 5 "$NU/metrics" | awk '$1 == "veil_node_attestation_reports_pending" { print $2 }')" = 8 ] && break
			sleep 0.05
		done
		gnb="$(openssl rand -hex 32)"
		curl -s -m 60 -o "$tmp/gbusy.json" "$G/v1/attestation/report?nonce=$gnb"
		wait "${fpids[@]}"
		check "a fresh gateway report asks a node busy with others' reports (503) again, and carries it" \
			bash -c 'jq -e --arg n "$0" "(.nodes | length) == 1 and .nodes[0].report.nonce == \$n" "$1" >/dev/null &&
				grep -q "busy making reports (503); its fresh report is asked again" "$2"' \
			"$gnb" "$tmp/gbusy.json" "$tmp/gw.log"
		# Anyone may keep the node's report slots full: the re-checks of a
		# gateway (every 2 s here) then get 503, which is not a failed
		# attestation; the node stays in rotation.
		if start_server gw2 "$GW_BIN" --listen 127.0.0.1:0 --plain-http --db "sqlite:$tmp/gw2.db" \
			--nodes "$tmp/nodes.json" --allow-sim --reverify-s 2; then
			G2="$URL"
			for _ in $(seq 1 100); do
				[ "$(curl -s -m 10 "$G2/v1/models" | jq '.data | length' 2>/dev/null)" = 1 ] && break
				sleep 0.1
			done
			end=$((SECONDS + 5))
			apids=()
			# twice the node's 8 report slots: a slot that frees is taken
			# again before a re-check can slip in (10 let one through on a
			# loaded machine, and the re-check then never met a 503)
			for i in $(seq 1 16); do
				(while [ $SECONDS -lt $end ]; do
					curl -sk -m 5 -o /dev/null "$NU/v1/attestation/report?nonce=$(openssl rand -hex 32)"
				done) &
				apids+=("$!")
			done
			gone=0
			for _ in $(seq 1 5); do
				sleep 1
				[ "$(curl -s -m 5 "$G2/v1/models" | jq '.data | length' 2>/dev/null)" = 1 ] || gone=$((gone + 1))
			done
			wait "${apids[@]}"
			busy="$(curl -sk -m 10 "$NU/metrics" | awk '$1 == "veil_node_attestation_busy_total" { print $2 }')"
			echo "# 5 s of report requests kept the node busy (${busy:-?} refused); seconds out of rotation: $gone"
			check "a gateway's re-check met the busy node (503) and said so" \
				grep -q "busy making reports" "$tmp/gw2.log"
			check "a node kept busy with reports stays in the gateway's rotation" \
				bash -c '[ "$0" -eq 0 ] && ! grep -q "attestation FAILED" "$1"' "$gone" "$tmp/gw2.log"
		else
			notok "a second gateway (re-checks every 2 s) starts"
		fi
	else
		notok "a gateway in front of the slow-quote node starts"
	fi
else
	notok "a node (TLS) and veil-gateway for the burst start"
fi

[ "$fails" -eq 0 ]
