#!/usr/bin/env bash
# veil verify --kind nvgpu --rim as a user runs it, with nvtrust's real H100
# evidence and sample RIMs from $VEIL_SHARED/vectors/attest/nvidia/nvtrust:
# the RIMs' XML signatures verify at a --rim-time when their signer was
# valid (checks.rim_signature true, the comparison then runs), fail at later
# times with an "expired" error (status rim_signature_invalid, exit 1), and
# a changed golden value, a DOCTYPE or a tree past the C14N bounds fails the
# verdict, and crafted bytes in a quoted Algorithm cannot forge stderr lines
# or break the JSON verdict.  Corrupted copies live in $tmp only.
set -uo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
NV="$VEIL_SHARED/vectors/attest/nvidia/nvtrust"
setup_tmp
require_built "veil" "$VEIL"
skip_unless_shared "veil verify --rim" "$NV/1010_0200_882_96005E0001_PROD.swidtag"
if ! command -v python3 >/dev/null 2>&1; then skip "veil verify --rim" "python3 is not installed"; exit 0; fi

EV="$NV/hopperAttestationReport.txt"
CH="$NV/hopperCertChain.txt"
DRV="$NV/Driver_RIM_test_no_gpu.swidtag"
VB="$NV/1010_0200_882_96005E0001_PROD.swidtag"

# field FIELD < verdict line
field() {
	python3 -c '
import json, sys
v = json.loads(sys.stdin.read().strip().splitlines()[-1])
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v.get(k) if isinstance(v, dict) else None
if isinstance(v, bool): print("true" if v else "false")
elif v is None: print("null")
else: print(v)' "$1"
}

# run NAME WANT_RC ARGS...: veil verify; stdout in $out, stderr in $tmp/err
run() {
	local name="$1" want="$2"
	shift 2
	out="$("$VEIL" verify "$EV" --kind nvgpu --certs "$CH" "$@" 2>"$tmp/err")"
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		notok "$name" "exit $rc, want $want: $(tail -c 400 <<<"$out") $(head -c 300 "$tmp/err")"
		return 1
	fi
	return 0
}

"$VEIL" verify --help | grep -q -- "--rim-time" && ok "verify --help documents --rim-time" ||
	notok "verify --help documents --rim-time"

# Both RIMs signed and valid at 2024-01-01: the signature check passes and the
# comparison runs (the sample RIMs are for other versions than this GPU's).
if run "rims at 2024" 1 --rim "$DRV" --rim "$VB" --rim-time 2024-01-01T00:00:00Z; then
	got="$(field checks.rim_signature <<<"$out")|$(field rim_signatures.0.ok <<<"$out")|$(field rim_signatures.1.ok <<<"$out")|$(field rim_signatures.1.time <<<"$out")|$(field rim_signatures.1.method <<<"$out")|$(field status <<<"$out")"
	[ "$got" = "true|true|true|2024-01-01T00:00:00Z|ecdsa-sha384|rim_mismatch" ] &&
		ok "sample RIM signatures verify at --rim-time 2024-01-01 (then the values are compared)" ||
		notok "rims at 2024" "$got"
	field rim_signatures.1.chain.3.subject <<<"$out" | grep -q "NVIDIA CoRIM signing Root CA" &&
		ok "the verdict lists the signer chain up to the CoRIM root" || notok "signer chain" "$out"
fi

# Today (default: --at, else now) the leaf has expired.
if run "rims now" 1 --rim "$DRV" --rim "$VB"; then
	got="$(field ok <<<"$out")|$(field status <<<"$out")|$(field checks.rim_signature <<<"$out")|$(field checks.signature <<<"$out")"
	if [ "$got" = "false|rim_signature_invalid|false|true" ] &&
		field error <<<"$out" | grep -q 'driver RIM: RIM signer chain: certificate "HCC RIM L4 Signer" has expired' &&
		grep -q -- "--rim-time" "$tmp/err"; then
		ok "at today's date the RIM signature fails: expired leaf, exit 1, hint on stderr"
	else
		notok "rims now" "$got $(field error <<<"$out")"
	fi
fi
# --at sets the RIM time too, --rim-time overrides it
run "--at 2024" 1 --rim "$VB" --at 2024-06-01T00:00:00Z &&
	[ "$(field checks.rim_signature <<<"$out")" = true ] &&
	ok "--at 2024-06-01 is the default RIM time" || notok "--at as RIM time" "$(field error <<<"$out")"
run "--rim-time 2027" 1 --rim "$VB" --at 2024-06-01T00:00:00Z --rim-time 2027-01-01T00:00:00Z &&
	field error <<<"$out" | grep -q "has expired" &&
	ok "--rim-time overrides --at for the RIM" || notok "--rim-time override" "$(field error <<<"$out")"
"$VEIL" verify "$EV" --kind nvgpu --certs "$CH" --rim "$VB" --rim-time yesterday >/dev/null 2>&1
[ $? -eq 2 ] && ok "a bad --rim-time exits 2" || notok "a bad --rim-time exits 2"

# A changed golden value: the digest no longer matches.
sed 's/ns2:Hash0="c3f65e/ns2:Hash0="d3f65e/' "$VB" >"$tmp/flip.swidtag"
if run "flipped hash" 1 --rim "$tmp/flip.swidtag" --rim-time 2024-01-01T00:00:00Z; then
	[ "$(field status <<<"$out")" = rim_signature_invalid ] && field error <<<"$out" | grep -q "digest differs" &&
		ok "a RIM with one golden value changed fails its signature" || notok "flipped hash" "$out"
fi
# A DOCTYPE with an external entity is refused before anything is read.
{ echo '<!DOCTYPE SoftwareIdentity [<!ENTITY e SYSTEM "file:///etc/passwd">]>'; cat "$VB"; } >"$tmp/doctype.swidtag"
if run "doctype" 1 --rim "$tmp/doctype.swidtag" --rim-time 2024-01-01T00:00:00Z; then
	field error <<<"$out" | grep -q "DOCTYPE is not supported" &&
		ok "a RIM with a DOCTYPE is refused" || notok "doctype" "$out"
fi
# Crafted RIMs (no valid signature needed: the digest is computed first).
# Namespace declarations x elements made C14N take minutes: refused at once,
# naming the limit.
python3 - "$VB" "$tmp/ns.swidtag" <<'PY'
import sys
s = open(sys.argv[1]).read()
i = s.index("<SoftwareIdentity ") + len("<SoftwareIdentity ")
ns = "".join('xmlns:n%d="urn:x" ' % k for k in range(2000))
s = s[:i] + ns + s[i:]
j = s.index(">", i) + 1
open(sys.argv[2], "w").write(s[:j] + "<e/>" * 2000 + s[j:])
PY
out="$(timeout 20 "$VEIL" verify "$EV" --kind nvgpu --certs "$CH" --rim "$tmp/ns.swidtag" \
	--rim-time 2024-01-01T00:00:00Z 2>"$tmp/err")"
rc=$?
[ "$rc" -eq 1 ] && field error <<<"$out" | grep -q "more than 32 namespace declarations" &&
	ok "a RIM with 2000 namespace declarations over 2000 elements is refused at once" ||
	notok "namespace budget" "exit $rc: $(head -c 300 "$tmp/err")"
# An Algorithm value with a newline and UTF-8 cut at the quote limit: stderr
# gets no forged line, the JSON verdict is still written.
python3 - "$VB" "$tmp/alg.swidtag" <<'PY'
import sys
s = open(sys.argv[1], encoding="utf-8").read()
m = 'Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"'
v = "x&#10;veil verify: RIM OK (forged line)" + "\u00e9" * 100
open(sys.argv[2], "w", encoding="utf-8").write(s.replace(m, 'Algorithm="%s"' % v))
PY
if run "algorithm bytes" 1 --rim "$tmp/alg.swidtag" --rim-time 2024-01-01T00:00:00Z; then
	if [ "$(field status <<<"$out")" = rim_signature_invalid ] &&
		field error <<<"$out" | grep -q "algorithm x?veil verify: RIM OK (forged line)??" &&
		! grep -q "^veil verify: RIM OK" "$tmp/err"; then
		ok "control and UTF-8 bytes of a quoted Algorithm are '?': no forged stderr line, JSON verdict written"
	else
		notok "algorithm bytes" "$(tail -c 300 <<<"$out") | $(head -c 300 "$tmp/err")"
	fi
fi
# An unreadable RIM is an I/O error, not a verdict.
run "missing rim" 2 --rim "$tmp/none.swidtag" && ok "a missing --rim file exits 2"

[ "$fails" -eq 0 ]
