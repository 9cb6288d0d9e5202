#!/usr/bin/env bash
# DCAP verdicts of veil (tests/bench/tdx_verify, built by `make bench-bins`)
# against @phala/dcap-qvl 0.3.9 (npm, tests/js) on the same quote, collateral
# and time: every case of $VEIL_SHARED/vectors/oracle/expected_verdicts.json
# plus the TDX quotes of MANIFEST.md that have no collateral of their own.
# Both must reach the same accept/reject decision, and on accept the same TCB
# status and advisory IDs.  One known, intended difference is checked too:
# veil refuses a PCK CRL past its nextUpdate, dcap-qvl 0.3.9 does not.
# Builds nothing.
set -uo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
TV="$VEIL_BIN/../bench/tdx_verify"
JS=tests/js
VEC="$VEIL_SHARED/vectors"

name="dcap verdicts match dcap-qvl"
if [ ! -x "$TV" ]; then skip "$name" "$TV absent (make bench-bins)"; exit 0; fi
if ! command -v node >/dev/null 2>&1; then skip "$name" "node is not installed"; exit 0; fi
if [ ! -d "$JS/node_modules/@phala/dcap-qvl" ]; then
	skip "$name" "$JS/node_modules/@phala/dcap-qvl absent (cd $JS && npm ci)"; exit 0
fi
if [ ! -f "$VEC/oracle/expected_verdicts.json" ]; then skip "$name" "$VEC absent (set VEIL_SHARED)"; exit 0; fi
if ! command -v python3 >/dev/null 2>&1; then skip "$name" "python3 is not installed"; exit 0; fi

# "decision|status|advisories" of a verdict line (either tool's JSON).
summary() {
	python3 -c '
import json, sys
try:
    o = json.loads(sys.argv[1])
except Exception:
    print("unparsable"); sys.exit()
print("%s|%s|%s" % ("accept" if o.get("ok") else "reject",
                    o.get("status") if o.get("ok") else "",
                    ",".join(o.get("advisories") or [])))' "$1"
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]) or "")' "$1" "$2"; }

compare() { # id quote collateral time
	local ours theirs
	ours="$("$TV" "$VEC/$2" "$VEC/$3" "$4" 2>/dev/null)"
	theirs="$(node "$JS/dcap_oracle.mjs" "$VEC/$2" "$VEC/$3" "$4" 2>/dev/null)"
	local so st
	so="$(summary "$ours")"; st="$(summary "$theirs")"
	if [ "$so" = "$st" ] && [ "$so" != unparsable ]; then
		ok "$1: $so"
	else
		notok "$1" "veil: $so [$(field "$ours" error)] / dcap-qvl: $st [$(field "$theirs" error)]"
	fi
}

while IFS='|' read -r id quote coll time; do
	compare "$id" "$quote" "$coll" "$time"
done < <(python3 -c '
import json, sys
for c in json.load(open(sys.argv[1]))["cases"]:
    print("|".join([c["id"], c["quote"], c["collateral"], c["time"]]))' "$VEC/oracle/expected_verdicts.json")

# Quotes without collateral of their own, and the decoded .bin twins.
compare "cos-113-padded-8000" attest/tdx/go-tdx-guest/cos-113-tdx-quote.dat attest/tdx/dcap-qvl/tdx_quote_collateral.json 2025-07-01T00:00:00Z
compare "nearai-quote-hex" nearai/quote.hex attest/tdx/dcap-qvl/tdx_quote_collateral.json 2025-07-01T00:00:00Z
compare "nearai-app-cert-quote" nearai/app_cert_quote.bin attest/tdx/dcap-qvl/tdx_quote_collateral.json 2025-07-01T00:00:00Z
compare "tdx-quote-hex-bin" attest/tdx/dcap-qvl/tdx-quote.hex.bin attest/tdx/dcap-qvl/tdx_quote_collateral.json 2025-07-01T00:00:00Z
compare "tappd-hex-bin" attest/tdx/dcap-qvl/quote-from-tappd.hex.bin attest/tdx/dcap-qvl/tdx_quote_collateral.json 2025-07-01T00:00:00Z
compare "tdx-v4-unix-time" attest/tdx/dcap-qvl/tdx_quote attest/tdx/dcap-qvl/tdx_quote_collateral.json 1751328000
compare "sgx-v3-window-end" attest/sgx/dcap-qvl/sgx_quote attest/sgx/dcap-qvl/sgx_quote_collateral.json 2025-07-19T10:01:18Z

# Intended difference: PCK CRL nextUpdate 2025-07-19T10:00:35Z has passed.
o="$("$TV" "$VEC/attest/tdx/dcap-qvl/tdx_quote" "$VEC/attest/tdx/dcap-qvl/tdx_quote_collateral.json" 2025-07-19T10:05:00Z 2>/dev/null)"
t="$(node "$JS/dcap_oracle.mjs" "$VEC/attest/tdx/dcap-qvl/tdx_quote" "$VEC/attest/tdx/dcap-qvl/tdx_quote_collateral.json" 2025-07-19T10:05:00Z 2>/dev/null)"
if [ "$(summary "$o")" = "reject||" ] && [ "$(summary "$t")" = "accept|UpToDate|" ]; then
	ok "expired PCK CRL: veil rejects, dcap-qvl 0.3.9 accepts (veil checks CRL freshness)"
else
	notok "expired PCK CRL difference" "veil: $(summary "$o") / dcap-qvl: $(summary "$t")"
fi

[ "$fails" -eq 0 ]
