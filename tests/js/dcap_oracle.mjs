// dcap_oracle.mjs - the verdict of @phala/dcap-qvl (pinned 0.3.9 in
// package.json) for one DCAP quote + collateral at a given time, as one JSON
// line, so tests/integration/test_dcap_oracle.sh can compare it with veil's
// tests/bench/tdx_verify on the same inputs.  Offline; never fetches.
//
//   node dcap_oracle.mjs QUOTE COLLATERAL.json TIME [--bench N]
//     QUOTE       raw bytes, or hex text (optional 0x, whitespace ignored)
//     TIME        unix seconds or an ISO-8601 UTC time
//     --bench N   instead: median microseconds of N verifications,
//                 {"bench_us": ...}
// Output: {"ok":true,"status":"UpToDate","advisories":[...]} or
//         {"ok":false,"error":"..."}; exit 0 accepted, 1 rejected, 2 usage.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function usage(msg) {
  process.stdout.write(JSON.stringify({ ok: false, error: msg, usage: true }) + '\n');
  process.exit(2);
}

const args = process.argv.slice(2);
let bench = 0;
const pos = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--bench') bench = parseInt(args[++i], 10);
  else pos.push(args[i]);
}
if (pos.length !== 3 || !(bench >= 0)) usage('usage: dcap_oracle.mjs QUOTE COLLATERAL.json TIME [--bench N]');

let dcap;
try {
  dcap = require('@phala/dcap-qvl');
} catch (e) {
  usage('@phala/dcap-qvl is not installed (cd tests/js && npm ci): ' + e.message);
}

// A quote file is hex when, after an optional 0x and whitespace, only hex
// digits remain; otherwise its bytes are the quote.
function quoteBytes(path) {
  const raw = readFileSync(path);
  const text = raw.toString('latin1').trim().replace(/^0x/i, '').replace(/\s+/g, '');
  const isHex = text.length > 0 && text.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(text);
  return isHex ? Buffer.from(text, 'hex') : raw;
}

function unixTime(s) {
  if (/^\d+$/.test(s)) return Number(s);
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) usage('bad TIME ' + s);
  return Math.floor(ms / 1000);
}

let quote, collateral, now;
try {
  quote = quoteBytes(pos[0]);
  collateral = JSON.parse(readFileSync(pos[1], 'utf8'));
  now = unixTime(pos[2]);
} catch (e) {
  usage(e.message);
}

if (bench > 0) {
  const times = [];
  for (let i = 0; i < Math.ceil(bench / 10); i++) { try { dcap.verify(quote, collateral, now); } catch (_) { /* warm-up */ } }
  for (let i = 0; i < bench; i++) {
    const t0 = process.hrtime.bigint();
    try { dcap.verify(quote, collateral, now); } catch (_) { /* timing only */ }
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({ bench_us: times[Math.floor(bench / 2)] }) + '\n');
  process.exit(0);
}

try {
  const r = dcap.verify(quote, collateral, now);
  process.stdout.write(JSON.stringify({ ok: true, status: r.status, advisories: r.advisory_ids || [], now }) + '\n');
  process.exit(0);
} catch (e) {
  const why = e.cause && e.cause.message ? `${e.message} (${e.cause.message})` : e.message;
  process.stdout.write(JSON.stringify({ ok: false, error: why, now }) + '\n');
  process.exit(1);
}
