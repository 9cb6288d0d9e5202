// veil-seal/1 client for the JS test clients (docs/protocol.md, "Sealed
// bodies"): hpke-js for HPKE, WebCrypto for the response keys and chunks.
// sealRequest(pkR, pt) seals pt as one final chunk to the node key pkR
// (32 bytes) and returns { body, openChunk, opener }: openChunk opens the
// framed response chunks in order (the first one preceded by the node's
// 32-byte response nonce); opener() makes a fresh one (for a second
// answer to the same sealed body).  `suite` is the HPKE suite (keys).
import { createHash, webcrypto } from "node:crypto";
import { AeadId, CipherSuite, KdfId, KemId } from "hpke-js";

const enc8 = new TextEncoder();
const cat = (...parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
export const suite = new CipherSuite({ kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.Aes256Gcm });

export async function sealRequest(pkRbytes, pt) {
  const pkR = await suite.kem.deserializePublicKey(pkRbytes);
  const keyId = createHash("sha256").update(pkRbytes).digest().subarray(0, 8);
  const sender = await suite.createSenderContext({ recipientPublicKey: pkR, info: enc8.encode("veil-seal/1") });
  const prefix = (type) => cat([0x56, 0x45, 0x49, 0x4c, 0x01, type, 0x00, 0x20, 0x00, 0x01, 0x00, 0x02], keyId);
  const header = cat(prefix(0x01), new Uint8Array(sender.enc));
  const h = Buffer.alloc(5);
  h.writeUInt32BE(pt.length, 0);
  h[4] = 1;
  const ct = await sender.seal(pt, cat(header, [1]));
  // The response keys wait for the node's response nonce, the first 32
  // bytes of its answer (of the first event when streamed): RFC 9458 §4.4.
  const secret = new Uint8Array(await sender.export(enc8.encode("veil-seal/1 response"), 32));
  // one opener per response: a replayed request's answer has its own nonce
  const opener = () => {
    let key = null;
    let baseNonce = null;
    let counter = 0;
    return async (buf) => {
      if (!key) {
        const salt = cat(new Uint8Array(sender.enc), buf.subarray(0, 32));
        const ikm = await webcrypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
        const hkdf = async (info, n) =>
          new Uint8Array(await webcrypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info: enc8.encode(info) }, ikm, n * 8));
        key = await webcrypto.subtle.importKey("raw", await hkdf("key", 32), "AES-GCM", false, ["decrypt"]);
        baseNonce = await hkdf("nonce", 12);
        buf = buf.subarray(32);
      }
      const len = buf.readUInt32BE(0);
      const flags = buf[4];
      const iv = baseNonce.slice();
      for (let i = 0, c = counter; i < 6; i++, c = Math.floor(c / 256)) iv[11 - i] ^= c & 0xff;
      counter++;
      const pt2 = Buffer.from(
        await webcrypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: cat(prefix(0x02), [flags]) }, key, buf.subarray(5)),
      );
      if (pt2.length !== len) throw new Error("length mismatch");
      return { pt: pt2, final: (flags & 1) === 1 };
    };
  };
  return { body: cat(header, h, new Uint8Array(ct)), openChunk: opener(), opener };
}
