// veil-gateway as third-party clients see it, driven by
// tests/integration/test_gateway.sh.  Prints "ok - name" / "not ok - name"
// lines (exit 1 when one failed).
//
//   node gateway_client.mjs openai BASE KEY MODEL       official openai client
//   node gateway_client.mjs usage BASE KEY MODEL        receipts vs /v1/usage
//   node gateway_client.mjs sealed BASE KEY MODEL       veil-seal/1 through the gateway
//   node gateway_client.mjs kill BASE KEY MODEL PIDS    a node SIGKILLed mid-stream
//   node gateway_client.mjs concurrent BASE KEY MODEL N N streams at once
//   node gateway_client.mjs canary BASE KEY MODEL TEXT  requests carrying TEXT
//
// BASE is http://127.0.0.1:PORT (no /v1); KEY an API key from
// `veil-gateway keys create`; PIDS "nodeid=pid,nodeid=pid".
import { createHash, createPublicKey, verify } from "node:crypto";
import { verifyMessage } from "ethers";
import OpenAI from "openai";
import { sealRequest, suite } from "./veil_seal.mjs";

let failed = 0;
const ok = (name, cond, why = "") => {
  if (cond) console.log(`ok - ${name}`);
  else {
    failed++;
    console.log(`not ok - ${name}${why ? ` (${why})` : ""}`);
  }
};
const sha256 = (b) => createHash("sha256").update(b).digest("hex");
const enc8 = new TextEncoder();

function client(base, key) {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0 });
}

// The nodes' attested keys, from the gateway's own attestation endpoint.
async function nodeKeys(base) {
  const nonce = createHash("sha256").update(String(Math.random())).digest("hex");
  const rep = await (await fetch(`${base}/v1/attestation/report?nonce=${nonce}`)).json();
  const m = new Map();
  for (const n of rep.nodes ?? []) m.set(n.id, n.report.keys);
  return { rep, keys: m, nonce };
}

function verifyReceipt(rc, keys) {
  const p = JSON.parse(rc.payload);
  const addrs = [...keys.values()].map((k) => k.eth_address.toLowerCase());
  const eds = [...keys.values()].map((k) => k.ed25519);
  const ecOk = addrs.includes(verifyMessage(rc.payload, rc.signature_ecdsa).toLowerCase());
  let edOk = false;
  if (eds.includes(p.ed25519_public_key)) {
    const pub = createPublicKey({
      key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(p.ed25519_public_key, "hex")]),
      format: "der",
      type: "spki",
    });
    edOk = verify(null, Buffer.from(rc.payload), pub, Buffer.from(rc.signature_ed25519, "hex"));
  }
  return { p, ok: ecOk && edOk };
}

async function openaiChecks(base, key, model) {
  const c = client(base, key);
  const models = await c.models.list();
  ok("openai: models.list names the model of the verified nodes", models.data.some((m) => m.id === model));
  const chat = await c.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Once upon a time" }],
    max_tokens: 16,
    temperature: 0,
  });
  ok(
    "openai: chat completion through the gateway",
    chat.object === "chat.completion" && chat.choices[0].message.content.length > 0 && chat.usage.completion_tokens > 0,
    JSON.stringify(chat.usage),
  );
  const stream = await c.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Tell me a story" }],
    max_tokens: 24,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let finish = null;
  let receipt = null;
  for await (const ch of stream) {
    if (ch.object === "veil.receipt") receipt = ch.veil_receipt;
    for (const x of ch.choices) {
      text += x.delta?.content ?? "";
      if (x.finish_reason) finish = x.finish_reason;
    }
  }
  ok("openai: streamed chat through the gateway ends with finish_reason and a receipt chunk", text.length > 0 && finish && !!receipt?.payload);
  const cmpl = await c.completions.create({ model, prompt: "Once upon a time", max_tokens: 8 });
  ok("openai: completion through the gateway", cmpl.object === "text_completion" && cmpl.choices[0].text.length > 0);

  try {
    await client(base, "sk-veil-" + "A".repeat(43)).chat.completions.create({ model, messages: [{ role: "user", content: "x" }] });
    ok("openai: an unknown key is a 401 AuthenticationError", false, "no error");
  } catch (e) {
    ok("openai: an unknown key is a 401 AuthenticationError", e.status === 401 && e instanceof OpenAI.AuthenticationError && e.error?.code === "invalid_api_key", String(e));
  }
  try {
    await c.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] });
    ok("openai: an unknown model is a 404", false, "no error");
  } catch (e) {
    ok("openai: an unknown model is a 404", e.status === 404 && e.error?.code === "model_not_found", String(e));
  }
  try {
    await c.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], temperature: 9 });
    ok("openai: the node's 400 passes through", false, "no error");
  } catch (e) {
    ok("openai: the node's 400 passes through", e.status === 400 && e.error?.type === "invalid_request_error", String(e));
  }
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "x" }] }),
  });
  const j = await r.json().catch(() => ({}));
  ok("no key: 401 in OpenAI's error shape", r.status === 401 && typeof j.error?.message === "string" && j.error?.type && "code" in j.error, JSON.stringify(j));
}

// Requests of every kind; each receipt verified against the nodes' attested
// keys and its hashes against the bytes sent and received; the sum of the
// receipts' usage must be what GET /v1/usage reports for this (fresh) key.
async function usageChecks(base, key, model) {
  const { keys } = await nodeKeys(base);
  ok("usage: the gateway's report lists the nodes' keys", keys.size >= 1);
  const auth = { authorization: `Bearer ${key}`, "content-type": "application/json" };
  let prompt = 0;
  let completion = 0;
  let n = 0;
  let allOk = true;
  let why = "";
  const t0 = Math.floor(Date.now() / 1000);
  for (let i = 0; i < 6; i++) {
    const stream = i % 2 === 1;
    const body = JSON.stringify(
      i % 3 === 2
        ? { model, prompt: `Story ${i}`, max_tokens: 5 + i, stream }
        : { model, messages: [{ role: "user", content: `Story number ${i}` }], max_tokens: 5 + i, stream },
    );
    const path = i % 3 === 2 ? "/v1/completions" : "/v1/chat/completions";
    const r = await fetch(`${base}${path}`, { method: "POST", headers: auth, body });
    const resp = Buffer.from(await r.arrayBuffer());
    let rc = null;
    let respBytes = resp;
    if (!stream) {
      const h = r.headers.get("x-veil-receipt");
      rc = h ? JSON.parse(Buffer.from(h, "base64url").toString()) : null;
    } else {
      const s = resp.toString();
      const at = s.lastIndexOf('data: {"id":');
      const ev = s.slice(at).split("\n")[0].slice(6);
      const o = JSON.parse(ev);
      rc = o.object === "veil.receipt" ? o.veil_receipt : null;
      respBytes = resp.subarray(0, Buffer.byteLength(s.slice(0, at)));
      if (!s.endsWith("data: [DONE]\n\n")) {
        allOk = false;
        why = "stream without [DONE]";
      }
    }
    if (r.status !== 200 || !rc) {
      allOk = false;
      why = `status ${r.status}, receipt ${!!rc}`;
      continue;
    }
    const v = verifyReceipt(rc, keys);
    if (!v.ok || v.p.request_sha256 !== sha256(Buffer.from(body)) || v.p.response_sha256 !== sha256(respBytes)) {
      allOk = false;
      why = `receipt ${i} does not verify`;
    }
    prompt += v.p.usage.prompt_tokens;
    completion += v.p.usage.completion_tokens;
    n++;
  }
  ok("usage: every answer's receipt verifies against the attested node keys and the bytes relayed", allOk && n === 6, why);
  const u = await (await fetch(`${base}/v1/usage`, { headers: auth })).json();
  ok(
    "usage: GET /v1/usage equals the sum of the receipts",
    u.requests === n && u.prompt_tokens === prompt && u.completion_tokens === completion && u.total_tokens === prompt + completion,
    JSON.stringify({ got: u, want: { n, prompt, completion } }),
  );
  const w = await (await fetch(`${base}/v1/usage?from=${t0 + 3600}`, { headers: auth })).json();
  ok("usage: from= after the requests counts none", w.requests === 0, JSON.stringify(w));
  const f = await (await fetch(`${base}/v1/usage?from=${t0 - 5}&to=${t0 + 3600}`, { headers: auth })).json();
  ok("usage: a from/to window around the requests counts them all", f.requests === n, JSON.stringify(f));
  const bad = await fetch(`${base}/v1/usage?from=yesterday`, { headers: auth });
  ok("usage: a bad from= is a 400", bad.status === 400);
  const nokey = await fetch(`${base}/v1/usage`);
  ok("usage: no key is a 401", nokey.status === 401);

  // /v1/signature/{id}, answered from the stored receipt
  const body = JSON.stringify({ model, messages: [{ role: "user", content: "Sign this" }], max_tokens: 6 });
  const r = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: auth, body });
  const resp = Buffer.from(await r.arrayBuffer());
  const j = JSON.parse(resp);
  for (const algo of ["ecdsa", "ed25519"]) {
    const sr = await fetch(`${base}/v1/signature/${j.id}?signing_algo=${algo}`, { headers: auth });
    const s = await sr.json();
    if (sr.status === 404 && s.error?.code === "signature_unavailable") {
      ok(`signature/${algo}: the node's receipts lack text signatures (older node) # SKIP`, true);
      continue;
    }
    const text = `${model}:${sha256(Buffer.from(body))}:${sha256(resp)}`;
    let valid;
    if (algo === "ecdsa") valid = verifyMessage(s.text, s.signature) === s.signing_address;
    else {
      const pub = createPublicKey({
        key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(s.signing_address, "hex")]),
        format: "der",
        type: "spki",
      });
      valid = verify(null, Buffer.from(s.text), pub, Buffer.from(s.signature, "hex"));
    }
    ok(`signature/${algo}: served from the stored receipt, text model:sha256(req):sha256(resp), valid`, sr.status === 200 && s.text === text && valid, JSON.stringify(s));
  }
  const nf = await fetch(`${base}/v1/signature/chatcmpl-unknown`, { headers: auth });
  ok("signature: an unknown id is a 404", nf.status === 404);
}

async function sealedChecks(base, key, model) {
  const { rep, keys } = await nodeKeys(base);
  const auth = { authorization: `Bearer ${key}` };
  ok("sealed: the gateway's report holds its own report and its nodes'", rep.version === "veil-gateway-report/1" && rep.gateway?.version === "veil-report/1" && rep.nodes?.length >= 2);
  const target = rep.nodes[rep.nodes.length - 1];
  const pk = Buffer.from(target.report.keys.x25519_hpke, "hex");
  const plain = JSON.stringify({ model, messages: [{ role: "user", content: "A sealed hello" }], max_tokens: 10 });
  let byNode = true;
  for (let i = 0; i < 3; i++) {
    const s = await sealRequest(pk, enc8.encode(plain));
    const r = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/veil-sealed", "x-veil-model": model },
      body: s.body,
    });
    const resp = Buffer.from(await r.arrayBuffer());
    let j = null;
    try {
      const { pt, final } = await s.openChunk(resp);
      j = final ? JSON.parse(pt) : null;
    } catch (e) {
      j = null;
    }
    if (r.headers.get("x-veil-node") !== target.id) byNode = false;
    if (i === 0) {
      ok("sealed: a sealed answer opens to a chat completion (body relayed byte for byte)", r.status === 200 && j?.object === "chat.completion", `status ${r.status}`);
      const hdr = r.headers.get("x-veil-receipt");
      const v = hdr ? verifyReceipt(JSON.parse(Buffer.from(hdr, "base64url").toString()), keys) : { ok: false };
      ok("sealed: its receipt covers exactly the sealed bytes sent and received", v.ok && v.p.request_sha256 === sha256(Buffer.from(s.body)) && v.p.response_sha256 === sha256(resp));
    }
  }
  ok("sealed: every sealed request went to the node whose HPKE key it names", byNode);

  const ss = await sealRequest(pk, enc8.encode(JSON.stringify({ model, messages: [{ role: "user", content: "A sealed stream" }], max_tokens: 10, stream: true })));
  const sr = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { ...auth, "content-type": "application/veil-sealed", "x-veil-model": model }, body: ss.body });
  const all = Buffer.from(await sr.arrayBuffer()).toString();
  let opened = 0;
  let sawFinal = false;
  let bad = null;
  for (const ev of all.split("\n\n").filter((e) => e.startsWith("data: ") && e !== "data: [DONE]")) {
    try {
      const { pt, final } = await ss.openChunk(Buffer.from(ev.slice(6), "base64"));
      opened++;
      if (final) sawFinal = pt.toString() === "data: [DONE]\n\n";
    } catch (e) {
      bad = String(e);
    }
  }
  ok("sealed: a sealed stream opens chunk by chunk through the gateway", sr.status === 200 && opened >= 3 && sawFinal && !bad && all.includes("event: veil.receipt\n") && all.endsWith("data: [DONE]\n\n"), bad ?? `opened ${opened}`);

  const other = await suite.kem.generateKeyPair();
  const otherPk = new Uint8Array(await suite.kem.serializePublicKey(other.publicKey));
  const wrong = await sealRequest(otherPk, enc8.encode(plain));
  const wr = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { ...auth, "content-type": "application/veil-sealed", "x-veil-model": model }, body: wrong.body });
  const wj = await wr.json().catch(() => ({}));
  ok("sealed: a body sealed to no known node is a 503 node_unavailable", wr.status === 503 && wj.error?.code === "node_unavailable", `${wr.status} ${JSON.stringify(wj)}`);
}

// A node SIGKILLed mid-stream: the stream ends with an explicit error event
// (never [DONE]) and the next request succeeds on the other node.
async function killChecks(base, key, model, pids) {
  const pid = Object.fromEntries(pids.split(",").map((x) => x.split("=")));
  const auth = { authorization: `Bearer ${key}`, "content-type": "application/json" };
  const body = JSON.stringify({ model, prompt: "Once upon a time", max_tokens: 4000, temperature: 0, stream: true });
  const r = await fetch(`${base}/v1/completions`, { method: "POST", headers: auth, body });
  const victim = r.headers.get("x-veil-node");
  ok("kill: the stream names the node serving it", r.status === 200 && victim in pid, `status ${r.status}, node ${victim}`);
  const reader = r.body.getReader();
  let got = "";
  let killed = false;
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    got += dec.decode(value, { stream: true });
    if (!killed && got.split("\n\n").length > 3) {
      process.kill(Number(pid[victim]), "SIGKILL");
      killed = true;
    }
  }
  const chunks = got.split("\n\n").filter((e) => e.startsWith("data: {")).length;
  ok(
    "kill: the cut stream ends with an SSE error event, never [DONE]",
    killed && got.includes("event: error\ndata: ") && !got.includes("data: [DONE]") && got.endsWith("\n\n"),
    `chunks ${chunks}, tail ${JSON.stringify(got.slice(-160))}`,
  );
  const t0 = Date.now();
  const again = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: auth,
    body: JSON.stringify({ model, messages: [{ role: "user", content: "After the crash" }], max_tokens: 6 }),
  });
  const aj = await again.json().catch(() => ({}));
  const other = again.headers.get("x-veil-node");
  ok("kill: the next request succeeds on the other node", again.status === 200 && aj.object === "chat.completion" && other && other !== victim, `${again.status} on ${other} in ${Date.now() - t0} ms`);
  console.log(`victim ${victim}`);
}

async function concurrentChecks(base, key, model, n) {
  const c = client(base, key);
  const t0 = Date.now();
  const one = async (i) => {
    const stream = await c.chat.completions.create({ model, messages: [{ role: "user", content: `Story ${i}` }], max_tokens: 24, stream: true });
    let finish = null;
    for await (const ch of stream) for (const x of ch.choices) if (x.finish_reason) finish = x.finish_reason;
    return finish;
  };
  const res = await Promise.allSettled(Array.from({ length: n }, (_, i) => one(i)));
  const done = res.filter((r) => r.status === "fulfilled" && r.value).length;
  ok(`concurrent: ${n} streams through the gateway all complete`, done === n, `${done}/${n} in ${Date.now() - t0} ms; ${res.find((r) => r.status === "rejected")?.reason ?? ""}`);
}

async function canary(base, key, model, text) {
  const c = client(base, key);
  const a = await c.chat.completions.create({ model, messages: [{ role: "user", content: text }], max_tokens: 8 });
  const s = await c.completions.create({ model, prompt: text, max_tokens: 8, stream: true });
  for await (const _ of s);
  ok("canary: requests carrying the canary were answered", a.choices.length === 1);
}

const [cmd, base, key, model, arg] = process.argv.slice(2);
const cmds = {
  openai: () => openaiChecks(base, key, model),
  usage: () => usageChecks(base, key, model),
  sealed: () => sealedChecks(base, key, model),
  kill: () => killChecks(base, key, model, arg),
  concurrent: () => concurrentChecks(base, key, model, Number(arg ?? 20)),
  canary: () => canary(base, key, model, arg),
};
if (!(cmd in cmds)) {
  console.error("usage: node gateway_client.mjs openai|usage|sealed|kill|concurrent|canary BASE KEY MODEL [ARG]");
  process.exit(2);
}
try {
  await cmds[cmd]();
} catch (e) {
  ok(`${cmd}: ran without an exception`, false, String(e?.stack ?? e));
}
process.exit(failed ? 1 : 0);
