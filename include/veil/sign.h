/* veil sign module: Ed25519 (RFC 8032) and secp256k1 ECDSA with Ethereum's
 * EIP-191 "personal_sign" (version 0x45) messages.
 *
 * Backends: libsodium for Ed25519, libsecp256k1 for secp256k1 (why:
 * docs/security.md); Keccak-256, EIP-191 and EIP-55 are veil's own.
 *
 * Keys are opaque, heap-allocated and hold their private half in wiped
 * memory; free them with the matching *_key_free() (which wipes).  Public
 * values are plain byte arrays.  Functions return 0 or a negative VEIL_E*
 * code (details via veil_err_detail()); out-params are written only on
 * success.  A signature that does not verify is VEIL_EBADMSG.
 *
 * Every function may be called from any thread, and one key may be used
 * by several threads at once (signing only reads it); only *_key_free
 * needs the key to be unused. */
#ifndef VEIL_SIGN_H
#define VEIL_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "veil/base.h"

/* ---- Ed25519 (RFC 8032, pure, no context) ------------------------------ */

#define VEIL_ED25519_SEED_LEN 32
#define VEIL_ED25519_PUB_LEN 32
#define VEIL_ED25519_SIG_LEN 64

struct veil_ed25519_key;

/* A key from its 32-byte RFC 8032 private key ("seed"). */
int veil_ed25519_key_from_seed(const uint8_t seed[VEIL_ED25519_SEED_LEN],
			       struct veil_ed25519_key **out);
/* A fresh key from the kernel CSPRNG. */
int veil_ed25519_key_generate(struct veil_ed25519_key **out);
/* Wipes and frees; NULL is fine. */
void veil_ed25519_key_free(struct veil_ed25519_key *key);

void veil_ed25519_public(const struct veil_ed25519_key *key,
			 uint8_t pub[VEIL_ED25519_PUB_LEN]);
/* Copies the seed into a fresh secret (caller frees with veil_secret_free). */
int veil_ed25519_export_seed(const struct veil_ed25519_key *key,
			     struct veil_secret *out);

/* Deterministic signature R||S of n message bytes. */
int veil_ed25519_sign(const struct veil_ed25519_key *key, const void *msg,
		      size_t n, uint8_t sig[VEIL_ED25519_SIG_LEN]);
/* 0 when sig is a valid signature of msg under pub; VEIL_EBADMSG when not.
 * Stricter than RFC 8032 §5.1.7 (libsodium's rules): also VEIL_EBADMSG for
 * S >= L, for a public key that is not a canonically encoded point or is
 * of small order, and for a small-order R.  No honest signer produces
 * these; OpenSSL 3.0 accepts the small-order cases. */
int veil_ed25519_verify(const uint8_t pub[VEIL_ED25519_PUB_LEN],
			const void *msg, size_t n,
			const uint8_t sig[VEIL_ED25519_SIG_LEN]);

/* ---- secp256k1 ECDSA --------------------------------------------------- */

#define VEIL_SECP256K1_PRIV_LEN 32
#define VEIL_SECP256K1_PUB_LEN 65  /* uncompressed: 0x04 || X || Y */
#define VEIL_SECP256K1_RS_LEN 64   /* r || s, 32 bytes big-endian each */
#define VEIL_ETH_ADDRESS_LEN 20
#define VEIL_ETH_ADDRESS_STR_LEN 43 /* "0x" + 40 hex + NUL */

/* Nonce choice for signing. */
enum veil_secp256k1_nonce {
	VEIL_SECP256K1_RFC6979 = 0, /* deterministic k, RFC 6979 §3.2, HMAC-SHA256 */
	/* k unpredictable: RFC 6979's generator with 32 fresh bytes from the
	 * kernel CSPRNG as §3.6 additional data, so k depends on the key, the
	 * digest and the randomness (never repeats across digests even if the
	 * CSPRNG did). */
	VEIL_SECP256K1_RANDOM = 1,
};

struct veil_secp256k1_key;

/* A key from a 32-byte big-endian scalar; VEIL_EINVAL unless 1 <= d < n. */
int veil_secp256k1_key_from_private(const uint8_t priv[VEIL_SECP256K1_PRIV_LEN],
				    struct veil_secp256k1_key **out);
int veil_secp256k1_key_generate(struct veil_secp256k1_key **out);
void veil_secp256k1_key_free(struct veil_secp256k1_key *key);

void veil_secp256k1_public(const struct veil_secp256k1_key *key,
			   uint8_t pub[VEIL_SECP256K1_PUB_LEN]);
void veil_secp256k1_address(const struct veil_secp256k1_key *key,
			    uint8_t addr[VEIL_ETH_ADDRESS_LEN]);
int veil_secp256k1_export_private(const struct veil_secp256k1_key *key,
				  struct veil_secret *out);

/* Signs a 32-byte digest.  s is normalised to the low half (s <= n/2) and
 * *recid (0 or 1) is the recovery id matching the normalised signature. */
int veil_secp256k1_sign_hash(const struct veil_secp256k1_key *key,
			     const uint8_t hash[32],
			     enum veil_secp256k1_nonce nonce,
			     uint8_t rs[VEIL_SECP256K1_RS_LEN], int *recid);
/* Verifies r||s over a 32-byte digest with an uncompressed public key.
 * High-s signatures are rejected (VEIL_EBADMSG), as in Ethereum (EIP-2). */
int veil_secp256k1_verify_hash(const uint8_t pub[VEIL_SECP256K1_PUB_LEN],
			       const uint8_t hash[32],
			       const uint8_t rs[VEIL_SECP256K1_RS_LEN]);
/* Recovers the public key that made r||s over hash with recovery id recid
 * (0..3).  High-s and out-of-range r/s are VEIL_EBADMSG. */
int veil_secp256k1_recover(const uint8_t hash[32],
			   const uint8_t rs[VEIL_SECP256K1_RS_LEN], int recid,
			   uint8_t pub[VEIL_SECP256K1_PUB_LEN]);

/* Validates an uncompressed public key (prefix 0x04, point on the curve). */
int veil_secp256k1_pub_check(const uint8_t pub[VEIL_SECP256K1_PUB_LEN]);
/* Ethereum address: last 20 bytes of Keccak-256(X || Y). */
void veil_secp256k1_pub_to_address(const uint8_t pub[VEIL_SECP256K1_PUB_LEN],
				   uint8_t addr[VEIL_ETH_ADDRESS_LEN]);

/* "0x" + EIP-55 mixed-case checksummed hex, NUL-terminated. */
void veil_eth_address_format(const uint8_t addr[VEIL_ETH_ADDRESS_LEN],
			     char out[VEIL_ETH_ADDRESS_STR_LEN]);
/* Parses "0x" + 40 hex (the "0x" is optional).  All-lower or all-upper hex
 * is accepted as is; mixed case must carry a valid EIP-55 checksum
 * (VEIL_EFORMAT otherwise). */
int veil_eth_address_parse(const char *s, uint8_t addr[VEIL_ETH_ADDRESS_LEN]);

/* ---- EIP-191 personal_sign --------------------------------------------- */

#define VEIL_EIP191_SIG_LEN 65 /* r || s || v, v = 27 + recid */

/* keccak256("\x19Ethereum Signed Message:\n" || decimal(n) || msg). */
void veil_eip191_hash(const void *msg, size_t n, uint8_t hash[32]);
/* Signs msg (n bytes) as personal_sign: r || s || v with v in {27, 28}. */
int veil_eip191_sign(const struct veil_secp256k1_key *key, const void *msg,
		     size_t n, enum veil_secp256k1_nonce nonce,
		     uint8_t sig[VEIL_EIP191_SIG_LEN]);
/* Recovers the signer's address (and, when pub is non-NULL, public key).
 * v may be 27/28 or 0/1; anything else is VEIL_EBADMSG. */
int veil_eip191_recover(const void *msg, size_t n,
			const uint8_t sig[VEIL_EIP191_SIG_LEN],
			uint8_t addr[VEIL_ETH_ADDRESS_LEN],
			uint8_t pub[VEIL_SECP256K1_PUB_LEN]);
/* 0 when sig is a personal_sign signature of msg by addr, else
 * VEIL_EBADMSG. */
int veil_eip191_verify(const void *msg, size_t n,
		       const uint8_t sig[VEIL_EIP191_SIG_LEN],
		       const uint8_t addr[VEIL_ETH_ADDRESS_LEN]);

#endif
