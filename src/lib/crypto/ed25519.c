/* Ed25519 (RFC 8032 §5.1, pure Ed25519) over OpenSSL 3.0's EVP interface.
 *
 * The key keeps its EVP_PKEY so signing does not re-derive the public key
 * each time; OpenSSL cleanses the private key when the EVP_PKEY is freed.
 * The seed is kept too (in a veil_secret) so it can be exported. */
#include "veil/sign.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

struct veil_ed25519_key {
	EVP_PKEY *pkey;
	struct veil_secret seed;
	uint8_t pub[VEIL_ED25519_PUB_LEN];
};

int veil_ed25519_key_from_seed(const uint8_t seed[VEIL_ED25519_SEED_LEN],
			       struct veil_ed25519_key **out)
{
	struct veil_ed25519_key *k = calloc(1, sizeof(*k));
	size_t publen = VEIL_ED25519_PUB_LEN;
	int rc;

	if (!k)
		return VEIL_ENOMEM;
	if ((rc = veil_secret_alloc(&k->seed, VEIL_ED25519_SEED_LEN)) < 0)
		goto out;
	memcpy(k->seed.bytes, seed, VEIL_ED25519_SEED_LEN);
	k->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed,
					       VEIL_ED25519_SEED_LEN);
	if (!k->pkey ||
	    EVP_PKEY_get_raw_public_key(k->pkey, k->pub, &publen) != 1 ||
	    publen != VEIL_ED25519_PUB_LEN) {
		rc = veil_errf(VEIL_EINTERNAL, "ed25519: OpenSSL key setup failed");
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
	EVP_PKEY_free(key->pkey);
	veil_secret_free(&key->seed);
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
	memcpy(s.bytes, key->seed.bytes, VEIL_ED25519_SEED_LEN);
	*out = s;
	return 0;
}

int veil_ed25519_sign(const struct veil_ed25519_key *key, const void *msg,
		      size_t n, uint8_t sig[VEIL_ED25519_SIG_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t tmp[VEIL_ED25519_SIG_LEN];
	size_t siglen = sizeof(tmp);
	int rc = 0;

	if (!ctx)
		return VEIL_ENOMEM;
	/* Ed25519 is a one-shot signature: no digest, EVP_DigestSign only. */
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) != 1 ||
	    EVP_DigestSign(ctx, tmp, &siglen, msg ? msg : (const void *)"", n) != 1 ||
	    siglen != VEIL_ED25519_SIG_LEN)
		rc = veil_errf(VEIL_EINTERNAL, "ed25519: OpenSSL sign failed");
	if (rc < 0)
		ERR_clear_error();
	else
		memcpy(sig, tmp, VEIL_ED25519_SIG_LEN);
	EVP_MD_CTX_free(ctx);
	return rc;
}

int veil_ed25519_verify(const uint8_t pub[VEIL_ED25519_PUB_LEN],
			const void *msg, size_t n,
			const uint8_t sig[VEIL_ED25519_SIG_LEN])
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub,
						   VEIL_ED25519_PUB_LEN);
	EVP_MD_CTX *ctx = NULL;
	int rc;

	if (!pk) {
		ERR_clear_error();
		return veil_errf(VEIL_EBADMSG, "ed25519: public key is not a valid point");
	}
	if (!(ctx = EVP_MD_CTX_new())) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) != 1) {
		rc = veil_errf(VEIL_EINTERNAL, "ed25519: OpenSSL verify setup failed");
		goto out;
	}
	if (EVP_DigestVerify(ctx, sig, VEIL_ED25519_SIG_LEN,
			     msg ? msg : (const void *)"", n) != 1) {
		ERR_clear_error(); /* OpenSSL queues a reason; ours is below */
		rc = veil_errf(VEIL_EBADMSG, "ed25519: signature does not verify");
		goto out;
	}
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return rc;
}
