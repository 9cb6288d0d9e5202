#!/usr/bin/env bash
# veil-node end to end: real processes on 127.0.0.1 (port 0, the port read
# from the node's log), the official openai npm client, receipts checked with
# ethers / node:crypto / the veil CLI, sealed requests with hpke-js, the
# attestation report with `veil verify`, cancellation, concurrency, limits,
# upstream mode, graceful shutdown, and a canary that must never be logged.
# Env: VEIL_BIN (dir with veil and veil-node), VEIL_SHARED (default ../shared).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
JS=tests/js/node_client.mjs

require_built "veil-node" "$NODE_BIN" "$VEIL"
skip_unless_shared "veil-node" "$MODEL"
have_js=1
have_node_modules openai ethers hpke-js || have_js=0
setup_tmp

CANARY="canary-$(openssl rand -hex 12)"

# start_node NAME ARGS... : starts veil-node, waits until it listens and is
# ready; sets PORT and PID.
start_node() {
	local name="$1"; shift
	start_server "$name" "$NODE_BIN" --listen 127.0.0.1:0 --tee sim --threads 1 "$@" &&
		wait_ready "$URL"
}

# unhex HEX: the bytes (bash printf's \xHH).
unhex() { printf "$(printf '%s' "$1" | sed 's/../\\x&/g')"; }
# ossl_ed25519_verify PUBHEX SIGHEX MSGFILE: Ed25519 with the OpenSSL CLI.
ossl_ed25519_verify() {
	unhex "302a300506032b6570032100$1" |
		openssl pkey -pubin -inform DER -out "$tmp/osslpub.pem" 2>/dev/null || return 1
	unhex "$2" >"$tmp/osslsig"
	openssl pkeyutl -verify -pubin -inkey "$tmp/osslpub.pem" -rawin -in "$3" \
		-sigfile "$tmp/osslsig" >/dev/null 2>&1
}

# js CMD BASE [ARG]: relays the client's ok/not ok lines and counts failures;
# "ed25519 PUB SIG B64MSG" lines are checked with `veil sign verify`,
# "text-ed25519 PUB SIG B64MSG" lines (receipts' text signatures) with the
# OpenSSL CLI, each also with a flipped message byte that must fail.
js() {
	local out line rc n=0 bad=0 nt=0 tbad=0
	out="$(node "$JS" "$@" 2>&1)"; rc=$?
	while IFS= read -r line; do
		case "$line" in
		"ok - "*) echo "$line" ;;
		"not ok - "*) echo "$line"; fails=$((fails + 1)) ;;
		"ed25519 "*)
			read -r _ pub sig msg <<<"$line"
			n=$((n + 1))
			printf '%s' "$msg" | base64 -d >"$tmp/msg"
			"$VEIL" sign verify --algo ed25519 --public "$pub" --signature "$sig" <"$tmp/msg" >/dev/null || bad=$((bad + 1))
			;;
		"text-ed25519 "*)
			read -r _ pub sig msg <<<"$line"
			nt=$((nt + 1))
			printf '%s' "$msg" | base64 -d >"$tmp/tmsg"
			ossl_ed25519_verify "$pub" "$sig" "$tmp/tmsg" || tbad=$((tbad + 1))
			printf 'x' >>"$tmp/tmsg"
			! ossl_ed25519_verify "$pub" "$sig" "$tmp/tmsg" || tbad=$((tbad + 1))
			;;
		*) echo "# $line" ;;
		esac
	done <<<"$out"
	if [ "$n" -gt 0 ]; then
		check "$1: $n Ed25519 signatures verify with veil sign verify" test "$bad" -eq 0
	fi
	if [ "$nt" -gt 0 ]; then
		check "$1: $nt receipts' Ed25519 text signatures verify with openssl pkeyutl (and fail on another text)" test "$tbad" -eq 0
	fi
	[ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || notok "$1: client exited $rc"
}

# ---- command line -----------------------------------------------------------
"$NODE_BIN" --help | grep -q "usage: veil-node"; check "veil-node --help prints usage" test $? -eq 0
"$NODE_BIN" --listen 127.0.0.1:0 >/dev/null 2>&1; check "veil-node without --model exits 2" test $? -eq 2
"$NODE_BIN" --model "$MODEL" --plain-http --listen 0.0.0.0:0 >/dev/null 2>&1
check "--plain-http on a non-loopback address is refused (exit 2)" test $? -eq 2
# A model name receipts and gateways cannot carry (a control byte made every
# receipt fail; a long one was cut silently): refused at start, named.
"$NODE_BIN" --model "$MODEL" --model-name "$(printf 'm\tx')" --print-config >/dev/null 2>"$tmp/name.err"
check "--model-name with a control character is refused (exit 2), saying why" \
	bash -c '[ "$0" -eq 2 ] && grep -q "printable ASCII" "$1"' $? "$tmp/name.err"
"$NODE_BIN" --model "$MODEL" --model-name "$(printf 'a%.0s' $(seq 1 200))" --print-config >/dev/null 2>&1
check "--model-name over 127 bytes is refused (exit 2), not cut" test $? -eq 2
ln -s "$MODEL" "$tmp/my model.gguf"
"$NODE_BIN" --model "$tmp/my model.gguf" --print-config >/dev/null 2>"$tmp/name.err"
check "a model file name with a space needs --model-name (exit 2, said)" \
	bash -c '[ "$0" -eq 2 ] && grep -q -- "--model-name" "$1"' $? "$tmp/name.err"
"$NODE_BIN" --model "$tmp/my model.gguf" --model-name "llama3:8b" --print-config >/dev/null 2>&1
check "... and runs with one (a name with ':' is fine)" test $? -eq 0
ln -s "$MODEL" "$tmp/$(printf 'a%.0s' $(seq 1 150)).gguf"
"$NODE_BIN" --model "$tmp/$(printf 'a%.0s' $(seq 1 150)).gguf" --print-config >/dev/null 2>"$tmp/name.err"
check "a model file name over 127 bytes needs --model-name (exit 2), not cut" \
	bash -c '[ "$0" -eq 2 ] && grep -q -- "--model-name" "$1"' $? "$tmp/name.err"

# ---- node A: plain HTTP, plaintext allowed ------------------------------------
if ! start_node a --model "$MODEL" --plain-http --allow-plaintext --max-queue 256; then
	notok "node A starts and becomes ready"
	exit 1
fi
ok "node A starts and becomes ready"
A="http://127.0.0.1:$PORT"
PIDA=$PID
check "node A logs that --plain-http is for tests" grep -q "NO TLS" "$tmp/a.log"
check "node A logs its RTMR3 event log (binary, config, model)" \
	bash -c 'grep "event log" "$0" | grep -q "veil-node-binary.*veil-node-config.*veil-model"' "$tmp/a.log"
check "GET /healthz is 200" test "$(curl -s -o /dev/null -w '%{http_code}' "$A/healthz")" = 200
code="$(curl -s -o "$tmp/bad.json" -w '%{http_code}' -H 'Content-Type: application/json' -d '{"model":' "$A/v1/chat/completions")"
check "bad JSON is a 400 in OpenAI's error shape" bash -c '[ "$0" = 400 ] && jq -e ".error.message and .error.type == \"invalid_request_error\"" "$1" >/dev/null' "$code" "$tmp/bad.json"

if [ "$have_js" = 1 ]; then
	js openai "$A" stories260K
	js receipts "$A" stories260K
	js sealed "$A" stories260K
	js concurrent "$A" stories260K 100
	js canary "$A" stories260K "$CANARY"
	# many tokens' top_logprobs pile up while the loop serves 8 streams on
	# one engine thread: split into events within one sealed chunk each
	js bigevents "$A" stories260K 4
	js sealed-errors "$A" stories260K
else
	skip "openai / receipts / sealed / concurrency checks" "node or tests/js/node_modules missing (cd tests/js && npm install)"
fi

# ---- attestation ---------------------------------------------------------------
nonce="$(openssl rand -hex 32)"
curl -s "$A/v1/attestation/report?nonce=$nonce" >"$tmp/report.json"
if "$VEIL" verify --help >/dev/null 2>&1; then
	"$VEIL" verify "$tmp/report.json" --kind report --nonce "$nonce" --allow-sim >"$tmp/verify.out" 2>&1
	check "veil verify --kind report passes with the nonce and --allow-sim" test $? -eq 0
	"$VEIL" verify "$tmp/report.json" --kind report --nonce "$nonce" >/dev/null 2>&1
	check "veil verify refuses the sim report without --allow-sim" test $? -eq 1
	"$VEIL" verify "$tmp/report.json" --kind report --nonce "$(openssl rand -hex 32)" --allow-sim >/dev/null 2>&1
	check "veil verify refuses the report under another nonce" test $? -eq 1
else
	skip "veil verify --kind report" "the verify CLI is not built"
fi
check "report measures binary, config and model" \
	jqt '.measurements.node_binary and .measurements.node_config and .measurements.model' "$tmp/report.json"
sha_model="$(sha256sum "$MODEL" | cut -d' ' -f1)"
check "report names the model and its SHA-256" \
	jqt --arg s "$sha_model" '.model.name == "stories260K" and .model.sha256 == $s' "$tmp/report.json"
curl -s "$A/v1/attestation/report" >"$tmp/cached.json"
check "report without a nonce is the cached one" jqt '.version == "veil-report/1"' "$tmp/cached.json"
check "a malformed nonce is a 400" \
	test "$(curl -s -o /dev/null -w '%{http_code}' "$A/v1/attestation/report?nonce=abc")" = 400
body='{"model":"stories260K","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
addr="$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' -d "$body" "$A/v1/chat/completions" |
	tr -d '\r' | awk -F': ' 'tolower($1) == "x-veil-receipt" { print $2 }' | tr '_-' '/+' | base64 -d 2>/dev/null |
	jq -r '.payload | fromjson | .signing_address')"
check "the receipt's signer is the address bound in the report" \
	jqt --arg a "$addr" '.keys.eth_address | ascii_downcase == ($a | ascii_downcase)' "$tmp/report.json"

# ---- a client that leaves mid-stream cancels its sequence ---------------------
c0="$(metric "$A" veil_node_cancelled_total)"
g0="$(metric "$A" veil_node_completion_tokens_total)"
curl -sN -H 'Content-Type: application/json' \
	-d '{"model":"stories260K","prompt":"Once upon a time","max_tokens":1900,"stream":true}' \
	"$A/v1/completions" | head -c 300 >/dev/null
sleep 0.5
c1="$(metric "$A" veil_node_cancelled_total)"
g1="$(metric "$A" veil_node_completion_tokens_total)"
check "a client killed mid-stream cancels its sequence (metrics)" \
	bash -c '[ "$0" -gt "$1" ] && [ $(( $2 - $3 )) -lt 1900 ]' "${c1:-0}" "${c0:-0}" "${g1:-0}" "${g0:-0}"
check "after it nothing is left running" test "$(metric "$A" veil_node_active_requests)" = 0

# ---- prompt size edges ----------------------------------------------------------
# errcode URL PATH JSONFILE: "STATUS CODE" of the answer
errcode() {
	curl -s -o "$tmp/err.json" -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary @"$3" "$1$2" >"$tmp/err.code"
	echo "$(cat "$tmp/err.code") $(jq -r '.error.code // "none"' "$tmp/err.json" 2>/dev/null)"
}
# over 65536 tokens (and far over n_ctx): refused before the tokenizer runs
python3 -c 'import json; print(json.dumps({"model":"stories260K","prompt":"a "*300000,"max_tokens":1}))' >"$tmp/huge.json"
check "a prompt of over 65536 tokens is a 400 context_length_exceeded" test "$(errcode "$A" /v1/completions "$tmp/huge.json")" = "400 context_length_exceeded"
python3 -c 'import json; print(json.dumps({"model":"stories260K","messages":[{"role":"user","content":"a "*300000}],"max_tokens":1}))' >"$tmp/huge.json"
check "a chat prompt of over 65536 tokens is a 400 context_length_exceeded" test "$(errcode "$A" /v1/chat/completions "$tmp/huge.json")" = "400 context_length_exceeded"
# a little over n_ctx (2048; ~2400 tokens): the tokenizer stops at the cap
python3 -c 'import json; print(json.dumps({"model":"stories260K","prompt":"Once upon a time "*600,"max_tokens":1}))' >"$tmp/over.json"
check "a prompt just over the context is a 400 context_length_exceeded" test "$(errcode "$A" /v1/completions "$tmp/over.json")" = "400 context_length_exceeded"
check "after them the node still answers" test "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$body" "$A/v1/chat/completions")" = 200

curl -s "$A/metrics" >"$tmp/metrics"
check "metrics: requests by status, tokens, queue, batch, TTFT and token latency" bash -c '
	for m in "veil_node_requests_total{status=\"200\"}" veil_node_prompt_tokens_total \
		veil_node_completion_tokens_total veil_node_queue_depth veil_node_batch_size \
		veil_node_ttft_seconds_count veil_node_token_latency_seconds_bucket; do
		grep -qF "$m" "$0" || { echo "# missing $m"; exit 1; }
	done' "$tmp/metrics"

# ---- node B: TLS (the default), sealed bodies only ---------------------------
if start_node b --model "$MODEL"; then
	ok "node B (TLS, default) starts"
	B="https://127.0.0.1:$PORT"
	check "TLS: GET /healthz over https" test "$(curl -sk -o /dev/null -w '%{http_code}' "$B/healthz")" = 200
	spki="$(tls_spki_sha256 "$PORT")"
	check "TLS key's SPKI SHA-256 is the one bound in the report" \
		bash -c 'curl -sk "$0/v1/attestation/report?nonce=$(openssl rand -hex 32)" | jq -e --arg s "$1" ".keys.tls_spki_sha256 == \$s" >/dev/null' "$B" "$spki"
	code="$(curl -sk -o "$tmp/pt.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$body" "$B/v1/chat/completions")"
	check "plaintext bodies are refused (403) without --allow-plaintext" \
		bash -c '[ "$0" = 403 ] && jq -e ".error.code == \"plaintext_refused\"" "$1" >/dev/null' "$code" "$tmp/pt.json"
	if [ "$have_js" = 1 ]; then
		NODE_TLS_REJECT_UNAUTHORIZED=0 NODE_NO_WARNINGS=1 js sealed "$B" stories260K
	fi
else
	notok "node B (TLS, default) starts"
fi

# ---- node C: limits -----------------------------------------------------------
if start_node c --model "$MODEL" --plain-http --allow-plaintext --max-body 2048 \
	--max-header-bytes 1024 --max-conns 6 --idle-timeout-ms 300 --request-timeout-ms 1000 --max-batch 1 --max-queue 1 --receipts-max 3; then
	C="http://127.0.0.1:$PORT"
	# --receipts-max: a fourth answer pushes the first receipt out, within
	# its 20 minutes, which the metrics count
	ids=()
	for i in 1 2 3 4; do
		ids+=("$(curl -s -H 'Content-Type: application/json' \
			-d '{"model":"stories260K","prompt":"Once","max_tokens":2}' "$C/v1/completions" | jq -r .id)")
	done
	sig_code() { curl -s -o /dev/null -w '%{http_code}' "$C/v1/signature/$1?signing_algo=ecdsa"; }
	check "--receipts-max 3: the first of 4 receipts is gone (404), the other 3 are kept" \
		bash -c '[ "$0" = 404 ] && [ "$1" = 200 ] && [ "$2" = 200 ] && [ "$3" = 200 ]' \
		"$(sig_code "${ids[0]}")" "$(sig_code "${ids[1]}")" "$(sig_code "${ids[2]}")" "$(sig_code "${ids[3]}")"
	check "--receipts-max 3: metrics show 3 stored and 1 dropped early, and the log says so" \
		bash -c '[ "$0" = 3 ] && [ "$1" = 1 ] && grep -q "receipt store is full (--receipts-max 3)" "$2"' \
		"$(metric "$C" veil_node_receipts_stored)" "$(metric "$C" veil_node_receipts_dropped_early_total)" "$tmp/c.log"
	big="$(head -c 4096 /dev/zero | tr '\0' 'a')"
	check "a body over --max-body is a 413" \
		test "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "{\"x\":\"$big\"}" "$C/v1/completions")" = 413
	check "a head over --max-header-bytes is a 431" \
		test "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: ${big:0:2000}" "$C/healthz")" = 431
	exec 3<>"/dev/tcp/127.0.0.1/$PORT"
	printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mo' >&3
	line="$(timeout 3 head -n1 <&3 | tr -d '\r')"
	exec 3<&- 3>&-
	check "a request that stalls past --idle-timeout-ms is a 408" bash -c '[[ "$0" == "HTTP/1.1 408"* ]]' "$line"
	exec 3<>"/dev/tcp/127.0.0.1/$PORT"
	printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n' >&3
	# each write in a subshell: once the node has answered 408 and closed,
	# a write gets SIGPIPE, which must not kill this script
	for _ in $(seq 1 12); do (printf 'a' >&3) 2>/dev/null; sleep 0.15; done
	line="$(timeout 3 head -n1 <&3 | tr -d '\r')"
	exec 3<&- 3>&-
	check "a request dripping past --request-timeout-ms is a 408" bash -c '[[ "$0" == "HTTP/1.1 408"* ]]' "$line"
	for fd in 4 5 6 7 8 9; do eval "exec $fd<>/dev/tcp/127.0.0.1/$PORT"; done
	sleep 0.2
	code="$(curl -s -o /dev/null -w '%{http_code}' "$C/healthz")"
	for fd in 4 5 6 7 8 9; do eval "exec $fd<&- $fd>&-"; done
	check "a connection over --max-conns is a 503" test "$code" = 503
	sleep 0.5
	cpids=()
	for i in $(seq 1 8); do
		curl -s -m 60 -o /dev/null -D "$tmp/h$i" -w '%{http_code}\n' -H 'Content-Type: application/json' \
			-d '{"model":"stories260K","prompt":"Once","max_tokens":1500}' "$C/v1/completions" >"$tmp/code$i" &
		cpids+=($!)
	done
	wait "${cpids[@]}"
	n429="$(cat "$tmp"/code* | grep -c 429)"
	n200="$(cat "$tmp"/code* | grep -c 200)"
	check "a full engine queue answers 429 with Retry-After ($n429 of 8; $n200 served)" \
		bash -c '[ "$0" -ge 1 ] && [ "$1" -ge 1 ] && grep -qi "^retry-after:" $(grep -l " 429" "$2"/h*)' "$n429" "$n200" "$tmp"
else
	notok "node C (limits) starts"
fi

# ---- node D: upstream mode in front of node A ---------------------------------
if start_node d --model "$MODEL" --upstream "$A" --plain-http --allow-plaintext; then
	D="http://127.0.0.1:$PORT"
	ok "node D (upstream mode) starts"
	if [ "$have_js" = 1 ]; then
		js openai "$D" stories260K
		js receipts "$D" stories260K
		js sealed "$D" stories260K
	fi
	curl -sN -H 'Content-Type: application/json' \
		-d '{"model":"stories260K","prompt":"Once","max_tokens":5,"stream":true}' "$D/v1/completions" >"$tmp/up.sse"
	check "upstream stream without include_usage: no usage chunk, yet the receipt has the usage" bash -c '
		! grep -v veil.receipt "$0" | grep -qF "\"usage\":{" &&
		grep veil.receipt "$0" | sed "s/^data: //" |
			jq -e ".veil_receipt.payload | fromjson | .usage.completion_tokens == 5" >/dev/null' "$tmp/up.sse"
	addr_d="$(grep -o 'ethereum 0x[0-9a-fA-F]*' "$tmp/d.log" | cut -d' ' -f2)"
	addr_a="$(grep -o 'ethereum 0x[0-9a-fA-F]*' "$tmp/a.log" | cut -d' ' -f2)"
	rc_d="$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' -d "$body" "$D/v1/chat/completions" |
		tr -d '\r' | awk -F': ' 'tolower($1) == "x-veil-receipt" { print $2 }' | tr '_-' '/+' | base64 -d 2>/dev/null |
		jq -r '.payload | fromjson | .signing_address')"
	check "upstream mode: the receipt is signed by the front node, not the upstream" \
		bash -c '[ -n "$0" ] && [ "$0" = "$1" ] && [ "$0" != "$2" ]' "$rc_d" "$addr_d" "$addr_a"
else
	notok "node D (upstream mode) starts"
fi

# ---- node G: upstream mode, an upstream event over 64 KiB -----------------------
if [ "$have_js" = 1 ]; then
	if start_server bigup node tests/js/big_upstream.mjs stories260K 100000 &&
		start_node g --model "$MODEL" --upstream "$URL" --plain-http --allow-plaintext; then
		js upstream-big "http://127.0.0.1:$PORT" stories260K 100000
	else
		notok "node G (upstream: an engine sending 100 KB events) starts"
	fi
	# A client that stops reading while a fast upstream sends 6 MB: the
	# node's queue fills, and the stream must still end with the error
	# event (it was refused by the same full queue, leaving a clean-looking
	# end: found by review)
	if start_server fastup node tests/js/big_upstream.mjs stories260K 100000 60 &&
		start_node g2 --model "$MODEL" --upstream "$URL" --plain-http --allow-plaintext; then
		out="$(python3 - "$PORT" <<'EOF'
import json, socket, sys, time
body = json.dumps({"model": "stories260K", "stream": True,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n" % len(body) + body)
time.sleep(3)
data = b""
s.settimeout(20)
try:  # to the chunked end (the connection stays open: keep-alive)
    while not data.endswith(b"\r\n0\r\n\r\n"):
        d = s.recv(1 << 20)
        if not d:
            break
        data += d
except socket.timeout:
    pass
tail = data[-2000:]
print("%d bytes, %s, %s, %s" % (len(data),
      "error event" if b"event: error" in tail and b'"client_too_slow"' in tail else "NO error event",
      "[DONE]" if b"[DONE]" in data else "no [DONE]",
      "chunked end" if data.endswith(b"0\r\n\r\n") else "no chunked end"))
EOF
)"
		check "upstream mode, a client that stopped reading: the stream ends with client_too_slow, no [DONE] ($out)" \
			bash -c '[[ "$0" == *", error event, no [DONE], chunked end" ]]' "$out"
	else
		notok "node G2 (upstream: a fast engine, a client that stops reading) starts"
	fi
else
	skip "upstream events over 64 KiB" "node client missing"
fi

# ---- node F: a chatml model; user content cannot inject control tokens ----------
SYNTH="$VEIL_SHARED/models/tiny-synth-f16.gguf"
if [ ! -f "$SYNTH" ]; then
	skip "chat template: no control-token injection" "$SYNTH missing"
elif start_node f --model "$SYNTH" --plain-http --allow-plaintext; then
	F="http://127.0.0.1:$PORT"
	ptok() {
		jq -cn --arg c "$1" '{model:"tiny-synth-f16",messages:[{role:"user",content:$c}],max_tokens:1}' |
			curl -s -H 'Content-Type: application/json' -d @- "$F/v1/chat/completions" | jq -r .usage.prompt_tokens
	}
	n_plain="$(ptok a)"; n_inject="$(ptok '<|im_end|>')"
	check "chatml: '<|im_end|>' in user content is text, not the control token ($n_inject vs $n_plain tokens)" \
		bash -c '[ "$0" -gt 0 ] && [ "$1" -gt $(( $0 + 1 )) ]' "${n_plain:-0}" "${n_inject:-0}"
	check "the chat template was detected as chatml" grep -q "chat template chatml" "$tmp/f.log"
	# the whole rendering tokenized once, as llama.cpp does: its 16 ids
	# (reference/smollm2-tokenizer-llamacpp.json)
	n_ref="$(ptok 'What is 2+2?')"
	check "chatml: a prompt has llama.cpp's token count (16: $n_ref)" test "${n_ref:-0}" = 16
	# only OpenAI's roles (a template may build a control token from one)
	jq -cn '{model:"tiny-synth-f16",messages:[{role:"end",content:"x"}],max_tokens:1}' >"$tmp/role.json"
	got="$(errcode "$F" /v1/chat/completions "$tmp/role.json")"
	check "an unknown role is a 400 invalid_request_error naming 'role' ($got)" \
		bash -c '[ "${0%% *}" = 400 ] && jq -e ".error.type == \"invalid_request_error\" and (.error.message | test(\"role\"))" "$1" >/dev/null' \
		"$got" "$tmp/err.json"
	# parameters the node cannot honour are refused, not ignored
	for kv in 'logit_bias:{"50256":-100}' 'tools:[{"type":"function","function":{"name":"f"}}]' \
		'tool_choice:"required"' 'response_format:{"type":"json_object"}'; do
		k="${kv%%:*}"
		jq -cn --arg k "$k" --argjson v "${kv#*:}" \
			'{model:"tiny-synth-f16",messages:[{role:"user",content:"x"}],max_tokens:1} + {($k): $v}' >"$tmp/unsup.json"
		got="$(errcode "$F" /v1/chat/completions "$tmp/unsup.json")"
		check "'$k' is refused with a 400 unsupported_parameter naming it ($got)" \
			bash -c '[ "$0" = "400 unsupported_parameter" ] && jq -e --arg k "$2" ".error.type == \"invalid_request_error\" and (.error.message | contains(\$k))" "$1" >/dev/null' \
			"$got" "$tmp/err.json" "$k"
	done
	jq -cn '{model:"tiny-synth-f16",messages:[{role:"user",content:"x"}],max_tokens:1,
		logit_bias:{},tools:[],tool_choice:"none",response_format:{type:"text"}}' >"$tmp/neutral.json"
	check "their neutral values are accepted" \
		test "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$tmp/neutral.json" "$F/v1/chat/completions")" = 200
	# no BOS: an empty prompt has no tokens at all
	printf '{"model":"tiny-synth-f16","prompt":"","max_tokens":1}' >"$tmp/empty.json"
	got="$(errcode "$F" /v1/completions "$tmp/empty.json")"
	check "an empty prompt (model without BOS) is a 400 invalid_prompt saying it is empty ($got)" \
		bash -c '[ "$0" = "400 invalid_prompt" ] && jq -e ".error.type == \"invalid_request_error\" and (.error.message | test(\"empty\"))" "$1" >/dev/null' \
		"$got" "$tmp/err.json"
else
	notok "node F (chatml model) starts"
fi

# ---- shutdown: graceful, then forced; then the canary ---------------------------
# Node H: streams still generating when the grace (10 s) runs out.  Their
# sequences are cancelled and each ends at its final event with
# shutting_down, then a receipt for the tokens generated (what the client
# was sent is billed), and no [DONE].  A context of 65536 so that a stream
# of 65000 tokens is still running at the end of the grace on any machine
# (attention makes every token slower than the one before: ~19000 in 10 s
# here).  Its SIGTERM goes with node A's, so both graces overlap.
PIDH=""
long_req='{"model":"stories260K","prompt":"Once","max_tokens":65000,"stream":true}'
if start_node h --model "$MODEL" --plain-http --allow-plaintext --ctx 65536; then
	H="http://127.0.0.1:$PORT"
	PIDH=$PID
	curl -sN -m 40 -H 'Content-Type: application/json' -d "$long_req" "$H/v1/completions" >"$tmp/graced.sse" &
	hpid=$!
	spid=""
	if [ "$have_js" = 1 ]; then
		node tests/js/error_end_sealed.mjs "$H" stories260K 65000 shutting_down >"$tmp/graced-sealed.out" 2>&1 &
		spid=$!
		for _ in $(seq 1 50); do grep -q started "$tmp/graced-sealed.out" && break; sleep 0.1; done
	fi
	sleep 0.3
else
	notok "node H (a long context) starts"
fi
stream_req='{"model":"stories260K","prompt":"Once","max_tokens":1900,"stream":true}'
curl -sN -m 30 -H 'Content-Type: application/json' -d "$stream_req" "$A/v1/completions" >"$tmp/inflight.sse" &
cpid=$!
sleep 0.1
kill -TERM "$PIDA"
[ -n "$PIDH" ] && kill -TERM "$PIDH"
wait "$cpid"
for _ in $(seq 1 100); do kill -0 "$PIDA" 2>/dev/null || break; sleep 0.1; done
wait "$PIDA"; rc=$?
check "SIGTERM: node A shuts down gracefully (exit 0)" bash -c '[ "$0" -eq 0 ] && grep -q "node: stopped" "$1"' "$rc" "$tmp/a.log"
check "SIGTERM: a stream in flight still finishes with [DONE]" bash -c '[ "$(tail -c 14 "$0")" = "data: [DONE]" ] && grep -q veil.receipt "$0"' "$tmp/inflight.sse"
if start_node e --model "$MODEL" --plain-http --allow-plaintext; then
	E="http://127.0.0.1:$PORT"
	cpids=()
	for i in $(seq 1 8); do
		curl -sN -m 30 -H 'Content-Type: application/json' -d "$stream_req" "$E/v1/completions" >"$tmp/forced$i.sse" &
		cpids+=($!)
	done
	sleep 0.2
	kill -TERM "$PID"; sleep 0.05; kill -TERM "$PID"
	wait "${cpids[@]}"
	wait "$PID"; rc=$?
	nerr=0; nsilent=0
	for i in $(seq 1 8); do
		if grep -q "^event: error" "$tmp/forced$i.sse"; then nerr=$((nerr + 1))
		elif ! grep -q "^data: \[DONE\]" "$tmp/forced$i.sse"; then nsilent=$((nsilent + 1)); fi
	done
	check "second SIGTERM: streams cut short end with an error event ($nerr), none silently ($nsilent)" \
		bash -c '[ "$0" -ge 1 ] && [ "$1" -eq 0 ] && [ "$2" -eq 0 ]' "$nerr" "$nsilent" "$rc"
else
	notok "node E starts"
fi
if [ -n "$PIDH" ]; then
	wait "$hpid" ${spid:+"$spid"}
	wait "$PIDH"; rc=$?
	# from the signal to the end, by the node's log's clock
	th="$(awk '/signal 15: shutting down/ { a = $1 } / node: stopped/ { b = $1 } END { print a, b }' "$tmp/h.log" |
		python3 -c 'import sys, datetime as d; a, b = [d.datetime.fromisoformat(t.rstrip("Z")) for t in sys.stdin.read().split()]; print(int((b - a).total_seconds() * 1000))' 2>/dev/null)"
	check "SIGTERM, node H: shuts down within the grace (exit $rc, ${th:-?} ms after the signal)" \
		bash -c '[ "$0" -eq 0 ] && [ -n "$1" ] && [ "$1" -lt 10000 ]' "$rc" "$th"
	# the stream's end: shutting_down, then the receipt chunk over every
	# byte before it, nothing after it
	python3 - "$tmp/graced.sse" "$tmp/graced-payload" >"$tmp/graced.out" 2>&1 <<'PY'
import hashlib, json, sys
out = open(sys.argv[1], "rb").read()
at = out.find(b'"object":"veil.receipt"')
if at < 0:
    print("bad 0 - -")  # no receipt
    sys.exit(0)
start = out.rfind(b"data: ", 0, at)
err = out.rfind(b"event: error\n", 0, start)
rec = json.loads(out[start + 6:out.index(b"\n", start)])["veil_receipt"]
pay = json.loads(rec["payload"])
open(sys.argv[2], "w").write(rec["payload"])
ok = (at > 0 and err > 0 and b'"code":"shutting_down"' in out[err:start] and
      out[err:start].count(b"\n\n") == 1 and out[err:start].endswith(b"\n\n") and
      out[start:].count(b"\n\n") == 1 and out.endswith(b"\n\n") and b"[DONE]" not in out and
      hashlib.sha256(out[:start]).hexdigest() == pay["response_sha256"] and
      pay["usage"]["completion_tokens"] > 0)
print("ok" if ok else "bad", pay["usage"]["completion_tokens"], pay["ed25519_public_key"],
      rec["signature_ed25519"])
PY
	read -r verdict ntok hpub hsig <"$tmp/graced.out"
	check "SIGTERM mid-stream: the stream ends with error shutting_down, then a receipt for the tokens generated ($ntok) over every byte before it, no [DONE]" \
		test "$verdict" = ok
	check "... the receipt is signed by node H's Ed25519 key (veil sign verify)" \
		bash -c 'grep -q "keys: ed25519 $0," "$1" && "$2" sign verify --algo ed25519 --public "$0" --signature "$3" <"$4" >/dev/null' \
		"$hpub" "$tmp/h.log" "$VEIL" "$hsig" "$tmp/graced-payload"
	if [ -n "$spid" ]; then
		out="$(tail -1 "$tmp/graced-sealed.out")"
		check "... sealed too: the final chunk is the shutting_down error, the receipt covers every byte before it, no [DONE] ($out)" \
			test "${out%% *}" = ok
	fi
fi
if [ "$have_js" = 1 ]; then
	check "the canary prompt appears in no log" bash -c '! grep -rqF "$0" "$1"/*.log' "$CANARY" "$tmp"
	check "no log holds a completion text field" bash -c '! grep -rqE "\"content\"|\"text\":" "$0"/*.log' "$tmp"
else
	skip "canary prompt never logged" "node client missing"
fi

echo "# test_node: $fails failed"
[ "$fails" -eq 0 ]
