#!/usr/bin/env bash
# veil-gateway: usage reports never hold up key lookups (docs/gateway.md,
# "Usage").  GET /v1/usage?from=... sums a key's records over a window, a
# scan of every record in it: about a second for a key with many records.
# Reports run on a worker of their own, so a burst of them (any API key
# holder can send one) cannot stall the query worker that looks up keys and
# takes rate windows for every request (found by review: behind 8 reports a
# key's first request waited seconds).  A full report queue answers 503
# with Retry-After.
#
# No node is needed: a key's first request is looked up in the store before
# anything else, and a chat request for a model nobody serves then answers
# at once (404).  The records are written straight into the SQLite file
# (python3's sqlite3) before the gateway starts.
# Env: VEIL_BIN (veil-gateway), KEEP_TMP=1 keeps the work directory.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

require_built "gateway reports" "$GW_BIN"
require_tools "gateway reports" curl jq python3
setup_tmp

DB="$tmp/gw.db"
gw_key "sqlite:$DB" busy; KA=$KEY; KIDA=$KID
gw_key "sqlite:$DB" other; KB=$KEY
python3 - "$DB" "$KIDA" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
kid = int(sys.argv[2])
db.executemany(
    "INSERT INTO usage(key_id, model, node_id, request_id, prompt_tokens,"
    " completion_tokens, created_ms) VALUES (?, 'm', 'n', ?, 1, 1, ?)",
    ((kid, "chatcmpl-r%d" % i, 1000 + i) for i in range(800000)))
db.commit()
EOF
check "800000 usage records written for one key" test $? -eq 0

if ! start_server gw "$GW_BIN" --listen 127.0.0.1:0 --plain-http --db "sqlite:$DB"; then
	notok "the gateway starts"
	exit 1
fi
G="http://127.0.0.1:$PORT"

# one report alone: how long a scan takes here
t0=$(date +%s%N)
curl -s -m 60 -H "Authorization: Bearer $KA" "$G/v1/usage?from=1" >"$tmp/one.json"
one_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "a report over the window counts every record (${one_ms} ms)" \
	jqt '.requests == 800000' "$tmp/one.json"

# 8 reports at once, then another key's first request (a store lookup)
cp=()
for i in $(seq 1 12); do
	curl -s -m 120 -o "$tmp/r$i.json" -w '%{http_code}\n' -H "Authorization: Bearer $KA" \
		"$G/v1/usage?from=1" >"$tmp/r$i.code" &
	cp+=($!)
done
sleep 0.2
t0=$(date +%s%N)
code="$(curl -s -m 60 -o "$tmp/b.json" -w '%{http_code}' -H "Authorization: Bearer $KB" \
	-H 'Content-Type: application/json' -d '{"model":"nobody","messages":[{"role":"user","content":"hi"}]}' \
	"$G/v1/chat/completions")"
b_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "${cp[@]}"
# behind 12 scans on the query worker it would wait ~10 x one_ms
check "another key's first request is answered while 12 reports run ($code in ${b_ms} ms; one report ${one_ms} ms)" \
	bash -c '[ "$0" = 404 ] && [ "$1" -lt $(( $2 * 2 + 50 )) ]' "$code" "$b_ms" "$one_ms"
check "... and every report answered in full" \
	bash -c 'for i in $(seq 1 12); do [ "$(cat "$0/r$i.code")" = 200 ] && jq -e ".requests == 800000" "$0/r$i.json" >/dev/null || exit 1; done' "$tmp"

# a full report queue: 503 with Retry-After, in OpenAI's error shape
cp=()
for i in $(seq 1 40); do
	curl -s -m 120 -o /dev/null -D "$tmp/h$i" -w '%{http_code}\n' -H "Authorization: Bearer $KA" \
		"$G/v1/usage?from=1" >"$tmp/q$i.code" &
	cp+=($!)
done
wait "${cp[@]}"
busy=$(cat "$tmp"/q*.code | grep -c '^503$')
served=$(cat "$tmp"/q*.code | grep -c '^200$')
check "40 reports at once: some served ($served), the rest 503 ($busy), none lost" \
	bash -c '[ "$0" -ge 1 ] && [ "$1" -ge 1 ] && [ $(( $0 + $1 )) -eq 40 ]' "$served" "$busy"
check "... a refused one says when to retry" \
	bash -c 'grep -l "^HTTP/1.1 503" "$0"/h* | head -1 | xargs grep -qi "^Retry-After: 1"' "$tmp"

echo "# $fails failed"
[ "$fails" -eq 0 ]
