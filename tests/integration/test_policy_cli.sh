#!/usr/bin/env bash
# veil policy / veil receipts against real veil-node processes (sim TEE,
# 127.0.0.1, port 0): `veil policy init` pins a node (trust on first use,
# the pins equal the real SHA-384 / SHA-256 of the binary and model), the
# pinned policy verifies it, a policy with another model hash, another model
# name or a node with another configuration is refused, a TLS endpoint that
# is not the attested one (nginx re-terminating TLS in front of the node) is
# refused; `veil receipts verify` accepts a receipts log built from a real
# exchange and detects each tampering.
# Env: VEIL_BIN (dir with veil and veil-node), VEIL_SHARED (default ../shared).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

require_built "veil policy" "$NODE_BIN" "$VEIL"
for t in jq curl openssl sha256sum; do
	command -v "$t" >/dev/null || { skip "veil policy" "$t not installed"; exit 0; }
done
skip_unless_shared "veil policy" "$MODEL"
setup_tmp

# start_node NAME ARGS... : starts veil-node (sim), waits until it is ready;
# sets URL (https, or http with --plain-http) and PORT.
start_node() {
	local name="$1"; shift
	start_server "$name" "$NODE_BIN" --listen 127.0.0.1:0 --tee sim --threads 1 --model "$MODEL" "$@" &&
		wait_ready "$URL"
}

# ---- help -----------------------------------------------------------------------
for c in "policy init" "policy show" "policy check" "receipts verify"; do
	# shellcheck disable=SC2086
	"$VEIL" $c --help >"$tmp/help" 2>&1
	check "veil $c --help exits 0 and prints usage" \
		bash -c '[ $0 = 0 ] && grep -q "usage: veil ${1%% *}" "$2"' "$?" "$c" "$tmp/help"
done
"$VEIL" policy init --from https://127.0.0.1:1 >/dev/null 2>&1
check "veil policy init without -o is a usage error (exit 2)" test $? -eq 2

# ---- policy init: trust on first use ----------------------------------------------
if ! start_node a --allow-plaintext; then
	notok "node A starts"
	exit 1
fi
A="$URL"
APORT=$PORT

"$VEIL" policy init --from "$A" -o "$tmp/p.json" >"$tmp/init0.out" 2>&1
rc=$?
check "policy init without --allow-sim refuses the sim node (exit 1)" test $rc -eq 1
check "... saying the evidence is simulated" grep -q "simulated TEE evidence refused" "$tmp/init0.out"
check "... and writes nothing" test ! -e "$tmp/p.json"

"$VEIL" policy init --from "$A" --allow-sim -o "$tmp/p.json" >"$tmp/init.out" 2>"$tmp/init.err"
check "policy init --allow-sim pins the node (exit 0)" test $? -eq 0
check "policy init warns loudly: trust on first use" grep -q "TRUST ON FIRST USE" "$tmp/init.err"
check "policy init warns loudly: simulated TEE" grep -q "SIMULATED TEE" "$tmp/init.err"
want_sha="$(sha256sum "$MODEL" | cut -d' ' -f1)"
want_model="$(openssl dgst -sha384 -r "$MODEL" | cut -d' ' -f1)"
want_bin="$(openssl dgst -sha384 -r "$NODE_BIN" | cut -d' ' -f1)"
check "the pinned model_sha256 is the model file's SHA-256" \
	jqt --arg s "$want_sha" '.models.stories260K.model_sha256 == [$s]' "$tmp/p.json"
check "the pinned model measurement is the model file's SHA-384" \
	jqt --arg s "$want_model" '.models.stories260K.model == [$s]' "$tmp/p.json"
check "the pinned node_binary is veil-node's SHA-384" \
	jqt --arg s "$want_bin" '.models.stories260K.node_binary == [$s]' "$tmp/p.json"
check "the policy allows sim, refuses other models" \
	jqt '.allow_sim == true and .other_models == "refuse" and (.models.stories260K.node_config | length) == 1' "$tmp/p.json"
"$VEIL" policy init --from "$A" --allow-sim -o "$tmp/p.json" >/dev/null 2>&1
check "policy init does not overwrite without --force (exit 2)" test $? -eq 2

# ---- policy show ---------------------------------------------------------------------
"$VEIL" policy show "$tmp/p.json" >"$tmp/show.out" 2>&1
check "policy show validates and summarises (exit 0)" \
	bash -c '[ $0 = 0 ] && grep -q "valid veil-policy/1" "$1" && grep -q "stories260K" "$1" && grep -q "other models: *refused" "$1"' "$?" "$tmp/show.out"
"$VEIL" policy show --json "$tmp/p.json" >"$tmp/show.json"
check "policy show --json is the file's canonical form" \
	bash -c 'diff <(jq -S . "$0") <(jq -S . "$1") >/dev/null' "$tmp/p.json" "$tmp/show.json"
# every pin is shown: init pinned the (sim) boot chain, which show hid
for k in mrtd rtmr0 rtmr1 rtmr2 mr_config_id; do
	v="$(jq -r --arg k "$k" ".models.stories260K[\$k][0] // empty" "$tmp/p.json")"
	check "policy show prints the model's $k pin" \
		bash -c '[ -n "$0" ] && grep -Eq "^ +$1 +$0\$" "$2"' "$v" "$k" "$tmp/show.out"
done
# a SEV-SNP entry shows its launch measurement and host_data, and no "not
# pinned" for the veil measurements SEV-SNP cannot check; a gateway entry
# with boot pins only shows them (and "not pinned" for what TDX checks)
H96() { printf '%096d' "$1"; }
cat >"$tmp/boot.json" <<EOF
{"version": "veil-policy/1", "tee": ["tdx", "sev-snp"], "gateway": {"mrtd": ["$(H96 1)"]},
 "models": {"snpm": {"snp_measurement": ["$(H96 2)"], "host_data": ["$(printf '%064d' 3)"]}, "any": {}}}
EOF
"$VEIL" policy show "$tmp/boot.json" >"$tmp/boot.out" 2>&1
check "policy show prints a gateway's mrtd pin" \
	bash -c '[ $0 = 0 ] && grep -Eq "^ +mrtd +$1\$" "$2" && grep -Eq "^ +rtmr0 +not pinned" "$2"' "$?" "$(H96 1)" "$tmp/boot.out"
check "policy show prints a SEV-SNP entry's snp_measurement and host_data" \
	bash -c 'grep -Eq "^ +snp_measurement +$0\$" "$2" && grep -Eq "^ +host_data +$1\$" "$2"' \
	"$(H96 2)" "$(printf '%064d' 3)" "$tmp/boot.out"
check "... and no \"not pinned\" for the veil measurements a SEV-SNP entry cannot check" \
	bash -c 'sed -n "/- snpm/,\$p" "$0" | { ! grep -q "node_binary"; }' "$tmp/boot.out"
check "... and an entry with no pin says so once" \
	bash -c 'sed -n "/- any/,/- snpm/p" "$0" | grep -q "nothing pinned" && ! sed -n "/- any/,/- snpm/p" "$0" | grep -q "not pinned"' "$tmp/boot.out"
# each subcommand takes only its own flags (show took --force, --allow-sim
# and --timeout and ignored them)
"$VEIL" policy show "$tmp/p.json" --force --allow-sim --timeout 5 >/dev/null 2>"$tmp/err"
check "policy show --force is a usage error naming the flag (exit 2)" \
	bash -c '[ $0 = 2 ] && grep -q -- "--force does not apply to show" "$1"' "$?" "$tmp/err"
"$VEIL" policy show "$tmp/p.json" --timeout 5 >/dev/null 2>"$tmp/err"
check "policy show --timeout is a usage error (exit 2)" \
	bash -c '[ $0 = 2 ] && grep -q -- "--timeout does not apply to show" "$1"' "$?" "$tmp/err"
"$VEIL" policy init --from "$A" --allow-sim -o "$tmp/pj.json" --json >/dev/null 2>"$tmp/err"
check "policy init --json is a usage error, nothing written (exit 2)" \
	bash -c '[ $0 = 2 ] && grep -q -- "--json does not apply to init" "$1" && [ ! -e "$2" ]' "$?" "$tmp/err" "$tmp/pj.json"
"$VEIL" policy check "$tmp/p.json" --from "$A" --force >/dev/null 2>"$tmp/err"
check "policy check --force is a usage error (exit 2)" \
	bash -c '[ $0 = 2 ] && grep -q -- "--force does not apply to check" "$1"' "$?" "$tmp/err"
jq '.models.stories260K.modle = ["x"]' "$tmp/p.json" >"$tmp/typo.json"
"$VEIL" policy show "$tmp/typo.json" >"$tmp/typo.out" 2>&1
check "a policy with a typo is refused (exit 1, key named)" \
	bash -c '[ $0 = 1 ] && grep -q "unknown key models.stories260K.\"modle\"" "$1"' "$?" "$tmp/typo.out"

# ---- policy check ---------------------------------------------------------------------
"$VEIL" policy check "$tmp/p.json" --from "$A" >"$tmp/check.out" 2>&1
check "the pinned policy verifies the node (exit 0)" test $? -eq 0
jq '.models.stories260K.model_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"]' \
	"$tmp/p.json" >"$tmp/other-sha.json"
"$VEIL" policy check "$tmp/other-sha.json" --from "$A" >"$tmp/check2.out" 2>&1
check "a policy pinning another model hash refuses the node (exit 1)" \
	bash -c '[ $0 = 1 ] && grep -q "not a pinned model_sha256" "$1"' "$?" "$tmp/check2.out"
"$VEIL" policy check "$tmp/p.json" --from "$A" --model llama >"$tmp/check3.out" 2>&1
check "asking for another model name is refused (exit 1)" \
	bash -c '[ $0 = 1 ] && grep -q "serves model \"stories260K\", not \"llama\"" "$1"' "$?" "$tmp/check3.out"
jq '.allow_sim = false | .tee = ["tdx"]' "$tmp/p.json" >"$tmp/nosim.json"
"$VEIL" policy check "$tmp/nosim.json" --from "$A" >"$tmp/check4.out" 2>&1
check "a policy without allow_sim refuses the sim node (exit 1)" test $? -eq 1
"$VEIL" policy check "$tmp/nosim.json" --from "$A" --allow-sim >/dev/null 2>&1
check "... unless the caller says --allow-sim (exit 0)" test $? -eq 0

# node B: plain http (allowed on loopback), another configuration
if start_node b --ctx 64 --allow-plaintext --plain-http; then
	B="$URL"
	"$VEIL" policy check "$tmp/p.json" --from "$B" >"$tmp/check5.out" 2>&1
	check "a node started with another configuration is refused (node_config)" \
		bash -c '[ $0 = 1 ] && grep -q "node_config" "$1"' "$?" "$tmp/check5.out"
	"$VEIL" policy init --from "$B" --allow-sim -o "$tmp/pb.json" >/dev/null 2>"$tmp/initb.err"
	check "policy init over plain http works and warns that no TLS key was checked" \
		bash -c '[ $0 = 0 ] && grep -q "plain http" "$1"' "$?" "$tmp/initb.err"
	"$VEIL" policy check "$tmp/pb.json" --from "$B" >/dev/null 2>&1
	check "... and its policy verifies node B (exit 0)" test $? -eq 0
	"$VEIL" policy init --from "$B" --allow-sim --model llama -o "$tmp/pc.json" >/dev/null 2>&1
	check "policy init --model for a model the node does not serve fails (exit 1)" \
		bash -c '[ $0 = 1 ] && [ ! -e "$1" ]' "$?" "$tmp/pc.json"
else
	notok "node B starts"
fi

# ---- the TLS key that answers must be the attested one -------------------------------------
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
	NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=not-the-node -keyout "$tmp/mitm.key" -out "$tmp/mitm.crt" >/dev/null 2>&1
	mkdir -p "$tmp/nx"
	started=0
	for _ in 1 2 3; do
		NPORT="$(free_port)"
		cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $tmp/nx; proxy_temp_path $tmp/nx; fastcgi_temp_path $tmp/nx;
  uwsgi_temp_path $tmp/nx; scgi_temp_path $tmp/nx;
  server {
    listen 127.0.0.1:$NPORT ssl;
    ssl_certificate $tmp/mitm.crt;
    ssl_certificate_key $tmp/mitm.key;
    location / { proxy_pass https://127.0.0.1:$APORT; proxy_ssl_verify off; proxy_buffering off; }
  }
}
EOF
		"$NGINX" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/nginx.err" >/dev/null 2>&1 &
		pids+=("$!")
		for _ in $(seq 1 50); do
			curl -sk -o /dev/null "https://127.0.0.1:$NPORT/readyz" && { started=1; break; }
			kill -0 "$!" 2>/dev/null || break
			sleep 0.1
		done
		[ $started = 1 ] && break
	done
	if [ $started = 1 ]; then
		"$VEIL" policy init --from "https://127.0.0.1:$NPORT" --allow-sim -o "$tmp/mitm.json" \
			>"$tmp/mitm.out" 2>&1
		check "a genuine report relayed over another TLS key is refused by init (exit 1)" \
			bash -c '[ $0 = 1 ] && grep -q "not the one its report attests" "$1"' "$?" "$tmp/mitm.out"
		check "... and nothing is written" test ! -e "$tmp/mitm.json"
		"$VEIL" policy check "$tmp/p.json" --from "https://127.0.0.1:$NPORT" >/dev/null 2>&1
		check "... and by check (exit 1)" test $? -eq 1
	else
		skip "TLS key substitution" "nginx did not start: $(tail -1 "$tmp/nginx.err" 2>/dev/null)"
	fi
else
	skip "TLS key substitution" "nginx not installed"
fi

# ---- receipts log -----------------------------------------------------------------------
# A real exchange with node A, recorded the way veil-proxy --receipts does.
NONCE="$(openssl rand -hex 32)"
curl -sk "$A/v1/attestation/report?nonce=$NONCE" >"$tmp/rep.json"
RSHA="$(jq -cS . "$tmp/rep.json" | tr -d '\n' | sha256sum | cut -d' ' -f1)"
printf '{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":12}' >"$tmp/req.json"
curl -sk -D "$tmp/hdr" -o "$tmp/resp.json" -H 'Content-Type: application/json' \
	--data-binary @"$tmp/req.json" "$A/v1/chat/completions"
b64="$(grep -i '^x-veil-receipt:' "$tmp/hdr" | sed 's/^[^:]*: *//' | tr -d '\r' | tr '_-' '/+')"
while [ $(( ${#b64} % 4 )) -ne 0 ]; do b64="$b64="; done
printf '%s' "$b64" | base64 -d >"$tmp/receipt.json" 2>/dev/null
check "the node's answer carries a receipt" jqt '.payload and .signature_ed25519' "$tmp/receipt.json"
REQ="$(sha256sum "$tmp/req.json" | cut -d' ' -f1)"
RESP="$(sha256sum "$tmp/resp.json" | cut -d' ' -f1)"
now="$(date +%s)"
att_line() { # REPORT_FILE SHA NONCE
	jq -c -n --slurpfile r "$1" --arg s "$2" --arg n "$3" --argjson t "$now" \
		'{type:"attestation",version:"veil-receipts/1",time:$t,role:"node",node_id:"a",
		  model:"stories260K",nonce:$n,report:$r[0],report_sha256:$s,
		  verdict:{ok:true,tee:"sim",sim:true,status:"UpToDate",measurements:$r[0].measurements}}'
}
rcpt_line() { # RECEIPT_FILE REPORT_SHA REQ RESP
	jq -c -n --slurpfile rc "$1" --arg s "$2" --arg q "$3" --arg p "$4" --argjson t "$now" \
		'{type:"receipt",version:"veil-receipts/1",time:$t,model:"stories260K",
		  node_report_sha256:$s,request_sha256:$q,response_sha256:$p,receipt:$rc[0],ok:true,error:null}'
}
{ att_line "$tmp/rep.json" "$RSHA" "$NONCE"; rcpt_line "$tmp/receipt.json" "$RSHA" "$REQ" "$RESP"; } >"$tmp/log.jsonl"

"$VEIL" receipts verify "$tmp/log.jsonl" --allow-sim >"$tmp/rv.out" 2>&1
check "receipts verify accepts a log of a real exchange (exit 0)" \
	bash -c '[ $0 = 0 ] && tail -1 "$1" | jq -e ".ok and .receipts_ok == 1 and .attestations_verified == 1" >/dev/null' "$?" "$tmp/rv.out"
check "... one line per receipt" grep -q "^ok .*receipt chatcmpl-" "$tmp/rv.out"
if jqt '.text_signature_ed25519 and .text_signature_ecdsa' "$tmp/receipt.json"; then
	check "... the node's NEAR AI text signatures verify too" \
		grep -q "payload and text signatures" "$tmp/rv.out"
	text_sigs=1
else
	skip "NEAR AI text signatures in receipts" "this veil-node does not send them"
	text_sigs=0
fi
"$VEIL" receipts verify "$tmp/log.jsonl" --policy "$tmp/p.json" --allow-sim >/dev/null 2>&1
check "... also against the pinned policy (exit 0)" test $? -eq 0
"$VEIL" receipts verify "$tmp/log.jsonl" --policy "$tmp/other-sha.json" --allow-sim >/dev/null 2>&1
check "... and not against a policy pinning another model hash (exit 1)" test $? -eq 1
# the report is judged at the line's time, with or without a policy: a
# line dated before the sim chain existed fails both ways
{ head -1 "$tmp/log.jsonl" | jq -c '.time = 631152000'; tail -1 "$tmp/log.jsonl"; } >"$tmp/old-time.jsonl"
"$VEIL" receipts verify "$tmp/old-time.jsonl" --allow-sim >/dev/null 2>&1
check "a line dated 1990 is judged in 1990 (exit 1)" test $? -eq 1
"$VEIL" receipts verify "$tmp/old-time.jsonl" --policy "$tmp/p.json" --allow-sim >/dev/null 2>&1
check "... also with --policy (exit 1)" test $? -eq 1
"$VEIL" receipts verify "$tmp/log.jsonl" >"$tmp/rv2.out" 2>&1
check "without --allow-sim the sim attestation, and so the receipt, fail (exit 1)" \
	bash -c '[ $0 = 1 ] && grep -q "simulated TEE" "$1"' "$?" "$tmp/rv2.out"
"$VEIL" receipts verify "$tmp/nonexistent.jsonl" >/dev/null 2>&1
check "a missing log is an I/O error (exit 2)" test $? -eq 2

# tamper LABEL EXPECT LINE JQ_FILTER: edits line 1 (attestation) or 2
# (receipt) of the log, expects exit 1 and EXPECT in the output.
tamper() {
	local label="$1" expect="$2" n="$3" filter="$4" out="$tmp/t.out"
	if [ "$n" = 1 ]; then
		{ head -1 "$tmp/log.jsonl" | jq -c "$filter"; tail -1 "$tmp/log.jsonl"; } >"$tmp/t.jsonl"
	else
		{ head -1 "$tmp/log.jsonl"; tail -1 "$tmp/log.jsonl" | jq -c "$filter"; } >"$tmp/t.jsonl"
	fi
	"$VEIL" receipts verify "$tmp/t.jsonl" --allow-sim >"$out" 2>&1
	check "tampered: $label is detected" \
		bash -c '[ $0 = 1 ] && grep -q -- "$1" "$2"' "$?" "$expect" "$out"
}
tamper "recorded response hash" "differs from the response" 2 '.response_sha256 = ("00" * 32)'
tamper "recorded request hash" "differs from the request" 2 '.request_sha256 = ("11" * 32)'
tamper "receipt usage (payload)" "signature does not verify" 2 \
	'.receipt.payload |= (fromjson | .usage.completion_tokens += 1 | .usage.total_tokens += 1 | tojson)'
tamper "receipt model (payload)" "signature does not verify" 2 \
	'.receipt.payload |= (fromjson | .model = "gpt-5" | tojson)'
tamper "receipt signature" "signature does not verify" 2 \
	'.receipt.signature_ed25519 |= (.[0:10] + (if .[10:11] == "0" then "1" else "0" end) + .[11:])'
tamper "line model" "model is not the line" 2 '.model = "other"'
if [ "$text_sigs" = 1 ]; then
	tamper "receipt text signature" "text ECDSA" 2 \
		'.receipt.text_signature_ecdsa |= (.[0:12] + (if .[12:13] == "0" then "1" else "0" end) + .[13:])'
fi
tamper "reference to another report" "names no earlier attestation" 2 '.node_report_sha256 = ("22" * 32)'
tamper "report (measurement), hash left" "report_sha256 is not" 1 '.report.measurements.model = ("00" * 48)'
tamper "recorded nonce" "nonce" 1 '.nonce = ("33" * 32)'
tamper "attestation recorded as failed" "did not verify" 1 '.verdict.ok = false'
tamper "receipt recorded as failed" "recorded failure" 2 '.ok = false | .error = "recorded failure"'
# the report edited and its hash recomputed: the TEE signature catches it
jq -c '.report.measurements.model = ("00" * 48)' <(head -1 "$tmp/log.jsonl") >"$tmp/a2"
s2="$(jq -cS .report "$tmp/a2" | tr -d '\n' | sha256sum | cut -d' ' -f1)"
{ jq -c --arg s "$s2" '.report_sha256 = $s' "$tmp/a2"; tail -1 "$tmp/log.jsonl" | jq -c --arg s "$s2" '.node_report_sha256 = $s'; } >"$tmp/t2.jsonl"
"$VEIL" receipts verify "$tmp/t2.jsonl" --allow-sim >"$tmp/t2.out" 2>&1
check "tampered: report edited with its hash recomputed is detected" \
	bash -c '[ $0 = 1 ] && grep -q "measurements" "$1"' "$?" "$tmp/t2.out"
# order: a receipt before the attestation it rests on
{ tail -1 "$tmp/log.jsonl"; head -1 "$tmp/log.jsonl"; } >"$tmp/t3.jsonl"
"$VEIL" receipts verify "$tmp/t3.jsonl" --allow-sim >/dev/null 2>&1
check "a receipt before its attestation line is refused" test $? -eq 1
# a torn last line (a crash mid-append)
{ cat "$tmp/log.jsonl"; tail -1 "$tmp/log.jsonl" | head -c 200; } >"$tmp/t4.jsonl"
"$VEIL" receipts verify "$tmp/t4.jsonl" --allow-sim >"$tmp/t4.out" 2>&1
check "a torn line is reported (exit 1)" \
	bash -c '[ $0 = 1 ] && grep -q "torn" "$1"' "$?" "$tmp/t4.out"
# a receipt from node B attributed to node A's attestation
if [ -n "${B:-}" ]; then
	curl -sk -D "$tmp/hdrb" -o "$tmp/respb.json" -H 'Content-Type: application/json' \
		--data-binary @"$tmp/req.json" "$B/v1/chat/completions"
	b64="$(grep -i '^x-veil-receipt:' "$tmp/hdrb" | sed 's/^[^:]*: *//' | tr -d '\r' | tr '_-' '/+')"
	while [ $(( ${#b64} % 4 )) -ne 0 ]; do b64="$b64="; done
	if printf '%s' "$b64" | base64 -d >"$tmp/receiptb.json" 2>/dev/null && [ -s "$tmp/receiptb.json" ]; then
		{ head -1 "$tmp/log.jsonl"; rcpt_line "$tmp/receiptb.json" "$RSHA" "$REQ" "$(sha256sum "$tmp/respb.json" | cut -d' ' -f1)"; } >"$tmp/t5.jsonl"
		"$VEIL" receipts verify "$tmp/t5.jsonl" --allow-sim >"$tmp/t5.out" 2>&1
		check "a receipt signed by another node's keys is refused" \
			bash -c '[ $0 = 1 ] && grep -q "attested" "$1"' "$?" "$tmp/t5.out"
	else
		notok "node B answers with a receipt"
	fi
fi

[ "$fails" -eq 0 ]
