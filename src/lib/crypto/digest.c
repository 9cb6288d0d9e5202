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
