/* SQLite backend of the veil store (see include/veil/store.h for the
 * durability and concurrency contract, store_impl.h for the split of work).
 *
 * Every statement is a constant string in SQL[] below, prepared once
 * (SQLITE_PREPARE_PERSISTENT) and reset right after use so that no read
 * transaction outlives a call (an open read would pin the WAL and block
 * checkpoints).  Values are always bound, never formatted into SQL. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "veil/base.h"
#include "veil/store.h"
#include "store_impl.h"

/* ---- schema ------------------------------------------------------------ */

/* Both 1 -> 2 triggers' first step, written once: subtracts the OLD row
 * from its key's totals.  Part of a released migration: never edit it (the
 * text must stay what schema-2 databases hold); a later migration that
 * needs other SQL spells its own. */
#define SQ_TOTALS_SUB_OLD                                                   \
	" UPDATE key_totals SET requests = requests - 1,"                   \
	" prompt_tokens = prompt_tokens - OLD.prompt_tokens,"               \
	" completion_tokens = completion_tokens - OLD.completion_tokens"    \
	" WHERE key_id = OLD.key_id;"

/* MIGRATIONS[v] takes the schema from version v to v + 1.  Never edit a
 * released entry; append a new one and bump VEIL_STORE_SCHEMA_VERSION. */
static const char *const MIGRATIONS[] = {
	/* 0 -> 1 */
	"CREATE TABLE api_keys("
	" id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL,"
	" prefix TEXT NOT NULL,"
	" key_hash BLOB NOT NULL UNIQUE,"
	" created_ms INTEGER NOT NULL,"
	" revoked_ms INTEGER NOT NULL DEFAULT 0,"
	" rpm INTEGER NOT NULL DEFAULT 0,"
	" tpm INTEGER NOT NULL DEFAULT 0,"
	" quota_tokens INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX api_keys_prefix ON api_keys(prefix);"
	"CREATE TABLE usage("
	" id INTEGER PRIMARY KEY,"
	" key_id INTEGER NOT NULL REFERENCES api_keys(id),"
	" model TEXT NOT NULL,"
	" node_id TEXT NOT NULL,"
	" request_id TEXT NOT NULL UNIQUE,"
	" prompt_tokens INTEGER NOT NULL,"
	" completion_tokens INTEGER NOT NULL,"
	" created_ms INTEGER NOT NULL,"
	" receipt BLOB);"
	"CREATE INDEX usage_key_time ON usage(key_id, created_ms);"
	"CREATE INDEX usage_time ON usage(created_ms);"
	"CREATE TABLE rate_windows("
	" key_id INTEGER PRIMARY KEY REFERENCES api_keys(id),"
	" window_ms INTEGER NOT NULL,"
	" requests INTEGER NOT NULL,"
	" tokens INTEGER NOT NULL);"
	"CREATE TABLE nodes("
	" id TEXT PRIMARY KEY,"
	" url TEXT NOT NULL,"
	" model TEXT NOT NULL,"
	" state TEXT NOT NULL CHECK (state IN"
	"  ('pending','verified','failed','draining','removed')),"
	" verdict TEXT,"
	" created_ms INTEGER NOT NULL,"
	" updated_ms INTEGER NOT NULL,"
	" verified_ms INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE attest_audit("
	" id INTEGER PRIMARY KEY,"
	" node_id TEXT NOT NULL,"
	" time_ms INTEGER NOT NULL,"
	" ok INTEGER NOT NULL,"
	" verdict TEXT);"
	"CREATE INDEX attest_audit_node ON attest_audit(node_id, time_ms);",
	/* 1 -> 2: per-key running totals, so a quota check reads one row
	 * instead of summing the key's history.  The store adds to them in
	 * each usage transaction (S_TOTALS_ADD); the triggers keep them equal
	 * to the rows' sums when rows are deleted or changed by anything
	 * else (an operator's retention DELETE, say).  Backfilled here, under
	 * the migration's write lock, from the rows already stored. */
	"CREATE TABLE key_totals("
	" key_id INTEGER PRIMARY KEY REFERENCES api_keys(id) ON DELETE CASCADE,"
	" requests INTEGER NOT NULL,"
	" prompt_tokens INTEGER NOT NULL,"
	" completion_tokens INTEGER NOT NULL);"
	"INSERT INTO key_totals(key_id, requests, prompt_tokens,"
	" completion_tokens) SELECT key_id, count(*), sum(prompt_tokens),"
	" sum(completion_tokens) FROM usage GROUP BY key_id;"
	"CREATE TRIGGER usage_totals_delete AFTER DELETE ON usage BEGIN"
	SQ_TOTALS_SUB_OLD
	" END;"
	"CREATE TRIGGER usage_totals_update"
	" AFTER UPDATE OF key_id, prompt_tokens, completion_tokens ON usage BEGIN"
	SQ_TOTALS_SUB_OLD
	" INSERT OR IGNORE INTO key_totals(key_id, requests, prompt_tokens,"
	" completion_tokens) VALUES (NEW.key_id, 0, 0, 0);"
	" UPDATE key_totals SET requests = requests + 1,"
	" prompt_tokens = prompt_tokens + NEW.prompt_tokens,"
	" completion_tokens = completion_tokens + NEW.completion_tokens"
	" WHERE key_id = NEW.key_id;"
	" END;",
};

_Static_assert(VEIL_ARRAY_LEN(MIGRATIONS) == VEIL_STORE_SCHEMA_VERSION,
	       "one migration per schema version");

/* WAL pages after which a commit runs a checkpoint (SQLite's default is
 * 1000).  A checkpoint copies the newest version of every page the WAL
 * holds into the database file (a read and a write per page, and with
 * sync=normal two fsyncs), so the pages that every usage commit rewrites
 * (the table's and the time indexes' last leaves, their parents, the key's
 * totals) are copied once per checkpoint: ten times fewer checkpoints copy
 * them ten times less often.  The store's own measurement (4 records per
 * commit, 1.2 KiB receipts, 60000 records): 20 us of CPU per record at
 * 1000 pages, 16 at 4000, 15 at 10000.  The price is disk: the -wal file
 * grows to ~40 MiB (it is reused from its start after each checkpoint,
 * not shrunk) and its index in -shm to ~100 KiB; a crash recovery reads
 * at most that much.  Committed data is as durable either way: a
 * checkpoint only moves it from the WAL into the main file. */
#define STORE_SQLITE_CHECKPOINT_PAGES 10000

/* ---- statements -------------------------------------------------------- */

enum sq_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_VERSION_TABLE,
	S_VERSION_GET,
	S_VERSION_INSERT,
	S_VERSION_SET,
	S_KEY_INSERT,
	S_KEY_BY_PREFIX,
	S_KEY_GET,
	S_KEY_LIST,
	S_KEY_REVOKE,
	S_KEY_LIMITS,
	S_USAGE_ADD,
	S_USAGE_TOTALS,
	S_TOTALS_ADD,
	S_KEY_TOTALS,
	S_USAGE_BY_KEY,
	S_USAGE_BY_MODEL,
	S_USAGE_BY_KEY_TOTALS,
	S_RECEIPT_GET,
	S_RATE_KEY,
	S_RATE_GET,
	S_RATE_PUT,
	S_RATE_CHARGE,
	S_NODE_PUT,
	S_NODE_STATE,
	S_NODE_GET,
	S_NODE_LIST,
	S_NODE_REMOVE,
	S_AUDIT_ADD,
	S_AUDIT_LIST,
	S_COUNT
};

#define KEY_COLS "id, name, prefix, created_ms, revoked_ms, rpm, tpm, " \
		 "quota_tokens, key_hash"
#define NODE_COLS "id, url, model, state, verdict, created_ms, updated_ms, " \
		  "verified_ms"

static const char *const SQL[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_VERSION_TABLE] = "CREATE TABLE IF NOT EXISTS schema_version("
			    "version INTEGER NOT NULL)",
	[S_VERSION_GET] = "SELECT max(version), count(*) FROM schema_version",
	[S_VERSION_INSERT] = "INSERT INTO schema_version(version) VALUES (0)",
	[S_VERSION_SET] = "UPDATE schema_version SET version = ?1",
	[S_KEY_INSERT] = "INSERT INTO api_keys(name, prefix, key_hash, "
			 "created_ms) VALUES (?1, ?2, ?3, ?4)",
	/* Bounded: the prefix holds 24 random bits, so a few keys may share
	 * one, but a lookup never scans more than 64 candidates. */
	[S_KEY_BY_PREFIX] = "SELECT " KEY_COLS " FROM api_keys "
			    "WHERE prefix = ?1 ORDER BY id LIMIT 64",
	[S_KEY_GET] = "SELECT " KEY_COLS " FROM api_keys WHERE id = ?1",
	[S_KEY_LIST] = "SELECT " KEY_COLS " FROM api_keys ORDER BY id",
	[S_KEY_REVOKE] = "UPDATE api_keys SET revoked_ms = CASE WHEN "
			 "revoked_ms = 0 THEN ?2 ELSE revoked_ms END "
			 "WHERE id = ?1",
	[S_KEY_LIMITS] = "UPDATE api_keys SET rpm = ?2, tpm = ?3, "
			 "quota_tokens = ?4 WHERE id = ?1",
	[S_USAGE_ADD] = "INSERT INTO usage(key_id, model, node_id, request_id, "
			"prompt_tokens, completion_tokens, created_ms, receipt) "
			"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[S_USAGE_TOTALS] = "SELECT count(*), coalesce(sum(prompt_tokens), 0), "
			   "coalesce(sum(completion_tokens), 0) FROM usage "
			   "WHERE key_id = ?1 AND created_ms >= ?2 "
			   "AND created_ms < ?3",
	/* A batch's struct store_tally, after its records. */
	[S_TOTALS_ADD] = "INSERT INTO key_totals(key_id, requests, "
			 "prompt_tokens, completion_tokens) VALUES (?1, ?2, ?3, "
			 "?4) ON CONFLICT(key_id) DO UPDATE SET "
			 "requests = requests + excluded.requests, "
			 "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
			 "completion_tokens = completion_tokens + "
			 "excluded.completion_tokens",
	/* Primary-key lookups only: no row when the key does not exist. */
	[S_KEY_TOTALS] = "SELECT k.quota_tokens, coalesce(t.requests, 0), "
			 "coalesce(t.prompt_tokens, 0), "
			 "coalesce(t.completion_tokens, 0), k.revoked_ms "
			 "FROM api_keys k LEFT JOIN key_totals t ON t.key_id = k.id "
			 "WHERE k.id = ?1",
	[S_USAGE_BY_KEY] = "SELECT u.key_id, coalesce(k.name, ''), count(*), "
			   "sum(u.prompt_tokens), sum(u.completion_tokens) "
			   "FROM usage u LEFT JOIN api_keys k ON k.id = u.key_id "
			   "WHERE u.created_ms >= ?1 AND u.created_ms < ?2 "
			   "GROUP BY u.key_id ORDER BY u.key_id",
	[S_USAGE_BY_MODEL] = "SELECT 0, model, count(*), sum(prompt_tokens), "
			     "sum(completion_tokens) FROM usage "
			     "WHERE created_ms >= ?1 AND created_ms < ?2 "
			     "GROUP BY model ORDER BY model",
	/* All time: the running totals, one row per key (no usage scan). */
	[S_USAGE_BY_KEY_TOTALS] = "SELECT t.key_id, coalesce(k.name, ''), "
				  "t.requests, t.prompt_tokens, "
				  "t.completion_tokens FROM key_totals t "
				  "LEFT JOIN api_keys k ON k.id = t.key_id "
				  "WHERE t.requests > 0 ORDER BY t.key_id",
	[S_RECEIPT_GET] = "SELECT key_id, receipt FROM usage "
			  "WHERE request_id = ?1",
	[S_RATE_KEY] = "SELECT revoked_ms, rpm, tpm FROM api_keys WHERE id = ?1",
	[S_RATE_GET] = "SELECT window_ms, requests, tokens FROM rate_windows "
		       "WHERE key_id = ?1",
	[S_RATE_PUT] = "INSERT INTO rate_windows(key_id, window_ms, requests, "
		       "tokens) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(key_id) DO "
		       "UPDATE SET window_ms = excluded.window_ms, "
		       "requests = excluded.requests, tokens = excluded.tokens",
	/* A batch's charge (struct store_charge) in one statement: the
	 * window of ?2 starts at zero unless one at or after it is open (the
	 * same arithmetic as sq_rate's charge); a revoked key's SELECT gives
	 * no row, so nothing changes. */
	[S_RATE_CHARGE] = "INSERT INTO rate_windows(key_id, window_ms, "
			  "requests, tokens) SELECT id, ?2, 0, ?3 FROM api_keys "
			  "WHERE id = ?1 AND revoked_ms = 0 "
			  "ON CONFLICT(key_id) DO UPDATE SET "
			  "window_ms = max(window_ms, excluded.window_ms), "
			  "requests = CASE WHEN window_ms >= excluded.window_ms "
			  "THEN requests ELSE 0 END, "
			  "tokens = CASE WHEN window_ms >= excluded.window_ms "
			  "THEN tokens ELSE 0 END + excluded.tokens",
	[S_NODE_PUT] = "INSERT INTO nodes(id, url, model, state, verdict, "
		       "created_ms, updated_ms, verified_ms) VALUES (?1, ?2, ?3, "
		       "?4, ?5, ?6, ?6, CASE WHEN ?4 = 'verified' THEN ?6 ELSE 0 "
		       "END) ON CONFLICT(id) DO UPDATE SET url = excluded.url, "
		       "model = excluded.model, state = excluded.state, "
		       "verdict = coalesce(excluded.verdict, nodes.verdict), "
		       "updated_ms = excluded.updated_ms, verified_ms = CASE "
		       "WHEN excluded.state = 'verified' THEN excluded.updated_ms "
		       "ELSE nodes.verified_ms END",
	[S_NODE_STATE] = "UPDATE nodes SET state = ?2, "
			 "verdict = coalesce(?3, verdict), updated_ms = ?4, "
			 "verified_ms = CASE WHEN ?2 = 'verified' THEN ?4 "
			 "ELSE verified_ms END WHERE id = ?1",
	[S_NODE_GET] = "SELECT " NODE_COLS " FROM nodes WHERE id = ?1",
	[S_NODE_LIST] = "SELECT " NODE_COLS " FROM nodes ORDER BY id",
	[S_NODE_REMOVE] = "DELETE FROM nodes WHERE id = ?1",
	[S_AUDIT_ADD] = "INSERT INTO attest_audit(node_id, time_ms, ok, verdict) "
			"VALUES (?1, ?2, ?3, ?4)",
	[S_AUDIT_LIST] = "SELECT id, node_id, time_ms, ok, verdict "
			 "FROM attest_audit WHERE ?1 IS NULL OR node_id = ?1 "
			 "ORDER BY time_ms DESC, id DESC LIMIT ?2",
};

struct sq {
	sqlite3 *db;
	sqlite3_stmt *st[S_COUNT];
};

/* ---- helpers ----------------------------------------------------------- */

/* Maps an SQLite result code to VEIL_E* with a detail.  sqlite3_errmsg()
 * names tables and columns, never bound values. */
static int sq_err(struct sq *q, int src, const char *what)
{
	int rc;

	switch (src & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		rc = VEIL_EAGAIN;
		break;
	case SQLITE_NOMEM:
		rc = VEIL_ENOMEM;
		break;
	case SQLITE_CONSTRAINT:
		rc = VEIL_EINVAL;
		break;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		rc = VEIL_EFORMAT;
		break;
	case SQLITE_TOOBIG:
		rc = VEIL_ERANGE;
		break;
	default:
		rc = VEIL_EIO;
		break;
	}
	return veil_errf(rc, "store (sqlite): %s: %s", what,
			 q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(src));
}

/* The cached statement `id`, prepared on first use, ready to bind. */
static int sq_stmt(struct sq *q, enum sq_id id, sqlite3_stmt **out)
{
	int src;

	if (!q->st[id]) {
		src = sqlite3_prepare_v3(q->db, SQL[id], -1,
					 SQLITE_PREPARE_PERSISTENT, &q->st[id],
					 NULL);
		if (src != SQLITE_OK)
			return sq_err(q, src, "prepare");
	}
	*out = q->st[id];
	return 0;
}

/* Releases the statement's locks and bound values; safe on NULL. */
static void sq_done(sqlite3_stmt *st)
{
	if (st) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
}

/* 1 for a row, 0 when done, VEIL_E* on failure. */
static int sq_step(struct sq *q, sqlite3_stmt *st, const char *what)
{
	int src = sqlite3_step(st);

	if (src == SQLITE_ROW)
		return 1;
	if (src == SQLITE_DONE)
		return 0;
	return sq_err(q, src, what);
}

/* A malloc'd copy of a text column, NULL for SQL NULL. */
static int sq_col_dup(sqlite3_stmt *st, int col, const char **out)
{
	const unsigned char *t;
	char *c;
	int n;

	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		*out = NULL;
		return 0;
	}
	t = sqlite3_column_text(st, col);
	n = sqlite3_column_bytes(st, col);
	if (!t || !(c = malloc((size_t)n + 1)))
		return veil_errf(VEIL_ENOMEM, "store (sqlite): column copy");
	memcpy(c, t, (size_t)n);
	c[n] = '\0';
	*out = c;
	return 0;
}

/* Copies a text column into a fixed buffer; longer text (only possible if
 * someone edited the file) is a format error, not a silent truncation. */
static int sq_col_fixed(sqlite3_stmt *st, int col, char *buf, size_t cap,
			const char *field)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	int n = sqlite3_column_bytes(st, col);

	if (!t)
		n = 0;
	if ((size_t)n >= cap)
		return veil_errf(VEIL_EFORMAT, "store (sqlite): %s: %d bytes "
				 "exceeds %zu", field, n, cap - 1);
	if (n)
		memcpy(buf, t, (size_t)n);
	buf[n] = '\0';
	return 0;
}

/* Grows a malloc'd array of `size`-byte items to hold one more. */
static int sq_grow(void **v, size_t *cap, size_t n, size_t size)
{
	size_t ncap, bytes;
	void *nv;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 8;
	if (veil_mul_ovf(ncap, size, &bytes))
		return veil_errf(VEIL_EOVERFLOW, "store (sqlite): rows");
	if (!(nv = realloc(*v, bytes)))
		return veil_errf(VEIL_ENOMEM, "store (sqlite): rows");
	*v = nv;
	*cap = ncap;
	return 0;
}

/* One use of a cached statement: sq_start() prepares it, sq_i64(),
 * sq_text() and sq_blob() bind its parameters in order, sq_row() steps it
 * and sq_end() resets it (sq_write() and sq_rows() step it to the end and
 * reset it).  The first failure stays in rc and every later step only
 * returns it, so a call reads as a straight line with one check. */
struct sq_call {
	struct sq *q;
	sqlite3_stmt *st;
	int rc;    /* 0, or the call's first failure */
	int param; /* the next parameter's index */
};

static struct sq_call sq_start(struct sq *q, enum sq_id id)
{
	struct sq_call c = {.q = q, .param = 1};

	c.rc = sq_stmt(q, id, &c.st);
	return c;
}

/* Records the result of binding parameter c->param. */
static void sq_bound(struct sq_call *c, int src)
{
	if (src != SQLITE_OK)
		c->rc = sq_err(c->q, src, "bind");
	c->param++;
}

static void sq_i64(struct sq_call *c, int64_t v)
{
	if (c->rc == 0)
		sq_bound(c, sqlite3_bind_int64(c->st, c->param, v));
}

/* NULL binds SQL NULL.  SQLITE_STATIC: every call is reset (sq_end) before
 * the string can go away. */
static void sq_text(struct sq_call *c, const char *s)
{
	if (c->rc == 0)
		sq_bound(c, s ? sqlite3_bind_text(c->st, c->param, s, -1,
						  SQLITE_STATIC)
			      : sqlite3_bind_null(c->st, c->param));
}

static void sq_blob(struct sq_call *c, const void *p, size_t n)
{
	if (c->rc == 0)
		sq_bound(c, p ? sqlite3_bind_blob64(c->st, c->param, p, n,
						    SQLITE_STATIC)
			      : sqlite3_bind_null(c->st, c->param));
}

/* 1 for a row (its columns readable until sq_end), 0 when done, VEIL_E*
 * on failure (of this step or of an earlier one of the call). */
static int sq_row(struct sq_call *c, const char *what)
{
	int rc;

	if (c->rc < 0)
		return c->rc;
	if ((rc = sq_step(c->q, c->st, what)) < 0)
		c->rc = rc;
	return rc;
}

/* Releases the statement's locks and bound values. */
static void sq_end(struct sq_call *c)
{
	sq_done(c->st);
	c->st = NULL;
}

/* Runs a statement without result rows and ends the call; *changed (when
 * not NULL) is the number of rows it inserted, updated or deleted. */
static int sq_write(struct sq_call *c, const char *what, int *changed)
{
	int rc = sq_row(c, what);

	if (rc >= 0 && changed)
		*changed = sqlite3_changes(c->q->db);
	sq_end(c);
	return rc < 0 ? rc : 0;
}

/* Reads every row of the call into one malloc'd array of `size`-byte
 * items, each zeroed and then filled by `row`, and ends the call.  *out is
 * NULL with *n = 0 when there is no row.  On failure the items read so far
 * and the one that failed (a row reader leaves its item freeable) go to
 * `drop`. */
static int sq_rows(struct sq_call *c, const char *what, size_t size,
		   int (*row)(sqlite3_stmt *st, void *item),
		   store_drop_fn *drop, void **out, size_t *n)
{
	unsigned char *v = NULL, *item;
	size_t cnt = 0, cap = 0;
	int rc;

	while ((rc = sq_row(c, what)) == 1) {
		if ((rc = sq_grow((void **)&v, &cap, cnt, size)) < 0)
			break;
		item = v + cnt++ * size; /* counted now: dropped if partial */
		memset(item, 0, size);
		if ((rc = row(c->st, item)) < 0)
			break;
	}
	sq_end(c);
	return store_list_end(rc, v, cnt, drop, out, n);
}

/* Runs a statement without parameters or result rows. */
static int sq_exec(struct sq *q, enum sq_id id, const char *what)
{
	struct sq_call c = sq_start(q, id);

	return sq_write(&c, what, NULL);
}

/* Write transactions take the write lock up front (BEGIN IMMEDIATE) so that
 * the busy timeout covers them: a deferred transaction that upgrades from
 * read to write fails at once with SQLITE_BUSY in WAL mode. */
static int sq_begin(struct sq *q)
{
	return sq_exec(q, S_BEGIN, "begin");
}

static int sq_commit(struct sq *q)
{
	return sq_exec(q, S_COMMIT, "commit");
}

static void sq_rollback(struct sq *q)
{
	if (!sqlite3_get_autocommit(q->db))
		(void)sq_exec(q, S_ROLLBACK, "rollback");
}

/* ---- open, schema ------------------------------------------------------ */

static void sq_close(void *be)
{
	struct sq *q = be;

	if (!q)
		return;
	for (size_t i = 0; i < S_COUNT; i++)
		sqlite3_finalize(q->st[i]);
	sqlite3_close_v2(q->db);
	free(q);
}

static int sq_version_locked(struct sq *q, int64_t *out, bool *present)
{
	struct sq_call c = sq_start(q, S_VERSION_GET);
	int rc;

	if ((rc = sq_row(&c, "schema version")) == 0 ||
	    (rc == 1 && sqlite3_column_int64(c.st, 1) > 1)) {
		rc = veil_errf(VEIL_EFORMAT, "store (sqlite): schema_version "
			       "must hold one row");
	} else if (rc == 1) {
		*present = sqlite3_column_int64(c.st, 1) == 1;
		*out = sqlite3_column_int64(c.st, 0);
		rc = 0;
	}
	sq_end(&c);
	return rc;
}

/* Brings the schema to VEIL_STORE_SCHEMA_VERSION in one transaction. */
static int sq_migrate(struct sq *q, const char *path)
{
	struct sq_call c;
	char *msg = NULL;
	bool present = false;
	int64_t v = 0;
	int rc, src;

	if ((rc = sq_begin(q)) < 0)
		return rc;
	if ((rc = sq_exec(q, S_VERSION_TABLE, "schema version table")) < 0)
		goto out;
	if ((rc = sq_version_locked(q, &v, &present)) < 0)
		goto out;
	if (!present && (rc = sq_exec(q, S_VERSION_INSERT, "schema version")) < 0)
		goto out;
	if (v > VEIL_STORE_SCHEMA_VERSION) {
		rc = veil_errf(VEIL_ENOTSUP, "store %s: schema version %lld is "
			       "newer than this program's %d; upgrade veil "
			       "(the database was left untouched)", path,
			       (long long)v, VEIL_STORE_SCHEMA_VERSION);
		goto out;
	}
	if (v < 0) {
		rc = veil_errf(VEIL_EFORMAT, "store %s: schema version %lld",
			       path, (long long)v);
		goto out;
	}
	if (v == VEIL_STORE_SCHEMA_VERSION)
		goto out; /* rc 0: nothing to do, commit the empty transaction */
	for (; v < VEIL_STORE_SCHEMA_VERSION; v++) {
		/* A constant script from MIGRATIONS[], not built SQL. */
		src = sqlite3_exec(q->db, MIGRATIONS[v], NULL, NULL, &msg);
		if (src != SQLITE_OK) {
			rc = veil_errf(src == SQLITE_NOMEM ? VEIL_ENOMEM : VEIL_EIO,
				       "store %s: migration %lld -> %lld: %s",
				       path, (long long)v, (long long)v + 1,
				       msg ? msg : sqlite3_errstr(src));
			goto out;
		}
	}
	c = sq_start(q, S_VERSION_SET);
	sq_i64(&c, v);
	rc = sq_write(&c, "schema version", NULL);
out:
	sqlite3_free(msg);
	if (rc == 0)
		rc = sq_commit(q);
	if (rc < 0)
		sq_rollback(q);
	return rc;
}

/* journal_mode returns the mode now in force: it may silently stay
 * something else (e.g. for an in-memory database), so check it. */
static int sq_wal(struct sq *q, const char *path)
{
	sqlite3_stmt *st = NULL;
	const char *mode;
	int src, rc;

	src = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode = WAL", -1, &st,
				 NULL);
	if (src != SQLITE_OK)
		return sq_err(q, src, "journal_mode");
	/* Switching a new file to WAL while another process does the same can
	 * answer BUSY without consulting the busy handler: retry for as long
	 * as the busy timeout would have waited. */
	for (int waited = 0;; waited += 10) {
		if ((rc = sq_step(q, st, "journal_mode")) != VEIL_EAGAIN ||
		    waited >= VEIL_STORE_BUSY_MS)
			break;
		sqlite3_reset(st);
		veil_err_clear();
		usleep(10 * 1000);
	}
	if (rc < 0)
		goto out;
	mode = rc ? (const char *)sqlite3_column_text(st, 0) : NULL;
	rc = 0;
	if (!mode || (strcmp(mode, "wal") != 0 &&
		      !(strcmp(mode, "memory") == 0 &&
			strcmp(path, ":memory:") == 0)))
		rc = veil_errf(VEIL_ENOTSUP, "store %s: journal mode '%s', "
			       "not WAL", path, mode ? mode : "?");
out:
	sqlite3_finalize(st);
	return rc;
}

/* Serialises the database file's creation with other handles' opens. */
static pthread_mutex_t g_open_mu = PTHREAD_MUTEX_INITIALIZER;

int store_sqlite_open(const char *path, bool sync_full, void **out_be)
{
	struct sq *q;
	int rc, src, fd;

	if (!(q = calloc(1, sizeof(*q))))
		return veil_errf(VEIL_ENOMEM, "store: open");
	/* sync=normal: the WAL shim (sqlite_vfs.c) writes each commit in one
	 * system call; sync=full pays an fsync per commit anyway. */
	if (!sync_full && (src = store_sqlite_vfs()) != SQLITE_OK) {
		rc = veil_errf(VEIL_EIO, "store %s: vfs: %s", path,
			       sqlite3_errstr(src));
		goto out;
	}
	/* Create it ourselves so it is 0600 (key hashes, receipts); SQLite
	 * gives the -wal and -shm files the database file's mode.  Only a file
	 * that does not exist yet (O_EXCL): close() of any descriptor of a file
	 * drops every POSIX lock this process holds on it, so opening and
	 * closing an existing database would silently drop the locks of the
	 * process's other handles, and the next other process to close it
	 * (`veil-gateway keys create`) would think itself the last user and
	 * delete the -wal and -shm files still in use.  The mutex keeps
	 * another thread's open of the new file out of that close's way. */
	pthread_mutex_lock(&g_open_mu);
	if (strcmp(path, ":memory:") != 0) {
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0) {
			close(fd);
		} else if (errno != EEXIST) {
			rc = veil_errf(VEIL_EIO, "store %s: %s", path,
				       strerror(errno));
			pthread_mutex_unlock(&g_open_mu);
			goto out;
		}
	}
	src = sqlite3_open_v2(path, &q->db,
			      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			      SQLITE_OPEN_NOMUTEX,
			      sync_full ? NULL : STORE_SQLITE_VFS);
	pthread_mutex_unlock(&g_open_mu);
	if (src != SQLITE_OK) {
		rc = veil_errf(VEIL_EIO, "store %s: %s", path,
			       q->db ? sqlite3_errmsg(q->db)
				     : sqlite3_errstr(src));
		goto out;
	}
	sqlite3_extended_result_codes(q->db, 1);
	if ((src = sqlite3_busy_timeout(q->db, VEIL_STORE_BUSY_MS)) != SQLITE_OK) {
		rc = sq_err(q, src, "busy_timeout");
		goto out;
	}
	if ((rc = sq_wal(q, path)) < 0)
		goto out;
	/* In WAL mode a commit has been written to the WAL file (the OS's
	 * page cache) before it returns: NORMAL survives the process being
	 * killed (SIGKILL, OOM, a crash); FULL also fsyncs each commit, so it
	 * survives power loss, at one disk flush per transaction.  Usage rows
	 * must name an existing key.  Under the WAL shim (sync=normal) pages
	 * are never spilled mid-transaction: the shim may hold spilled frames
	 * unwritten, and after a rollback they would have been written later
	 * over another connection's commit (sqlite_vfs.c).  A batch's pages
	 * stay in memory instead (at most VEIL_STORE_BATCH_MAX receipts). */
	src = sqlite3_exec(q->db, sync_full ? "PRAGMA synchronous = FULL;"
					      "PRAGMA foreign_keys = ON;"
					    : "PRAGMA synchronous = NORMAL;"
					      "PRAGMA cache_spill = OFF;"
					      "PRAGMA foreign_keys = ON;",
			   NULL, NULL, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_wal_autocheckpoint(q->db, STORE_SQLITE_CHECKPOINT_PAGES);
	if (src != SQLITE_OK) {
		rc = sq_err(q, src, "pragma");
		goto out;
	}
	if ((rc = sq_migrate(q, path)) < 0)
		goto out;
	*out_be = q;
	q = NULL;
	rc = 0;
out:
	sq_close(q);
	return rc;
}

static int sq_schema_version(void *be, int *out)
{
	struct sq *q = be;
	bool present = false;
	int64_t v = 0;
	int rc;

	if ((rc = sq_version_locked(q, &v, &present)) < 0)
		return rc;
	*out = (int)v;
	return 0;
}

/* ---- keys -------------------------------------------------------------- */

static int sq_key_insert(void *be, const char *name, const char *prefix,
			 const uint8_t hash[STORE_HASH_LEN], int64_t created_ms,
			 int64_t *out_id)
{
	struct sq *q = be;
	struct sq_call c = sq_start(q, S_KEY_INSERT);
	int rc;

	sq_text(&c, name);
	sq_text(&c, prefix);
	sq_blob(&c, hash, STORE_HASH_LEN);
	sq_i64(&c, created_ms);
	if ((rc = sq_write(&c, "key insert", NULL)) < 0)
		return rc;
	*out_id = sqlite3_last_insert_rowid(q->db);
	return 0;
}

/* Reads a row of KEY_COLS; hash may be NULL. */
static int sq_key_row(sqlite3_stmt *st, struct veil_store_key_info *k,
		      uint8_t *hash)
{
	int rc;

	memset(k, 0, sizeof(*k));
	k->id = sqlite3_column_int64(st, 0);
	if ((rc = sq_col_fixed(st, 1, k->name, sizeof(k->name), "key name")) < 0 ||
	    (rc = sq_col_fixed(st, 2, k->prefix, sizeof(k->prefix),
			       "key prefix")) < 0)
		return rc;
	k->created_ms = sqlite3_column_int64(st, 3);
	k->revoked_ms = sqlite3_column_int64(st, 4);
	k->limits.requests_per_min = sqlite3_column_int64(st, 5);
	k->limits.tokens_per_min = sqlite3_column_int64(st, 6);
	k->limits.quota_tokens = sqlite3_column_int64(st, 7);
	if (hash) {
		if (sqlite3_column_bytes(st, 8) != STORE_HASH_LEN)
			return veil_errf(VEIL_EFORMAT, "store (sqlite): key %lld: "
					 "hash is not %d bytes",
					 (long long)k->id, STORE_HASH_LEN);
		memcpy(hash, sqlite3_column_blob(st, 8), STORE_HASH_LEN);
	}
	return 0;
}

/* sq_rows() readers of KEY_COLS: a struct veil_store_key_info, or a struct
 * store_key_row (with the hash). */
static int sq_key_info_item(sqlite3_stmt *st, void *item)
{
	return sq_key_row(st, item, NULL);
}

static int sq_key_hash_item(sqlite3_stmt *st, void *item)
{
	struct store_key_row *k = item;

	return sq_key_row(st, &k->info, k->hash);
}

static int sq_key_by_prefix(void *be, const char *prefix,
			    struct store_key_row **out, size_t *n)
{
	struct sq_call c = sq_start(be, S_KEY_BY_PREFIX);

	sq_text(&c, prefix);
	return sq_rows(&c, "key lookup", sizeof(**out), sq_key_hash_item, NULL,
		       (void **)out, n);
}

static int sq_key_get(void *be, int64_t id, struct veil_store_key_info *out)
{
	struct sq_call c = sq_start(be, S_KEY_GET);
	struct veil_store_key_info k;
	int rc;

	sq_i64(&c, id);
	if ((rc = sq_row(&c, "key get")) == 0)
		rc = store_no_key(id);
	else if (rc == 1 && (rc = sq_key_row(c.st, &k, NULL)) == 0)
		*out = k;
	sq_end(&c);
	return rc;
}

static int sq_key_list(void *be, struct veil_store_key_info **out, size_t *n)
{
	struct sq_call c = sq_start(be, S_KEY_LIST);

	return sq_rows(&c, "key list", sizeof(**out), sq_key_info_item, NULL,
		       (void **)out, n);
}

static int sq_key_revoke(void *be, int64_t id, int64_t now_ms)
{
	struct sq_call c = sq_start(be, S_KEY_REVOKE);
	int rc, changed = 0;

	sq_i64(&c, id);
	sq_i64(&c, now_ms);
	if ((rc = sq_write(&c, "key revoke", &changed)) < 0)
		return rc;
	return changed ? 0 : store_no_key(id);
}

static int sq_key_set_limits(void *be, int64_t id,
			     const struct veil_store_limits *l)
{
	struct sq_call c = sq_start(be, S_KEY_LIMITS);
	int rc, changed = 0;

	sq_i64(&c, id);
	sq_i64(&c, l->requests_per_min);
	sq_i64(&c, l->tokens_per_min);
	sq_i64(&c, l->quota_tokens);
	if ((rc = sq_write(&c, "key limits", &changed)) < 0)
		return rc;
	return changed ? 0 : store_no_key(id);
}

/* ---- usage ------------------------------------------------------------- */

/* One INSERT in whatever transaction is open (autocommit when none). */
static int sq_usage_insert(struct sq *q, const struct veil_store_usage *u)
{
	struct sq_call c = sq_start(q, S_USAGE_ADD);
	int rc, src;

	sq_i64(&c, u->key_id);
	sq_text(&c, u->model);
	sq_text(&c, u->node_id);
	sq_text(&c, u->request_id);
	sq_i64(&c, u->prompt_tokens);
	sq_i64(&c, u->completion_tokens);
	sq_i64(&c, u->created_ms);
	sq_blob(&c, u->receipt_len ? u->receipt : NULL, u->receipt_len);
	/* Stepped here, not through sq_row(): the extended code tells an
	 * unknown key from a repeated request id. */
	if ((rc = c.rc) < 0)
		goto out;
	src = sqlite3_step(c.st);
	if (src == SQLITE_DONE)
		rc = 0;
	else if (src == SQLITE_CONSTRAINT_FOREIGNKEY)
		rc = veil_errf(VEIL_ENOENT, "store: usage: key %lld not found",
			       (long long)u->key_id);
	else if (src == SQLITE_CONSTRAINT_UNIQUE)
		rc = veil_errf(VEIL_EINVAL, "store: usage: request id already "
			       "recorded");
	else
		rc = sq_err(q, src, "usage insert");
out:
	sq_end(&c);
	return rc;
}

/* One rate charge in the open transaction. */
static int sq_charge(struct sq *q, const struct store_charge *ch)
{
	struct sq_call c = sq_start(q, S_RATE_CHARGE);

	sq_i64(&c, ch->key_id);
	sq_i64(&c, ch->now_ms - ch->now_ms % STORE_RATE_WINDOW_MS);
	sq_i64(&c, ch->tokens);
	return sq_write(&c, "rate charge", NULL);
}

/* One key's totals addition in the open transaction. */
static int sq_tally(struct sq *q, const struct store_tally *t)
{
	struct sq_call c = sq_start(q, S_TOTALS_ADD);

	sq_i64(&c, t->key_id);
	sq_i64(&c, t->requests);
	sq_i64(&c, t->prompt_tokens);
	sq_i64(&c, t->completion_tokens);
	return sq_write(&c, "key totals", NULL);
}

static int sq_usage_add_many(void *be, const struct veil_store_usage *u,
			     size_t n, const struct store_tally *t, size_t nt,
			     const struct store_charge *c, size_t nc,
			     size_t *failed)
{
	struct sq *q = be;
	size_t i = 0;
	int rc;

	/* One write transaction, even for one record (its key's totals
	 * change with it), so one WAL write / fsync for all the records,
	 * their totals and their rate charges (group commit), and a failing
	 * record rolls back the others. */
	if ((rc = sq_begin(q)) < 0) {
		*failed = n;
		return rc;
	}
	for (i = 0; i < n; i++)
		if ((rc = sq_usage_insert(q, &u[i])) < 0)
			goto out;
	i = n;
	for (size_t k = 0; k < nt; k++)
		if ((rc = sq_tally(q, &t[k])) < 0)
			goto out;
	for (size_t k = 0; k < nc; k++)
		if ((rc = sq_charge(q, &c[k])) < 0)
			goto out;
	rc = sq_commit(q);
out:
	if (rc < 0) {
		*failed = i;
		sq_rollback(q);
	}
	return rc;
}

/* Three columns from `col` on: requests, prompt and completion tokens. */
static void sq_totals(sqlite3_stmt *st, int col, struct veil_store_totals *t)
{
	t->requests = sqlite3_column_int64(st, col);
	t->prompt_tokens = sqlite3_column_int64(st, col + 1);
	t->completion_tokens = sqlite3_column_int64(st, col + 2);
}

static int sq_usage_totals(void *be, int64_t key_id, int64_t from_ms,
			   int64_t to_ms, struct veil_store_totals *out)
{
	struct sq_call c = sq_start(be, S_USAGE_TOTALS);
	int rc;

	sq_i64(&c, key_id);
	sq_i64(&c, from_ms);
	sq_i64(&c, to_ms);
	if ((rc = sq_row(&c, "usage totals")) == 0) {
		rc = veil_errf(VEIL_EINTERNAL, "store: usage totals: no row");
	} else if (rc == 1) {
		sq_totals(c.st, 0, out);
		rc = 0;
	}
	sq_end(&c);
	return rc;
}

static int sq_key_totals(void *be, int64_t key_id, bool *found,
			 int64_t *quota_tokens, int64_t *revoked_ms,
			 struct veil_store_totals *out)
{
	struct sq_call c = sq_start(be, S_KEY_TOTALS);
	int rc;

	sq_i64(&c, key_id);
	if ((rc = sq_row(&c, "key totals")) >= 0) {
		*found = rc == 1;
		if (rc == 1) {
			*quota_tokens = sqlite3_column_int64(c.st, 0);
			sq_totals(c.st, 1, out);
			*revoked_ms = sqlite3_column_int64(c.st, 4);
		}
		rc = 0;
	}
	sq_end(&c);
	return rc;
}

/* sq_rows() reader of a struct veil_store_group_row. */
static int sq_group_item(sqlite3_stmt *st, void *item)
{
	struct veil_store_group_row *r = item;

	r->key_id = sqlite3_column_int64(st, 0);
	sq_totals(st, 2, &r->t);
	return sq_col_fixed(st, 1, r->label, sizeof(r->label), "group label");
}

static int sq_usage_grouped(void *be, enum store_grouping by,
			    int64_t from_ms, int64_t to_ms,
			    struct veil_store_group_row **out, size_t *n)
{
	struct sq_call c;

	if (by == STORE_GROUP_KEY_TOTALS) {
		c = sq_start(be, S_USAGE_BY_KEY_TOTALS);
	} else {
		c = sq_start(be, by == STORE_GROUP_KEY ? S_USAGE_BY_KEY
						       : S_USAGE_BY_MODEL);
		sq_i64(&c, from_ms);
		sq_i64(&c, to_ms);
	}
	return sq_rows(&c, "usage grouped", sizeof(**out), sq_group_item, NULL,
		       (void **)out, n);
}

static int sq_receipt_get(void *be, const char *request_id,
			  struct veil_buf *out, int64_t *out_key_id)
{
	struct sq_call c = sq_start(be, S_RECEIPT_GET);
	const void *p;
	int rc, len;

	sq_text(&c, request_id);
	if ((rc = sq_row(&c, "receipt get")) < 0)
		goto out;
	if (rc == 0 || sqlite3_column_type(c.st, 1) == SQLITE_NULL) {
		rc = veil_errf(VEIL_ENOENT, "store: no receipt for that request "
			       "id");
		goto out;
	}
	p = sqlite3_column_blob(c.st, 1);
	len = sqlite3_column_bytes(c.st, 1);
	if ((rc = veil_buf_append(out, p, (size_t)len)) < 0)
		goto out;
	if (out_key_id)
		*out_key_id = sqlite3_column_int64(c.st, 0);
out:
	sq_end(&c);
	return rc;
}

/* ---- rate windows ------------------------------------------------------ */

static int sq_rate(void *be, enum store_rate_mode mode, int64_t key_id,
		   int64_t now_ms, int64_t tokens, int *retry_after_s)
{
	struct sq *q = be;
	struct sq_call c;
	int64_t rpm = 0, tpm = 0, win, reqs = 0, toks = 0, wait_ms;
	bool skip = false;
	int rc;

	if ((rc = sq_begin(q)) < 0)
		return rc;
	c = sq_start(q, S_RATE_KEY);
	sq_i64(&c, key_id);
	if ((rc = sq_row(&c, "rate key")) == 0) {
		rc = store_no_key(key_id);
	} else if (rc == 1 && sqlite3_column_int64(c.st, 0) != 0) {
		/* revoked: a take is refused as a key (401); a charge is
		 * skipped, as a batch's is (S_RATE_CHARGE): the key can take
		 * nothing more */
		if (mode == STORE_RATE_TAKE)
			rc = veil_errf(VEIL_ENOENT, "store: key %lld is revoked",
				       (long long)key_id);
		else
			skip = true;
	} else if (rc == 1) {
		rpm = sqlite3_column_int64(c.st, 1);
		tpm = sqlite3_column_int64(c.st, 2);
	}
	sq_end(&c);
	if (skip) {
		rc = sq_commit(q);
		goto out;
	}
	if (rc < 0)
		goto out;

	win = now_ms - now_ms % STORE_RATE_WINDOW_MS;
	c = sq_start(q, S_RATE_GET);
	sq_i64(&c, key_id);
	/* A window at or after ours is the one in force (another gateway's
	 * clock may run ahead); an older one has expired. */
	if ((rc = sq_row(&c, "rate window")) == 1 &&
	    sqlite3_column_int64(c.st, 0) >= win) {
		win = sqlite3_column_int64(c.st, 0);
		reqs = sqlite3_column_int64(c.st, 1);
		toks = sqlite3_column_int64(c.st, 2);
	}
	sq_end(&c);
	if (rc < 0)
		goto out;

	if (mode == STORE_RATE_TAKE) {
		if (tpm > 0 && tokens > tpm) {
			rc = veil_errf(VEIL_EPERM, "store: key %lld: request of "
				       "%lld tokens exceeds the limit of %lld "
				       "per minute", (long long)key_id,
				       (long long)tokens, (long long)tpm);
			goto out;
		}
		if ((rpm > 0 && reqs + 1 > rpm) ||
		    (tpm > 0 && toks + tokens > tpm)) {
			wait_ms = win + STORE_RATE_WINDOW_MS - now_ms;
			wait_ms = VEIL_MIN(VEIL_MAX(wait_ms, 1), STORE_RATE_WINDOW_MS);
			*retry_after_s = (int)((wait_ms + 999) / 1000);
			rc = veil_errf(VEIL_EBUSY, "store: key %lld: rate limit "
				       "(%lld/%lld requests, %lld/%lld tokens "
				       "this minute)", (long long)key_id,
				       (long long)reqs, (long long)rpm,
				       (long long)toks, (long long)tpm);
			goto out;
		}
		reqs++;
	}
	toks += tokens;
	c = sq_start(q, S_RATE_PUT);
	sq_i64(&c, key_id);
	sq_i64(&c, win);
	sq_i64(&c, reqs);
	sq_i64(&c, toks);
	if ((rc = sq_write(&c, "rate update", NULL)) < 0)
		goto out;
	rc = sq_commit(q);
out:
	if (rc < 0)
		sq_rollback(q);
	return rc;
}

/* ---- nodes and audit --------------------------------------------------- */

static int sq_node_put(void *be, const struct veil_store_node *n,
		       int64_t now_ms)
{
	struct sq_call c = sq_start(be, S_NODE_PUT);

	sq_text(&c, n->id);
	sq_text(&c, n->url);
	sq_text(&c, n->model);
	sq_text(&c, veil_store_node_state_name(n->state));
	sq_text(&c, n->verdict);
	sq_i64(&c, now_ms);
	return sq_write(&c, "node put", NULL);
}

static int sq_node_set_state(void *be, const char *id,
			     enum veil_store_node_state state,
			     const char *verdict, int64_t now_ms)
{
	struct sq_call c = sq_start(be, S_NODE_STATE);
	int rc, changed = 0;

	sq_text(&c, id);
	sq_text(&c, veil_store_node_state_name(state));
	sq_text(&c, verdict);
	sq_i64(&c, now_ms);
	if ((rc = sq_write(&c, "node state", &changed)) < 0)
		return rc;
	return changed ? 0 : veil_errf(VEIL_ENOENT, "store: no such node");
}

/* Reads a row of NODE_COLS into a struct veil_store_node of malloc'd
 * strings (also sq_rows()' reader; cleared again on failure). */
static int sq_node_row(sqlite3_stmt *st, void *item)
{
	struct veil_store_node *n = item;
	const char *state = NULL;
	int rc, s;

	memset(n, 0, sizeof(*n));
	if ((rc = sq_col_dup(st, 0, &n->id)) < 0 ||
	    (rc = sq_col_dup(st, 1, &n->url)) < 0 ||
	    (rc = sq_col_dup(st, 2, &n->model)) < 0 ||
	    (rc = sq_col_dup(st, 3, &state)) < 0 ||
	    (rc = sq_col_dup(st, 4, &n->verdict)) < 0)
		goto out;
	if (!n->id || !n->url || !n->model ||
	    (s = veil_store_node_state_parse(state ? state : "")) < 0) {
		rc = veil_errf(VEIL_EFORMAT, "store (sqlite): node row: bad "
			       "state or missing column");
		goto out;
	}
	n->state = (enum veil_store_node_state)s;
	n->created_ms = sqlite3_column_int64(st, 5);
	n->updated_ms = sqlite3_column_int64(st, 6);
	n->verified_ms = sqlite3_column_int64(st, 7);
out:
	free((char *)state);
	if (rc < 0)
		veil_store_node_clear(n);
	return rc;
}

static int sq_node_get(void *be, const char *id, struct veil_store_node *out)
{
	struct sq_call c = sq_start(be, S_NODE_GET);
	int rc;

	sq_text(&c, id);
	if ((rc = sq_row(&c, "node get")) == 0)
		rc = veil_errf(VEIL_ENOENT, "store: no such node");
	else if (rc == 1)
		rc = sq_node_row(c.st, out);
	sq_end(&c);
	return rc;
}

static int sq_node_list(void *be, struct veil_store_node **out, size_t *n)
{
	struct sq_call c = sq_start(be, S_NODE_LIST);

	return sq_rows(&c, "node list", sizeof(**out), sq_node_row,
		       store_drop_nodes, (void **)out, n);
}

static int sq_node_remove(void *be, const char *id)
{
	struct sq_call c = sq_start(be, S_NODE_REMOVE);
	int rc, changed = 0;

	sq_text(&c, id);
	if ((rc = sq_write(&c, "node remove", &changed)) < 0)
		return rc;
	return changed ? 0 : veil_errf(VEIL_ENOENT, "store: no such node");
}

static int sq_audit_add(void *be, const struct veil_store_audit *a)
{
	struct sq_call c = sq_start(be, S_AUDIT_ADD);

	sq_text(&c, a->node_id);
	sq_i64(&c, a->time_ms);
	sq_i64(&c, a->ok ? 1 : 0);
	sq_text(&c, a->verdict);
	return sq_write(&c, "audit add", NULL);
}

/* sq_rows() reader of a struct veil_store_audit (malloc'd strings). */
static int sq_audit_item(sqlite3_stmt *st, void *item)
{
	struct veil_store_audit *a = item;
	int rc;

	a->id = sqlite3_column_int64(st, 0);
	a->time_ms = sqlite3_column_int64(st, 2);
	a->ok = sqlite3_column_int64(st, 3) != 0;
	if ((rc = sq_col_dup(st, 1, &a->node_id)) < 0 ||
	    (rc = sq_col_dup(st, 4, &a->verdict)) < 0)
		return rc;
	return 0;
}

static int sq_audit_list(void *be, const char *node_id, size_t limit,
			 struct veil_store_audit **out, size_t *n)
{
	struct sq_call c = sq_start(be, S_AUDIT_LIST);

	sq_text(&c, node_id);
	sq_i64(&c, (int64_t)limit);
	return sq_rows(&c, "audit list", sizeof(**out), sq_audit_item,
		       store_drop_audit, (void **)out, n);
}

const struct store_ops store_sqlite_ops = {
	.name = "sqlite",
	.close = sq_close,
	.schema_version = sq_schema_version,
	.key_insert = sq_key_insert,
	.key_by_prefix = sq_key_by_prefix,
	.key_get = sq_key_get,
	.key_list = sq_key_list,
	.key_revoke = sq_key_revoke,
	.key_set_limits = sq_key_set_limits,
	.usage_add_many = sq_usage_add_many,
	.usage_totals = sq_usage_totals,
	.key_totals = sq_key_totals,
	.usage_grouped = sq_usage_grouped,
	.receipt_get = sq_receipt_get,
	.rate = sq_rate,
	.node_put = sq_node_put,
	.node_set_state = sq_node_set_state,
	.node_get = sq_node_get,
	.node_list = sq_node_list,
	.node_remove = sq_node_remove,
	.audit_add = sq_audit_add,
	.audit_list = sq_audit_list,
};
