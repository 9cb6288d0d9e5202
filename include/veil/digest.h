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

#endif
