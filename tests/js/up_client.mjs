// `veil up` as a user's OpenAI client sees it: the official openai npm
// client pointed at the URL veil up printed (OPENAI_BASE_URL style, with
// /v1), driven by tests/integration/test_up.sh.  Prints "ok - name" /
// "not ok - name" lines; exit 1 when one failed.
//
//   node up_client.mjs BASE_URL MODEL
//       models.list, a chat completion and a streamed one; every answer
//       carries X-Veil-Verified (receipt / stream) and the model's SHA-256
import OpenAI from "openai";

let failed = 0;
const ok = (name, cond, why = "") => {
  if (cond) console.log(`ok - ${name}`);
  else {
    failed++;
    console.log(`not ok - ${name}${why ? ` (${why})` : ""}`);
  }
};

const [baseURL, model] = process.argv.slice(2);
// any key: the proxy holds the gateway's API key
const c = new OpenAI({ baseURL, apiKey: "local", maxRetries: 0 });

try {
  const models = await c.models.list();
  ok("openai client on veil up's URL: models.list names the model", models.data.some((m) => m.id === model));

  const { data: chat, response } = await c.chat.completions
    .create({ model, messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 32 })
    .withResponse();
  ok(
    "openai client on veil up's URL: chat completion with content and usage",
    typeof chat.choices[0].message.content === "string" &&
      chat.choices[0].message.content.length > 0 &&
      chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens,
  );
  ok(
    "openai client on veil up's URL: X-Veil-Verified: receipt, model SHA-256 named",
    response.headers.get("x-veil-verified") === "receipt" &&
      /^[0-9a-f]{64}$/.test(response.headers.get("x-veil-model-sha256") || ""),
    `${response.headers.get("x-veil-verified")}`,
  );

  const { data: stream, response: sresp } = await c.chat.completions
    .create({ model, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 32, stream: true })
    .withResponse();
  let text = "";
  let chunks = 0;
  for await (const ev of stream) {
    chunks++;
    text += ev.choices?.[0]?.delta?.content || "";
  }
  ok(
    "openai client on veil up's URL: streamed chat completes (receipt checked before [DONE])",
    chunks > 1 && text.length > 0 && sresp.headers.get("x-veil-verified") === "stream",
    `${chunks} chunks, verified=${sresp.headers.get("x-veil-verified")}`,
  );
} catch (e) {
  ok("openai client on veil up's URL: no error", false, String(e));
}
process.exit(failed ? 1 : 0);
