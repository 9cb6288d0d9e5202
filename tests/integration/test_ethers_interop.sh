#!/usr/bin/env bash
# EIP-191 personal_sign interop with ethers v6 (npm): ethers verifies and
# recovers veil's signatures, veil verifies and recovers ethers' ones.
# Needs node and tests/js/node_modules (cd tests/js && npm install).
set -uo pipefail
cd "$(dirname "$0")/../.."
export VEIL_BIN="${VEIL_BIN:-build/bin}"
name="ethers v6 EIP-191 interop"

if ! command -v node >/dev/null 2>&1; then
	echo "ok - $name # SKIP node is not installed"
	exit 0
fi
if [ ! -d tests/js/node_modules/ethers ]; then
	echo "ok - $name # SKIP tests/js/node_modules/ethers missing (run: cd tests/js && npm install)"
	exit 0
fi
if [ ! -x "$VEIL_BIN/veil" ]; then
	echo "not ok - $name: $VEIL_BIN/veil not built"
	exit 1
fi
node tests/js/ethers_interop.mjs
