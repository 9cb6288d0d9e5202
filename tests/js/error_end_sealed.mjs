// A sealed stream that the node ends with an error after it generated
// tokens (tests/integration/test_node.sh: the node shut down mid-stream):
//   node error_end_sealed.mjs BASE MODEL MAX_TOKENS CODE
// Seals a streamed completion of MAX_TOKENS to the node at BASE (http, or
// https with its certificate not checked: the test's own node), prints
// "started" once the first content chunk opened, and reads the answer to
// its end.  The node must have ended it with an error and a receipt for
// what it generated: every sealed chunk opens in order, the final one is
// the error event with code CODE, an `event: veil.receipt` follows whose
// response_sha256 covers every byte before it and whose completion_tokens
// is above 0, and there is no [DONE].
// Prints "ok COMPLETION_TOKENS" or "bad WHY".
import { createHash } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { sealRequest } from "./veil_seal.mjs";

const [base, model, maxTokens, code] = process.argv.slice(2);
const lib = base.startsWith("https:") ? https : http;
const agent = base.startsWith("https:") ? new https.Agent({ rejectUnauthorized: false }) : undefined;
const enc8 = new TextEncoder();
const why = (w) => { console.log(`bad ${w}`); process.exit(0); };
const nonce = createHash("sha256").update(String(Math.random())).digest("hex");
const report = await new Promise((res, rej) => {
  lib.get(`${base}/v1/attestation/report?nonce=${nonce}`, { agent }, (r) => {
    const parts = [];
    r.on("data", (d) => parts.push(d));
    r.on("end", () => res(JSON.parse(Buffer.concat(parts).toString())));
  }).on("error", rej);
});
const pk = Buffer.from(report.keys?.x25519_hpke ?? "", "hex");
const plain = JSON.stringify({ model, prompt: "Once", max_tokens: Number(maxTokens), stream: true });
const s = await sealRequest(pk, enc8.encode(plain));
const body = await new Promise((resolve, reject) => {
  const rq = lib.request(`${base}/v1/completions`, { method: "POST", agent, headers: { "content-type": "application/veil-sealed", "content-length": s.body.length } }, (res) => {
    const parts = [];
    let said = false;
    res.on("data", (d) => {
      parts.push(d);
      if (!said && Buffer.concat(parts).includes("\n\n")) {
        said = true;
        console.log("started");
      }
    });
    res.on("end", () => resolve(Buffer.concat(parts)));
  });
  rq.on("error", reject);
  rq.end(Buffer.from(s.body));
}).catch((e) => why(`the request failed: ${e}`));
const text = body.toString("latin1");
const at = text.indexOf("event: veil.receipt\n");
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
const fin = last?.final ? last.pt.toString() : "";
if (!fin.startsWith("event: error\n") || !fin.includes(`"code":"${code}"`)) why(`the final chunk is not the ${code} error`);
const line = text.slice(at).split("\n")[1];
const p = JSON.parse(JSON.parse(line.slice(6)).payload);
if (p.response_sha256 !== createHash("sha256").update(body.subarray(0, Buffer.byteLength(text.slice(0, at), "latin1"))).digest("hex")) why("the receipt's response hash");
if (!(p.usage?.completion_tokens > 0)) why("no completion tokens in the receipt");
console.log(`ok ${p.usage.completion_tokens}`);
