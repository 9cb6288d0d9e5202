/* API keys on the request path.
 *
 * The store keeps only HMAC(secret, key) and compares in constant time
 * (veil_store_key_lookup).  So that a request costs no database round trip,
 * a key the store accepted is cached in memory for --key-cache-ms (default
 * 5 s), indexed by SHA-256 of a random per-process salt and the key text
 * (the text itself is not kept); unknown keys are cached as such for the
 * same time, so a flood of bad keys does not reach the database either.
 * The salt is what keeps that flood cheap: with an unsalted hash a client
 * could grind well-formed keys that all land in one bucket (2 bytes of
 * SHA-256 to match) and make every lookup walk a chain of thousands on the
 * event loop; a chain is also capped at CHAIN_MAX entries, its oldest
 * evicted.  The cost is the revocation delay: a
 * key revoked by another gateway (or `veil-gateway keys revoke`) keeps
 * working here for up to --key-cache-ms; this gateway's own admin API
 * forgets it at once.  Keys with limits (requests/min, tokens/min, quota)
 * take from their shared rate window in the store on every request. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "gateway.h"

#define CACHE_BUCKETS 16384   /* 4 entries a bucket at CACHE_MAX */
#define CACHE_MAX 65536
#define CHAIN_MAX 16          /* entries a bucket holds; the oldest goes */
#define SALT_LEN 16

struct centry {
	struct centry *next;
	uint8_t h[32];          /* SHA-256(salt || key text) */
	uint64_t expires_ms;    /* monotonic */
	bool known;             /* false: the store does not know the key */
	struct gw_key k;
};

struct gw_key_cache {
	struct centry *b[CACHE_BUCKETS];
	size_t n;
	uint8_t salt[SALT_LEN]; /* random, this process only */
};

int gw_keys_init(struct gw *g)
{
	int rc;

	if (!(g->keys = calloc(1, sizeof(*g->keys))))
		return VEIL_ENOMEM;
	if ((rc = veil_random(g->keys->salt, sizeof(g->keys->salt))) < 0) {
		free(g->keys);
		g->keys = NULL;
		return rc;
	}
	return 0;
}

static void cache_clear(struct gw_key_cache *c)
{
	for (size_t i = 0; i < CACHE_BUCKETS; i++) {
		struct centry *e = c->b[i], *nx;

		for (; e; e = nx) {
			nx = e->next;
			free(e);
		}
		c->b[i] = NULL;
	}
	c->n = 0;
}

void gw_keys_free(struct gw *g)
{
	if (g->keys) {
		cache_clear(g->keys);
		veil_wipe(g->keys->salt, sizeof(g->keys->salt));
		free(g->keys);
		g->keys = NULL;
	}
}

/* h is a salted hash, so its bits are as good as random to a client. */
static size_t bucket(const uint8_t h[32])
{
	return ((size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16) % CACHE_BUCKETS;
}

/* out = SHA-256(salt || key text): the cache's index of a key. */
static void key_hash(const struct gw_key_cache *c, const char *key, size_t len,
		     uint8_t out[32])
{
	uint8_t buf[SALT_LEN + VEIL_STORE_KEY_TEXT_LEN];

	if (len > VEIL_STORE_KEY_TEXT_LEN)
		len = VEIL_STORE_KEY_TEXT_LEN; /* gw_auth passes exactly that */
	memcpy(buf, c->salt, SALT_LEN);
	memcpy(buf + SALT_LEN, key, len);
	veil_digest_sha256(buf, SALT_LEN + len, out);
	veil_wipe(buf, sizeof(buf));
}

static struct centry *cache_get(struct gw_key_cache *c, const uint8_t h[32],
				uint64_t now)
{
	struct centry **pp = &c->b[bucket(h)], *e;

	while ((e = *pp)) {
		if (e->expires_ms <= now) {
			*pp = e->next;
			free(e);
			c->n--;
			continue;
		}
		if (!CRYPTO_memcmp(e->h, h, 32))
			return e;
		pp = &e->next;
	}
	return NULL;
}

static void cache_put(struct gw *g, const uint8_t h[32], bool known,
		      const struct gw_key *k)
{
	struct gw_key_cache *c = g->keys;
	uint64_t now = veil_now_ns() / 1000000;
	struct centry *e = cache_get(c, h, now);

	if (!g->o.key_cache_ms)
		return;
	if (!e) {
		struct centry **pp, **oldest = NULL;
		size_t len = 0;

		if (c->n >= CACHE_MAX)
			cache_clear(c); /* rare: a flood of distinct keys */
		/* cache_get dropped the expired entries of this chain: if the
		 * live ones are CHAIN_MAX, the one put longest ago goes */
		for (pp = &c->b[bucket(h)]; *pp; pp = &(*pp)->next, len++)
			if (!oldest || (*pp)->expires_ms < (*oldest)->expires_ms)
				oldest = pp;
		if (len >= CHAIN_MAX) {
			struct centry *old = *oldest;

			*oldest = old->next;
			free(old);
			c->n--;
		}
		if (!(e = calloc(1, sizeof(*e))))
			return;
		memcpy(e->h, h, 32);
		e->next = c->b[bucket(h)];
		c->b[bucket(h)] = e;
		c->n++;
	}
	e->expires_ms = now + g->o.key_cache_ms;
	e->known = known;
	if (k)
		e->k = *k;
}

void gw_keys_forget(struct gw *g, int64_t key_id)
{
	struct gw_key_cache *c = g->keys;

	for (size_t i = 0; i < CACHE_BUCKETS; i++) {
		struct centry **pp = &c->b[i], *e;

		while ((e = *pp)) {
			if (e->known && e->k.id == key_id) {
				*pp = e->next;
				free(e);
				c->n--;
				continue;
			}
			pp = &e->next;
		}
	}
}

/* ---- jobs --------------------------------------------------------------------- */

struct auth_job {
	struct gw_job job;
	struct gw *g;
	gw_auth_fn cb;
	void *arg;
	char key_text[VEIL_STORE_KEY_TEXT_MAX]; /* wiped after use */
	uint8_t h[32];
	bool lookup;            /* gw_auth's key lookup; else gw_rate's take */
	struct gw_key k;
	bool found, revoked;
	int retry_after;
	int rate_rc, quota_rc;
};

static bool has_limits(const struct gw_key *k)
{
	return k->limits.requests_per_min > 0 || k->limits.tokens_per_min > 0 ||
	       k->limits.quota_tokens > 0;
}

/* A refused request takes nothing: the quota (a read) is checked first,
 * and the rate window is taken from only when the quota lets the request
 * through; a take that does not fit takes nothing either (the store's
 * contract), so neither a 429 (rate or quota) nor a 503 spends a slot of
 * the requests/min or tokens/min window. */
static void rate_run(struct auth_job *a, struct veil_store *s)
{
	a->rate_rc = 0;
	a->quota_rc = 0;
	if (a->k.limits.quota_tokens > 0 &&
	    (a->quota_rc = veil_store_quota_check(s, a->k.id)) < 0)
		return;
	if (a->k.limits.requests_per_min > 0 || a->k.limits.tokens_per_min > 0) {
		/* Tokens are charged once the receipt says how many (writer);
		 * one here makes a window that is already full refuse. */
		a->rate_rc = veil_store_rate_take(s, a->k.id, (int64_t)veil_wall_ms(),
						  a->k.limits.tokens_per_min > 0 ? 1 : 0,
						  &a->retry_after);
	}
}

static void job_run(struct gw_job *j, struct veil_store *s)
{
	struct auth_job *a = (struct auth_job *)j;
	struct veil_store_key_info ki;
	int rc;

	j->rc = 0;
	if (a->lookup) {
		rc = veil_store_key_lookup(s, a->key_text, &ki);
		veil_wipe(a->key_text, sizeof(a->key_text));
		if (rc == VEIL_ENOENT || rc == VEIL_EPERM) {
			a->found = rc == VEIL_EPERM;
			a->revoked = rc == VEIL_EPERM;
			return;
		}
		if (rc < 0) {
			VEIL_ERROR(GW_MOD, "key lookup failed: %s (%s)", veil_strerror(rc),
				   veil_err_detail());
			j->rc = rc;
			return;
		}
		a->found = true;
		a->k.id = ki.id;
		a->k.limits = ki.limits;
		a->k.revoked = ki.revoked_ms != 0;
		return;
	}
	rate_run(a, s);
}

static void finish(struct auth_job *a)
{
	struct gw *g = a->g;
	gw_auth_fn cb = a->cb;
	void *arg = a->arg;
	struct gw_key k = a->k;
	int rr = a->rate_rc, qr = a->quota_rc, ra = a->retry_after;

	veil_wipe(a, sizeof(*a));
	free(a);
	if (rr == VEIL_ENOENT || qr == VEIL_ENOENT) {
		/* revoked (or deleted) since the key was cached: it no longer
		 * authenticates, here or on the next request */
		gw_keys_forget(g, k.id);
		cb(arg, 401, NULL, 0, "invalid_api_key",
		   "Incorrect API key provided (unknown or revoked)");
	} else if (rr == VEIL_EBUSY) {
		cb(arg, 429, &k, ra > 0 ? ra : 1, "rate_limit_exceeded",
		   "Rate limit reached for this API key; retry later");
	} else if (rr == VEIL_EPERM) {
		cb(arg, 429, &k, 60, "rate_limit_exceeded",
		   "This request exceeds the API key's tokens-per-minute limit");
	} else if (rr < 0) {
		cb(arg, 503, &k, 1, "store_unavailable", "The usage store is not available");
	} else if (qr == VEIL_EPERM) {
		cb(arg, 429, &k, 3600, "insufficient_quota",
		   "This API key has used its token quota");
	} else if (qr < 0) {
		cb(arg, 503, &k, 1, "store_unavailable", "The usage store is not available");
	} else {
		cb(arg, 0, &k, 0, NULL, NULL);
	}
}

static void job_done(struct gw_job *j)
{
	struct auth_job *a = (struct auth_job *)j;
	struct gw *g = a->g;

	if (!a->lookup) {
		finish(a);
		return;
	}
	if (j->rc < 0) {
		gw_auth_fn cb = a->cb;
		void *arg = a->arg;

		veil_wipe(a, sizeof(*a));
		free(a);
		cb(arg, 503, NULL, 1, "store_unavailable", "The key store is not available");
		return;
	}
	g->m.key_cache_misses++;
	cache_put(g, a->h, a->found && !a->revoked, a->found ? &a->k : NULL);
	if (!a->found || a->revoked || a->k.revoked) {
		gw_auth_fn cb = a->cb;
		void *arg = a->arg;

		veil_wipe(a, sizeof(*a));
		free(a);
		cb(arg, 401, NULL, 0, "invalid_api_key",
		   "Incorrect API key provided (unknown or revoked)");
		return;
	}
	finish(a);
}

/* A job for the store worker: gw_auth's lookup or gw_rate's take (`k`
 * copied, NULL for a lookup).  NULL after answering 503 itself. */
static struct auth_job *job_new(struct gw *g, const struct gw_key *k, gw_auth_fn cb,
				void *arg)
{
	struct auth_job *a = calloc(1, sizeof(*a));

	if (!a) {
		cb(arg, 503, k, 1, "overloaded", "out of memory");
		return NULL;
	}
	a->job.run = job_run;
	a->job.done = job_done;
	a->g = g;
	a->cb = cb;
	a->arg = arg;
	if (k)
		a->k = *k;
	return a;
}

/* Hands a to the store worker; a full queue answers 503 (a holds the key's
 * text: wiped). */
static void job_submit(struct auth_job *a, const struct gw_key *k)
{
	gw_auth_fn cb = a->cb;
	void *arg = a->arg;

	if (gw_worker_submit(a->g->query, &a->job) < 0) {
		veil_wipe(a, sizeof(*a));
		free(a);
		cb(arg, 503, k, 1, "overloaded", "The gateway is overloaded; retry later");
	}
}

void gw_auth(struct gw *g, struct veil_http_req *req, gw_auth_fn cb, void *arg)
{
	const char *h = veil_http_req_header(req, "Authorization");
	const char *key;
	size_t len;
	uint8_t d[32];
	struct centry *e;
	struct auth_job *a;

	if (!h || strncasecmp(h, "Bearer ", 7)) {
		cb(arg, 401, NULL, 0, "missing_api_key",
		   "You didn't provide an API key (Authorization: Bearer sk-veil-...)");
		return;
	}
	key = h + 7;
	while (*key == ' ')
		key++;
	len = strlen(key);
	if (len != VEIL_STORE_KEY_TEXT_LEN ||
	    strncmp(key, VEIL_STORE_KEY_TAG, strlen(VEIL_STORE_KEY_TAG))) {
		cb(arg, 401, NULL, 0, "invalid_api_key", "Incorrect API key provided");
		return;
	}
	key_hash(g->keys, key, len, d);
	e = cache_get(g->keys, d, veil_now_ns() / 1000000);
	if (e) {
		g->m.key_cache_hits++;
		if (!e->known) {
			cb(arg, 401, NULL, 0, "invalid_api_key",
			   "Incorrect API key provided (unknown or revoked)");
			return;
		}
		struct gw_key k = e->k;

		cb(arg, 0, &k, 0, NULL, NULL);
		return;
	}
	if (!(a = job_new(g, NULL, cb, arg)))
		return;
	memcpy(a->h, d, 32);
	a->lookup = true;
	memcpy(a->key_text, key, len);
	job_submit(a, NULL);
}

void gw_rate(struct gw *g, const struct gw_key *k, gw_auth_fn cb, void *arg)
{
	struct auth_job *a;

	if (!has_limits(k)) {
		struct gw_key c = *k;

		cb(arg, 0, &c, 0, NULL, NULL);
		return;
	}
	if ((a = job_new(g, k, cb, arg)))
		job_submit(a, k); /* lookup false: rate_run only */
}
