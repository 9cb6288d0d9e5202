/* The backend-independent half of the veil store: URI dispatch, argument
 * checks, API-key generation and hashing (HMAC-SHA256 with the server
 * secret, compared with CRYPTO_memcmp), and the per-handle mutex around every
 * backend call.  See include/veil/store.h for the contract. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "veil/base.h"
#include "veil/store.h"
#include "store_impl.h"

struct veil_store {
	pthread_mutex_t mu;
	const struct store_ops *ops;
	void *be;
	struct veil_secret secret; /* HMAC key for API-key hashes */
};

#define TAG_LEN (sizeof(VEIL_STORE_KEY_TAG) - 1)
#define KEY_RAW_LEN 32
#define AUDIT_LIST_MAX 10000

_Static_assert(TAG_LEN + 43 == VEIL_STORE_KEY_TEXT_LEN,
	       "key text = tag + base64url(32 bytes) without padding");
_Static_assert(VEIL_STORE_KEY_PREFIX_LEN > TAG_LEN &&
	       VEIL_STORE_KEY_PREFIX_LEN < VEIL_STORE_KEY_TEXT_LEN,
	       "the prefix shows a few random chars, never most of them");

/* Every backend call runs under the handle's mutex: one connection, its
 * cached statements and SQLite's per-connection state are not shared by two
 * threads at once. */
static void lock(struct veil_store *s)
{
	pthread_mutex_lock(&s->mu);
}

static void unlock(struct veil_store *s)
{
	pthread_mutex_unlock(&s->mu);
}

/* ---- argument checks --------------------------------------------------- */

/* An identifier-like string: present, 1..max bytes, no control chars (they
 * would end up in logs and admin listings). */
static int check_name(const char *field, const char *v, size_t max)
{
	size_t n;

	if (!v)
		return veil_errf(VEIL_EINVAL, "store: %s missing", field);
	n = strnlen(v, max + 1);
	if (n == 0)
		return veil_errf(VEIL_EINVAL, "store: %s is empty", field);
	if (n > max)
		return veil_errf(VEIL_EINVAL, "store: %s longer than %zu bytes",
				 field, max);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return veil_errf(VEIL_EINVAL, "store: %s: control "
					 "character at byte %zu", field, i);
	return 0;
}

/* Optional JSON text (NULL is fine), capped. */
static int check_json(const char *field, const char *v, size_t max)
{
	if (v && strnlen(v, max + 1) > max)
		return veil_errf(VEIL_ERANGE, "store: %s longer than %zu bytes",
				 field, max);
	return 0;
}

static int check_time(const char *field, int64_t t)
{
	if (t < 0)
		return veil_errf(VEIL_EINVAL, "store: %s %lld is negative", field,
				 (long long)t);
	return 0;
}

static int check_count(const char *field, int64_t v)
{
	if (v < 0 || v > VEIL_STORE_TOKENS_MAX)
		return veil_errf(VEIL_EINVAL, "store: %s %lld out of range",
				 field, (long long)v);
	return 0;
}

static int check_id(int64_t id)
{
	if (id <= 0)
		return veil_errf(VEIL_EINVAL, "store: key id %lld",
				 (long long)id);
	return 0;
}

/* [from, to) with 0 meaning unbounded; writes the bounds the backend uses. */
static int check_range(int64_t from_ms, int64_t to_ms, int64_t *to_out)
{
	int rc;

	if ((rc = check_time("from", from_ms)) < 0 ||
	    (rc = check_time("to", to_ms)) < 0)
		return rc;
	*to_out = to_ms ? to_ms : INT64_MAX;
	return 0;
}

/* ---- open / close ------------------------------------------------------ */

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

int veil_store_sqlite_path(const char *uri, char *out, size_t cap)
{
	const char *path, *q;
	size_t plen;

	if (!uri || !out || !cap || !has_prefix(uri, "sqlite:"))
		return veil_errf(VEIL_EINVAL, "store: not a sqlite:PATH URI");
	path = uri + strlen("sqlite:");
	/* An optional "?sync=normal|full" ends the URI; the path itself may
	 * hold any other '?'. */
	if ((q = strrchr(path, '?')) && has_prefix(q, "?sync=")) {
		if (strcmp(q, "?sync=full") != 0 && strcmp(q, "?sync=normal") != 0)
			return veil_errf(VEIL_EINVAL, "store: sqlite: sync must be "
					 "normal or full");
		plen = (size_t)(q - path);
	} else {
		plen = strlen(path);
	}
	if (!plen)
		return veil_errf(VEIL_EINVAL, "store: sqlite: empty path");
	if (plen >= cap)
		return veil_errf(VEIL_ERANGE, "store: sqlite: path too long");
	memcpy(out, path, plen);
	out[plen] = '\0';
	return 0;
}

int veil_store_open(const char *uri, const struct veil_secret *secret,
		    struct veil_store **out)
{
	struct veil_store *s = NULL;
	const struct store_ops *ops;
	const char *path = NULL;
	char pathbuf[4096];
	bool sync_full = false;
	int rc;

	if (!uri || !out)
		return veil_errf(VEIL_EINVAL, "store: open: missing argument");
	if (!secret || !secret->bytes || secret->len != VEIL_STORE_SECRET_LEN)
		return veil_errf(VEIL_EINVAL, "store: the server secret must be "
				 "%d bytes", VEIL_STORE_SECRET_LEN);
	/* The URI is never echoed: a postgres one may carry a password. */
	if (has_prefix(uri, "postgres://") || has_prefix(uri, "postgresql://")) {
		ops = &store_pg_ops;
	} else if (has_prefix(uri, "sqlite:")) {
		const char *q = strrchr(uri, '?');

		ops = &store_sqlite_ops;
		if ((rc = veil_store_sqlite_path(uri, pathbuf, sizeof(pathbuf))) < 0)
			return rc == VEIL_ERANGE ? VEIL_EINVAL : rc;
		sync_full = q && !strcmp(q, "?sync=full");
		path = pathbuf;
	} else {
		return veil_errf(VEIL_EINVAL, "store: URI must be sqlite:PATH or "
				 "postgres://...");
	}

	if (!(s = calloc(1, sizeof(*s))))
		return veil_errf(VEIL_ENOMEM, "store: open");
	if ((rc = veil_secret_alloc(&s->secret, VEIL_STORE_SECRET_LEN)) < 0) {
		free(s);
		return rc;
	}
	memcpy(s->secret.bytes, secret->bytes, VEIL_STORE_SECRET_LEN);
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		veil_secret_free(&s->secret);
		free(s);
		return veil_errf(VEIL_ENOMEM, "store: mutex");
	}
	s->ops = ops;
	rc = path ? store_sqlite_open(path, sync_full, &s->be)
		  : store_pg_open(uri, &s->be);
	if (rc < 0) {
		veil_store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void veil_store_close(struct veil_store *s)
{
	if (!s)
		return;
	if (s->be)
		s->ops->close(s->be);
	pthread_mutex_destroy(&s->mu);
	veil_secret_free(&s->secret);
	free(s);
}

int veil_store_schema_version(struct veil_store *s, int *out)
{
	int rc;

	if (!s || !out)
		return veil_errf(VEIL_EINVAL, "store: missing argument");
	lock(s);
	rc = s->ops->schema_version(s->be, out);
	unlock(s);
	return rc;
}

const char *veil_store_backend(const struct veil_store *s)
{
	return s ? s->ops->name : "?";
}

/* ---- keys -------------------------------------------------------------- */

/* HMAC-SHA256(secret, key text).  Keyed, so a stolen database does not let
 * anyone test guesses without the secret too. */
static int key_mac(const struct veil_store *s, const char *text,
		   uint8_t mac[STORE_HASH_LEN])
{
	unsigned int len = 0;

	if (!HMAC(EVP_sha256(), s->secret.bytes, (int)s->secret.len,
		  (const unsigned char *)text, strlen(text), mac, &len) ||
	    len != STORE_HASH_LEN)
		return veil_errf(VEIL_EINTERNAL, "store: HMAC-SHA256 failed");
	return 0;
}

/* Shape only: "sk-veil-" and 43 base64url characters. */
static bool key_text_ok(const char *t)
{
	size_t n = strnlen(t, VEIL_STORE_KEY_TEXT_LEN + 1);

	if (n != VEIL_STORE_KEY_TEXT_LEN ||
	    memcmp(t, VEIL_STORE_KEY_TAG, TAG_LEN) != 0)
		return false;
	for (size_t i = TAG_LEN; i < n; i++) {
		char c = t[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

int veil_store_key_create(struct veil_store *s, const char *name,
			  char *out_key, size_t cap, int64_t *out_id)
{
	uint8_t raw[KEY_RAW_LEN], mac[STORE_HASH_LEN];
	char text[VEIL_STORE_KEY_TEXT_MAX];
	char prefix[VEIL_STORE_KEY_PREFIX_LEN + 1];
	int64_t id = 0;
	int rc;

	if (!s || !out_key || !out_id)
		return veil_errf(VEIL_EINVAL, "store: key create: missing "
				 "argument");
	if ((rc = check_name("key name", name, VEIL_STORE_NAME_MAX)) < 0)
		return rc;
	if (cap < VEIL_STORE_KEY_TEXT_MAX)
		return veil_errf(VEIL_ERANGE, "store: key buffer of %zu bytes, "
				 "need %d", cap, VEIL_STORE_KEY_TEXT_MAX);
	memcpy(text, VEIL_STORE_KEY_TAG, TAG_LEN);
	if ((rc = veil_random(raw, sizeof(raw))) < 0 ||
	    (rc = veil_b64_encode(raw, sizeof(raw), VEIL_B64_URL | VEIL_B64_NOPAD,
				  text + TAG_LEN, sizeof(text) - TAG_LEN)) < 0 ||
	    (rc = key_mac(s, text, mac)) < 0)
		goto out;
	memcpy(prefix, text, VEIL_STORE_KEY_PREFIX_LEN);
	prefix[VEIL_STORE_KEY_PREFIX_LEN] = '\0';
	lock(s);
	rc = s->ops->key_insert(s->be, name, prefix, mac,
					  (int64_t)veil_wall_ms(), &id);
	unlock(s);
	if (rc < 0)
		goto out;
	memcpy(out_key, text, VEIL_STORE_KEY_TEXT_MAX);
	*out_id = id;
	rc = 0;
out:
	veil_wipe(raw, sizeof(raw));
	veil_wipe(text, sizeof(text));
	veil_wipe(mac, sizeof(mac));
	return rc;
}

int veil_store_key_lookup(struct veil_store *s, const char *key_text,
			  struct veil_store_key_info *out)
{
	uint8_t mac[STORE_HASH_LEN];
	char prefix[VEIL_STORE_KEY_PREFIX_LEN + 1];
	struct store_key_row *rows = NULL;
	size_t n = 0, found = SIZE_MAX;
	int rc;

	if (!s || !key_text || !out)
		return veil_errf(VEIL_EINVAL, "store: key lookup: missing "
				 "argument");
	if (!key_text_ok(key_text))
		return veil_errf(VEIL_ENOENT, "store: API key: not a veil key");
	if ((rc = key_mac(s, key_text, mac)) < 0)
		goto out;
	memcpy(prefix, key_text, VEIL_STORE_KEY_PREFIX_LEN);
	prefix[VEIL_STORE_KEY_PREFIX_LEN] = '\0';
	lock(s);
	rc = s->ops->key_by_prefix(s->be, prefix, &rows, &n);
	unlock(s);
	if (rc < 0)
		goto out;
	/* The database is searched by the non-secret prefix only; the
	 * secret-derived bytes are compared here, in constant time, against
	 * every candidate (no early exit). */
	for (size_t i = 0; i < n; i++)
		if (CRYPTO_memcmp(rows[i].hash, mac, STORE_HASH_LEN) == 0)
			found = i;
	if (found == SIZE_MAX) {
		rc = veil_errf(VEIL_ENOENT, "store: API key: not found");
		goto out;
	}
	if (rows[found].info.revoked_ms != 0) {
		rc = veil_errf(VEIL_EPERM, "store: API key %lld (%s...) is "
			       "revoked", (long long)rows[found].info.id,
			       rows[found].info.prefix);
		goto out;
	}
	*out = rows[found].info;
	rc = 0;
out:
	veil_wipe(mac, sizeof(mac));
	free(rows);
	return rc;
}

int veil_store_key_get(struct veil_store *s, int64_t id,
		       struct veil_store_key_info *out)
{
	int rc;

	if (!s || !out)
		return veil_errf(VEIL_EINVAL, "store: key get: missing argument");
	if ((rc = check_id(id)) < 0)
		return rc;
	lock(s);
	rc = s->ops->key_get(s->be, id, out);
	unlock(s);
	return rc;
}

int veil_store_key_list(struct veil_store *s, struct veil_store_key_info **out,
			size_t *n)
{
	int rc;

	if (!s || !out || !n)
		return veil_errf(VEIL_EINVAL, "store: key list: missing argument");
	lock(s);
	rc = s->ops->key_list(s->be, out, n);
	unlock(s);
	return rc;
}

int veil_store_key_revoke(struct veil_store *s, int64_t id, int64_t now_ms)
{
	int rc;

	if (!s)
		return veil_errf(VEIL_EINVAL, "store: key revoke: no store");
	if ((rc = check_id(id)) < 0 || (rc = check_time("now", now_ms)) < 0)
		return rc;
	if (now_ms == 0)
		return veil_errf(VEIL_EINVAL, "store: key revoke: time 0 means "
				 "active");
	lock(s);
	rc = s->ops->key_revoke(s->be, id, now_ms);
	unlock(s);
	return rc;
}

int veil_store_key_set_limits(struct veil_store *s, int64_t id,
			      const struct veil_store_limits *l)
{
	int rc;

	if (!s || !l)
		return veil_errf(VEIL_EINVAL, "store: key limits: missing "
				 "argument");
	if ((rc = check_id(id)) < 0 ||
	    (rc = check_count("requests_per_min", l->requests_per_min)) < 0 ||
	    (rc = check_count("tokens_per_min", l->tokens_per_min)) < 0 ||
	    (rc = check_count("quota_tokens", l->quota_tokens)) < 0)
		return rc;
	lock(s);
	rc = s->ops->key_set_limits(s->be, id, l);
	unlock(s);
	return rc;
}

/* ---- usage ------------------------------------------------------------- */

static int check_usage(const struct veil_store_usage *u)
{
	int rc;

	if ((rc = check_id(u->key_id)) < 0 ||
	    (rc = check_name("model", u->model, VEIL_STORE_MODEL_MAX)) < 0 ||
	    (rc = check_name("node id", u->node_id, VEIL_STORE_ID_MAX)) < 0 ||
	    (rc = check_name("request id", u->request_id,
			     VEIL_STORE_ID_MAX)) < 0 ||
	    (rc = check_count("prompt_tokens", u->prompt_tokens)) < 0 ||
	    (rc = check_count("completion_tokens", u->completion_tokens)) < 0 ||
	    (rc = check_time("created", u->created_ms)) < 0 ||
	    (rc = check_count("rate_tokens", u->rate_tokens)) < 0 ||
	    (u->rate_tokens > 0 &&
	     (rc = check_time("rate_now", u->rate_now_ms)) < 0))
		return rc;
	if (u->receipt_len && !u->receipt)
		return veil_errf(VEIL_EINVAL, "store: usage: receipt length "
				 "without bytes");
	if (u->receipt_len > VEIL_STORE_RECEIPT_MAX)
		return veil_errf(VEIL_ERANGE, "store: usage: receipt of %zu "
				 "bytes exceeds %u", u->receipt_len,
				 VEIL_STORE_RECEIPT_MAX);
	return 0;
}

/* Re-states the current detail with the record's index in front, so an
 * operator can tell which of a batch's records was refused. */
static int batch_err(int rc, size_t i, size_t n)
{
	char detail[400];

	snprintf(detail, sizeof(detail), "%s", veil_err_detail());
	if (i >= n)
		return veil_errf(rc, "usage batch of %zu records, none "
				 "recorded: %s", n, detail);
	return veil_errf(rc, "usage record %zu of a batch of %zu, none "
			 "recorded: %s", i, n, detail);
}

static int charge_cmp(const void *a, const void *b)
{
	const struct store_charge *x = a, *y = b;

	if (x->key_id != y->key_id)
		return x->key_id < y->key_id ? -1 : 1;
	if (x->now_ms != y->now_ms)
		return x->now_ms < y->now_ms ? -1 : 1;
	return 0;
}

/* The records' rate charges (rate_tokens > 0), sorted by key and time and
 * merged per (key, window): adding a + b to a window in one statement is
 * what adding a, then b does.  Sorting by key gives every gateway the same
 * row-lock order; by time within a key keeps a later window's reset after
 * the earlier window's charge, as separate charges in time order would.
 * *out is malloc'd (NULL when there is no charge). */
static int batch_charges(const struct veil_store_usage *u, size_t n,
			 struct store_charge **out, size_t *nc)
{
	struct store_charge *c = NULL;
	size_t k = 0, m = 0;

	*out = NULL;
	*nc = 0;
	for (size_t i = 0; i < n; i++)
		if (u[i].rate_tokens > 0)
			k++;
	if (k == 0)
		return 0;
	if (!(c = malloc(k * sizeof(*c))))
		return veil_errf(VEIL_ENOMEM, "store: usage: rate charges");
	k = 0;
	for (size_t i = 0; i < n; i++)
		if (u[i].rate_tokens > 0)
			c[k++] = (struct store_charge){u[i].key_id,
						       u[i].rate_now_ms,
						       u[i].rate_tokens};
	qsort(c, k, sizeof(*c), charge_cmp);
	for (size_t i = 0; i < k; i++) {
		if (m > 0 && c[m - 1].key_id == c[i].key_id &&
		    c[m - 1].now_ms / STORE_RATE_WINDOW_MS ==
			    c[i].now_ms / STORE_RATE_WINDOW_MS) {
			c[m - 1].tokens += c[i].tokens; /* <= 1000 * TOKENS_MAX */
			continue;
		}
		c[m++] = c[i];
	}
	*out = c;
	*nc = m;
	return 0;
}

static int tally_cmp(const void *a, const void *b)
{
	const struct store_tally *x = a, *y = b;

	return x->key_id < y->key_id ? -1 : x->key_id > y->key_id;
}

/* The records summed per key, sorted by key id (the lock order every
 * gateway shares, see struct store_tally).  Sums stay far inside int64_t:
 * at most VEIL_STORE_BATCH_MAX records of at most VEIL_STORE_TOKENS_MAX
 * tokens each.  *out is malloc'd; n > 0 gives *nt >= 1. */
static int batch_tallies(const struct veil_store_usage *u, size_t n,
			 struct store_tally **out, size_t *nt)
{
	struct store_tally *t;
	size_t m = 0;

	if (!(t = malloc(n * sizeof(*t))))
		return veil_errf(VEIL_ENOMEM, "store: usage: key totals");
	for (size_t i = 0; i < n; i++)
		t[i] = (struct store_tally){u[i].key_id, 1, u[i].prompt_tokens,
					    u[i].completion_tokens};
	qsort(t, n, sizeof(*t), tally_cmp);
	for (size_t i = 0; i < n; i++) {
		if (m > 0 && t[m - 1].key_id == t[i].key_id) {
			t[m - 1].requests++;
			t[m - 1].prompt_tokens += t[i].prompt_tokens;
			t[m - 1].completion_tokens += t[i].completion_tokens;
			continue;
		}
		t[m++] = t[i];
	}
	*out = t;
	*nt = m;
	return 0;
}

int veil_store_usage_add_batch(struct veil_store *s,
			       const struct veil_store_usage *u, size_t n,
			       size_t *failed)
{
	struct store_charge *c = NULL;
	struct store_tally *t = NULL;
	size_t bad = n, nc = 0, nt = 0;
	int rc;

	if (!s || (n && !u)) {
		rc = veil_errf(VEIL_EINVAL, "store: usage: missing argument");
		goto out;
	}
	if (n == 0)
		return 0;
	if (n > VEIL_STORE_BATCH_MAX) {
		rc = veil_errf(VEIL_ERANGE, "store: usage batch of %zu records "
			       "exceeds %d", n, VEIL_STORE_BATCH_MAX);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if ((rc = check_usage(&u[i])) < 0) {
			bad = i;
			goto out;
		}
	if ((rc = batch_tallies(u, n, &t, &nt)) < 0 ||
	    (rc = batch_charges(u, n, &c, &nc)) < 0)
		goto out;
	lock(s);
	rc = s->ops->usage_add_many(s->be, u, n, t, nt, c, nc, &bad);
	unlock(s);
out:
	free(t);
	free(c);
	if (rc < 0) {
		if (n > 1)
			rc = batch_err(rc, bad, n);
		if (failed)
			*failed = bad;
	}
	return rc;
}

int veil_store_usage_add_many(struct veil_store *s,
			      const struct veil_store_usage *u, size_t n)
{
	return veil_store_usage_add_batch(s, u, n, NULL);
}

int veil_store_usage_add(struct veil_store *s, const struct veil_store_usage *u)
{
	if (!s || !u)
		return veil_errf(VEIL_EINVAL, "store: usage: missing argument");
	return veil_store_usage_add_batch(s, u, 1, NULL);
}

int veil_store_usage_totals(struct veil_store *s, int64_t key_id,
			    int64_t from_ms, int64_t to_ms,
			    struct veil_store_totals *out)
{
	int64_t to;
	int rc;

	if (!s || !out)
		return veil_errf(VEIL_EINVAL, "store: totals: missing argument");
	if ((rc = check_id(key_id)) < 0 ||
	    (rc = check_range(from_ms, to_ms, &to)) < 0)
		return rc;
	lock(s);
	if (from_ms == 0 && to_ms == 0) {
		/* Lifetime: the running totals, which change in the same
		 * transactions as the rows, so they equal the sum of every
		 * row (created_ms >= 0 always), read in one indexed lookup
		 * instead of a scan of the key's history. */
		bool found = false;
		int64_t quota = 0, revoked = 0;
		struct veil_store_totals t = {0};

		rc = s->ops->key_totals(s->be, key_id, &found, &quota, &revoked, &t);
		if (rc == 0)
			*out = t; /* an unknown key has no records: zeros */
	} else {
		rc = s->ops->usage_totals(s->be, key_id, from_ms, to, out);
	}
	unlock(s);
	return rc;
}

int veil_store_usage_grouped(struct veil_store *s, enum veil_store_group by,
			     int64_t from_ms, int64_t to_ms,
			     struct veil_store_group_row **out, size_t *n)
{
	enum store_grouping grouping;
	int64_t to;
	int rc;

	if (!s || !out || !n)
		return veil_errf(VEIL_EINVAL, "store: grouped: missing argument");
	if (by != VEIL_STORE_BY_KEY && by != VEIL_STORE_BY_MODEL)
		return veil_errf(VEIL_EINVAL, "store: grouped: unknown grouping "
				 "%d", (int)by);
	if ((rc = check_range(from_ms, to_ms, &to)) < 0)
		return rc;
	/* Per key over all time: the running totals (one row per key, kept
	 * with the records; see veil_store_usage_totals) rather than a scan
	 * of every usage row.  Per model, and any window, sum the rows. */
	if (by == VEIL_STORE_BY_MODEL)
		grouping = STORE_GROUP_MODEL;
	else if (from_ms == 0 && to_ms == 0)
		grouping = STORE_GROUP_KEY_TOTALS;
	else
		grouping = STORE_GROUP_KEY;
	lock(s);
	rc = s->ops->usage_grouped(s->be, grouping, from_ms, to, out, n);
	unlock(s);
	return rc;
}

int veil_store_receipt_get(struct veil_store *s, const char *request_id,
			   struct veil_buf *out, int64_t *out_key_id)
{
	int rc;

	if (!s || !out)
		return veil_errf(VEIL_EINVAL, "store: receipt: missing argument");
	if ((rc = check_name("request id", request_id, VEIL_STORE_ID_MAX)) < 0)
		return rc;
	lock(s);
	rc = s->ops->receipt_get(s->be, request_id, out,
					     out_key_id);
	unlock(s);
	return rc;
}

int veil_store_usage_recorded(struct veil_store *s, const struct veil_store_usage *u)
{
	struct veil_buf b = VEIL_BUF_INIT(VEIL_STORE_RECEIPT_MAX);
	int64_t owner = 0;
	int rc;

	if (!u)
		return veil_errf(VEIL_EINVAL, "store: usage recorded: missing argument");
	if (!u->receipt || !u->receipt_len)
		return veil_errf(VEIL_ENOENT, "store: usage recorded: no receipt to "
				 "compare");
	rc = veil_store_receipt_get(s, u->request_id, &b, &owner);
	if (rc == VEIL_ERANGE)
		rc = veil_errf(VEIL_ENOENT, "store: usage recorded: another receipt");
	if (rc < 0)
		goto out;
	/* the same key and the same signed receipt: the same record */
	if (owner != u->key_id || b.len != u->receipt_len ||
	    memcmp(b.data, u->receipt, b.len) != 0)
		rc = veil_errf(VEIL_ENOENT, "store: usage recorded: request id "
			       "recorded with another key or receipt");
out:
	veil_buf_free(&b);
	return rc;
}

/* One read of the key's quota and running totals (no scan of its usage
 * rows): the gateway calls this on every request of a key with a quota. */
int veil_store_quota_check(struct veil_store *s, int64_t key_id)
{
	struct veil_store_totals t = {0};
	int64_t quota = 0, revoked = 0, used;
	bool found = false;
	int rc;

	if (!s)
		return veil_errf(VEIL_EINVAL, "store: quota: no store");
	if ((rc = check_id(key_id)) < 0)
		return rc;
	lock(s);
	rc = s->ops->key_totals(s->be, key_id, &found, &quota, &revoked, &t);
	unlock(s);
	if (rc < 0)
		return rc;
	if (!found)
		return store_no_key(key_id);
	if (revoked)
		return veil_errf(VEIL_ENOENT, "store: key %lld is revoked", (long long)key_id);
	/* A sum past int64_t (only from a hand-edited table) is over. */
	if (__builtin_add_overflow(t.prompt_tokens, t.completion_tokens, &used))
		used = INT64_MAX;
	if (quota > 0 && used >= quota)
		return veil_errf(VEIL_EPERM, "store: key %lld: quota of %lld "
				 "tokens used", (long long)key_id,
				 (long long)quota);
	return 0;
}

/* ---- rate limits ------------------------------------------------------- */

int veil_store_rate_take(struct veil_store *s, int64_t key_id, int64_t now_ms,
			 int64_t tokens, int *retry_after_s)
{
	int rc;

	if (!s || !retry_after_s)
		return veil_errf(VEIL_EINVAL, "store: rate: missing argument");
	if ((rc = check_id(key_id)) < 0 || (rc = check_time("now", now_ms)) < 0 ||
	    (rc = check_count("tokens", tokens)) < 0)
		return rc;
	lock(s);
	rc = s->ops->rate(s->be, STORE_RATE_TAKE, key_id, now_ms,
				      tokens, retry_after_s);
	unlock(s);
	return rc;
}

int veil_store_rate_charge(struct veil_store *s, int64_t key_id,
			   int64_t now_ms, int64_t tokens)
{
	int unused = 0;
	int rc;

	if (!s)
		return veil_errf(VEIL_EINVAL, "store: rate: no store");
	if ((rc = check_id(key_id)) < 0 || (rc = check_time("now", now_ms)) < 0 ||
	    (rc = check_count("tokens", tokens)) < 0)
		return rc;
	lock(s);
	rc = s->ops->rate(s->be, STORE_RATE_CHARGE, key_id, now_ms,
				      tokens, &unused);
	unlock(s);
	return rc;
}

/* ---- nodes ------------------------------------------------------------- */

static const char *const NODE_STATES[] = {
	[VEIL_NODE_PENDING] = "pending",
	[VEIL_NODE_VERIFIED] = "verified",
	[VEIL_NODE_FAILED] = "failed",
	[VEIL_NODE_DRAINING] = "draining",
	[VEIL_NODE_REMOVED] = "removed",
};

const char *veil_store_node_state_name(enum veil_store_node_state st)
{
	if ((unsigned)st >= VEIL_ARRAY_LEN(NODE_STATES))
		return "?";
	return NODE_STATES[st];
}

int veil_store_node_state_parse(const char *name)
{
	for (size_t i = 0; name && i < VEIL_ARRAY_LEN(NODE_STATES); i++)
		if (strcmp(name, NODE_STATES[i]) == 0)
			return (int)i;
	return -1;
}

static int check_state(enum veil_store_node_state st)
{
	if ((unsigned)st >= VEIL_ARRAY_LEN(NODE_STATES))
		return veil_errf(VEIL_EINVAL, "store: node state %d", (int)st);
	return 0;
}

int veil_store_node_put(struct veil_store *s, const struct veil_store_node *n,
			int64_t now_ms)
{
	int rc;

	if (!s || !n)
		return veil_errf(VEIL_EINVAL, "store: node: missing argument");
	if ((rc = check_name("node id", n->id, VEIL_STORE_ID_MAX)) < 0 ||
	    (rc = check_name("node url", n->url, VEIL_STORE_URL_MAX)) < 0 ||
	    (rc = check_name("node model", n->model, VEIL_STORE_MODEL_MAX)) < 0 ||
	    (rc = check_state(n->state)) < 0 ||
	    (rc = check_json("verdict", n->verdict, VEIL_STORE_VERDICT_MAX)) < 0 ||
	    (rc = check_time("now", now_ms)) < 0)
		return rc;
	lock(s);
	rc = s->ops->node_put(s->be, n, now_ms);
	unlock(s);
	return rc;
}

int veil_store_node_set_state(struct veil_store *s, const char *id,
			      enum veil_store_node_state st,
			      const char *verdict, int64_t now_ms)
{
	int rc;

	if (!s)
		return veil_errf(VEIL_EINVAL, "store: node: no store");
	if ((rc = check_name("node id", id, VEIL_STORE_ID_MAX)) < 0 ||
	    (rc = check_state(st)) < 0 ||
	    (rc = check_json("verdict", verdict, VEIL_STORE_VERDICT_MAX)) < 0 ||
	    (rc = check_time("now", now_ms)) < 0)
		return rc;
	lock(s);
	rc = s->ops->node_set_state(s->be, id, st, verdict, now_ms);
	unlock(s);
	return rc;
}

int veil_store_node_get(struct veil_store *s, const char *id,
			struct veil_store_node *out)
{
	int rc;

	if (!s || !out)
		return veil_errf(VEIL_EINVAL, "store: node: missing argument");
	if ((rc = check_name("node id", id, VEIL_STORE_ID_MAX)) < 0)
		return rc;
	lock(s);
	rc = s->ops->node_get(s->be, id, out);
	unlock(s);
	return rc;
}

int veil_store_node_list(struct veil_store *s, struct veil_store_node **out,
			 size_t *n)
{
	int rc;

	if (!s || !out || !n)
		return veil_errf(VEIL_EINVAL, "store: node list: missing argument");
	lock(s);
	rc = s->ops->node_list(s->be, out, n);
	unlock(s);
	return rc;
}

int veil_store_node_remove(struct veil_store *s, const char *id)
{
	int rc;

	if (!s)
		return veil_errf(VEIL_EINVAL, "store: node: no store");
	if ((rc = check_name("node id", id, VEIL_STORE_ID_MAX)) < 0)
		return rc;
	lock(s);
	rc = s->ops->node_remove(s->be, id);
	unlock(s);
	return rc;
}

/* Output strings are malloc'd by the backend; const only for the callers. */
void veil_store_node_clear(struct veil_store_node *n)
{
	if (!n)
		return;
	free((char *)n->id);
	free((char *)n->url);
	free((char *)n->model);
	free((char *)n->verdict);
	memset(n, 0, sizeof(*n));
}

void veil_store_nodes_free(struct veil_store_node *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		veil_store_node_clear(&v[i]);
	free(v);
}

void store_drop_nodes(void *v, size_t n)
{
	veil_store_nodes_free(v, n);
}

/* ---- attestation audit ------------------------------------------------- */

int veil_store_audit_add(struct veil_store *s, const struct veil_store_audit *a)
{
	int rc;

	if (!s || !a)
		return veil_errf(VEIL_EINVAL, "store: audit: missing argument");
	if ((rc = check_name("node id", a->node_id, VEIL_STORE_ID_MAX)) < 0 ||
	    (rc = check_time("time", a->time_ms)) < 0 ||
	    (rc = check_json("verdict", a->verdict, VEIL_STORE_VERDICT_MAX)) < 0)
		return rc;
	lock(s);
	rc = s->ops->audit_add(s->be, a);
	unlock(s);
	return rc;
}

int veil_store_audit_list(struct veil_store *s, const char *node_id,
			  size_t limit, struct veil_store_audit **out, size_t *n)
{
	int rc;

	if (!s || !out || !n)
		return veil_errf(VEIL_EINVAL, "store: audit: missing argument");
	if (node_id &&
	    (rc = check_name("node id", node_id, VEIL_STORE_ID_MAX)) < 0)
		return rc;
	if (limit == 0 || limit > AUDIT_LIST_MAX)
		return veil_errf(VEIL_EINVAL, "store: audit: limit %zu not in "
				 "1..%d", limit, AUDIT_LIST_MAX);
	lock(s);
	rc = s->ops->audit_list(s->be, node_id, limit, out, n);
	unlock(s);
	return rc;
}

void veil_store_audit_free(struct veil_store_audit *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free((char *)v[i].node_id);
		free((char *)v[i].verdict);
	}
	free(v);
}

void store_drop_audit(void *v, size_t n)
{
	veil_store_audit_free(v, n);
}

int store_list_end(int rc, void *v, size_t n, store_drop_fn *drop,
		   void **out, size_t *out_n)
{
	if (rc < 0) {
		if (drop)
			drop(v, n);
		else
			free(v);
		return rc;
	}
	*out = v;
	*out_n = n;
	return 0;
}

int store_no_key(int64_t id)
{
	return veil_errf(VEIL_ENOENT, "store: key %lld not found", (long long)id);
}
