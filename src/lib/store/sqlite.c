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
	" UPDATE key_totals SET requests = requests - 1,"
	" prompt_tokens = prompt_tokens - OLD.prompt_tokens,"
	" completion_tokens = completion_tokens - OLD.completion_tokens"
	" WHERE key_id = OLD.key_id;"
	" END;"
	"CREATE TRIGGER usage_totals_update"
	" AFTER UPDATE OF key_id, prompt_tokens, completion_tokens ON usage BEGIN"
	" UPDATE key_totals SET requests = requests - 1,"
	" prompt_tokens = prompt_tokens - OLD.prompt_tokens,"
	" completion_tokens = completion_tokens - OLD.completion_tokens"
	" WHERE key_id = OLD.key_id;"
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
	S_USAGE_BY_KEY_LIFETIME,
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
			 "coalesce(t.completion_tokens, 0) FROM api_keys k "
			 "LEFT JOIN key_totals t ON t.key_id = k.id "
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
	[S_USAGE_BY_KEY_LIFETIME] = "SELECT t.key_id, coalesce(k.name, ''), "
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

static int sq_bind_i64(struct sq *q, sqlite3_stmt *st, int i, int64_t v)
{
	int src = sqlite3_bind_int64(st, i, v);

	return src == SQLITE_OK ? 0 : sq_err(q, src, "bind");
}

/* NULL binds SQL NULL.  SQLITE_STATIC: every caller resets the statement
 * (sq_done) before the string can go away. */
static int sq_bind_text(struct sq *q, sqlite3_stmt *st, int i, const char *s)
{
	int src = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC)
		    : sqlite3_bind_null(st, i);

	return src == SQLITE_OK ? 0 : sq_err(q, src, "bind");
}

static int sq_bind_blob(struct sq *q, sqlite3_stmt *st, int i,
			const void *p, size_t n)
{
	int src;

	if (!p)
		src = sqlite3_bind_null(st, i);
	else
		src = sqlite3_bind_blob64(st, i, p, n, SQLITE_STATIC);
	return src == SQLITE_OK ? 0 : sq_err(q, src, "bind");
}

/* Runs a statement without parameters or result rows. */
static int sq_exec(struct sq *q, enum sq_id id, const char *what)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, id, &st)) < 0)
		return rc;
	rc = sq_step(q, st, what);
	sq_done(st);
	return rc < 0 ? rc : 0;
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
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_VERSION_GET, &st)) < 0)
		goto out;
	if ((rc = sq_step(q, st, "schema version")) < 0)
		goto out;
	if (rc == 0 || sqlite3_column_int64(st, 1) > 1) {
		rc = veil_errf(VEIL_EFORMAT, "store (sqlite): schema_version "
			       "must hold one row");
		goto out;
	}
	*present = sqlite3_column_int64(st, 1) == 1;
	*out = sqlite3_column_int64(st, 0);
	rc = 0;
out:
	sq_done(st);
	return rc;
}

/* Brings the schema to VEIL_STORE_SCHEMA_VERSION in one transaction. */
static int sq_migrate(struct sq *q, const char *path)
{
	sqlite3_stmt *st = NULL;
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
	if ((rc = sq_stmt(q, S_VERSION_SET, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, v)) < 0 ||
	    (rc = sq_step(q, st, "schema version")) < 0)
		goto out;
	rc = 0;
out:
	sq_done(st);
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
	 * must name an existing key. */
	src = sqlite3_exec(q->db, sync_full ? "PRAGMA synchronous = FULL;"
					      "PRAGMA foreign_keys = ON;"
					    : "PRAGMA synchronous = NORMAL;"
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
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_KEY_INSERT, &st)) < 0 ||
	    (rc = sq_bind_text(q, st, 1, name)) < 0 ||
	    (rc = sq_bind_text(q, st, 2, prefix)) < 0 ||
	    (rc = sq_bind_blob(q, st, 3, hash, STORE_HASH_LEN)) < 0 ||
	    (rc = sq_bind_i64(q, st, 4, created_ms)) < 0 ||
	    (rc = sq_step(q, st, "key insert")) < 0)
		goto out;
	*out_id = sqlite3_last_insert_rowid(q->db);
	rc = 0;
out:
	sq_done(st);
	return rc;
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

static int sq_key_by_prefix(void *be, const char *prefix,
			    struct store_key_row **out, size_t *n)
{
	struct sq *q = be;
	struct store_key_row *v = NULL;
	sqlite3_stmt *st = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	if ((rc = sq_stmt(q, S_KEY_BY_PREFIX, &st)) < 0 ||
	    (rc = sq_bind_text(q, st, 1, prefix)) < 0)
		goto out;
	while ((rc = sq_step(q, st, "key lookup")) == 1) {
		if ((rc = sq_grow((void **)&v, &cap, cnt, sizeof(*v))) < 0 ||
		    (rc = sq_key_row(st, &v[cnt].info, v[cnt].hash)) < 0)
			goto out;
		cnt++;
	}
	if (rc < 0)
		goto out;
	*out = v;
	*n = cnt;
	v = NULL;
out:
	sq_done(st);
	free(v);
	return rc;
}

static int sq_key_get(void *be, int64_t id, struct veil_store_key_info *out)
{
	struct sq *q = be;
	struct veil_store_key_info k;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_KEY_GET, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, id)) < 0 ||
	    (rc = sq_step(q, st, "key get")) < 0)
		goto out;
	if (rc == 0) {
		rc = veil_errf(VEIL_ENOENT, "store: key %lld not found",
			       (long long)id);
		goto out;
	}
	if ((rc = sq_key_row(st, &k, NULL)) < 0)
		goto out;
	*out = k;
out:
	sq_done(st);
	return rc;
}

static int sq_key_list(void *be, struct veil_store_key_info **out, size_t *n)
{
	struct sq *q = be;
	struct veil_store_key_info *v = NULL;
	sqlite3_stmt *st = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	if ((rc = sq_stmt(q, S_KEY_LIST, &st)) < 0)
		goto out;
	while ((rc = sq_step(q, st, "key list")) == 1) {
		if ((rc = sq_grow((void **)&v, &cap, cnt, sizeof(*v))) < 0 ||
		    (rc = sq_key_row(st, &v[cnt], NULL)) < 0)
			goto out;
		cnt++;
	}
	if (rc < 0)
		goto out;
	*out = v;
	*n = cnt;
	v = NULL;
out:
	sq_done(st);
	free(v);
	return rc;
}

static int sq_key_revoke(void *be, int64_t id, int64_t now_ms)
{
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_KEY_REVOKE, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, id)) < 0 ||
	    (rc = sq_bind_i64(q, st, 2, now_ms)) < 0 ||
	    (rc = sq_step(q, st, "key revoke")) < 0)
		goto out;
	rc = sqlite3_changes(q->db) ? 0
	     : veil_errf(VEIL_ENOENT, "store: key %lld not found",
			 (long long)id);
out:
	sq_done(st);
	return rc;
}

static int sq_key_set_limits(void *be, int64_t id,
			     const struct veil_store_limits *l)
{
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_KEY_LIMITS, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, id)) < 0 ||
	    (rc = sq_bind_i64(q, st, 2, l->requests_per_min)) < 0 ||
	    (rc = sq_bind_i64(q, st, 3, l->tokens_per_min)) < 0 ||
	    (rc = sq_bind_i64(q, st, 4, l->quota_tokens)) < 0 ||
	    (rc = sq_step(q, st, "key limits")) < 0)
		goto out;
	rc = sqlite3_changes(q->db) ? 0
	     : veil_errf(VEIL_ENOENT, "store: key %lld not found",
			 (long long)id);
out:
	sq_done(st);
	return rc;
}

/* ---- usage ------------------------------------------------------------- */

/* One INSERT in whatever transaction is open (autocommit when none). */
static int sq_usage_insert(struct sq *q, const struct veil_store_usage *u)
{
	sqlite3_stmt *st = NULL;
	int rc, src;

	if ((rc = sq_stmt(q, S_USAGE_ADD, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, u->key_id)) < 0 ||
	    (rc = sq_bind_text(q, st, 2, u->model)) < 0 ||
	    (rc = sq_bind_text(q, st, 3, u->node_id)) < 0 ||
	    (rc = sq_bind_text(q, st, 4, u->request_id)) < 0 ||
	    (rc = sq_bind_i64(q, st, 5, u->prompt_tokens)) < 0 ||
	    (rc = sq_bind_i64(q, st, 6, u->completion_tokens)) < 0 ||
	    (rc = sq_bind_i64(q, st, 7, u->created_ms)) < 0 ||
	    (rc = sq_bind_blob(q, st, 8, u->receipt_len ? u->receipt : NULL,
			       u->receipt_len)) < 0)
		goto out;
	src = sqlite3_step(st);
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
	sq_done(st);
	return rc;
}

/* One rate charge in the open transaction. */
static int sq_charge(struct sq *q, const struct store_charge *c)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_RATE_CHARGE, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, c->key_id)) < 0 ||
	    (rc = sq_bind_i64(q, st, 2, c->now_ms - c->now_ms %
						STORE_RATE_WINDOW_MS)) < 0 ||
	    (rc = sq_bind_i64(q, st, 3, c->tokens)) < 0)
		goto out;
	rc = sq_step(q, st, "rate charge");
	rc = rc < 0 ? rc : 0;
out:
	sq_done(st);
	return rc;
}

/* One key's totals addition in the open transaction. */
static int sq_tally(struct sq *q, const struct store_tally *t)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_TOTALS_ADD, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, t->key_id)) < 0 ||
	    (rc = sq_bind_i64(q, st, 2, t->requests)) < 0 ||
	    (rc = sq_bind_i64(q, st, 3, t->prompt_tokens)) < 0 ||
	    (rc = sq_bind_i64(q, st, 4, t->completion_tokens)) < 0)
		goto out;
	rc = sq_step(q, st, "key totals");
	rc = rc < 0 ? rc : 0;
out:
	sq_done(st);
	return rc;
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

static int sq_usage_totals(void *be, int64_t key_id, int64_t from_ms,
			   int64_t to_ms, struct veil_store_totals *out)
{
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_USAGE_TOTALS, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, key_id)) < 0 ||
	    (rc = sq_bind_i64(q, st, 2, from_ms)) < 0 ||
	    (rc = sq_bind_i64(q, st, 3, to_ms)) < 0 ||
	    (rc = sq_step(q, st, "usage totals")) < 0)
		goto out;
	if (rc == 0) {
		rc = veil_errf(VEIL_EINTERNAL, "store: usage totals: no row");
		goto out;
	}
	out->requests = sqlite3_column_int64(st, 0);
	out->prompt_tokens = sqlite3_column_int64(st, 1);
	out->completion_tokens = sqlite3_column_int64(st, 2);
	rc = 0;
out:
	sq_done(st);
	return rc;
}

static int sq_key_totals(void *be, int64_t key_id, bool *found,
			 int64_t *quota_tokens, struct veil_store_totals *out)
{
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_KEY_TOTALS, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, key_id)) < 0 ||
	    (rc = sq_step(q, st, "key totals")) < 0)
		goto out;
	*found = rc == 1;
	if (rc == 1) {
		*quota_tokens = sqlite3_column_int64(st, 0);
		out->requests = sqlite3_column_int64(st, 1);
		out->prompt_tokens = sqlite3_column_int64(st, 2);
		out->completion_tokens = sqlite3_column_int64(st, 3);
	}
	rc = 0;
out:
	sq_done(st);
	return rc;
}

static int sq_usage_grouped(void *be, enum veil_store_group by,
			    int64_t from_ms, int64_t to_ms,
			    struct veil_store_group_row **out, size_t *n)
{
	struct sq *q = be;
	struct veil_store_group_row *v = NULL, *r;
	sqlite3_stmt *st = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	if (by == STORE_BY_KEY_LIFETIME) {
		if ((rc = sq_stmt(q, S_USAGE_BY_KEY_LIFETIME, &st)) < 0)
			goto out;
	} else {
		rc = sq_stmt(q, by == VEIL_STORE_BY_KEY ? S_USAGE_BY_KEY
							: S_USAGE_BY_MODEL, &st);
		if (rc < 0 || (rc = sq_bind_i64(q, st, 1, from_ms)) < 0 ||
		    (rc = sq_bind_i64(q, st, 2, to_ms)) < 0)
			goto out;
	}
	while ((rc = sq_step(q, st, "usage grouped")) == 1) {
		if ((rc = sq_grow((void **)&v, &cap, cnt, sizeof(*v))) < 0)
			goto out;
		r = &v[cnt];
		memset(r, 0, sizeof(*r));
		r->key_id = sqlite3_column_int64(st, 0);
		if ((rc = sq_col_fixed(st, 1, r->label, sizeof(r->label),
				       "group label")) < 0)
			goto out;
		r->t.requests = sqlite3_column_int64(st, 2);
		r->t.prompt_tokens = sqlite3_column_int64(st, 3);
		r->t.completion_tokens = sqlite3_column_int64(st, 4);
		cnt++;
	}
	if (rc < 0)
		goto out;
	*out = v;
	*n = cnt;
	v = NULL;
out:
	sq_done(st);
	free(v);
	return rc;
}

static int sq_receipt_get(void *be, const char *request_id,
			  struct veil_buf *out, int64_t *out_key_id)
{
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	const void *p;
	int rc, len;

	if ((rc = sq_stmt(q, S_RECEIPT_GET, &st)) < 0 ||
	    (rc = sq_bind_text(q, st, 1, request_id)) < 0 ||
	    (rc = sq_step(q, st, "receipt get")) < 0)
		goto out;
	if (rc == 0 || sqlite3_column_type(st, 1) == SQLITE_NULL) {
		rc = veil_errf(VEIL_ENOENT, "store: no receipt for that request "
			       "id");
		goto out;
	}
	p = sqlite3_column_blob(st, 1);
	len = sqlite3_column_bytes(st, 1);
	if ((rc = veil_buf_append(out, p, (size_t)len)) < 0)
		goto out;
	if (out_key_id)
		*out_key_id = sqlite3_column_int64(st, 0);
	rc = 0;
out:
	sq_done(st);
	return rc;
}

/* ---- rate windows ------------------------------------------------------ */

static int sq_rate(void *be, enum store_rate_mode mode, int64_t key_id,
		   int64_t now_ms, int64_t tokens, int *retry_after_s)
{
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	int64_t rpm, tpm, win, reqs = 0, toks = 0, wait_ms;
	int rc;

	if ((rc = sq_begin(q)) < 0)
		return rc;
	if ((rc = sq_stmt(q, S_RATE_KEY, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, key_id)) < 0 ||
	    (rc = sq_step(q, st, "rate key")) < 0)
		goto out;
	if (rc == 0) {
		rc = veil_errf(VEIL_ENOENT, "store: key %lld not found",
			       (long long)key_id);
		goto out;
	}
	if (sqlite3_column_int64(st, 0) != 0) {
		rc = veil_errf(VEIL_EPERM, "store: key %lld is revoked",
			       (long long)key_id);
		goto out;
	}
	rpm = sqlite3_column_int64(st, 1);
	tpm = sqlite3_column_int64(st, 2);
	sq_done(st);

	win = now_ms - now_ms % STORE_RATE_WINDOW_MS;
	if ((rc = sq_stmt(q, S_RATE_GET, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, key_id)) < 0 ||
	    (rc = sq_step(q, st, "rate window")) < 0)
		goto out;
	/* A window at or after ours is the one in force (another gateway's
	 * clock may run ahead); an older one has expired. */
	if (rc == 1 && sqlite3_column_int64(st, 0) >= win) {
		win = sqlite3_column_int64(st, 0);
		reqs = sqlite3_column_int64(st, 1);
		toks = sqlite3_column_int64(st, 2);
	}
	sq_done(st);

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
	if ((rc = sq_stmt(q, S_RATE_PUT, &st)) < 0 ||
	    (rc = sq_bind_i64(q, st, 1, key_id)) < 0 ||
	    (rc = sq_bind_i64(q, st, 2, win)) < 0 ||
	    (rc = sq_bind_i64(q, st, 3, reqs)) < 0 ||
	    (rc = sq_bind_i64(q, st, 4, toks)) < 0 ||
	    (rc = sq_step(q, st, "rate update")) < 0)
		goto out;
	sq_done(st);
	st = NULL;
	rc = sq_commit(q);
out:
	sq_done(st);
	if (rc < 0)
		sq_rollback(q);
	return rc;
}

/* ---- nodes and audit --------------------------------------------------- */

static int sq_node_put(void *be, const struct veil_store_node *n,
		       int64_t now_ms)
{
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_NODE_PUT, &st)) < 0 ||
	    (rc = sq_bind_text(q, st, 1, n->id)) < 0 ||
	    (rc = sq_bind_text(q, st, 2, n->url)) < 0 ||
	    (rc = sq_bind_text(q, st, 3, n->model)) < 0 ||
	    (rc = sq_bind_text(q, st, 4,
			       veil_store_node_state_name(n->state))) < 0 ||
	    (rc = sq_bind_text(q, st, 5, n->verdict)) < 0 ||
	    (rc = sq_bind_i64(q, st, 6, now_ms)) < 0 ||
	    (rc = sq_step(q, st, "node put")) < 0)
		goto out;
	rc = 0;
out:
	sq_done(st);
	return rc;
}

static int sq_node_set_state(void *be, const char *id,
			     enum veil_store_node_state state,
			     const char *verdict, int64_t now_ms)
{
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_NODE_STATE, &st)) < 0 ||
	    (rc = sq_bind_text(q, st, 1, id)) < 0 ||
	    (rc = sq_bind_text(q, st, 2,
			       veil_store_node_state_name(state))) < 0 ||
	    (rc = sq_bind_text(q, st, 3, verdict)) < 0 ||
	    (rc = sq_bind_i64(q, st, 4, now_ms)) < 0 ||
	    (rc = sq_step(q, st, "node state")) < 0)
		goto out;
	rc = sqlite3_changes(q->db) ? 0
	     : veil_errf(VEIL_ENOENT, "store: no such node");
out:
	sq_done(st);
	return rc;
}

/* Reads a row of NODE_COLS into malloc'd strings. */
static int sq_node_row(sqlite3_stmt *st, struct veil_store_node *n)
{
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
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_NODE_GET, &st)) < 0 ||
	    (rc = sq_bind_text(q, st, 1, id)) < 0 ||
	    (rc = sq_step(q, st, "node get")) < 0)
		goto out;
	if (rc == 0) {
		rc = veil_errf(VEIL_ENOENT, "store: no such node");
		goto out;
	}
	rc = sq_node_row(st, out);
out:
	sq_done(st);
	return rc;
}

static int sq_node_list(void *be, struct veil_store_node **out, size_t *n)
{
	struct sq *q = be;
	struct veil_store_node *v = NULL;
	sqlite3_stmt *st = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	if ((rc = sq_stmt(q, S_NODE_LIST, &st)) < 0)
		goto out;
	while ((rc = sq_step(q, st, "node list")) == 1) {
		if ((rc = sq_grow((void **)&v, &cap, cnt, sizeof(*v))) < 0 ||
		    (rc = sq_node_row(st, &v[cnt])) < 0)
			goto out;
		cnt++;
	}
	if (rc < 0)
		goto out;
	*out = v;
	*n = cnt;
	v = NULL;
	cnt = 0;
out:
	sq_done(st);
	veil_store_nodes_free(v, cnt);
	return rc;
}

static int sq_node_remove(void *be, const char *id)
{
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_NODE_REMOVE, &st)) < 0 ||
	    (rc = sq_bind_text(q, st, 1, id)) < 0 ||
	    (rc = sq_step(q, st, "node remove")) < 0)
		goto out;
	rc = sqlite3_changes(q->db) ? 0
	     : veil_errf(VEIL_ENOENT, "store: no such node");
out:
	sq_done(st);
	return rc;
}

static int sq_audit_add(void *be, const struct veil_store_audit *a)
{
	struct sq *q = be;
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = sq_stmt(q, S_AUDIT_ADD, &st)) < 0 ||
	    (rc = sq_bind_text(q, st, 1, a->node_id)) < 0 ||
	    (rc = sq_bind_i64(q, st, 2, a->time_ms)) < 0 ||
	    (rc = sq_bind_i64(q, st, 3, a->ok ? 1 : 0)) < 0 ||
	    (rc = sq_bind_text(q, st, 4, a->verdict)) < 0 ||
	    (rc = sq_step(q, st, "audit add")) < 0)
		goto out;
	rc = 0;
out:
	sq_done(st);
	return rc;
}

static int sq_audit_list(void *be, const char *node_id, size_t limit,
			 struct veil_store_audit **out, size_t *n)
{
	struct sq *q = be;
	struct veil_store_audit *v = NULL, *a;
	sqlite3_stmt *st = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	if ((rc = sq_stmt(q, S_AUDIT_LIST, &st)) < 0 ||
	    (rc = sq_bind_text(q, st, 1, node_id)) < 0 ||
	    (rc = sq_bind_i64(q, st, 2, (int64_t)limit)) < 0)
		goto out;
	while ((rc = sq_step(q, st, "audit list")) == 1) {
		if ((rc = sq_grow((void **)&v, &cap, cnt, sizeof(*v))) < 0)
			goto out;
		a = &v[cnt];
		memset(a, 0, sizeof(*a));
		cnt++; /* counted now so a partial row is freed below */
		a->id = sqlite3_column_int64(st, 0);
		a->time_ms = sqlite3_column_int64(st, 2);
		a->ok = sqlite3_column_int64(st, 3) != 0;
		if ((rc = sq_col_dup(st, 1, &a->node_id)) < 0 ||
		    (rc = sq_col_dup(st, 4, &a->verdict)) < 0)
			goto out;
	}
	if (rc < 0)
		goto out;
	*out = v;
	*n = cnt;
	v = NULL;
	cnt = 0;
out:
	sq_done(st);
	veil_store_audit_free(v, cnt);
	return rc;
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
