/* Internal to src/lib/crypto: what several of its files share. */
#ifndef VEIL_CRYPTO_IMPL_H
#define VEIL_CRYPTO_IMPL_H

/* 0 once libsodium is initialised (sodium_init, run once per process:
 * it picks CPU-specific code and must precede any other libsodium call);
 * VEIL_EINTERNAL with a detail naming `who` when it failed. */
int crypto_sodium_ready(const char *who);

#endif
