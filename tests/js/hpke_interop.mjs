// HPKE interop helper on hpke-js (a third-party RFC 9180 implementation),
// driven by tests/integration/test_hpke_interop.sh.  All binary values are hex.
//
//   node hpke_interop.mjs keygen
//       -> {"public": HEX, "private": HEX}
//   node hpke_interop.mjs seal AEAD PUBLIC INFO AAD PLAINTEXT
//       -> {"enc": HEX, "ct": HEX}   (base mode, single-shot)
//   node hpke_interop.mjs open AEAD PRIVATE ENC CT INFO AAD
//       -> plaintext hex; exit 1 when it does not open
//   node hpke_interop.mjs seal-example
//       -> "name hex" lines of the veil-seal/1 worked example of
//          docs/protocol.md, computed here with hpke-js and WebCrypto only
//
// AEAD is aes128gcm, aes256gcm or chacha20poly1305.  Empty INFO/AAD: "".
import { createHash, webcrypto } from "node:crypto";
import { AeadId, CipherSuite, KdfId, KemId } from "hpke-js";

const AEADS = {
  aes128gcm: AeadId.Aes128Gcm,
  aes256gcm: AeadId.Aes256Gcm,
  chacha20poly1305: AeadId.Chacha20Poly1305,
};

const hex = (b) => Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s ?? "", "hex"));
const cat = (...parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));

function suiteFor(name) {
  if (!(name in AEADS)) throw new Error(`unknown AEAD ${name}`);
  return new CipherSuite({
    kem: KemId.DhkemX25519HkdfSha256,
    kdf: KdfId.HkdfSha256,
    aead: AEADS[name],
  });
}

async function keygen() {
  const suite = suiteFor("aes256gcm");
  const kp = await suite.kem.generateKeyPair();
  const pub = await suite.kem.serializePublicKey(kp.publicKey);
  const priv = await suite.kem.serializePrivateKey(kp.privateKey);
  console.log(JSON.stringify({ public: hex(pub), private: hex(priv) }));
}

async function seal(aead, pubHex, infoHex, aadHex, ptHex) {
  const suite = suiteFor(aead);
  const pk = await suite.kem.deserializePublicKey(unhex(pubHex));
  const sender = await suite.createSenderContext({ recipientPublicKey: pk, info: unhex(infoHex) });
  const ct = await sender.seal(unhex(ptHex), unhex(aadHex));
  console.log(JSON.stringify({ enc: hex(sender.enc), ct: hex(ct) }));
}

async function open(aead, privHex, encHex, ctHex, infoHex, aadHex) {
  const suite = suiteFor(aead);
  const sk = await suite.kem.deserializePrivateKey(unhex(privHex));
  try {
    const r = await suite.createRecipientContext({
      recipientKey: sk,
      enc: unhex(encHex),
      info: unhex(infoHex),
    });
    const pt = await r.open(unhex(ctHex), unhex(aadHex));
    console.log(hex(pt));
  } catch (e) {
    console.error(`hpke-js: does not open: ${e.name}`);
    process.exit(1);
  }
}

// docs/protocol.md, "Sealed bodies (veil-seal/1)", "Worked example".
async function sealExample() {
  const enc8 = new TextEncoder();
  const suite = suiteFor("aes256gcm");
  const kpR = await suite.kem.deriveKeyPair(enc8.encode("veil-seal/1 example node key ikm"));
  const kpE = await suite.kem.deriveKeyPair(enc8.encode("veil-seal/1 example client ephem"));
  const pkR = new Uint8Array(await suite.kem.serializePublicKey(kpR.publicKey));
  const keyId = createHash("sha256").update(pkR).digest().subarray(0, 8);
  const sender = await suite.createSenderContext({
    recipientPublicKey: kpR.publicKey,
    info: enc8.encode("veil-seal/1"),
    ekm: kpE,
  });
  const prefix = (type) =>
    cat([0x56, 0x45, 0x49, 0x4c, 0x01, type, 0x00, 0x20, 0x00, 0x01, 0x00, 0x02], keyId);
  const header = cat(prefix(0x01), new Uint8Array(sender.enc));
  const frame = (pt, final, ct) => {
    const h = Buffer.alloc(5);
    h.writeUInt32BE(pt.length, 0);
    h[4] = final ? 1 : 0;
    return cat(h, new Uint8Array(ct));
  };
  const req = [
    [enc8.encode('{"prompt":'), false],
    [enc8.encode('"Once upon a time"}'), true],
  ];
  console.log(`pkR ${hex(pkR)}`);
  console.log(`key_id ${hex(keyId)}`);
  console.log(`header ${hex(header)}`);
  for (const [i, [pt, fin]] of req.entries()) {
    const ct = await sender.seal(pt, cat(header, [fin ? 1 : 0]));
    console.log(`request_chunk_${i} ${hex(frame(pt, fin, ct))}`);
  }
  // The response keys, as RFC 9458 §4.4 derives them: secret from the
  // exporter, salt = enc || response_nonce, HKDF-SHA256 (WebCrypto's).
  const responseNonce = enc8.encode("veil-seal/1 example resp nonce 0");
  const secret = new Uint8Array(await sender.export(enc8.encode("veil-seal/1 response"), 32));
  const salt = cat(new Uint8Array(sender.enc), responseNonce);
  const hkdfKey = await webcrypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
  const hkdf = async (info, bytes) =>
    new Uint8Array(
      await webcrypto.subtle.deriveBits(
        { name: "HKDF", hash: "SHA-256", salt, info: enc8.encode(info) },
        hkdfKey,
        bytes * 8,
      ),
    );
  // prk = HKDF-Extract(salt, secret) = HMAC(salt, secret), shown in the example
  const saltKey = await webcrypto.subtle.importKey(
    "raw",
    salt,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const prk = new Uint8Array(await webcrypto.subtle.sign("HMAC", saltKey, secret));
  const rkey = await hkdf("key", 32);
  const rnonce = await hkdf("nonce", 12);
  console.log(`response_nonce ${hex(responseNonce)}`);
  console.log(`secret ${hex(secret)}`);
  console.log(`prk ${hex(prk)}`);
  console.log(`response_key ${hex(rkey)}`);
  console.log(`response_base_nonce ${hex(rnonce)}`);
  const key = await webcrypto.subtle.importKey("raw", rkey, "AES-GCM", false, ["encrypt"]);
  const resp = [
    [enc8.encode("there was"), false],
    [enc8.encode(" a girl."), true],
  ];
  for (const [i, [pt, fin]] of resp.entries()) {
    const iv = rnonce.slice();
    iv[11] ^= i; // base_nonce XOR I2OSP(i, 12), i < 256 here
    const ct = await webcrypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: cat(prefix(0x02), [fin ? 1 : 0]) },
      key,
      pt,
    );
    console.log(`response_chunk_${i} ${hex(frame(pt, fin, ct))}`);
  }
}

const [cmd, ...args] = process.argv.slice(2);
const cmds = { keygen, seal, open, "seal-example": sealExample };
if (!(cmd in cmds)) {
  console.error("usage: node hpke_interop.mjs keygen|seal|open|seal-example ...");
  process.exit(2);
}
await cmds[cmd](...args);
