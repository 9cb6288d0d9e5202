/* veil tdx: the process-wide cache of verified PCK chains (tdx_impl.h).
 *
 * The key is the SHA-256 of the chain's exact PEM bytes as the quote carries
 * them, followed by the SHA-256 of the anchor's DER and of both CRLs' DER:
 * a changed byte anywhere, another anchor or another CRL is another key, and
 * so a miss that parses and verifies everything again. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "../tdx_impl.h"
#include "veil/base.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct tdx_pck_entry *table[TDX_PCK_CACHE_MAX]; /* under lock */
static uint64_t tick;                                  /* under lock */
static atomic_uint_fast64_t counts[4]; /* coll hit, coll miss, pck hit, pck miss */

void tdx_cache_count(bool collateral, bool hit)
{
	atomic_fetch_add_explicit(&counts[(collateral ? 0 : 2) + (hit ? 0 : 1)], 1,
				  memory_order_relaxed);
}

void veil_tdx_cache_stats(struct veil_tdx_cache_stats *out)
{
	if (!out)
		return;
	out->collateral_hits = atomic_load(&counts[0]);
	out->collateral_misses = atomic_load(&counts[1]);
	out->pck_hits = atomic_load(&counts[2]);
	out->pck_misses = atomic_load(&counts[3]);
}

void tdx_pck_key(const uint8_t *pem, size_t n, const uint8_t root_id[32],
		 const struct veil_tdx_collateral *c, uint8_t key[32])
{
	uint8_t ids[4 * 32];

	/* variable part hashed first, then four fixed-size ids: unambiguous */
	SHA256(pem, n, ids);
	memcpy(ids + 32, root_id, 32);
	memcpy(ids + 64, c->root_crl_id, 32);
	memcpy(ids + 96, c->pck_crl_id, 32);
	SHA256(ids, sizeof(ids), key);
}

/* Drops one reference; the caller holds the lock. */
static void unref_locked(struct tdx_pck_entry *e)
{
	if (--e->refs == 0) {
		sk_X509_pop_free(e->chain, X509_free);
		free(e);
	}
}

static struct tdx_pck_entry **find_locked(const uint8_t key[32])
{
	for (size_t i = 0; i < TDX_PCK_CACHE_MAX; i++)
		if (table[i] && memcmp(table[i]->key, key, 32) == 0)
			return &table[i];
	return NULL;
}

struct tdx_pck_entry *tdx_pck_cache_get(const uint8_t key[32])
{
	struct tdx_pck_entry **slot, *e = NULL;

	pthread_mutex_lock(&lock);
	if ((slot = find_locked(key)) != NULL) {
		e = *slot;
		e->refs++;
		e->used = ++tick;
	}
	pthread_mutex_unlock(&lock);
	return e;
}

void tdx_pck_cache_put(const uint8_t key[32], STACK_OF(X509) *chain, int64_t lo,
		       int64_t hi)
{
	struct tdx_pck_entry *e, **slot = NULL;

	if (!(e = calloc(1, sizeof(*e))))
		return;
	if (!(e->chain = X509_chain_up_ref(chain))) {
		free(e);
		return;
	}
	memcpy(e->key, key, 32);
	e->lo = lo;
	e->hi = hi;
	e->refs = 1; /* the table's */
	pthread_mutex_lock(&lock);
	if (find_locked(key)) {
		/* another thread was first */
		unref_locked(e);
		pthread_mutex_unlock(&lock);
		return;
	}
	for (size_t i = 0; i < TDX_PCK_CACHE_MAX; i++) {
		if (!table[i]) {
			slot = &table[i];
			break;
		}
		if (!slot || table[i]->used < (*slot)->used)
			slot = &table[i];
	}
	if (*slot)
		unref_locked(*slot);
	e->used = ++tick;
	*slot = e;
	pthread_mutex_unlock(&lock);
}

void tdx_pck_cache_set_ext(const uint8_t key[32], const struct tdx_pck_ext *ext)
{
	struct tdx_pck_entry **slot;

	pthread_mutex_lock(&lock);
	if ((slot = find_locked(key)) != NULL && !(*slot)->has_ext) {
		(*slot)->ext = *ext;
		(*slot)->has_ext = true;
	}
	pthread_mutex_unlock(&lock);
}

bool tdx_pck_cache_ext(struct tdx_pck_entry *e, struct tdx_pck_ext *out)
{
	bool has;

	pthread_mutex_lock(&lock);
	has = e->has_ext;
	if (has)
		*out = e->ext;
	pthread_mutex_unlock(&lock);
	return has;
}

void tdx_pck_cache_release(struct tdx_pck_entry *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&lock);
	unref_locked(e);
	pthread_mutex_unlock(&lock);
}

void veil_tdx_cache_flush(void)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < TDX_PCK_CACHE_MAX; i++) {
		if (table[i])
			unref_locked(table[i]);
		table[i] = NULL;
	}
	pthread_mutex_unlock(&lock);
	for (size_t i = 0; i < 4; i++)
		atomic_store(&counts[i], 0);
}
