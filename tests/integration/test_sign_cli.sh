#!/usr/bin/env bash
# veil sign keygen|sign|verify as a user runs it: known vectors, stdin,
# key files, exit codes.
set -uo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
setup_tmp

for sub in keygen sign verify; do
	check "sign $sub --help exits 0 and prints usage" \
		bash -c '"$0" sign "$1" --help | grep -qi "usage"' "$VEIL" "$sub"
done
"$VEIL" sign >/dev/null 2>&1; check "sign without a subcommand exits 2" test $? -eq 2
# ecdsa verify prints the recovered address, not "valid": the top help said so
check "sign --help says ecdsa verify prints the recovered signer address" \
	bash -c '"$0" sign --help | grep -q "recovered signer address (ecdsa)"' "$VEIL"
"$VEIL" sign sign --message x >/dev/null 2>&1; check "sign without --algo exits 2" test $? -eq 2
"$VEIL" sign keygen --algo rsa >/dev/null 2>&1; check "unknown --algo exits 2" test $? -eq 2
"$VEIL" sign frob >/dev/null 2>&1; check "unknown sign subcommand exits 2" test $? -eq 2

# RFC 8032 TEST 2 (message 0x72 = "r").
ED_SEED=4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb
ED_PUB=3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c
ED_SIG=92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00
sig="$("$VEIL" sign sign --algo ed25519 --private "$ED_SEED" --message r)"
check "ed25519 sign reproduces RFC 8032 TEST 2" test "$sig" = "$ED_SIG"
out="$(printf r | "$VEIL" sign verify --algo ed25519 --public "$ED_PUB" --signature "$ED_SIG")"; rc=$?
check "ed25519 verify of stdin message prints valid" test "$rc" -eq 0 -a "$out" = "valid"
out="$("$VEIL" sign verify --algo ed25519 --public "$ED_PUB" --signature "$ED_SIG" --message s)"; rc=$?
check "ed25519 verify of another message exits 1 with a reason" \
	bash -c '[ "$0" -eq 1 ] && grep -q "^invalid: " <<<"$1"' "$rc" "$out"

# web3.js docs key, "Some data" (eth-account test vector).
EK=0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318
EADDR=0x2c7536E3605D9C16a7a3D7b1898e529396a65c23
ESIG=0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c
echo "$EK" > "$tmp/key"
sig="$(printf 'Some data' | "$VEIL" sign sign --algo ecdsa --private-file "$tmp/key")"
check "ecdsa sign (key file, stdin) reproduces the eth-account signature" test "$sig" = "$ESIG"
out="$("$VEIL" sign verify --algo ecdsa --address "$EADDR" --signature "$ESIG" --message 'Some data')"; rc=$?
check "ecdsa verify prints the recovered EIP-55 address" test "$rc" -eq 0 -a "$out" = "$EADDR"
bad="${EADDR:0:3}$(tr 'A-Za-z' 'a-zA-Z' <<<"${EADDR:3:1}")${EADDR:4}"
"$VEIL" sign verify --algo ecdsa --address "$bad" --signature "$ESIG" --message 'Some data' >/dev/null 2>&1
check "ecdsa verify refuses an address with a broken EIP-55 checksum (exit 2)" test $? -eq 2
out="$("$VEIL" sign verify --algo ecdsa --address "$EADDR" --signature "$ESIG" --message 'Some datA')"; rc=$?
check "ecdsa verify of another message exits 1 naming the real signer" \
	bash -c '[ "$0" -eq 1 ] && grep -q "^invalid: signed by 0x" <<<"$1"' "$rc" "$out"
out="$("$VEIL" sign verify --algo ecdsa --address "$EADDR" --signature 0x1234 --message x)"; rc=$?
check "ecdsa verify of a short signature exits 1" test "$rc" -eq 1

json="$("$VEIL" sign keygen --algo ecdsa)"
priv="$(sed -E 's/.*"private":"([^"]+)".*/\1/' <<<"$json")"
addr="$(sed -E 's/.*"address":"([^"]+)".*/\1/' <<<"$json")"
sig="$("$VEIL" sign sign --algo ecdsa --random-k --private "$priv" --message hi)"
out="$("$VEIL" sign verify --algo ecdsa --address "$addr" --signature "$sig" --message hi)"
check "ecdsa keygen -> sign --random-k -> verify round trip" test "$out" = "$addr"
json="$("$VEIL" sign keygen --algo ed25519)"
priv="$(sed -E 's/.*"private":"([^"]+)".*/\1/' <<<"$json")"
pub="$(sed -E 's/.*"public":"([^"]+)".*/\1/' <<<"$json")"
sig="$("$VEIL" sign sign --algo ed25519 --private "$priv" --message hi)"
out="$("$VEIL" sign verify --algo ed25519 --public "$pub" --signature "$sig" --message hi)"
check "ed25519 keygen -> sign -> verify round trip" test "$out" = "valid"

[ "$fails" -eq 0 ]
