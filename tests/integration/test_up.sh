#!/usr/bin/env bash
# veil up end to end: the whole stack (veil-node, veil-gateway, veil-proxy)
# brought up by `veil up` on 127.0.0.1 as a user runs it, then checked from
# outside: --once from the repository root with the default model lookup,
# --state-dir files, the node's logged RTMR3 events, step 2's check of each
# node's report against what veil up computed (a veil-node that is not the
# file veil up hashed is named before the gateway starts), the policy pins
# against what the servers attest, a second proxy with one pin changed
# (refused), serving mode with two nodes, `veil chat`, the official openai
# npm client on the printed URL, SIGINT (every child gone, by pid), a killed
# child, PR_SET_PDEATHSIG, and the failures a user meets (bad model, port
# taken, state dir in use).
# Env: VEIL_BIN (dir with veil, veil-node, veil-gateway, veil-proxy),
# VEIL_SHARED (default ../shared).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT="$(pwd)"
VEIL_BIN="${VEIL_BIN:-build/bin}"
case "$VEIL_BIN" in /*) ;; *) VEIL_BIN="$ROOT/$VEIL_BIN" ;; esac
. tests/integration/lib.sh

for b in veil veil-node veil-gateway veil-proxy; do
	if [ ! -x "$VEIL_BIN/$b" ]; then
		notok "veil up: $VEIL_BIN/$b is not built"
		exit 1
	fi
done
check "veil up --help prints usage" bash -c '"$0" up --help | grep -q "usage: veil up"' "$VEIL"
check "veil chat --help prints usage" bash -c '"$0" chat --help | grep -q "usage: veil chat"' "$VEIL"
skip_unless_shared "veil up" "$MODEL"

setup_tmp
mkdir -p "$tmp/t"
# veil up's own temporary state directories land here: checked empty later
export TMPDIR="$tmp/t"
# the veil up running now, if any: SIGINT stops it and, through it, its children
UP=""
at_exit '[ -z "$UP" ] || { kill -INT "$UP" 2>/dev/null && wait "$UP" 2>/dev/null; }'

# alive PID: running and not a zombie (an orphan's zombie may linger until
# init reaps it)
alive() { [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

# No server started by this test's veil ups may outlive them: they inherit
# this test's TMPDIR, which names no other process's directory.
strays() {
	local p
	for p in $(pgrep -f 'veil-(node|gateway|proxy)'); do
		{ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "TMPDIR=$tmp/t" &&
			alive "$p" && echo "$p"
	done
}

# ---- 1. --once from the repository root, the default model lookup -----------
P="$(free_port)"
if [ -f models/stories260K.gguf ] || [ -f ../shared/models/stories260K.gguf ]; then
	ENVM=()  # the lookup itself: ./models/, ../shared/models/
else
	ENVM=(VEIL_MODEL="$MODEL")
fi
t0=$(date +%s.%N)
env "${ENVM[@]}" "$VEIL" up --once --port "$P" >"$tmp/once.out" 2>"$tmp/once.err"
rc=$?
t1=$(date +%s.%N)
if [ "$rc" -eq 0 ]; then ok "veil up --once exits 0 (self-check passed)"; else
	notok "veil up --once exits 0 (self-check passed) (rc $rc)"
	sed 's/^/#   /' "$tmp/once.out" "$tmp/once.err" | tail -30
fi
check "veil up --once names the proxy's OpenAI URL" grep -q "http://127.0.0.1:$P/v1" "$tmp/once.out"
check "veil up --once prints the verification line (TEE, TCB, model hash, receipt)" \
	grep -Eq "verified: TEE sim .*\| TCB UpToDate \| model stories260K sha256 270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d \| receipt .* verified" "$tmp/once.out"
check "veil up --once re-verifies the receipts log offline" \
	grep -q "receipts log re-verified offline: .* 1 of 1 receipt(s) ok" "$tmp/once.out"
check "veil up --once says the TEE is SIMULATED" grep -q "SIMULATED" "$tmp/once.out"
check "veil up --once leaves no temporary state directory" \
	bash -c '[ -z "$(ls -A "$0")" ]' "$tmp/t"
check "veil up --once leaves no server running" test -z "$(strays)"
echo "# veil up --once wall time: $(python3 -c "print(round($t1 - $t0, 2))") s"

# ---- 2. --state-dir: what it keeps ----------------------------------------------
S="$tmp/state"
P="$(free_port)"
"$VEIL" up --once --model "$MODEL" --port "$P" --state-dir "$S" >"$tmp/s1.out" 2>&1
check "veil up --once --state-dir exits 0" test $? -eq 0
check "state dir holds up.json, policy, nodes, keys, database, receipts, logs" \
	bash -c 'for f in up.json policy.json nodes.json admin.token api.key gateway.db receipts.jsonl \
		logs/node-0.log logs/gateway.log logs/proxy.log; do [ -s "$0/$f" ] || exit 1; done' "$S"
check "up.json parses and names every URL, the API key and the policy" \
	jqt --arg p "http://127.0.0.1:$P/v1" --arg s "$S" \
	'.proxy == $p and (.gateway | startswith("https://127.0.0.1:")) and (.nodes | length) == 1 and
	 (.nodes[0] | startswith("https://127.0.0.1:")) and (.api_key | startswith("sk-veil-")) and
	 .policy == ($s + "/policy.json") and .receipts == ($s + "/receipts.jsonl") and
	 .admin_token_file == ($s + "/admin.token") and .state_dir == $s and .tee == "sim"' "$S/up.json"
check "secrets are mode 0600 (up.json, admin.token, api.key)" \
	bash -c '[ "$(stat -c %a "$0/up.json" "$0/admin.token" "$0/api.key" | sort -u)" = 600 ]' "$S"
check "the policy is veil-policy/1 pinning sim, node, gateway and model" \
	jqt '.version == "veil-policy/1" and .tee == ["sim"] and .allow_sim == true and
	     .other_models == "refuse" and (.gateway.gateway_binary | length) == 1 and
	     (.gateway.gateway_config | length) == 1 and
	     (.models.stories260K | (.node_binary | length) == 1 and (.node_config | length) == 1 and
	      (.model | length) == 1 and .model_sha256 == ["270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"])' "$S/policy.json"
sha384() { openssl dgst -sha384 -r "$1" | cut -d' ' -f1; }
check "the policy pins the SHA-384 of the veil-node and veil-gateway binaries and the model" \
	jqt --arg n "$(sha384 "$VEIL_BIN/veil-node")" --arg g "$(sha384 "$VEIL_BIN/veil-gateway")" \
	--arg m "$(sha384 "$MODEL")" \
	'.models.stories260K.node_binary == [$n] and .gateway.gateway_binary == [$g] and .models.stories260K.model == [$m]' "$S/policy.json"
if "$VEIL" policy show "$S/policy.json" >/dev/null 2>&1; then ok "veil policy show reads the policy"; else
	notok "veil policy show reads the policy"; fi
"$VEIL" receipts verify "$S/receipts.jsonl" --allow-sim >"$tmp/rv.out" 2>&1
check "veil receipts verify passes on the kept receipts log" test $? -eq 0
key1="$(jq -r .api_key "$S/up.json")"
P="$(free_port)"
"$VEIL" up --once --model "$MODEL" --port "$P" --state-dir "$S" >"$tmp/s2.out" 2>&1
check "a second run on the same state dir passes" test $? -eq 0
check "... keeps the API key and forgets the first run's node" \
	bash -c '[ "$(jq -r .api_key "$0/up.json")" = "$1" ] && grep -q "forgot 1 node" "$2"' "$S" "$key1" "$tmp/s2.out"
check "... and its gateway never tried the old node" \
	bash -c '! grep -q "FAILED" "$0/logs/gateway.log"' "$S"

# The node logs its event log: every RTMR3 event (binary, config, model,
# model sha256), no line cut at the logger's 1023-byte cap (the whole log on
# one line was, and lost its last events).
check "node 0 logs its four RTMR3 events, each line below the log's 1023-byte cap" \
	bash -c 'L="$0/logs/node-0.log"
		grep -q "event log of 4 events: veil-node-binary, veil-node-config, veil-model, veil-model-sha256" "$L" &&
		for e in veil-node-binary veil-node-config veil-model veil-model-sha256; do
			grep -Eq "attestation: event [1-4]/4 imr 3 $e payload [0-9a-f]{64,96} digest [0-9a-f]{96}$" "$L" || exit 1
		done && [ "$(grep attestation: "$L" | awk "length > 1000" | wc -l)" -eq 0 ]' "$S"

# Step 2: veil up reads each node's report and compares its RTMR3 events
# with what it computed.  A veil-node that is not the file veil up hashed (a
# wrapper script that runs the real binary, which then measures itself)
# must stop veil up there, naming the binary, before any gateway starts;
# not at step 4 with the gateway's refusal.
W="$tmp/wrapbin"
mkdir -p "$W"
cp "$VEIL_BIN/veil" "$W/veil"  # a copy: veil up runs the servers next to /proc/self/exe
ln -s "$VEIL_BIN/veil-gateway" "$VEIL_BIN/veil-proxy" "$W/"
printf '#!/bin/sh\nexec "%s/veil-node" "$@"\n' "$VEIL_BIN" >"$W/veil-node"
chmod +x "$W/veil-node"
SW="$tmp/state-wrap"
"$W/veil" up --once --model "$MODEL" --port "$(free_port)" --state-dir "$SW" >"$tmp/wrap.out" 2>"$tmp/wrap.err"
rc=$?
if [ "$rc" -eq 1 ] && grep -q "node 0's binary measurement differs: the node measured $(sha384 "$VEIL_BIN/veil-node") (event veil-node-binary), veil up computed $(sha384 "$W/veil-node")" "$tmp/wrap.err"; then
	ok "a node measuring another binary than veil up hashed: exit 1 at step 2, naming the binary"
else
	notok "a node measuring another binary than veil up hashed: exit 1 at step 2, naming the binary" "rc $rc"
	sed 's/^/#   /' "$tmp/wrap.out" "$tmp/wrap.err" | tail -20
fi
check "... before the gateway started (no gateway log, no gateway refusal)" \
	bash -c '[ ! -e "$0/logs/gateway.log" ] && ! grep -q "gateway refused" "$1" && grep -q "every process stopped" "$2"' \
	"$SW" "$tmp/wrap.err" "$tmp/wrap.out"

# a state directory others may write to could hand veil up their admin token
# or a symlink for its secrets: refused before anything starts
mkdir "$tmp/shared-state" && chmod 0777 "$tmp/shared-state"
"$VEIL" up --once --model "$MODEL" --port "$(free_port)" --state-dir "$tmp/shared-state" >/dev/null 2>"$tmp/shared.err"
check "a --state-dir that others may write to is refused" \
	bash -c '[ "$0" -ne 0 ] && grep -q "only you can write" "$1" && [ ! -e "$2/admin.token" ]' $? "$tmp/shared.err" "$tmp/shared-state"

# ---- 3. serving: two nodes, veil chat, the openai client, the pins --------------
S2="$tmp/serve"
P="$(free_port)"
"$VEIL" up --model "$MODEL" --nodes 2 --port "$P" --state-dir "$S2" >"$tmp/serve.out" 2>&1 &
UP=$!
for _ in $(seq 1 300); do
	grep -qs "Press Ctrl-C to stop" "$tmp/serve.out" && break
	kill -0 "$UP" 2>/dev/null || break
	sleep 0.1
done
if ! grep -q "Press Ctrl-C to stop" "$tmp/serve.out"; then
	notok "veil up --nodes 2 serves"
	sed 's/^/#   /' "$tmp/serve.out" | tail -30
	exit 1
fi
ok "veil up --nodes 2 serves"
URL="http://127.0.0.1:$P/v1"
check "it prints the URL and how to use it" grep -q "export OPENAI_BASE_URL=$URL" "$tmp/serve.out"
kids="$(pgrep -P "$UP" | tr '\n' ' ')"
check "four children: two nodes, gateway, proxy" test "$(wc -w <<<"$kids")" -eq 4
check "up.json names two nodes" jqt '(.nodes | length) == 2' "$S2/up.json"
curl -s "http://127.0.0.1:$P/veil/status" >"$tmp/status.json"
check "the proxy verified the gateway and both nodes against the policy" \
	jqt '.state == "verified" and ([.nodes[] | select(.ok)] | length) == 2 and .gateway_attestation.ok' "$tmp/status.json"

"$VEIL" chat --proxy "$URL" "Tell me a story" >"$tmp/chat.out" 2>"$tmp/chat.err"
check "veil chat against it exits 0" test $? -eq 0
check "veil chat prints an answer and the verification line" \
	bash -c '[ "$(wc -l <"$0")" -ge 2 ] && grep -Eq "^verified: TEE sim .*TCB UpToDate .*model stories260K sha256 [0-9a-f]{64} .*receipt .*verified$" "$0"' "$tmp/chat.out"
VEIL_PROXY="http://127.0.0.1:$P" "$VEIL" chat --model stories260K Once upon a time >/dev/null 2>&1
check "veil chat takes \$VEIL_PROXY, --model and words as TEXT" test $? -eq 0
"$VEIL" chat --proxy "$URL" --model nosuchmodel "hi" >/dev/null 2>"$tmp/chat2.err"
check "veil chat with an unknown model exits 1 with the proxy's reason" \
	bash -c '[ "$0" -eq 1 ] && grep -q "HTTP 404" "$1"' $? "$tmp/chat2.err"

if command -v node >/dev/null 2>&1 && [ -d tests/js/node_modules/openai ]; then
	out="$(cd tests/js && node up_client.mjs "$URL" stories260K 2>&1)"
	tap_relay <<<"$out"
else
	skip "openai npm client on veil up's URL" "node or tests/js/node_modules missing (cd tests/js && npm install)"
fi

# What the servers attest is what the policy pins (veil up computed its pins
# from the files and flags, not from the servers' answers).
n0="$(jq -r '.nodes[0]' "$S2/up.json")"
curl -sk "$n0/v1/attestation/report" >"$tmp/node-report.json"
check "the policy pins exactly what node 0 attests (binary, config, model)" \
	jqt --slurpfile p "$S2/policy.json" '.measurements as $m | $p[0].models.stories260K |
	  .node_binary == [$m.node_binary] and .node_config == [$m.node_config] and .model == [$m.model]' \
	"$tmp/node-report.json"
gw="$(jq -r .gateway "$S2/up.json")"
curl -sk "$gw/v1/attestation/report" >"$tmp/gw-report.json"
check "the policy pins exactly what the gateway attests (binary, config)" \
	jqt --slurpfile p "$S2/policy.json" '.gateway.measurements as $m | $p[0].gateway |
	  .gateway_binary == [$m.gateway_binary] and .gateway_config == [$m.gateway_config]' \
	"$tmp/gw-report.json"

# The pins are enforced: a second proxy on the same gateway, with the node
# configuration pin changed, must refuse every node.
jq --arg z "$(printf '%096d' 0)" '.models.stories260K.node_config = [$z]' \
	"$S2/policy.json" >"$tmp/bad-policy.json"
start_server bad-proxy env VEIL_API_KEY="$(jq -r .api_key "$S2/up.json")" "$VEIL_BIN/veil-proxy" \
	--listen 127.0.0.1:0 --gateway "$gw" --policy "$tmp/bad-policy.json" --allow-sim
BP=$PID
bport=$PORT
for _ in $(seq 1 100); do
	curl -s "http://127.0.0.1:$bport/veil/status" >"$tmp/bad-status.json"
	jqt '.state != "verifying" and .state != "unverified"' "$tmp/bad-status.json" && break
	sleep 0.05
done
check "a proxy whose policy pins another node config refuses both nodes" \
	jqt '([.nodes[] | select(.ok)] | length) == 0 and (.nodes | length) == 2' "$tmp/bad-status.json"
"$VEIL" chat --proxy "http://127.0.0.1:$bport" --model stories260K "hi" >/dev/null 2>&1
check "... and no chat goes through it" test $? -eq 1
kill "$BP" 2>/dev/null; wait "$BP" 2>/dev/null

"$VEIL" up --once --model "$MODEL" --port "$(free_port)" --state-dir "$S2" >/dev/null 2>"$tmp/inuse.err"
check "a second veil up on a state dir in use is refused" \
	bash -c '[ "$0" -eq 1 ] && grep -q "in use by another veil up" "$1"' $? "$tmp/inuse.err"

# SIGINT: every child stopped, by pid, and exit 0
kill -INT "$UP"
rc=124
for _ in $(seq 1 200); do
	if ! kill -0 "$UP" 2>/dev/null; then wait "$UP"; rc=$?; break; fi
	sleep 0.1
done
UP=""
check "SIGINT: veil up exits 0" test "$rc" -eq 0
left=""
for k in $kids; do alive "$k" && left="$left $k"; done
check "SIGINT: every child is gone (pids $kids)" test -z "$left"
check "SIGINT: veil up says every process stopped" grep -q "every process stopped" "$tmp/serve.out"
check "SIGINT: each server logged a clean stop" \
	bash -c 'for f in "$0"/logs/node-0.log "$0"/logs/node-1.log "$0"/logs/gateway.log "$0"/logs/proxy.log; do grep -q "stopped" "$f" || exit 1; done' "$S2"

# ---- 4. a child dies: veil up stops the rest and exits 1 -------------------------
P="$(free_port)"
"$VEIL" up --model "$MODEL" --port "$P" >"$tmp/die.out" 2>&1 &
UP=$!
for _ in $(seq 1 300); do grep -qs "Press Ctrl-C" "$tmp/die.out" && break; kill -0 "$UP" 2>/dev/null || break; sleep 0.1; done
kids="$(pgrep -P "$UP" | tr '\n' ' ')"
kill -9 "$(pgrep -P "$UP" -f veil-gateway)" 2>/dev/null
rc=124
for _ in $(seq 1 200); do
	if ! kill -0 "$UP" 2>/dev/null; then wait "$UP"; rc=$?; break; fi
	sleep 0.1
done
UP=""
check "a killed gateway: veil up reports it, stops the rest, exits 1" \
	bash -c '[ "$0" -eq 1 ] && grep -q "gateway killed by signal 9" "$1"' "$rc" "$tmp/die.out"
left=""
for k in $kids; do alive "$k" && left="$left $k"; done
check "... and no child is left (pids $kids)" test -z "$left"

# ---- 5. veil up killed outright: PR_SET_PDEATHSIG stops the children ------------
P="$(free_port)"
"$VEIL" up --model "$MODEL" --port "$P" >"$tmp/k9.out" 2>&1 &
UP=$!
for _ in $(seq 1 300); do grep -qs "Press Ctrl-C" "$tmp/k9.out" && break; kill -0 "$UP" 2>/dev/null || break; sleep 0.1; done
kids="$(pgrep -P "$UP" | tr '\n' ' ')"
kill -9 "$UP"; wait "$UP" 2>/dev/null
UP=""
left=""
for _ in $(seq 1 100); do
	left=""
	for k in $kids; do alive "$k" && left="$left $k"; done
	[ -z "$left" ] && break
	sleep 0.1
done
check "veil up SIGKILLed: its children stop too (pids $kids)" test -z "$left"
rm -rf "$tmp"/t/veil-up.*  # what a SIGKILL leaves behind

# ---- 6. what a user gets wrong ----------------------------------------------------
printf 'not a model\n' >"$tmp/bad.gguf"
"$VEIL" up --once --model "$tmp/bad.gguf" --port "$(free_port)" >/dev/null 2>"$tmp/bad.err"
check "a file that is not GGUF: exit 1, says so" \
	bash -c '[ "$0" -eq 1 ] && grep -q "not a GGUF file" "$1"' $? "$tmp/bad.err"
"$VEIL" up --once --model "$tmp/none.gguf" --port "$(free_port)" >/dev/null 2>"$tmp/none.err"
check "a missing model: exit 1, says so" \
	bash -c '[ "$0" -eq 1 ] && grep -q "not readable" "$1"' $? "$tmp/none.err"
head -c 4096 "$MODEL" >"$tmp/trunc.gguf"
"$VEIL" up --once --model "$tmp/trunc.gguf" --port "$(free_port)" >/dev/null 2>"$tmp/trunc.err"
check "a truncated GGUF: exit 1 with the node's reason" \
	bash -c '[ "$0" -eq 1 ] && grep -q "node 0 exited with status 1" "$1" && grep -q "cannot load the model" "$1"' $? "$tmp/trunc.err"
P="$(free_port)"
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); print("ready", flush=True); time.sleep(60)' "$P" >"$tmp/listener.out" &
listener=$!
pids+=("$listener")
for _ in $(seq 1 100); do grep -qs ready "$tmp/listener.out" && break; sleep 0.05; done
"$VEIL" up --once --model "$MODEL" --port "$P" >/dev/null 2>"$tmp/port.err"
check "a port in use: exit 1, names the port and --port" \
	bash -c '[ "$0" -eq 1 ] && grep -q "port $1 on 127.0.0.1 is already in use" "$2" && grep -q -- "--port" "$2"' $? "$P" "$tmp/port.err"
kill "$listener" 2>/dev/null; wait "$listener" 2>/dev/null
"$VEIL" up --nodes 0 >/dev/null 2>&1
check "--nodes 0 is a usage error (exit 2)" test $? -eq 2
"$VEIL" up --tee tdx >/dev/null 2>&1
check "--tee other than auto|sim is a usage error (exit 2)" test $? -eq 2
"$VEIL" chat --proxy "http://127.0.0.1:$(free_port)" "hi" >/dev/null 2>&1
check "veil chat with no proxy listening exits 1" test $? -eq 1
"$VEIL" chat >/dev/null 2>&1
check "veil chat without TEXT exits 2" test $? -eq 2

check "no temporary state directory is left" bash -c '[ -z "$(ls -A "$0")" ]' "$tmp/t"
check "no server started by this test is left running" test -z "$(strays)"
exit $((fails > 0))
