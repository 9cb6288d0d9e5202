// A man in the middle between veil-proxy and veil-gateway (or a veil-node),
// for tests/integration/test_proxy.sh.  It forwards everything; for the
// completion endpoints it can tamper with the (sealed) answer:
//
//   node proxy_mitm.mjs UPSTREAM_URL [--tls CERT KEY]
//
// prints "mitm listening on http(s)://127.0.0.1:PORT".  Control, on the
// relay itself: POST /__mitm {"mode": M, "bytes": N} where M is
//   pass     forward untouched (and remember the answer)
//   flip     flip one bit inside a sealed chunk (the ciphertext; base64
//            re-encoded so only the AEAD can notice)
//   drop     drop the last N bytes of the answer (default 20)
//   cut      streams: end the answer just before its final sealed chunk
//   swap     put the receipt of the previous answer of the same kind in
//   replay   answer with the previous answer of the same kind (not sent on)
//   model_sha256  rewrite model.sha256 in the attestation report(s) (a bare
//            node report, or each node's in a gateway's document)
// GET /__mitm gives {"mode", "completions": forwarded completion requests}.
// With --tls the relay serves its own self-signed certificate (the pin must
// refuse it) and talks TLS to the upstream without checking it.
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";

const args = process.argv.slice(2);
const upstream = new URL(args[0]);
let tls = null;
if (args[1] === "--tls") tls = { cert: readFileSync(args[2]), key: readFileSync(args[3]) };

let mode = "pass";
let dropBytes = 20;
let completions = 0;
const last = { stream: null, plain: null }; // {status, headers, body}

const hopByHop = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "host"]);

function cleanHeaders(h) {
  const o = {};
  for (const [k, v] of Object.entries(h)) if (!hopByHop.has(k.toLowerCase())) o[k] = v;
  return o;
}

function forward(req, body) {
  const mod = upstream.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const r = mod.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...cleanHeaders(req.headers), "content-length": body.length },
        rejectUnauthorized: false,
      },
      resolve,
    );
    r.on("error", reject);
    r.end(body);
  });
}

function readAll(s) {
  return new Promise((resolve, reject) => {
    const parts = [];
    s.on("data", (d) => parts.push(d));
    s.on("end", () => resolve(Buffer.concat(parts)));
    s.on("error", reject);
  });
}

// Flips one bit of the ciphertext of the first sealed chunk (stream) or in
// the middle of the body (non-stream: all of it is framing + ciphertext).
function flip(isStream, body) {
  if (!isStream) {
    const b = Buffer.from(body);
    b[Math.floor(b.length / 2)] ^= 0x04;
    return b;
  }
  const text = body.toString("latin1");
  const m = /^data: ([A-Za-z0-9+/=]+)$/m.exec(text);
  if (!m) return body;
  const chunk = Buffer.from(m[1], "base64");
  chunk[5 + Math.floor((chunk.length - 5) / 2)] ^= 0x04;
  const out = text.slice(0, m.index) + "data: " + chunk.toString("base64") + text.slice(m.index + m[0].length);
  return Buffer.from(out, "latin1");
}

function cutBeforeFinal(body) {
  const text = body.toString("latin1");
  const r = text.indexOf("event: veil.receipt");
  if (r < 0) return body;
  const start = text.lastIndexOf("data: ", r - 3); // the final chunk's event
  return Buffer.from(text.slice(0, start), "latin1");
}

function receiptEvent(body) {
  const m = /event: veil\.receipt\ndata: (.*)\n\n/.exec(body.toString("latin1"));
  return m ? m[1] : null;
}

function swapReceipt(isStream, res, old) {
  if (!old) return res;
  if (!isStream) {
    const h = { ...res.headers };
    const k = Object.keys(h).find((x) => x.toLowerCase() === "x-veil-receipt");
    const ok = Object.keys(old.headers).find((x) => x.toLowerCase() === "x-veil-receipt");
    if (k && ok) h[k] = old.headers[ok];
    return { ...res, headers: h };
  }
  const mine = receiptEvent(res.body);
  const theirs = receiptEvent(old.body);
  if (!mine || !theirs) return res;
  return { ...res, body: Buffer.from(res.body.toString("latin1").replace(mine, theirs), "latin1") };
}

function send(out, r) {
  out.writeHead(r.status, { ...cleanHeaders(r.headers), "content-length": r.body.length });
  out.end(r.body);
}

async function handle(req, out) {
  const body = await readAll(req);
  if (req.url === "/__mitm") {
    if (req.method === "POST") {
      const c = JSON.parse(body.toString() || "{}");
      mode = c.mode || "pass";
      dropBytes = c.bytes ?? 20;
    }
    out.writeHead(200, { "content-type": "application/json" });
    out.end(JSON.stringify({ mode, completions }));
    return;
  }
  const isCompletion = req.method === "POST" && /\/v1\/(chat\/)?completions$/.test(req.url);
  const wantsStream = (req.headers.accept || "").includes("text/event-stream");
  const kind = wantsStream ? "stream" : "plain";
  if (isCompletion && mode === "replay" && last[kind]) {
    send(out, last[kind]);
    return;
  }
  if (isCompletion) completions++;
  const up = await forward(req, body);
  if (mode === "model_sha256" && req.method === "GET" && req.url.startsWith("/v1/attestation/report")) {
    const r = { status: up.statusCode, headers: cleanHeaders(up.headers), body: await readAll(up) };
    if (up.statusCode === 200) {
      const doc = JSON.parse(r.body.toString());
      const fake = (rep) => {
        if (rep && rep.model && typeof rep.model.sha256 === "string")
          rep.model.sha256 = rep.model.sha256 === "ab".repeat(32) ? "cd".repeat(32) : "ab".repeat(32);
      };
      fake(doc);
      for (const n of Array.isArray(doc.nodes) ? doc.nodes : []) fake(n);
      r.body = Buffer.from(JSON.stringify(doc));
    }
    send(out, r);
    return;
  }
  if (!isCompletion || mode === "pass") {
    // Pass through as it comes (streams stay streams), remembering the
    // answers for later swap / replay.
    out.writeHead(up.statusCode, cleanHeaders(up.headers));
    const parts = [];
    up.on("data", (d) => {
      parts.push(d);
      out.write(d);
    });
    up.on("end", () => {
      out.end();
      if (isCompletion && up.statusCode === 200)
        last[kind] = { status: up.statusCode, headers: cleanHeaders(up.headers), body: Buffer.concat(parts) };
    });
    return;
  }
  let r = { status: up.statusCode, headers: cleanHeaders(up.headers), body: await readAll(up) };
  const isStream = (up.headers["content-type"] || "").includes("text/event-stream");
  if (mode === "flip") r.body = flip(isStream, r.body);
  else if (mode === "drop") r.body = r.body.subarray(0, Math.max(0, r.body.length - dropBytes));
  else if (mode === "cut" && isStream) r.body = cutBeforeFinal(r.body);
  else if (mode === "swap") r = swapReceipt(isStream, r, last[kind]);
  send(out, r);
}

const onRequest = (req, out) =>
  handle(req, out).catch((e) => {
    try {
      out.writeHead(502, { "content-type": "application/json" });
      out.end(JSON.stringify({ error: { message: `mitm: ${e.message}`, type: "server_error", code: "mitm" } }));
    } catch {
      out.destroy();
    }
  });

const server = tls ? https.createServer(tls, onRequest) : http.createServer(onRequest);
server.keepAliveTimeout = 30000;
server.listen(0, "127.0.0.1", () => {
  console.log(`mitm listening on ${tls ? "https" : "http"}://127.0.0.1:${server.address().port}`);
});
