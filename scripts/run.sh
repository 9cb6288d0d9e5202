#!/usr/bin/env bash
# `make run` at this stage: tells a story with the default model and prints
# tokens/s.  Later issues turn this into the whole private stack (veil up).
set -euo pipefail
VEIL="${1:-build/bin/veil}"
MODEL_ARG=()
[ -n "${MODEL:-}" ] && MODEL_ARG=(--model "$MODEL")
"$VEIL" --version
echo
exec "$VEIL" model run "${MODEL_ARG[@]}" --prompt "${PROMPT:-Once upon a time}" \
	-n "${N:-200}" --temp "${TEMP:-0.8}" ${SEED:+--seed "$SEED"}
