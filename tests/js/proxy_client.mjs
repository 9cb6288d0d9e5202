// veil-proxy as any OpenAI client sees it (the official openai npm client),
// driven by tests/integration/test_proxy.sh.  Prints "ok - name" /
// "not ok - name" lines; exit 1 when one failed.
//
//   node proxy_client.mjs openai BASE MODEL
//       models, chat, streamed chat, completions, streamed completions;
//       every answer carries X-Veil-Verified
//   node proxy_client.mjs expect-error BASE MODEL NAME stream|plain [CODE]
//       one chat request that must end in an explicit error (an APIError:
//       an HTTP status >= 400, or an error event in a stream), with CODE in
//       it when given, and never a normally finished answer
//   node proxy_client.mjs answer BASE MODEL stream|plain
//       one chat request that must be answered (a relay remembers it)
//   node proxy_client.mjs tamper BASE MODEL MITM PREFIX
//       with the relay of tests/js/proxy_mitm.mjs at MITM between the proxy
//       and its gateway: for each attack (flip, drop, swap, replay) and
//       each kind (plain, stream): an untouched answer first (the relay
//       remembers it), then the attack, which must end in an explicit
//       error; then a stream cut before its final chunk and one whose
//       receipt event is cut short; then untouched traffic works again
//   node proxy_client.mjs canary BASE MODEL TEXT   requests carrying TEXT
//
// BASE is http://127.0.0.1:PORT (no /v1).
import OpenAI from "openai";

let failed = 0;
const ok = (name, cond, why = "") => {
  if (cond) console.log(`ok - ${name}`);
  else {
    failed++;
    console.log(`not ok - ${name}${why ? ` (${why})` : ""}`);
  }
};

const client = (base) => new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused-by-veil-proxy", maxRetries: 0 });

async function openaiChecks(base, model) {
  const c = client(base);
  const models = await c.models.list();
  ok("openai via proxy: models.list names the verified model", models.data.some((m) => m.id === model));

  const { data: chat, response } = await c.chat.completions
    .create({ model, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 16, temperature: 0 })
    .withResponse();
  ok(
    "openai via proxy: chat completion has content, finish_reason and usage",
    chat.object === "chat.completion" &&
      typeof chat.choices[0].message.content === "string" &&
      chat.choices[0].message.content.length > 0 &&
      ["stop", "length"].includes(chat.choices[0].finish_reason) &&
      chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens,
  );
  ok(
    "openai via proxy: the answer says X-Veil-Verified: receipt and names the receipt",
    response.headers.get("x-veil-verified") === "receipt" &&
      response.headers.get("x-veil-receipt-id") === chat.id &&
      (response.headers.get("x-veil-receipt") || "").length > 100,
  );
  const again = await c.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Once upon a time" }],
    max_tokens: 16,
    temperature: 0,
  });
  ok(
    "openai via proxy: temperature 0 gives the same answer twice",
    again.choices[0].message.content === chat.choices[0].message.content,
  );

  const { data: stream, response: sresp } = await c.chat.completions
    .create({
      model,
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 16,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    })
    .withResponse();
  let text = "";
  let finish = null;
  let usage = null;
  let role = null;
  let chunks = 0;
  for await (const ch of stream) {
    chunks++;
    if (ch.usage) usage = ch.usage;
    const d = ch.choices?.[0]?.delta;
    if (d?.role) role = d.role;
    if (d?.content) text += d.content;
    if (ch.choices?.[0]?.finish_reason) finish = ch.choices[0].finish_reason;
  }
  ok(
    "openai via proxy: streamed chat has a role, text, finish_reason and usage",
    role === "assistant" && text.length > 0 && finish !== null && usage && usage.completion_tokens > 0,
    `role ${role}, ${chunks} chunks, finish ${finish}`,
  );
  ok(
    "openai via proxy: streamed text equals the non-streamed text (temperature 0)",
    text === chat.choices[0].message.content,
    JSON.stringify([text, chat.choices[0].message.content]),
  );
  ok("openai via proxy: the stream says X-Veil-Verified: stream", sresp.headers.get("x-veil-verified") === "stream");

  const cmpl = await c.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, temperature: 0 });
  ok(
    "openai via proxy: completion has text and usage",
    cmpl.object === "text_completion" && cmpl.choices[0].text.length > 0 && cmpl.usage.completion_tokens > 0,
  );
  const cs = await c.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, temperature: 0, stream: true });
  let ctext = "";
  for await (const ch of cs) ctext += ch.choices?.[0]?.text ?? "";
  ok("openai via proxy: streamed completion equals the non-streamed one", ctext === cmpl.choices[0].text);

  // The opt-in receipt chunk (X-Veil-Receipt-Chunk: 1) before [DONE].
  const rs = await c.chat.completions.create(
    { model, messages: [{ role: "user", content: "Hi" }], max_tokens: 4, stream: true },
    { headers: { "X-Veil-Receipt-Chunk": "1" } },
  );
  let rc = null;
  for await (const ch of rs) if (ch.object === "veil.receipt") rc = ch;
  ok(
    "openai via proxy: X-Veil-Receipt-Chunk: 1 adds a verified receipt chunk",
    rc && rc.veil_verified === true && typeof rc.veil_receipt?.payload === "string",
  );

  try {
    await c.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] });
    ok("openai via proxy: an unknown model is a 404", false, "no error");
  } catch (e) {
    ok("openai via proxy: an unknown model is a 404 model_not_found", e.status === 404 && e.code === "model_not_found", `${e.status} ${e.code}`);
  }
}

async function expectError(base, model, name, kind, code) {
  const c = client(base);
  let text = "";
  let err = null;
  let finished = false;
  try {
    if (kind === "stream") {
      const s = await c.chat.completions.create({
        model,
        messages: [{ role: "user", content: "Once upon a time" }],
        max_tokens: 24,
        stream: true,
      });
      for await (const ch of s) text += ch.choices?.[0]?.delta?.content ?? "";
      finished = true;
    } else {
      const r = await c.chat.completions.create({
        model,
        messages: [{ role: "user", content: "Once upon a time" }],
        max_tokens: 24,
      });
      text = r.choices[0].message.content;
      finished = true;
    }
  } catch (e) {
    err = e;
  }
  const desc = err ? `${err.status ?? "stream"} ${err.code ?? ""}: ${String(err.message).slice(0, 200)}` : "no error";
  const shapeOk =
    err instanceof OpenAI.APIError && (err.status === undefined ? kind === "stream" : err.status >= 400);
  ok(`${name}: explicit error (${desc})`, !finished && shapeOk && (!code || desc.includes(code)));
}

async function answer(base, model, kind, quiet = false) {
  const c = client(base);
  let text = "";
  if (kind === "stream") {
    const s = await c.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 24,
      stream: true,
    });
    for await (const ch of s) text += ch.choices?.[0]?.delta?.content ?? "";
  } else {
    const r = await c.chat.completions.create({ model, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 24 });
    text = r.choices[0].message.content;
  }
  if (!quiet || !text.length) ok(`answered (${kind})`, text.length > 0);
}

async function mitm(url, mode, bytes = 20) {
  const r = await fetch(`${url}/__mitm`, { method: "POST", body: JSON.stringify({ mode, bytes }) });
  if (!r.ok) throw new Error(`relay control: ${r.status}`);
}

async function tamper(base, model, url, prefix) {
  for (const mode of ["flip", "drop", "swap", "replay"]) {
    for (const kind of ["plain", "stream"]) {
      await mitm(url, "pass");
      await answer(base, model, kind, true);
      await mitm(url, mode);
      await expectError(base, model, `${prefix}: ${mode} (${kind})`, kind);
    }
  }
  await mitm(url, "cut");
  await expectError(base, model, `${prefix}: stream cut before its final chunk`, "stream", "response_truncated");
  await mitm(url, "drop", 300);
  await expectError(base, model, `${prefix}: the receipt event cut short`, "stream", "response_truncated");
  await mitm(url, "pass");
  await answer(base, model, "plain");
  await answer(base, model, "stream");
}

async function canary(base, model, text) {
  const c = client(base);
  const r = await c.chat.completions.create({ model, messages: [{ role: "user", content: text }], max_tokens: 4 });
  const s = await c.completions.create({ model, prompt: text, max_tokens: 4, stream: true });
  for await (const _ of s);
  ok("canary requests answered", r.choices.length === 1);
}

const [cmd, base, model, ...rest] = process.argv.slice(2);
try {
  if (cmd === "openai") await openaiChecks(base, model);
  else if (cmd === "expect-error") await expectError(base, model, rest[0], rest[1], rest[2]);
  else if (cmd === "answer") await answer(base, model, rest[0]);
  else if (cmd === "tamper") await tamper(base, model, rest[0], rest[1]);
  else if (cmd === "canary") await canary(base, model, rest[0]);
  else {
    console.error(`unknown command ${cmd}`);
    process.exit(2);
  }
} catch (e) {
  ok(`${cmd}: no unexpected exception`, false, `${e.status ?? ""} ${e.message}`);
}
process.exit(failed ? 1 : 0);
