/* Private to src/lib/store: the table of backend operations behind
 * include/veil/store.h.  store.c validates every argument, computes key
 * hashes, compares them in constant time and holds the handle's mutex; a
 * backend only moves already-checked values in and out of its database.
 * Backend functions follow the public conventions (0 or VEIL_E* with a
 * detail; out-params written only on success). */
#ifndef VEIL_STORE_IMPL_H
#define VEIL_STORE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "veil/store.h"

#define STORE_HASH_LEN 32 /* HMAC-SHA256 */

/* A key row with its stored hash, for the constant-time comparison. */
struct store_key_row {
	struct veil_store_key_info info;
	uint8_t hash[STORE_HASH_LEN];
};

/* A batch's rate-window charges, made by the backend after the batch's
 * records in the same transaction: tokens added to the window of key_id
 * that contains now_ms (or a later one already open), as STORE_RATE_CHARGE
 * does, skipped for a revoked key.  store.c merges the records' charges per
 * (key, window) and sorts them by key id, so that concurrent batches on
 * several gateways lock the rate_windows rows in one order (no deadlock). */
struct store_charge {
	int64_t key_id;
	int64_t now_ms;
	int64_t tokens;
};

/* A batch's addition to one key's running totals (table key_totals), made
 * by the backend after the batch's records in the same transaction, so the
 * totals change exactly when records are stored: a refused batch (a repeated
 * request id, say) adds nothing.  store.c sums the records per key and sorts
 * by key id, the same lock order as the charges below. */
struct store_tally {
	int64_t key_id;
	int64_t requests;
	int64_t prompt_tokens;
	int64_t completion_tokens;
};

/* What usage_grouped reads.  store.c picks it from the public enum
 * veil_store_group and the window; a backend never sees the public value, so
 * no number a caller passes can select anything but the two public
 * groupings (store.c refuses the others). */
enum store_grouping {
	STORE_GROUP_KEY,   /* usage rows per key in [from_ms, to_ms) */
	STORE_GROUP_MODEL, /* usage rows per model in [from_ms, to_ms) */
	/* Per key, all time, read from the running totals (table key_totals:
	 * one row per key, kept in the same transactions as the records)
	 * instead of summing every usage row; only keys with at least one
	 * record, by key id, as STORE_GROUP_KEY over [0, INT64_MAX) gives
	 * them.  from_ms / to_ms are ignored. */
	STORE_GROUP_KEY_TOTALS,
};

/* Rate-window operation: take checks the limits, charge does not. */
enum store_rate_mode { STORE_RATE_TAKE, STORE_RATE_CHARGE };

struct store_ops {
	const char *name;
	void (*close)(void *be);
	int (*schema_version)(void *be, int *out);

	int (*key_insert)(void *be, const char *name, const char *prefix,
			  const uint8_t hash[STORE_HASH_LEN], int64_t created_ms,
			  int64_t *out_id);
	/* Every key with this prefix (at most a bounded number), malloc'd. */
	int (*key_by_prefix)(void *be, const char *prefix,
			     struct store_key_row **out, size_t *n);
	int (*key_get)(void *be, int64_t id, struct veil_store_key_info *out);
	int (*key_list)(void *be, struct veil_store_key_info **out, size_t *n);
	int (*key_revoke)(void *be, int64_t id, int64_t now_ms);
	int (*key_set_limits)(void *be, int64_t id,
			      const struct veil_store_limits *l);

	/* All n records (1..VEIL_STORE_BATCH_MAX), then the nt key totals
	 * (1..n, see struct store_tally), then the nc rate charges (0..n,
	 * see struct store_charge) in one transaction, or none of them.  On
	 * failure *failed is the index of the record to blame, or n when no
	 * single record is (begin/commit failed, a totals update or charge
	 * failed, connection lost). */
	int (*usage_add_many)(void *be, const struct veil_store_usage *u,
			      size_t n, const struct store_tally *t, size_t nt,
			      const struct store_charge *c, size_t nc,
			      size_t *failed);
	/* Sums key_id's usage rows with from_ms <= created_ms < to_ms (to_ms
	 * is already INT64_MAX when unbounded). */
	int (*usage_totals)(void *be, int64_t key_id, int64_t from_ms,
			    int64_t to_ms, struct veil_store_totals *out);
	/* One indexed read of key_id's key_totals row (zeros when it has
	 * none) and of its quota_tokens.  *found false (and the other
	 * out-params untouched) when there is no such key. */
	int (*key_totals)(void *be, int64_t key_id, bool *found,
			  int64_t *quota_tokens, int64_t *revoked_ms,
			  struct veil_store_totals *out);
	int (*usage_grouped)(void *be, enum store_grouping by, int64_t from_ms,
			     int64_t to_ms, struct veil_store_group_row **out,
			     size_t *n);
	int (*receipt_get)(void *be, const char *request_id,
			   struct veil_buf *out, int64_t *out_key_id);

	int (*rate)(void *be, enum store_rate_mode mode, int64_t key_id,
		    int64_t now_ms, int64_t tokens, int *retry_after_s);

	int (*node_put)(void *be, const struct veil_store_node *n,
			int64_t now_ms);
	int (*node_set_state)(void *be, const char *id,
			      enum veil_store_node_state st,
			      const char *verdict, int64_t now_ms);
	int (*node_get)(void *be, const char *id, struct veil_store_node *out);
	int (*node_list)(void *be, struct veil_store_node **out, size_t *n);
	int (*node_remove)(void *be, const char *id);
	int (*audit_add)(void *be, const struct veil_store_audit *a);
	int (*audit_list)(void *be, const char *node_id, size_t limit,
			  struct veil_store_audit **out, size_t *n);
};

/* sqlite.c: opens (creating 0600) and migrates the file at `path`. */
int store_sqlite_open(const char *path, bool sync_full, void **out_be);
extern const struct store_ops store_sqlite_ops;

/* sqlite_vfs.c: registers (once; thread-safe) the "veil-wal" VFS, the
 * default VFS with each commit's WAL frames written in one write() call.
 * SQLITE_OK or an SQLite error code. */
#define STORE_SQLITE_VFS "veil-wal"
int store_sqlite_vfs(void);

/* postgres.c: connects to the postgres:// or postgresql:// URI (libpq's own
 * syntax) and migrates the schema under an advisory lock.  The URI (it may
 * hold a password) is kept for reconnecting and wiped on close; it never
 * appears in an error detail. */
int store_pg_open(const char *uri, void **out_be);
extern const struct store_ops store_pg_ops;

/* Fixed one-minute rate windows, shared by the backends. */
#define STORE_RATE_WINDOW_MS 60000

/* store.c, for the backends: VEIL_ENOENT "store: key ID not found", the
 * answer for a key id that matches no row. */
int store_no_key(int64_t id);
/* How a backend releases a list it was reading when the read fails: the
 * array v and what its first n items own.  NULL for items that own nothing
 * (free(v) is all); store_drop_nodes and store_drop_audit are
 * veil_store_nodes_free() and veil_store_audit_free() in this shape. */
typedef void store_drop_fn(void *v, size_t n);
void store_drop_nodes(void *v, size_t n);
void store_drop_audit(void *v, size_t n);
/* The end of a backend's list read: with rc 0 hands the array v of n items
 * to *out and *out_n; with rc < 0 drops it (`drop`, or free(v) when NULL),
 * n counting every item that may own something.  Returns rc. */
int store_list_end(int rc, void *v, size_t n, store_drop_fn *drop,
		   void **out, size_t *out_n);

#endif
