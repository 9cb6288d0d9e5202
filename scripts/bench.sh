#!/usr/bin/env bash
# `make bench`: engine benchmarks with their yardsticks measured in the same
# run.  Never a pass/fail test: a step that cannot run prints "n/a" and the
# script goes on; it exits 0 unless its own arguments are wrong.
#
#   scripts/bench.sh [--build DIR]
#
# Steps:
#   1. synthesize (once, cached in DIR/bench-models) SmolLM2-135M-shape q8_0
#      and Llama-3.2-1B-shape q4_0 --pure with `veil model synth` (random
#      weights, real shapes and vocabulary; the files are byte-identical to
#      the ones llama.cpp's figures below were taken on);
#   2. memory read bandwidth with 1 and 2 threads (DIR/bench/membw);
#   3. `veil model bench MODEL -t 2 -p 512 -n 128 --json` for both models and
#      `--parallel 8` for the small one;
#   4. one table: figure | ours | unit | reference | ratio.
#
# llama.cpp is not installed here, so its figures are QUOTED from the project
# issue (same files, llama-bench -t 2), not measured in this run.
set -uo pipefail

BUILD=build
while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD="$2"; shift 2 ;;
	-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "bench: unknown argument $1" >&2; exit 2 ;;
	esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VEIL="$BUILD/bin/veil"
MEMBW="$BUILD/bench/membw"
SHARED="${VEIL_SHARED:-$ROOT/../shared}"
TOK="$SHARED/models/smollm2-135m-tokenizer/tokenizer.json"
MODELS="$BUILD/bench-models"
OUT="$BUILD/bench-results"
THREADS="${BENCH_THREADS:-2}"
mkdir -p "$MODELS" "$OUT"

say() { echo "bench: $*" >&2; }

# ---- 1. models --------------------------------------------------------------
SMOL="$MODELS/smollm2-135m-synth-q8_0.gguf"
L1B="$MODELS/llama3.2-1b-shape-synth-q4_0-pure.gguf"
synth() { # out preset type [--pure]
	local out="$1" preset="$2" type="$3"; shift 3
	if [ -s "$out" ]; then return 0; fi
	if [ ! -f "$TOK" ]; then say "no tokenizer at $TOK; cannot synthesize $out"; return 1; fi
	say "synthesizing $(basename "$out") (once; cached in $MODELS)"
	"$VEIL" model synth --preset "$preset" --tokenizer "$TOK" --type "$type" "$@" -o "$out"
}
synth "$SMOL" smollm2-135m q8_0 || say "synth of $SMOL failed"
synth "$L1B" llama3.2-1b q4_0 --pure || say "synth of $L1B failed"

# ---- 2. memory bandwidth ------------------------------------------------------
MEMBW_JSON="$OUT/membw.json"
: >"$MEMBW_JSON"
if [ -x "$MEMBW" ]; then
	say "measuring memory read bandwidth (1 GiB buffer, 1 and 2 threads)"
	"$MEMBW" --json --threads "1,$THREADS" | tee /dev/stderr | tail -n 1 >"$MEMBW_JSON"
else
	say "$MEMBW not built (make bench-bins); bandwidth n/a"
fi

# ---- 3. engine runs ---------------------------------------------------------------
run_bench() { # name model args...
	local name="$1" model="$2"; shift 2
	local log="$OUT/$name.log"
	: >"$OUT/$name.json"
	if [ ! -s "$model" ]; then say "$name: no model"; return; fi
	say "$name: veil model bench $(basename "$model") $*"
	if "$VEIL" model bench "$model" "$@" --json >"$log" 2>&1; then
		grep -E '^\{' "$log" | tail -n 1 >"$OUT/$name.json"
	else
		say "$name: veil model bench failed (exit $?); see $log"
		tail -n 5 "$log" >&2
	fi
}
run_bench smol "$SMOL" -t "$THREADS" -p 512 -n 128
run_bench l1b "$L1B" -t "$THREADS" -p 512 -n 128
run_bench smol-par8 "$SMOL" -t "$THREADS" -p 512 -n 128 --parallel 8

# ---- 3b. crypto and attestation (BENCH| lines from tests/bench/*) ----------
# Each helper prints BENCH|figure|ours|unit|reference|ratio with its own
# reference measured in the same process; the DCAP figure gets the JS
# oracle (@phala/dcap-qvl) timed here on the same quote.
OTHER="$OUT/other.txt"
: >"$OTHER"
VEC="$SHARED/vectors"
for b in hpke_bench sign_bench; do
	if [ -x "$BUILD/bench/$b" ]; then
		say "$b"
		"$BUILD/bench/$b" 2>/dev/null | grep '^BENCH|' >>"$OTHER"
	fi
done
Q="$VEC/attest/tdx/dcap-qvl/tdx_quote"
C="$VEC/attest/tdx/dcap-qvl/tdx_quote_collateral.json"
if [ -x "$BUILD/bench/tdx_verify" ] && [ -f "$Q" ]; then
	ref=""
	if command -v node >/dev/null && [ -d tests/js/node_modules/@phala/dcap-qvl ]; then
		say "dcap-qvl (JS oracle) timing"
		ref="$(node tests/js/dcap_oracle.mjs "$Q" "$C" 2025-07-01T00:00:00Z --bench 200 2>/dev/null |
			python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["bench_us"])' 2>/dev/null)"
	fi
	say "tdx_verify"
	"$BUILD/bench/tdx_verify" "$Q" "$C" 2025-07-01T00:00:00Z --bench 500 ${ref:+--ref-us "$ref"} 2>/dev/null |
		grep '^BENCH|' | sed 's/|\([0-9.]*\)|\([0-9.]*\)$/|dcap-qvl JS \1 us (same run)|\2/' >>"$OTHER"
fi
if [ -x "$BUILD/bench/attest_bench" ]; then
	say "attest_bench"
	VEIL_SHARED="$SHARED" "$BUILD/bench/attest_bench" 2>/dev/null | grep '^BENCH|' >>"$OTHER"
fi

# ---- 3c. veil-node against the engine alone (scripts/bench_node.sh) -------
if [ -x scripts/bench_node.sh ] || [ -f scripts/bench_node.sh ]; then
	say "veil-node benchmarks"
	bash scripts/bench_node.sh --build "$BUILD" 2>"$OUT/node.log" | grep '^BENCH|' >>"$OTHER" || true
fi

# ---- 3d. veil-gateway against the node and nginx (scripts/bench_gateway.sh) -
if [ -f scripts/bench_gateway.sh ] && [ -x "$BUILD/bin/veil-gateway" ]; then
	say "veil-gateway benchmarks"
	bash scripts/bench_gateway.sh --build "$BUILD" 2>"$OUT/gateway.log" | grep '^BENCH|' >>"$OTHER" || true
fi

# ---- 3e. proxy + gateway + node end to end, and veil up cold start ---------
if [ -f scripts/bench_e2e.sh ] && [ -x "$BUILD/bin/veil-proxy" ]; then
	say "end-to-end benchmarks"
	bash scripts/bench_e2e.sh --build "$BUILD" 2>"$OUT/e2e.log" | grep '^BENCH|' >>"$OTHER" || true
fi
if [ -f scripts/bench_up.sh ] && [ -x "$BUILD/bin/veil-proxy" ]; then
	say "veil up cold start"
	bash scripts/bench_up.sh --build "$BUILD" 2>"$OUT/up.log" | grep '^BENCH|' >>"$OTHER" || true
fi

# ---- 4. the table ----------------------------------------------------------------
python3 - "$OUT" "$SMOL" "$L1B" "$THREADS" <<'PY' || say "could not print the table"
import json, os, re, sys

out, smol, l1b, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            line = f.read().strip()
        return json.loads(line) if line else {}
    except (OSError, ValueError):
        return {}

def flat(d, prefix=""):
    r = {}
    if isinstance(d, dict):
        for k, v in d.items():
            r.update(flat(v, prefix + str(k).lower() + "."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        r[prefix[:-1]] = float(d)
    return r

def pick(d, *patterns):
    """First numeric field whose flattened key matches one of the patterns
    (tried in order), so small naming differences in the JSON do not break
    the table."""
    f = flat(d)
    for p in patterns:
        for k, v in f.items():
            if re.search(p, k):
                return v
    return None

def fmt(v, nd=1):
    return "n/a" if v is None else ("%.*f" % (nd, v))

def ratio(a, b, nd=2):
    return "n/a" if a is None or b in (None, 0) else "%.*f" % (nd, a / b)

bw = load("membw.json")
bw1 = pick(bw, r"gbs\.1$")
bwn = pick(bw, r"gbs\.%s$" % threads)
smol_r, l1b_r, par = load("smol.json"), load("l1b.json"), load("smol-par8.json")

PP = (r"(^|\.)pp\d*[._]?(tok_s|tps|tok_per_s|t_s)$", r"prompt.*(tok_s|tps|per_s)", r"(^|\.)pp", r"prefill")
TG = (r"(^|\.)tg\d*[._]?(tok_s|tps|tok_per_s|t_s)$", r"(gen|decode).*(tok_s|tps|per_s)", r"(^|\.)tg", r"decode")
AGG = (r"aggregate.*(tok_s|tps|per_s)", r"aggregate", r"total.*(tok_s|tps)")
RSS = (r"^hwm_bytes$", r"^rss_bytes$", r"rss.*bytes", r"max_rss", r"rss")
MODEL_B = (r"^model_bytes$", r"(model|weights?)_?bytes$", r"model.*size")
KV_B = (r"^kv_bytes$", r"kv.*bytes", r"kv_cache")

# llama.cpp c392e509 on the same files, llama-bench -t 2 (quoted from the
# project issue; not measured here)
QUOTED = {"smol": {"pp": 500.0, "tg": 123.0}, "l1b": {"pp": 102.0, "tg": 53.0}}

rows = []
def row(fig, ours, unit, ref, r):
    rows.append((fig, ours, unit, ref, r))

for key, label, res, path in (("smol", "smollm2-135m q8_0", smol_r, smol),
                              ("l1b", "llama3.2-1b q4_0 pure", l1b_r, l1b)):
    pp, tg = pick(res, *PP), pick(res, *TG)
    q = QUOTED[key]
    row("%s pp512 (%s threads)" % (label, threads), fmt(pp), "tok/s",
        "llama.cpp %g (quoted, not measured here)" % q["pp"], ratio(pp, q["pp"]))
    row("%s tg128 (%s threads)" % (label, threads), fmt(tg), "tok/s",
        "llama.cpp %g (quoted, not measured here)" % q["tg"], ratio(tg, q["tg"]))
    mb = pick(res, *MODEL_B)
    if mb is None and os.path.exists(path):
        mb = float(os.path.getsize(path))
    kv = pick(res, *KV_B) or 0.0
    # each decoded token streams every weight once; the KV cache read is
    # small next to it at these lengths and is left out (upper bound of 1)
    bpt = pick(res, r"weight_bytes_per_token", r"bytes_per_token") or mb
    if tg is not None and bpt and bwn:
        roof = tg * bpt / (bwn * 1e9)
        row("%s decode roofline" % label, "%.2f" % roof,
            "tok/s x bytes/token / read bandwidth",
            "measured %.1f GB/s (%s threads) in this run" % (bwn, threads), "%.2f" % roof)
    rss = pick(res, *RSS)
    if rss is not None and mb:
        budget = mb + kv + 64 * 2**20
        row("%s peak rss vs model+kv+64MiB" % label, "%.0f" % (rss / 2**20), "MiB",
            "%.0f MiB budget" % (budget / 2**20), ratio(rss, budget))

tg1 = pick(smol_r, *TG)
agg = pick(par, *AGG) or pick(par, *TG)
row("parallel 8 vs 1 aggregate decode (smollm2 q8_0)",
    ratio(agg, tg1, 1), "x", "goal 5", ratio(agg, tg1 * 5 if tg1 else None))
row("memory read bandwidth, 1 thread", fmt(bw1), "GB/s", "measured in this run", "")
row("memory read bandwidth, %s threads" % threads, fmt(bwn), "GB/s", "measured in this run", "")

try:
    with open(os.path.join(out, "other.txt")) as f:
        for ln in f:
            p = ln.rstrip("\n").split("|")
            if len(p) == 6:
                rows.append((p[1], p[2], p[3], p[4], p[5]))
except OSError:
    pass

hdr = ("figure", "ours", "unit", "reference", "ratio")
w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(5)]
line = lambda r: " | ".join(str(r[i]).ljust(w[i]) for i in range(5)).rstrip()
print()
print(line(hdr))
print("-+-".join("-" * x for x in w))
for r in rows:
    print(line(r))

print()
print("ratio: ours / reference (higher is better for speed; rss ratio <= 1 is within budget).")
print("llama.cpp figures are QUOTED from the project issue, not measured in this run.")
print("raw results: %s/" % out)
PY
exit 0
