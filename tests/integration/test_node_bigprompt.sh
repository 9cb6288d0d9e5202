#!/usr/bin/env bash
# veil-node with big prompts: a prompt whose text is over 8 KiB is tokenized
# on a tokenizer thread, not on the event loop (src/node/api.c,
# tok_offload), so the node keeps serving while it is.  With --ctx 4096 a
# body of ~600 KB passes the pre-tokenizer cap and tokenizing it takes
# 0.2 to 2.4 s here (SmolLM2's BPE, runs of one character; the more the
# machine is loaded, the longer): on the loop, every other request of the
# node waited that long.
# Checks: GET /v1/models answers fast while four such prompts are
# tokenized, and each still gets its 400 context_length_exceeded; a big
# prompt that fits completes (streamed and not); a small one stays on the
# loop; a client that leaves while its prompt is tokenized, a full queue
# (503 tokenizer_busy, Retry-After) and a shutdown with a tokenization in
# flight (graceful, then forced) leave the node healthy / exiting cleanly.
# Run it with VEIL_BIN pointing at an ASan+UBSan veil-node to check the
# job's ownership: every node's log is searched for sanitizer reports.
# Env: VEIL_BIN (dir with veil-node), VEIL_SHARED (default ../shared).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

SYNTH="$VEIL_SHARED/models/tiny-synth-f16.gguf"
require_built "veil-node" "$NODE_BIN"
skip_unless_shared "veil-node big prompts" "$SYNTH"
setup_tmp

start_node() {
	local name="$1"; shift
	start_server "$name" "$NODE_BIN" --model "$SYNTH" --listen 127.0.0.1:0 --tee sim \
		--threads 1 --ctx 4096 --plain-http --allow-plaintext "$@" && wait_ready "$URL"
}

# run_of CHAR N: CHAR repeated N times.
run_of() { head -c "$2" /dev/zero | tr '\0' "$1"; }

# no_sanitizer_report LOG: no ASan / UBSan / LeakSanitizer report in LOG.
no_sanitizer_report() { ! grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$1"; }

# stop_node PID LOG LABEL: SIGTERM, then the node exits 0 within 20 s and
# its log holds no sanitizer report.
stop_node() {
	local rc
	kill -TERM "$1"
	for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	wait "$1"; rc=$?
	check "$3: the node exits 0 on SIGTERM" test "$rc" -eq 0
	check "$3: no sanitizer report in the node's log" no_sanitizer_report "$2"
}

if ! start_node a; then
	notok "node A (tiny-synth, --ctx 4096) starts"
	exit 1
fi
ok "node A (tiny-synth, --ctx 4096) starts"
A="$URL"
PIDA=$PID
M="$(curl -s "$A/v1/models" | jq -r '.data[0].id')"

# ~600 KB of one letter or of dashes: 0.2 to 1.2 s each to tokenize here
aaa="$(run_of a 600000)"
printf '{"model":"%s","prompt":"%s","max_tokens":2}' "$M" "$aaa" >"$tmp/big-cmpl.json"
unset aaa
dashes="$(run_of - 600000)"
printf '{"model":"%s","prompt":"%s","max_tokens":2}' "$M" "$dashes" >"$tmp/dash-cmpl.json"
printf '{"model":"%s","messages":[{"role":"user","content":"%s"}],"max_tokens":2}' "$M" "$dashes" \
	>"$tmp/dash-chat.json"
unset dashes

# ---- four ~600 KB prompts in flight: the loop still answers -----------------
# (a node that tokenized them on its loop answered it 0.4 to 1.7 s late)
bpids=()
for i in 1 2 3 4; do
	if [ $((i % 2)) = 1 ]; then f=dash-cmpl ep=completions; else f=dash-chat ep=chat/completions; fi
	curl -s -m 60 -o "$tmp/big$i.json" -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary @"$tmp/$f.json" "$A/v1/$ep" >"$tmp/big$i.code" &
	bpids+=($!)
done
sleep 0.1
: >"$tmp/models.times"
for _ in $(seq 1 200); do
	alive=0
	for p in "${bpids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
	[ "$alive" = 1 ] || break
	curl -s -m 20 -o /dev/null -w '%{http_code} %{time_total}\n' "$A/v1/models" >>"$tmp/models.times"
	sleep 0.05
done
for p in "${bpids[@]}"; do wait "$p"; done
max="$(awk '{ if ($2 > m) m = $2 } END { printf "%.3f", m }' "$tmp/models.times")"
polls="$(wc -l <"$tmp/models.times")"
echo "# GET /v1/models while 4 big prompts were tokenized: $polls polls, slowest ${max} s"
check "GET /v1/models answers within 200 ms while 4 prompts of 600 KB are tokenized (slowest ${max} s)" \
	awk -v m="$max" 'BEGIN { exit !(m < 0.2) }'
check "... and it was asked at least 3 times meanwhile, all 200" \
	bash -c '[ "$(grep -c "^200 " "$0")" -ge 3 ] && ! grep -qv "^200 " "$0"' "$tmp/models.times"
bad=0
for i in 1 2 3 4; do
	[ "$(cat "$tmp/big$i.code")" = 400 ] &&
		jqt '.error.code == "context_length_exceeded" and .error.type == "invalid_request_error" and (.error.message | test("4096"))' \
			"$tmp/big$i.json" || bad=$((bad + 1))
done
check "each of the 4 big prompts gets its 400 context_length_exceeded (OpenAI shape)" test "$bad" -eq 0

# ---- a big prompt that fits completes --------------------------------------------
# ~10 KB of words: ~2500 tokens of SmolLM2, under the context
words="$(yes 'Once upon a time there was a little girl who liked to play in the park.' | head -c 10000 | tr '\n' ' ')"
fit_cmpl="$(printf '{"model":"%s","prompt":"%s","max_tokens":2}' "$M" "$words")"
fit_chat="$(printf '{"model":"%s","messages":[{"role":"user","content":"%s"}],"max_tokens":2,"stream":true}' "$M" "$words")"
code="$(curl -s -m 60 -o "$tmp/fit.json" -w '%{http_code}' -H 'Content-Type: application/json' \
	-d "$fit_cmpl" "$A/v1/completions")"
check "a 10 KB prompt that fits: 200 with its completion and usage (not streamed)" \
	bash -c '[ "$0" = 200 ] && jq -e ".usage.prompt_tokens > 1000 and .usage.prompt_tokens < 4096 and .usage.completion_tokens > 0 and (.choices[0].text | type) == \"string\"" "$1" >/dev/null' \
	"$code" "$tmp/fit.json"
curl -sN -m 60 -H 'Content-Type: application/json' -d "$fit_chat" "$A/v1/chat/completions" >"$tmp/fit.sse"
check "a 10 KB chat prompt that fits: the stream names the role, then a receipt and [DONE]" \
	bash -c 'grep -q "\"role\":\"assistant\"" "$0" && grep -q veil.receipt "$0" && [ "$(tail -c 14 "$0")" = "data: [DONE]" ]' \
	"$tmp/fit.sse"
check "the node logs both as tokenized off the loop" \
	test "$(grep -c 'prompt tokens.*tokenized off the loop' "$tmp/a.log")" -ge 2
small="$(printf '{"model":"%s","prompt":"Once upon a time","max_tokens":2}' "$M")"
started='request [0-9]+, [0-9]+ prompt tokens'
n0="$(grep -cE "$started" "$tmp/a.log")"
curl -s -m 30 -o "$tmp/small.json" -H 'Content-Type: application/json' -d "$small" "$A/v1/completions"
check "a small prompt is answered and tokenized on the loop (no hand-off)" \
	bash -c 'jq -e ".choices[0].text | type == \"string\"" "$0" >/dev/null &&
		grep -E "$3" "$1" | tail -n +$(($2 + 1)) >"$0.log" &&
		[ "$(wc -l <"$0.log")" = 1 ] && ! grep -q "off the loop" "$0.log"' \
	"$tmp/small.json" "$tmp/a.log" "$n0" "$started"

# ---- clients that leave while their prompts are tokenized ----------------------
# six at once, each ~0.3 s of tokenizing (seconds on a loaded machine) for
# two threads: when they give up after 0.4 s, some are still being
# tokenized or queued, whatever the machine's speed
printf '{"model":"%s","prompt":"%s","max_tokens":2}' "$M" "$(run_of ' ' 600000)" >"$tmp/slow.json"
c0="$(metric "$A" veil_node_cancelled_total)"
g0="$(grep -c "client went away while its prompt was tokenized" "$tmp/a.log")"
lpids=()
for i in $(seq 1 6); do
	curl -s -m 0.4 -o "$tmp/left$i.json" -H 'Content-Type: application/json' \
		--data-binary @"$tmp/slow.json" "$A/v1/completions" &
	lpids+=($!)
done
for p in "${lpids[@]}"; do wait "$p"; done
code="$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$A/v1/models")"
sleep 0.3
gone=$(($(grep -c "client went away while its prompt was tokenized" "$tmp/a.log") - g0))
echo "# 6 clients that gave up after 0.4 s: $gone left while their prompts were tokenized or queued"
check "clients that left while their prompts were tokenized: logged, counted as cancelled" \
	bash -c '[ "$0" -ge 1 ] && [ "$1" = "$(($2 + $0))" ]' "$gone" "$(metric "$A" veil_node_cancelled_total)" "$c0"
check "the node answers GET /v1/models meanwhile" test "$code" = 200
curl -s -m 60 -o "$tmp/small2.json" -H 'Content-Type: application/json' -d "$small" "$A/v1/completions"
check "... and a completion after them" jqt '.choices[0].text | type == "string"' "$tmp/small2.json"

# ---- a full queue: 503 tokenizer_busy with Retry-After -----------------------------
qpids=()
for i in $(seq 1 24); do
	curl -s -m 60 -D "$tmp/q$i.h" -o "$tmp/q$i.json" -H 'Content-Type: application/json' \
		--data-binary @"$tmp/big-cmpl.json" "$A/v1/completions" &
	qpids+=($!)
done
for p in "${qpids[@]}"; do wait "$p"; done
busy=0 exceeded=0 other=0
for i in $(seq 1 24); do
	if jqt '.error.code == "tokenizer_busy" and .error.type == "server_error"' "$tmp/q$i.json" &&
		head -1 "$tmp/q$i.h" | grep -q " 503" && grep -qi '^retry-after: [0-9]' "$tmp/q$i.h"; then
		busy=$((busy + 1))
	elif jqt '.error.code == "context_length_exceeded"' "$tmp/q$i.json"; then
		exceeded=$((exceeded + 1))
	else
		other=$((other + 1))
	fi
done
echo "# 24 big prompts at once: $busy refused busy, $exceeded answered, $other other"
check "24 big prompts at once: some 503 tokenizer_busy with Retry-After, the rest answered" \
	bash -c '[ "$0" -ge 1 ] && [ "$1" -ge 8 ] && [ "$2" = 0 ]' "$busy" "$exceeded" "$other"
tbusy="$(metric "$A" veil_node_tokenizer_busy_total)"
tpend="$(metric "$A" veil_node_tokenizer_pending)"
check "veil_node_tokenizer_busy_total counts the refusals ($tbusy of $busy), none pending after ($tpend)" \
	bash -c '[ "$0" = "$1" ] && [ "$2" = 0 ]' "${tbusy:-x}" "$busy" "${tpend:-x}"
check "GET /v1/models after the burst" test "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$A/v1/models")" = 200
stop_node "$PIDA" "$tmp/a.log" "node A"

# ---- shutdown with tokenizations in flight ---------------------------------------
# send_slow N NAME: N of the slow prompts at once in the background to the
# node at $URL, answers in $tmp/NAME$i.json; sets spids; returns once the
# node holds all N (veil_node_active_requests; at most 10 s).
active_is() { [ "$(metric "$URL" veil_node_active_requests)" = "$1" ]; }
send_slow() {
	spids=()
	for i in $(seq 1 "$1"); do
		curl -s -m 60 -o "$tmp/$2$i.json" -H 'Content-Type: application/json' \
			--data-binary @"$tmp/slow.json" "$URL/v1/completions" &
		spids+=($!)
	done
	retry 100 0.1 active_is "$1"
}
# count_code NAME N CODE: how many of $tmp/NAME1..N.json are errors with CODE.
count_code() {
	local i k=0
	for i in $(seq 1 "$2"); do jqt --arg c "$3" '.error.code == $c' "$tmp/$1$i.json" && k=$((k + 1)); done
	echo "$k"
}
if start_node b; then
	send_slow 4 grace
	stop_node "$PID" "$tmp/b.log" "SIGTERM with prompts being tokenized"
	for p in "${spids[@]}"; do wait "$p"; done
	check "... those prompts still get their answers (400 context_length_exceeded)" \
		test "$(count_code grace 4 context_length_exceeded)" = 4
else
	notok "node B starts"
fi
if start_node c; then
	send_slow 6 forced
	kill -TERM "$PID"; sleep 0.1; kill -TERM "$PID" 2>/dev/null
	for _ in $(seq 1 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
	wait "$PID"; rc=$?
	for p in "${spids[@]}"; do wait "$p"; done
	down="$(count_code forced 6 shutting_down)"
	done400="$(count_code forced 6 context_length_exceeded)"
	echo "# two SIGTERMs with 6 prompts in flight: $down answered shutting_down, $done400 answered"
	check "two SIGTERMs with prompts being tokenized: 503 shutting_down for those not done, an answer for the others" \
		bash -c '[ "$0" -ge 1 ] && [ $(($0 + $1)) = 6 ]' "$down" "$done400"
	check "... the node exits 0, no sanitizer report" \
		bash -c '[ "$0" = 0 ] && ! grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$1"' "$rc" "$tmp/c.log"
else
	notok "node C starts"
fi

[ "$fails" -eq 0 ]
