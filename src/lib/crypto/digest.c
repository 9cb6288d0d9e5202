/* SHA-256 fetched once (include/veil/digest.h says why). */
#include "veil/digest.h"

#include <pthread.h>
#include <string.h>

#include "veil/base.h"

static EVP_MD *g_sha256;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fetch(void)
{
	g_sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

const EVP_MD *veil_digest_sha256_md(void)
{
	pthread_once(&g_once, fetch);
	return g_sha256 ? g_sha256 : EVP_sha256();
}

void veil_digest_sha256(const void *p, size_t n, uint8_t out[32])
{
	unsigned len = 32;

	EVP_Digest(p, n, out, &len, veil_digest_sha256_md(), NULL);
}

int veil_hmac_sha256(EVP_MD_CTX *mc, const uint8_t *key, size_t key_len,
		     const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
		     const uint8_t *c, size_t c_len, uint8_t out[32])
{
	uint8_t pad[64], inner[32];
	unsigned n1 = 0, n2 = 0;
	int ok;

	if (key_len > sizeof(pad))
		return veil_errf(VEIL_EINTERNAL, "HMAC: key of %zu bytes", key_len);
	memset(pad, 0x36, sizeof(pad));
	for (size_t i = 0; i < key_len; i++)
		pad[i] ^= key[i];
	ok = EVP_DigestInit_ex2(mc, veil_digest_sha256_md(), NULL) > 0 &&
	     EVP_DigestUpdate(mc, pad, sizeof(pad)) > 0 &&
	     (!a_len || EVP_DigestUpdate(mc, a, a_len) > 0) &&
	     (!b_len || EVP_DigestUpdate(mc, b, b_len) > 0) &&
	     (!c_len || EVP_DigestUpdate(mc, c, c_len) > 0) &&
	     EVP_DigestFinal_ex(mc, inner, &n1) > 0;
	for (size_t i = 0; i < sizeof(pad); i++)
		pad[i] ^= 0x36 ^ 0x5c;
	ok = ok && EVP_DigestInit_ex2(mc, veil_digest_sha256_md(), NULL) > 0 &&
	     EVP_DigestUpdate(mc, pad, sizeof(pad)) > 0 &&
	     EVP_DigestUpdate(mc, inner, sizeof(inner)) > 0 &&
	     EVP_DigestFinal_ex(mc, out, &n2) > 0 && n1 == 32 && n2 == 32;
	veil_wipe(pad, sizeof(pad));
	veil_wipe(inner, sizeof(inner));
	return ok ? 0 : veil_errf(VEIL_EINTERNAL, "HMAC-SHA256 failed");
}

int veil_hkdf_sha256_extract(EVP_MD_CTX *mc, const uint8_t *salt, size_t salt_len,
			     const uint8_t *ikm, size_t ikm_len, uint8_t prk[32])
{
	/* an empty salt is HashLen zeros (RFC 5869 2.2), which HMAC's zero
	 * padding makes of an empty key */
	return veil_hmac_sha256(mc, salt, salt_len, ikm, ikm_len, NULL, 0, NULL, 0, prk);
}

int veil_hkdf_sha256_expand(EVP_MD_CTX *mc, const uint8_t prk[32], const uint8_t *info,
			    size_t info_len, uint8_t *out, size_t len)
{
	uint8_t t[32];
	size_t off = 0;
	int rc = 0;

	if (len == 0 || len > VEIL_HKDF_SHA256_MAX)
		return veil_errf(VEIL_ERANGE, "HKDF: length %zu not in 1..%d", len,
				 VEIL_HKDF_SHA256_MAX);
	/* T(i) = HMAC(prk, T(i-1) || info || i) */
	for (uint8_t i = 1; off < len; i++) {
		size_t k = VEIL_MIN(len - off, sizeof(t));

		if ((rc = veil_hmac_sha256(mc, prk, 32, t, i > 1 ? sizeof(t) : 0, info,
					   info_len, &i, 1, t)) < 0)
			break;
		memcpy(out + off, t, k);
		off += k;
	}
	if (rc < 0)
		veil_wipe(out, len);
	veil_wipe(t, sizeof(t));
	return rc;
}
