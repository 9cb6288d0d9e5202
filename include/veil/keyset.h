/* veil keyset module: the canonical, versioned encoding of a node's public
 * keys, hashed into TEE report_data (DESIGN.md §4; byte layout in
 * docs/protocol.md, "Public-key set (report_data binding)").
 *
 *   "veil-keys/1\0"                                12-byte magic + version
 *   entries, strictly ascending type, each once:   u16 type (BE)
 *                                                  u16 length (BE)
 *                                                  length bytes of value
 *
 *   type 1  Ed25519 public key          32 bytes
 *   type 2  secp256k1 public key        65 bytes, uncompressed 0x04||X||Y
 *   type 3  Ethereum address            20 bytes; present iff type 2 is, and
 *                                       equal to the address of type 2
 *   type 4  X25519 HPKE public key      32 bytes
 *   type 5  TLS SPKI SHA-256            32 bytes, SHA-256 of the DER
 *                                       SubjectPublicKeyInfo of the TLS key
 *
 * Nothing else may follow the last entry.  Any other type, a known type with
 * another length, a repeat or a wrong order is an error: new key types mean
 * a new version string, so a verifier never hashes what it cannot read.
 *
 *   report_data[0:32]  = SHA-256(encoding)
 *   report_data[32:64] = the verifier's 32-byte nonce */
#ifndef VEIL_KEYSET_H
#define VEIL_KEYSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VEIL_KEYSET_MAGIC "veil-keys/1" /* written with its NUL: 12 bytes */
#define VEIL_KEYSET_MAGIC_LEN 12
#define VEIL_KEYSET_MAX 1024 /* far above the largest valid encoding (213) */
#define VEIL_REPORT_DATA_LEN 64

enum veil_keyset_type {
	VEIL_KEY_ED25519 = 1,
	VEIL_KEY_SECP256K1 = 2,
	VEIL_KEY_ETH_ADDRESS = 3,
	VEIL_KEY_X25519_HPKE = 4,
	VEIL_KEY_TLS_SPKI_SHA256 = 5,
};

/* Bit (1u << type) in `present` marks a key as set. */
#define VEIL_KEYSET_HAS(type) (1u << (type))
/* What a veil node binds: every key it has. */
#define VEIL_KEYSET_NODE                                                  \
	(VEIL_KEYSET_HAS(VEIL_KEY_ED25519) | VEIL_KEYSET_HAS(VEIL_KEY_SECP256K1) | \
	 VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS) |                               \
	 VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE) |                               \
	 VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256))

struct veil_keyset {
	uint32_t present;
	uint8_t ed25519[32];
	uint8_t secp256k1[65];
	uint8_t eth_address[20];
	uint8_t x25519_hpke[32];
	uint8_t tls_spki_sha256[32];
};

/* Sets the secp256k1 key (checked to be a curve point) and the matching
 * address. */
int veil_keyset_set_secp256k1(struct veil_keyset *ks, const uint8_t pub[65]);

/* Writes the canonical encoding of the present keys into out (outcap bytes),
 * *out_len its length.  VEIL_EINVAL when nothing is present or the address
 * does not match the secp256k1 key; VEIL_ERANGE when outcap is too small. */
int veil_keyset_encode(const struct veil_keyset *ks, uint8_t *out,
		       size_t outcap, size_t *out_len);

/* Parses an encoding, checking every length, order and value rule above;
 * VEIL_EFORMAT (with the field named) or VEIL_ENOTSUP (unknown version or
 * type).  Encoding the result gives back exactly p[0:n]. */
int veil_keyset_parse(const uint8_t *p, size_t n, struct veil_keyset *out);

/* SHA-256 of an encoding (report_data[0:32]). */
int veil_keyset_digest(const uint8_t *enc, size_t n, uint8_t out[32]);

/* report_data = SHA-256(enc) || nonce. */
int veil_keyset_report_data(const uint8_t *enc, size_t n,
			    const uint8_t nonce[32],
			    uint8_t out[VEIL_REPORT_DATA_LEN]);

/* Checks that report_data binds this encoding and nonce (constant-time
 * compare); VEIL_EBADMSG naming the half that differs. */
int veil_keyset_check_report_data(const uint8_t *enc, size_t n,
				  const uint8_t nonce[32],
				  const uint8_t report_data[VEIL_REPORT_DATA_LEN]);

#endif
