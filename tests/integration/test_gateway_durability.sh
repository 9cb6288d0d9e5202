#!/usr/bin/env bash
# veil-gateway durability: an answer a client received complete is a usage
# record that survives the gateway being killed.  Real processes on
# 127.0.0.1: one veil-node (TLS, --tee sim, --allow-plaintext), one
# veil-gateway on a SQLite store (the default backend), concurrent clients
# (tests/js/gateway_load_clients.mjs, streamed and non-streamed requests)
# that record the completion id of every complete answer ("acknowledged");
# three times, the gateway is SIGKILLed in the middle of the load (about 24
# requests in flight) and restarted on the same --db; then every
# acknowledged id must have its usage record (read with python3's sqlite3
# module, and through GET /v1/signature/{id} and GET /v1/usage of the
# restarted gateway).  The gateway completes an answer only once its record
# is durable (src/gateway/relay.c): this is the test of that promise.
# Env: VEIL_BIN (dir with veil-node and veil-gateway), VEIL_SHARED (../shared).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
LOAD=tests/js/gateway_load_clients.mjs
CLIENTS=24

require_built "gateway durability" "$NODE_BIN" "$GW_BIN"
skip_unless_shared "gateway durability" "$MODEL"
if ! command -v node >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
	notok "gateway durability: node (Node.js >= 18) and python3 are needed (scripts/deps.sh)"
	exit 1
fi
setup_tmp

if ! start_server node "$NODE_BIN" --listen 127.0.0.1:0 --tee sim --model "$MODEL" \
	--allow-plaintext --threads 1 --max-batch 8; then
	notok "veil-node starts"
	exit 1
fi
NODE_URL="https://127.0.0.1:$PORT"
printf '[{"url":"%s","model":"stories260K"}]\n' "$NODE_URL" >"$tmp/nodes.json"

DB="sqlite:$tmp/gw.db"
KEY="$("$GW_BIN" keys create --db "$DB" --name durable 2>"$tmp/keys.err" | tail -n 1)"
check "veil-gateway keys create prints a key on its last line" \
	bash -c '[[ "$0" == sk-veil-* ]]' "$KEY"
check "the API-key secret was created next to the database, mode 0600" \
	test "$(stat -c %a "$tmp/gw.db.secret" 2>/dev/null)" = 600

gw_args=(--listen 127.0.0.1:0 --db "$DB" --nodes "$tmp/nodes.json" --allow-sim --plain-http)
if ! start_server gw1 "$GW_BIN" "${gw_args[@]}"; then
	notok "veil-gateway starts"
	exit 1
fi
GW1_PID=$PID
GW1="http://127.0.0.1:$PORT"
if ! wait_gateway_answers "$GW1" "$KEY"; then
	notok "the gateway answers once its node is verified"
	tail -5 "$tmp/gw1.log" | sed 's/^/#   /'
	exit 1
fi
ok "the gateway answers once its node is verified"

# ---- load, then SIGKILL in the middle of it; three times -----------------------------
# Each round: CLIENTS clients send requests back to back; once 40 more
# answers are acknowledged (so that about CLIENTS requests are in flight:
# relayed, being recorded, or their answer on its way), SIGKILL; restart on
# the same --db.
ACK="$tmp/acked.txt"
: >"$ACK"
GW="$GW1"
GW_PID=$GW1_PID
for round in 1 2 3; do
	base_n="$(wc -l <"$ACK")"
	node "$LOAD" "$GW" "$KEY" stories260K "$CLIENTS" 20000 "$ACK" >"$tmp/load$round.json" \
		2>"$tmp/load$round.err" &
	LOAD_PID=$!
	pids+=("$LOAD_PID")
	for _ in $(seq 1 150); do
		[ "$(wc -l <"$ACK")" -ge $((base_n + 40)) ] && break
		sleep 0.1
	done
	kill -KILL "$GW_PID"
	wait "$GW_PID" 2>/dev/null
	wait "$LOAD_PID"
	summary="$(cat "$tmp/load$round.json")"
	echo "# round $round: $summary"
	check "round $round: answers were acknowledged before the kill" \
		test "$(wc -l <"$ACK")" -ge $((base_n + 20))
	check "round $round: the kill cut requests in flight" \
		python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["cut"] > 0 else 1)' "$summary"
	if ! start_server "gw$((round + 1))" "$GW_BIN" "${gw_args[@]}"; then
		notok "round $round: veil-gateway restarts on the same --db after SIGKILL"
		exit 1
	fi
	GW="http://127.0.0.1:$PORT"
	GW_PID=$PID
	check "round $round: veil-gateway restarts on the same --db after SIGKILL and answers" \
		wait_gateway_answers "$GW" "$KEY"
done
GW2="$GW"
acked="$(sort -u "$ACK" | grep -c .)"
check "no acknowledged id appears twice ($acked acknowledged)" test "$(grep -c . "$ACK")" -eq "$acked"

# every acknowledged id has its record (python3's sqlite3 reads the WAL)
python3 - "$tmp/gw.db" "$ACK" >"$tmp/db.out" 2>&1 <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
rows = {r[0]: r for r in db.execute(
    "SELECT request_id, prompt_tokens, completion_tokens, receipt IS NOT NULL FROM usage")}
acked = [l.strip() for l in open(sys.argv[2]) if l.strip()]
missing = [a for a in acked if a not in rows]
bad = [a for a in acked if a in rows and (rows[a][1] <= 0 or rows[a][2] <= 0 or not rows[a][3])]
print("records %d acknowledged %d missing %d bad %d" % (len(rows), len(acked), len(missing), len(bad)))
for m in missing[:5]:
    print("missing", m)
sys.exit(1 if missing or bad else 0)
PY
rc=$?
sed 's/^/# /' "$tmp/db.out"
check "every acknowledged id has a usage record with tokens and its receipt (sqlite3)" test "$rc" -eq 0

# the same through the API of the restarted gateway: /v1/signature/{id} of
# the last acknowledged ids (the ones closest to the kill)
sig_bad=0
sig_n=0
for id in $(tail -n 10 "$ACK"); do
	sig_n=$((sig_n + 1))
	code="$(curl -s -o "$tmp/sig.json" -w '%{http_code}' -H "Authorization: Bearer $KEY" \
		"$GW2/v1/signature/$id?signing_algo=ecdsa")"
	if [ "$code" != 200 ] || ! grep -q "\"text\":\"stories260K:" "$tmp/sig.json"; then
		sig_bad=$((sig_bad + 1))
		echo "# /v1/signature/$id: HTTP $code $(head -c 200 "$tmp/sig.json")"
	fi
done
check "GET /v1/signature/{id} answers for the last $sig_n acknowledged ids" test "$sig_bad" -eq 0

records="$(python3 -c 'import sqlite3,sys; print(sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True).execute("SELECT count(*) FROM usage").fetchone()[0])' "$tmp/gw.db")"
requests="$(curl -s -H "Authorization: Bearer $KEY" "$GW2/v1/usage" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])' 2>/dev/null)"
# the two readiness probes of the restarted gateway add records too
check "GET /v1/usage counts every record ($requests requests, $records records, $acked acknowledged)" \
	bash -c '[ -n "$0" ] && [ "$0" -eq "$1" ] && [ "$0" -ge "$2" ]' "${requests:-x}" "$records" "$acked"

[ "$fails" -eq 0 ]
