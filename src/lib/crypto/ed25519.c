/* Ed25519 (RFC 8032 §5.1, pure Ed25519) on libsodium (Debian 1.0.18).
 *
 * libsodium's Ed25519 (the ref10 code, constant-time signing) signs in about
 * a third and verifies in about half the time of OpenSSL 3.0's EVP path,
 * which also pays a key import and an algorithm fetch per call; see
 * docs/security.md.  Signatures are the same bytes (RFC 8032 signing is
 * deterministic).
 *
 * Verification is libsodium's, which is stricter than RFC 8032 §5.1.7 and
 * than OpenSSL.  Besides signatures that do not verify, it refuses:
 *   - S >= L (non-canonical S; OpenSSL refuses these too),
 *   - a public key that is a small-order point (the 8 torsion points), or
 *     whose encoding is non-canonical, or that does not decode to a point,
 *   - an R that is a small-order point,
 * and it compares R by its encoding, so a non-canonical R never verifies.
 * Keys and signatures made by any honest RFC 8032 signer are unaffected.
 *
 * The key holds libsodium's 64-byte secret key (seed || public key) in a
 * veil_secret, wiped when the key is freed; the seed is its first half. */
#include "veil/sign.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto_impl.h"

#define SK_LEN crypto_sign_SECRETKEYBYTES /* 64: seed || public key */

struct veil_ed25519_key {
	struct veil_secret sk;
	uint8_t pub[VEIL_ED25519_PUB_LEN];
};

_Static_assert(crypto_sign_SEEDBYTES == VEIL_ED25519_SEED_LEN, "seed length");
_Static_assert(crypto_sign_PUBLICKEYBYTES == VEIL_ED25519_PUB_LEN, "public key length");
_Static_assert(crypto_sign_BYTES == VEIL_ED25519_SIG_LEN, "signature length");
_Static_assert(crypto_sign_SECRETKEYBYTES == 64, "secret key layout");

int veil_ed25519_key_from_seed(const uint8_t seed[VEIL_ED25519_SEED_LEN],
			       struct veil_ed25519_key **out)
{
	struct veil_ed25519_key *k = NULL;
	int rc;

	if ((rc = crypto_sodium_ready("ed25519")) < 0)
		return rc;
	if (!(k = calloc(1, sizeof(*k))))
		return VEIL_ENOMEM;
	if ((rc = veil_secret_alloc(&k->sk, SK_LEN)) < 0)
		goto out;
	/* RFC 8032 §5.1.5: SHA-512 of the seed, clamp, A = a*B. */
	if (crypto_sign_seed_keypair(k->pub, k->sk.bytes, seed) != 0) {
		rc = veil_errf(VEIL_EINTERNAL, "ed25519: libsodium key setup failed");
		goto out;
	}
	*out = k;
	k = NULL;
	rc = 0;
out:
	veil_ed25519_key_free(k);
	return rc;
}

int veil_ed25519_key_generate(struct veil_ed25519_key **out)
{
	uint8_t seed[VEIL_ED25519_SEED_LEN];
	int rc;

	if ((rc = veil_random(seed, sizeof(seed))) == 0)
		rc = veil_ed25519_key_from_seed(seed, out);
	veil_wipe(seed, sizeof(seed));
	return rc;
}

void veil_ed25519_key_free(struct veil_ed25519_key *key)
{
	if (!key)
		return;
	veil_secret_free(&key->sk); /* wipes seed and expanded key material */
	veil_wipe(key, sizeof(*key));
	free(key);
}

void veil_ed25519_public(const struct veil_ed25519_key *key,
			 uint8_t pub[VEIL_ED25519_PUB_LEN])
{
	memcpy(pub, key->pub, VEIL_ED25519_PUB_LEN);
}

int veil_ed25519_export_seed(const struct veil_ed25519_key *key,
			     struct veil_secret *out)
{
	struct veil_secret s = {0};
	int rc;

	if ((rc = veil_secret_alloc(&s, VEIL_ED25519_SEED_LEN)) < 0)
		return rc;
	/* libsodium's secret key is seed || public key. */
	memcpy(s.bytes, key->sk.bytes, VEIL_ED25519_SEED_LEN);
	*out = s;
	return 0;
}

int veil_ed25519_sign(const struct veil_ed25519_key *key, const void *msg,
		      size_t n, uint8_t sig[VEIL_ED25519_SIG_LEN])
{
	uint8_t tmp[VEIL_ED25519_SIG_LEN];
	int rc;

	if ((rc = crypto_sodium_ready("ed25519")) < 0)
		return rc;
	if (crypto_sign_detached(tmp, NULL, msg ? msg : (const void *)"", n,
				 key->sk.bytes) != 0)
		return veil_errf(VEIL_EINTERNAL, "ed25519: libsodium sign failed");
	memcpy(sig, tmp, VEIL_ED25519_SIG_LEN);
	return 0;
}

int veil_ed25519_verify(const uint8_t pub[VEIL_ED25519_PUB_LEN],
			const void *msg, size_t n,
			const uint8_t sig[VEIL_ED25519_SIG_LEN])
{
	int rc;

	if ((rc = crypto_sodium_ready("ed25519")) < 0)
		return rc;
	/* libsodium does not say which check failed: a bad signature, S >= L,
	 * or a public key / R that is invalid or of small order (see the top
	 * of this file). */
	if (crypto_sign_verify_detached(sig, msg ? msg : (const void *)"", n, pub) != 0)
		return veil_errf(VEIL_EBADMSG, "ed25519: signature does not verify (or the "
					       "public key is not a valid, non-small-order point)");
	return 0;
}
