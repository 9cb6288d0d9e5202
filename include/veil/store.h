/* veil store: the gateway's durable state — API keys, usage records and
 * receipts, per-key rate-limit windows, the node registry and the attestation
 * audit log.
 *
 * Backends.  veil_store_open() takes a URI: "sqlite:PATH" (the default, an
 * embedded database file) or "postgres://..." / "postgresql://..." (libpq's
 * URI syntax; several gateways sharing one database).  Every operation goes
 * through a table of backend functions (src/lib/store/store_impl.h) and
 * behaves the same on both; docs/store.md describes them.  Every statement
 * is prepared once with bound parameters; no SQL is ever assembled from
 * strings.
 *
 * SQLite ("sqlite:PATH", optionally ending "?sync=normal|full"): the file is
 * created 0600, put in WAL mode.  sync=normal (the default) writes each
 * commit to the WAL before the call returns, so a call that returned 0
 * survives the process dying (SIGKILL, OOM, a crash) but an OS crash or power
 * loss may lose the last commits; sync=full also fsyncs every commit, so it
 * survives power loss at one disk flush per transaction.  Foreign keys
 * on, a busy timeout of VEIL_STORE_BUSY_MS.  Checkpoints are SQLite's
 * automatic ones (every ~10000 WAL pages, ten times SQLite's default:
 * docs/store.md "Checkpoints") plus the one the last connection runs on
 * close; a checkpoint never drops committed data, it only moves it
 * from the WAL into the main file.  With sync=normal the WAL is written
 * through a shim that issues each commit as one write() (docs/store.md,
 * "How a commit is written"); a commit is in the kernel before the call
 * returns either way.
 *
 * PostgreSQL: the session runs with synchronous_commit = on, so a call that
 * returned 0 has its commit flushed to the server's WAL (and to synchronous
 * standbys, when the server has any).  A connection found dropped (server
 * restart, backend terminated, idle timeout) is reopened before the next
 * call; a call whose connection drops mid-way is reopened and retried once
 * (see docs/store.md for which calls are idempotent under that retry).
 * Errors from the server are VEIL_EIO with the server's message (never the
 * URI or its password); serialization failures, deadlocks, lock and statement
 * timeouts and "too many connections" are VEIL_EAGAIN.
 *
 * Schema.  A table schema_version holds the version; migrations up to
 * VEIL_STORE_SCHEMA_VERSION run at open inside one transaction (SQLite:
 * BEGIN IMMEDIATE; PostgreSQL: under a transaction-scoped advisory lock), so
 * two processes opening a new database at once do not race.  A database
 * whose version is newer than this program's is refused (VEIL_ENOTSUP,
 * detail names both versions) and left untouched.
 *
 * Concurrency.  One struct veil_store is one database connection guarded by
 * a mutex: any number of threads may share a handle (calls are serialised),
 * or each thread/process may open its own handle on the same file.
 * Read-modify-write operations (rate windows, migrations) are atomic across
 * processes (SQLite: BEGIN IMMEDIATE; PostgreSQL: one INSERT ... ON CONFLICT
 * DO UPDATE, which locks the row), so several gateways sharing one database
 * agree.  A handle must not be used across fork(); open a new one in the
 * child.
 *
 * Secrets and content.  API keys are never stored: only HMAC-SHA256(server
 * secret, key text) and a short display prefix.  Prompts and answers are
 * never stored either; the receipt bytes a caller records must already hold
 * only hashes of them (that is the caller's duty — the store does not look
 * inside).
 *
 * Times are milliseconds since the Unix epoch (int64_t), supplied by the
 * caller where a test may want to inject them.  Every function returns 0 or
 * a negative VEIL_E* code with a detail (veil_err_detail()); out-params are
 * written only on success.  Common errors: VEIL_EINVAL bad argument (NULL,
 * too long, control characters, negative counts, duplicate request id);
 * VEIL_ENOENT no such key/node/receipt; VEIL_EAGAIN the database stayed
 * locked past the busy timeout; VEIL_EIO the database failed; VEIL_EFORMAT
 * the file is not a database. */
#ifndef VEIL_STORE_H
#define VEIL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "veil/base.h"

#define VEIL_STORE_SCHEMA_VERSION 2
#define VEIL_STORE_BUSY_MS 5000

#define VEIL_STORE_SECRET_LEN 32        /* HMAC key for API-key hashes */
#define VEIL_STORE_KEY_TAG "sk-veil-"   /* every key starts with this */
#define VEIL_STORE_KEY_TEXT_LEN 51      /* tag + base64url(32 bytes), no pad */
#define VEIL_STORE_KEY_TEXT_MAX 52      /* ... plus NUL: out buffer size */
#define VEIL_STORE_KEY_PREFIX_LEN 12    /* tag + 4 chars, shown in listings */

#define VEIL_STORE_NAME_MAX 64          /* key name, bytes */
#define VEIL_STORE_MODEL_MAX 128        /* model name */
#define VEIL_STORE_ID_MAX 128           /* node id, request (completion) id */
#define VEIL_STORE_URL_MAX 1024         /* node URL */
#define VEIL_STORE_RECEIPT_MAX (64u * 1024)  /* receipt JSON bytes */
#define VEIL_STORE_VERDICT_MAX (64u * 1024)  /* attestation verdict JSON */
#define VEIL_STORE_TOKENS_MAX ((int64_t)1 << 40) /* per record / request */
#define VEIL_STORE_BATCH_MAX 1000       /* usage records per add_many */

struct veil_store;

/* Opens (creating and migrating if needed) the store named by `uri`.
 * `secret` must be VEIL_STORE_SECRET_LEN bytes; the store keeps a copy
 * (wiped on close).  All gateways sharing a database must use the same
 * secret, or no key will be found.  Errors: VEIL_EINVAL bad URI or secret;
 * VEIL_ENOTSUP a schema newer than this program (or a PostgreSQL server
 * older than 10); VEIL_EFORMAT not a database; VEIL_EIO cannot open or
 * connect (the detail carries the reason, never the URI); VEIL_EAGAIN a
 * concurrent migration held the lock too long. */
int veil_store_open(const char *uri, const struct veil_secret *secret,
		    struct veil_store **out);
/* The database file a "sqlite:PATH[?sync=normal|full]" URI names (the same
 * parsing veil_store_open does: PATH without the "?sync=" suffix), written
 * NUL-terminated to out (cap bytes).  Callers deriving other file names from
 * the database (the gateway's default secret file, PATH.secret) use this so
 * that the sync option does not change them.  VEIL_EINVAL when `uri` is not a
 * sqlite URI, has an empty path or a bad sync value; VEIL_ERANGE when the
 * path does not fit in cap. */
int veil_store_sqlite_path(const char *uri, char *out, size_t cap);
/* Closes the connection, finalises statements, wipes the secret.  NULL is
 * fine. */
void veil_store_close(struct veil_store *s);
/* The schema version the open database is at (== VEIL_STORE_SCHEMA_VERSION
 * after a successful open). */
int veil_store_schema_version(struct veil_store *s, int *out);
/* "sqlite" or "postgres". */
const char *veil_store_backend(const struct veil_store *s);

/* ---- API keys ------------------------------------------------------------ */

/* Per-key limits; 0 means unlimited. */
struct veil_store_limits {
	int64_t requests_per_min;
	int64_t tokens_per_min;
	int64_t quota_tokens; /* lifetime prompt + completion tokens */
};

struct veil_store_key_info {
	int64_t id;
	char name[VEIL_STORE_NAME_MAX + 1];
	char prefix[VEIL_STORE_KEY_PREFIX_LEN + 1]; /* "sk-veil-AbC1", not secret */
	int64_t created_ms;
	int64_t revoked_ms; /* 0 while active */
	struct veil_store_limits limits;
};

/* Creates a key named `name` (1..VEIL_STORE_NAME_MAX bytes, no control
 * characters; names need not be unique) with no limits.  Writes the key text
 * ("sk-veil-" + 43 base64url chars, NUL-terminated) to out_key (cap >=
 * VEIL_STORE_KEY_TEXT_MAX, else VEIL_ERANGE) and its id to *out_id.  This is
 * the only time the key text exists on the server: show it once, then wipe
 * it. */
int veil_store_key_create(struct veil_store *s, const char *name,
			  char *out_key, size_t cap, int64_t *out_id);
/* Finds the key whose text is `key_text` (as sent by a client).  The
 * candidate rows are found by the non-secret prefix and the HMAC is compared
 * with CRYPTO_memcmp over all of them.  VEIL_ENOENT when malformed or
 * unknown (a tampered key is unknown); VEIL_EPERM when revoked. */
int veil_store_key_lookup(struct veil_store *s, const char *key_text,
			  struct veil_store_key_info *out);
int veil_store_key_get(struct veil_store *s, int64_t id,
		       struct veil_store_key_info *out);
/* All keys, revoked ones included, by id.  *out is one malloc'd array (free()
 * it); NULL with *n = 0 when there are none. */
int veil_store_key_list(struct veil_store *s, struct veil_store_key_info **out,
			size_t *n);
/* Marks a key revoked at now_ms (idempotent: the first revocation time
 * stays).  Revoked keys stay listed and their usage stays billable. */
int veil_store_key_revoke(struct veil_store *s, int64_t id, int64_t now_ms);
/* Replaces a key's limits (each >= 0). */
int veil_store_key_set_limits(struct veil_store *s, int64_t id,
			      const struct veil_store_limits *limits);

/* ---- usage and receipts -------------------------------------------------- */

/* One completed request.  request_id is the completion id the client sees
 * (unique; a second record with it is VEIL_EINVAL).  receipt may be NULL with
 * receipt_len 0; otherwise it is the signed receipt JSON (hashes only, never
 * prompt or answer text), at most VEIL_STORE_RECEIPT_MAX bytes
 * (VEIL_ERANGE). */
struct veil_store_usage {
	int64_t key_id;
	const char *model;
	const char *node_id;
	const char *request_id;
	int64_t prompt_tokens;
	int64_t completion_tokens;
	int64_t created_ms;
	const uint8_t *receipt;
	size_t receipt_len;
	/* Optional rate-window charge made in the same transaction as the
	 * record (one commit for both): when rate_tokens > 0 the store does
	 * what veil_store_rate_charge(key_id, rate_now_ms, rate_tokens) does,
	 * and only if the record is stored (a failed batch charges nothing).
	 * A revoked key's window is left alone, as rate_charge refuses it.
	 * 0 (a zeroed struct): no charge, rate_now_ms ignored. */
	int64_t rate_tokens;
	int64_t rate_now_ms;
};

/* Records `u`; when it returns 0 the record is durable, and counted in its
 * key's running totals (same transaction).  VEIL_ENOENT when the key id does
 * not exist. */
int veil_store_usage_add(struct veil_store *s, const struct veil_store_usage *u);
/* Records u[0..n-1] in one transaction (group commit: one fsync / WAL flush
 * for all of them): when it returns 0 all n are durable; when it fails NONE
 * is recorded.  One bad record fails the whole batch with that record's
 * error (veil_store_usage_add's codes; a request id repeated within the
 * batch or already recorded is VEIL_EINVAL), the detail naming its index
 * ("usage record 3 of a batch of 10, none recorded: ...").  A caller that
 * wants the others recorded anyway re-submits them without it, or one by
 * one.  n == 0 does nothing; n > VEIL_STORE_BATCH_MAX is VEIL_ERANGE. */
int veil_store_usage_add_many(struct veil_store *s,
			      const struct veil_store_usage *u, size_t n);
/* The same, also telling which record failed: on failure *failed (when not
 * NULL) is the index of the record to blame, or n when none is (the batch
 * is too large, or the transaction itself failed: begin/commit, connection
 * lost, database locked). */
int veil_store_usage_add_batch(struct veil_store *s,
			       const struct veil_store_usage *u, size_t n,
			       size_t *failed);

struct veil_store_totals {
	int64_t requests;
	int64_t prompt_tokens;
	int64_t completion_tokens;
};

/* Totals of key_id's records with from_ms <= created_ms < to_ms; from_ms 0
 * means from the beginning, to_ms 0 means no upper bound.  A key with no
 * records has zero totals (not an error).  from_ms = to_ms = 0 (lifetime)
 * reads the key's running totals (one row, kept in the same transaction as
 * the records; docs/store.md "Running totals"); any other window sums the
 * key's records in it (an index range scan, as long as the window). */
int veil_store_usage_totals(struct veil_store *s, int64_t key_id,
			    int64_t from_ms, int64_t to_ms,
			    struct veil_store_totals *out);

enum veil_store_group {
	VEIL_STORE_BY_KEY = 0,   /* label = key name, key_id set */
	VEIL_STORE_BY_MODEL = 1, /* label = model, key_id 0 */
};

struct veil_store_group_row {
	int64_t key_id;
	char label[VEIL_STORE_MODEL_MAX + 1];
	struct veil_store_totals t;
};

/* Admin view: totals over all keys in [from_ms, to_ms) (0 = unbounded, as
 * above), one row per key (ordered by key id) or per model (ordered by
 * name).  *out is one malloc'd array (free() it); NULL with *n = 0 when
 * there is no usage.  Per key with from_ms = to_ms = 0 (all time) the rows
 * are the keys' running totals (one row read per key, as the lifetime
 * veil_store_usage_totals); any window, and per model, sums the records. */
int veil_store_usage_grouped(struct veil_store *s, enum veil_store_group by,
			     int64_t from_ms, int64_t to_ms,
			     struct veil_store_group_row **out, size_t *n);

/* Whether `u` is already recorded: 0 when a record with u->request_id is
 * stored under u->key_id with the same receipt bytes; VEIL_ENOENT when it
 * is not (no such record, another key's, another receipt, or `u` carries no
 * receipt, so that nothing identifies it).  For a caller that was told
 * VEIL_EINVAL (a repeated request id) after an earlier attempt at the same
 * record may have committed without its caller learning it (a batch whose
 * commit outcome was lost and whose retry failed): the record is then there
 * and must not be reported as failed.  veil_store_usage_add itself keeps
 * refusing a repeated id (VEIL_EINVAL): a repeat is not silently taken for
 * the earlier record. */
int veil_store_usage_recorded(struct veil_store *s, const struct veil_store_usage *u);

/* Appends the receipt recorded with request_id to `out` (GET
 * /v1/signature/{id}) and, when out_key_id is not NULL, the key that made
 * the request (the caller checks the asker owns it).  VEIL_ENOENT when there
 * is no such request or it has no receipt; VEIL_ERANGE when out->max is too
 * small. */
int veil_store_receipt_get(struct veil_store *s, const char *request_id,
			   struct veil_buf *out, int64_t *out_key_id);

/* VEIL_EPERM when the key's lifetime quota is set and its recorded prompt +
 * completion tokens have reached it; 0 otherwise; VEIL_ENOENT unknown or
 * revoked key (it no longer authenticates).
 * One indexed read of the key and its running totals, however many records
 * the key has.  Not atomic with usage_add: a few requests in flight may
 * overshoot the quota. */
int veil_store_quota_check(struct veil_store *s, int64_t key_id);

/* ---- rate limits ----------------------------------------------------------- */

/* Fixed one-minute windows (aligned to now_ms / 60000) per key, shared by
 * every handle and process on the database.  Takes one request and `tokens`
 * tokens (an estimate, e.g. prompt tokens + max_tokens; 0 is fine) from the
 * key's current window, atomically across every process on the database.
 * Returns 0 when they fit under the key's requests_per_min and
 * tokens_per_min; VEIL_EBUSY when not, with *retry_after_s (1..60) set to
 * the seconds until the window rolls over and nothing taken; VEIL_EPERM
 * when `tokens` alone exceeds tokens_per_min (waiting cannot help);
 * VEIL_ENOENT when the key is unknown or revoked (it no longer
 * authenticates: a 401, not a 429).  retry_after_s is written only
 * with VEIL_EBUSY.  If another gateway's clock is ahead and already opened a
 * later window, that window is used (never reset backwards). */
int veil_store_rate_take(struct veil_store *s, int64_t key_id, int64_t now_ms,
			 int64_t tokens, int *retry_after_s);
/* Adds tokens to the key's current window without checking (e.g. the
 * completion tokens once known), so the next take sees them; a key revoked
 * since is skipped (0: it can take nothing more), as in a usage batch's
 * charge; VEIL_ENOENT for an unknown key. */
int veil_store_rate_charge(struct veil_store *s, int64_t key_id,
			   int64_t now_ms, int64_t tokens);

/* ---- node registry and attestation audit ---------------------------------- */

enum veil_store_node_state {
	VEIL_NODE_PENDING = 0,
	VEIL_NODE_VERIFIED = 1,
	VEIL_NODE_FAILED = 2,
	VEIL_NODE_DRAINING = 3,
	VEIL_NODE_REMOVED = 4,
};

/* "pending", "verified", ...; "?" for an unknown value. */
const char *veil_store_node_state_name(enum veil_store_node_state st);
/* The state named `name`, or -1. */
int veil_store_node_state_parse(const char *name);

/* A registered node.  As input (node_put) the strings are the caller's and
 * the times are ignored; as output each string is malloc'd by the store and
 * released with veil_store_node_clear()/veil_store_nodes_free(). */
struct veil_store_node {
	const char *id;      /* 1..VEIL_STORE_ID_MAX bytes */
	const char *url;     /* 1..VEIL_STORE_URL_MAX bytes */
	const char *model;   /* 1..VEIL_STORE_MODEL_MAX bytes */
	enum veil_store_node_state state;
	const char *verdict; /* last verdict JSON; NULL = none / keep */
	int64_t created_ms;  /* first put */
	int64_t updated_ms;  /* last put or state change */
	int64_t verified_ms; /* last time it became verified, 0 never */
};

/* Adds the node, or updates url, model, state and (when not NULL) verdict of
 * the node with that id. */
int veil_store_node_put(struct veil_store *s, const struct veil_store_node *n,
			int64_t now_ms);
/* Changes the state (and the verdict when not NULL) of an existing node;
 * VEIL_ENOENT when there is none. */
int veil_store_node_set_state(struct veil_store *s, const char *id,
			      enum veil_store_node_state st,
			      const char *verdict, int64_t now_ms);
int veil_store_node_get(struct veil_store *s, const char *id,
			struct veil_store_node *out);
/* All nodes, by id; free with veil_store_nodes_free(). */
int veil_store_node_list(struct veil_store *s, struct veil_store_node **out,
			 size_t *n);
/* Deletes the node row (its audit entries stay).  VEIL_ENOENT if absent. */
int veil_store_node_remove(struct veil_store *s, const char *id);
void veil_store_node_clear(struct veil_store_node *n);
void veil_store_nodes_free(struct veil_store_node *v, size_t n);

/* One attestation check of a node, append-only. */
struct veil_store_audit {
	int64_t id;          /* assigned by the store */
	const char *node_id;
	int64_t time_ms;
	bool ok;
	const char *verdict; /* JSON, may be NULL */
};

int veil_store_audit_add(struct veil_store *s, const struct veil_store_audit *a);
/* The newest `limit` entries (1..10000), of node_id or of all nodes when
 * node_id is NULL, newest first; free with veil_store_audit_free(). */
int veil_store_audit_list(struct veil_store *s, const char *node_id,
			  size_t limit, struct veil_store_audit **out, size_t *n);
void veil_store_audit_free(struct veil_store_audit *v, size_t n);

#endif
