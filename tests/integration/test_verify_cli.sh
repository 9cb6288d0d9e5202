#!/usr/bin/env bash
# veil verify / veil attest as a user runs them: every DCAP case of
# $VEIL_SHARED/vectors/oracle/expected_verdicts.json (exit code, ok, status,
# advisories, error), SEV-SNP with --vcek, NVIDIA with --certs, the NEAR AI
# samples, and the simulated-TEE report round trip with and without
# --allow-sim.  The verdict is the last line of stdout.
set -uo pipefail
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
VEC="$VEIL_SHARED/vectors"
setup_tmp

if ! command -v python3 >/dev/null 2>&1; then skip "veil verify" "python3 is not installed"; exit 0; fi

# field FIELD < verdict line  (JSON value; strings bare, lists comma-joined)
field() {
	python3 -c '
import json, sys
o = json.loads(sys.stdin.read().strip().splitlines()[-1])
v = o
for k in sys.argv[1].split("."):
    v = v.get(k) if isinstance(v, dict) else None
if isinstance(v, bool): print("true" if v else "false")
elif isinstance(v, list): print(",".join(str(x) for x in v))
elif v is None: print("null")
else: print(v)' "$1"
}

# run NAME WANT_RC ARGS... : runs veil verify, keeps stdout in $out
run() {
	local name="$1" want="$2"
	shift 2
	out="$("$VEIL" verify "$@" 2>"$tmp/err")"
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		notok "$name" "exit $rc, want $want: $(tail -c 300 <<<"$out") $(head -c 200 "$tmp/err")"
		return 1
	fi
	return 0
}

# ---- usage ------------------------------------------------------------------
"$VEIL" verify --help | grep -q "usage: veil verify" && ok "verify --help" || notok "verify --help"
"$VEIL" verify >/dev/null 2>&1; [ $? -eq 2 ] && ok "verify without FILE exits 2" || notok "verify without FILE exits 2"
"$VEIL" verify /nonexistent/file >/dev/null 2>&1; [ $? -eq 2 ] && ok "verify of a missing file exits 2" || notok "verify of a missing file exits 2"
"$VEIL" verify x --kind frob >/dev/null 2>&1; [ $? -eq 2 ] && ok "unknown --kind exits 2" || notok "unknown --kind exits 2"
"$VEIL" attest sim-report >/dev/null 2>&1; [ $? -eq 2 ] && ok "sim-report without --nonce exits 2" || notok "sim-report without --nonce exits 2"
# --help says which flags go with which kind (a flag for another kind is
# refused below)
"$VEIL" verify --help >"$tmp/help" 2>&1
grep -q -- "--policy F *report:" "$tmp/help" && grep -q -- "--rim F *nvgpu:" "$tmp/help" &&
	grep -q -- "--vcek F *snp:" "$tmp/help" && grep -q -- "--pccs URL *tdx, sgx, report:" "$tmp/help" &&
	ok "verify --help names the kinds each flag applies to" || notok "verify --help per-kind flags" "$(head -c 300 "$tmp/help")"
# integer options parse strictly: "two" GPUs was 0 GPUs (atoi), "nan" tokens
# was accepted (strtod)
for g in two "" 1x; do
	"$VEIL" attest sim-report --nonce "$(printf '%064d' 0)" --state-dir "$tmp/simg" --gpus "$g" >/dev/null 2>"$tmp/err"
	rc=$?
	[ $rc -eq 2 ] && grep -q -- "--gpus must be 0..8" "$tmp/err" && ok "sim-report --gpus '$g' exits 2" ||
		notok "sim-report --gpus '$g' exits 2" "exit $rc: $(head -c 200 "$tmp/err")"
done
for a in "-n nan" "-n 2.5" "--seed 1.5" "--top-k 1e3" "--ctx nan"; do
	# shellcheck disable=SC2086
	"$VEIL" model run /nonexistent/model.gguf $a >/dev/null 2>"$tmp/err"
	rc=$?
	[ $rc -eq 2 ] && grep -q "bad value" "$tmp/err" && ok "model run $a exits 2 (not truncated)" ||
		notok "model run $a exits 2" "exit $rc: $(head -c 200 "$tmp/err")"
done

# ---- simulated TEE round trip (needs nothing from ../shared) ---------------------
N=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
if "$VEIL" attest sim-report --nonce "$N" --state-dir "$tmp/sim" --gpus 2 >"$tmp/sim.json" 2>"$tmp/err"; then
	ok "attest sim-report writes a report"
else
	notok "attest sim-report writes a report" "$(cat "$tmp/err")"
fi
# a gateway's document holds reports but is not one: said, not "malformed"
jq '{version: "veil-gateway-report/1", gateway: ., nodes: []}' "$tmp/sim.json" >"$tmp/gwdoc.json"
if run "a veil-gateway-report/1 is a usage error" 2 "$tmp/gwdoc.json" --nonce "$N" --allow-sim; then
	grep -q "jq .gateway" "$tmp/err" && ok "a veil-gateway-report/1 is a usage error that says how to verify its reports" ||
		notok "gateway document hint" "$(cat "$tmp/err")"
fi
if run "sim report verifies with --allow-sim" 0 "$tmp/sim.json" --nonce "$N" --allow-sim; then
	if [ "$(field ok <<<"$out")|$(field kind <<<"$out")|$(field status <<<"$out")|$(field sim <<<"$out")" = "true|report|UpToDate|true" ] &&
		[ "$(field checks.gpus <<<"$out")" = true ] && field warning <<<"$out" | grep -q SIMULATED; then
		ok "sim report verifies with --allow-sim (UpToDate, GPUs, loud warning)"
	else
		notok "sim report verdict fields" "$out"
	fi
fi
# two sim GPUs are two devices; one GPU's evidence twice is one GPU (every
# GPU signs the same nonce, so a copy verifies: found by review)
python3 - "$tmp/sim.json" "$tmp/simdup.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
r["gpu_evidence"] = [r["gpu_evidence"][0]] * 2
json.dump(r, open(sys.argv[2], "w"))
EOF
if run "sim report's 2 GPUs" 0 "$tmp/sim.json" --nonce "$N" --allow-sim; then
	python3 -c 'import json,sys; g=json.load(sys.stdin)["gpus"]; sys.exit(0 if len(g) == 2 and g[0]["ueid"] != g[1]["ueid"] else 1)' <<<"$out" &&
		ok "a sim report's 2 GPUs have distinct device certificates (ueid)" || notok "sim GPUs' ueids" "$out"
fi
if run "one GPU's evidence twice" 1 "$tmp/simdup.json" --nonce "$N" --allow-sim; then
	field error <<<"$out" | grep -q "gpu_evidence\[1\]: the same GPU as gpu_evidence\[0\]" &&
		ok "a report listing one GPU's evidence twice fails (it would count as 2 GPUs)" ||
		notok "duplicate GPU reason" "$out"
fi
if run "sim report refused without --allow-sim" 1 "$tmp/sim.json" --nonce "$N"; then
	field error <<<"$out" | grep -q "simulated TEE evidence refused" &&
		ok "sim report refused without --allow-sim, with the reason" || notok "sim refusal reason" "$out"
fi
# a flag that does not apply to a report is refused, not ignored
for f in "--rim $tmp/sim.json" "--vcek $tmp/sim.json" "--certs $tmp/sim.json" "--rim-time 2025-01-01T00:00:00Z"; do
	# shellcheck disable=SC2086
	if run "sim report with ${f%% *}" 2 "$tmp/sim.json" --nonce "$N" --allow-sim $f; then
		grep -q -- "${f%% *} does not apply to report evidence" "$tmp/err" &&
			ok "verify of a report with ${f%% *} exits 2 naming the flag" || notok "${f%% *} message" "$(cat "$tmp/err")"
	fi
done
run "--pccs-cache without --pccs" 2 "$tmp/sim.json" --nonce "$N" --allow-sim --pccs-cache "$tmp/pc" &&
	grep -q -- "--pccs-cache needs --pccs" "$tmp/err" && ok "verify --pccs-cache without --pccs exits 2"
run "sim report with --pccs" 2 "$tmp/sim.json" --nonce "$N" --allow-sim --pccs http://127.0.0.1:9 --pccs-cache "$tmp/pc" &&
	grep -q -- "--pccs: this report's TEE is sim" "$tmp/err" && ok "verify --pccs with a sim report exits 2 (no PCCS has its collateral)"
M=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
run "sim report with another nonce exits 1" 1 "$tmp/sim.json" --nonce "$M" --allow-sim && ok "sim report with another nonce exits 1"
run "sim report auto-detected as --kind report" 0 "$tmp/sim.json" --kind report --nonce "$N" --allow-sim &&
	ok "sim report with --kind report"
# the same state dir keeps the same chain: two reports, same sim root
"$VEIL" attest sim-report --nonce "$N" --state-dir "$tmp/sim" >"$tmp/sim2.json" 2>/dev/null
if python3 - "$tmp/sim.json" "$tmp/sim2.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
root = lambda r: json.loads(json.dumps(r["collateral"]))["tcb_info_issuer_chain"].split("-----BEGIN CERTIFICATE-----")[-1]
sys.exit(0 if root(a) == root(b) else 1)
EOF
then ok "sim --state-dir keeps the simulated root"; else notok "sim --state-dir keeps the simulated root"; fi
# a policy with the right and a wrong config measurement
python3 - "$tmp/sim.json" "$tmp" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["measurements"]
json.dump({"node_config": m["node_config"], "tcb_status": ["UpToDate"]}, open(sys.argv[2] + "/pol-ok.json", "w"))
json.dump({"node_config": "00" * 48}, open(sys.argv[2] + "/pol-bad.json", "w"))
EOF
run "policy match" 0 "$tmp/sim.json" --nonce "$N" --allow-sim --policy "$tmp/pol-ok.json" && ok "policy with the measured config verifies"
if run "policy mismatch" 1 "$tmp/sim.json" --nonce "$N" --allow-sim --policy "$tmp/pol-bad.json"; then
	field error <<<"$out" | grep -q "policy" && ok "policy with another config is refused" || notok "policy mismatch reason" "$out"
fi
# the flat policy is strict: a typo, an empty list, a veil-policy/1 file
# read as it would each have enforced nothing
printf '{"node_binry":"%096d"}' 0 >"$tmp/pol-typo.json"
printf '{"tcb_status":[]}' >"$tmp/pol-empty.json"
run "flat policy with a typo" 2 "$tmp/sim.json" --nonce "$N" --allow-sim --policy "$tmp/pol-typo.json" &&
	{ grep -q "node_binry" "$tmp/err" && ok "flat policy with an unknown key exits 2, naming it" || notok "typo reason" "$(cat "$tmp/err")"; }
run "flat policy with an empty tcb_status" 2 "$tmp/sim.json" --nonce "$N" --allow-sim --policy "$tmp/pol-empty.json" &&
	ok "flat policy with an empty tcb_status list exits 2"
# A flat tcb_status list cannot be met by SEV-SNP, which has no TCB status:
# a real AMD report (its report_data is not this report's, so it fails
# later anyway) must be refused by the policy, not pass that stage silently
SNPV="$VEIL_SHARED/vectors/attest/sev-snp/trustee"
if [ -f "$SNPV/test-report.bin" ] && [ -f "$SNPV/test-vcek.der" ]; then
	python3 - "$tmp/sim.json" "$SNPV" "$tmp/snp-rep.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(tee="sev-snp", sim=False, gpu_evidence=[],
         quote=open(sys.argv[2] + "/test-report.bin", "rb").read().hex(),
         vcek=open(sys.argv[2] + "/test-vcek.der", "rb").read().hex())
r.pop("collateral", None)
json.dump(r, open(sys.argv[3], "w"))
EOF
	printf '{"tcb_status":["UpToDate"]}' >"$tmp/pol-uptodate.json"
	run "SEV-SNP report, no policy" 1 "$tmp/snp-rep.json" --kind report --nonce "$N" --at 2025-07-01T00:00:00Z &&
		field error <<<"$out" | grep -q "report_data.* differs" &&
		run "SEV-SNP report, flat tcb_status" 1 "$tmp/snp-rep.json" --kind report --nonce "$N" --at 2025-07-01T00:00:00Z --policy "$tmp/pol-uptodate.json" &&
		field error <<<"$out" | grep -q "SEV-SNP report has no TCB status" &&
		ok "a flat tcb_status policy refuses a SEV-SNP report (no TCB status), not after its quote verified" ||
		notok "SEV-SNP under a flat tcb_status policy" "$out"
	# flags a report of this TEE would ignore are usage errors
	run "SEV-SNP report with --collateral" 2 "$tmp/snp-rep.json" --kind report --nonce "$N" \
		--collateral "$VEC/attest/tdx/dcap-qvl/tdx_quote_collateral.json" &&
		grep -q -- "--collateral does not apply to this report" "$tmp/err" &&
		ok "a SEV-SNP report with --collateral exits 2 (no DCAP collateral to use)"
else
	skip "SEV-SNP under a flat tcb_status policy" "$SNPV absent (set VEIL_SHARED)"
fi

jq '.gpu_evidence' "$tmp/sim.json" >"$tmp/gpulist.json"
run "nvgpu evidence list with --certs" 2 "$tmp/gpulist.json" --kind nvgpu --certs "$tmp/gpulist.json" &&
	grep -q -- "--certs does not apply to an evidence list" "$tmp/err" &&
	ok "an nvgpu evidence list with --certs exits 2 (each entry carries its chain)"
run "sim report with --max-vmpl" 2 "$tmp/sim.json" --nonce "$N" --allow-sim --max-vmpl 1 &&
	grep -q -- "--max-vmpl does not apply to this report" "$tmp/err" &&
	ok "a TDX/sim report with --max-vmpl exits 2 (only SEV-SNP has a VMPL)"

# ---- model.sha256 is bound by the quote (veil-model-sha256 event) -------------
head -c 4096 /dev/urandom >"$tmp/model.bin"
msha=$(sha256sum "$tmp/model.bin" | cut -d' ' -f1)
"$VEIL" attest sim-report --nonce "$N" --state-dir "$tmp/sim" --gpus 0 --model "$tmp/model.bin" >"$tmp/simm.json" 2>"$tmp/err"
if run "sim report with a model" 0 "$tmp/simm.json" --kind report --nonce "$N" --allow-sim; then
	[ "$(field measurements.model_sha256 <<<"$out")" = "$msha" ] &&
		ok "sim report with --model measures its SHA-256 (measurements.model_sha256)" ||
		notok "measurements.model_sha256" "$out"
fi
python3 - "$tmp/simm.json" "$tmp" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
d = sys.argv[2]
sha = r["model"]["sha256"]
r["model"]["sha256"] = ("1" if sha[0] != "1" else "2") + sha[1:]
json.dump(r, open(d + "/simm-rewritten.json", "w"))
r3 = json.load(open(sys.argv[1]))
del r3["model"]["sha256"]
json.dump(r3, open(d + "/simm-nosha.json", "w"))
r4 = json.load(open(sys.argv[1]))
for e in r4["event_log"]:
    if e["event"] == "veil-model-sha256":
        e["event_type"] = 0x08000002  # relabelled: same digest, no longer a runtime event
del r4["model"]["sha256"]
r4["measurements"].pop("model_sha256", None)
json.dump(r4, open(d + "/simm-relabel.json", "w"))
r2 = json.load(open(sys.argv[1]))
r2["tee"] = "tdx"
json.dump(r2, open(d + "/simm-tdx-sim.json", "w"))
name = r["model"]["name"]
pol = {"version": "veil-policy/1", "allow_sim": True, "tee": ["sim", "tdx"],
       "models": {name: {"model_sha256": [r["model"]["sha256"]]}}}
json.dump(pol, open(d + "/pol1-rewritten.json", "w"))
pol["models"][name] = {"model_sha256": [sha]}
json.dump(pol, open(d + "/pol1-ok.json", "w"))
pol["models"][name] = {"model_sha256": ["00" * 32]}
json.dump(pol, open(d + "/pol1-other.json", "w"))
EOF
if run "rewritten model.sha256" 1 "$tmp/simm-rewritten.json" --kind report --nonce "$N" --allow-sim; then
	field error <<<"$out" | grep -q "model.sha256 differs from the measured" &&
		ok "a sim report with model.sha256 rewritten fails verify --kind report" || notok "rewritten model.sha256 reason" "$out"
fi
# deleting model.sha256 must not unbind it: the measured value stands
if run "model.sha256 deleted" 0 "$tmp/simm-nosha.json" --kind report --nonce "$N" --allow-sim; then
	[ "$(field checks.model_sha256 <<<"$out")|$(field measurements.model_sha256 <<<"$out")" = "true|$msha" ] &&
		ok "a sim report with model.sha256 deleted still gives the measured model hash (checks.model_sha256 true)" ||
		notok "deleted model.sha256" "$out"
fi
# relabelling the measuring event (RTMR3 still replays: the type is not in
# the digest) must not unbind it either (found by review)
if run "veil-model-sha256 event relabelled" 1 "$tmp/simm-relabel.json" --kind report --nonce "$N" --allow-sim; then
	field error <<<"$out" | grep -q "in RTMR3, which holds only runtime events" &&
		ok "a sim report whose veil-model-sha256 event was relabelled (and model.sha256 deleted) fails" ||
		notok "relabelled event reason" "$out"
fi
run "veil-policy/1 pinning the rewritten sha" 1 "$tmp/simm-rewritten.json" --kind report --nonce "$N" --allow-sim --policy "$tmp/pol1-rewritten.json" &&
	ok "a model_sha256 pin is not satisfied by a rewritten model.sha256"
if run "veil-policy/1 file, matching" 0 "$tmp/simm.json" --kind report --nonce "$N" --allow-sim --policy "$tmp/pol1-ok.json"; then
	[ "$(field policy <<<"$out")|$(field checks.policy <<<"$out")" = "veil-policy/1|true" ] &&
		ok "--policy with a veil-policy/1 file is enforced (pin matches)" || notok "veil-policy/1 verdict" "$out"
fi
if run "veil-policy/1 file, other pin" 1 "$tmp/simm.json" --kind report --nonce "$N" --allow-sim --policy "$tmp/pol1-other.json"; then
	field error <<<"$out" | grep -q "model_sha256" && ok "--policy with a veil-policy/1 file refuses another model_sha256" ||
		notok "veil-policy/1 refusal reason" "$out"
fi
if run "sim:true labelled tdx" 1 "$tmp/simm-tdx-sim.json" --kind report --nonce "$N" --allow-sim; then
	field error <<<"$out" | grep -q '"sim": true' && ok "a report with sim:true and tee tdx is refused" || notok "sim:true tdx reason" "$out"
fi

if [ ! -d "$VEC" ]; then
	skip "veil verify on the shared vectors" "$VEC absent (set VEIL_SHARED)"
	[ "$fails" -eq 0 ]
	exit $?
fi

# ---- DCAP: every oracle case -------------------------------------------------------
python3 - "$VEC/oracle/expected_verdicts.json" >"$tmp/cases" <<'EOF'
import json, sys
for c in json.load(open(sys.argv[1]))["cases"]:
    want = ("accept|%s|%s" % (c["status"], ",".join(c["advisory_ids"]))) if "status" in c else "reject|" + c["error"]
    print("\t".join([c["id"], c["quote"], c["collateral"], c["time"], want]))
EOF
while IFS=$'\t' read -r id quote col time want; do
	case "$want" in accept*) wrc=0 ;; *) wrc=1 ;; esac
	name="dcap $id: $want"
	run "$name" "$wrc" "$VEC/$quote" --collateral "$VEC/$col" --at "$time" || continue
	if [ "$wrc" -eq 0 ]; then
		got="accept|$(field status <<<"$out")|$(field advisories <<<"$out")"
	else
		got="reject|$(field error <<<"$out")"
	fi
	kind=$(field kind <<<"$out")
	if [ "$got" = "$want" ] && { [ "$kind" = tdx ] || [ "$kind" = sgx ]; }; then ok "$name"; else notok "$name" "got $got kind $kind"; fi
done <"$tmp/cases"
run "tdx quote without collateral exits 2" 2 "$VEC/attest/tdx/dcap-qvl/tdx_quote" && ok "tdx quote without --collateral exits 2"
# --policy was never opened for a quote: a missing file, or a policy the
# quote does not meet (OutOfDate demanded of an UpToDate quote), verified ok
Q="$VEC/attest/tdx/dcap-qvl"
printf '{"tcb_status":["OutOfDate"]}' >"$tmp/pol-ood.json"
for pol in /nonexistent/policy.json "$tmp/pol-ood.json"; do
	if run "tdx quote with --policy $pol" 2 "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" \
		--at 2025-07-01T00:00:00Z --policy "$pol"; then
		grep -q -- "--policy does not apply to tdx evidence" "$tmp/err" &&
			ok "verify of a tdx quote with --policy $(basename "$pol") exits 2 (never silently unenforced)" ||
			notok "tdx --policy message" "$(cat "$tmp/err")"
	fi
done
run "tdx quote with --allow-sim" 2 "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" --at 2025-07-01T00:00:00Z --allow-sim &&
	grep -q -- "--allow-sim does not apply to tdx" "$tmp/err" && ok "verify of a tdx quote with --allow-sim exits 2"
run "tdx quote with --collateral and --pccs" 2 "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" --at 2025-07-01T00:00:00Z \
	--pccs http://127.0.0.1:9 --pccs-cache "$tmp/pccs-x" &&
	grep -q -- "--collateral and --pccs are exclusive" "$tmp/err" && ok "verify --collateral with --pccs exits 2 (one would be dropped)"
run "tdx quote with --rim" 2 "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" --at 2025-07-01T00:00:00Z --rim "$Q/tdx_quote" &&
	grep -q -- "--rim does not apply to tdx" "$tmp/err" && ok "verify of a tdx quote with --rim exits 2"
# --pccs with a TDX report: the collateral of the report's own quote, fetched
# (here: read from a fresh --pccs-cache) as for a bare quote; before, --pccs
# was ignored and the report failed for want of collateral
N2=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$VEIL" attest sim-report --nonce "$N2" --state-dir "$tmp/sim" --gpus 0 >"$tmp/sim0.json" 2>/dev/null
python3 - "$tmp/sim0.json" "$Q/tdx_quote" "$tmp/tdx-rep.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(tee="tdx", sim=False, quote=open(sys.argv[2], "rb").read().hex())
r.pop("collateral", None)
json.dump(r, open(sys.argv[3], "w"))
PYEOF
if run "tdx report with --pccs (unreachable)" 2 "$tmp/tdx-rep.json" --nonce "$N2" --at 2025-07-01T00:00:00Z \
	--pccs http://127.0.0.1:9 --pccs-cache "$tmp/pccs-rep"; then
	grep -q 'certification/v4/tcb?fmspc=' <<<"$out" && ok "verify --kind report --pccs fetches the report's quote's collateral (unreachable PCCS: exit 2 naming the URL)" ||
		notok "report --pccs error" "$out"
fi
mkdir -p "$tmp/pccs-rep"
for ca in processor platform; do cp "$Q/tdx_quote_collateral.json" "$tmp/pccs-rep/tdx-b0c06f000000-$ca.json"; done
# the quote is real, the rest of the report is not its own: the quote stage
# passes (UpToDate) and the report fails later, at report_data
if run "tdx report with --pccs (cached)" 1 "$tmp/tdx-rep.json" --nonce "$N2" --at 2025-07-01T00:00:00Z \
	--pccs http://127.0.0.1:9 --pccs-cache "$tmp/pccs-rep"; then
	[ "$(field status <<<"$out")|$(field checks.quote <<<"$out")" = "UpToDate|true" ] &&
		ok "verify --kind report --pccs uses the PCCS collateral for the report's quote" ||
		notok "report --pccs cached verdict" "$out"
fi

# ---- SEV-SNP ---------------------------------------------------------------------------
G="$VEC/attest/sev-snp/go-sev-guest"
T="$VEC/attest/sev-snp/trustee"
if run "snp with --vcek" 0 "$T/test-report.bin" --vcek "$T/test-vcek.der" --at 2025-07-01T00:00:00Z; then
	[ "$(field kind <<<"$out")|$(field ok <<<"$out")" = "snp|true" ] && ok "snp report verifies with --vcek" || notok "snp kind" "$out"
fi
run "snp without --vcek" 2 "$T/test-report.bin" && ok "snp report without --vcek exits 2"
run "snp with --policy" 2 "$T/test-report.bin" --vcek "$T/test-vcek.der" --at 2025-07-01T00:00:00Z --policy "$tmp/pol-ood.json" &&
	grep -q -- "--policy does not apply to snp" "$tmp/err" && ok "snp report with --policy exits 2"
run "snp with --collateral" 2 "$T/test-report.bin" --vcek "$T/test-vcek.der" --collateral "$Q/tdx_quote_collateral.json" &&
	grep -q -- "--collateral does not apply to snp" "$tmp/err" && ok "snp report with --collateral exits 2"
run "snp with another VCEK" 1 "$T/test-report.bin" --vcek "$G/vcek.testcer" --at 2025-07-01T00:00:00Z &&
	ok "snp report with another chip's VCEK exits 1"
if run "snp debug guest" 1 "$G/attestation.bin" --vcek "$G/vcek.testcer" --at 2025-07-01T00:00:00Z; then
	field error <<<"$out" | grep -q DEBUG && ok "snp report of a DEBUG guest exits 1 with the reason" || notok "snp debug reason" "$out"
fi
# the VMPL a report was asked for at: 0 by default, --max-vmpl 0..3 widens
if run "snp --max-vmpl 1" 0 "$T/test-report.bin" --vcek "$T/test-vcek.der" --at 2025-07-01T00:00:00Z --max-vmpl 1; then
	[ "$(field vmpl <<<"$out")" = "0" ] && ok "snp report at VMPL 0 verifies under --max-vmpl 1" || notok "snp vmpl field" "$out"
fi
run "snp --max-vmpl 4" 2 "$T/test-report.bin" --vcek "$T/test-vcek.der" --max-vmpl 4 &&
	grep -q "max-vmpl must be" "$tmp/err" && ok "snp --max-vmpl out of range exits 2"

# ---- NVIDIA ----------------------------------------------------------------------------
NV="$VEC/attest/nvidia/nvtrust"
if run "nvgpu with --certs" 0 "$NV/hopperAttestationReport.txt" --certs "$NV/hopperCertChain.txt"; then
	[ "$(field kind <<<"$out")|$(field arch <<<"$out")" = "nvgpu|hopper" ] && ok "nvgpu hex evidence verifies with --certs" || notok "nvgpu fields" "$out"
fi
if run "nvgpu --rim-time without --rim" 2 "$NV/hopperAttestationReport.txt" --certs "$NV/hopperCertChain.txt" \
	--rim-time 2024-01-01T00:00:00Z; then
	grep -q -- "--rim-time needs --rim" "$tmp/err" && ok "verify --rim-time without --rim exits 2 (it would be ignored)" ||
		notok "rim-time without rim message" "$(cat "$tmp/err")"
fi
run "nvgpu wrong nonce" 1 "$NV/hopperAttestationReport.txt" --certs "$NV/hopperCertChain.txt" --nonce "$M" &&
	ok "nvgpu evidence with another --nonce exits 1"
run "nvgpu with --vcek" 2 "$NV/hopperAttestationReport.txt" --certs "$NV/hopperCertChain.txt" --vcek "$NV/hopperCertChain.txt" &&
	grep -q -- "--vcek does not apply to nvgpu" "$tmp/err" && ok "nvgpu evidence with --vcek exits 2"
run "nvgpu with --allow-sim" 2 "$NV/hopperAttestationReport.txt" --certs "$NV/hopperCertChain.txt" --allow-sim &&
	grep -q -- "--allow-sim does not apply to nvgpu" "$tmp/err" && ok "nvgpu evidence with --allow-sim exits 2"
run "nvgpu root-only chain" 1 "$NV/hopperAttestationReport.txt" --certs "$VEC/attest/nvidia/trustee/hopper_cert_chain_case2.txt" &&
	ok "nvgpu evidence with a root-only chain exits 1"

# ---- NEAR AI ---------------------------------------------------------------------------
NA="$VEC/nearai"
if run "nearai private-ml-sdk report" 0 "$NA/private-ml-sdk-report.json" --at 2026-03-01T00:00:00Z; then
	[ "$(field kind <<<"$out")|$(field status <<<"$out")|$(field checks.gpus <<<"$out")" = "nearai|unknown|true" ] &&
		ok "nearai report: signatures, chain and GPU verify; TCB status unknown" || notok "nearai fields" "$out"
fi
if run "nearai with collateral" 0 "$NA/private-ml-sdk-report.json" --at 2026-03-01T00:00:00Z \
	--collateral "$VEC/attest/tdx/dcap-qvl/tdx_quote_outdated_collateral.json"; then
	[ "$(field status <<<"$out")|$(field advisories <<<"$out")" = "OutOfDate|INTEL-SA-01036,INTEL-SA-01079,INTEL-SA-01099,INTEL-SA-01103,INTEL-SA-01111" ] &&
		ok "nearai report with collateral: OutOfDate and its advisories" || notok "nearai collateral fields" "$out"
fi
python3 - "$NA" "$tmp" <<'EOF'
import json, sys
d, t = sys.argv[1], sys.argv[2]
r = {"intel_quote": open(d + "/quote.hex").read().strip(),
     "event_log": open(d + "/event_log.json").read(),
     "info": json.load(open(d + "/info.json"))}
json.dump(r, open(t + "/dstack.json", "w"))
r["signing_address"] = "0x" + "ab" * 20
json.dump(r, open(t + "/dstack-addr.json", "w"))
EOF
if run "nearai dstack quote + event log + app_compose" 0 "$tmp/dstack.json" --kind nearai; then
	[ "$(field checks.event_log <<<"$out")|$(field checks.mr_config_id <<<"$out")" = "true|true" ] &&
		ok "nearai dstack report: RTMR replay and mr_config_id = 01||sha256(app_compose)" || notok "dstack fields" "$out"
fi
# NEAR AI reports are not judged by a flat policy (nor a veil-policy/1 file):
# a tcb_status list an "unknown" status cannot meet verified ok
printf '{"tcb_status":["UpToDate"]}' >"$tmp/pol-utd.json"
run "nearai with --policy" 2 "$NA/private-ml-sdk-report.json" --at 2026-03-01T00:00:00Z --policy "$tmp/pol-utd.json" &&
	grep -q -- "--policy does not apply to nearai" "$tmp/err" && ok "nearai report with --policy exits 2 (it would not be enforced)"
run "nearai with --pccs" 2 "$NA/private-ml-sdk-report.json" --pccs http://127.0.0.1:9 &&
	grep -q -- "--pccs does not apply to nearai" "$tmp/err" && ok "nearai report with --pccs exits 2"
run "nearai unbound signing address" 1 "$tmp/dstack-addr.json" && ok "nearai report with a signing address the quote does not bind exits 1"

# --pccs: an unreachable PCCS is an I/O error naming the URL, never a pass
# (fetching itself is tested against a local server in tests/unit/test_pccs.c).
if run "pccs unreachable" 2 "$VEC/attest/tdx/dcap-qvl/tdx_quote" --pccs http://127.0.0.1:9 \
	--pccs-cache "$tmp/pccs" --at 2025-07-01T00:00:00Z; then
	grep -q '"ok":false' <<<"$out" && grep -q 'certification/v4/tcb?fmspc=' <<<"$out" &&
		ok "verify --pccs with an unreachable PCCS exits 2 naming the URL" || notok "pccs error" "$out"
fi

[ "$fails" -eq 0 ]
