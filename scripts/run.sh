#!/usr/bin/env bash
# `make run`: the whole private stack on this machine with the default
# model, through `veil up`: one veil-node, veil-gateway and veil-proxy on
# 127.0.0.1 (a simulated TEE unless a TDX / SEV-SNP guest is detected), a
# policy pinning exactly what was started, one verified chat as a
# self-check, then the local OpenAI endpoint is printed and served until
# Ctrl-C.
#
#   scripts/run.sh [VEIL]        (default build/bin/veil)
#
# Env: MODEL (a GGUF; default: veil's lookup, $VEIL_MODEL, ./models/,
# ../shared/models/stories260K.gguf), PORT (8080), NODES (1), TEE
# (auto|sim), STATE_DIR (keep state there; default: a temporary directory).
set -euo pipefail
VEIL="${1:-build/bin/veil}"
ARGS=()
[ -n "${MODEL:-}" ] && ARGS+=(--model "$MODEL")
[ -n "${PORT:-}" ] && ARGS+=(--port "$PORT")
[ -n "${NODES:-}" ] && ARGS+=(--nodes "$NODES")
[ -n "${TEE:-}" ] && ARGS+=(--tee "$TEE")
[ -n "${STATE_DIR:-}" ] && ARGS+=(--state-dir "$STATE_DIR")

if [ -z "${MODEL:-}" ] && [ -z "${VEIL_MODEL:-}" ] && [ ! -f models/stories260K.gguf ] &&
	[ ! -f ../shared/models/stories260K.gguf ]; then
	cat >&2 <<'EOF'
make run: no model.  veil looks for stories260K.gguf in ./models/ and
../shared/models/ (or takes MODEL=PATH / $VEIL_MODEL).  Get it from the
llama.cpp CI models (ggml-org/models, tinyllamas/stories260K.gguf, MIT), put
it in ./models/, and run `make run` again; any llama-family GGUF works too:
  make run MODEL=/path/to/model.gguf
EOF
	exit 1
fi
"$VEIL" --version
echo
exec "$VEIL" up "${ARGS[@]}"
