#!/usr/bin/env bash
# The veil CLI as a user runs it: --version, --help everywhere, errors.
set -uo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

out="$("$VEIL" --version)"
check "version names version, commit, compiler and cpu paths" \
	bash -c 'grep -q "^veil [0-9]" <<<"$0" && grep -q "^commit: " <<<"$0" && grep -q "^compiler: " <<<"$0" && grep -q "^cpu paths: .*scalar" <<<"$0"' "$out"

check "help lists the model commands" bash -c '"$0" --help | grep -q "tokenize"' "$VEIL"
for sub in info run tokenize synth quantize bench; do
	check "model $sub --help exits 0 and prints usage" \
		bash -c '"$0" model "$1" --help | grep -qi "usage"' "$VEIL" "$sub"
done
for sub in "hpke keygen" "hpke seal" "hpke open" "sign keygen" "sign sign" \
	"sign verify" "verify" "attest sim-report"; do
	# shellcheck disable=SC2086
	check "$sub --help exits 0 and prints usage" \
		bash -c '"$0" $1 --help | grep -qi "usage"' "$VEIL" "$sub"
done
check "veil-node --help exits 0 and prints usage" \
	bash -c '"$0" --help | grep -qi "usage"' "$(dirname "$VEIL")/veil-node"
"$VEIL" frobnicate >/dev/null 2>&1; rc=$?
check "unknown command exits 2" test "$rc" -eq 2
"$VEIL" model frobnicate >/dev/null 2>&1; rc=$?
check "unknown model subcommand exits 2" test "$rc" -eq 2

setup_tmp
printf 'GGUF\x03\x00\x00\x00garbage' > "$tmp/bad.gguf"
err="$("$VEIL" model info "$tmp/bad.gguf" 2>&1 >/dev/null)"; rc=$?
check "model info on a truncated file exits 1 with a reason" \
	bash -c '[ "$0" -eq 1 ] && grep -qi "gguf\|malformed\|truncat" <<<"$1"' "$rc" "$err"
"$VEIL" model info /nonexistent.gguf >/dev/null 2>&1; rc=$?
check "model info on a missing file exits 1" test "$rc" -eq 1

if [ -f "$VEIL_SHARED/models/stories260K.gguf" ]; then
	M="$VEIL_SHARED/models/stories260K.gguf"
	check "model info names the architecture and sha256" \
		bash -c '"$0" model info "$1" | grep -q "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d" && "$0" model info "$1" | grep -q llama' "$VEIL" "$M"
	ids="$("$VEIL" model tokenize "$M" "Once upon a time")"
	check "model tokenize matches llama.cpp ids" test "$ids" = "1 403 407 261 378"
	want="$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["cases"][0]; print(" ".join(map(str,c["generated_ids"][:32])))' "$VEIL_SHARED/reference/stories260K-greedy.json")"
	got="$("$VEIL" model run "$M" --prompt "Once upon a time" -n 32 --temp 0 --ids 2>/dev/null)"
	check "model run --temp 0 --ids equals llama.cpp's greedy ids" test "$got" = "$want"
	txt="$("$VEIL" model run "$M" --prompt "Once upon a time" -n 20 --temp 0 2>"$tmp/err")"
	check "model run prints text and tokens/s" \
		bash -c 'grep -q "there was" <<<"$0" && grep -qi "tok/s\|tokens/s" "$1"' "$txt" "$tmp/err"
	a="$("$VEIL" model run "$M" --prompt "Once" -n 24 --temp 0.9 --seed 7 --ids 2>/dev/null)"
	b="$("$VEIL" model run "$M" --prompt "Once" -n 24 --temp 0.9 --seed 7 --ids 2>/dev/null)"
	check "model run with a seed is repeatable" bash -c '[ -n "$0" ] && [ "$0" = "$1" ]' "$a" "$b"
	VEIL_MODEL="$M" "$VEIL" model run --prompt "Once" -n 4 --temp 0 --ids >/dev/null 2>&1
	check "model run finds the model through \$VEIL_MODEL" test $? -eq 0
else
	skip "model checks" "$VEIL_SHARED/models/stories260K.gguf absent"
fi
exit $((fails > 0))
