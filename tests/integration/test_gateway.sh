#!/usr/bin/env bash
# veil-gateway end to end: real processes on 127.0.0.1 (port 0, ports read
# from the logs) - two veil-nodes (TLS, simulated TEE) behind a gateway; the
# official openai npm client with a key from `veil-gateway keys create`;
# receipts checked against the nodes' attested keys and summed against
# /v1/usage; sealed bodies relayed byte for byte; the admin API (nodes,
# drain, remove, attestation audit, keys, usage); rate limits; a node killed
# with SIGKILL mid-stream; nodes that fail the policy (sim without
# --allow-sim, a wrong model hash) get no traffic; and a canary that must
# never reach the gateway's log or database.
# Env: VEIL_BIN (veil-gateway, veil-node), VEIL_SHARED (default ../shared).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
NAME=stories260K
JS=tests/js/gateway_client.mjs

require_built "veil-gateway" "$GW_BIN" "$NODE_BIN"
skip_unless_shared "veil-gateway" "$MODEL"
have_js=1
have_node_modules openai ethers hpke-js || have_js=0
setup_tmp

CANARY="canary-$(openssl rand -hex 12)"

start_node() {
	local name="$1"; shift
	start_server "$name" "$NODE_BIN" --listen 127.0.0.1:0 --tee sim --threads 1 --model "$MODEL" \
		--allow-plaintext --ctx 4096 "$@"
}
start_gw() {
	local name="$1"; shift
	start_server "$name" "$GW_BIN" --listen 127.0.0.1:0 --plain-http --health-interval-ms 300 "$@"
}
# usable G N: waits until gateway G has N usable nodes.
usable() {
	for _ in $(seq 1 100); do
		[ "$(curl -s -H "$ADMIN" "$1/admin/nodes" | jq '[.data[] | select(.usable)] | length')" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
# wait_failed G ID: waits (up to 5 s) until gateway G says node ID failed its
# verification; prints the node's last state.
wait_failed() {
	local st=""
	for _ in $(seq 1 50); do
		st="$(curl -s -H "$ADMIN" "$1/admin/nodes/$2" | jq -r .state)"
		[ "$st" = failed ] && break
		sleep 0.1
	done
	echo "$st"
}
js() { relay_js_client "$JS" "$@"; }
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

# ---- command line and keys ----------------------------------------------------
"$GW_BIN" --help | grep -q "usage: veil-gateway"; check "veil-gateway --help prints usage" test $? -eq 0
"$GW_BIN" --listen 127.0.0.1:0 >/dev/null 2>&1; check "veil-gateway without --db exits 2" test $? -eq 2
"$GW_BIN" --db "sqlite:$tmp/x.db" --plain-http --listen 0.0.0.0:0 >/dev/null 2>&1
check "--plain-http on a non-loopback address is refused (exit 2)" test $? -eq 2
"$GW_BIN" --db "postgres://localhost/x" --listen 127.0.0.1:0 >/dev/null 2>"$tmp/err"
check "a postgres database without --secret-file is refused (exit 2)" \
	bash -c '[ $0 -eq 2 ] && grep -q -- "--secret-file" "$1"' $? "$tmp/err"
# a postgres URI may carry a password: an error never prints it (before:
# `keys` printed "cannot open postgres://veil:PASSWORD@...")
head -c 32 /dev/urandom >"$tmp/pg.secret"
PGURI='postgres://veil:S3cretPW@127.0.0.1:1/veil?connect_timeout=5'
"$GW_BIN" keys list --db "$PGURI" --secret-file "$tmp/pg.secret" >"$tmp/out" 2>"$tmp/err"
check "keys list on a postgres database it cannot reach fails without printing the URI's password" \
	bash -c '[ $0 -ne 0 ] && grep -q "cannot open the database" "$1" && ! grep -q S3cretPW "$1" "$2"' \
	$? "$tmp/err" "$tmp/out"
timeout 20 "$GW_BIN" --db "$PGURI" --secret-file "$tmp/pg.secret" --listen 127.0.0.1:0 --plain-http \
	>"$tmp/out" 2>"$tmp/err"
check "... and so does the gateway itself" \
	bash -c '[ $0 -ne 0 ] && [ $0 -ne 124 ] && ! grep -q S3cretPW "$1" "$2"' $? "$tmp/err" "$tmp/out"
# older versions named the secret after the whole URI ("F?sync=full.secret"):
# such a file alone is not replaced by a fresh secret (every key would 401)
head -c 32 /dev/urandom >"$tmp/legacy.db?sync=full.secret"
"$GW_BIN" keys list --db "sqlite:$tmp/legacy.db?sync=full" >"$tmp/out" 2>"$tmp/err"
check "a secret file named after the whole --db (older versions) is not silently replaced" \
	bash -c '[ $0 -ne 0 ] && grep -q "rename it" "$1" && [ ! -e "$2" ]' $? "$tmp/err" "$tmp/legacy.db.secret"

# --print-config opens nothing, so it needs no --db (the URI is not measured)
"$GW_BIN" --print-config --listen 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err"
check "--print-config without --db prints the measured config (exit 0)" \
	bash -c '[ $0 -eq 0 ] && jq -e ".listen == \"127.0.0.1:0\"" "$1" >/dev/null' $? "$tmp/out"
# keys: --help at both levels, each subcommand's own flags only, the real
# reason a secret file cannot be made, --secret-file in the synopsis
"$GW_BIN" --help | grep -q -- "keys create|list|revoke|limits --db URI \[--secret-file F\]"
check "veil-gateway --help shows --secret-file in the keys synopsis" test $? -eq 0
for a in "keys --help" "keys -h" "keys create --help" "keys list -h" "keys limits --id 1 --help"; do
	# shellcheck disable=SC2086
	"$GW_BIN" $a >"$tmp/out" 2>"$tmp/err"
	check "veil-gateway $a prints the keys usage (exit 0)" \
		bash -c '[ $0 -eq 0 ] && grep -q "usage: veil-gateway keys create" "$1" && grep -q -- "--secret-file F" "$1"' $? "$tmp/out"
done
for a in "list --rpm 5" "list --name zz" "revoke --id 1 --quota 5" "create --id 3" "list --id 3"; do
	# shellcheck disable=SC2086
	"$GW_BIN" keys $a --db "sqlite:$tmp/flags.db" >/dev/null 2>"$tmp/err"
	check "veil-gateway keys $a: a flag of another subcommand is refused (exit 2)" \
		bash -c '[ $0 -eq 2 ] && grep -q "does not apply to" "$1"' $? "$tmp/err"
done
check "... before touching the database" test ! -e "$tmp/flags.db"
"$GW_BIN" keys create --db "sqlite:$tmp/nodir/x.db" >/dev/null 2>"$tmp/err"
check "keys create in a missing directory names the real problem (cannot create: No such file or directory)" \
	bash -c '[ $0 -eq 2 ] && grep -q "cannot create the API-key secret file .*No such file or directory" "$1"' $? "$tmp/err"

DB="sqlite:$tmp/gw.db"
"$GW_BIN" keys create --db "$DB" --name alice >"$tmp/create.out" 2>&1
KEY="$(tail -1 "$tmp/create.out")"
check "keys create prints the new key alone on its last line" \
	bash -c '[[ "$0" =~ ^sk-veil-[A-Za-z0-9_-]{43}$ ]]' "$KEY"
check "keys create made a 0600 secret file next to the database" \
	test "$(stat -c %a "$tmp/gw.db.secret")" = 600
"$GW_BIN" keys create --db "$DB" --name bob >"$tmp/create2.out" 2>&1
KEY2="$(tail -1 "$tmp/create2.out")"
"$GW_BIN" keys create --db "$DB" --name carol >"$tmp/create3.out" 2>&1
KEY3="$(tail -1 "$tmp/create3.out")"
"$GW_BIN" keys list --db "$DB" >"$tmp/list.out" 2>&1
check "keys list shows the keys by prefix, never the key" \
	bash -c 'grep -q "alice" "$0" && grep -q "${1:0:12}" "$0" && ! grep -q "$1" "$0"' "$tmp/list.out" "$KEY"
check "the database holds no key text" bash -c '! grep -qa "$1" "$0"' "$tmp/gw.db" "$KEY"

# ---- two nodes and a gateway --------------------------------------------------------
if ! start_node a; then notok "node a starts"; exit 1; fi
PA=$PORT; PIDA=$PID
if ! start_node b; then notok "node b starts"; exit 1; fi
PB=$PORT; PIDB=$PID
printf '[{"url": "https://127.0.0.1:%s", "model": "%s", "id": "a"},\n {"url": "https://127.0.0.1:%s/", "model": "%s", "id": "b"}]\n' \
	"$PA" "$NAME" "$PB" "$NAME" >"$tmp/nodes.json"
openssl rand -hex 24 >"$tmp/admin.token"
ADMIN="Authorization: Bearer $(cat "$tmp/admin.token")"
if ! start_gw g --db "$DB" --nodes "$tmp/nodes.json" --allow-sim --admin-token-file "$tmp/admin.token"; then
	notok "the gateway starts"; exit 1
fi
G="http://127.0.0.1:$PORT"
PIDG=$PID
check "the gateway verifies both nodes' attestation and routes to them" usable "$G" 2
check "the gateway logs its pins and its simulated TEE" \
	bash -c 'grep -q "attestation verified, TLS key pinned" "$0" && grep -q "SIMULATED TEE" "$0"' "$tmp/g.log"
check "GET /healthz and /readyz are 200" \
	bash -c '[ "$(curl -s -o /dev/null -w %{http_code} $0/healthz)" = 200 ] && [ "$(curl -s -o /dev/null -w %{http_code} $0/readyz)" = 200 ]' "$G"
check "GET /v1/models lists the model" bash -c 'curl -s "$0/v1/models" | jq -e ".data[0].id == \"$1\"" >/dev/null' "$G" "$NAME"

c="$(curl -s -o "$tmp/r.json" -w '%{http_code}' "$G/v1/chat/completions" -H 'Content-Type: application/json' \
	-d "{\"model\":\"$NAME\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}")"
check "no key: 401 in OpenAI's error shape" \
	bash -c '[ "$0" = 401 ] && jq -e ".error.message and .error.type == \"authentication_error\"" "$1" >/dev/null' "$c" "$tmp/r.json"
check "a malformed key: 401" test "$(code "$G/v1/chat/completions" -H 'Authorization: Bearer nope' \
	-H 'Content-Type: application/json' -d "{\"model\":\"$NAME\"}")" = 401
# the key is judged before the body: a bad key is a 401 whatever the body
# (a malformed key is refused at once; an unknown well-formed one after the
# store's lookup, then from the cache of unknown keys), and only a good key
# learns what is wrong with its body
UNKNOWN="sk-veil-$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d = | head -c 43)"
auth_first() { # KEY BODY -> status and error type
	curl -s -o "$tmp/af.json" -w '%{http_code} ' "$G/v1/chat/completions" -H "Authorization: Bearer $1" \
		-H 'Content-Type: application/json' --data-binary "$2"
	jq -r '.error.type + " " + .error.code' "$tmp/af.json"
}
check "a malformed key with the body {}: 401, not 400" \
	test "$(auth_first bad '{}')" = "401 authentication_error invalid_api_key"
check "a malformed key with a body that is not JSON: 401" \
	test "$(auth_first bad '{nope')" = "401 authentication_error invalid_api_key"
check "an unknown key (store lookup) with the body {}: 401, not 400" \
	test "$(auth_first "$UNKNOWN" '{}')" = "401 authentication_error invalid_api_key"
check "an unknown key (cached as unknown) with a body that is not JSON: 401" \
	test "$(auth_first "$UNKNOWN" '{nope')" = "401 authentication_error invalid_api_key"
check "a good key with the body {}: 400 missing_model" \
	test "$(auth_first "$KEY" '{}')" = "400 invalid_request_error missing_model"
check "a good key with a body that is not JSON: 400 invalid_json" \
	test "$(auth_first "$KEY" '{nope')" = "400 invalid_request_error invalid_json"

if [ $have_js = 1 ]; then
	js openai "$G" "$KEY" "$NAME"
	js usage "$G" "$KEY2" "$NAME"
	js sealed "$G" "$KEY" "$NAME"
	js concurrent "$G" "$KEY" "$NAME" 24
	js canary "$G" "$KEY" "$NAME" "$CANARY"
else
	skip "openai client checks" "node or tests/js/node_modules missing (npm ci in tests/js)"
fi
# the same canary over curl, both kinds
curl -s "$G/v1/chat/completions" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
	-d "{\"model\":\"$NAME\",\"messages\":[{\"role\":\"user\",\"content\":\"$CANARY\"}],\"max_tokens\":4}" >/dev/null
curl -s -N "$G/v1/completions" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
	-d "{\"model\":\"$NAME\",\"prompt\":\"$CANARY\",\"max_tokens\":4,\"stream\":true}" >/dev/null

# ---- admin API --------------------------------------------------------------------
check "admin: no token is a 401" test "$(code "$G/admin/nodes")" = 401
check "admin: a wrong token is a 401" test "$(code -H 'Authorization: Bearer wrong-token-123456' "$G/admin/nodes")" = 401
curl -s -H "$ADMIN" "$G/admin/nodes/a/attestations" >"$tmp/att.json"
check "admin: the attestation audit keeps each verdict (time, verdict, measurements)" \
	jqt '.data | length >= 1 and (.[0].ok == true) and (.[0].time > 0) and (.[0].verdict.measurements.node_binary | length == 96) and (.[0].verdict.sim == true)' "$tmp/att.json"
curl -s -H "$ADMIN" "$G/admin/usage?by=model" >"$tmp/um.json"
curl -s -H "$ADMIN" "$G/admin/usage?by=key" >"$tmp/uk.json"
check "admin: usage by model and by key" \
	bash -c 'jq -e ".data[0].model == \"$2\" and .data[0].requests > 0" "$0" >/dev/null && jq -e "[.data[].name] | index(\"alice\") != null" "$1" >/dev/null' \
	"$tmp/um.json" "$tmp/uk.json" "$NAME"
curl -s -H "$ADMIN" "$G/admin/keys" -d '{"name":"limited","limits":{"requests_per_min":2}}' >"$tmp/lk.json"
LKEY="$(jq -r .key "$tmp/lk.json")"
check "admin: POST /admin/keys shows the new key once" bash -c '[[ "$0" =~ ^sk-veil- ]]' "$LKEY"
for i in 1 2 3; do
	c="$(curl -s -D "$tmp/h$i" -o "$tmp/b$i" -w '%{http_code}' "$G/v1/completions" -H "Authorization: Bearer $LKEY" \
		-H 'Content-Type: application/json' -d "{\"model\":\"$NAME\",\"prompt\":\"x\",\"max_tokens\":2}")"
	eval "c$i=$c"
done
check "rate limit: the third request in a minute is a 429 with Retry-After" \
	bash -c '[ "$0" = 200 ] && [ "$1" = 200 ] && [ "$2" = 429 ] && grep -qi "^retry-after: [0-9]" "$3" && jq -e ".error.code == \"rate_limit_exceeded\"" "$4" >/dev/null' \
	"$c1" "$c2" "$c3" "$tmp/h3" "$tmp/b3"
KID3="$(jq -r '.data[] | select(.name == "carol") | .id' <(curl -s -H "$ADMIN" "$G/admin/keys"))"
check "a key works before it is revoked" test "$(code "$G/v1/usage" -H "Authorization: Bearer $KEY3")" = 200
curl -s -H "$ADMIN" -X POST "$G/admin/keys/$KID3/revoke" >/dev/null
check "admin: a revoked key is refused at once on this gateway (401)" \
	test "$(code "$G/v1/usage" -H "Authorization: Bearer $KEY3")" = 401

# drain b: traffic goes to a only
curl -s -H "$ADMIN" -X POST "$G/admin/nodes/b/drain" >/dev/null
before="$(curl -s -H "$ADMIN" "$G/admin/nodes/b" | jq .requests)"
for i in 1 2 3 4; do
	curl -s -o /dev/null "$G/v1/completions" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
		-d "{\"model\":\"$NAME\",\"prompt\":\"x\",\"max_tokens\":2}"
done
after="$(curl -s -H "$ADMIN" "$G/admin/nodes/b" | jq .requests)"
check "admin: a drained node gets no new requests" \
	bash -c '[ "$0" = "$1" ] && curl -s -H "$3" "$2/admin/nodes/b" | jq -e ".state == \"draining\"" >/dev/null' "$before" "$after" "$G" "$ADMIN"
check "admin: DELETE removes a node" \
	bash -c '[ "$(curl -s -o /dev/null -w %{http_code} -X DELETE -H "$1" "$0/admin/nodes/b")" = 200 ] && [ "$(curl -s -o /dev/null -w %{http_code} -H "$1" "$0/admin/nodes/b")" = 404 ]' "$G" "$ADMIN"
c="$(curl -s -o "$tmp/add.json" -w '%{http_code}' -H "$ADMIN" "$G/admin/nodes" -d "{\"url\":\"https://127.0.0.1:$PB\",\"model\":\"$NAME\",\"id\":\"b\"}")"
check "admin: POST /admin/nodes registers a node as pending, then it verifies" \
	bash -c '[ "$0" = 201 ] && jq -e ".id == \"b\"" "$1" >/dev/null' "$c" "$tmp/add.json"
check "the re-added node becomes usable again" usable "$G" 2
check "admin: a bad node URL is a 400 naming the field" \
	bash -c 'curl -s -H "$1" "$0/admin/nodes" -d "{\"url\":\"ftp://x\",\"model\":\"m\"}" | jq -e ".error.message | test(\"url\")" >/dev/null' "$G" "$ADMIN"

# ---- limits, the gateway's own report, prefix affinity ------------------------------------
head -c 1200000 /dev/zero | tr '\0' 'a' >"$tmp/big"
check "a body over --max-body is a 413" test "$(code "$G/v1/chat/completions" -H "Authorization: Bearer $KEY" \
	-H 'Content-Type: application/json' --data-binary @"$tmp/big")" = 413
check "a request head over 16 KiB is a 431" \
	test "$(code "$G/v1/models" -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' 'b')")" = 431
nonce="$(openssl rand -hex 32)"
curl -s "$G/v1/attestation/report?nonce=$nonce" >"$tmp/gwrep.json"
jq .gateway "$tmp/gwrep.json" >"$tmp/gwself.json"
if [ -x "$VEIL_BIN/veil" ] && "$VEIL_BIN/veil" verify --help >/dev/null 2>&1; then
	"$VEIL_BIN/veil" verify "$tmp/gwself.json" --kind report --nonce "$nonce" --allow-sim >"$tmp/gwv.out" 2>&1
	check "the gateway's own report verifies with the nonce (veil verify --allow-sim)" test $? -eq 0
else
	skip "the gateway's own report verifies" "$VEIL_BIN/veil not built"
fi
check "the gateway's report measures its binary and binds a key set without HPKE" \
	bash -c 'jq -e --arg h "$(sha384sum "$1" | cut -d" " -f1)" ".measurements.gateway_binary == \$h and (.keys.x25519_hpke == null or .keys.x25519_hpke == \"\") and (.keys.ed25519 | length == 64)" "$0" >/dev/null' \
	"$tmp/gwself.json" "$GW_BIN"
check "the report carries both nodes' reports made with the same nonce" \
	jqt --arg n "$nonce" '.version == "veil-gateway-report/1" and (.nodes | length == 2) and all(.nodes[]; .report.nonce == $n)' "$tmp/gwrep.json"
start_gw aff --db "sqlite:$tmp/aff.db" --nodes "$tmp/nodes.json" --allow-sim --affinity prefix \
	--admin-token-file "$tmp/admin.token"
GA="http://127.0.0.1:$PORT"
"$GW_BIN" keys create --db "sqlite:$tmp/aff.db" >"$tmp/ka.out" 2>&1
KA="$(tail -1 "$tmp/ka.out")"
if usable "$GA" 2; then
	same=""
	for turn in 1 2 3 4 5; do
		msgs='[{"role":"system","content":"You tell stories."},{"role":"user","content":"About a cat"}'
		for t in $(seq 2 "$turn"); do msgs="$msgs,{\"role\":\"assistant\",\"content\":\"ok $t\"},{\"role\":\"user\",\"content\":\"more $t\"}"; done
		same="$same $(curl -s -o /dev/null -D - "$GA/v1/chat/completions" -H "Authorization: Bearer $KA" -H 'Content-Type: application/json' \
			-d "{\"model\":\"$NAME\",\"messages\":$msgs],\"max_tokens\":2}" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-veil-node" { print $2 }')"
	done
	spread=""
	for i in $(seq 1 16); do
		spread="$spread $(curl -s -o /dev/null -D - "$GA/v1/chat/completions" -H "Authorization: Bearer $KA" -H 'Content-Type: application/json' \
			-d "{\"model\":\"$NAME\",\"messages\":[{\"role\":\"user\",\"content\":\"topic $i\"}],\"max_tokens\":2}" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-veil-node" { print $2 }')"
	done
	check "prefix affinity: five turns of one conversation go to one node ($same)" \
		test "$(echo $same | tr ' ' '\n' | sort -u | wc -l)" -eq 1 -a "$(echo $same | wc -w)" -eq 5
	check "prefix affinity: different conversations use both nodes ($(echo $spread | tr ' ' '\n' | sort | uniq -c | tr -s ' \n' ' '))" \
		test "$(echo $spread | tr ' ' '\n' | sort -u | wc -l)" -eq 2
else
	notok "the affinity gateway verifies both nodes"
fi

# ---- a node killed mid-stream ----------------------------------------------------------
if [ $have_js = 1 ]; then
	js kill "$G" "$KEY" "$NAME" "a=$PIDA,b=$PIDB"
	t0=$(date +%s%N)
	dead=""
	for _ in $(seq 1 40); do
		dead="$(curl -s -H "$ADMIN" "$G/admin/nodes" | jq -r '[.data[] | select(.usable | not) | .id] | join(",")')"
		[ -n "$dead" ] && break
		sleep 0.05
	done
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	check "the killed node is out of rotation within 2 s ($dead after ${ms} ms)" \
		bash -c '[ -n "$0" ] && [ "$1" -lt 2000 ]' "$dead" "$ms"
	check "metrics count the cut stream" test "$(metric "$G" veil_gateway_streams_cut_total)" -ge 1
fi

# ---- nodes that fail the policy get no traffic ------------------------------------------
if ! start_node c; then notok "node c starts"; exit 1; fi
PC=$PORT
printf '[{"url": "https://127.0.0.1:%s", "model": "%s", "id": "c"}]\n' "$PC" "$NAME" >"$tmp/nodes-c.json"
# without --allow-sim: a simulated TEE fails the policy
start_gw nosim --db "sqlite:$tmp/nosim.db" --nodes "$tmp/nodes-c.json" --admin-token-file "$tmp/admin.token"
GN="http://127.0.0.1:$PORT"
"$GW_BIN" keys create --db "sqlite:$tmp/nosim.db" >"$tmp/kn.out" 2>&1
KN="$(tail -1 "$tmp/kn.out")"
st="$(wait_failed "$GN" c)"
check "without --allow-sim a simulated node fails verification (state failed, reason logged)" \
	bash -c '[ "$0" = failed ] && grep -q "attestation FAILED" "$1" && grep -qi "sim" "$1"' "$st" "$tmp/nosim.log"
c="$(curl -s -o "$tmp/ns.json" -w '%{http_code}' "$GN/v1/chat/completions" -H "Authorization: Bearer $KN" \
	-H 'Content-Type: application/json' -d "{\"model\":\"$NAME\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}")"
check "... it gets no traffic (503), and /v1/models is empty" \
	bash -c '[ "$0" = 503 ] && curl -s "$1/v1/models" | jq -e ".data == []" >/dev/null && curl -s -H "$2" "$1/admin/nodes/c" | jq -e ".requests == 0" >/dev/null' "$c" "$GN" "$ADMIN"
# a policy pinning another model hash
printf '{"version": "veil-policy/1", "allow_sim": true, "models": {"%s": {"model_sha256": ["%s"]}}}\n' \
	"$NAME" "$(printf '00%.0s' $(seq 1 32))" >"$tmp/policy.json"
start_gw pol --db "sqlite:$tmp/pol.db" --nodes "$tmp/nodes-c.json" --policy "$tmp/policy.json" \
	--allow-sim --admin-token-file "$tmp/admin.token"
GP="http://127.0.0.1:$PORT"
"$GW_BIN" keys create --db "sqlite:$tmp/pol.db" >"$tmp/kp.out" 2>&1
KP="$(tail -1 "$tmp/kp.out")"
st="$(wait_failed "$GP" c)"
c="$(code "$GP/v1/chat/completions" -H "Authorization: Bearer $KP" -H 'Content-Type: application/json' \
	-d "{\"model\":\"$NAME\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}")"
check "a node with the wrong model hash fails the policy and gets no traffic" \
	bash -c '[ "$0" = failed ] && [ "$1" = 503 ] && curl -s -H "$3" "$2/admin/nodes/c" | jq -e ".requests == 0 and (.last_error | test(\"model\"))" >/dev/null' \
	"$st" "$c" "$GP" "$ADMIN"
curl -s -H "$ADMIN" "$GP/admin/nodes/c/attestations" >"$tmp/att2.json"
check "... and the failed verdict is kept for audit" jqt '.data[0].ok == false and (.data[0].verdict.error | length > 0)' "$tmp/att2.json"

# ---- shutdown and the canary ---------------------------------------------------------------
kill -TERM "$PIDG"
for _ in $(seq 1 100); do kill -0 "$PIDG" 2>/dev/null || break; sleep 0.1; done
check "SIGTERM stops the gateway" bash -c '! kill -0 $0 2>/dev/null' "$PIDG"
check "the canary is in no gateway log" bash -c '! grep -q "$0" "$1"/g.log "$1"/nosim.log "$1"/pol.log' "$CANARY" "$tmp"
check "the canary is in no database file (receipts hold only hashes)" \
	bash -c '! grep -qa "$0" "$1"/gw.db*' "$CANARY" "$tmp"
check "the gateway never logs an API key" bash -c '! grep -q "sk-veil-[A-Za-z0-9_-]\{20\}" "$0"' "$tmp/g.log"

echo "# $fails failed"
[ "$fails" -eq 0 ]
