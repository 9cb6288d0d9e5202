#!/usr/bin/env bash
# HPKE interop with hpke-js (npm; installed by scripts/deps.sh with `npm ci`
# in tests/js): what one side seals the other opens, for each AEAD, and a
# tampered ciphertext is refused.  Also recomputes the veil-seal/1 worked
# example of docs/protocol.md with hpke-js and WebCrypto.
set -uo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
JS=tests/js

if ! command -v node >/dev/null 2>&1; then
	skip "hpke-js interop" "node is not installed"
	exit 0
fi
if [ ! -d "$JS/node_modules/hpke-js" ]; then
	skip "hpke-js interop" "$JS/node_modules absent (run: cd $JS && npm ci)"
	exit 0
fi
if [ ! -x "$VEIL" ]; then
	notok "veil binary at $VEIL"
	exit 1
fi
hjs() { node "$JS/hpke_interop.mjs" "$@"; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

setup_tmp
# A plaintext with every byte value, newlines and a NUL, so nothing is lost
# between stdin, hex and stdout.
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) + b"veil interop\n" * 50)' >"$tmp/pt"
pt_hex="$(python3 -c 'import sys; print(open(sys.argv[1], "rb").read().hex())' "$tmp/pt")"
info=7665696c2d696e7465726f70   # "veil-interop"
aad=0102030405

keys="$("$VEIL" hpke keygen)"
pub="$(field "$keys" public)"; priv="$(field "$keys" private)"
jkeys="$(hjs keygen)"
jpub="$(field "$jkeys" public)"; jpriv="$(field "$jkeys" private)"

for aead in aes128gcm aes256gcm chacha20poly1305; do
	# hpke-js seals -> veil opens
	s="$(hjs seal "$aead" "$pub" "$info" "$aad" "$pt_hex")"
	enc="$(field "$s" enc)"; ct="$(field "$s" ct)"
	if "$VEIL" hpke open --private "$priv" --enc "$enc" --ct "$ct" --info "$info" \
		--aad "$aad" --aead "$aead" >"$tmp/out" && cmp -s "$tmp/out" "$tmp/pt"; then
		ok "hpke-js seals, veil opens ($aead)"
	else
		notok "hpke-js seals, veil opens ($aead)"
	fi
	# veil seals -> hpke-js opens (to a key hpke-js generated)
	s="$("$VEIL" hpke seal --public "$jpub" --info "$info" --aad "$aad" --aead "$aead" <"$tmp/pt")"
	enc="$(field "$s" enc)"; ct="$(field "$s" ct)"
	got="$(hjs open "$aead" "$jpriv" "$enc" "$ct" "$info" "$aad")"
	if [ "$got" = "$pt_hex" ]; then
		ok "veil seals, hpke-js opens ($aead)"
	else
		notok "veil seals, hpke-js opens ($aead)"
	fi
	# tampered: flip one bit of the hpke-js ciphertext; veil must refuse
	s="$(hjs seal "$aead" "$pub" "" "" "$pt_hex")"
	enc="$(field "$s" enc)"; ct="$(field "$s" ct)"
	bad="$(python3 -c 'import sys; b=bytearray.fromhex(sys.argv[1]); b[len(b)//2]^=0x10; print(b.hex())' "$ct")"
	"$VEIL" hpke open --private "$priv" --enc "$enc" --ct "$bad" --aead "$aead" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" -eq 1 ] && [ ! -s "$tmp/out" ] && grep -q "does not open" "$tmp/err"; then
		ok "veil refuses a tampered hpke-js ciphertext with exit 1 ($aead)"
	else
		notok "veil refuses a tampered hpke-js ciphertext with exit 1 ($aead) (rc=$rc)"
	fi
	# and the untampered one opens (the negative above is not a fluke)
	if "$VEIL" hpke open --private "$priv" --enc "$enc" --ct "$ct" --aead "$aead" >"$tmp/out" \
		&& cmp -s "$tmp/out" "$tmp/pt"; then
		ok "veil opens hpke-js's empty info/aad message ($aead)"
	else
		notok "veil opens hpke-js's empty info/aad message ($aead)"
	fi
done

# A ciphertext sealed by veil with the wrong aad does not open at hpke-js.
s="$("$VEIL" hpke seal --public "$jpub" --aad "$aad" <"$tmp/pt")"
if hjs open aes256gcm "$jpriv" "$(field "$s" enc)" "$(field "$s" ct)" "" "ffff" >/dev/null 2>&1; then
	notok "hpke-js refuses veil's ciphertext under another aad"
else
	ok "hpke-js refuses veil's ciphertext under another aad"
fi

# The veil-seal/1 worked example, recomputed by hpke-js + WebCrypto, shows
# the bytes docs/protocol.md gives (which test_seal checks against the C code).
if hjs seal-example >"$tmp/example"; then
	missing=0
	while read -r name value; do
		grep -q "$value" docs/protocol.md || { echo "# $name $value not in docs/protocol.md"; missing=1; }
	done <"$tmp/example"
	if [ "$missing" -eq 0 ] && [ "$(wc -l <"$tmp/example")" -eq 12 ]; then
		ok "hpke-js recomputes the veil-seal/1 worked example"
	else
		notok "hpke-js recomputes the veil-seal/1 worked example"
	fi
else
	notok "hpke-js recomputes the veil-seal/1 worked example (script failed)"
fi
exit $((fails > 0))
