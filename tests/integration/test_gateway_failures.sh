#!/usr/bin/env bash
# veil-gateway failure paths, with real processes on 127.0.0.1: one
# veil-node (--plain-http, --tee sim), a relay between the gateway and the
# node (python3, stdlib: it passes everything through, or flips one hex
# digit of a receipt's payload signatures, both or only one of them, or
# re-spells a receipt with white space), and gateways on SQLite stores.
#
#  1. A receipt that fails its checks (docs/gateway.md, "Usage, receipts"):
#     the answer is delivered all the same (plain and streamed; the stream
#     ends with [DONE]), not billed (GET /v1/usage unchanged), and counted
#     (veil_gateway_receipts_failed_total); a valid receipt in another JSON
#     spelling (the full parser's path, not the canonical fast path) is
#     billed.  The default --receipt-check (ecdsa) refuses a receipt whose
#     ECDSA signature alone was altered; a gateway with --receipt-check
#     ed25519 refuses one whose Ed25519 signature alone was altered (and
#     bills one whose ECDSA signature alone was: it does not check it).
#  2. The store fails: the gateway's file-size limit (RLIMIT_FSIZE, set on
#     the running process with prlimit, SIGXFSZ ignored) is lowered to the
#     size its SQLite WAL has, so the next commit cannot write (EFBIG, a
#     disk-full for SQLite): a plain answer is withheld with 503
#     `usage_store_unavailable`, a stream ends with an error event of that
#     code and no [DONE]; once the limit is lifted, answers are billed again.
# Env: VEIL_BIN (dir with veil-node and veil-gateway), VEIL_SHARED (../shared).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

require_built "gateway failures" "$NODE_BIN" "$GW_BIN"
skip_unless_shared "gateway failures" "$MODEL"
if ! command -v python3 >/dev/null 2>&1 || ! command -v prlimit >/dev/null 2>&1; then
	notok "gateway failures: python3 and prlimit (util-linux) are needed"
	exit 1
fi
setup_tmp

BODY='{"model":"stories260K","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}'
SBODY='{"model":"stories260K","messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"stream":true}'

# post URL KEY BODY OUTPREFIX : the answer's status on stdout, head and
# body in OUTPREFIX.h / OUTPREFIX.b
post() {
	curl -s -m 20 -D "$4.h" -o "$4.b" -w '%{http_code}' -H "Authorization: Bearer $2" \
		-H 'Content-Type: application/json' -d "$3" "$1/v1/chat/completions"
}

# requests URL KEY : the key's billed requests (GET /v1/usage)
requests() {
	curl -s -m 10 -H "Authorization: Bearer $2" "$1/v1/usage" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])' 2>/dev/null
}

# counter URL NAME : a counter of GET /metrics (0 when absent)
counter() {
	local v
	v="$(metric "$1" "$2")"
	echo "${v:-0}"
}

# ---- the node and the relay --------------------------------------------------------
if ! start_server node "$NODE_BIN" --listen 127.0.0.1:0 --plain-http --tee sim \
	--model "$MODEL" --allow-plaintext --threads 1; then
	notok "veil-node starts"
	exit 1
fi
NODE_PORT=$PORT

cat >"$tmp/relay.py" <<'EOF'
# HTTP/1.1 relay gateway -> node.  The file named by argv[2] says what it
# does to receipts: "pass", "flip" (one hex digit of signature_ed25519 and
# one of signature_ecdsa changed, in the X-Veil-Receipt header or in a
# stream's receipt event), "flip-ed" / "flip-ecdsa" (only that one) or
# "respace" (the header's receipt re-written with indentation: the same
# JSON and the same signed payload string, another spelling), or "cut" (a
# POST's answer with its whole head, receipt header included, and half its
# body, then the connection closed: a node dying mid-answer).
import base64, http.client, http.server, json, sys

NODE_PORT, MODE_FILE = int(sys.argv[1]), sys.argv[2]
MODE = "pass"
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def flip1(text, field):
    k = text.find('"%s":"' % field)
    if k < 0:
        return text
    i = k + len('"%s":"' % field)
    if text[i:i + 2] == "0x":
        i += 2
    return text[:i] + ("1" if text[i] == "0" else "0") + text[i + 1:]


def flip(text):
    if MODE in ("flip", "flip-ed"):
        text = flip1(text, "signature_ed25519")
    if MODE in ("flip", "flip-ecdsa"):
        text = flip1(text, "signature_ecdsa")
    return text


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)).decode()


def b64e(t):
    return base64.urlsafe_b64encode(t.encode()).decode().rstrip("=")


class Relay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def relay(self):
        global MODE
        mode = MODE = open(MODE_FILE).read().strip()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        c = http.client.HTTPConnection("127.0.0.1", NODE_PORT, timeout=30)
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        c.close()
        out = []
        for k, v in r.getheaders():
            if k.lower() in HOP:
                continue
            if k.lower() == "x-veil-receipt" and mode.startswith("flip"):
                v = b64e(flip(b64d(v)))
            elif k.lower() == "x-veil-receipt" and mode == "respace":
                v = b64e(json.dumps(json.loads(b64d(v)), indent=1))
            out.append((k, v))
        if mode.startswith("flip") and b"veil.receipt" in data:
            data = flip(data.decode()).encode()
        self.send_response(r.status)
        for k, v in out:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        if mode == "cut" and self.command == "POST":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            sys.stderr.write("cut an answer\n")
            sys.stderr.flush()
            return
        self.end_headers()
        self.wfile.write(data)

    do_GET = relay
    do_POST = relay


s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
print("listening on http://127.0.0.1:%d" % s.server_address[1], flush=True)
s.serve_forever()
EOF
MODE="$tmp/mode"
echo pass >"$MODE"
if ! start_server relay python3 "$tmp/relay.py" "$NODE_PORT" "$MODE"; then
	notok "the relay starts"
	exit 1
fi
printf '[{"url":"http://127.0.0.1:%s","model":"stories260K"}]\n' "$PORT" >"$tmp/nodes.json"

# ---- 1. receipts that fail their checks ------------------------------------------------
DB1="sqlite:$tmp/gw1.db"
KEY1="$("$GW_BIN" keys create --db "$DB1" --name failures 2>"$tmp/keys1.err" | tail -n 1)"
if ! start_server gw1 "$GW_BIN" --listen 127.0.0.1:0 --db "$DB1" \
	--nodes "$tmp/nodes.json" --allow-sim --plain-http; then
	notok "veil-gateway starts"
	exit 1
fi
GW1="http://127.0.0.1:$PORT"
if ! wait_gateway_answers "$GW1" "$KEY1"; then
	notok "the gateway answers through the relay once its node is verified"
	tail -5 "$tmp/gw1.log" | sed 's/^/#   /'
	exit 1
fi
ok "the gateway answers through the relay once its node is verified"
sleep 0.3
r0="$(requests "$GW1" "$KEY1")"
f0="$(counter "$GW1" veil_gateway_receipts_failed_total)"
check "a receipt that verifies is billed (GET /v1/usage counts the answers)" \
	test "${r0:-0}" -ge 1

echo flip >"$MODE"
code="$(post "$GW1" "$KEY1" "$BODY" "$tmp/flip")"
check "a plain answer whose receipt signature was altered is still delivered (200)" \
	test "$code" = 200
check "... whole (a chat completion with its finish_reason)" \
	grep -q '"finish_reason"' "$tmp/flip.b"
check "... with the (altered) receipt header passed on for the client to judge" \
	grep -qi '^X-Veil-Receipt:' "$tmp/flip.h"
sleep 0.3
check "... not billed (GET /v1/usage unchanged)" test "$(requests "$GW1" "$KEY1")" = "$r0"
check "... and counted in veil_gateway_receipts_failed_total" \
	test "$(counter "$GW1" veil_gateway_receipts_failed_total)" = $((f0 + 1))
check "... and logged as refused, without content" \
	grep -q 'receipt from node .* refused' "$tmp/gw1.log"
grep -m1 'receipt from node .* refused' "$tmp/gw1.log" | sed 's/^/#   /'

code="$(post "$GW1" "$KEY1" "$SBODY" "$tmp/sflip")"
check "a stream whose receipt event's signature was altered is delivered (200)" \
	test "$code" = 200
check "... to its end: [DONE], no error event" \
	bash -c 'grep -q "^data: \[DONE\]" "$0" && ! grep -q "^event: error" "$0"' "$tmp/sflip.b"
sleep 0.3
check "... not billed" test "$(requests "$GW1" "$KEY1")" = "$r0"
check "... and counted" \
	test "$(counter "$GW1" veil_gateway_receipts_failed_total)" = $((f0 + 2))

echo respace >"$MODE"
code="$(post "$GW1" "$KEY1" "$BODY" "$tmp/respace")"
sleep 0.3
check "a valid receipt spelled with white space (the full parser's path) is billed" \
	bash -c '[ "$0" = 200 ] && [ "$1" = $(($2 + 1)) ]' "$code" \
	"$(requests "$GW1" "$KEY1")" "$r0"
check "... and not counted as failed" \
	test "$(counter "$GW1" veil_gateway_receipts_failed_total)" = $((f0 + 2))

# the signature checked by default is the ECDSA one
r1="$(requests "$GW1" "$KEY1")"
echo flip-ecdsa >"$MODE"
code="$(post "$GW1" "$KEY1" "$BODY" "$tmp/eflip")"
sleep 0.3
check "default --receipt-check (ecdsa): a receipt whose ECDSA signature alone was altered is delivered (200), not billed, counted" \
	bash -c '[ "$0" = 200 ] && [ "$1" = "$2" ] && [ "$3" = $(($4 + 3)) ]' "$code" \
	"$(requests "$GW1" "$KEY1")" "$r1" "$(counter "$GW1" veil_gateway_receipts_failed_total)" "$f0"
echo pass >"$MODE"

# --receipt-check ed25519: the Ed25519 signature instead
DB3="sqlite:$tmp/gw3.db"
KEY3="$("$GW_BIN" keys create --db "$DB3" --name ed 2>"$tmp/keys3.err" | tail -n 1)"
if start_server gw3 "$GW_BIN" --listen 127.0.0.1:0 --db "$DB3" --receipt-check ed25519 \
	--nodes "$tmp/nodes.json" --allow-sim --plain-http && GW3="http://127.0.0.1:$PORT" &&
	wait_gateway_answers "$GW3" "$KEY3"; then
	sleep 0.3
	r3="$(requests "$GW3" "$KEY3")"
	echo flip-ed >"$MODE"
	code="$(post "$GW3" "$KEY3" "$BODY" "$tmp/edflip")"
	sleep 0.3
	check "--receipt-check ed25519: a receipt whose Ed25519 signature alone was altered is delivered (200), not billed, counted" \
		bash -c '[ "$0" = 200 ] && [ "$1" = "$2" ] && [ "$3" = 1 ]' "$code" \
		"$(requests "$GW3" "$KEY3")" "$r3" "$(counter "$GW3" veil_gateway_receipts_failed_total)"
	echo flip-ecdsa >"$MODE"
	code="$(post "$GW3" "$KEY3" "$BODY" "$tmp/edflip2")"
	sleep 0.3
	check "... and one whose ECDSA signature alone was altered is billed (that signature is not its check)" \
		bash -c '[ "$0" = 200 ] && [ "$1" = $(($2 + 1)) ]' "$code" "$(requests "$GW3" "$KEY3")" "$r3"
	echo pass >"$MODE"
else
	notok "a gateway with --receipt-check ed25519 starts and answers"
fi

# ---- 2. the store fails ------------------------------------------------------------------
# SIGXFSZ ignored (inherited through exec), so that a write over the limit
# fails with EFBIG instead of killing the process.
DB2="sqlite:$tmp/gw2.db"
KEY2="$("$GW_BIN" keys create --db "$DB2" --name store 2>"$tmp/keys2.err" | tail -n 1)"
if ! start_server gw2 bash -c 'trap "" XFSZ; exec "$@"' gw "$GW_BIN" \
	--listen 127.0.0.1:0 --db "$DB2" --nodes "$tmp/nodes.json" --allow-sim --plain-http; then
	notok "a second veil-gateway starts"
	exit 1
fi
GW2_PID=$PID
GW2="http://127.0.0.1:$PORT"
if ! wait_gateway_answers "$GW2" "$KEY2"; then
	notok "the second gateway answers"
	exit 1
fi
sleep 0.5
r2="$(requests "$GW2" "$KEY2")"
u2="$(counter "$GW2" veil_gateway_usage_failed_total)"
wal="$(stat -c %s "$tmp/gw2.db-wal" 2>/dev/null)"
if [ -z "$wal" ] || [ "$wal" -lt 4096 ]; then
	notok "the store keeps a WAL file (sqlite, journal_mode=WAL)"
	exit 1
fi
# the soft limit only (the hard one stays: it can be raised again)
prlimit --pid "$GW2_PID" --fsize="$wal": || notok "prlimit --fsize on the gateway"

code="$(post "$GW2" "$KEY2" "$BODY" "$tmp/st")"
check "store failing: a plain answer is withheld with 503" test "$code" = 503
check "... code usage_store_unavailable, in OpenAI's error shape" \
	python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; sys.exit(0 if e["code"] == "usage_store_unavailable" and e["message"] else 1)' "$tmp/st.b"
check "... and none of the answer's content is in it" \
	bash -c '! grep -q "finish_reason\|choices" "$0"' "$tmp/st.b"

code="$(post "$GW2" "$KEY2" "$SBODY" "$tmp/sst")"
check "store failing: a stream ends with an error event of code usage_store_unavailable" \
	bash -c '[ "$0" = 200 ] && grep -q "^event: error" "$1" && grep -q usage_store_unavailable "$1"' \
	"$code" "$tmp/sst.b"
check "... and no [DONE]" bash -c '! grep -q "\[DONE\]" "$0"' "$tmp/sst.b"
check "... both counted in veil_gateway_usage_failed_total" \
	test "$(counter "$GW2" veil_gateway_usage_failed_total)" = $((u2 + 2))
check "... and logged" grep -q 'usage record not stored' "$tmp/gw2.log"

prlimit --pid "$GW2_PID" --fsize=unlimited: 2>/dev/null ||
	prlimit --pid "$GW2_PID" --fsize="$(prlimit --pid "$GW2_PID" --fsize -o HARD -n)":
code="$(post "$GW2" "$KEY2" "$BODY" "$tmp/back")"
sleep 0.3
check "the store back: answers are delivered and billed again (the withheld ones are not)" \
	bash -c '[ "$0" = 200 ] && [ "$1" = $(($2 + 1)) ]' "$code" \
	"$(requests "$GW2" "$KEY2")" "$r2"

# ---- 3. a plain answer cut mid-body, retried on another node -------------------------
# The node that broke off had sent its head, receipt header included; the
# answer the client gets is the second node's, with that node's receipt
# only (the first one's hashes a body nobody received).
echo cut >"$MODE"
printf '[{"url":"http://127.0.0.1:%s","model":"stories260K","id":"cutter"},{"url":"http://127.0.0.1:%s","model":"stories260K","id":"direct"}]\n' \
	"$(sed 's/.*127.0.0.1:\([0-9]*\).*/\1/' "$tmp/nodes.json")" "$NODE_PORT" >"$tmp/nodes4.json"
DB4="sqlite:$tmp/gw4.db"
KEY4="$("$GW_BIN" keys create --db "$DB4" --name cut 2>"$tmp/keys4.err" | tail -n 1)"
if start_server gw4 "$GW_BIN" --listen 127.0.0.1:0 --db "$DB4" \
	--nodes "$tmp/nodes4.json" --allow-sim --plain-http && GW4="http://127.0.0.1:$PORT" &&
	wait_gateway_answers "$GW4" "$KEY4"; then
	# both nodes verified (the first answer may have come before the second)
	for _ in $(seq 1 100); do
		grep -q 'node cutter (.*attestation verified' "$tmp/gw4.log" &&
			grep -q 'node direct (.*attestation verified' "$tmp/gw4.log" && break
		sleep 0.1
	done
	cuts=0 bad=0 n=0
	for i in $(seq 1 8); do
		before="$(grep -c 'cut an answer' "$tmp/relay.log")"
		code="$(post "$GW4" "$KEY4" "$BODY" "$tmp/cut$i")"
		n=$((n + 1))
		# exactly one receipt header, whose response_sha256 is the body's
		python3 - "$tmp/cut$i" "$code" <<'PY' || bad=$((bad + 1))
import base64, hashlib, json, sys
p, code = sys.argv[1], sys.argv[2]
head = open(p + ".h", encoding="latin-1").read().splitlines()
body = open(p + ".b", "rb").read()
rc = [l.split(":", 1)[1].strip() for l in head if l.lower().startswith("x-veil-receipt:")]
ids = [l.split(":", 1)[1].strip() for l in head if l.lower().startswith("x-veil-receipt-id:")]
assert code == "200", code
assert len(rc) == 1 and len(ids) == 1, (len(rc), len(ids))
r = json.loads(base64.urlsafe_b64decode(rc[0] + "=" * (-len(rc[0]) % 4)))
pl = json.loads(r["payload"])
assert pl["response_sha256"] == hashlib.sha256(body).hexdigest(), "hash of another body"
assert pl["id"] == ids[0] == json.loads(body)["id"], "id of another answer"
PY
		[ "$(grep -c 'cut an answer' "$tmp/relay.log")" -gt "$before" ] && cuts=$((cuts + 1))
		[ "$cuts" -ge 1 ] && [ "$i" -ge 2 ] && break
	done
	echo "# $n plain requests through a gateway with a node that breaks off mid-body: $cuts cut and retried"
	check "a plain answer cut mid-body is retried: the client gets one receipt header, the answering node's (hash of the body it got)" \
		bash -c '[ "$0" -ge 1 ] && [ "$1" = 0 ]' "$cuts" "$bad"
else
	notok "a gateway with a node that breaks off mid-body answers"
fi

[ "$fails" -eq 0 ]
