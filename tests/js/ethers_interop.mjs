// EIP-191 personal_sign interop between veil and ethers v6 (npm).
//   veil -> ethers: ethers.verifyMessage accepts our signatures and recovers
//                   our address; our RFC 6979 signatures equal ethers' own.
//   ethers -> veil: `veil sign verify --algo ecdsa` accepts Wallet.signMessage
//                   signatures and prints the signer's address.
// Usage: VEIL_BIN=<dir of veil> node tests/js/ethers_interop.mjs
// Prints TAP-like "ok - name" / "not ok - name" lines; exit 1 on any failure.
import { spawnSync } from 'node:child_process';
import { ethers } from 'ethers';

const veil = `${process.env.VEIL_BIN || 'build/bin'}/veil`;
let failures = 0;

function check(name, cond, detail) {
  if (cond) {
    console.log(`ok - ${name}`);
  } else {
    failures++;
    console.log(`not ok - ${name}${detail ? ` (${detail})` : ''}`);
  }
}

function run(args, input) {
  const r = spawnSync(veil, args, { input: input ?? '', encoding: 'buffer' });
  if (r.error) throw r.error;
  return { code: r.status, out: r.stdout.toString().trim(), err: r.stderr.toString().trim() };
}

function veilSign(priv, msg, extra = []) {
  // Text goes through --message; bytes (which may hold NUL) through stdin.
  const args = ['sign', 'sign', '--algo', 'ecdsa', '--private', priv, ...extra];
  const r = typeof msg === 'string' ? run([...args, '--message', msg]) : run(args, Buffer.from(msg));
  if (r.code !== 0) throw new Error(`veil sign failed: ${r.err}`);
  return r.out;
}

function veilVerify(address, sig, msg) {
  const args = ['sign', 'verify', '--algo', 'ecdsa', '--address', address, '--signature', sig];
  return typeof msg === 'string' ? run([...args, '--message', msg]) : run(args, Buffer.from(msg));
}

const messages = [
  ['ascii', 'Some data'],
  ['empty', ''],
  ['utf-8 multibyte', 'I\u2665SF \u4e2d\u6587 Message t\u00f6 sign'],
  ['near format', `${'ab'.repeat(32)}:${'cd'.repeat(32)}`],
  ['1000 bytes', 'x'.repeat(1000)],
  ['binary via stdin', new Uint8Array([0, 1, 2, 10, 13, 0x19, 0xff, 0x80, 0])],
];

// ---- keys: veil keygen and ethers agree on the address -----------------------
const kg = run(['sign', 'keygen', '--algo', 'ecdsa']);
const key = JSON.parse(kg.out);
const wallet = new ethers.Wallet(key.private);
check('veil keygen address equals ethers Wallet address (EIP-55 exact)', wallet.address === key.address,
  `${wallet.address} vs ${key.address}`);
check('veil keygen public key equals ethers SigningKey public key',
  wallet.signingKey.publicKey === key.public, `${wallet.signingKey.publicKey} vs ${key.public}`);
check('ethers computeAddress of veil public key is veil address', ethers.computeAddress(key.public) === key.address);

// ---- veil signs, ethers verifies ------------------------------------------------
for (const [name, msg] of messages) {
  const sig = veilSign(key.private, msg);
  let rec = '';
  try { rec = ethers.verifyMessage(msg, sig); } catch (e) { rec = `threw ${e.message}`; }
  check(`ethers verifyMessage recovers veil address (${name})`, rec === key.address, rec);
  const theirs = await wallet.signMessage(msg);
  check(`veil RFC 6979 signature is byte-identical to ethers signMessage (${name})`, sig === theirs,
    `${sig} vs ${theirs}`);
}
{
  const sigR = veilSign(key.private, 'random k', ['--random-k']);
  const sigR2 = veilSign(key.private, 'random k', ['--random-k']);
  check('veil --random-k signatures differ', sigR !== sigR2);
  check('ethers verifyMessage accepts veil --random-k signature',
    ethers.verifyMessage('random k', sigR) === key.address && ethers.verifyMessage('random k', sigR2) === key.address);
}

// ---- ethers signs, veil verifies -------------------------------------------------
const other = ethers.Wallet.createRandom();
for (const [name, msg] of messages) {
  const sig = await other.signMessage(msg);
  const r = veilVerify(other.address, sig, msg);
  check(`veil verifies ethers signature and prints signer (${name})`, r.code === 0 && r.out === other.address,
    `exit ${r.code}: ${r.out} ${r.err}`);
}
{
  const sig = await other.signMessage('hello');
  const bad = veilVerify(other.address, sig, 'hellO');
  check('veil rejects ethers signature over another message (exit 1, "invalid")',
    bad.code === 1 && bad.out.startsWith('invalid'), `exit ${bad.code}: ${bad.out}`);
  const wrong = veilVerify(wallet.address, sig, 'hello');
  check('veil rejects ethers signature against another address', wrong.code === 1, `exit ${wrong.code}`);
  const lower = veilVerify(other.address.toLowerCase(), sig, 'hello');
  check('veil accepts a lower-case address', lower.code === 0 && lower.out === other.address);
  // ethers' Signature object serialised with v = 27/28 is what we print; the
  // compact 0/1 form also recovers.
  const s = ethers.Signature.from(sig);
  const v01 = s.r + s.s.slice(2) + (s.v === 27 ? '00' : '01');
  const r01 = veilVerify(other.address, v01, 'hello');
  check('veil accepts v = 0/1 as well as 27/28', r01.code === 0, `exit ${r01.code}: ${r01.out}`);
}

process.exit(failures ? 1 : 0);
