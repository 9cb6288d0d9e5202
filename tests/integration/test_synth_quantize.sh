#!/usr/bin/env bash
# veil model synth / quantize reproduce the reference files byte for byte:
# the F16 synthetic SmolLM2-135M-shape model equals synth_gguf.py's, and its
# q8_0 / q4_0 / q4_0 --pure quantizations equal llama-quantize's (llama.cpp
# c392e509), by sha256 as listed in reference/synth-models-logits.json.
#
# Env: VEIL_BIN (dir of veil), VEIL_SHARED (default ../shared), VEIL_CACHE
# (generated files live there between runs), VEIL_SLOW=1 adds the 1B-shape
# q4_0 file (Q6_K token embedding; ~40 s).
set -uo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
CACHE="${VEIL_CACHE:-build/cache}/synth"
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }

mkdir -p "$CACHE"
setup_tmp

# ---- argument errors (no models needed) -------------------------------------
"$VEIL" model quantize >/dev/null 2>"$tmp/err"; rc=$?
check "quantize without arguments exits 2 and says what it expects" \
	bash -c '[ "$0" -eq 2 ] && grep -q "expected IN OUT TYPE" "$1"' "$rc" "$tmp/err"
"$VEIL" model quantize a.gguf b.gguf q3_x >/dev/null 2>"$tmp/err"; rc=$?
check "quantize with an unknown type exits 2 and names it" \
	bash -c '[ "$0" -eq 2 ] && grep -q "unknown type .q3_x." "$1"' "$rc" "$tmp/err"
"$VEIL" model quantize a.gguf b.gguf q8_0 --frob >/dev/null 2>"$tmp/err"; rc=$?
check "quantize with an unknown option exits 2 and names it" \
	bash -c '[ "$0" -eq 2 ] && grep -q "unknown option .--frob." "$1"' "$rc" "$tmp/err"
"$VEIL" model quantize a.gguf b.gguf q8_0 extra >/dev/null 2>"$tmp/err"; rc=$?
check "quantize with a fourth argument exits 2" \
	bash -c '[ "$0" -eq 2 ] && grep -q "unexpected argument" "$1"' "$rc" "$tmp/err"
"$VEIL" model quantize same.gguf same.gguf q8_0 >/dev/null 2>"$tmp/err"; rc=$?
check "quantize refuses to overwrite its input (exit 2)" \
	bash -c '[ "$0" -eq 2 ] && grep -q "same file" "$1"' "$rc" "$tmp/err"
"$VEIL" model quantize "$tmp/missing.gguf" "$tmp/out.gguf" q8_0 >/dev/null 2>&1; rc=$?
check "quantize of a missing file exits 1 and leaves no output" \
	bash -c '[ "$0" -eq 1 ] && [ ! -e "$1" ] && [ ! -e "$1.tmp" ]' "$rc" "$tmp/out.gguf"
"$VEIL" model synth --preset huge --tokenizer x.json -o "$tmp/x.gguf" >/dev/null 2>"$tmp/err"; rc=$?
check "synth with an unknown preset exits 2 and names it" \
	bash -c '[ "$0" -eq 2 ] && grep -q "unknown preset .huge." "$1"' "$rc" "$tmp/err"

# ---- the reference files ---------------------------------------------------------
REF="$VEIL_SHARED/reference/synth-models-logits.json"
TOK="$VEIL_SHARED/models/smollm2-135m-tokenizer/tokenizer.json"
if [ ! -f "$REF" ] || [ ! -f "$TOK" ]; then
	skip "synth and quantize reproduce the reference files" "$REF or $TOK absent"
	exit $((fails > 0))
fi
ref_sha() {
	python3 -c 'import json,sys
for m in json.load(open(sys.argv[1]))["models"]:
    if m["model"] == sys.argv[2]: print(m["sha256"])' "$REF" "$1"
}

F16="$CACHE/smollm2-135m-synth-f16.gguf"
"$VEIL" model synth --preset smollm2-135m --tokenizer "$TOK" -o "$F16" 2>"$tmp/err"
check "synth f16 smollm2-135m equals the reference sha256" \
	test "$(sha "$F16")" = "$(ref_sha smollm2-135m-synth-f16.gguf)"

# synth_gguf.py's own output, recomputed when the script or tokenizer change
PY="$VEIL_SHARED/tools/synth_gguf.py"
if [ -f "$PY" ] && command -v python3 >/dev/null; then
	key="$(cat "$PY" "$TOK" | sha256sum | cut -c1-16)"
	pysha="$CACHE/py-smollm2-135m-f16.$key.sha256"
	if [ ! -s "$pysha" ]; then
		python3 "$PY" --shape smollm2-135m --tokenizer "$TOK" \
			--out "$tmp/py.gguf" >/dev/null && sha "$tmp/py.gguf" >"$pysha"
		rm -f "$tmp/py.gguf"
	fi
	check "synth f16 smollm2-135m is byte-identical to synth_gguf.py" \
		test "$(sha "$F16")" = "$(cat "$pysha" 2>/dev/null)"
else
	skip "synth f16 is byte-identical to synth_gguf.py" "python3 or $PY absent"
fi

for spec in "q8_0:q8_0:" "q4_0:q4_0:" "q4_0-pure:q4_0:--pure"; do
	IFS=: read -r label type flag <<<"$spec"
	out="$CACHE/smollm2-135m-synth-$label.gguf"
	# shellcheck disable=SC2086
	"$VEIL" model quantize -q "$F16" "$out" "$type" $flag 2>"$tmp/err"
	check "quantize $type${flag:+ $flag} of the f16 synth equals llama-quantize's file (sha256)" \
		test "$(sha "$out")" = "$(ref_sha "smollm2-135m-synth-$label.gguf")"
done

"$VEIL" model quantize -q -t 1 "$F16" "$tmp/t1.gguf" q4_0 2>"$tmp/err"
check "quantize output does not depend on the thread count" \
	test "$(sha "$tmp/t1.gguf")" = "$(sha "$CACHE/smollm2-135m-synth-q4_0.gguf")"
rm -f "$tmp/t1.gguf"

"$VEIL" model synth --preset smollm2-135m --tokenizer "$TOK" --type q8_0 \
	-o "$tmp/sq8.gguf" 2>"$tmp/err"
check "synth --type q8_0 equals synth f16 followed by quantize q8_0" \
	test "$(sha "$tmp/sq8.gguf")" = "$(sha "$CACHE/smollm2-135m-synth-q8_0.gguf")"
rm -f "$tmp/sq8.gguf"

if [ "${VEIL_SLOW:-0}" = 1 ]; then
	out="$CACHE/llama3.2-1b-shape-synth-q4_0.gguf"
	"$VEIL" model synth --preset llama3.2-1b --tokenizer "$TOK" --type q4_0 \
		-o "$out" 2>"$tmp/err"
	check "synth q4_0 llama3.2-1b (Q6_K embedding) equals the reference sha256" \
		test "$(sha "$out")" = "$(ref_sha llama3.2-1b-shape-synth-q4_0.gguf)"
else
	skip "synth q4_0 llama3.2-1b (Q6_K embedding) equals the reference" \
		"set VEIL_SLOW=1 (about 40 s)"
fi

# ---- a real model -----------------------------------------------------------
M="$VEIL_SHARED/models/stories260K.gguf"
if [ -f "$M" ]; then
	out="$CACHE/stories260K-q8_0.gguf"
	rm -f "$out"
	"$VEIL" model quantize -q "$M" "$out" q8_0 2>"$tmp/err"; rc=$?
	check "quantize stories260K to q8_0 succeeds" test "$rc" -eq 0
	"$VEIL" model info "$out" >"$tmp/info" 2>&1; rc=$?
	check "the q8_0 stories260K loads (model info exits 0)" \
		bash -c '[ "$0" -eq 0 ] && grep -qi "q8_0" "$1"' "$rc" "$tmp/info"
else
	skip "quantize stories260K" "$M absent"
fi
exit $((fails > 0))
