// Overhead of veil-proxy (+ veil-gateway) against the node alone, measured in
// the same run on the same node: time to first token and decode speed of
// streamed completions.
//
//   node tests/js/proxy_bench.mjs BIN_DIR MODEL [ROUNDS] [MAX_TOKENS] [CONCURRENCY] [THREADS]
//
// Starts on 127.0.0.1: one veil-node (TLS, simulated TEE, also accepting
// plaintext so the direct path needs no sealing client), a veil-gateway in
// front of it when BIN_DIR has one, and veil-proxy in front of that (or of
// the node).  Then, alternating paths request by request, ROUNDS streamed
// completions of MAX_TOKENS each (temperature 0, same prompt) per path:
//   direct   plaintext HTTPS straight to the node (keep-alive)
//   proxy    plain HTTP to veil-proxy -> (gateway ->) node, sealed
// Prints one JSON line: medians of TTFT (ms, to the first text) and of
// decode tokens/s (completion tokens after the first / time from the first
// to the last text), and the overhead of the proxy path in percent.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [bin, model, roundsArg, maxTokArg, concArg, threadsArg] = process.argv.slice(2);
const rounds = Number(roundsArg || 30);
const maxTokens = Number(maxTokArg || 200);
const conc = Number(concArg || 1);
const modelName = model.split("/").pop().replace(/\.gguf$/, "");
const dir = mkdtempSync(join(tmpdir(), "veil-proxy-bench-"));
const procs = [];

function start(name, cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    procs.push(p);
    let log = "";
    const onData = (d) => {
      log += d.toString();
      const m = /listening on (https?):\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) {
        p.stdout.removeAllListeners("data");
        p.stderr.removeAllListeners("data");
        p.stdout.resume();
        p.stderr.resume();
        resolve(`${m[1]}://127.0.0.1:${m[2]}`);
      }
    };
    p.stdout.on("data", onData);
    p.stderr.on("data", onData);
    p.on("exit", (c) => reject(new Error(`${name} exited ${c}: ${log.slice(-400)}`)));
  });
}

const agentS = new https.Agent({ keepAlive: true, rejectUnauthorized: false, maxSockets: 64 });
const agentP = new http.Agent({ keepAlive: true, maxSockets: 64 });

// One streamed completion; returns {ttft, tps, tokens}.
function once(base) {
  const u = new URL(`${base}/v1/completions`);
  const body = JSON.stringify({
    model: modelName,
    prompt: "Once upon a time",
    max_tokens: maxTokens,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  const mod = u.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let first = 0n;
    let last = 0n;
    let tokens = 0;
    let buf = "";
    let done = false;
    const req = mod.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: "POST",
        agent: u.protocol === "https:" ? agentS : agentP,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        if (res.statusCode !== 200) reject(new Error(`${base}: HTTP ${res.statusCode}`));
        res.setEncoding("utf8");
        res.on("data", (d) => {
          const now = process.hrtime.bigint();
          buf += d;
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (!ev.startsWith("data: ")) continue;
            const data = ev.slice(6);
            if (data === "[DONE]") {
              done = true;
              continue;
            }
            const o = JSON.parse(data);
            if (o.usage) tokens = o.usage.completion_tokens;
            if (o.choices?.[0]?.text) {
              if (!first) first = now;
              last = now;
            }
          }
        });
        res.on("end", () => {
          if (!done || !first) return reject(new Error(`${base}: stream incomplete`));
          const ttft = Number(first - t0) / 1e6;
          const dec = Number(last - first) / 1e9;
          resolve({ ttft, tps: dec > 0 ? (tokens - 1) / dec : 0, tokens });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const node = await start("veil-node", join(bin, "veil-node"), [
    "--listen", "127.0.0.1:0", "--tee", "sim", "--model", model, "--allow-plaintext",
    ...(threadsArg ? ["--threads", threadsArg] : []),
  ]);
  let upstream = node;
  let via = "node";
  let key = null;
  try {
    execFileSync(join(bin, "veil-gateway"), ["--help"], { stdio: "ignore" });
    const db = `sqlite:${join(dir, "gw.db")}`;
    key = execFileSync(join(bin, "veil-gateway"), ["keys", "create", "--db", db], { encoding: "utf8" })
      .trim().split("\n").pop();
    writeFileSync(join(dir, "nodes.json"), JSON.stringify([{ url: node, model: modelName, id: "n1" }]));
    upstream = await start("veil-gateway", join(bin, "veil-gateway"), [
      "--listen", "127.0.0.1:0", "--db", db, "--nodes", join(dir, "nodes.json"), "--allow-sim", "--tee", "sim",
    ]);
    via = "gateway";
    for (let i = 0; i < 100; i++) {
      const ok = await new Promise((res) =>
        https.get(`${upstream}/v1/attestation/report`, { agent: agentS }, (r) => {
          let s = "";
          r.on("data", (d) => (s += d));
          r.on("end", () => res(JSON.parse(s).nodes?.length === 1));
        }).on("error", () => res(false)),
      );
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    if (via === "gateway") throw e;
  }
  const proxyArgs = ["--listen", "127.0.0.1:0", "--gateway", upstream, "--allow-sim"];
  if (key) proxyArgs.push("--api-key", key);
  const proxy = await start("veil-proxy", join(bin, "veil-proxy"), proxyArgs);

  console.error(`# node ${node}, ${via} ${upstream}, proxy ${proxy}`);
  const paths = { direct: node, proxy };
  const res = { direct: [], proxy: [] };
  for (const p of Object.keys(paths)) for (let i = 0; i < 3; i++) await once(paths[p]); // warm up
  for (let r = 0; r < rounds; r++) {
    for (const p of r % 2 ? ["proxy", "direct"] : ["direct", "proxy"]) {
      const batch = await Promise.all(Array.from({ length: conc }, () => once(paths[p])));
      res[p].push(...batch);
    }
  }
  const sum = {};
  for (const p of Object.keys(res)) {
    sum[p] = {
      ttft_ms: +median(res[p].map((x) => x.ttft)).toFixed(2),
      tokens_per_s: +median(res[p].map((x) => x.tps)).toFixed(1),
      tokens: median(res[p].map((x) => x.tokens)),
    };
  }
  const out = {
    bench: "veil-proxy overhead",
    model: modelName,
    via,
    rounds,
    max_tokens: maxTokens,
    concurrency: conc,
    node_threads: threadsArg ? Number(threadsArg) : "all",
    direct: sum.direct,
    proxy: sum.proxy,
    ttft_overhead_ms: +(sum.proxy.ttft_ms - sum.direct.ttft_ms).toFixed(2),
    ttft_overhead_pct: +(((sum.proxy.ttft_ms - sum.direct.ttft_ms) / sum.direct.ttft_ms) * 100).toFixed(1),
    tps_overhead_pct: +(((sum.direct.tokens_per_s - sum.proxy.tokens_per_s) / sum.direct.tokens_per_s) * 100).toFixed(1),
  };
  console.log(JSON.stringify(out));
}

try {
  await main();
} catch (e) {
  console.error(`proxy_bench: ${e.message}`);
  process.exitCode = 1;
} finally {
  for (const p of procs) p.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
}
