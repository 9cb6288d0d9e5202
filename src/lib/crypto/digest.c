/* SHA-256 fetched once (include/veil/digest.h says why). */
#include "veil/digest.h"

#include <pthread.h>

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
