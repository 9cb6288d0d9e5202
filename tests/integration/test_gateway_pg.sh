#!/usr/bin/env bash
# Two veil-gateways sharing one PostgreSQL database (a throwaway cluster
# from scripts/pgtemp.sh) in front of veil-nodes (TLS, --tee sim): one API
# key created with `veil-gateway keys create --db postgres://...` works on
# both; usage from requests through both adds up in /v1/usage on either; a
# key revoked through one gateway's admin API is refused by the other once
# its --key-cache-ms has passed; a node registered through one gateway's
# admin API appears on the other (registry poll) and serves through it; a
# requests-per-minute limit holds across both gateways (total accepted <=
# the limit); and the database holds neither a prompt nor an answer
# (pg_dump | grep).
# Env: VEIL_BIN (dir with veil-node and veil-gateway), VEIL_SHARED (../shared).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
KEY_CACHE_MS=1000
POLL_MS=500
RPM=10

require_built "gateways on PostgreSQL" "$NODE_BIN" "$GW_BIN"
skip_unless_shared "gateways on PostgreSQL" "$MODEL"
if ! have_postgres; then
	skip "gateways on PostgreSQL" "no PostgreSQL server programs (/usr/lib/postgresql/*/bin; apt-get install postgresql)"
	exit 0
fi
setup_tmp

if ! pg_start; then
	notok "a throwaway PostgreSQL starts (scripts/pgtemp.sh)"
	exit 1
fi
ok "a throwaway PostgreSQL starts (scripts/pgtemp.sh)"

# chat URL KEY CONTENT [MAX_TOKENS] : one non-streamed request; the body in
# $tmp/resp.json, prints the HTTP status.
chat() {
	curl -s -o "$tmp/resp.json" -w '%{http_code}' -H "Authorization: Bearer $2" \
		-H 'Content-Type: application/json' \
		-d "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"$3\"}],\"max_tokens\":${4:-4},\"temperature\":0}" \
		"$1/v1/chat/completions"
}

admin() { # METHOD URL PATH [BODY]
	curl -s -X "$1" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
		${4:+-d "$4"} "$2$3"
}

# ---- nodes, keys, gateways ----------------------------------------------------
for i in 1 2; do
	if ! start_server "node$i" "$NODE_BIN" --listen 127.0.0.1:0 --tee sim \
		--model "$MODEL" --allow-plaintext --threads 1; then
		notok "veil-node $i starts"
		exit 1
	fi
	eval "NODE${i}_URL=https://127.0.0.1:$PORT"
done
printf '[{"url":"%s","model":"stories260K"}]\n' "$NODE1_URL" >"$tmp/nodes.json"
head -c 32 /dev/urandom >"$tmp/secret"
chmod 600 "$tmp/secret"
openssl rand -hex 24 >"$tmp/admin.token"
ADMIN="$(cat "$tmp/admin.token")"

"$GW_BIN" keys create --db "$PG_URI" --name nosecret >/dev/null 2>&1
check "keys create on postgres without --secret-file is refused" test $? -ne 0
KEY="$("$GW_BIN" keys create --db "$PG_URI" --secret-file "$tmp/secret" --name x 2>"$tmp/keys.err" | tail -n 1)"
check "veil-gateway keys create --db postgres://... prints a key" bash -c '[[ "$0" == sk-veil-* ]]' "$KEY"

gw_args=(--listen 127.0.0.1:0 --db "$PG_URI" --secret-file "$tmp/secret" --nodes "$tmp/nodes.json"
	--allow-sim --plain-http --admin-token-file "$tmp/admin.token"
	--key-cache-ms "$KEY_CACHE_MS" --registry-poll-ms "$POLL_MS")
for g in A B; do
	if ! start_server "gw$g" "$GW_BIN" "${gw_args[@]}"; then
		notok "veil-gateway $g starts on PostgreSQL"
		exit 1
	fi
	eval "GW_$g=http://127.0.0.1:$PORT"
done
check "gateway A answers with the key made by the CLI" wait_gateway_answers "$GW_A" "$KEY"
check "gateway B answers with the same key" wait_gateway_answers "$GW_B" "$KEY"
check "gateway A logs that its store is PostgreSQL" grep -qi "store: postgres" "$tmp/gwA.log"

# ---- usage adds up -------------------------------------------------------------------
# what /v1/usage says now (the readiness probes count too), then 4 requests
# through A and 3 through B (one streamed each, with its usage chunk)
usage_of() { curl -s -H "Authorization: Bearer $2" "$1/v1/usage"; }
u0="$(usage_of "$GW_A" "$KEY")"
sum_p=0 sum_c=0 n_ok=0
ids_A="" ids_B=""
for gw in "$GW_A" "$GW_A" "$GW_A" "$GW_B" "$GW_B"; do
	if [ "$(chat "$gw" "$KEY" "Once upon a time" 6)" = 200 ]; then
		n_ok=$((n_ok + 1))
		if [ "$gw" = "$GW_A" ]; then ids_A+=" $(jq -r .id "$tmp/resp.json")"
		else ids_B+=" $(jq -r .id "$tmp/resp.json")"; fi
		sum_p=$((sum_p + $(jq .usage.prompt_tokens "$tmp/resp.json")))
		sum_c=$((sum_c + $(jq .usage.completion_tokens "$tmp/resp.json")))
	fi
done
for gw in "$GW_A" "$GW_B"; do
	curl -sN -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
		-d '{"model":"stories260K","messages":[{"role":"user","content":"Hi there"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}' \
		"$gw/v1/chat/completions" >"$tmp/stream.txt"
	if grep -q '^data: \[DONE\]' "$tmp/stream.txt"; then
		n_ok=$((n_ok + 1))
		u="$(grep '^data: {' "$tmp/stream.txt" | sed 's/^data: //' | jq -s 'map(select(.usage != null)) | last | .usage')"
		sum_p=$((sum_p + $(jq .prompt_tokens <<<"$u")))
		sum_c=$((sum_c + $(jq .completion_tokens <<<"$u")))
	fi
done
check "7 requests through A and B answered" test "$n_ok" -eq 7
for g in A B; do
	eval "url=\$GW_$g"
	u1="$(usage_of "$url" "$KEY")"
	check "/v1/usage on $g adds the requests of both gateways (+$n_ok requests, +$sum_p prompt, +$sum_c completion tokens)" \
		jqt -n --argjson a "$u0" --argjson b "$u1" --argjson n "$n_ok" --argjson p "$sum_p" --argjson c "$sum_c" \
		'$b.requests - $a.requests == $n and $b.prompt_tokens - $a.prompt_tokens == $p and $b.completion_tokens - $a.completion_tokens == $c'
done

# ---- revocation through A reaches B ---------------------------------------------------
admin POST "$GW_A" /admin/keys '{"name":"to-revoke"}' >"$tmp/k2.json"
K2="$(jq -r .key "$tmp/k2.json")"
K2_ID="$(jq -r .id "$tmp/k2.json")"
check "POST /admin/keys on A creates a key" bash -c '[[ "$0" == sk-veil-* ]]' "$K2"
check "the new key works on B (and is now in B's key cache)" test "$(chat "$GW_B" "$K2" Hi 1)" = 200
admin POST "$GW_A" "/admin/keys/$K2_ID/revoke" >"$tmp/rev.json"
t_rev="$(date +%s%N)"
check "POST /admin/keys/{id}/revoke on A" jqt '.revoked != null' "$tmp/rev.json"
check "A refuses the revoked key at once (401)" test "$(chat "$GW_A" "$K2" Hi 1)" = 401
# B may accept it from its cache for up to --key-cache-ms, never longer
refused_ms=""
for _ in $(seq 1 60); do
	if [ "$(chat "$GW_B" "$K2" Hi 1)" = 401 ]; then
		refused_ms=$(( ($(date +%s%N) - t_rev) / 1000000 ))
		break
	fi
	sleep 0.1
done
echo "# B refused the revoked key ${refused_ms:-never} ms after the revocation (--key-cache-ms $KEY_CACHE_MS)"
check "B refuses the key revoked on A within --key-cache-ms (+1 s slack)" \
	bash -c '[ -n "$0" ] && [ "$0" -le $(( $1 + 1000 )) ]' "$refused_ms" "$KEY_CACHE_MS"
check "B's refusal of the revoked key is a 401 in OpenAI's error shape" \
	jqt '.error.message and .error.type' "$tmp/resp.json"

# ---- a node registered through A appears on B -------------------------------------------
admin POST "$GW_A" /admin/nodes "{\"url\":\"$NODE2_URL\",\"model\":\"stories260K\",\"id\":\"node-two\"}" >"$tmp/n2.json"
check "POST /admin/nodes on A registers node 2" jqt '.id == "node-two"' "$tmp/n2.json"
seen=0
for _ in $(seq 1 100); do
	admin GET "$GW_B" /admin/nodes >"$tmp/nodesB.json"
	if jqt '.data | map(select(.id == "node-two" and .verified and .usable)) | length == 1' "$tmp/nodesB.json"; then
		seen=1
		break
	fi
	sleep 0.1
done
check "node 2 appears on B, verified and usable (registry poll)" test "$seen" -eq 1
# B routes to it: with node 1 drained on B, answers come from node 2
admin POST "$GW_B" "/admin/nodes/$(jq -r '.data[] | select(.id != "node-two") | .id' "$tmp/nodesB.json" | head -n 1)/drain" >/dev/null
code="$(curl -s -D "$tmp/h.txt" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" \
	-H 'Content-Type: application/json' \
	-d '{"model":"stories260K","messages":[{"role":"user","content":"Hi"}],"max_tokens":1}' \
	"$GW_B/v1/chat/completions")"
check "B serves through node 2 (X-Veil-Node: node-two)" \
	bash -c '[ "$0" = 200 ] && grep -qi "^x-veil-node: node-two" "$1"' "$code" "$tmp/h.txt"

# ---- a rate limit holds across both gateways ------------------------------------------------
admin POST "$GW_A" /admin/keys "{\"name\":\"limited\",\"limits\":{\"requests_per_min\":$RPM}}" >"$tmp/k3.json"
K3="$(jq -r .key "$tmp/k3.json")"
check "POST /admin/keys with limits on A" jqt ".limits.requests_per_min == $RPM" "$tmp/k3.json"
# windows are whole minutes: keep the burst inside one of them
while [ $(( $(date +%s) % 60 )) -ge 52 ]; do sleep 1; done
m0=$(( $(date +%s) / 60 ))
: >"$tmp/codes.txt"
burst=()
for i in $(seq 1 $((3 * RPM))); do
	if [ $((i % 2)) -eq 0 ]; then gw="$GW_A"; else gw="$GW_B"; fi
	# six at a time, each with its own body file
	curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $K3" \
		-H 'Content-Type: application/json' \
		-d '{"model":"stories260K","messages":[{"role":"user","content":"Hi"}],"max_tokens":1}' \
		"$gw/v1/chat/completions" >>"$tmp/codes.txt" &
	burst+=($!)
	if [ $((i % 6)) -eq 0 ]; then wait "${burst[@]}"; burst=(); fi
done
[ ${#burst[@]} -gt 0 ] && wait "${burst[@]}"
m1=$(( $(date +%s) / 60 ))
n200="$(grep -c '^200$' "$tmp/codes.txt")"
n429="$(grep -c '^429$' "$tmp/codes.txt")"
echo "# $((3 * RPM)) requests alternating A and B with requests_per_min $RPM: $n200 accepted, $n429 refused with 429"
if [ "$m0" = "$m1" ]; then
	check "the limit holds across the two gateways ($n200 accepted <= $RPM)" \
		bash -c '[ "$0" -le "$1" ] && [ "$0" -ge 1 ]' "$n200" "$RPM"
else
	skip "the limit holds across the two gateways" "the burst crossed a minute boundary"
fi
check "the rest are refused with 429" test "$((n200 + n429))" -eq $((3 * RPM))

# ---- no prompt, no answer in the database ----------------------------------------------------
CANARY="canary-$(openssl rand -hex 12)"
answer=""
for gw in "$GW_A" "$GW_B"; do
	if [ "$(chat "$gw" "$KEY" "$CANARY tell me a story" 24)" = 200 ]; then
		a="$(jq -r '.choices[0].message.content' "$tmp/resp.json")"
		[ "${#a}" -gt "${#answer}" ] && answer="$a"
	fi
	curl -sN -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
		-d "{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"$CANARY again\"}],\"max_tokens\":8,\"stream\":true}" \
		"$gw/v1/chat/completions" >/dev/null
done
"$PGBIN/pg_dump" "$PG_URI" >"$tmp/dump.sql" 2>"$tmp/dump.err"
check "pg_dump of the shared database works" bash -c '[ -s "$0" ] && grep -q "CREATE TABLE" "$0"' "$tmp/dump.sql"
missing=0
for id in $ids_A $ids_B; do grep -q "$id" "$tmp/dump.sql" || missing=$((missing + 1)); done
check "the database holds the usage records of requests through A and through B" \
	bash -c '[ "$0" -eq 0 ] && [ -n "$1" ] && [ -n "$2" ]' "$missing" "$ids_A" "$ids_B"
check "the database holds no prompt canary" bash -c '! grep -q "$1" "$0"' "$tmp/dump.sql" "$CANARY"
fragment="${answer:0:40}"
if [ "${#fragment}" -ge 20 ]; then
	check "the database holds no answer text" bash -c '! grep -qF "$1" "$0"' "$tmp/dump.sql" "$fragment"
else
	skip "the database holds no answer text" "the answer was too short to search for"
fi
for g in A B; do
	check "gateway $g never logged the canary" bash -c '! grep -q "$1" "$0"' "$tmp/gw$g.log" "$CANARY"
done

[ "$fails" -eq 0 ]
