#!/usr/bin/env bash
# veil-proxy end to end, real processes on 127.0.0.1: the official openai npm
# client through veil-proxy to a veil-node (TLS, the attested key pinned) and
# through veil-gateway when it is built; a man in the middle (a node.js relay)
# that flips a bit, drops bytes, cuts before the final chunk, swaps a receipt
# or replays an old answer, each of which must end in an explicit error,
# streamed or not; a relay with its own TLS certificate refused by the pin;
# policies that refuse (simulated TEE, another model hash) before any
# plaintext leaves; a relay rewriting a report's model.sha256 (refused); a
# policy pinning the gateway against a bare node report (refused); key change
# and expiry; the receipts log re-verified by
# `veil receipts verify`; a canary prompt that must appear in no log.
# Env: VEIL_BIN (dir with veil-proxy, veil-node, veil), VEIL_SHARED.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
JS=tests/js/proxy_client.mjs
MITM=tests/js/proxy_mitm.mjs

require_built "veil-proxy" "$PROXY_BIN" "$NODE_BIN"
skip_unless_shared "veil-proxy" "$MODEL"
have_js=1
have_node_modules openai || have_js=0
setup_tmp

CANARY="canary-$(openssl rand -hex 12)"

start_node() { local n="$1"; shift; start_server "$n" "$NODE_BIN" --listen 127.0.0.1:0 --tee sim --threads 1 --model "$MODEL" "$@"; }
ppids=()
start_proxy() { local n="$1"; shift; start_server "$n" "$PROXY_BIN" --listen 127.0.0.1:0 "$@" && ppids+=("$PID"); }
start_mitm() { local n="$1"; shift; start_server "$n" node "$MITM" "$@"; }

# wait_state URL: until /veil/status is no longer verifying; prints the state.
wait_state() {
	local s=""
	for _ in $(seq 1 100); do
		s="$(curl -s "$1/veil/status" | jq -r 'if .verifying or .state == "unverified" then "" else .state end' 2>/dev/null)"
		[ -n "$s" ] && break
		sleep 0.1
	done
	echo "$s"
}

# js CMD BASE ARGS...: relays the client's ok/not ok lines.
js() { relay_js_client "$JS" "$@"; }

prompt_lines() { grep -c "prompt tokens" "$tmp/$1.log"; }

chat='{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8}'

# ---- command line -------------------------------------------------------------
"$PROXY_BIN" --help | grep -q "usage: veil-proxy"; check "veil-proxy --help prints usage" test $? -eq 0
"$PROXY_BIN" --listen 127.0.0.1:0 >/dev/null 2>&1; check "veil-proxy without --gateway exits 2" test $? -eq 2
"$PROXY_BIN" --listen 0.0.0.0:0 --gateway https://127.0.0.1:1 >/dev/null 2>&1
check "a non-loopback --listen is refused (exit 2)" test $? -eq 2
echo '{"version":"veil-policy/1","tee_kinds":["tdx"]}' >"$tmp/typo.json"
"$PROXY_BIN" --listen 127.0.0.1:0 --gateway https://127.0.0.1:1 --policy "$tmp/typo.json" >/dev/null 2>&1
check "a policy with an unknown key is refused (exit 2)" test $? -eq 2

# ---- A: straight to a TLS node (the default); its TLS key pinned -----------------
if ! start_node a --ctx 8192; then
	notok "node A (TLS) starts"
	exit 1
fi
A_PORT=$PORT
PID_A=$PID
A="https://127.0.0.1:$A_PORT"
if ! start_proxy pa --gateway "$A" --allow-sim --receipts "$tmp/receipts.jsonl" --log-level debug; then
	notok "proxy to node A starts"
	exit 1
fi
PA="http://127.0.0.1:$PORT"
check "proxy A verifies node A" test "$(wait_state "$PA")" = verified
check "--allow-sim is announced loudly" grep -q "SIMULATED TEE evidence is ACCEPTED" "$tmp/pa.log"
curl -s "$PA/veil/status" >"$tmp/status.json"
spki="$(tls_spki_sha256 "$A_PORT")"
sha_model="$(sha256sum "$MODEL" | cut -d' ' -f1)"
check "/veil/status: the pinned TLS key is node A's" jqt --arg s "$spki" '.tls_spki_sha256 == $s and .transport == "https" and .mode == "node"' "$tmp/status.json"
check "/veil/status: TEE, TCB status, measurements, model hash" \
	jqt --arg m "$sha_model" '.nodes[0] | .ok and .tee == "sim" and .sim and .tcb_status == "UpToDate" and
		(.measurements.node_binary | length) == 96 and (.measurements.model | length) == 96 and
		.model == "stories260K" and .model_sha256 == $m and (.hpke_key_id | length) == 16' "$tmp/status.json"
check "/veil/status: when, and the nonce it was verified with" jqt '.verified_at > 0 and .expires_at > .verified_at and (.nonce | length) == 64' "$tmp/status.json"
hdrs="$(curl -s -D - -o "$tmp/a.json" -H 'Content-Type: application/json' -d "$chat" "$PA/v1/chat/completions" | tr -d '\r')"
check "curl: a chat answer is plain OpenAI JSON with X-Veil-Verified: receipt" \
	bash -c 'grep -qi "^x-veil-verified: receipt" <<<"$0" && grep -qi "^x-veil-warning: simulated" <<<"$0" && jq -e ".choices[0].message.content | length > 0" "$1" >/dev/null' "$hdrs" "$tmp/a.json"
curl -sN -H 'Content-Type: application/json' \
	-d '{"model":"stories260K","prompt":"Once","max_tokens":6,"stream":true}' "$PA/v1/completions" >"$tmp/a.sse"
check "curl: a stream is plain SSE ending in [DONE], nothing sealed left in it" \
	bash -c '[ "$(tail -c 14 "$0")" = "data: [DONE]" ] && ! grep -q "veil.receipt" "$0" && grep -q "\"text_completion\"" "$0"' "$tmp/a.sse"
if [ "$have_js" = 1 ]; then
	js openai "$PA" stories260K
	js canary "$PA" stories260K "$CANARY"
else
	skip "openai client through veil-proxy" "node or tests/js/node_modules missing (cd tests/js && npm install)"
fi
sleep 0.3 # the receipts writer syncs in the background
check "receipts log: an attestation line (node) with its report and verdict" \
	bash -c 'jq -s -e "map(select(.type == \"attestation\" and .role == \"node\" and .verdict.ok and .report.version == \"veil-report/1\")) | length >= 1" "$0" >/dev/null' "$tmp/receipts.jsonl"
check "receipts log: receipt lines, all verified, each naming its attestation line" \
	bash -c 'jq -s -e "(map(select(.type == \"attestation\")) | map(.report_sha256)) as \$a |
		map(select(.type == \"receipt\")) | length >= 8 and all(.ok and (.node_report_sha256 as \$r | \$a | index(\$r)) != null)" "$0" >/dev/null' "$tmp/receipts.jsonl"
if "$VEIL" receipts verify --help >/dev/null 2>&1; then
	"$VEIL" receipts verify "$tmp/receipts.jsonl" --allow-sim >"$tmp/rv.out" 2>&1
	check "veil receipts verify re-verifies the proxy's log offline" test $? -eq 0
	"$VEIL" receipts verify "$tmp/receipts.jsonl" >/dev/null 2>&1
	check "veil receipts verify refuses it without --allow-sim" test $? -eq 1
	jq -c 'if .type == "receipt" then .response_sha256 = ("00" + .response_sha256[2:]) else . end' \
		"$tmp/receipts.jsonl" >"$tmp/receipts-bad.jsonl"
	"$VEIL" receipts verify "$tmp/receipts-bad.jsonl" --allow-sim >/dev/null 2>&1
	check "veil receipts verify catches an altered observed hash in the log" test $? -eq 1
	# The proxy checks the Ed25519 signatures on its hot path and leaves the
	# ECDSA ones to this offline check: a broken ECDSA signature must fail it.
	jq -c 'if .type == "receipt" and .receipt != null then .receipt.signature_ecdsa |=
		("0x" + (if .[2:3] == "0" then "1" else "0" end) + .[3:]) else . end' \
		"$tmp/receipts.jsonl" >"$tmp/receipts-ecdsa.jsonl"
	"$VEIL" receipts verify "$tmp/receipts-ecdsa.jsonl" --allow-sim >"$tmp/rv-ecdsa.out" 2>&1
	check "veil receipts verify catches a broken ECDSA signature (left to it by the proxy)" \
		bash -c '[ "$1" -eq 1 ] && grep -q "ECDSA" "$0"' "$tmp/rv-ecdsa.out" "$?"
else
	skip "veil receipts verify" "the command is not built"
fi
check "receipts log: each receipt line says which signatures the proxy checked (ed25519)" \
	bash -c 'jq -s -e "map(select(.type == \"receipt\")) | length >= 8 and all(.signatures_checked == \"ed25519\")" "$0" >/dev/null' "$tmp/receipts.jsonl"

# ---- refusals before any plaintext leaves -----------------------------------------
if start_node b; then
	B="https://127.0.0.1:$PORT"
	if start_proxy pb --gateway "$B"; then
		PB="http://127.0.0.1:$PORT"
		code="$(curl -s -o "$tmp/b.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "$PB/v1/chat/completions")"
		check "without --allow-sim a simulated TEE is refused: 403 policy_refused" \
			bash -c '[ "$0" = 403 ] && jq -e ".error.code == \"policy_refused\" and (.error.message | test(\"simulated\"))" "$1" >/dev/null' "$code" "$tmp/b.json"
	fi
	zero="$(printf '0%.0s' $(seq 64))"
	printf '{"version":"veil-policy/1","allow_sim":true,"models":{"stories260K":{"model_sha256":["%s"]}}}\n' "$zero" >"$tmp/pin.json"
	if start_proxy pc --gateway "$B" --policy "$tmp/pin.json"; then
		PC="http://127.0.0.1:$PORT"
		code="$(curl -s -o "$tmp/c.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "$PC/v1/chat/completions")"
		check "a node whose model hash is not the policy's is refused (403, names the hash)" \
			bash -c '[ "$0" = 403 ] && jq -e --arg m "$2" ".error.code == \"policy_refused\" and (.error.message | contains(\$m))" "$1" >/dev/null' "$code" "$tmp/c.json" "$sha_model"
		if [ "$have_js" = 1 ]; then
			js expect-error "$PC" stories260K "model hash refused, streamed" stream policy_refused
		fi
		check "/veil/status says failed and why" jqt '.state == "failed" and .error.code == "policy_refused"' <(curl -s "$PC/veil/status")
	fi
	check "node B received no completion request (no plaintext, not even sealed)" test "$(prompt_lines b)" = 0
else
	notok "node B starts"
fi

# A relay with its own TLS certificate in front of node A: the pin refuses it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/mitm.key" \
	-out "$tmp/mitm.crt" -days 1 -subj /CN=mitm -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
if [ "$have_js" = 1 ] && start_mitm mt "$A" --tls "$tmp/mitm.crt" "$tmp/mitm.key"; then
	MT="https://127.0.0.1:$PORT"
	if start_proxy pt --gateway "$MT" --allow-sim; then
		PT="http://127.0.0.1:$PORT"
		code="$(curl -s -o "$tmp/t.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "$PT/v1/chat/completions")"
		check "a TLS relay with its own certificate is refused: tls_key_not_attested" \
			bash -c '[ "$0" -ge 400 ] && jq -e ".error.code == \"tls_key_not_attested\"" "$1" >/dev/null' "$code" "$tmp/t.json"
		check "nothing was sent through that relay" test "$(curl -sk "$MT/__mitm" | jq -r .completions)" = 0
	fi
	code="$(curl -s -o "$tmp/g.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" \
		"http://127.0.0.1:$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/pa.log" | sed 's/.*://')/v1/chat/completions")"
	check "proxy A still answers (its pin is untouched)" test "$code" = 200
fi

# Nothing listening: an explicit 502, and /veil/status says why.
if start_proxy pd --gateway "https://127.0.0.1:1" --allow-sim; then
	PD="http://127.0.0.1:$PORT"
	code="$(curl -s -o "$tmp/d.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "$PD/v1/chat/completions")"
	check "an unreachable gateway is a 502 gateway_unreachable" \
		bash -c '[ "$0" = 502 ] && jq -e ".error.code == \"gateway_unreachable\"" "$1" >/dev/null' "$code" "$tmp/d.json"
	check "/readyz is 503 while nothing is verified" test "$(curl -s -o /dev/null -w '%{http_code}' "$PD/readyz")" = 503
fi

# ---- C: a man in the middle (plain http: TLS would stop a relay by design) -----------
[ "$have_js" = 1 ] || skip "man-in-the-middle relays" "node or tests/js/node_modules missing"
if [ "$have_js" = 1 ] && start_node c --plain-http; then
	C_PORT=$PORT
	PID_C=$PID
	if start_mitm mc "http://127.0.0.1:$C_PORT" && MC="http://127.0.0.1:$PORT" &&
		start_proxy pm --gateway "$MC" --allow-sim --receipts "$tmp/mitm-receipts.jsonl"; then
		PM="http://127.0.0.1:$PORT"
		check "plain http --gateway is allowed with a warning" grep -q "gateway is plain http" "$tmp/pm.log"
		js openai "$PM" stories260K
		js tamper "$PM" stories260K "$MC" "relay"
		code="$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "$PM/v1/chat/completions")"
		check "untouched traffic works again after the attacks" test "$code" = 200
		check "/veil/status: sim binds the model hash (model_sha256_bound)" \
			jqt '.nodes[0] | .model_sha256_bound == true and (.model_sha256 | length) == 64' <(curl -s "$PM/veil/status")

		# The relay rewrites model.sha256 in the node's report: the quote's
		# veil-model-sha256 event no longer matches, so the node is refused
		# (and the rewritten hash never reaches a header or a receipt check).
		curl -s -X POST -d '{"mode":"model_sha256"}' "$MC/__mitm" >/dev/null
		if start_proxy pms --gateway "$MC" --allow-sim; then
			PMS="http://127.0.0.1:$PORT"
			n0="$(curl -s "$MC/__mitm" | jq -r .completions)"
			code="$(curl -s -o "$tmp/ms.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "$PMS/v1/chat/completions")"
			check "a relay rewriting model.sha256 in the report: the node fails verification (502, nothing sent)" \
				bash -c '[ "$0" = 502 ] && jq -e ".error.code == \"attestation_failed\" and (.error.message | test(\"model.sha256\"))" "$1" >/dev/null && [ "$2" = "$3" ]' \
				"$code" "$tmp/ms.json" "$n0" "$(curl -s "$MC/__mitm" | jq -r .completions)"
		fi
		curl -s -X POST -d '{"mode":"pass"}' "$MC/__mitm" >/dev/null

		# A policy that pins the gateway, pointed at a plain node: a bare node
		# report has no gateway report to meet the pins, so it is refused
		# before any plaintext leaves.
		printf '{"version":"veil-policy/1","allow_sim":true,"gateway":{"gateway_binary":["%s"]}}\n' "$(printf '0%.0s' $(seq 96))" >"$tmp/gwpin.json"
		if start_proxy pgp --gateway "$MC" --policy "$tmp/gwpin.json"; then
			PGP="http://127.0.0.1:$PORT"
			n0="$(curl -s "$MC/__mitm" | jq -r .completions)"
			code="$(curl -s -o "$tmp/gp.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "$PGP/v1/chat/completions")"
			check "a policy pinning the gateway refuses a bare node report (403 policy_refused, nothing sent)" \
				bash -c '[ "$0" = 403 ] && jq -e ".error.code == \"policy_refused\" and (.error.message | test(\"pins the gateway\"))" "$1" >/dev/null && [ "$2" = "$3" ]' \
				"$code" "$tmp/gp.json" "$n0" "$(curl -s "$MC/__mitm" | jq -r .completions)"
			check "/veil/status says failed and why (gateway pinned, bare node)" \
				jqt '.state == "failed" and .error.code == "policy_refused"' <(curl -s "$PGP/veil/status")
		fi
		sleep 0.3
		check "receipts log records the failed exchanges with their errors" \
			bash -c 'jq -s -e "map(select(.type == \"receipt\" and (.ok | not) and (.error | length > 0))) | length >= 8" "$0" >/dev/null' "$tmp/mitm-receipts.jsonl"

		# Key change: node C restarts on the same port with new keys; the proxy
		# seals to the old key, the node says unknown_key_id, the proxy
		# verifies again and seals anew.
		gen0="$(curl -s "$PM/veil/status" | jq -r .generation)"
		key0="$(curl -s "$PM/veil/status" | jq -r .nodes[0].hpke_key_id)"
		kill "$PID_C" 2>/dev/null
		wait "$PID_C" 2>/dev/null
		if start_node c2 --plain-http --listen "127.0.0.1:$C_PORT"; then
			code="$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "$PM/v1/chat/completions")"
			key1="$(curl -s "$PM/veil/status" | jq -r .nodes[0].hpke_key_id)"
			gen1="$(curl -s "$PM/veil/status" | jq -r .generation)"
			check "a restarted node (new keys) is verified again and used (200, key $key0 -> $key1)" \
				bash -c '[ "$0" = 200 ] && [ "$1" != "$2" ] && [ "$3" -gt "$4" ]' "$code" "$key0" "$key1" "$gen1" "$gen0"
		else
			notok "node C restarts on its port"
		fi
	fi
fi

# Key change over TLS: node A restarts on its port; the pin no longer matches.
PA_PORT="$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/pa.log" | sed 's/.*://')"
PA="http://127.0.0.1:$PA_PORT"
pin0="$(curl -s "$PA/veil/status" | jq -r .tls_spki_sha256)"
# Node A goes down mid-stream (two SIGTERMs: stop now).  It ends the stream
# with a shutting_down error event and a receipt for what it sent; the
# proxy relays the error (no [DONE]), checks the receipt and logs it with
# the node's error code, so the log tells a finished answer from a cut one.
curl -sN -m 30 -H 'Content-Type: application/json' \
	-d '{"model":"stories260K","prompt":"Once","max_tokens":8000,"stream":true}' "$PA/v1/completions" >"$tmp/down.sse" &
cpid=$!
for _ in $(seq 1 250); do grep -q '"text":"[^"]' "$tmp/down.sse" 2>/dev/null && break; sleep 0.02; done
kill -TERM "$PID_A" 2>/dev/null
# the second signal only once the first was handled (two pending ones merge
# into one: a graceful drain that ends the stream with [DONE])
for _ in $(seq 1 100); do grep -q "signal 15: shutting down" "$tmp/a.log" && break; sleep 0.02; done
kill -TERM "$PID_A" 2>/dev/null
wait "$cpid"
wait "$PID_A" 2>/dev/null
# the receipt checker logs the line after the stream ends
for _ in $(seq 1 100); do grep -q '"node_error"' "$tmp/receipts.jsonl" && break; sleep 0.05; done
check "a node stopped mid-stream: its shutting_down error reaches the client (no [DONE]); the log's receipt line is verified and says node_error shutting_down" \
	bash -c 'grep -q "\"code\":\"shutting_down\"" "$0" && ! grep -q "\[DONE\]" "$0" &&
		jq -s -e "map(select(.type == \"receipt\")) | last | .ok and .node_error == \"shutting_down\" and .receipt != null" "$1" >/dev/null' \
	"$tmp/down.sse" "$tmp/receipts.jsonl"
if "$VEIL" receipts verify --help >/dev/null 2>&1; then
	"$VEIL" receipts verify "$tmp/receipts.jsonl" --allow-sim >"$tmp/rv-down.out" 2>/dev/null
	check "veil receipts verify: the log still verifies and counts one receipt of an answer the node ended with an error" \
		bash -c '[ "$0" -eq 0 ] && tail -n 1 "$1" | jq -e ".ok and .receipts_node_error == 1" >/dev/null &&
			grep -q "ended the answer with error shutting_down" "$1"' $? "$tmp/rv-down.out"
fi
check "receipts log: lines of finished answers name no node_error" \
	bash -c 'jq -s -e "map(select(.type == \"receipt\" and .node_error == null)) | length >= 8" "$0" >/dev/null' "$tmp/receipts.jsonl"
if start_node a2 --listen "127.0.0.1:$A_PORT"; then
	code="$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "$PA/v1/chat/completions")"
	pin1="$(curl -s "$PA/veil/status" | jq -r .tls_spki_sha256)"
	check "a TLS key change is verified again and pinned anew (200)" \
		bash -c '[ "$0" = 200 ] && [ "$1" != "$2" ] && [ ${#2} = 64 ]' "$code" "$pin0" "$pin1"
else
	notok "node A restarts on its port"
fi

# Expiry: a short --recheck-s verifies again in the background.
if start_proxy pe --gateway "$A" --allow-sim --recheck-s 1; then
	PE="http://127.0.0.1:$PORT"
	wait_state "$PE" >/dev/null
	sleep 2.2
	check "--recheck-s 1: verified again in the background" jqt '.stats.verifications >= 3 and .state == "verified"' <(curl -s "$PE/veil/status")
fi

# ---- through veil-gateway ---------------------------------------------------------------
if [ -x "$GW_BIN" ] && [ "$have_js" = 1 ]; then
	"$GW_BIN" keys create --db "sqlite:$tmp/gw.db" --name proxy >"$tmp/key.out" 2>&1
	KEY="$(tail -1 "$tmp/key.out")"
	start_node ga && GA=$PORT && start_node gb && GB=$PORT
	printf '[{"url":"https://127.0.0.1:%s","model":"stories260K","id":"ga"},{"url":"https://127.0.0.1:%s","model":"stories260K","id":"gb"}]\n' \
		"$GA" "$GB" >"$tmp/nodes.json"
	if start_server gw "$GW_BIN" --listen 127.0.0.1:0 --db "sqlite:$tmp/gw.db" --nodes "$tmp/nodes.json" \
		--allow-sim --tee sim --health-interval-ms 300; then
		G="https://127.0.0.1:$PORT"
		gw_spki="$(tls_spki_sha256 "$PORT")"
		for _ in $(seq 1 50); do
			[ "$(curl -sk "$G/v1/attestation/report" | jq '.nodes | length' 2>/dev/null)" = 2 ] && break
			sleep 0.1
		done
		if start_proxy pg --gateway "$G" --api-key "$KEY" --allow-sim --receipts "$tmp/gw-receipts.jsonl"; then
			PG="http://127.0.0.1:$PORT"
			check "through the gateway: verified (gateway + 2 nodes)" test "$(wait_state "$PG")" = verified
			curl -s "$PG/veil/status" >"$tmp/gstatus.json"
			check "/veil/status: the gateway's attestation, its TLS key pinned, both nodes" \
				jqt --arg s "$gw_spki" '.mode == "gateway" and .tls_spki_sha256 == $s and .gateway_attestation.ok and
					.gateway_attestation.tee == "sim" and (.gateway_attestation.measurements | has("gateway_binary")) and
					([.nodes[] | select(.ok)] | length) == 2' "$tmp/gstatus.json"
			js openai "$PG" stories260K
			for _ in 1 2 3 4; do
				curl -s -D - -o /dev/null -H 'Content-Type: application/json' -d "$chat" "$PG/v1/chat/completions"
			done | tr -d '\r' | awk -F': ' 'tolower($1) == "x-veil-node" { print $2 }' | sort -u >"$tmp/gnodes"
			check "requests are sealed to both verified nodes in turn" test "$(wc -l <"$tmp/gnodes")" = 2
			sleep 0.3
			check "receipts log: gateway and node attestation lines, verified receipts" \
				bash -c 'jq -s -e "(map(select(.type == \"attestation\")) | map(.role) | unique) == [\"gateway\", \"node\"] and
					(map(select(.type == \"receipt\")) | length >= 8 and all(.ok))" "$0" >/dev/null' "$tmp/gw-receipts.jsonl"
			if "$VEIL" receipts verify --help >/dev/null 2>&1; then
				"$VEIL" receipts verify "$tmp/gw-receipts.jsonl" --allow-sim >"$tmp/grv.out" 2>&1
				check "veil receipts verify re-verifies the gateway run's log" test $? -eq 0
			fi
		fi
		if start_proxy pk --gateway "$G" --api-key "sk-veil-wrong" --allow-sim; then
			code="$(curl -s -o "$tmp/k.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "http://127.0.0.1:$PORT/v1/chat/completions")"
			check "a wrong API key: the gateway's 401 is passed on" test "$code" = 401
		fi
		n0="$(( $(prompt_lines ga) + $(prompt_lines gb) ))"
		if start_proxy pz --gateway "$G" --policy "$tmp/pin.json"; then
			code="$(curl -s -o "$tmp/z.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$chat" "http://127.0.0.1:$PORT/v1/chat/completions")"
			check "through the gateway: nodes with another model hash are refused (403 policy_refused)" \
				bash -c '[ "$0" = 403 ] && jq -e ".error.code == \"policy_refused\"" "$1" >/dev/null' "$code" "$tmp/z.json"
			check "... and no node received a request" test "$(( $(prompt_lines ga) + $(prompt_lines gb) ))" = "$n0"
		fi
	else
		notok "veil-gateway starts"
	fi
	# A man in the middle between the proxy and a plain-http gateway.
	if start_server gwp "$GW_BIN" --listen 127.0.0.1:0 --db "sqlite:$tmp/gw.db" --nodes "$tmp/nodes.json" \
		--allow-sim --tee sim --plain-http --health-interval-ms 300 &&
		start_mitm mg "http://127.0.0.1:$PORT" && MG="http://127.0.0.1:$PORT" &&
		start_proxy pgm --gateway "$MG" --api-key "$KEY" --allow-sim; then
		PGM="http://127.0.0.1:$PORT"
		for _ in $(seq 1 50); do
			[ "$(curl -s "$MG/v1/attestation/report" | jq '.nodes | length' 2>/dev/null)" = 2 ] && break
			sleep 0.1
		done
		js tamper "$PGM" stories260K "$MG" "through the gateway, relay"
	else
		notok "plain-http gateway, relay and proxy start"
	fi
else
	skip "veil-proxy through veil-gateway" "$GW_BIN not built (or no node.js)"
fi

# ---- a busy gateway does not unverify a proxy -------------------------------------------
# Anyone can fill a gateway's 64 fresh-report slots (its quotes take 200 ms
# here, one at a time): a background re-verification that meets its 429
# keeps the proxy's state, still in date, and asks again each second.
if [ -x "$GW_BIN" ] && start_node bn; then
	printf '[{"url":"https://127.0.0.1:%s","model":"stories260K","id":"bn"}]\n' "$PORT" >"$tmp/bnodes.json"
	if start_server gwbusy env VEIL_SIM_QUOTE_DELAY_MS=200 "$GW_BIN" --listen 127.0.0.1:0 --plain-http \
		--db "sqlite:$tmp/gwbusy.db" --nodes "$tmp/bnodes.json" --allow-sim --tee sim; then
		GBU="http://127.0.0.1:$PORT"
		for _ in $(seq 1 100); do
			[ "$(curl -s "$GBU/v1/attestation/report" | jq '.nodes | length' 2>/dev/null)" = 1 ] && break
			sleep 0.1
		done
		if start_proxy pbusy --gateway "$GBU" --allow-sim --recheck-s 10; then
			PBU="http://127.0.0.1:$PORT"
			wait_state "$PBU" >/dev/null
			t_v=$SECONDS
			sleep 5   # the background round comes at 8 s, the state expires at 10 s
			bpids=()
			for i in $(seq 1 72); do
				(while [ $((SECONDS - t_v)) -lt 10 ]; do
					curl -s -m 30 -o /dev/null "$GBU/v1/attestation/report?nonce=$(openssl rand -hex 32)"
				done) &
				bpids+=("$!")
			done
			while [ $((SECONDS - t_v)) -lt 9 ]; do sleep 0.2; done
			bstate="$(curl -s "$PBU/veil/status" | jq -r .state)"
			echo "# 9 s after verifying, the gateway's report slots full: proxy state $bstate"
			# the round at 8 s meets the 429 unless it catches the moment a
			# slot frees (a quote ends every 200 ms and a loop takes the
			# slot within a few ms): then it waits in the queue, and the
			# state stays in date all the same (seen once in CI)
			grep -q "stays, asking again each second" "$tmp/pbusy.log" ||
				echo "# (the round took a freed slot instead of meeting the 429)"
			check "a background re-verification meeting a busy gateway keeps the state in date" \
				test "$bstate" = verified
			kill "${bpids[@]}" 2>/dev/null
			pkill -f "$GBU/v1/attestation/report" 2>/dev/null
			wait "${bpids[@]}" 2>/dev/null
		else
			notok "a proxy in front of the slow-quote gateway starts"
		fi
	else
		notok "a gateway with slow quotes starts"
	fi
fi

# ---- no plaintext in any log ------------------------------------------------------------
if [ "$have_js" = 1 ]; then
	check "the canary prompt appears in no log (proxy at debug level included)" bash -c '! grep -rqF "$0" "$1"/*.log' "$CANARY" "$tmp"
	check "no proxy log holds completion text" bash -c '! grep -qE "\"content\"|\"text\":" "$0"/p*.log' "$tmp"
fi

# ---- shutdown: every proxy stops cleanly (a sanitizer build reports here) -----------------
bad=0
for p in "${ppids[@]}"; do
	kill -TERM "$p" 2>/dev/null
	wait "$p" 2>/dev/null || bad=$((bad + 1))
done
check "every veil-proxy exits 0 on SIGTERM (${#ppids[@]} of them, $bad did not)" test "$bad" -eq 0
check "no sanitizer report in any proxy log" bash -c '! grep -lE "AddressSanitizer|LeakSanitizer|runtime error" "$0"/p*.log' "$tmp"

echo "# test_proxy: $fails failed"
[ "$fails" -eq 0 ]
