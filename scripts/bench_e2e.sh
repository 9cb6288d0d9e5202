#!/usr/bin/env bash
# End-to-end speed for `make bench` (scripts/bench.sh step 3e): time to
# first token and tokens/s through veil-proxy + veil-gateway + veil-node
# against the node alone, both measured in the same run.  Goal: at most 5%
# overhead end to end (ratio >= 0.95; every ratio here is "higher is
# better").  Never a pass/fail test: a step that cannot run prints an "n/a"
# line and the script goes on.
#
#   scripts/bench_e2e.sh [--build DIR]
#
# Needs DIR/bin/{veil,veil-node,veil-gateway,veil-proxy} and
# DIR/bench/e2e_bench (make all bench-bins).  What runs, all on 127.0.0.1:
#   ours  `veil up --tee sim --model MODEL --state-dir TMP` in
#         the background, exactly as a user starts it: one veil-node (TLS,
#         veil up's flags), veil-gateway (TLS, sqlite, API key), veil-proxy
#         (policy pinning what was launched, --receipts log, fsync'd).  The
#         client speaks plaintext OpenAI to the proxy, which seals each
#         request to the node's attested key, opens every chunk, verifies
#         the receipt before [DONE]; the client also checks X-Veil-Verified
#         and the receipt chunk ("veil_verified": true).
#   ref   a second veil-node with veil up's node flags (--model, --listen
#         127.0.0.1:0, --tee sim) plus --allow-plaintext: the same JSON
#         request, unsealed, over TLS (its self-signed certificate is not
#         checked), straight to the node.
# MODEL: a model whose first token takes a realistic time, so that the
# figures say what a user sees: SmolLM2-135M's shapes and vocabulary, q8_0,
# random weights (`veil model synth`; the file scripts/bench.sh step 1
# makes): DIR/bench-models/smollm2-135m-synth-q8_0.gguf or
# $VEIL_CACHE/synth/ (the same bytes), else made once into
# DIR/bench-models (~5 s).  Only when it cannot be made (no tokenizer in
# VEIL_SHARED): stories260K, whose ~1 ms TTFT is pure transport cost (two
# extra TLS hops can never be within 5% of it).  The figures name the
# model.  VEIL_E2E_MODEL=PATH picks another.
# Both are idle while the other answers.  e2e_bench (tests/bench/e2e_bench.c,
# which says exactly how each figure is taken) takes turns between them on
# one kept-alive connection each, back to back in a new order every round,
# BENCH_E2E_REPS (20; 30 with stories260K) streamed /v1/completions each (a
# fixed prompt, max_tokens BENCH_E2E_TOKENS: 32; 128 with stories260K,
# temperature 0, identical text checked); medians of:
#   TTFT        request sent -> first token's text at the client;
#   tokens/s    completion tokens / (request sent -> last token's text);
#   decode      tokens after the first chunk / (first chunk -> last chunk),
#               tokens counted through one in-process run of the model;
#   [DONE]      request sent -> data: [DONE] (through the stack: after the
#               gateway stored the usage record and the proxy verified the
#               receipt).
# With BENCH_E2E_BREAKDOWN=1 (the default with stories260K only: with a
# real model the ~1 ms they split is below the noise, and the time is
# better spent on more turns of the two measured sides) two more sides take
# the same turns and split the overhead (stderr only): the request sealed
# by the client itself and posted to veil up's gateway, and straight to
# veil up's node.  Then 8 streams at once, BENCH_E2E_ROUNDS
# (5; 7 with stories260K) rounds each side alternating: median aggregate
# tok/s (to the last [DONE]); every round must make the reference's
# completion tokens (same work), else it is said and left out.
# Output: BENCH|figure|ours|unit|reference|ratio lines on stdout (ratio:
# node/ours for times, ours/node for rates), progress and the breakdown on
# stderr.  About 40-60 s on 2 cores (10 s with stories260K).
# Env: VEIL_SHARED (../shared), VEIL_CACHE, VEIL_E2E_MODEL, BENCH_E2E_REPS,
# BENCH_E2E_ROUNDS, BENCH_E2E_TOKENS, BENCH_E2E_BREAKDOWN, BENCH_E2E_PROMPT
# (another prompt than e2e_bench's one-sentence default; a longer one makes
# TTFT longer, and the figures then say "own prompt").
set -uo pipefail

BUILD=build
while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD="$2"; shift 2 ;;
	-h|--help) sed -n '2,62p' "$0"; exit 0 ;;
	*) echo "bench_e2e: unknown argument $1" >&2; exit 2 ;;
	esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
VEIL="$BUILD/bin/veil"
NODE="$BUILD/bin/veil-node"
EB="$BUILD/bench/e2e_bench"
SHARED="${VEIL_SHARED:-$ROOT/../shared}"
CLIENTS=8

FIG_TTFT="e2e TTFT proxy+gateway+node vs node"
FIG_TOK="e2e tokens/s proxy+gateway+node vs node"
FIG_DEC="e2e decode tok/s proxy+gateway+node vs node"
FIG_DONE="e2e time to verified [DONE] proxy+gateway+node vs node"
FIG_CONC="e2e $CLIENTS concurrent streams aggregate tok/s proxy+gateway+node vs node"

say() { echo "bench_e2e: $*" >&2; }

# The model (see the top): a given one, the synthetic SmolLM2-135M q8_0
# (cached or made now), else stories260K.
SMOL_FILE=smollm2-135m-synth-q8_0.gguf
pick_model() {
	local c tok="$SHARED/models/smollm2-135m-tokenizer/tokenizer.json"
	local out="$BUILD/bench-models/$SMOL_FILE"
	if [ -n "${VEIL_E2E_MODEL:-}" ]; then echo "$VEIL_E2E_MODEL"; return; fi
	for c in "$out" ${VEIL_CACHE:+"$VEIL_CACHE/synth/$SMOL_FILE"} "$BUILD/cache/synth/$SMOL_FILE"; do
		if [ -s "$c" ]; then echo "$c"; return; fi
	done
	if [ -x "$VEIL" ] && [ -f "$tok" ] && mkdir -p "$BUILD/bench-models"; then
		say "synthesizing $SMOL_FILE (once; cached in $BUILD/bench-models)"
		# made under a temporary name: an interrupted run leaves no
		# truncated model behind for the next one
		trap 'rm -f "$out.tmp.$$"; exit 1' INT TERM HUP
		if "$VEIL" model synth --preset smollm2-135m --tokenizer "$tok" --type q8_0 \
			-o "$out.tmp.$$" >&2 && mv -f "$out.tmp.$$" "$out"; then
			echo "$out"; return
		fi
		rm -f "$out.tmp.$$"
		say "veil model synth failed"
	else
		say "cannot synthesize $SMOL_FILE (no $tok or no $VEIL)"
	fi
	say "falling back to stories260K (TTFT ~1 ms: the ratios are transport cost only)"
	echo "$SHARED/models/stories260K.gguf"
}
na() { # figure unit why
	echo "BENCH|$1|n/a|$2|$3|n/a"
}
all_na() {
	na "$FIG_TTFT" ms "$1"
	na "$FIG_TOK" tok/s "$1"
	na "$FIG_DEC" tok/s "$1"
	na "$FIG_DONE" ms "$1"
	na "$FIG_CONC" tok/s "$1"
}

for f in "$VEIL" "$NODE" "$BUILD/bin/veil-gateway" "$BUILD/bin/veil-proxy" "$EB"; do
	if [ ! -x "$f" ]; then
		say "$f not built (make all bench-bins BUILD=$BUILD)"
		all_na "$f not built"
		exit 0
	fi
done
MODEL="$(pick_model)"
case "$(basename "$MODEL")" in
stories*) dr=30 dt=128 dn=7 db=1 ;;  # ~20 000 tok/s: many short runs
*) dr=20 dt=32 dn=5 db=0 ;;          # ~100 tok/s on 2 cores: within ~60 s
esac
REPS="${BENCH_E2E_REPS:-$dr}"
TOKENS="${BENCH_E2E_TOKENS:-$dt}"
ROUNDS="${BENCH_E2E_ROUNDS:-$dn}"
BREAKDOWN="${BENCH_E2E_BREAKDOWN:-$db}"
prompt=()
[ -n "${BENCH_E2E_PROMPT:-}" ] && prompt=(--prompt "$BENCH_E2E_PROMPT")
if [ ! -f "$MODEL" ]; then
	say "no model at $MODEL (VEIL_SHARED)"
	all_na "no model $MODEL"
	exit 0
fi
MODEL="$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")"

tmp="$(mktemp -d)"
pids=()
# SIGTERM, then wait (bounded: veil up stops its own children within its
# 12 s grace), then SIGKILL.  veil up's children die with it
# (PR_SET_PDEATHSIG) even if it is killed outright.
stop_pid() {
	kill -TERM "$1" 2>/dev/null
	for _ in $(seq 1 150); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
cleanup() {
	local p
	for p in "${pids[@]}"; do stop_pid "$p"; done
	pids=()
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---- ours: veil up -----------------------------------------------------------
PPORT="$(free_port)"
say "veil up --tee sim --model $(basename "$MODEL") --port $PPORT"
"$VEIL" up --model "$MODEL" --tee sim --port "$PPORT" --state-dir "$tmp/up" \
	>"$tmp/up.log" 2>&1 &
UP_PID=$!
pids+=("$UP_PID")
ok=""
for _ in $(seq 1 600); do
	if grep -qs 'self-check passed' "$tmp/up.log"; then ok=1; break; fi
	kill -0 "$UP_PID" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$ok" ] || [ ! -s "$tmp/up/up.json" ]; then
	say "veil up did not come up:"; tail -n 15 "$tmp/up.log" >&2
	all_na "veil up did not start"
	exit 0
fi
read -r PROXY MNAME GW UPNODE <<<"$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["proxy"], j["model"], j["gateway"], j["nodes"][0])' "$tmp/up/up.json")"
say "proxy $PROXY, gateway $GW, node $UPNODE, model $MNAME"

# ---- ref: the same node, alone, plaintext allowed -----------------------------
"$NODE" --model "$MODEL" --listen 127.0.0.1:0 --tee sim --allow-plaintext \
	>"$tmp/ref.log" 2>&1 &
REF_PID=$!
pids+=("$REF_PID")
RPORT=""
for _ in $(seq 1 300); do
	RPORT="$(grep -so 'listening on https://127.0.0.1:[0-9]*' "$tmp/ref.log" | tail -1 | sed 's/.*://')"
	[ -n "$RPORT" ] && break
	kill -0 "$REF_PID" 2>/dev/null || break
	sleep 0.1
done
REF=""
if [ -n "$RPORT" ]; then
	for _ in $(seq 1 100); do
		if [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$RPORT/readyz")" = 200 ]; then
			REF="https://127.0.0.1:$RPORT"; break
		fi
		sleep 0.1
	done
fi
if [ -z "$REF" ]; then
	say "the reference node did not start:"; tail -n 5 "$tmp/ref.log" >&2
	all_na "reference node did not start"
	exit 0
fi

# ---- 1. one stream at a time -------------------------------------------------
# The breakdown sides, when on (the client seals: to veil up's gateway, and
# to veil up's node directly) take turns with the two measured ones; the
# gateway's API key goes in the environment, never on a command line.
# run_eb OUT ERR ARGS...: e2e_bench, bounded, in the background so that a
# signal reaches the traps at once (cleanup stops it first).
run_eb() {
	local out="$1" err="$2"; shift 2
	timeout -k 5 150 "$EB" "$@" >"$out" 2>"$err" &
	local p=$!
	pids=("$p" "${pids[@]}")
	wait "$p"
	pids=("${pids[@]:1}")
	cat "$err" >&2
}
split=()
[ "$BREAKDOWN" = 1 ] && split=(--gateway "$GW" --node "$UPNODE")
say "latency: $REPS streamed requests each way, in turns ($TOKENS tokens)"
VEIL_API_KEY="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$tmp/up/up.json")" \
	run_eb "$tmp/lat.txt" "$tmp/lat.err" latency --ours "$PROXY" --ref "$REF" \
	--model-name "$MNAME" --model "$MODEL" "${split[@]}" "${prompt[@]}" \
	--max-tokens "$TOKENS" --reps "$REPS" --insecure
# ---- 2. 8 streams at once ----------------------------------------------------------
say "$CLIENTS streams at once, $ROUNDS rounds each way, alternating"
run_eb "$tmp/conc.txt" "$tmp/conc.err" concurrent --ours "$PROXY" --ref "$REF" \
	--model-name "$MNAME" --max-tokens "$TOKENS" --clients "$CLIENTS" --rounds "$ROUNDS" \
	"${prompt[@]}" --insecure

# anything that went wrong on the servers' side
for l in "$tmp"/up/logs/*.log; do
	grep -sE ' (error|warn) ' "$l" | grep -v 'SIMULATED\|simulated\|allow-sim\|--allow-plaintext' |
		tail -n 3 | sed "s|^|bench_e2e: $(basename "$l"): |" >&2
done

python3 - "$tmp/lat.txt" "$tmp/conc.txt" \
	"$(basename "$MODEL" .gguf)${BENCH_E2E_PROMPT:+, own prompt of ${#BENCH_E2E_PROMPT} characters}" "$TOKENS" "$ROUNDS" \
	"$CLIENTS" "$FIG_TTFT" "$FIG_TOK" "$FIG_DEC" "$FIG_DONE" "$FIG_CONC" <<'PY'
import sys
lat, conc, model, tokens, rounds, clients = sys.argv[1:7]
f_ttft, f_tok, f_dec, f_done, f_conc = sys.argv[7:12]

def load(path):
    d = {}
    try:
        for ln in open(path):
            p = ln.split()
            if p and p[0] != "side":
                d[p[0]] = tuple(float(x) for x in p[1:])
    except (OSError, ValueError):
        pass
    return d

L, C = load(lat), load(conc)
ntok = int(L.get("tokens", (0,))[0]) or tokens
ok = L.get("reps_ok", (0, 0))
ref_how = "(same run; veil up's node flags + --allow-plaintext, plaintext JSON over TLS)"

def line(fig, what, unit, key, lower_better, nd, src, why_na="failed"):
    v = src.get(key)
    name = "%s (%s; goal ratio >= 0.95)" % (fig, what)
    if not v or len(v) < 2 or v[0] <= 0 or v[1] <= 0:
        print("BENCH|%s|n/a|%s|node alone n/a %s: %s|n/a" % (name, unit, ref_how, why_na))
        return
    o, r = v[0], v[1]
    print("BENCH|%s|%.*f|%s|node alone %.*f %s %s|%.2f"
          % (name, nd, o, unit, nd, r, unit, ref_how, r / o if lower_better else o / r))

n = "median of %d+%d" % (ok[0], ok[1])
what = "%s, %s tokens, veil up: sealed, receipts verified; %s" % (model, ntok, n)
line(f_ttft, what, "ms", "ttft_ms", True, 2, L)
line(f_tok, what + "; completion tokens / request to last token", "tok/s", "tok_s", False, 0, L)
line(f_dec, what + "; tokens after the first chunk / first to last token", "tok/s",
     "decode_tok_s", False, 0, L, "not measured (answers of one chunk, or no token map)")
line(f_done, what, "ms", "done_ms", True, 2, L)
what = "%s, %s x %s tokens, veil up: sealed, receipts verified; median of %s rounds each" % (
    model, clients, ntok, rounds)
line(f_conc, what, "tok/s", "agg_tok_s", False, 0, C)
PY
exit 0
