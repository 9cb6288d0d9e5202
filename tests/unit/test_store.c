/* Unit tests of the gateway store (SQLite backend): API keys (hashed, never
 * stored, constant-time lookup), usage totals and receipts, rate-limit
 * windows shared between handles and processes, the node registry and audit
 * log, schema versions, and that an acknowledged usage record survives the
 * writer being SIGKILLed.  Every test works in its own directory under /tmp
 * and removes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "veil/base.h"
#include "veil/store.h"

/* A minute boundary (2023-11-14T22:13:00Z) plus offsets, for rate tests. */
#define T0 ((int64_t)1700000000000 - (int64_t)1700000000000 % 60000)

struct fx {
	char dir[64];
	char path[128];
	char uri[160];
	struct veil_secret secret;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/veil-store-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/gw.db", f->dir);
	snprintf(f->uri, sizeof(f->uri), "sqlite:%s", f->path);
	if (veil_secret_alloc(&f->secret, VEIL_STORE_SECRET_LEN) < 0) {
		free(f);
		return -1;
	}
	for (size_t i = 0; i < f->secret.len; i++)
		f->secret.bytes[i] = (uint8_t)(0xa0 + i);
	*state = f;
	return 0;
}

static void rm_db(const char *path)
{
	char p[200];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-journal", path);
	unlink(p);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[200];

	rm_db(f->path);
	snprintf(p, sizeof(p), "%s/other.db", f->dir);
	rm_db(p);
	snprintf(p, sizeof(p), "%s/junk.db", f->dir);
	unlink(p);
	rmdir(f->dir);
	veil_secret_free(&f->secret);
	free(f);
	return 0;
}

static struct veil_store *open_store(struct fx *f)
{
	struct veil_store *s = NULL;
	int rc = veil_store_open(f->uri, &f->secret, &s);

	if (rc != 0)
		fail_msg("open: %s: %s", veil_strerror(rc), veil_err_detail());
	return s;
}

static int64_t new_key(struct veil_store *s, const char *name, char *text)
{
	char buf[VEIL_STORE_KEY_TEXT_MAX];
	int64_t id = 0;

	assert_int_equal(veil_store_key_create(s, name, text ? text : buf,
					       VEIL_STORE_KEY_TEXT_MAX, &id), 0);
	assert_true(id > 0);
	return id;
}

static void add_usage(struct veil_store *s, int64_t key, const char *model,
		      const char *req, int64_t p, int64_t c, int64_t t)
{
	char receipt[160];
	struct veil_store_usage u = {
		.key_id = key, .model = model, .node_id = "node-a",
		.request_id = req, .prompt_tokens = p, .completion_tokens = c,
		.created_ms = t,
	};

	snprintf(receipt, sizeof(receipt),
		 "{\"id\":\"%s\",\"prompt_sha256\":\"00ff\"}", req);
	u.receipt = (const uint8_t *)receipt;
	u.receipt_len = strlen(receipt);
	assert_int_equal(veil_store_usage_add(s, &u), 0);
}

/* ---- open, schema --------------------------------------------------------- */

static void test_open_creates_schema_and_reopens_existing_db(void **state)
{
	struct fx *f = *state;
	struct veil_store_key_info k;
	char key[VEIL_STORE_KEY_TEXT_MAX];
	struct veil_store *s = open_store(f);
	struct stat sb;
	int v = 0;
	int64_t id;

	assert_string_equal(veil_store_backend(s), "sqlite");
	assert_int_equal(veil_store_schema_version(s, &v), 0);
	assert_int_equal(v, VEIL_STORE_SCHEMA_VERSION);
	id = new_key(s, "alice", key);
	veil_store_close(s);

	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);

	s = open_store(f); /* existing file: no migration, data kept */
	assert_int_equal(veil_store_schema_version(s, &v), 0);
	assert_int_equal(v, VEIL_STORE_SCHEMA_VERSION);
	assert_int_equal(veil_store_key_lookup(s, key, &k), 0);
	assert_int_equal(k.id, id);
	assert_string_equal(k.name, "alice");
	veil_store_close(s);
}

static void test_open_refuses_db_from_future_schema(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	veil_store_close(s);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE schema_version SET version = 99",
				      NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	s = NULL;
	assert_int_equal(veil_store_open(f->uri, &f->secret, &s), VEIL_ENOTSUP);
	assert_null(s);
	assert_non_null(strstr(veil_err_detail(), "schema version 99 is newer"));

	/* Refused, and left untouched. */
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT version FROM schema_version",
					    -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 99);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void test_open_rejects_bad_uri_secret_and_non_database(void **state)
{
	struct fx *f = *state;
	struct veil_secret short_secret = {f->secret.bytes, 16};
	struct veil_store *s = NULL;
	char junk[200], uri[220];
	FILE *fp;

	assert_int_equal(veil_store_open("postgres://u:pw@db/veil", &f->secret, &s),
			 VEIL_ENOTSUP);
	assert_non_null(strstr(veil_err_detail(), "PostgreSQL"));
	assert_null(strstr(veil_err_detail(), "pw")); /* never echoes the URI */
	assert_int_equal(veil_store_open("postgresql://db/veil", &f->secret, &s),
			 VEIL_ENOTSUP);
	assert_int_equal(veil_store_open("mysql://db", &f->secret, &s), VEIL_EINVAL);
	assert_int_equal(veil_store_open("sqlite:", &f->secret, &s), VEIL_EINVAL);
	assert_int_equal(veil_store_open(f->uri, &short_secret, &s), VEIL_EINVAL);
	assert_null(s);

	snprintf(junk, sizeof(junk), "%s/junk.db", f->dir);
	fp = fopen(junk, "w");
	assert_non_null(fp);
	for (int i = 0; i < 512; i++)
		fputs("this is not an SQLite database\n", fp);
	fclose(fp);
	snprintf(uri, sizeof(uri), "sqlite:%s", junk);
	assert_int_equal(veil_store_open(uri, &f->secret, &s), VEIL_EFORMAT);
	assert_null(s);
}

/* ---- keys ----------------------------------------------------------------- */

static void test_key_create_lookup_revoke(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_key_info k;
	char key[VEIL_STORE_KEY_TEXT_MAX], small[16];
	int64_t id, id2, dummy;

	id = new_key(s, "alice", key);
	assert_int_equal(strlen(key), VEIL_STORE_KEY_TEXT_LEN);
	assert_memory_equal(key, "sk-veil-", 8);
	assert_int_equal(veil_store_key_create(s, "x", small, sizeof(small), &dummy),
			 VEIL_ERANGE);
	assert_int_equal(veil_store_key_create(s, "", key, sizeof(key), &dummy),
			 VEIL_EINVAL);

	assert_int_equal(veil_store_key_lookup(s, key, &k), 0);
	assert_int_equal(k.id, id);
	assert_string_equal(k.name, "alice");
	assert_int_equal(strlen(k.prefix), VEIL_STORE_KEY_PREFIX_LEN);
	assert_memory_equal(k.prefix, key, VEIL_STORE_KEY_PREFIX_LEN);
	assert_int_equal(k.revoked_ms, 0);
	assert_true(k.created_ms > 0);

	/* A second key is distinct and does not disturb the first. */
	{
		char key2[VEIL_STORE_KEY_TEXT_MAX];

		id2 = new_key(s, "bob", key2);
		assert_int_not_equal(id2, id);
		assert_string_not_equal(key2, key);
		assert_int_equal(veil_store_key_lookup(s, key2, &k), 0);
		assert_int_equal(k.id, id2);
	}

	assert_int_equal(veil_store_key_revoke(s, id, 1234), 0);
	assert_int_equal(veil_store_key_lookup(s, key, &k), VEIL_EPERM);
	assert_int_equal(veil_store_key_revoke(s, id, 9999), 0); /* idempotent */
	assert_int_equal(veil_store_key_get(s, id, &k), 0);
	assert_int_equal(k.revoked_ms, 1234);
	assert_int_equal(veil_store_key_revoke(s, 424242, 1), VEIL_ENOENT);
	veil_store_close(s);
}

static void test_key_lookup_rejects_wrong_and_tampered_keys(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f), *other = NULL;
	struct veil_store_key_info k;
	struct veil_secret sec2;
	char key[VEIL_STORE_KEY_TEXT_MAX], t[VEIL_STORE_KEY_TEXT_MAX + 2];

	new_key(s, "alice", key);

	/* Every single-character change, in the prefix and after it. */
	for (size_t i = 8; i < VEIL_STORE_KEY_TEXT_LEN; i++) {
		memcpy(t, key, sizeof(key));
		t[i] = t[i] == 'A' ? 'B' : 'A';
		assert_int_equal(veil_store_key_lookup(s, t, &k), VEIL_ENOENT);
	}
	memcpy(t, key, sizeof(key));
	t[VEIL_STORE_KEY_TEXT_LEN - 1] = '\0'; /* truncated */
	assert_int_equal(veil_store_key_lookup(s, t, &k), VEIL_ENOENT);
	memcpy(t, key, sizeof(key));
	strcat(t, "A"); /* extended */
	assert_int_equal(veil_store_key_lookup(s, t, &k), VEIL_ENOENT);
	memcpy(t, key, sizeof(key));
	t[20] = '+'; /* not base64url */
	assert_int_equal(veil_store_key_lookup(s, t, &k), VEIL_ENOENT);
	assert_int_equal(veil_store_key_lookup(s, "", &k), VEIL_ENOENT);
	assert_int_equal(veil_store_key_lookup(s, "sk-veil-", &k), VEIL_ENOENT);
	/* Same prefix, different rest. */
	memcpy(t, key, sizeof(key));
	memset(t + VEIL_STORE_KEY_PREFIX_LEN, 'Q',
	       VEIL_STORE_KEY_TEXT_LEN - VEIL_STORE_KEY_PREFIX_LEN);
	assert_int_equal(veil_store_key_lookup(s, t, &k), VEIL_ENOENT);
	/* A fresh, well-formed key from nowhere. */
	{
		char stranger[VEIL_STORE_KEY_TEXT_MAX];
		uint8_t raw[32];

		assert_int_equal(veil_random(raw, sizeof(raw)), 0);
		memcpy(stranger, "sk-veil-", 8);
		assert_true(veil_b64_encode(raw, 32, VEIL_B64_URL | VEIL_B64_NOPAD,
					    stranger + 8, sizeof(stranger) - 8) >= 0);
		assert_int_equal(veil_store_key_lookup(s, stranger, &k),
				 VEIL_ENOENT);
	}
	assert_int_equal(veil_store_key_lookup(s, key, &k), 0);
	veil_store_close(s);

	/* A gateway with another server secret cannot use the stored hashes. */
	assert_int_equal(veil_secret_alloc(&sec2, VEIL_STORE_SECRET_LEN), 0);
	memset(sec2.bytes, 7, sec2.len);
	assert_int_equal(veil_store_open(f->uri, &sec2, &other), 0);
	assert_int_equal(veil_store_key_lookup(other, key, &k), VEIL_ENOENT);
	veil_store_close(other);
	veil_secret_free(&sec2);
}

/* The whole file (and its WAL) is searched for the key text and its random
 * bytes; the display prefix must be there, which shows the search works. */
static void assert_files_lack_key(const char *path, const char *key,
				  const uint8_t raw[32])
{
	const char *suffix[] = {"", "-wal"};
	bool saw_prefix = false;

	for (size_t i = 0; i < VEIL_ARRAY_LEN(suffix); i++) {
		struct veil_buf b = VEIL_BUF_INIT(64u << 20);
		char p[200];

		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		if (access(p, F_OK) != 0)
			continue;
		assert_int_equal(veil_buf_read_file(&b, p), 0);
		assert_null(memmem(b.data, b.len, key, strlen(key)));
		assert_null(memmem(b.data, b.len, key + 8, strlen(key) - 8));
		assert_null(memmem(b.data, b.len, key + 12, 16));
		assert_null(memmem(b.data, b.len, raw, 32));
		assert_null(memmem(b.data, b.len, raw, 8));
		if (memmem(b.data, b.len, key, VEIL_STORE_KEY_PREFIX_LEN))
			saw_prefix = true;
		veil_buf_free(&b);
	}
	assert_true(saw_prefix);
}

static void test_db_file_never_contains_key_text(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_key_info k;
	char key[VEIL_STORE_KEY_TEXT_MAX];
	uint8_t raw[32];
	size_t rawlen = 0;

	new_key(s, "alice", key);
	assert_int_equal(veil_b64_decode(key + 8, strlen(key) - 8,
					 VEIL_B64_URL | VEIL_B64_NOPAD, raw,
					 sizeof(raw), &rawlen), 0);
	assert_int_equal(rawlen, 32);
	assert_int_equal(veil_store_key_lookup(s, key, &k), 0);
	assert_files_lack_key(f->path, key, raw); /* open: data in the WAL */
	veil_store_close(s);
	assert_files_lack_key(f->path, key, raw); /* checkpointed */
}

static void test_key_list_and_limits(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_limits l = {60, 10000, 500000}, bad = {-1, 0, 0};
	struct veil_store_key_info *v = NULL, k;
	char key[VEIL_STORE_KEY_TEXT_MAX];
	size_t n = 99;
	int64_t a, b;

	assert_int_equal(veil_store_key_list(s, &v, &n), 0);
	assert_int_equal(n, 0);
	assert_null(v);
	a = new_key(s, "alice", key);
	b = new_key(s, "bob", NULL);
	assert_int_equal(veil_store_key_set_limits(s, b, &l), 0);
	assert_int_equal(veil_store_key_set_limits(s, b, &bad), VEIL_EINVAL);
	assert_int_equal(veil_store_key_set_limits(s, 999, &l), VEIL_ENOENT);
	assert_int_equal(veil_store_key_revoke(s, a, 5), 0);

	assert_int_equal(veil_store_key_list(s, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].id, a);
	assert_string_equal(v[0].name, "alice");
	assert_memory_equal(v[0].prefix, key, VEIL_STORE_KEY_PREFIX_LEN);
	assert_int_equal(v[0].revoked_ms, 5);
	assert_int_equal(v[0].limits.requests_per_min, 0);
	assert_int_equal(v[1].id, b);
	assert_int_equal(v[1].revoked_ms, 0);
	assert_int_equal(v[1].limits.requests_per_min, 60);
	assert_int_equal(v[1].limits.tokens_per_min, 10000);
	assert_int_equal(v[1].limits.quota_tokens, 500000);
	free(v);
	assert_int_equal(veil_store_key_get(s, b, &k), 0);
	assert_int_equal(k.limits.tokens_per_min, 10000);
	assert_int_equal(veil_store_key_get(s, 999, &k), VEIL_ENOENT);
	/* Names with control characters would reach logs: refused. */
	assert_int_equal(veil_store_key_create(s, "bad\nname", key, sizeof(key), &a),
			 VEIL_EINVAL);
	veil_store_close(s);
}

/* ---- usage ---------------------------------------------------------------- */

static void test_usage_totals_respect_from_and_to(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_totals t;
	int64_t a, b;

	a = new_key(s, "alice", NULL);
	b = new_key(s, "bob", NULL);
	add_usage(s, a, "llama", "r1", 10, 1, 1000);
	add_usage(s, a, "llama", "r2", 20, 2, 2000);
	add_usage(s, a, "qwen", "r3", 40, 4, 3000);
	add_usage(s, b, "llama", "r4", 80, 8, 2000);

	assert_int_equal(veil_store_usage_totals(s, a, 0, 0, &t), 0);
	assert_int_equal(t.requests, 3);
	assert_int_equal(t.prompt_tokens, 70);
	assert_int_equal(t.completion_tokens, 7);
	/* [2000, 3000): r2 only — from inclusive, to exclusive. */
	assert_int_equal(veil_store_usage_totals(s, a, 2000, 3000, &t), 0);
	assert_int_equal(t.requests, 1);
	assert_int_equal(t.prompt_tokens, 20);
	assert_int_equal(t.completion_tokens, 2);
	assert_int_equal(veil_store_usage_totals(s, a, 1500, 0, &t), 0);
	assert_int_equal(t.requests, 2);
	assert_int_equal(t.prompt_tokens, 60);
	assert_int_equal(veil_store_usage_totals(s, a, 0, 1001, &t), 0);
	assert_int_equal(t.requests, 1);
	assert_int_equal(veil_store_usage_totals(s, a, 5000, 0, &t), 0);
	assert_int_equal(t.requests, 0);
	assert_int_equal(t.prompt_tokens, 0);
	assert_int_equal(veil_store_usage_totals(s, b, 0, 0, &t), 0);
	assert_int_equal(t.requests, 1);
	assert_int_equal(t.completion_tokens, 8);
	assert_int_equal(veil_store_usage_totals(s, a, -1, 0, &t), VEIL_EINVAL);
	veil_store_close(s);
}

static void test_usage_grouped_by_key_and_by_model(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_group_row *v = NULL;
	size_t n = 0;
	int64_t a, b;

	a = new_key(s, "alice", NULL);
	b = new_key(s, "bob", NULL);
	assert_int_equal(veil_store_usage_grouped(s, VEIL_STORE_BY_KEY, 0, 0, &v,
						  &n), 0);
	assert_int_equal(n, 0);
	add_usage(s, a, "llama", "r1", 10, 1, 1000);
	add_usage(s, a, "qwen", "r2", 20, 2, 2000);
	add_usage(s, b, "llama", "r3", 40, 4, 3000);
	add_usage(s, b, "llama", "r4", 80, 8, 4000);

	assert_int_equal(veil_store_usage_grouped(s, VEIL_STORE_BY_KEY, 0, 0, &v,
						  &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].key_id, a);
	assert_string_equal(v[0].label, "alice");
	assert_int_equal(v[0].t.requests, 2);
	assert_int_equal(v[0].t.prompt_tokens, 30);
	assert_int_equal(v[1].key_id, b);
	assert_string_equal(v[1].label, "bob");
	assert_int_equal(v[1].t.requests, 2);
	assert_int_equal(v[1].t.completion_tokens, 12);
	free(v);

	assert_int_equal(veil_store_usage_grouped(s, VEIL_STORE_BY_MODEL, 0, 0, &v,
						  &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].label, "llama");
	assert_int_equal(v[0].t.requests, 3);
	assert_int_equal(v[0].t.prompt_tokens, 130);
	assert_int_equal(v[0].t.completion_tokens, 13);
	assert_string_equal(v[1].label, "qwen");
	assert_int_equal(v[1].t.requests, 1);
	free(v);

	/* Window [2000, 4000): r2 (alice, qwen) and r3 (bob, llama). */
	assert_int_equal(veil_store_usage_grouped(s, VEIL_STORE_BY_MODEL, 2000, 4000,
						  &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].t.prompt_tokens, 40);
	assert_int_equal(v[1].t.prompt_tokens, 20);
	free(v);
	assert_int_equal(veil_store_usage_grouped(s, (enum veil_store_group)7, 0, 0,
						  &v, &n), VEIL_EINVAL);
	veil_store_close(s);
}

static void test_receipt_lookup_by_completion_id(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_buf b = VEIL_BUF_INIT(VEIL_STORE_RECEIPT_MAX);
	struct veil_buf tiny = VEIL_BUF_INIT(8);
	struct veil_store_usage u = {
		.model = "llama", .node_id = "n1", .request_id = "chatcmpl-x",
		.prompt_tokens = 1, .completion_tokens = 1, .created_ms = 5,
	};
	uint8_t *big;
	int64_t a, owner = 0;

	a = new_key(s, "alice", NULL);
	add_usage(s, a, "llama", "chatcmpl-123", 3, 4, 100);
	assert_int_equal(veil_store_receipt_get(s, "chatcmpl-123", &b, &owner), 0);
	assert_string_equal((char *)b.data,
			    "{\"id\":\"chatcmpl-123\",\"prompt_sha256\":\"00ff\"}");
	assert_int_equal(owner, a);
	assert_int_equal(veil_store_receipt_get(s, "chatcmpl-123", &tiny, NULL),
			 VEIL_ERANGE);
	veil_buf_reset(&b);
	assert_int_equal(veil_store_receipt_get(s, "chatcmpl-nope", &b, NULL),
			 VEIL_ENOENT);

	/* No receipt recorded: not found.  Same request id twice: refused. */
	u.key_id = a;
	assert_int_equal(veil_store_usage_add(s, &u), 0);
	assert_int_equal(veil_store_receipt_get(s, "chatcmpl-x", &b, NULL),
			 VEIL_ENOENT);
	assert_int_equal(veil_store_usage_add(s, &u), VEIL_EINVAL);
	/* Unknown key; oversize receipt; negative tokens. */
	u.request_id = "chatcmpl-y";
	u.key_id = 999;
	assert_int_equal(veil_store_usage_add(s, &u), VEIL_ENOENT);
	u.key_id = a;
	big = calloc(1, VEIL_STORE_RECEIPT_MAX + 1);
	assert_non_null(big);
	u.receipt = big;
	u.receipt_len = VEIL_STORE_RECEIPT_MAX + 1;
	assert_int_equal(veil_store_usage_add(s, &u), VEIL_ERANGE);
	u.receipt_len = VEIL_STORE_RECEIPT_MAX;
	assert_int_equal(veil_store_usage_add(s, &u), 0);
	free(big);
	u.request_id = "chatcmpl-z";
	u.receipt = NULL;
	u.receipt_len = 0;
	u.prompt_tokens = -1;
	assert_int_equal(veil_store_usage_add(s, &u), VEIL_EINVAL);
	veil_buf_free(&b);
	veil_buf_free(&tiny);
	veil_store_close(s);
}

static void test_quota_check_counts_recorded_tokens(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_limits l = {0, 0, 100};
	int64_t a = new_key(s, "alice", NULL);

	assert_int_equal(veil_store_quota_check(s, a), 0); /* unlimited */
	assert_int_equal(veil_store_key_set_limits(s, a, &l), 0);
	add_usage(s, a, "m", "r1", 50, 49, 1);
	assert_int_equal(veil_store_quota_check(s, a), 0);
	add_usage(s, a, "m", "r2", 1, 0, 2);
	assert_int_equal(veil_store_quota_check(s, a), VEIL_EPERM);
	veil_store_close(s);
}

/* ---- rate limits ---------------------------------------------------------- */

static void test_rate_requests_per_minute_with_retry_after(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_limits l = {3, 0, 0};
	int64_t a = new_key(s, "alice", NULL), u = new_key(s, "free", NULL);
	int retry = -1;

	assert_int_equal(veil_store_key_set_limits(s, a, &l), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(veil_store_rate_take(s, a, T0 + 10000 + i, 5,
						      &retry), 0);
	assert_int_equal(retry, -1); /* written only with VEIL_EBUSY */
	assert_int_equal(veil_store_rate_take(s, a, T0 + 10000, 5, &retry),
			 VEIL_EBUSY);
	assert_int_equal(retry, 50);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 59001, 0, &retry),
			 VEIL_EBUSY);
	assert_int_equal(retry, 1);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 30500, 0, &retry),
			 VEIL_EBUSY);
	assert_int_equal(retry, 30); /* 29.5 s rounds up */
	/* The next minute is a new window. */
	assert_int_equal(veil_store_rate_take(s, a, T0 + 60000, 5, &retry), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 60001, 5, &retry), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 119999, 5, &retry), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 119999, 5, &retry),
			 VEIL_EBUSY);
	assert_int_equal(retry, 1);
	/* A clock behind the newest window does not reset it. */
	assert_int_equal(veil_store_rate_take(s, a, T0 + 1000, 5, &retry),
			 VEIL_EBUSY);
	assert_int_equal(retry, 60);
	/* A key without limits is never limited; unknown and revoked keys are
	 * refused outright. */
	for (int i = 0; i < 100; i++)
		assert_int_equal(veil_store_rate_take(s, u, T0, 1000, &retry), 0);
	assert_int_equal(veil_store_rate_take(s, 999, T0, 1, &retry), VEIL_ENOENT);
	assert_int_equal(veil_store_key_revoke(s, u, 1), 0);
	assert_int_equal(veil_store_rate_take(s, u, T0, 1, &retry), VEIL_EPERM);
	veil_store_close(s);
}

static void test_rate_tokens_per_minute_and_charge(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_limits l = {0, 1000, 0};
	int64_t a = new_key(s, "alice", NULL);
	int retry = -1;

	assert_int_equal(veil_store_key_set_limits(s, a, &l), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 15000, 600, &retry), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 15000, 500, &retry),
			 VEIL_EBUSY);
	assert_int_equal(retry, 45);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 15000, 400, &retry), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 15000, 1, &retry),
			 VEIL_EBUSY);
	/* More than a whole minute's budget can never fit: not "busy". */
	assert_int_equal(veil_store_rate_take(s, a, T0 + 60000, 1001, &retry),
			 VEIL_EPERM);
	/* New window; completion tokens charged afterwards count too. */
	assert_int_equal(veil_store_rate_take(s, a, T0 + 60000, 100, &retry), 0);
	assert_int_equal(veil_store_rate_charge(s, a, T0 + 60000, 850), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 61000, 51, &retry),
			 VEIL_EBUSY);
	assert_int_equal(retry, 59);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 61000, 50, &retry), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 120000, 1000, &retry), 0);
	veil_store_close(s);
}

static void test_rate_two_handles_on_one_file_agree(void **state)
{
	struct fx *f = *state;
	struct veil_store *s1 = open_store(f), *s2 = open_store(f);
	struct veil_store_limits l = {5, 0, 0};
	int64_t a = new_key(s1, "alice", NULL);
	int retry = 0, ok = 0;

	assert_int_equal(veil_store_key_set_limits(s2, a, &l), 0);
	for (int i = 0; i < 10; i++) {
		struct veil_store *h = i % 2 ? s2 : s1;
		int rc = veil_store_rate_take(h, a, T0 + 1000 + i, 0, &retry);

		if (rc == 0)
			ok++;
		else
			assert_int_equal(rc, VEIL_EBUSY);
	}
	assert_int_equal(ok, 5);
	assert_int_equal(veil_store_rate_take(s1, a, T0 + 2000, 0, &retry),
			 VEIL_EBUSY);
	assert_int_equal(veil_store_rate_take(s2, a, T0 + 2000, 0, &retry),
			 VEIL_EBUSY);
	assert_int_equal(veil_store_rate_take(s2, a, T0 + 60000, 0, &retry), 0);
	veil_store_close(s1);
	veil_store_close(s2);
}

/* Two processes hammer one key at the same instant: exactly the limit gets
 * through, however their transactions interleave. */
static void test_rate_two_processes_agree(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_limits l = {40, 0, 0};
	int64_t a = new_key(s, "alice", NULL);
	int go[2], total = 0;
	pid_t pids[2];

	assert_int_equal(veil_store_key_set_limits(s, a, &l), 0);
	veil_store_close(s); /* no handle crosses fork() */
	assert_int_equal(pipe(go), 0);
	for (int c = 0; c < 2; c++) {
		pids[c] = fork();
		assert_true(pids[c] >= 0);
		if (pids[c] == 0) {
			struct veil_store *h = NULL;
			int retry, got = 0;
			char x;

			close(go[1]);
			if (veil_store_open(f->uri, &f->secret, &h) != 0)
				_exit(255);
			(void)!read(go[0], &x, 1); /* start together */
			for (int i = 0; i < 60; i++) {
				int rc = veil_store_rate_take(h, a, T0 + 5000, 1,
							      &retry);
				if (rc == 0)
					got++;
				else if (rc != VEIL_EBUSY)
					_exit(254);
			}
			veil_store_close(h);
			_exit(got);
		}
	}
	close(go[0]);
	usleep(100 * 1000);
	close(go[1]); /* EOF releases both */
	for (int c = 0; c < 2; c++) {
		int st = 0;

		assert_int_equal(waitpid(pids[c], &st, 0), pids[c]);
		assert_true(WIFEXITED(st));
		assert_true(WEXITSTATUS(st) <= 40);
		total += WEXITSTATUS(st);
	}
	assert_int_equal(total, 40);
}

/* ---- nodes and audit ------------------------------------------------------ */

static void test_node_registry_put_update_list_remove(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_node n = {
		.id = "node-b", .url = "https://10.0.0.2:8443", .model = "llama",
		.state = VEIL_NODE_PENDING,
	};
	struct veil_store_node got, *v = NULL;
	size_t cnt = 0;

	assert_string_equal(veil_store_node_state_name(VEIL_NODE_DRAINING),
			    "draining");
	assert_int_equal(veil_store_node_state_parse("verified"), VEIL_NODE_VERIFIED);
	assert_int_equal(veil_store_node_state_parse("bogus"), -1);

	assert_int_equal(veil_store_node_put(s, &n, 1000), 0);
	n.id = "node-a";
	n.url = "https://10.0.0.1:8443";
	n.state = VEIL_NODE_VERIFIED;
	n.verdict = "{\"ok\":true,\"tcb\":\"UpToDate\"}";
	assert_int_equal(veil_store_node_put(s, &n, 2000), 0);

	assert_int_equal(veil_store_node_get(s, "node-a", &got), 0);
	assert_string_equal(got.url, "https://10.0.0.1:8443");
	assert_int_equal(got.state, VEIL_NODE_VERIFIED);
	assert_string_equal(got.verdict, "{\"ok\":true,\"tcb\":\"UpToDate\"}");
	assert_int_equal(got.created_ms, 2000);
	assert_int_equal(got.verified_ms, 2000);
	veil_store_node_clear(&got);
	assert_null(got.id);

	/* Update by put: new url, verdict kept when NULL, created kept. */
	n.url = "https://10.0.0.9:8443";
	n.verdict = NULL;
	n.state = VEIL_NODE_DRAINING;
	assert_int_equal(veil_store_node_put(s, &n, 3000), 0);
	assert_int_equal(veil_store_node_get(s, "node-a", &got), 0);
	assert_string_equal(got.url, "https://10.0.0.9:8443");
	assert_int_equal(got.state, VEIL_NODE_DRAINING);
	assert_string_equal(got.verdict, "{\"ok\":true,\"tcb\":\"UpToDate\"}");
	assert_int_equal(got.created_ms, 2000);
	assert_int_equal(got.updated_ms, 3000);
	assert_int_equal(got.verified_ms, 2000);
	veil_store_node_clear(&got);

	/* State changes. */
	assert_int_equal(veil_store_node_set_state(s, "node-b", VEIL_NODE_FAILED,
						   "{\"ok\":false}", 4000), 0);
	assert_int_equal(veil_store_node_set_state(s, "node-b", VEIL_NODE_VERIFIED,
						   "{\"ok\":true}", 5000), 0);
	assert_int_equal(veil_store_node_set_state(s, "node-z", VEIL_NODE_FAILED,
						   NULL, 1), VEIL_ENOENT);
	assert_int_equal(veil_store_node_set_state(s, "node-b",
						   (enum veil_store_node_state)9,
						   NULL, 1), VEIL_EINVAL);

	assert_int_equal(veil_store_node_list(s, &v, &cnt), 0);
	assert_int_equal(cnt, 2);
	assert_string_equal(v[0].id, "node-a");
	assert_string_equal(v[1].id, "node-b");
	assert_int_equal(v[1].state, VEIL_NODE_VERIFIED);
	assert_string_equal(v[1].verdict, "{\"ok\":true}");
	assert_int_equal(v[1].verified_ms, 5000);
	assert_int_equal(v[1].created_ms, 1000);
	veil_store_nodes_free(v, cnt);

	assert_int_equal(veil_store_node_remove(s, "node-a"), 0);
	assert_int_equal(veil_store_node_remove(s, "node-a"), VEIL_ENOENT);
	assert_int_equal(veil_store_node_get(s, "node-a", &got), VEIL_ENOENT);
	assert_int_equal(veil_store_node_list(s, &v, &cnt), 0);
	assert_int_equal(cnt, 1);
	veil_store_nodes_free(v, cnt);

	n.url = "";
	assert_int_equal(veil_store_node_put(s, &n, 1), VEIL_EINVAL);
	veil_store_close(s);
}

static void test_attestation_audit_log_appends_and_lists(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	struct veil_store_audit a = {.node_id = "node-a", .time_ms = 100,
				     .ok = true, .verdict = "{\"ok\":true}"};
	struct veil_store_audit *v = NULL;
	size_t n = 0;

	assert_int_equal(veil_store_audit_add(s, &a), 0);
	a.time_ms = 300;
	a.ok = false;
	a.verdict = "{\"ok\":false,\"why\":\"tcb\"}";
	assert_int_equal(veil_store_audit_add(s, &a), 0);
	a.node_id = "node-b";
	a.time_ms = 200;
	a.ok = true;
	a.verdict = NULL;
	assert_int_equal(veil_store_audit_add(s, &a), 0);

	assert_int_equal(veil_store_audit_list(s, "node-a", 10, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].time_ms, 300); /* newest first */
	assert_false(v[0].ok);
	assert_string_equal(v[0].verdict, "{\"ok\":false,\"why\":\"tcb\"}");
	assert_int_equal(v[1].time_ms, 100);
	assert_true(v[1].ok);
	assert_true(v[0].id > v[1].id);
	veil_store_audit_free(v, n);

	assert_int_equal(veil_store_audit_list(s, NULL, 2, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].time_ms, 300);
	assert_int_equal(v[1].time_ms, 200);
	assert_string_equal(v[1].node_id, "node-b");
	assert_null(v[1].verdict);
	veil_store_audit_free(v, n);

	assert_int_equal(veil_store_audit_list(s, NULL, 0, &v, &n), VEIL_EINVAL);
	/* The log outlives the node's registry entry. */
	veil_store_close(s);
	s = open_store(f);
	assert_int_equal(veil_store_audit_list(s, "node-a", 10, &v, &n), 0);
	assert_int_equal(n, 2);
	veil_store_audit_free(v, n);
	veil_store_close(s);
}

/* ---- durability ----------------------------------------------------------- */

/* Child: records usage as fast as it can and reports each request number on
 * `fd` only after veil_store_usage_add() returned 0. */
static void __attribute__((noreturn))
durability_child(struct fx *f, int64_t key, int fd, int base)
{
	struct veil_store *s = NULL;

	if (veil_store_open(f->uri, &f->secret, &s) != 0)
		_exit(2);
	for (int i = 0; i < 10000000; i++) {
		char rid[32], receipt[64], line[16];
		struct veil_store_usage u = {
			.key_id = key, .model = "m", .node_id = "n",
			.request_id = rid, .prompt_tokens = 1,
			.completion_tokens = 2, .created_ms = 1000 + i,
		};
		int len;

		snprintf(rid, sizeof(rid), "req-%d", base + i);
		snprintf(receipt, sizeof(receipt), "{\"id\":\"%s\"}", rid);
		u.receipt = (const uint8_t *)receipt;
		u.receipt_len = strlen(receipt);
		if (veil_store_usage_add(s, &u) != 0)
			_exit(3);
		len = snprintf(line, sizeof(line), "%d\n", base + i);
		if (write(fd, line, (size_t)len) != len)
			_exit(4);
	}
	_exit(0);
}

static void test_acknowledged_usage_survives_sigkill(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f);
	int64_t key = new_key(s, "alice", NULL);
	size_t total_acked = 0;

	veil_store_close(s);
	for (int round = 0; round < 3; round++) {
		struct veil_buf acks = VEIL_BUF_INIT(64u << 20);
		struct veil_buf r = VEIL_BUF_INIT(256);
		struct veil_store_totals t;
		uint32_t rnd = 0;
		uint64_t deadline;
		int p[2], st = 0, base = round * 1000000;
		size_t n = 0;
		char *line, *save = NULL;
		pid_t pid;

		assert_int_equal(pipe(p), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			durability_child(f, key, p[1], base);
		}
		close(p[1]);
		/* Kill at a random moment 20..300 ms in, reading acks meanwhile. */
		assert_int_equal(veil_random(&rnd, sizeof(rnd)), 0);
		deadline = veil_now_ns() + (20 + rnd % 281) * 1000000ull;
		for (;;) {
			uint64_t now = veil_now_ns();
			struct pollfd pfd = {.fd = p[0], .events = POLLIN};
			char buf[4096];
			ssize_t got;

			if (now >= deadline)
				break;
			if (poll(&pfd, 1, (int)((deadline - now) / 1000000) + 1) <= 0)
				continue;
			got = read(p[0], buf, sizeof(buf));
			if (got <= 0)
				break;
			assert_int_equal(veil_buf_append(&acks, buf, (size_t)got), 0);
		}
		assert_int_equal(kill(pid, SIGKILL), 0);
		for (;;) { /* what was written before the kill is acknowledged */
			char buf[4096];
			ssize_t got = read(p[0], buf, sizeof(buf));

			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				break;
			assert_int_equal(veil_buf_append(&acks, buf, (size_t)got), 0);
		}
		close(p[0]);
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

		s = open_store(f);
		for (line = strtok_r(acks.data ? (char *)acks.data : (char *)"",
				     "\n", &save);
		     line; line = strtok_r(NULL, "\n", &save)) {
			char rid[32], want[64];

			/* A line cut by the kill mid-write is not an ack. */
			if (line + strlen(line) == (char *)acks.data + acks.len)
				break;
			snprintf(rid, sizeof(rid), "req-%s", line);
			snprintf(want, sizeof(want), "{\"id\":\"%s\"}", rid);
			veil_buf_reset(&r);
			if (veil_store_receipt_get(s, rid, &r, NULL) != 0)
				fail_msg("round %d: acknowledged %s lost: %s",
					 round, rid, veil_err_detail());
			assert_string_equal((char *)r.data, want);
			n++;
		}
		assert_int_equal(veil_store_usage_totals(s, key, 0, 0, &t), 0);
		total_acked += n;
		assert_true((size_t)t.requests >= total_acked);
		veil_store_close(s);
		veil_buf_free(&acks);
		veil_buf_free(&r);
		print_message("round %d: %zu acknowledged records, all present "
			      "(%lld in the table)\n", round, n,
			      (long long)t.requests);
	}
	assert_true(total_acked > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_open_creates_schema_and_reopens_existing_db),
		T(test_open_refuses_db_from_future_schema),
		T(test_open_rejects_bad_uri_secret_and_non_database),
		T(test_key_create_lookup_revoke),
		T(test_key_lookup_rejects_wrong_and_tampered_keys),
		T(test_db_file_never_contains_key_text),
		T(test_key_list_and_limits),
		T(test_usage_totals_respect_from_and_to),
		T(test_usage_grouped_by_key_and_by_model),
		T(test_receipt_lookup_by_completion_id),
		T(test_quota_check_counts_recorded_tokens),
		T(test_rate_requests_per_minute_with_retry_after),
		T(test_rate_tokens_per_minute_and_charge),
		T(test_rate_two_handles_on_one_file_agree),
		T(test_rate_two_processes_agree),
		T(test_node_registry_put_update_list_remove),
		T(test_attestation_audit_log_appends_and_lists),
		T(test_acknowledged_usage_survives_sigkill),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
