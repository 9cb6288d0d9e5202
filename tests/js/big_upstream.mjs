// An OpenAI-style upstream engine for veil-node's upstream mode whose
// streamed answers carry one event larger than a sealed chunk (64 KiB), as
// an engine that batches many tokens' logprobs into one chunk would send.
// Prints "listening on http://127.0.0.1:PORT"; serves until killed.
//
//   node big_upstream.mjs MODEL BYTES [COUNT]
// COUNT (default 1) such events, as fast as the connection takes them.
import { createServer } from "node:http";

const [model, bytes, count] = [process.argv[2] ?? "stories260K", Number(process.argv[3] ?? 100000),
  Number(process.argv[4] ?? 1)];
const chunk = (choices, extra = {}) =>
  JSON.stringify({ id: "up-1", object: "chat.completion.chunk", created: 1, model, system_fingerprint: null, choices, ...extra });

const srv = createServer((req, res) => {
  let body = "";
  req.on("data", (d) => (body += d));
  req.on("end", () => {
    const stream = JSON.parse(body || "{}").stream === true;
    if (!stream) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: "up-1", object: "chat.completion", created: 1, model,
        choices: [{ index: 0, message: { role: "assistant", content: "x" }, finish_reason: "stop" }],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (let i = 0; i < count; i++)
      res.write(`data: ${chunk([{ index: 0, delta: { content: "a".repeat(bytes) }, logprobs: null, finish_reason: null }])}\n\n`);
    res.write(`data: ${chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: "stop" }])}\n\n`);
    res.write(`data: ${chunk([], { usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } })}\n\n`);
    res.end("data: [DONE]\n\n");
  });
});
srv.listen(0, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${srv.address().port}`));
