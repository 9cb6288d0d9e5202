/* libsodium's one-time initialisation, shared by Ed25519 and X25519. */
#include <pthread.h>
#include <stdbool.h>

#include <sodium.h>

#include "veil/base.h"

#include "crypto_impl.h"

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static bool sodium_ok;

static void sodium_setup(void)
{
	/* 1: already done by another library in the process, which is fine */
	sodium_ok = sodium_init() >= 0;
}

int crypto_sodium_ready(const char *who)
{
	pthread_once(&sodium_once, sodium_setup);
	if (!sodium_ok)
		return veil_errf(VEIL_EINTERNAL, "%s: libsodium initialisation failed", who);
	return 0;
}
