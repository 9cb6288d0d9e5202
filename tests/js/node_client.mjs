// veil-node as third-party clients see it, driven by
// tests/integration/test_node.sh.  Prints "ok - name" / "not ok - name"
// lines (exit 1 when one failed).
//
//   node node_client.mjs openai BASE MODEL       official openai client
//   node node_client.mjs receipts BASE MODEL     receipts, ethers + node:crypto
//   node node_client.mjs sealed BASE MODEL       veil-seal/1 with hpke-js
//   node node_client.mjs concurrent BASE MODEL N N streaming clients at once
//   node node_client.mjs canary BASE MODEL TEXT  requests carrying TEXT
//   node node_client.mjs bigevents BASE MODEL N  N plaintext + N sealed
//                        streams with top_logprobs 20 at once (events split
//                        within the 64 KiB sealed chunk, none lost)
//   node node_client.mjs sealed-errors BASE MODEL  sealed pre-answer errors
//   node node_client.mjs upstream-big BASE MODEL N  a node in front of
//                        big_upstream.mjs (one N-byte event per answer)
//
// BASE is http://127.0.0.1:PORT (no /v1).  Receipt checks print one line
// "ed25519 PUBHEX SIGHEX B64MESSAGE" per receipt so the shell can check the
// Ed25519 signatures with the veil CLI as well.
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

function client(base) {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
}

async function openaiChecks(base, model) {
  const c = client(base);
  const models = await c.models.list();
  ok("openai: models.list names the model", models.data.some((m) => m.id === model));

  const chat = await c.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Once upon a time" }],
    max_tokens: 16,
    temperature: 0,
  });
  ok(
    "openai: chat completion has content, finish_reason and usage",
    chat.object === "chat.completion" &&
      chat.id.startsWith("chatcmpl-") &&
      typeof chat.choices[0].message.content === "string" &&
      chat.choices[0].message.content.length > 0 &&
      ["stop", "length"].includes(chat.choices[0].finish_reason) &&
      chat.usage.completion_tokens > 0 &&
      chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens,
  );
  const again = await c.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Once upon a time" }],
    max_tokens: 16,
    temperature: 0,
  });
  ok(
    "openai: temperature 0 is deterministic",
    again.choices[0].message.content === chat.choices[0].message.content,
  );

  const stream = await c.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Tell me a story" }],
    max_tokens: 24,
    stream: true,
    stream_options: { include_usage: true },
    seed: 7,
  });
  let text = "";
  let finish = null;
  let usage = null;
  let role = null;
  let chunks = 0;
  let receipt = null;
  for await (const ch of stream) {
    chunks++;
    if (ch.object === "veil.receipt") receipt = ch.veil_receipt;
    if (ch.usage) usage = ch.usage;
    for (const choice of ch.choices) {
      if (choice.delta.role) role = choice.delta.role;
      text += choice.delta.content ?? "";
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  ok(
    "openai: streamed chat ends with finish_reason, usage and a receipt chunk",
    chunks >= 3 && role === "assistant" && text.length > 0 && finish !== null && usage?.completion_tokens > 0 && !!receipt?.payload,
    JSON.stringify({ chunks, role, finish, usage }),
  );

  const cmpl = await c.completions.create({ model, prompt: "Once upon a time", max_tokens: 8, logprobs: 2 });
  ok(
    "openai: completion with logprobs",
    cmpl.object === "text_completion" &&
      cmpl.choices[0].text.length > 0 &&
      cmpl.choices[0].logprobs.tokens.length === cmpl.usage.completion_tokens &&
      Object.keys(cmpl.choices[0].logprobs.top_logprobs[0]).length >= 1,
  );

  const lp = await c.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 4,
    logprobs: true,
    top_logprobs: 3,
  });
  const content = lp.choices[0].logprobs?.content ?? [];
  ok(
    "openai: chat logprobs with top_logprobs",
    content.length > 0 && content[0].top_logprobs.length === 3 && content[0].logprob <= 0,
  );

  const stopped = await c.completions.create({ model, prompt: "Once upon a time", max_tokens: 40, stop: ["."], temperature: 0 });
  ok(
    "openai: stop string ends the completion before it",
    !stopped.choices[0].text.includes(".") && stopped.choices[0].finish_reason === "stop",
    JSON.stringify(stopped.choices[0]),
  );

  try {
    await c.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] });
    ok("openai: unknown model is a 404", false, "no error");
  } catch (e) {
    ok("openai: unknown model is a 404", e.status === 404 && e.error?.code === "model_not_found", String(e));
  }
  try {
    await c.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], temperature: 9 });
    ok("openai: temperature out of range is a 400", false, "no error");
  } catch (e) {
    ok("openai: temperature out of range is a 400", e.status === 400 && e.error?.type === "invalid_request_error", String(e));
  }
}

function checkReceipt(name, rc, model, reqBytes, respBytes, usage) {
  const p = JSON.parse(rc.payload);
  ok(`${name}: ECDSA receipt recovers the node's address (ethers)`, verifyMessage(rc.payload, rc.signature_ecdsa) === p.signing_address);
  const pub = createPublicKey({
    key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(p.ed25519_public_key, "hex")]),
    format: "der",
    type: "spki",
  });
  ok(`${name}: Ed25519 receipt verifies (node:crypto)`, verify(null, Buffer.from(rc.payload), pub, Buffer.from(rc.signature_ed25519, "hex")));
  ok(`${name}: receipt request hash matches the bytes sent`, p.request_sha256 === sha256(reqBytes));
  ok(`${name}: receipt response hash matches the bytes received`, p.response_sha256 === sha256(respBytes));
  ok(
    `${name}: receipt names model and usage`,
    p.model === model && p.model_sha256.length === 64 && p.version === "veil-receipt/1" &&
      (!usage || (p.usage.prompt_tokens === usage.prompt_tokens && p.usage.completion_tokens === usage.completion_tokens)),
  );
  console.log(`ed25519 ${p.ed25519_public_key} ${rc.signature_ed25519} ${Buffer.from(rc.payload).toString("base64")}`);
  // NEAR AI's text, signed too: a gateway answers /v1/signature/{id} from the receipt alone.
  const text = `${p.model}:${p.request_sha256}:${p.response_sha256}`;
  ok(
    `${name}: text signatures are there (128 hex; 0x + 130 hex)`,
    /^[0-9a-f]{128}$/.test(rc.text_signature_ed25519 ?? "") && /^0x[0-9a-f]{130}$/.test(rc.text_signature_ecdsa ?? ""),
    JSON.stringify(Object.keys(rc)),
  );
  ok(
    `${name}: ECDSA text signature of model:sha256(req):sha256(resp) recovers the node's address (ethers)`,
    !!rc.text_signature_ecdsa && verifyMessage(text, rc.text_signature_ecdsa) === p.signing_address,
  );
  ok(
    `${name}: the text signature is not the payload's`,
    rc.text_signature_ecdsa !== rc.signature_ecdsa && rc.text_signature_ed25519 !== rc.signature_ed25519,
  );
  // checked with the OpenSSL CLI by test_node.sh
  console.log(`text-ed25519 ${p.ed25519_public_key} ${rc.text_signature_ed25519} ${Buffer.from(text).toString("base64")}`);
  return p;
}

async function receiptChecks(base, model) {
  const body = JSON.stringify({ model, messages: [{ role: "user", content: "Receipt please" }], max_tokens: 12 });
  const r = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body });
  const resp = Buffer.from(await r.arrayBuffer());
  const hdr = r.headers.get("x-veil-receipt");
  ok("receipt: non-streamed answer carries X-Veil-Receipt", r.status === 200 && !!hdr);
  const rc = JSON.parse(Buffer.from(hdr, "base64url").toString());
  const j = JSON.parse(resp);
  const p = checkReceipt("receipt", rc, model, Buffer.from(body), resp, j.usage);
  ok("receipt: id is the completion id", p.id === j.id);

  for (const algo of ["ecdsa", "ed25519"]) {
    const s = await (await fetch(`${base}/v1/signature/${j.id}?signing_algo=${algo}`)).json();
    const text = `${model}:${sha256(Buffer.from(body))}:${sha256(resp)}`;
    let valid = false;
    if (algo === "ecdsa") valid = verifyMessage(s.text, s.signature) === s.signing_address;
    else {
      const pub = createPublicKey({
        key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(s.signing_address, "hex")]),
        format: "der",
        type: "spki",
      });
      valid = verify(null, Buffer.from(s.text), pub, Buffer.from(s.signature, "hex"));
      console.log(`ed25519 ${s.signing_address} ${s.signature} ${Buffer.from(s.text).toString("base64")}`);
    }
    ok(`signature/${algo}: NEAR AI shape, text model:sha256(req):sha256(resp), valid`, s.text === text && s.signing_algo === algo && valid, JSON.stringify(s));
    ok(
      `signature/${algo}: the signature is the receipt's text_signature_${algo === "ecdsa" ? "ecdsa" : "ed25519"}`,
      s.signature === (algo === "ecdsa" ? rc.text_signature_ecdsa : rc.text_signature_ed25519),
    );
  }
  const nf = await fetch(`${base}/v1/signature/chatcmpl-unknown?signing_algo=ecdsa`);
  ok("signature: unknown id is a 404", nf.status === 404);

  const sbody = JSON.stringify({ model, messages: [{ role: "user", content: "Stream receipt" }], max_tokens: 12, stream: true, stream_options: { include_usage: true } });
  const sr = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: sbody });
  const all = Buffer.from(await sr.arrayBuffer());
  const marker = all.indexOf('data: {"id":"chatcmpl-');
  const last = all.lastIndexOf('data: {"id":"chatcmpl-');
  const tail = all.subarray(last).toString();
  ok("receipt: stream ends with a veil.receipt chunk, then [DONE]", last > marker && tail.includes('"object":"veil.receipt"') && tail.endsWith("data: [DONE]\n\n"));
  const evData = JSON.stringify(JSON.parse(tail.split("\n")[0].slice(6)).veil_receipt);
  const usageLine = all.subarray(0, last).toString().split("\n\n").filter((e) => e.includes('"usage":{')).pop();
  const su = usageLine ? JSON.parse(usageLine.slice(6)).usage : null;
  const src = JSON.parse(evData);
  const sp = checkReceipt("stream receipt", src, model, Buffer.from(sbody), all.subarray(0, last), su);
  // the receipt is stored before the client gets it: no race with /v1/signature
  const ss = await (await fetch(`${base}/v1/signature/${sp.id}?signing_algo=ecdsa`)).json();
  ok("stream receipt: /v1/signature/{id} right after [DONE] serves the receipt's text signature", ss.signature === src.text_signature_ecdsa, JSON.stringify(ss));
}

async function sealedChecks(base, model) {
  const nonce = "ab".repeat(32);
  const rep = await (await fetch(`${base}/v1/attestation/report?nonce=${nonce}`)).json();
  const pk = Buffer.from(rep.keys?.x25519_hpke ?? "", "hex");
  ok("sealed: report names the node's HPKE key", pk.length === 32);
  const plain = JSON.stringify({ model, messages: [{ role: "user", content: "A sealed hello" }], max_tokens: 10 });
  const s = await sealRequest(pk, enc8.encode(plain));
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/veil-sealed", "x-veil-model": model },
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
  ok("sealed: non-streamed answer opens to a chat completion", r.status === 200 && r.headers.get("content-type") === "application/veil-sealed" && j?.object === "chat.completion", `status ${r.status}`);
  const hdr = r.headers.get("x-veil-receipt");
  if (hdr && j) checkReceipt("sealed receipt", JSON.parse(Buffer.from(hdr, "base64url").toString()), model, s.body, resp, j.usage);
  // The same sealed body again (a gateway's replay, or an HTTP client's
  // retried POST): answered under a fresh response nonce, so fresh keys;
  // the same answer must not come back under the same keystream.
  const r2 = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/veil-sealed", "x-veil-model": model },
    body: s.body,
  });
  const resp2 = Buffer.from(await r2.arrayBuffer());
  let j2 = null;
  try {
    const { pt, final } = await s.opener()(resp2);
    j2 = final ? JSON.parse(pt) : null;
  } catch (e) {
    j2 = null;
  }
  const n = Math.min(resp.length, resp2.length);
  ok(
    "sealed: a replayed request is answered under a new response nonce, not the first answer's keystream",
    r2.status === 200 && j2?.object === "chat.completion" && n > 69 &&
      !resp2.subarray(0, 32).equals(resp.subarray(0, 32)) &&
      !resp2.subarray(37, n - 16).equals(resp.subarray(37, n - 16)),
    `status ${r2.status}`,
  );

  const splain = JSON.stringify({ model, messages: [{ role: "user", content: "A sealed stream" }], max_tokens: 10, stream: true });
  const ss = await sealRequest(pk, enc8.encode(splain));
  const sr = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/veil-sealed" }, body: ss.body });
  const all = Buffer.from(await sr.arrayBuffer()).toString();
  const events = all.split("\n\n").filter((e) => e.length);
  let sawFinal = false;
  let text = "";
  let opened = 0;
  let bad = null;
  for (const ev of events) {
    if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
    try {
      const { pt, final } = await ss.openChunk(Buffer.from(ev.slice(6), "base64"));
      opened++;
      const inner = pt.toString();
      if (final) {
        sawFinal = inner === "data: [DONE]\n\n";
        continue;
      }
      const o = JSON.parse(inner.slice(6));
      for (const c of o.choices) text += c.delta.content ?? "";
    } catch (e) {
      bad = String(e);
    }
  }
  ok("sealed: streamed answer opens chunk by chunk and ends with a final chunk", sr.status === 200 && opened >= 3 && sawFinal && !bad && text.length > 0, bad ?? `opened ${opened}`);
  ok("sealed: stream has a plaintext receipt event after the sealed body", all.includes("event: veil.receipt\n"));

  const tampered = Buffer.from(s.body);
  tampered[tampered.length - 1] ^= 1;
  const tr = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/veil-sealed" }, body: tampered });
  ok("sealed: a tampered body is refused with 400", tr.status === 400);

  const other = await suite.kem.generateKeyPair();
  const otherPk = new Uint8Array(await suite.kem.serializePublicKey(other.publicKey));
  const wrong = await sealRequest(otherPk, enc8.encode(plain));
  const wr = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/veil-sealed" }, body: wrong.body });
  const wj = await wr.json().catch(() => ({}));
  ok("sealed: a body sealed to another key is a 400 unknown_key_id", wr.status === 400 && wj.error?.code === "unknown_key_id");
}

async function concurrentChecks(base, model, n) {
  const c = client(base);
  const t0 = Date.now();
  const one = async (i) => {
    const stream = await c.chat.completions.create({ model, messages: [{ role: "user", content: `Story ${i}` }], max_tokens: 32, stream: true });
    let finish = null;
    let receipt = null;
    let id = null;
    for await (const ch of stream) {
      if (ch.object === "veil.receipt") receipt = ch.veil_receipt;
      else id = ch.id;
      for (const x of ch.choices) if (x.finish_reason) finish = x.finish_reason;
    }
    return finish && receipt ? { id, receipt } : null;
  };
  const res = await Promise.allSettled(Array.from({ length: n }, (_, i) => one(i)));
  const got = res.filter((r) => r.status === "fulfilled" && r.value).map((r) => r.value);
  ok(`concurrent: ${n} streaming clients all complete, each with a receipt`, got.length === n, `${got.length}/${n} in ${Date.now() - t0} ms; ${res.find((r) => r.status === "rejected")?.reason ?? ""}`);
  // Receipts signed at once by the signer threads: each one is its own
  // answer's, with valid payload and text signatures.
  let bad = 0;
  for (const { id, receipt } of got) {
    const p = JSON.parse(receipt.payload);
    const text = `${p.model}:${p.request_sha256}:${p.response_sha256}`;
    if (p.id !== id || verifyMessage(receipt.payload, receipt.signature_ecdsa) !== p.signing_address ||
        verifyMessage(text, receipt.text_signature_ecdsa) !== p.signing_address) bad++;
  }
  ok(`concurrent: all ${got.length} receipts name their answer and their ECDSA signatures recover the node's address`, got.length === n && bad === 0, `${bad} bad`);
}

async function canary(base, model, text) {
  const c = client(base);
  const a = await c.chat.completions.create({ model, messages: [{ role: "user", content: text }], max_tokens: 8 });
  const s = await c.completions.create({ model, prompt: text, max_tokens: 8, stream: true });
  for await (const _ of s);
  ok("canary: requests with the canary were answered", a.choices.length === 1);
}

// One chat stream with top_logprobs 20 and usage, plaintext or sealed, read
// raw: { events (plaintext of each event), done, errors, maxEvent, text,
// nlp (logprob entries), usage, bad }.
async function bigStream(base, model, i, pk) {
  const body = { model, messages: [{ role: "user", content: `Story ${i}` }], max_tokens: 480, stream: true,
    stream_options: { include_usage: true }, logprobs: true, top_logprobs: 20, seed: i };
  let s = null;
  const headers = { "content-type": "application/json" };
  let payload = JSON.stringify(body);
  if (pk) {
    s = await sealRequest(pk, enc8.encode(payload));
    headers["content-type"] = "application/veil-sealed";
    payload = s.body;
  }
  const r = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers, body: payload });
  const all = Buffer.from(await r.arrayBuffer()).toString();
  const out = { status: r.status, done: false, errors: 0, maxEvent: 0, maxTok: 0, text: "", nlp: 0, usage: null, bad: null, sealedFinal: false };
  for (const raw of all.split("\n\n").filter((e) => e.length)) {
    let ev = raw + "\n\n";
    if (ev.startsWith("event: error")) out.errors++;
    if (ev === "data: [DONE]\n\n") {
      out.done = true;
      continue;
    }
    if (s && ev.startsWith("data: ")) {
      try {
        const { pt, final } = await s.openChunk(Buffer.from(ev.slice(6, -2), "base64"));
        ev = pt.toString();
        if (final) out.sealedFinal = ev === "data: [DONE]\n\n";
        if (ev.startsWith("event: error")) out.errors++;
        if (final) continue;
      } catch (e) {
        out.bad = String(e);
        continue;
      }
    } else if (s) {
      continue; // the plaintext receipt event after the sealed body
    }
    out.maxEvent = Math.max(out.maxEvent, Buffer.byteLength(ev));
    if (!ev.startsWith("data: {")) continue;
    const o = JSON.parse(ev.slice(6));
    if (o.usage) out.usage = o.usage;
    for (const c of o.choices ?? []) {
      out.text += c.delta?.content ?? "";
      out.nlp += c.logprobs?.content?.length ?? 0;
      out.maxTok = Math.max(out.maxTok, c.logprobs?.content?.length ?? 0);
    }
  }
  return out;
}

// Many tokens' logprobs pile up while the loop is busy with other streams;
// they must go out as several events each within one sealed chunk (64 KiB),
// never end the stream as a "slow client".
async function bigEvents(base, model, n) {
  const rep = await (await fetch(`${base}/v1/attestation/report?nonce=${"cd".repeat(32)}`)).json();
  const pk = Buffer.from(rep.keys?.x25519_hpke ?? "", "hex");
  const runs = [];
  for (let i = 0; i < n; i++) runs.push(bigStream(base, model, i, null), bigStream(base, model, 100 + i, pk));
  const res = await Promise.all(runs);
  for (const [k, name] of [[0, "plaintext"], [1, "sealed"]]) {
    const mine = res.filter((_, i) => i % 2 === k);
    const good = mine.filter((r) => r.status === 200 && r.done && r.errors === 0 && !r.bad && (k === 0 || r.sealedFinal));
    ok(`bigevents: ${n} concurrent ${name} streams with top_logprobs 20 all end with [DONE], no error event`,
      good.length === n, mine.map((r) => `status ${r.status} done ${r.done} errors ${r.errors} ${r.bad ?? ""}`).join("; "));
    const maxEv = Math.max(...mine.map((r) => r.maxEvent));
    console.log(`${name}: largest event ${maxEv} bytes, at most ${Math.max(...mine.map((r) => r.maxTok))} tokens in one event`);
    ok(`bigevents: every ${name} event is at most 65536 bytes`, maxEv > 0 && maxEv <= 65536, `largest ${maxEv}`);
    ok(`bigevents: ${name} streams carry one logprob entry per generated token`,
      mine.every((r) => r.usage && r.nlp === r.usage.completion_tokens && r.nlp > 0),
      mine.map((r) => `${r.nlp}/${r.usage?.completion_tokens}`).join(" "));
  }
}

// Errors before a sealed answer hold no user content (docs/protocol.md).
async function sealedErrors(base, model) {
  const rep = await (await fetch(`${base}/v1/attestation/report?nonce=${"ef".repeat(32)}`)).json();
  const pk = Buffer.from(rep.keys?.x25519_hpke ?? "", "hex");
  const secret = `SECRET-${Date.now()}`;
  const s = await sealRequest(pk, enc8.encode(JSON.stringify({ model: secret, messages: [{ role: "user", content: "hi" }] })));
  const r = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/veil-sealed" }, body: s.body });
  const t = await r.text();
  let code = null;
  try {
    code = JSON.parse(t).error?.code;
  } catch (e) {}
  ok("sealed-errors: a sealed request for another model is a 404 model_not_found", r.status === 404 && code === "model_not_found", `status ${r.status} ${t}`);
  ok("sealed-errors: the 404 does not echo the sealed model name", !t.includes("SECRET"), t);
  const p = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: secret, messages: [{ role: "user", content: "hi" }] }) });
  const pt = await p.text();
  ok("sealed-errors: a plaintext request's 404 still names its model", p.status !== 404 || pt.includes(secret), pt);
}

// Upstream mode, an upstream event over 64 KiB: relayed whole on a plaintext
// stream; a sealed stream cannot carry it in one chunk and ends with an
// explicit event_too_large error (not client_too_slow).
async function upstreamBig(base, model, n) {
  const body = { model, messages: [{ role: "user", content: "hi" }], stream: true };
  const r = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const all = await r.text();
  let text = "";
  for (const ev of all.split("\n\n")) {
    if (!ev.startsWith("data: {")) continue;
    for (const c of JSON.parse(ev.slice(6)).choices ?? []) text += c.delta?.content ?? "";
  }
  ok(`upstream-big: a ${n}-byte upstream event is relayed whole on a plaintext stream`,
    r.status === 200 && text.length === n && all.endsWith("data: [DONE]\n\n") && !all.includes("event: error"), `status ${r.status}, ${text.length} bytes`);

  const rep = await (await fetch(`${base}/v1/attestation/report?nonce=${"aa".repeat(32)}`)).json();
  const s = await sealRequest(Buffer.from(rep.keys?.x25519_hpke ?? "", "hex"), enc8.encode(JSON.stringify(body)));
  const sr = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/veil-sealed" }, body: s.body });
  const sall = await sr.text();
  let code = null;
  let finalSeen = false;
  let bad = null;
  for (const ev of sall.split("\n\n")) {
    if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
    try {
      const { pt, final } = await s.openChunk(Buffer.from(ev.slice(6), "base64"));
      const inner = pt.toString();
      if (final) {
        finalSeen = true;
        if (inner.startsWith("event: error\ndata: ")) code = JSON.parse(inner.slice(19)).error?.code;
      }
    } catch (e) {
      bad = String(e);
    }
  }
  ok("upstream-big: on a sealed stream it ends with a final chunk holding event_too_large",
    sr.status === 200 && finalSeen && code === "event_too_large" && !bad, `code ${code} ${bad ?? ""}`);
}

const [cmd, base, model, arg] = process.argv.slice(2);
const cmds = {
  openai: () => openaiChecks(base, model),
  receipts: () => receiptChecks(base, model),
  sealed: () => sealedChecks(base, model),
  concurrent: () => concurrentChecks(base, model, Number(arg ?? 20)),
  canary: () => canary(base, model, arg),
  bigevents: () => bigEvents(base, model, Number(arg ?? 4)),
  "sealed-errors": () => sealedErrors(base, model),
  "upstream-big": () => upstreamBig(base, model, Number(arg ?? 100000)),
};
if (!(cmd in cmds)) {
  console.error("usage: node node_client.mjs openai|receipts|sealed|concurrent|canary|bigevents|sealed-errors|upstream-big BASE MODEL [ARG]");
  process.exit(2);
}
try {
  await cmds[cmd]();
} catch (e) {
  ok(`${cmd}: ran without an exception`, false, String(e?.stack ?? e));
}
process.exit(failed ? 1 : 0);
