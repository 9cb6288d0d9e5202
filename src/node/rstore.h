/* veil-node: the store behind GET /v1/signature/{id} (NEAR AI's shape):
 * each answer's receipt text and its two signatures, by completion id.
 *
 * Receipts are kept `keep_ms` (the node: 60 minutes) and at least as long
 * as the issue promises (20 minutes) unless more than `max` arrive in
 * that time: the store is bounded, and when it is full the oldest goes.
 * It starts small and doubles as receipts come (an idle node holds a few
 * KiB, a full one about max * 400 bytes); lookups go through a hash
 * index, so a full store answers as fast as an empty one.
 *
 * Not thread-safe: the node's event loop owns it.  The clock is the
 * caller's (monotonic milliseconds), so tests can drive it. */
#ifndef VEIL_NODE_RSTORE_H
#define VEIL_NODE_RSTORE_H

#include <stddef.h>
#include <stdint.h>

#define RSTORE_ID_MAX 79
#define RSTORE_ED_SIG_HEX 128              /* Ed25519: 64 bytes, hex */
#define RSTORE_EC_SIG_HEX 132              /* EIP-191: "0x" + 65 bytes, hex */
/* The promise: a receipt younger than this that has to go (the store is
 * full) is counted (rstore_stats.early) and logged. */
#define RSTORE_PROMISED_MS (20ull * 60 * 1000)

struct rstore;

struct rstore_entry {
	const char *id;
	const char *text;                  /* "model:sha256(req):sha256(resp)" */
	const char *ed_sig;                /* hex, RSTORE_ED_SIG_HEX chars */
	const char *ec_sig;                /* "0x" + hex, RSTORE_EC_SIG_HEX chars */
};

struct rstore_stats {
	size_t n, cap;                     /* held now; slots allocated */
	uint64_t early;                    /* evicted before RSTORE_PROMISED_MS */
};

/* max: most receipts held (at least 1); keep_ms: how long one is kept. */
int rstore_new(size_t max, uint64_t keep_ms, struct rstore **out);
void rstore_free(struct rstore *s);
/* Stores a receipt at now_ms.  text is taken over (freed by the store, on
 * success and on failure alike); the id (at most RSTORE_ID_MAX chars) and
 * the signatures are copied.  VEIL_EINVAL for an id or signature of the
 * wrong size, VEIL_ENOMEM.  *early_evicted (may be NULL) is set when a
 * receipt younger than RSTORE_PROMISED_MS had to go to make room. */
int rstore_add(struct rstore *s, uint64_t now_ms, const char *id, char *text,
	       const char *ed_sig_hex, const char *ec_sig_hex, int *early_evicted);
/* The receipt with this id, kept and not expired at now_ms: 0 and *out
 * (pointers into the store, valid until the next rstore_add), or
 * VEIL_ENOENT. */
int rstore_find(struct rstore *s, uint64_t now_ms, const char *id, struct rstore_entry *out);
void rstore_stats(const struct rstore *s, struct rstore_stats *st);

#endif
