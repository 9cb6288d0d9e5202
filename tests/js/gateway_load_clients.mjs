// Concurrent clients for tests/integration/test_gateway_durability.sh and
// test_gateway_pg.sh: each sends chat completions to a veil-gateway one
// after another (alternating streamed and non-streamed) until the time is
// up, and appends to ACKFILE the completion id of every answer it received
// COMPLETE ("acknowledged"):
//   - non-streamed: HTTP 200 and a whole JSON body with an id and a
//     finish_reason;
//   - streamed: HTTP 200, a chunk with a finish_reason, and the final
//     `data: [DONE]` (the gateway sends it only once the usage record is
//     durable), no error event.
// Anything else (a connection cut, an error event, a stream without [DONE])
// is counted as an error, never acknowledged.  Each id is appended (and the
// file flushed) the moment its answer is complete, so the file is current
// when the gateway is killed.  A client stops at the first refused
// connection (the gateway is gone: nothing more to learn).
//
//   node gateway_load_clients.mjs BASE KEY MODEL CLIENTS DURATION_MS ACKFILE [CONTENT]
//
// BASE is http://127.0.0.1:PORT (no /v1).  CONTENT (default "Hi") is the
// user message.  Prints one JSON summary line on stdout:
// {"acked": N, "errors": N, "cut": N, "by_kind": {...}, "status": {...}}
// where "cut" counts the requests that failed otherwise than by a refused
// connection (cut in flight, error events, non-200).  Exit 0 unless the
// arguments are wrong (2).
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";

const [base, key, model, clientsArg, durationArg, ackFile, content = "Hi"] = process.argv.slice(2);
if (!base || !key || !model || !clientsArg || !durationArg || !ackFile) {
  console.error("usage: node gateway_load_clients.mjs BASE KEY MODEL CLIENTS DURATION_MS ACKFILE [CONTENT]");
  process.exit(2);
}
const clients = Number(clientsArg);
const deadline = Date.now() + Number(durationArg);

let acked = 0;
let errors = 0;
let cut = 0;
const byKind = {};
const statuses = {};
const fd = openSync(ackFile, "a");

function ack(id) {
  writeSync(fd, `${id}\n`);
  fsyncSync(fd);
  acked++;
}

function fail(kind) {
  errors++;
  if (kind !== "ECONNREFUSED") cut++;
  byKind[kind] = (byKind[kind] || 0) + 1;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function plain(body) {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15000),
  });
  statuses[res.status] = (statuses[res.status] || 0) + 1;
  const text = await res.text();
  if (res.status !== 200) return fail(`http_${res.status}`);
  let o;
  try {
    o = JSON.parse(text);
  } catch {
    return fail("bad_json");
  }
  if (!o.id || !o.choices || !o.choices[0] || !o.choices[0].finish_reason) return fail("incomplete_json");
  ack(o.id);
}

async function streamed(body) {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Accept: "text/event-stream",
      Authorization: `Bearer ${key}`,
    },
    body: JSON.stringify({ ...body, stream: true }),
    signal: AbortSignal.timeout(15000),
  });
  statuses[res.status] = (statuses[res.status] || 0) + 1;
  if (res.status !== 200) {
    await res.text();
    return fail(`http_${res.status}`);
  }
  const dec = new TextDecoder();
  let buf = "";
  let id = null;
  let finished = false;
  let done = false;
  let bad = false;
  for await (const piece of res.body) {
    buf += dec.decode(piece, { stream: true });
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
      const ev = buf.slice(0, cut);
      buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
      let event = "message";
      const data = [];
      for (const line of ev.split(/\r?\n/)) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      const d = data.join("\n");
      if (event === "error") bad = true;
      else if (d === "[DONE]") done = true;
      else if (event === "message" && d) {
        try {
          const o = JSON.parse(d);
          if (o.error) bad = true;
          if (o.id && o.object === "chat.completion.chunk") id = o.id;
          if (o.choices && o.choices[0] && o.choices[0].finish_reason) finished = true;
        } catch {
          bad = true;
        }
      }
    }
  }
  if (bad) return fail("error_event");
  if (!done) return fail("no_done");
  if (!finished || !id) return fail("incomplete_stream");
  ack(id);
}

async function client(i) {
  const body = {
    model,
    messages: [{ role: "user", content }],
    max_tokens: 8,
    temperature: 0,
  };
  let n = i;
  while (Date.now() < deadline) {
    try {
      if (n++ % 2) await streamed(body);
      else await plain(body);
    } catch (e) {
      const c = e && e.cause && e.cause.code ? e.cause.code : e && e.name ? e.name : "error";
      fail(String(c));
      if (c === "ECONNREFUSED") return;
      await sleep(50);
    }
  }
}

await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
closeSync(fd);
console.log(JSON.stringify({ acked, errors, cut, by_kind: byKind, status: statuses }));
