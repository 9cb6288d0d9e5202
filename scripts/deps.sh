#!/usr/bin/env bash
# Installs the Debian 12 packages veil needs to build and test (idempotent).
# Runs as root or through sudo; does nothing when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

PKGS=(
	build-essential pkg-config git ca-certificates python3
	libssl-dev          # TLS, X.509, ECDSA, Ed25519, X25519, AES-GCM, HKDF, SHA-2/3
	libsecp256k1-dev    # secp256k1 ECDSA (EIP-191): constant-time and ~10x OpenSSL's generic curve code
	libsodium-dev       # Ed25519: ~2x OpenSSL 3.0's sign/verify (receipt checks on every request)
	libxml2-dev libxmlsec1-dev libxmlsec1-openssl  # NVIDIA RIM XML-DSig signatures (xmlsec1 on OpenSSL)
	libevent-dev        # event loop, HTTP servers
	libcurl4-openssl-dev # outbound HTTP
	libjansson-dev      # JSON
	libsqlite3-dev      # gateway store (default backend)
	libpq-dev postgresql # gateway store shared by several gateways; tests start a cluster
	nginx-light         # reference reverse proxy in the gateway benchmark
	libcmocka-dev       # unit tests
	clang-14 libclang-rt-14-dev libfuzzer-14-dev  # fuzz harnesses, sanitizers
)

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}"
	if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
		echo "deps: need root (or sudo) to install: ${missing[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Test peers written by others (hpke-js, ethers, ...) come from npm, pinned
# by tests/js/package-lock.json.
if [ -f tests/js/package-lock.json ]; then
	if ! command -v npm >/dev/null; then
		echo "deps: installing nodejs npm"
		${SUDO:-} apt-get update -qq
		${SUDO:-} apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
	fi
	if [ ! -d tests/js/node_modules ] ||
	   [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then
		echo "deps: npm ci in tests/js"
		(cd tests/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
	fi
fi

# clang-14 ships as clang-14; the Makefile calls `clang`.
if ! command -v clang >/dev/null && command -v clang-14 >/dev/null; then
	FUZZ_CC_HINT="clang-14"
	echo "deps: note: 'clang' not on PATH; use FUZZ_CC=$FUZZ_CC_HINT" >&2
fi
exit 0
