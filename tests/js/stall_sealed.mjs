// A sealed stream whose reader stops (tests/integration/test_gateway_billing.sh):
//   node stall_sealed.mjs BASE MODEL
// Seals a long streamed chat (top_logprobs 20: fat events) to the node at
// BASE (TLS, its certificate not checked: the test's own node), reads the
// head, then pauses the response for 4 s (the socket is not read: TCP
// backpressure), then reads the rest.  The node must have ended the stream
// for a slow reader: every sealed chunk opens in order, the final one is
// the client_too_slow error event, an `event: veil.receipt` follows whose
// response_sha256 covers every byte before it, and there is no [DONE].
// Prints "ok COMPLETION_TOKENS" or "bad WHY".
import { createHash } from "node:crypto";
import https from "node:https";
import { sealRequest } from "./veil_seal.mjs";

const [base, model] = process.argv.slice(2);
const agent = new https.Agent({ rejectUnauthorized: false });
const enc8 = new TextEncoder();
const nonce = createHash("sha256").update(String(Math.random())).digest("hex");
const report = await new Promise((res, rej) => {
  https.get(`${base}/v1/attestation/report?nonce=${nonce}`, { agent }, (r) => {
    const parts = [];
    r.on("data", (d) => parts.push(d));
    r.on("end", () => res(JSON.parse(Buffer.concat(parts).toString())));
  }).on("error", rej);
});
const pk = Buffer.from(report.keys?.x25519_hpke ?? "", "hex");
const plain = JSON.stringify({ model, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 8000, stream: true, logprobs: true, top_logprobs: 20 });
const s = await sealRequest(pk, enc8.encode(plain));
const body = await new Promise((resolve, reject) => {
  const rq = https.request(`${base}/v1/chat/completions`, { method: "POST", agent, headers: { "content-type": "application/veil-sealed", "content-length": s.body.length } }, (res) => {
    const parts = [];
    res.on("data", (d) => parts.push(d));
    res.on("end", () => resolve(Buffer.concat(parts)));
    res.pause();
    setTimeout(() => res.resume(), 4000);
  });
  rq.on("error", reject);
  rq.end(Buffer.from(s.body));
});
const text = body.toString("latin1");
const at = text.indexOf("event: veil.receipt\n");
const why = (w) => { console.log(`bad ${w}`); process.exit(0); };
if (at < 0) why("no receipt");
if (text.includes("data: [DONE]")) why("a [DONE]");
let last = null;
for (const ev of text.slice(0, at).split("\n\n").filter((e) => e.startsWith("data: "))) {
  let o;
  try {
    o = await s.openChunk(Buffer.from(ev.slice(6), "base64"));
  } catch (e) {
    why(`a chunk does not open: ${e}`);
  }
  if (last?.final) why("a chunk after the final one");
  last = o;
}
if (!last?.final || !last.pt.toString().includes('"client_too_slow"')) why("the final chunk is not the client_too_slow error");
const line = text.slice(at).split("\n")[1];
const p = JSON.parse(JSON.parse(line.slice(6)).payload);
if (p.response_sha256 !== createHash("sha256").update(body.subarray(0, Buffer.byteLength(text.slice(0, at), "latin1"))).digest("hex")) why("the receipt's response hash");
console.log(`ok ${p.usage.completion_tokens}`);
