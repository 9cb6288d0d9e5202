/* SHA-256 through one EVP_MD fetched once per process.
 *
 * With EVP_sha256() every EVP_Digest* call has OpenSSL 3 look the
 * algorithm up in its provider tables again (locks and a hash lookup):
 * on a request path that cost more than hashing a small body itself.  The
 * fetched object is immutable, shared by every thread, and kept for the
 * life of the process.  If the fetch fails, EVP_sha256() is used. */
#ifndef VEIL_DIGEST_H
#define VEIL_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* The fetched SHA-256 (never NULL; not to be freed). */
const EVP_MD *veil_digest_sha256_md(void);
/* out = SHA-256 of the n bytes at p. */
void veil_digest_sha256(const void *p, size_t n, uint8_t out[32]);

/* out = HMAC-SHA256(key, a || b || c) (RFC 2104), for HKDF (HPKE's key
 * schedule, veil-seal's response keys): on EVP_Digest* with the fetched
 * SHA-256, since OpenSSL 3.0's EVP_MAC / EVP_KDF cost more per call (a new
 * context, a fetch by name, parameter parsing) than the hashing.  `mc` is
 * the caller's digest context, reused across calls; empty parts may be
 * NULL.  key_len <= 64 (VEIL_EINTERNAL otherwise).  Intermediate values
 * are wiped. */
int veil_hmac_sha256(EVP_MD_CTX *mc, const uint8_t *key, size_t key_len,
		     const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
		     const uint8_t *c, size_t c_len, uint8_t out[32]);

/* HKDF-SHA256 (RFC 5869) on veil_hmac_sha256, same `mc` rule: Extract
 * (an empty salt allowed) and Expand of 1..VEIL_HKDF_SHA256_MAX bytes
 * (VEIL_ERANGE otherwise; `out` wiped on failure). */
#define VEIL_HKDF_SHA256_MAX (255 * 32)
int veil_hkdf_sha256_extract(EVP_MD_CTX *mc, const uint8_t *salt, size_t salt_len,
			     const uint8_t *ikm, size_t ikm_len, uint8_t prk[32]);
int veil_hkdf_sha256_expand(EVP_MD_CTX *mc, const uint8_t prk[32], const uint8_t *info,
			    size_t info_len, uint8_t *out, size_t len);

#endif
