/* The receipt store (rstore.h).
 *
 * A ring of slots in arrival order, oldest at `head`, numbered by a
 * sequence that only grows: slot k of the ring holds receipt
 * head_seq + k.  The hash index maps an id's bucket to the newest receipt
 * in it, and each slot links to the next older one of its bucket (by
 * sequence).  Receipts only ever leave from the old end, so a link to a
 * sequence below head_seq ends the chain: eviction touches no index. */
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"

#include "rstore.h"

#define RSTORE_FIRST 256               /* slots at first */

struct slot {
	uint64_t seq;
	uint64_t t_ms;
	uint64_t older;                    /* seq + 1 of the next older in the bucket; 0: none */
	char *text;
	uint8_t ed[RSTORE_ED_SIG_HEX / 2];
	uint8_t ec[(RSTORE_EC_SIG_HEX - 2) / 2];
	char id[RSTORE_ID_MAX + 1];
};

struct rstore {
	struct slot *ring;
	size_t cap, head, n, max;
	uint64_t head_seq;                 /* seq of ring[head] (next seq when empty) */
	uint64_t *bucket;                  /* seq + 1 of the newest; 0: empty */
	size_t nbucket;                    /* a power of two, >= 2 * cap */
	uint64_t keep_ms, early;
	/* find's answer: the signatures in hex */
	char ed_hex[RSTORE_ED_SIG_HEX + 1];
	char ec_hex[RSTORE_EC_SIG_HEX + 1];
};

static uint64_t id_hash(const char *id)
{
	uint64_t h = 0xcbf29ce484222325ull;     /* FNV-1a */

	for (; *id; id++)
		h = (h ^ (uint8_t)*id) * 0x100000001b3ull;
	return h;
}

static struct slot *at_seq(struct rstore *s, uint64_t seq)
{
	return &s->ring[(s->head + (size_t)(seq - s->head_seq)) % s->cap];
}

static void index_add(struct rstore *s, struct slot *e)
{
	uint64_t *b = &s->bucket[id_hash(e->id) & (s->nbucket - 1)];

	e->older = *b;
	*b = e->seq + 1;
}

/* Ring and index of `cap` slots (a power of two), the live receipts moved
 * over oldest first, so the index's chains stay newest to oldest. */
static int resize(struct rstore *s, size_t cap)
{
	size_t nb = 2 * cap;
	struct slot *ring = calloc(cap, sizeof(*ring));
	uint64_t *bucket = calloc(nb, sizeof(*bucket));

	if (!ring || !bucket) {
		free(ring);
		free(bucket);
		return VEIL_ENOMEM;
	}
	for (size_t k = 0; k < s->n; k++)
		ring[k] = s->ring[(s->head + k) % s->cap];
	free(s->ring);
	free(s->bucket);
	s->ring = ring;
	s->bucket = bucket;
	s->cap = cap;
	s->nbucket = nb;
	s->head = 0;
	for (size_t k = 0; k < s->n; k++)
		index_add(s, &s->ring[k]);
	return 0;
}

int rstore_new(size_t max, uint64_t keep_ms, struct rstore **out)
{
	struct rstore *s;
	int rc;

	*out = NULL;
	if (max < 1 || max > ((size_t)1 << 30))
		return VEIL_EINVAL;
	if (!(s = calloc(1, sizeof(*s))))
		return VEIL_ENOMEM;
	s->max = max;
	s->keep_ms = keep_ms;
	if ((rc = resize(s, RSTORE_FIRST)) < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void drop_oldest(struct rstore *s)
{
	struct slot *e = &s->ring[s->head];

	free(e->text);
	e->text = NULL;
	s->head = (s->head + 1) % s->cap;
	s->head_seq++;
	s->n--;
}

void rstore_free(struct rstore *s)
{
	if (!s)
		return;
	while (s->n)
		drop_oldest(s);
	free(s->ring);
	free(s->bucket);
	free(s);
}

/* Expiry: `now` earlier than a receipt's time (a caller's clock is
 * monotonic; never in practice) keeps it. */
static void expire(struct rstore *s, uint64_t now)
{
	while (s->n && now > s->ring[s->head].t_ms &&
	       now - s->ring[s->head].t_ms > s->keep_ms)
		drop_oldest(s);
}

int rstore_add(struct rstore *s, uint64_t now_ms, const char *id, char *text,
	       const char *ed_sig_hex, const char *ec_sig_hex, int *early_evicted)
{
	struct slot *e;
	size_t len, olen;
	int rc;

	if (early_evicted)
		*early_evicted = 0;
	if (!id || !text || !ed_sig_hex || !ec_sig_hex || (len = strlen(id)) == 0 ||
	    len > RSTORE_ID_MAX || strlen(ed_sig_hex) != RSTORE_ED_SIG_HEX ||
	    strlen(ec_sig_hex) != RSTORE_EC_SIG_HEX || strncmp(ec_sig_hex, "0x", 2)) {
		rc = VEIL_EINVAL;
		goto fail;
	}
	expire(s, now_ms);
	if (s->n == s->cap && s->cap < s->max) {
		/* double (past max for a power of two: the slots beyond max
		 * stay unused) */
		if ((rc = resize(s, 2 * s->cap)) < 0)
			goto fail;
	}
	if (s->n == s->max || s->n == s->cap) {
		/* full: the oldest goes */
		const struct slot *o = &s->ring[s->head];

		if (now_ms < o->t_ms || now_ms - o->t_ms < RSTORE_PROMISED_MS) {
			s->early++;
			if (early_evicted)
				*early_evicted = 1;
		}
		drop_oldest(s);
	}
	e = &s->ring[(s->head + s->n) % s->cap];
	memset(e, 0, sizeof(*e));
	if (veil_hex_decode(ed_sig_hex, RSTORE_ED_SIG_HEX, e->ed, sizeof(e->ed), &olen) < 0 ||
	    veil_hex_decode(ec_sig_hex + 2, RSTORE_EC_SIG_HEX - 2, e->ec, sizeof(e->ec),
			    &olen) < 0) {
		rc = VEIL_EINVAL;
		goto fail;
	}
	e->seq = s->head_seq + s->n;
	e->t_ms = now_ms;
	e->text = text;
	memcpy(e->id, id, len + 1);
	s->n++;
	index_add(s, e);
	return 0;
fail:
	free(text);
	return rc;
}

int rstore_find(struct rstore *s, uint64_t now_ms, const char *id, struct rstore_entry *out)
{
	uint64_t q;

	expire(s, now_ms);
	if (!id || strlen(id) > RSTORE_ID_MAX)
		return VEIL_ENOENT;
	for (q = s->bucket[id_hash(id) & (s->nbucket - 1)]; q; q = at_seq(s, q - 1)->older) {
		struct slot *e;

		if (q - 1 < s->head_seq)
			break; /* gone, and everything older in the chain too */
		e = at_seq(s, q - 1);
		if (!strcmp(e->id, id)) {
			veil_hex_encode(e->ed, sizeof(e->ed), s->ed_hex, sizeof(s->ed_hex));
			s->ec_hex[0] = '0';
			s->ec_hex[1] = 'x';
			veil_hex_encode(e->ec, sizeof(e->ec), s->ec_hex + 2, sizeof(s->ec_hex) - 2);
			out->id = e->id;
			out->text = e->text;
			out->ed_sig = s->ed_hex;
			out->ec_sig = s->ec_hex;
			return 0;
		}
	}
	return VEIL_ENOENT;
}

void rstore_stats(const struct rstore *s, struct rstore_stats *st)
{
	st->n = s->n;
	st->cap = VEIL_MIN(s->cap, s->max);
	st->early = s->early;
}
