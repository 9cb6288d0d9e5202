/* Unit tests of the gateway store, run twice: against the SQLite backend and
 * against PostgreSQL (a throwaway cluster started through scripts/pgtemp.sh
 * when the PostgreSQL server programs are installed; skipped with a message
 * otherwise).  The same cases cover API keys (hashed, never stored,
 * constant-time lookup), usage totals (the per-key running totals against
 * the rows, under refusals, rollbacks, concurrent writers, hand edits and the
 * migration from schema 1), quota checks, batches and receipts, rate-limit
 * windows shared between handles and processes, the node registry and audit
 * log, schema versions and racing migrations, and that an acknowledged usage
 * record survives the writer being SIGKILLed.  PostgreSQL-only cases: error
 * details (the server's message, never the password) and reconnection after
 * the server drops a session, idle or in the middle of a call.
 *
 * Every SQLite test works in its own directory under /tmp and removes it;
 * every PostgreSQL test in its own schema (search_path in the URI), dropped
 * afterwards.  VEIL_TEST_POSTGRES=URI runs the PostgreSQL cases against an
 * existing server instead (they create and drop their own schemas there). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <glob.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "veil/base.h"
#include "veil/store.h"

/* A minute boundary (2023-11-14T22:13:00Z) plus offsets, for rate tests. */
#define T0 ((int64_t)1700000000000 - (int64_t)1700000000000 % 60000)

enum backend { BE_SQLITE, BE_PG };

struct fx {
	enum backend be;
	char dir[64];
	char path[128];
	char schema[48];  /* PostgreSQL: this test's schema */
	char uri[512];
	struct veil_secret secret;
};

/* The PostgreSQL cluster shared by this binary's PostgreSQL cases. */
static struct {
	bool up;
	bool started;     /* by us, through scripts/pgtemp.sh */
	char dir[64];
	char uri[256];    /* postgres://postgres@127.0.0.1:PORT/veil */
	char why[512];    /* why the cases are skipped */
	PGconn *admin;    /* for setup and for looking under the store */
	int seq;
} pg;

/* ---- the PostgreSQL cluster ---------------------------------------------- */

static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static void pg_start(void)
{
	const char *ext = getenv("VEIL_TEST_POSTGRES");
	char cmd[128], line[256];
	glob_t gl;
	FILE *p;
	int st;
	uint64_t t0 = veil_now_ns();

	if (ext && *ext) {
		snprintf(pg.uri, sizeof(pg.uri), "%s", ext);
	} else {
		if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &gl) != 0) {
			snprintf(pg.why, sizeof(pg.why), "PostgreSQL server "
				 "programs not installed (/usr/lib/postgresql/*/"
				 "bin/initdb); install postgresql to run these");
			return;
		}
		globfree(&gl);
		if (access("scripts/pgtemp.sh", X_OK) != 0) {
			snprintf(pg.why, sizeof(pg.why), "scripts/pgtemp.sh not "
				 "found: run the tests from the repository root");
			return;
		}
		snprintf(pg.dir, sizeof(pg.dir), "/tmp/veil-pgtest-XXXXXX");
		if (!mkdtemp(pg.dir)) {
			snprintf(pg.why, sizeof(pg.why), "mkdtemp: %s",
				 strerror(errno));
			return;
		}
		snprintf(cmd, sizeof(cmd), "scripts/pgtemp.sh start %.64s", pg.dir);
		fflush(stdout);
		if (!(p = popen(cmd, "r"))) {
			snprintf(pg.why, sizeof(pg.why), "popen: %s",
				 strerror(errno));
			rmdir(pg.dir);
			return;
		}
		while (fgets(line, sizeof(line), p))
			snprintf(pg.uri, sizeof(pg.uri), "%s", line);
		st = pclose(p);
		pg.uri[strcspn(pg.uri, "\r\n")] = '\0';
		if (st != 0 || strncmp(pg.uri, "postgres://", 11) != 0) {
			/* Installed but failing: the cases fail, not skip. */
			snprintf(pg.why, sizeof(pg.why), "FAILED: %s exited "
				 "with status %d", cmd, st);
			rmdir(pg.dir); /* the script removed its contents */
			return;
		}
		pg.started = true;
	}
	pg.admin = PQconnectdb(pg.uri);
	PQsetNoticeProcessor(pg.admin, quiet, NULL); /* "drop cascades to" */
	if (PQstatus(pg.admin) != CONNECTION_OK) {
		snprintf(pg.why, sizeof(pg.why), "FAILED: cannot connect to the "
			 "test server: %s", PQerrorMessage(pg.admin));
		return;
	}
	pg.up = true;
	print_message("postgres: cluster ready in %.1f s (%s)\n",
		      (double)(veil_now_ns() - t0) / 1e9,
		      pg.started ? "scripts/pgtemp.sh" : "VEIL_TEST_POSTGRES");
}

static void pg_stop(void)
{
	char cmd[256];

	if (pg.admin)
		PQfinish(pg.admin);
	pg.admin = NULL;
	if (pg.started) {
		snprintf(cmd, sizeof(cmd), "scripts/pgtemp.sh stop %s", pg.dir);
		if (system(cmd) != 0)
			print_error("pgtemp.sh stop %s failed\n", pg.dir);
	}
	pg.up = pg.started = false;
}

/* Test-only SQL on the admin connection (names are ours, made here). */
static void VEIL_PRINTF(1, 2) admin_exec(const char *fmt, ...)
{
	char sql[512];
	PGresult *r;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	r = PQexec(pg.admin, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(pg.admin));
	PQclear(r);
}

/* The first column of the first row as an integer; -1 when no row. */
static long long VEIL_PRINTF(1, 2) admin_int(const char *fmt, ...)
{
	char sql[512];
	long long v = -1;
	PGresult *r;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	r = PQexec(pg.admin, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(pg.admin));
	if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

/* ---- fixtures -------------------------------------------------------------- */

static int setup_common(void **state, enum backend be)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->be = be;
	snprintf(f->dir, sizeof(f->dir), "/tmp/veil-store-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/gw.db", f->dir);
	if (veil_secret_alloc(&f->secret, VEIL_STORE_SECRET_LEN) < 0) {
		rmdir(f->dir);
		free(f);
		return -1;
	}
	for (size_t i = 0; i < f->secret.len; i++)
		f->secret.bytes[i] = (uint8_t)(0xa0 + i);
	*state = f;
	return 0;
}

static int setup_sqlite(void **state)
{
	struct fx *f;

	if (setup_common(state, BE_SQLITE) < 0)
		return -1;
	f = *state;
	snprintf(f->uri, sizeof(f->uri), "sqlite:%s", f->path);
	return 0;
}

/* A fresh, empty schema per test: the store migrates it on first open.
 * application_name marks the test's sessions in pg_stat_activity. */
static int setup_pg(void **state)
{
	struct fx *f;

	if (setup_common(state, BE_PG) < 0)
		return -1;
	f = *state;
	if (!pg.up)
		return 0; /* the test skips (or fails) with pg.why */
	snprintf(f->schema, sizeof(f->schema), "t%d_%d", (int)getpid(), ++pg.seq);
	admin_exec("CREATE SCHEMA %s", f->schema);
	snprintf(f->uri, sizeof(f->uri),
		 "%s?options=-csearch_path%%3D%s&application_name=%s", pg.uri,
		 f->schema, f->schema);
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
	if (f->be == BE_PG && f->schema[0] && pg.up)
		admin_exec("DROP SCHEMA %s CASCADE", f->schema);
	veil_secret_free(&f->secret);
	free(f);
	return 0;
}

/* Every test starts here: PostgreSQL cases skip when there is no cluster
 * (and fail when there should have been one). */
static struct fx *fx_of(void **state)
{
	struct fx *f = *state;
	static bool said;

	if (f->be == BE_PG && !pg.up) {
		if (strncmp(pg.why, "FAILED", 6) == 0)
			fail_msg("postgres: %s", pg.why);
		if (!said)
			print_message("postgres: SKIP: %s\n", pg.why);
		said = true;
		skip();
	}
	return f;
}

static const char *backend_name(const struct fx *f)
{
	return f->be == BE_PG ? "postgres" : "sqlite";
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

/* Looks at the schema version under the store, past its API. */
static void raw_set_version(struct fx *f, int v)
{
	sqlite3 *db = NULL;
	char sql[64];

	if (f->be == BE_PG) {
		admin_exec("UPDATE %s.schema_version SET version = %d", f->schema, v);
		return;
	}
	snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d", v);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static int raw_get_version(struct fx *f)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int v;

	if (f->be == BE_PG)
		return (int)admin_int("SELECT version FROM %s.schema_version",
				      f->schema);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT version FROM schema_version",
					    -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* ---- open, schema --------------------------------------------------------- */

static void test_open_creates_schema_and_reopens_existing_db(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store_key_info k;
	char key[VEIL_STORE_KEY_TEXT_MAX];
	struct veil_store *s = open_store(f);
	struct stat sb;
	int v = 0;
	int64_t id;

	assert_string_equal(veil_store_backend(s), backend_name(f));
	assert_int_equal(veil_store_schema_version(s, &v), 0);
	assert_int_equal(v, VEIL_STORE_SCHEMA_VERSION);
	id = new_key(s, "alice", key);
	veil_store_close(s);

	if (f->be == BE_SQLITE) {
		assert_int_equal(stat(f->path, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
	}

	s = open_store(f); /* existing database: no migration, data kept */
	assert_int_equal(veil_store_schema_version(s, &v), 0);
	assert_int_equal(v, VEIL_STORE_SCHEMA_VERSION);
	assert_int_equal(veil_store_key_lookup(s, key, &k), 0);
	assert_int_equal(k.id, id);
	assert_string_equal(k.name, "alice");
	veil_store_close(s);
}

static void test_open_refuses_db_from_future_schema(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);

	veil_store_close(s);
	raw_set_version(f, 99);
	s = NULL;
	assert_int_equal(veil_store_open(f->uri, &f->secret, &s), VEIL_ENOTSUP);
	assert_null(s);
	assert_non_null(strstr(veil_err_detail(), "schema version 99 is newer"));
	/* Refused, and left untouched. */
	assert_int_equal(raw_get_version(f), 99);
}

/* Several processes open a database nobody has created yet, at the same
 * moment: every open succeeds, the schema is made once, and each process's
 * key lands in it. */
static void test_racing_opens_migrate_once(void **state)
{
	struct fx *f = fx_of(state);
	enum { NPROC = 5 };
	struct veil_store_key_info *keys = NULL;
	struct veil_store *s;
	pid_t pids[NPROC];
	int go[2], v = 0;
	size_t n = 0;

	assert_int_equal(pipe(go), 0);
	for (int c = 0; c < NPROC; c++) {
		pids[c] = fork();
		assert_true(pids[c] >= 0);
		if (pids[c] == 0) {
			struct veil_store *h = NULL;
			char key[VEIL_STORE_KEY_TEXT_MAX], x;
			int64_t id;
			int rc;

			close(go[1]);
			(void)!read(go[0], &x, 1); /* start together */
			if ((rc = veil_store_open(f->uri, &f->secret, &h)) != 0) {
				fprintf(stderr, "child %d: open: %s\n", c,
					veil_err_detail());
				_exit(10);
			}
			if (veil_store_key_create(h, "racer", key, sizeof(key),
						  &id) != 0)
				_exit(11);
			veil_store_close(h);
			_exit(0);
		}
	}
	close(go[0]);
	usleep(50 * 1000);
	close(go[1]); /* EOF releases them all */
	for (int c = 0; c < NPROC; c++) {
		int st = 0;

		assert_int_equal(waitpid(pids[c], &st, 0), pids[c]);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	s = open_store(f);
	assert_int_equal(veil_store_schema_version(s, &v), 0);
	assert_int_equal(v, VEIL_STORE_SCHEMA_VERSION);
	assert_int_equal(raw_get_version(f), VEIL_STORE_SCHEMA_VERSION);
	assert_int_equal(veil_store_key_list(s, &keys, &n), 0);
	assert_int_equal(n, NPROC);
	free(keys);
	veil_store_close(s);
}

static void test_open_rejects_bad_uri_secret_and_non_database(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_secret short_secret = {f->secret.bytes, 16};
	struct veil_store *s = NULL;
	char junk[200], uri[220];
	FILE *fp;

	assert_int_equal(veil_store_open("mysql://db", &f->secret, &s), VEIL_EINVAL);
	assert_int_equal(veil_store_open("sqlite:", &f->secret, &s), VEIL_EINVAL);
	assert_int_equal(veil_store_open("", &f->secret, &s), VEIL_EINVAL);
	assert_int_equal(veil_store_open(f->uri, &short_secret, &s), VEIL_EINVAL);
	assert_int_equal(veil_store_open(f->uri, NULL, &s), VEIL_EINVAL);
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

/* The database path of a sqlite URI, which the gateway's default secret
 * file (PATH.secret) is named after: "?sync=" must not change it, or a
 * gateway started with sync=full would make a new secret and no key would
 * work (the bug: the secret was named after the raw URI). */
static void test_sqlite_path_drops_the_sync_option(void **state)
{
	char p[32];

	(void)state;
	assert_int_equal(veil_store_sqlite_path("sqlite:s.db", p, sizeof(p)), 0);
	assert_string_equal(p, "s.db");
	assert_int_equal(veil_store_sqlite_path("sqlite:s.db?sync=full", p, sizeof(p)), 0);
	assert_string_equal(p, "s.db");
	assert_int_equal(veil_store_sqlite_path("sqlite:/d/s.db?sync=normal", p, sizeof(p)), 0);
	assert_string_equal(p, "/d/s.db");
	/* another '?' belongs to the path */
	assert_int_equal(veil_store_sqlite_path("sqlite:a?b.db", p, sizeof(p)), 0);
	assert_string_equal(p, "a?b.db");
	assert_int_equal(veil_store_sqlite_path("sqlite:s.db?sync=off", p, sizeof(p)),
			 VEIL_EINVAL);
	assert_int_equal(veil_store_sqlite_path("sqlite:?sync=full", p, sizeof(p)),
			 VEIL_EINVAL);
	assert_int_equal(veil_store_sqlite_path("sqlite:", p, sizeof(p)), VEIL_EINVAL);
	assert_int_equal(veil_store_sqlite_path("postgres://h/db", p, sizeof(p)),
			 VEIL_EINVAL);
	assert_int_equal(veil_store_sqlite_path("sqlite:s.db", p, 4), VEIL_ERANGE);
	assert_int_equal(veil_store_sqlite_path("sqlite:s.db", p, 5), 0);
	assert_string_equal(p, "s.db");
}

/* ---- keys ----------------------------------------------------------------- */

static void test_key_create_lookup_revoke(void **state)
{
	struct fx *f = fx_of(state);
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
	struct fx *f = fx_of(state);
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

/* The whole file is searched for the key text and its random bytes; true
 * when the display prefix is there (which shows the search works). */
static bool file_lacks_key(const char *p, const char *key, const uint8_t raw[32])
{
	struct veil_buf b = VEIL_BUF_INIT(64u << 20);
	bool saw_prefix;

	assert_int_equal(veil_buf_read_file(&b, p), 0);
	assert_null(memmem(b.data, b.len, key, strlen(key)));
	assert_null(memmem(b.data, b.len, key + 8, strlen(key) - 8));
	assert_null(memmem(b.data, b.len, key + 12, 16));
	assert_null(memmem(b.data, b.len, raw, 32));
	assert_null(memmem(b.data, b.len, raw, 8));
	saw_prefix = memmem(b.data, b.len, key, VEIL_STORE_KEY_PREFIX_LEN) != NULL;
	veil_buf_free(&b);
	return saw_prefix;
}

/* SQLite: the database file and its WAL. */
static void assert_files_lack_key(const char *path, const char *key,
				  const uint8_t raw[32])
{
	const char *suffix[] = {"", "-wal"};
	bool saw_prefix = false;

	for (size_t i = 0; i < VEIL_ARRAY_LEN(suffix); i++) {
		char p[200];

		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		if (access(p, F_OK) != 0)
			continue;
		if (file_lacks_key(p, key, raw))
			saw_prefix = true;
	}
	assert_true(saw_prefix);
}

/* Every regular file directly in `dir`. */
static void dir_lacks_key(const char *dir, const char *key,
			  const uint8_t raw[32], bool *saw_prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char p[400];
		struct stat sb;

		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
			continue;
		if (file_lacks_key(p, key, raw))
			*saw_prefix = true;
	}
	closedir(d);
}

/* PostgreSQL: after a CHECKPOINT, the database's relation files and the
 * WAL; the cluster is ours (pgtemp.sh), so its files are readable here. */
static void pg_files_lack_key(const char *key, const uint8_t raw[32])
{
	char p[300];
	bool saw_prefix = false;

	admin_exec("CHECKPOINT");
	snprintf(p, sizeof(p), "%s/data/base/%lld", pg.dir,
		 admin_int("SELECT oid FROM pg_database "
			   "WHERE datname = current_database()"));
	dir_lacks_key(p, key, raw, &saw_prefix);
	snprintf(p, sizeof(p), "%s/data/pg_wal", pg.dir);
	dir_lacks_key(p, key, raw, &saw_prefix);
	assert_true(saw_prefix);
}

static void test_db_file_never_contains_key_text(void **state)
{
	struct fx *f = fx_of(state);
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
	if (f->be == BE_PG) {
		if (!pg.started) {
			veil_store_close(s);
			skip(); /* VEIL_TEST_POSTGRES: not our files */
		}
		pg_files_lack_key(key, raw);
		veil_store_close(s);
		return;
	}
	assert_files_lack_key(f->path, key, raw); /* open: data in the WAL */
	veil_store_close(s);
	assert_files_lack_key(f->path, key, raw); /* checkpointed */
}

static void test_key_list_and_limits(void **state)
{
	struct fx *f = fx_of(state);
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
	struct fx *f = fx_of(state);
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
	struct fx *f = fx_of(state);
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
	/* Only the two public groupings: 2 (what the store once used
	 * internally for per key, all time) is refused like any other
	 * number, and the out-params stay untouched. */
	for (size_t i = 0; i < 4; i++) {
		static const int bad[] = {2, 3, 7, -1};

		v = (void *)&n;
		n = 12345;
		assert_int_equal(veil_store_usage_grouped(
					 s, (enum veil_store_group)bad[i], 0, 0,
					 &v, &n),
				 VEIL_EINVAL);
		assert_ptr_equal(v, (void *)&n);
		assert_int_equal(n, 12345);
	}
	veil_store_close(s);
}

static void test_receipt_lookup_by_completion_id(void **state)
{
	struct fx *f = fx_of(state);
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

/* veil_store_usage_recorded: the gateway's writer asks it after a repeated
 * request id (VEIL_EINVAL) in its one-by-one fallback, where a batch whose
 * commit outcome was lost may have stored the record already.  The record
 * is "there" only under the same key with the same receipt bytes; the
 * single-record add itself still refuses the repeat. */
static void assert_totals_exact(struct fx *f, struct veil_store *s,
				int64_t key, int64_t reqs, int64_t prompt,
				int64_t completion);

static void test_usage_recorded_only_under_the_same_key_and_receipt(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	const char *rec = "{\"id\":\"chatcmpl-r\",\"prompt_sha256\":\"00ff\"}";
	const char *other = "{\"id\":\"chatcmpl-r\",\"prompt_sha256\":\"11ee\"}";
	int64_t a = new_key(s, "alice", NULL), b = new_key(s, "bob", NULL);
	struct veil_store_usage u = {
		.key_id = a, .model = "llama", .node_id = "n1",
		.request_id = "chatcmpl-r", .prompt_tokens = 3,
		.completion_tokens = 4, .created_ms = 5,
		.receipt = (const uint8_t *)rec, .receipt_len = strlen(rec),
	};

	assert_int_equal(veil_store_usage_recorded(s, &u), VEIL_ENOENT);
	assert_int_equal(veil_store_usage_add_many(s, &u, 1), 0);
	assert_int_equal(veil_store_usage_recorded(s, &u), 0);
	/* the add keeps refusing the repeat, and counts it once */
	assert_int_equal(veil_store_usage_add(s, &u), VEIL_EINVAL);
	assert_totals_exact(f, s, a, 1, 3, 4);
	/* another key's, another receipt, or nothing to compare: not it */
	u.key_id = b;
	assert_int_equal(veil_store_usage_recorded(s, &u), VEIL_ENOENT);
	u.key_id = a;
	u.receipt = (const uint8_t *)other;
	assert_int_equal(veil_store_usage_recorded(s, &u), VEIL_ENOENT);
	u.receipt_len = strlen(rec) - 1;
	u.receipt = (const uint8_t *)rec;
	assert_int_equal(veil_store_usage_recorded(s, &u), VEIL_ENOENT);
	u.receipt = NULL;
	u.receipt_len = 0;
	assert_int_equal(veil_store_usage_recorded(s, &u), VEIL_ENOENT);
	u.receipt = (const uint8_t *)rec;
	u.receipt_len = strlen(rec);
	u.request_id = "chatcmpl-none";
	assert_int_equal(veil_store_usage_recorded(s, &u), VEIL_ENOENT);
	u.request_id = "";
	assert_int_equal(veil_store_usage_recorded(s, &u), VEIL_EINVAL);
	assert_int_equal(veil_store_usage_recorded(NULL, &u), VEIL_EINVAL);
	assert_int_equal(veil_store_usage_recorded(s, NULL), VEIL_EINVAL);
	veil_store_close(s);
}

static void test_quota_check_counts_recorded_tokens(void **state)
{
	struct fx *f = fx_of(state);
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

/* ---- usage batches (group commit) ------------------------------------------ */

struct batch {
	size_t n;
	struct veil_store_usage *u;
	char (*rid)[40];
	char (*receipt)[80];
};

/* n records under `key`, request ids "<tag>-<i>", tokens i and 2i. */
static void batch_make(struct batch *b, size_t n, int64_t key, const char *tag)
{
	b->n = n;
	b->u = calloc(n ? n : 1, sizeof(*b->u));
	b->rid = calloc(n ? n : 1, sizeof(*b->rid));
	b->receipt = calloc(n ? n : 1, sizeof(*b->receipt));
	assert_true(b->u && b->rid && b->receipt);
	for (size_t i = 0; i < n; i++) {
		snprintf(b->rid[i], sizeof(b->rid[i]), "%s-%zu", tag, i);
		snprintf(b->receipt[i], sizeof(b->receipt[i]),
			 "{\"id\":\"%s\",\"response_sha256\":\"ab\"}", b->rid[i]);
		b->u[i] = (struct veil_store_usage){
			.key_id = key, .model = i % 2 ? "qwen" : "llama",
			.node_id = "node-a", .request_id = b->rid[i],
			.prompt_tokens = (int64_t)i, .completion_tokens = 2 * (int64_t)i,
			.created_ms = 1000 + (int64_t)i,
			.receipt = (const uint8_t *)b->receipt[i],
			.receipt_len = strlen(b->receipt[i]),
		};
	}
}

static void batch_free(struct batch *b)
{
	free(b->u);
	free(b->rid);
	free(b->receipt);
	memset(b, 0, sizeof(*b));
}

static void assert_totals(struct veil_store *s, int64_t key, int64_t reqs,
			  int64_t prompt, int64_t completion)
{
	struct veil_store_totals t;

	assert_int_equal(veil_store_usage_totals(s, key, 0, 0, &t), 0);
	assert_int_equal(t.requests, reqs);
	assert_int_equal(t.prompt_tokens, prompt);
	assert_int_equal(t.completion_tokens, completion);
}

static void test_usage_batch_records_every_record_in_one_call(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	struct veil_buf r = VEIL_BUF_INIT(1024);
	struct batch b, big, one;
	int64_t a = new_key(s, "alice", NULL), k2 = new_key(s, "bob", NULL);
	size_t failed = 77;
	uint64_t t0, t_single, t_batch;

	batch_make(&b, 50, a, "b");
	for (size_t i = 0; i < b.n; i += 3)
		b.u[i].key_id = k2; /* keys mixed within one batch */
	assert_int_equal(veil_store_usage_add_many(s, b.u, b.n), 0);
	{
		int64_t n2 = 0, p2 = 0;

		for (size_t i = 0; i < b.n; i += 3) {
			n2++;
			p2 += (int64_t)i;
		}
		assert_totals(s, k2, n2, p2, 2 * p2);
		assert_totals(s, a, 50 - n2, 1225 - p2, 2 * (1225 - p2));
	}
	assert_int_equal(veil_store_receipt_get(s, "b-49", &r, NULL), 0);
	assert_string_equal((char *)r.data, b.receipt[49]);
	batch_free(&b);

	/* Nothing to do; too many. */
	assert_int_equal(veil_store_usage_add_many(s, NULL, 0), 0);
	batch_make(&big, VEIL_STORE_BATCH_MAX + 1, a, "big");
	assert_int_equal(veil_store_usage_add_batch(s, big.u, big.n, &failed),
			 VEIL_ERANGE);
	assert_int_equal(failed, big.n);
	/* The largest batch goes through in one call. */
	t0 = veil_now_ns();
	assert_int_equal(veil_store_usage_add_many(s, big.u, VEIL_STORE_BATCH_MAX),
			 0);
	t_batch = veil_now_ns() - t0;
	assert_totals(s, a, 50 - 17 + VEIL_STORE_BATCH_MAX,
		      1225 - 408 + 999 * 1000 / 2, 2 * (1225 - 408 + 999 * 1000 / 2));
	batch_free(&big);

	/* The same number one by one, for the record (not asserted: timing). */
	batch_make(&one, 200, a, "one");
	t0 = veil_now_ns();
	for (size_t i = 0; i < one.n; i++)
		assert_int_equal(veil_store_usage_add(s, &one.u[i]), 0);
	t_single = veil_now_ns() - t0;
	print_message("%s: %d records in one batch %.1f ms; 200 one by one "
		      "%.1f ms\n", backend_name(f), VEIL_STORE_BATCH_MAX,
		      (double)t_batch / 1e6, (double)t_single / 1e6);
	batch_free(&one);
	veil_buf_free(&r);
	veil_store_close(s);
}

/* Adds b and expects `rc` blamed on record `at`, and nothing recorded. */
static void batch_refused(struct veil_store *s, struct batch *b, int rc,
			  size_t at, const char *why, int64_t key,
			  int64_t reqs_before)
{
	struct veil_buf r = VEIL_BUF_INIT(1024);
	struct veil_store_totals t;
	char want[64];
	size_t failed = 999;

	assert_int_equal(veil_store_usage_add_batch(s, b->u, b->n, &failed), rc);
	assert_int_equal(failed, at);
	snprintf(want, sizeof(want), "usage record %zu of a batch of %zu", at,
		 b->n);
	if (!strstr(veil_err_detail(), want) || !strstr(veil_err_detail(), why))
		fail_msg("detail '%s' lacks '%s' or '%s'", veil_err_detail(),
			 want, why);
	assert_int_equal(veil_store_usage_add_many(s, b->u, b->n), rc);
	/* None recorded: not the records before the bad one either. */
	assert_int_equal(veil_store_usage_totals(s, key, 0, 0, &t), 0);
	assert_int_equal(t.requests, reqs_before);
	if (at > 0)
		assert_int_equal(veil_store_receipt_get(s, b->rid[0], &r, NULL),
				 VEIL_ENOENT);
	veil_buf_free(&r);
}

static void test_usage_batch_is_all_or_nothing_and_names_the_bad_record(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	struct batch b;
	uint8_t *huge;
	int64_t a = new_key(s, "alice", NULL);

	add_usage(s, a, "llama", "x-taken", 1, 1, 1);
	batch_make(&b, 10, a, "x");

	/* A request id recorded before. */
	b.u[7].request_id = "x-taken";
	batch_refused(s, &b, VEIL_EINVAL, 7, "already recorded", a, 1);
	/* A request id twice within the batch. */
	b.u[7].request_id = b.rid[7];
	b.u[3].request_id = b.rid[1];
	batch_refused(s, &b, VEIL_EINVAL, 3, "already recorded", a, 1);
	b.u[3].request_id = b.rid[3];
	/* An unknown key. */
	b.u[2].key_id = 4242;
	batch_refused(s, &b, VEIL_ENOENT, 2, "key 4242 not found", a, 1);
	b.u[2].key_id = a;
	/* Bad fields, refused before the database is asked. */
	b.u[4].prompt_tokens = -1;
	batch_refused(s, &b, VEIL_EINVAL, 4, "prompt_tokens", a, 1);
	b.u[4].prompt_tokens = 4;
	b.u[0].model = "";
	batch_refused(s, &b, VEIL_EINVAL, 0, "model is empty", a, 1);
	b.u[0].model = "llama";
	huge = calloc(1, VEIL_STORE_RECEIPT_MAX + 1);
	assert_non_null(huge);
	b.u[5].receipt = huge;
	b.u[5].receipt_len = VEIL_STORE_RECEIPT_MAX + 1;
	batch_refused(s, &b, VEIL_ERANGE, 5, "receipt of", a, 1);
	b.u[5].receipt = (const uint8_t *)b.receipt[5];
	b.u[5].receipt_len = strlen(b.receipt[5]);
	free(huge);

	/* After every refusal the handle works, and the mended batch goes in. */
	assert_int_equal(veil_store_usage_add_many(s, b.u, b.n), 0);
	assert_totals(s, a, 11, 1 + 45, 1 + 90);
	batch_free(&b);
	veil_store_close(s);
}

/* ---- running totals (key_totals) ------------------------------------------ */

/* key's rows summed past the store (sum = true) or its key_totals row
 * (sum = false; requests -1 when it has none), read with plain SQL. */
static void raw_totals(struct fx *f, int64_t key, bool sum,
		       struct veil_store_totals *t)
{
	const char *q = sum ? "SELECT count(*), coalesce(sum(prompt_tokens), 0), "
			      "coalesce(sum(completion_tokens), 0) FROM %s%susage "
			      "WHERE key_id = %lld"
			    : "SELECT requests, prompt_tokens, completion_tokens "
			      "FROM %s%skey_totals WHERE key_id = %lld";
	char sql[300];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	*t = (struct veil_store_totals){-1, -1, -1};
	snprintf(sql, sizeof(sql), q, f->be == BE_PG ? f->schema : "",
		 f->be == BE_PG ? "." : "", (long long)key);
	if (f->be == BE_PG) {
		PGresult *r = PQexec(pg.admin, sql);

		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			fail_msg("%s: %s", sql, PQerrorMessage(pg.admin));
		if (PQntuples(r) == 1) {
			t->requests = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
			t->prompt_tokens = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
			t->completion_tokens = strtoll(PQgetvalue(r, 0, 2), NULL,
						       10);
		}
		PQclear(r);
		return;
	}
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW) {
		t->requests = sqlite3_column_int64(st, 0);
		t->prompt_tokens = sqlite3_column_int64(st, 1);
		t->completion_tokens = sqlite3_column_int64(st, 2);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* Plain SQL under the store (test-made statements), used as a format: each
 * %s is the PostgreSQL schema's "NAME." or "" on SQLite, and a literal %
 * must be written %%. */
static void raw_exec(struct fx *f, const char *fmt)
{
	char pre[64], sql[1024];
	sqlite3 *db = NULL;
	char *err = NULL;
	int src;

	snprintf(pre, sizeof(pre), "%s%s", f->be == BE_PG ? f->schema : "",
		 f->be == BE_PG ? "." : "");
	/* fmt holds up to four %s, all the prefix */
	snprintf(sql, sizeof(sql), fmt, pre, pre, pre, pre);
	if (f->be == BE_PG) {
		admin_exec("%s", sql);
		return;
	}
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	src = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (src != SQLITE_OK)
		fail_msg("%s: %s", sql, err ? err : sqlite3_errstr(src));
	sqlite3_free(err);
	sqlite3_close(db);
}

/* The lifetime totals the store answers (its key_totals row), the sum of
 * the rows it answers for a window covering all time (a scan), and the
 * rows summed by plain SQL all agree, and equal what the test expects. */
static void assert_totals_exact(struct fx *f, struct veil_store *s,
				int64_t key, int64_t reqs, int64_t prompt,
				int64_t completion)
{
	struct veil_store_totals life, scan, raw;

	assert_int_equal(veil_store_usage_totals(s, key, 0, 0, &life), 0);
	assert_int_equal(veil_store_usage_totals(s, key, 0, INT64_MAX, &scan), 0);
	raw_totals(f, key, true, &raw);
	if (life.requests != reqs || life.prompt_tokens != prompt ||
	    life.completion_tokens != completion ||
	    memcmp(&life, &scan, sizeof(life)) != 0 ||
	    memcmp(&life, &raw, sizeof(life)) != 0)
		fail_msg("key %lld: totals %lld/%lld/%lld, scan %lld/%lld/%lld, "
			 "rows %lld/%lld/%lld, expected %lld/%lld/%lld",
			 (long long)key, (long long)life.requests,
			 (long long)life.prompt_tokens,
			 (long long)life.completion_tokens,
			 (long long)scan.requests, (long long)scan.prompt_tokens,
			 (long long)scan.completion_tokens,
			 (long long)raw.requests, (long long)raw.prompt_tokens,
			 (long long)raw.completion_tokens, (long long)reqs,
			 (long long)prompt, (long long)completion);
}

/* A charge that fails after the batch's records and totals were written
 * (a test-made trigger on rate_windows), so the whole transaction must
 * roll back, totals included. */
static void make_rate_windows_fail(struct fx *f)
{
	if (f->be == BE_PG)
		raw_exec(f, "CREATE FUNCTION %sboom() RETURNS trigger "
			 "LANGUAGE plpgsql AS $f$ BEGIN RAISE EXCEPTION 'boom'; "
			 "END $f$; CREATE TRIGGER boom BEFORE INSERT OR UPDATE "
			 "ON %srate_windows FOR EACH ROW EXECUTE PROCEDURE "
			 "%sboom()");
	else
		raw_exec(f, "CREATE TRIGGER %sboom BEFORE INSERT ON "
			 "%srate_windows BEGIN SELECT RAISE(ABORT, 'boom'); END");
}

static void test_key_totals_equal_the_rows_after_batches_and_refusals(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	int64_t a = new_key(s, "alice", NULL), b = new_key(s, "bob", NULL);
	int64_t c = new_key(s, "carol", NULL);
	struct veil_store_totals t;
	struct batch bt;
	size_t failed = 99;

	/* No record yet: zeros, and no row in the table either. */
	assert_totals_exact(f, s, a, 0, 0, 0);
	raw_totals(f, a, false, &t);
	assert_int_equal(t.requests, -1);

	/* Mixed keys, out of key order, in one batch: 0..9 with tokens i, 2i. */
	batch_make(&bt, 10, a, "m");
	for (size_t i = 0; i < bt.n; i++)
		bt.u[i].key_id = i % 3 == 0 ? c : i % 3 == 1 ? a : b;
	assert_int_equal(veil_store_usage_add_many(s, bt.u, bt.n), 0);
	/* c: 0 3 6 9; a: 1 4 7; b: 2 5 8 */
	assert_totals_exact(f, s, c, 4, 18, 36);
	assert_totals_exact(f, s, a, 3, 12, 24);
	assert_totals_exact(f, s, b, 3, 15, 30);
	/* The same batch again: every id repeated, refused, nothing counted. */
	assert_int_equal(veil_store_usage_add_batch(s, bt.u, bt.n, &failed),
			 VEIL_EINVAL);
	assert_int_equal(failed, 0);
	batch_free(&bt);

	/* Single adds, one refused as a repeat. */
	add_usage(s, a, "llama", "single-1", 100, 1, 10);
	assert_totals_exact(f, s, a, 4, 112, 25);
	{
		struct veil_store_usage u = {
			.key_id = a, .model = "llama", .node_id = "n",
			.request_id = "single-1", .prompt_tokens = 5000,
			.completion_tokens = 5000, .created_ms = 11,
		};

		assert_int_equal(veil_store_usage_add(s, &u), VEIL_EINVAL);
	}
	assert_totals_exact(f, s, a, 4, 112, 25);

	/* A batch whose last record repeats one within it, and one whose
	 * middle record repeats an old id: the records before were inserted
	 * and rolled back, so nothing is counted. */
	batch_make(&bt, 6, b, "n");
	bt.u[5].request_id = bt.rid[0];
	assert_int_equal(veil_store_usage_add_batch(s, bt.u, bt.n, &failed),
			 VEIL_EINVAL);
	assert_int_equal(failed, 5);
	bt.u[5].request_id = bt.rid[5];
	bt.u[3].request_id = "m-2";
	assert_int_equal(veil_store_usage_add_batch(s, bt.u, bt.n, &failed),
			 VEIL_EINVAL);
	assert_int_equal(failed, 3);
	assert_totals_exact(f, s, b, 3, 15, 30);
	bt.u[3].request_id = bt.rid[3];

	/* A failure after the totals were written (the rate charge comes
	 * last): the totals roll back with the records. */
	make_rate_windows_fail(f);
	bt.u[4].rate_tokens = 7;
	bt.u[4].rate_now_ms = T0;
	/* (SQLite reports RAISE(ABORT) as a constraint failure.) */
	assert_int_equal(veil_store_usage_add_batch(s, bt.u, bt.n, &failed),
			 f->be == BE_PG ? VEIL_EIO : VEIL_EINVAL);
	assert_non_null(strstr(veil_err_detail(), "boom"));
	assert_int_equal(failed, bt.n);
	assert_totals_exact(f, s, b, 3, 15, 30);
	raw_exec(f, f->be == BE_PG ? "DROP FUNCTION %sboom() CASCADE"
				   : "DROP TRIGGER %sboom");
	/* Mended, it goes in once: 0..5 → 15 and 30 more. */
	assert_int_equal(veil_store_usage_add_many(s, bt.u, bt.n), 0);
	assert_totals_exact(f, s, b, 9, 30, 60);
	batch_free(&bt);

	/* The table holds what the store answered. */
	raw_totals(f, b, false, &t);
	assert_int_equal(t.requests, 9);
	assert_int_equal(t.prompt_tokens, 30);
	assert_int_equal(t.completion_tokens, 60);
	veil_store_close(s);
}

/* Rows deleted or changed by hand (an operator's retention DELETE, a fix
 * of a row) keep the totals equal to the rows: the schema's triggers. */
static void test_key_totals_follow_rows_deleted_or_changed_by_hand(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	int64_t a = new_key(s, "alice", NULL), b = new_key(s, "bob", NULL);
	struct veil_store_limits l = {0, 0, 1000};
	struct batch bt;
	char sql[200];

	batch_make(&bt, 20, a, "h"); /* created_ms 1000..1019, tokens i, 2i */
	for (size_t i = 0; i < bt.n; i += 2)
		bt.u[i].key_id = b;
	assert_int_equal(veil_store_usage_add_many(s, bt.u, bt.n), 0);
	batch_free(&bt);
	/* a: odd 1..19 → 100, 200; b: even 0..18 → 90, 180 */
	assert_totals_exact(f, s, a, 10, 100, 200);
	assert_totals_exact(f, s, b, 10, 90, 180);
	assert_int_equal(veil_store_key_set_limits(s, a, &l), 0);

	/* Retention: the first ten (ms 1000..1009) go, five of each key. */
	raw_exec(f, "DELETE FROM %susage WHERE created_ms < 1010");
	assert_totals_exact(f, s, a, 5, 75, 150);  /* 11 13 15 17 19 */
	assert_totals_exact(f, s, b, 5, 70, 140);  /* 10 12 14 16 18 */
	/* A row changed, and one moved to the other key. */
	raw_exec(f, "UPDATE %susage SET prompt_tokens = prompt_tokens + 1000 "
		 "WHERE request_id = 'h-11'");
	assert_totals_exact(f, s, a, 5, 1075, 150);
	assert_int_equal(veil_store_quota_check(s, a), VEIL_EPERM);
	snprintf(sql, sizeof(sql), "UPDATE %%susage SET key_id = %lld "
		 "WHERE request_id = 'h-11'", (long long)b);
	raw_exec(f, sql);
	assert_totals_exact(f, s, a, 4, 64, 128);
	assert_totals_exact(f, s, b, 6, 1081, 162);
	assert_int_equal(veil_store_quota_check(s, a), 0);
	/* Everything of a's gone: zeros, and then a key can be deleted by
	 * hand too (its totals row goes with it). */
	snprintf(sql, sizeof(sql), "DELETE FROM %%susage WHERE key_id = %lld",
		 (long long)a);
	raw_exec(f, sql);
	assert_totals_exact(f, s, a, 0, 0, 0);
	snprintf(sql, sizeof(sql), "DELETE FROM %%sapi_keys WHERE id = %lld",
		 (long long)a);
	raw_exec(f, sql);
	assert_int_equal(veil_store_quota_check(s, a), VEIL_ENOENT);
	assert_totals_exact(f, s, b, 6, 1081, 162);
	veil_store_close(s);
}

/* GET /admin/usage?by=key with no from/to: the per-key answer over all
 * time is the running totals (one row per key), not a sum of every usage
 * row; any window still sums the rows.  Told apart by a key_totals row
 * changed by hand (no trigger follows that): the all-time answer shows it,
 * a window over all time shows the rows.  Keys without records (none ever,
 * or every record deleted) are left out, as the rows' GROUP BY leaves them
 * out, and the rows come by key id with the key's name. */
static void test_usage_grouped_by_key_all_time_reads_key_totals(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	struct veil_store_group_row *v = NULL;
	struct veil_store_totals t;
	size_t n = 0;
	int64_t a, b, c, d;
	char sql[200];

	a = new_key(s, "alice", NULL);
	b = new_key(s, "bob", NULL);
	c = new_key(s, "carol", NULL); /* never used */
	d = new_key(s, "dave", NULL);  /* used, then its records deleted */
	add_usage(s, b, "llama", "g1", 40, 4, 3000);
	add_usage(s, a, "llama", "g2", 10, 1, 1000);
	add_usage(s, a, "qwen", "g3", 20, 2, 2000);
	add_usage(s, d, "qwen", "g4", 5, 5, 2500);
	snprintf(sql, sizeof(sql), "DELETE FROM %%susage WHERE key_id = %lld",
		 (long long)d);
	raw_exec(f, sql);
	snprintf(sql, sizeof(sql), "UPDATE %%skey_totals SET prompt_tokens = "
		 "prompt_tokens + 1000000 WHERE key_id = %lld", (long long)a);
	raw_exec(f, sql);

	assert_int_equal(veil_store_usage_grouped(s, VEIL_STORE_BY_KEY, 0, 0, &v,
						  &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].key_id, a);
	assert_string_equal(v[0].label, "alice");
	assert_int_equal(v[0].t.requests, 2);
	assert_int_equal(v[0].t.prompt_tokens, 1000030); /* key_totals' */
	assert_int_equal(v[0].t.completion_tokens, 3);
	assert_int_equal(v[1].key_id, b);
	assert_string_equal(v[1].label, "bob");
	assert_int_equal(v[1].t.requests, 1);
	assert_int_equal(v[1].t.prompt_tokens, 40);
	assert_int_equal(v[1].t.completion_tokens, 4);
	/* the same numbers as the one-key lifetime answer */
	assert_int_equal(veil_store_usage_totals(s, a, 0, 0, &t), 0);
	assert_memory_equal(&t, &v[0].t, sizeof(t));
	free(v);

	/* any window sums the rows: alice's real 30 */
	assert_int_equal(veil_store_usage_grouped(s, VEIL_STORE_BY_KEY, 0,
						  INT64_MAX, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].key_id, a);
	assert_int_equal(v[0].t.prompt_tokens, 30);
	free(v);
	assert_int_equal(veil_store_usage_grouped(s, VEIL_STORE_BY_KEY, 1500, 0,
						  &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].t.requests, 1);
	assert_int_equal(v[0].t.prompt_tokens, 20);
	free(v);
	/* per model, all time: still the rows */
	assert_int_equal(veil_store_usage_grouped(s, VEIL_STORE_BY_MODEL, 0, 0,
						  &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].label, "llama");
	assert_int_equal(v[0].t.prompt_tokens, 50);
	free(v);
	(void)c;
	veil_store_close(s);
}

static void test_quota_refuses_exactly_at_the_boundary(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	struct veil_store_limits l = {0, 0, 1000};
	int64_t a = new_key(s, "alice", NULL), b = new_key(s, "bob", NULL);
	struct batch bt;

	assert_int_equal(veil_store_key_set_limits(s, a, &l), 0);
	assert_int_equal(veil_store_quota_check(s, a), 0);
	/* 0..29, tokens 3i: 1305 in all; the first 26 give 3 * 325 = 975 */
	batch_make(&bt, 26, a, "q");
	assert_int_equal(veil_store_usage_add_many(s, bt.u, bt.n), 0);
	assert_int_equal(veil_store_quota_check(s, a), 0);
	/* A repeat of a record is refused and does not count. */
	assert_int_equal(veil_store_usage_add(s, &bt.u[25]), VEIL_EINVAL);
	add_usage(s, a, "m", "q-24-more", 20, 4, 100); /* 999 */
	assert_int_equal(veil_store_quota_check(s, a), 0);
	add_usage(s, b, "m", "q-other", 500, 500, 100); /* another key's */
	assert_int_equal(veil_store_quota_check(s, a), 0);
	add_usage(s, a, "m", "q-last", 0, 1, 101); /* 1000: used up */
	assert_int_equal(veil_store_quota_check(s, a), VEIL_EPERM);
	assert_non_null(strstr(veil_err_detail(), "quota of 1000 tokens used"));
	/* Raised by one, it fits again; lifted, always. */
	l.quota_tokens = 1001;
	assert_int_equal(veil_store_key_set_limits(s, a, &l), 0);
	assert_int_equal(veil_store_quota_check(s, a), 0);
	l.quota_tokens = 0;
	assert_int_equal(veil_store_key_set_limits(s, a, &l), 0);
	assert_int_equal(veil_store_quota_check(s, a), 0);
	assert_int_equal(veil_store_quota_check(s, 4242), VEIL_ENOENT);
	assert_int_equal(veil_store_quota_check(s, 0), VEIL_EINVAL);
	assert_int_equal(veil_store_quota_check(NULL, a), VEIL_EINVAL);
	batch_free(&bt);
	veil_store_close(s);
}

/* Several processes (gateways) add batches over the same keys at once, each
 * in its own key order, with rate charges: every batch goes through (no
 * deadlock between the totals rows), and the totals equal the rows. */
static void test_key_totals_stay_exact_under_concurrent_batches(void **state)
{
	struct fx *f = fx_of(state);
	enum { NPROC = 4, NBATCH = 12, NREC = 24, NKEY = 3 };
	struct veil_store *s = open_store(f);
	struct veil_store_limits l = {0, 1000000000, 0};
	int64_t keys[NKEY];
	int go[2], sts[NPROC] = {0};
	pid_t pids[NPROC];
	int64_t want_p[NKEY] = {0}, want_c[NKEY] = {0}, want_n[NKEY] = {0};

	for (int k = 0; k < NKEY; k++) {
		keys[k] = new_key(s, "racer", NULL);
		assert_int_equal(veil_store_key_set_limits(s, keys[k], &l), 0);
	}
	/* What every child adds, computed here the same way. */
	for (int c = 0; c < NPROC; c++)
		for (int bi = 0; bi < NBATCH; bi++)
			for (int i = 0; i < NREC; i++) {
				int k = (c + bi + (c % 2 ? NREC - i : i)) % NKEY;

				want_n[k]++;
				want_p[k] += c * 1000 + i;
				want_c[k] += bi + 1;
			}
	assert_int_equal(pipe(go), 0);
	for (int c = 0; c < NPROC; c++) {
		pids[c] = fork();
		assert_true(pids[c] >= 0);
		if (pids[c] == 0) {
			struct veil_store *h = NULL;
			struct veil_store_usage u[NREC];
			char rid[NREC][48], x;

			close(go[1]);
			(void)!read(go[0], &x, 1);
			if (veil_store_open(f->uri, &f->secret, &h) != 0)
				_exit(10);
			for (int bi = 0; bi < NBATCH; bi++) {
				for (int i = 0; i < NREC; i++) {
					int k = (c + bi + (c % 2 ? NREC - i : i)) %
						NKEY;

					snprintf(rid[i], sizeof(rid[i]),
						 "race-%d-%d-%d", c, bi, i);
					u[i] = (struct veil_store_usage){
						.key_id = keys[k], .model = "m",
						.node_id = "n",
						.request_id = rid[i],
						.prompt_tokens = c * 1000 + i,
						.completion_tokens = bi + 1,
						.created_ms = T0 + i,
						.rate_tokens = 1,
						.rate_now_ms = T0 + bi,
					};
				}
				if (veil_store_usage_add_many(h, u, NREC) != 0) {
					fprintf(stderr, "child %d batch %d: %s\n",
						c, bi, veil_err_detail());
					_exit(11);
				}
			}
			veil_store_close(h);
			_exit(0);
		}
	}
	close(go[0]);
	usleep(50 * 1000);
	close(go[1]);
	/* All of them reaped before any assertion ends the test (and its
	 * teardown drops the schema under the others). */
	for (int c = 0; c < NPROC; c++)
		assert_int_equal(waitpid(pids[c], &sts[c], 0), pids[c]);
	for (int c = 0; c < NPROC; c++) {
		assert_true(WIFEXITED(sts[c]));
		assert_int_equal(WEXITSTATUS(sts[c]), 0);
	}
	for (int k = 0; k < NKEY; k++)
		assert_totals_exact(f, s, keys[k], want_n[k], want_p[k], want_c[k]);
	veil_store_close(s);
}

/* A database of the previous schema version (1: no key_totals) with usage
 * rows, some written by the store and many by plain SQL, is opened by this
 * version: the migration creates the table from the rows.  Then the time of
 * a quota check (one row) against the previous check (the key, then a sum
 * over every row of it) on that key's 100k rows, printed for the record. */
static void test_migration_backfills_key_totals_from_v1_rows(void **state)
{
	struct fx *f = fx_of(state);
	enum { NROWS = 100000, NCALLS = 200 };
	struct veil_store *s = open_store(f);
	struct veil_store_limits l = {0, 0, 0};
	struct veil_store_key_info ki;
	struct veil_store_totals t;
	int64_t a = new_key(s, "alice", NULL), b = new_key(s, "bob", NULL);
	int64_t c = new_key(s, "carol", NULL);
	int64_t want_p, want_c;
	uint64_t t0, t_new, t_old;
	char sql[600];
	int v = 0;

	add_usage(s, a, "llama", "v1-a1", 10, 1, 1000);
	add_usage(s, b, "llama", "v1-b1", 20, 2, 2000);
	add_usage(s, b, "qwen", "v1-b2", 40, 4, 3000);
	veil_store_close(s);

	/* Back to version 1: its schema is this one without key_totals and
	 * its triggers. */
	if (f->be == BE_PG)
		raw_exec(f, "DROP TABLE %skey_totals; "
			 "DROP FUNCTION %sveil_usage_totals_sub() CASCADE; "
			 "DROP FUNCTION %sveil_usage_totals_move() CASCADE");
	else
		raw_exec(f, "DROP TRIGGER %susage_totals_delete; "
			 "DROP TRIGGER %susage_totals_update; "
			 "DROP TABLE %skey_totals");
	raw_set_version(f, 1);
	/* 100k rows of a's, i = 1..NROWS: prompt i % 1000, completion 1.
	 * (Formatted twice, here and by raw_exec: "%%%%" ends up as "%".) */
	if (f->be == BE_PG)
		snprintf(sql, sizeof(sql), "INSERT INTO %%susage(key_id, model, "
			 "node_id, request_id, prompt_tokens, completion_tokens, "
			 "created_ms) SELECT %lld, 'llama', 'n', 'bulk-' || i, "
			 "i %%%% 1000, 1, 5000 + i FROM generate_series(1, %d) i",
			 (long long)a, NROWS);
	else
		snprintf(sql, sizeof(sql), "WITH RECURSIVE g(i) AS (SELECT 1 "
			 "UNION ALL SELECT i + 1 FROM g WHERE i < %d) "
			 "INSERT INTO %%susage(key_id, model, node_id, request_id, "
			 "prompt_tokens, completion_tokens, created_ms) "
			 "SELECT %lld, 'llama', 'n', 'bulk-' || i, i %%%% 1000, 1, "
			 "5000 + i FROM g", NROWS, (long long)a);
	raw_exec(f, sql);
	raw_exec(f, f->be == BE_PG ? "ANALYZE %susage" : "ANALYZE");
	assert_int_equal(raw_get_version(f), 1);

	t0 = veil_now_ns();
	s = open_store(f); /* migrates 1 -> 2 */
	print_message("%s: migration 1 -> 2 over %d rows: %.0f ms\n",
		      backend_name(f), NROWS + 3,
		      (double)(veil_now_ns() - t0) / 1e6);
	assert_int_equal(veil_store_schema_version(s, &v), 0);
	assert_int_equal(v, VEIL_STORE_SCHEMA_VERSION);
	assert_int_equal(raw_get_version(f), VEIL_STORE_SCHEMA_VERSION);
	/* sum of i % 1000 over 1..100000: 100 cycles of 0..999 */
	want_p = 10 + (int64_t)(NROWS / 1000) * (999 * 1000 / 2);
	want_c = 1 + NROWS;
	assert_totals_exact(f, s, a, 1 + NROWS, want_p, want_c);
	assert_totals_exact(f, s, b, 2, 60, 6);
	assert_totals_exact(f, s, c, 0, 0, 0);
	raw_totals(f, c, false, &t);
	assert_int_equal(t.requests, -1); /* no rows, no row */
	/* And the new version keeps counting on top. */
	add_usage(s, a, "llama", "v2-a1", 5, 5, 9000);
	add_usage(s, c, "llama", "v2-c1", 7, 7, 9000);
	want_p += 5;
	want_c += 5;
	assert_totals_exact(f, s, a, 2 + NROWS, want_p, want_c);
	assert_totals_exact(f, s, c, 1, 7, 7);
	/* The quota at its boundary on the migrated key. */
	l.quota_tokens = want_p + want_c + 1;
	assert_int_equal(veil_store_key_set_limits(s, a, &l), 0);
	assert_int_equal(veil_store_quota_check(s, a), 0);
	l.quota_tokens = want_p + want_c;
	assert_int_equal(veil_store_key_set_limits(s, a, &l), 0);
	assert_int_equal(veil_store_quota_check(s, a), VEIL_EPERM);

	/* Timing: the check now, and what it did before (key_get, then the
	 * sum of every row of the key), on the same handle and data. */
	t0 = veil_now_ns();
	for (int i = 0; i < NCALLS; i++)
		assert_int_equal(veil_store_quota_check(s, a), VEIL_EPERM);
	t_new = veil_now_ns() - t0;
	t0 = veil_now_ns();
	for (int i = 0; i < NCALLS / 10; i++) {
		assert_int_equal(veil_store_key_get(s, a, &ki), 0);
		assert_int_equal(veil_store_usage_totals(s, a, 0, INT64_MAX, &t), 0);
	}
	t_old = (veil_now_ns() - t0) * 10;
	print_message("%s: quota check on a key with %d usage rows: %.1f us "
		      "(one totals row) vs %.1f us before (sum of its rows), "
		      "%.0fx\n", backend_name(f), NROWS + 2,
		      (double)t_new / NCALLS / 1e3, (double)t_old / NCALLS / 1e3,
		      (double)t_old / (double)(t_new ? t_new : 1));
	veil_store_close(s);
}

/* Two handles (two connections; for PostgreSQL what two gateways are) see
 * each other's keys, usage, limits, revocations and nodes at once. */
static void test_two_handles_share_keys_usage_and_limits(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s1 = open_store(f), *s2 = open_store(f);
	struct veil_store_limits l = {7, 0, 1000};
	struct veil_store_key_info k;
	struct veil_store_node n = {.id = "node-a", .url = "https://10.0.0.1",
				    .model = "llama", .state = VEIL_NODE_VERIFIED};
	struct veil_store_node *nodes = NULL;
	struct veil_buf r = VEIL_BUF_INIT(1024);
	char key[VEIL_STORE_KEY_TEXT_MAX];
	size_t cnt = 0;
	int64_t id = new_key(s1, "alice", key), owner = 0;
	int retry = 0;

	assert_int_equal(veil_store_key_lookup(s2, key, &k), 0);
	assert_int_equal(k.id, id);
	add_usage(s2, id, "llama", "shared-1", 10, 20, 5);
	assert_totals(s1, id, 1, 10, 20);
	assert_int_equal(veil_store_receipt_get(s1, "shared-1", &r, &owner), 0);
	assert_int_equal(owner, id);
	assert_int_equal(veil_store_key_set_limits(s2, id, &l), 0);
	assert_int_equal(veil_store_key_get(s1, id, &k), 0);
	assert_int_equal(k.limits.requests_per_min, 7);
	assert_int_equal(veil_store_node_put(s1, &n, 100), 0);
	assert_int_equal(veil_store_node_list(s2, &nodes, &cnt), 0);
	assert_int_equal(cnt, 1);
	assert_string_equal(nodes[0].url, "https://10.0.0.1");
	veil_store_nodes_free(nodes, cnt);
	assert_int_equal(veil_store_key_revoke(s1, id, 99), 0);
	assert_int_equal(veil_store_key_lookup(s2, key, &k), VEIL_EPERM);
	assert_int_equal(veil_store_rate_take(s2, id, T0, 1, &retry), VEIL_ENOENT);
	veil_buf_free(&r);
	veil_store_close(s1);
	veil_store_close(s2);
}

/* ---- rate limits ---------------------------------------------------------- */

static void test_rate_requests_per_minute_with_retry_after(void **state)
{
	struct fx *f = fx_of(state);
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
	/* revoked: no longer a key (401), not a limit (429) */
	assert_int_equal(veil_store_rate_take(s, u, T0, 1, &retry), VEIL_ENOENT);
	assert_int_equal(veil_store_quota_check(s, u), VEIL_ENOENT);
	/* a charge for it is skipped, not an error (as in a usage batch) */
	assert_int_equal(veil_store_rate_charge(s, u, T0, 5), 0);
	veil_store_close(s);
}

static void test_rate_tokens_per_minute_and_charge(void **state)
{
	struct fx *f = fx_of(state);
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

/* The gateway's writer charges each record's tokens to its key's rate
 * window in the batch's own transaction (rate_tokens): the same counts as
 * veil_store_rate_charge, per key and window, only for stored records. */
static void test_usage_batch_charges_rate_windows_in_its_transaction(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	struct veil_store_limits la = {0, 1000, 0}, lb = {2, 1000, 0};
	int64_t a = new_key(s, "alice", NULL), b = new_key(s, "bob", NULL);
	int64_t r = new_key(s, "rev", NULL);
	struct batch bt;
	size_t failed = 99;
	int retry = -1;

	assert_int_equal(veil_store_key_set_limits(s, a, &la), 0);
	assert_int_equal(veil_store_key_set_limits(s, b, &lb), 0);
	assert_int_equal(veil_store_key_set_limits(s, r, &la), 0);
	assert_int_equal(veil_store_key_revoke(s, r, 1), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 15000, 100, &retry), 0);
	assert_int_equal(veil_store_rate_take(s, b, T0 + 15000, 0, &retry), 0);

	/* a: 300 + 400 on top of its 100; b: 200 in its window (requests
	 * untouched); the revoked key: skipped, not an error. */
	batch_make(&bt, 5, a, "c");
	bt.u[1].key_id = b;
	bt.u[4].key_id = r;
	for (size_t i = 0; i < bt.n; i++)
		bt.u[i].rate_now_ms = T0 + 20000 + (int64_t)i;
	bt.u[0].rate_tokens = 300;
	bt.u[1].rate_tokens = 200;
	bt.u[2].rate_tokens = 400;
	bt.u[4].rate_tokens = 50;
	assert_int_equal(veil_store_usage_add_many(s, bt.u, bt.n), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 30000, 201, &retry),
			 VEIL_EBUSY);
	assert_int_equal(retry, 30);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 30000, 200, &retry), 0);
	assert_int_equal(veil_store_rate_take(s, b, T0 + 30000, 801, &retry),
			 VEIL_EBUSY);
	assert_int_equal(veil_store_rate_take(s, b, T0 + 30000, 800, &retry), 0);
	assert_int_equal(veil_store_rate_take(s, b, T0 + 30000, 0, &retry),
			 VEIL_EBUSY); /* rpm 2 reached: the charge took none */
	assert_int_equal(veil_store_rate_take(s, r, T0 + 30000, 1, &retry),
			 VEIL_ENOENT);
	batch_free(&bt);

	/* A refused batch charges nothing (b's window is full: 1000). */
	assert_int_equal(veil_store_key_set_limits(s, b, &la), 0);
	batch_make(&bt, 3, a, "d");
	bt.u[2].request_id = "c-0"; /* recorded above */
	for (size_t i = 0; i < bt.n; i++) {
		bt.u[i].key_id = i == 0 ? b : a;
		bt.u[i].rate_tokens = 500;
		bt.u[i].rate_now_ms = T0 + 90000;
	}
	assert_int_equal(veil_store_usage_add_batch(s, bt.u, bt.n, &failed),
			 VEIL_EINVAL);
	assert_int_equal(failed, 2);
	assert_int_equal(veil_store_rate_take(s, b, T0 + 40000, 1, &retry),
			 VEIL_EBUSY);
	assert_int_equal(retry, 20); /* still the first minute's window */

	/* One record alone (its own transaction with its charge), in the next
	 * window: the window restarts from the charge. */
	bt.u[2].request_id = bt.rid[2];
	bt.u[0].rate_now_ms = T0 + 61000;
	assert_int_equal(veil_store_usage_add(s, &bt.u[0]), 0);
	assert_int_equal(veil_store_rate_take(s, b, T0 + 62000, 501, &retry),
			 VEIL_EBUSY);
	assert_int_equal(retry, 58);
	assert_int_equal(veil_store_rate_take(s, b, T0 + 62000, 500, &retry), 0);

	/* One key charged in two windows within a batch: as two charges in
	 * time order, the later window restarts and keeps only its own. */
	bt.u[1].rate_now_ms = T0 + 130000;
	bt.u[1].rate_tokens = 30;
	bt.u[2].rate_now_ms = T0 + 100000;
	bt.u[2].rate_tokens = 20;
	assert_int_equal(veil_store_usage_add_many(s, &bt.u[1], 2), 0);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 131000, 971, &retry),
			 VEIL_EBUSY);
	assert_int_equal(veil_store_rate_take(s, a, T0 + 131000, 970, &retry), 0);
	assert_totals(s, a, 3 + 2, 5 + 3, 2 * (5 + 3));
	batch_free(&bt);

	/* A bad charge is the record's fault, refused before the database. */
	batch_make(&bt, 2, a, "e");
	bt.u[1].rate_tokens = -5;
	assert_int_equal(veil_store_usage_add_batch(s, bt.u, bt.n, &failed),
			 VEIL_EINVAL);
	assert_int_equal(failed, 1);
	batch_free(&bt);
	veil_store_close(s);
}

static void test_rate_two_handles_on_one_database_agree(void **state)
{
	struct fx *f = fx_of(state);
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

/* `nproc` processes, each with its own handle, take `per` times from one
 * key's window at the same instant; returns how many takes got through. */
static int race_takes(struct fx *f, int64_t key, int nproc, int per,
		      int64_t now, int64_t tokens)
{
	int go[2], total = 0;
	pid_t pids[8];

	assert_true(nproc <= 8);
	assert_int_equal(pipe(go), 0);
	for (int c = 0; c < nproc; c++) {
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
			for (int i = 0; i < per; i++) {
				int rc = veil_store_rate_take(h, key, now, tokens,
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
	close(go[1]); /* EOF releases them all */
	for (int c = 0; c < nproc; c++) {
		int st = 0;

		assert_int_equal(waitpid(pids[c], &st, 0), pids[c]);
		assert_true(WIFEXITED(st));
		assert_true(WEXITSTATUS(st) < 254);
		total += WEXITSTATUS(st);
	}
	return total;
}

/* Several processes hammer one key at the same instant: exactly the limit
 * gets through, however their transactions interleave — for requests (three
 * races, as one interleaving may happen to be harmless) and for tokens. */
static void test_rate_processes_never_exceed_the_limit(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	struct veil_store_limits l = {40, 0, 0}, lt = {0, 200, 0};
	int64_t a[3], b = new_key(s, "bob", NULL);
	int retry = 0;

	for (int i = 0; i < 3; i++) {
		a[i] = new_key(s, "alice", NULL);
		assert_int_equal(veil_store_key_set_limits(s, a[i], &l), 0);
	}
	assert_int_equal(veil_store_key_set_limits(s, b, &lt), 0);
	veil_store_close(s); /* no handle crosses fork() */
	for (int i = 0; i < 3; i++)
		assert_int_equal(race_takes(f, a[i], 4, 20, T0 + 5000, 1), 40);
	/* 200 tokens a minute, 3 per request: 66 requests, not 67. */
	assert_int_equal(race_takes(f, b, 4, 25, T0 + 7000, 3), 66);
	s = open_store(f);
	assert_int_equal(veil_store_rate_take(s, a[0], T0 + 9000, 0, &retry),
			 VEIL_EBUSY);
	assert_int_equal(veil_store_rate_take(s, b, T0 + 9000, 3, &retry),
			 VEIL_EBUSY);
	assert_int_equal(veil_store_rate_take(s, b, T0 + 9000, 2, &retry), 0);
	veil_store_close(s);
}

/* ---- nodes and audit ------------------------------------------------------ */

static void test_node_registry_put_update_list_remove(void **state)
{
	struct fx *f = fx_of(state);
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
	struct fx *f = fx_of(state);
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

/* ---- PostgreSQL only: errors and dropped sessions ---------------------------- */

static void assert_open_fails(struct fx *f, const char *uri, int rc,
			      const char *must, const char *never)
{
	struct veil_store *s = NULL;
	int got = veil_store_open(uri, &f->secret, &s);

	if (got != rc)
		fail_msg("%s: %s (%s), expected %s", uri, veil_strerror(got),
			 veil_err_detail(), veil_strerror(rc));
	assert_null(s);
	if (must && !strstr(veil_err_detail(), must))
		fail_msg("detail '%s' lacks '%s'", veil_err_detail(), must);
	if (strstr(veil_err_detail(), never))
		fail_msg("detail '%s' shows the password", veil_err_detail());
}

static void test_pg_errors_carry_the_server_message_never_the_password(void **state)
{
	struct fx *f = fx_of(state);
	const char *host = PQhost(pg.admin), *port = PQport(pg.admin);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	char uri[400];
	int fd;

	/* The server's own words, the password nowhere. */
	snprintf(uri, sizeof(uri), "postgres://postgres:Sup3rSecretPw@%s:%s/"
		 "no_such_db", host, port);
	assert_open_fails(f, uri, VEIL_EIO, "\"no_such_db\" does not exist",
			  "Sup3r");
	snprintf(uri, sizeof(uri), "postgresql://%s:%s/no_such_db?user=postgres&"
		 "password=Sup3rSecretPw", host, port);
	assert_open_fails(f, uri, VEIL_EIO, "does not exist", "Sup3r");
	/* A URI libpq cannot parse, quoting the bad part (the password). */
	snprintf(uri, sizeof(uri), "postgres://postgres:Sup3r%%zzSecretPw@%s:%s/"
		 "veil", host, port);
	assert_open_fails(f, uri, VEIL_EINVAL, "bad URI", "Sup3r");
	assert_open_fails(f, uri, VEIL_EINVAL, NULL, "SecretPw");
	/* Raw '/' and '?' in the password: libpq then reads part of it as
	 * the port and quotes that part back. */
	{
		struct veil_store *s = NULL;
		int rc;

		snprintf(uri, sizeof(uri), "postgres://postgres:Sup3r/Secret?Pw@"
			 "%s:%s/veil", host, port);
		rc = veil_store_open(uri, &f->secret, &s);
		assert_true(rc == VEIL_EIO || rc == VEIL_EINVAL);
		assert_null(s);
		if (strstr(veil_err_detail(), "Sup3r") ||
		    strstr(veil_err_detail(), "Secret"))
			fail_msg("detail '%s' shows the password", veil_err_detail());
		print_message("postgres: a mangled URI gives: %s\n",
			      veil_err_detail());
	}
	/* Nobody listening. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	snprintf(uri, sizeof(uri), "postgres://postgres:Sup3rSecretPw@127.0.0.1:"
		 "%d/veil", ntohs(sa.sin_port));
	assert_open_fails(f, uri, VEIL_EIO, "refused", "Sup3r");
}

/* The pid of the test's one server session, -1 when it has none. */
static long long session_pid(struct fx *f, bool waiting_on_lock)
{
	return admin_int("SELECT max(pid) FROM pg_stat_activity "
			 "WHERE application_name = '%s'%s", f->schema,
			 waiting_on_lock ? " AND wait_event_type = 'Lock'" : "");
}

/* Waits (up to 10 s) until the test's session pid is not `old` (-1: until
 * there is none; old -2: until any appears). */
static long long session_wait(struct fx *f, bool waiting_on_lock, long long old)
{
	for (int i = 0; i < 1000; i++) {
		long long pid = session_pid(f, waiting_on_lock);

		if ((old == -1 && pid == -1) || (old != -1 && pid != -1 && pid != old))
			return pid;
		usleep(10 * 1000);
	}
	fail_msg("session of %s did not change from %lld", f->schema, old);
	return -1;
}

static void terminate(long long pid)
{
	assert_int_equal(admin_int("SELECT pg_terminate_backend(%lld)::int", pid), 1);
}

static void test_pg_reconnects_after_the_server_drops_the_session(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	struct veil_store_key_info k;
	struct batch b;
	char key[VEIL_STORE_KEY_TEXT_MAX];
	int64_t id = new_key(s, "alice", key);
	long long pid;
	int retry = 0;

	add_usage(s, id, "llama", "r-1", 1, 1, 1);
	/* Dropped while idle, noticed before the next call sends anything. */
	pid = session_pid(f, false);
	assert_true(pid > 0);
	terminate(pid);
	session_wait(f, false, -1);
	assert_int_equal(veil_store_key_lookup(s, key, &k), 0);
	assert_true(session_pid(f, false) != pid);
	/* Dropped just before a call: whichever way the call finds out, it
	 * succeeds, and exactly once. */
	terminate(session_pid(f, false));
	add_usage(s, id, "llama", "r-2", 1, 1, 2);
	terminate(session_pid(f, false));
	batch_make(&b, 3, id, "rb");
	assert_int_equal(veil_store_usage_add_many(s, b.u, b.n), 0);
	batch_free(&b);
	terminate(session_pid(f, false));
	assert_int_equal(veil_store_rate_take(s, id, T0, 1, &retry), 0);
	terminate(session_pid(f, false));
	assert_totals(s, id, 5, 2 + 3, 2 + 6);
	veil_store_close(s);
}

struct call {
	struct veil_store *s;
	struct batch *b;
	int rc;
};

static void *usage_call(void *arg)
{
	struct call *c = arg;

	c->rc = c->b->n == 1 ? veil_store_usage_add(c->s, c->b->u)
			     : veil_store_usage_add_many(c->s, c->b->u, c->b->n);
	return NULL;
}

/* The session dies while the call waits inside the server (on a lock held
 * by another session): the call reconnects, runs again, and succeeds once
 * the lock is gone — one record per request, not two. */
static void test_pg_retries_a_call_whose_session_dies_mid_way(void **state)
{
	struct fx *f = fx_of(state);
	struct veil_store *s = open_store(f);
	int64_t id = new_key(s, "alice", NULL);
	struct batch one, three;
	PGconn *locker = PQconnectdb(pg.uri);
	PGresult *r;
	char sql[160];

	assert_int_equal(PQstatus(locker), CONNECTION_OK);
	batch_make(&one, 1, id, "mid1");
	batch_make(&three, 3, id, "mid3");
	for (int round = 0; round < 2; round++) {
		struct call c = {.s = s, .b = round ? &three : &one, .rc = 99};
		pthread_t th;
		long long first, second;

		snprintf(sql, sizeof(sql), "BEGIN; LOCK TABLE %s.usage IN ACCESS "
			 "EXCLUSIVE MODE", f->schema);
		r = PQexec(locker, sql);
		assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
		PQclear(r);
		assert_int_equal(pthread_create(&th, NULL, usage_call, &c), 0);
		first = session_wait(f, true, -2);   /* blocked on the lock */
		terminate(first);
		second = session_wait(f, true, first); /* the retry, blocked */
		assert_true(second != first);
		r = PQexec(locker, "COMMIT");
		assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
		PQclear(r);
		assert_int_equal(pthread_join(th, NULL), 0);
		if (c.rc != 0)
			fail_msg("round %d: %s: %s", round, veil_strerror(c.rc),
				 veil_err_detail());
	}
	assert_totals(s, id, 4, 0 + 0 + 1 + 2, 0 + 0 + 2 + 4);
	batch_free(&one);
	batch_free(&three);
	PQfinish(locker);
	veil_store_close(s);
}

/* ---- durability ----------------------------------------------------------- */

/* Child: records usage as fast as it can, `batch` records per call
 * (veil_store_usage_add for 1, veil_store_usage_add_many above), and
 * reports each request number on `fd` only after the call returned 0. */
static void __attribute__((noreturn))
durability_child(struct fx *f, int64_t key, int fd, int base, int batch)
{
	struct veil_store *s = NULL;
	enum { MAXB = 16 };
	char rid[MAXB][32], receipt[MAXB][64];
	struct veil_store_usage u[MAXB];

	if (batch > MAXB || veil_store_open(f->uri, &f->secret, &s) != 0)
		_exit(2);
	for (int i = 0; i < 10000000; i += batch) {
		for (int j = 0; j < batch; j++) {
			snprintf(rid[j], sizeof(rid[j]), "req-%d", base + i + j);
			snprintf(receipt[j], sizeof(receipt[j]), "{\"id\":\"%s\"}",
				 rid[j]);
			u[j] = (struct veil_store_usage){
				.key_id = key, .model = "m", .node_id = "n",
				.request_id = rid[j], .prompt_tokens = 1,
				.completion_tokens = 2, .created_ms = 1000 + i + j,
				.receipt = (const uint8_t *)receipt[j],
				.receipt_len = strlen(receipt[j]),
			};
		}
		if ((batch == 1 ? veil_store_usage_add(s, u)
				: veil_store_usage_add_many(s, u, (size_t)batch)) != 0)
			_exit(3);
		for (int j = 0; j < batch; j++) {
			char line[16];
			int len = snprintf(line, sizeof(line), "%d\n", base + i + j);

			if (write(fd, line, (size_t)len) != len)
				_exit(4);
		}
	}
	_exit(0);
}

static void test_acknowledged_usage_survives_sigkill(void **state)
{
	struct fx *f = fx_of(state);
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
			/* The last round commits batches of 8. */
			durability_child(f, key, p[1], base, round == 2 ? 8 : 1);
		}
		close(p[1]);
		/* Kill at a random moment 20..300 ms after the first ack (up to
		 * 10 s for it: opening may be slow on a busy machine), reading
		 * acks meanwhile. */
		assert_int_equal(veil_random(&rnd, sizeof(rnd)), 0);
		{
			struct pollfd pfd = {.fd = p[0], .events = POLLIN};

			(void)poll(&pfd, 1, 10000);
		}
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

/* The WAL write shim (src/lib/store/sqlite_vfs.c) gathers each commit's
 * frames into one write: commits far larger than its buffer (64 KiB
 * receipts: overflow pages), a batch rolled back half-way and a commit of
 * one record must all reach the file exactly, visible to a second handle
 * and to plain SQLite while the writer still has the database open, and
 * the file must pass SQLite's integrity check. */
static void test_sqlite_wal_shim_commits_exactly(void **state)
{
	struct fx *f = *state;
	struct veil_store *s = open_store(f), *s2;
	struct veil_store_usage u[40];
	char rid[40][32];
	uint8_t *big = malloc(VEIL_STORE_RECEIPT_MAX);
	struct veil_buf b = VEIL_BUF_INIT(VEIL_STORE_RECEIPT_MAX);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t key = new_key(s, "shim", NULL), owner = 0;
	size_t failed = 0;

	assert_non_null(big);
	for (size_t i = 0; i < VEIL_STORE_RECEIPT_MAX; i++)
		big[i] = (uint8_t)(i * 131 + i / 977);
	for (int i = 0; i < 40; i++) {
		snprintf(rid[i], sizeof(rid[i]), "chatcmpl-shim-%d", i);
		u[i] = (struct veil_store_usage){
			.key_id = key, .model = "m", .node_id = "n",
			.request_id = rid[i], .prompt_tokens = i,
			.completion_tokens = 1, .created_ms = T0 + i,
			.receipt = big + i, .receipt_len = VEIL_STORE_RECEIPT_MAX - 40,
		};
	}
	/* ~2.5 MB in one transaction, then a batch whose last record repeats
	 * an id (rolled back after its pages went to the WAL), then one. */
	assert_int_equal(veil_store_usage_add_many(s, u, 38), 0);
	u[39].request_id = rid[0];
	assert_int_equal(veil_store_usage_add_batch(s, &u[38], 2, &failed),
			 VEIL_EINVAL);
	assert_int_equal(failed, 1);
	u[39].request_id = rid[39];
	assert_int_equal(veil_store_usage_add(s, &u[39]), 0);

	s2 = open_store(f);
	for (int i = 0; i < 40; i++) {
		int rc = veil_store_receipt_get(s2, rid[i], &b, &owner);

		if (i == 38) {
			assert_int_equal(rc, VEIL_ENOENT);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(owner, key);
		assert_int_equal(b.len, VEIL_STORE_RECEIPT_MAX - 40);
		assert_memory_equal(b.data, big + i, b.len);
		veil_buf_reset(&b);
	}
	veil_buf_free(&b);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1,
					    &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
	sqlite3_close(db);
	veil_store_close(s2);
	veil_store_close(s);
	free(big);
}

/* A batch big enough to spill pages into the WAL mid-transaction, rolled
 * back as the first write after a WAL restart, must leave nothing in the
 * shim's buffer: another handle's commit then takes the same WAL offsets,
 * and stale frames written over it later lost acknowledged records (and,
 * once checkpointed, corrupted the file).  Found by review. */
static void add_n(struct veil_store *s, int64_t key, const char *pfx, int n,
		  bool repeat_last, const uint8_t *rec, size_t len, int want)
{
	struct veil_store_usage u[64];
	char rid[64][32];

	assert_true(n <= 64);
	for (int i = 0; i < n; i++) {
		snprintf(rid[i], sizeof(rid[i]), "%s-%d", pfx,
			 repeat_last && i == n - 1 ? 0 : i);
		u[i] = (struct veil_store_usage){
			.key_id = key, .model = "m", .node_id = "n",
			.request_id = rid[i], .prompt_tokens = 1,
			.completion_tokens = 1, .created_ms = T0 + i,
			.receipt = rec, .receipt_len = len,
		};
	}
	assert_int_equal(veil_store_usage_add_many(s, u, (size_t)n), want);
}

static int64_t requests_in_window(struct veil_store *s, int64_t key)
{
	struct veil_store_totals t;

	assert_int_equal(veil_store_usage_totals(s, key, 1, 0, &t), 0);
	return t.requests;
}

static void test_sqlite_wal_shim_rollback_leaves_no_frames_behind(void **state)
{
	struct fx *f = *state;
	struct veil_store *h1 = open_store(f), *h2 = open_store(f), *s;
	size_t len = 60 * 1024;
	uint8_t *rec = malloc(len);
	char copy[300], cmd[2400];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t key = new_key(h1, "spill", NULL);

	assert_non_null(rec);
	memset(rec, 'x', len);
	add_n(h1, key, "seed", 5, false, rec, len, 0);
	/* a WAL restart, as after an automatic checkpoint */
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	add_n(h1, key, "bad", 60, true, rec, len, VEIL_EINVAL); /* ~3.6 MB, rolled back */
	add_n(h2, key, "good", 40, false, rec, len, 0);        /* acknowledged */
	assert_int_equal(requests_in_window(h1, key), 45);      /* h1 touches the WAL */
	assert_int_equal(requests_in_window(h2, key), 45);
	/* as found after SIGKILL now: the files as they are */
	snprintf(copy, sizeof(copy), "%s/crash.db", f->dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && cp '%s-wal' '%s-wal'", f->path, copy, f->path,
		 copy);
	assert_int_equal(system(cmd), 0);
	veil_store_close(h1);
	veil_store_close(h2);
	s = open_store(f);
	assert_int_equal(requests_in_window(s, key), 45);
	veil_store_close(s);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(sqlite3_open(i ? copy : f->path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM usage", -1, &st, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int64(st, 0), 45);
		sqlite3_finalize(st);
		assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
		sqlite3_finalize(st);
		sqlite3_close(db);
	}
	snprintf(cmd, sizeof(cmd), "rm -f '%s' '%s-wal' '%s-shm'", copy, copy, copy);
	assert_int_equal(system(cmd), 0);
	free(rec);
}

int main(void)
{
	/* The cases every backend must pass, with that backend's fixture. */
#define T(fn, S) cmocka_unit_test_setup_teardown(fn, S, teardown)
#define COMMON(S)                                                          \
	T(test_open_creates_schema_and_reopens_existing_db, S),            \
	T(test_open_refuses_db_from_future_schema, S),                     \
	T(test_racing_opens_migrate_once, S),                              \
	T(test_key_create_lookup_revoke, S),                               \
	T(test_key_lookup_rejects_wrong_and_tampered_keys, S),             \
	T(test_db_file_never_contains_key_text, S),                        \
	T(test_key_list_and_limits, S),                                    \
	T(test_usage_totals_respect_from_and_to, S),                       \
	T(test_usage_grouped_by_key_and_by_model, S),                      \
	T(test_receipt_lookup_by_completion_id, S),                        \
	T(test_usage_recorded_only_under_the_same_key_and_receipt, S),     \
	T(test_quota_check_counts_recorded_tokens, S),                     \
	T(test_usage_batch_records_every_record_in_one_call, S),           \
	T(test_usage_batch_is_all_or_nothing_and_names_the_bad_record, S), \
	T(test_key_totals_equal_the_rows_after_batches_and_refusals, S),   \
	T(test_key_totals_follow_rows_deleted_or_changed_by_hand, S),      \
	T(test_quota_refuses_exactly_at_the_boundary, S),                  \
	T(test_usage_grouped_by_key_all_time_reads_key_totals, S),         \
	T(test_key_totals_stay_exact_under_concurrent_batches, S),         \
	T(test_migration_backfills_key_totals_from_v1_rows, S),            \
	T(test_two_handles_share_keys_usage_and_limits, S),                \
	T(test_rate_requests_per_minute_with_retry_after, S),              \
	T(test_rate_tokens_per_minute_and_charge, S),                      \
	T(test_usage_batch_charges_rate_windows_in_its_transaction, S),    \
	T(test_rate_two_handles_on_one_database_agree, S),                 \
	T(test_rate_processes_never_exceed_the_limit, S),                  \
	T(test_node_registry_put_update_list_remove, S),                   \
	T(test_attestation_audit_log_appends_and_lists, S),                \
	T(test_acknowledged_usage_survives_sigkill, S)
	const struct CMUnitTest sqlite_tests[] = {
		COMMON(setup_sqlite),
		T(test_open_rejects_bad_uri_secret_and_non_database, setup_sqlite),
		T(test_sqlite_path_drops_the_sync_option, setup_sqlite),
		T(test_sqlite_wal_shim_commits_exactly, setup_sqlite),
		T(test_sqlite_wal_shim_rollback_leaves_no_frames_behind, setup_sqlite),
	};
	const struct CMUnitTest pg_tests[] = {
		COMMON(setup_pg),
		T(test_pg_errors_carry_the_server_message_never_the_password,
		  setup_pg),
		T(test_pg_reconnects_after_the_server_drops_the_session, setup_pg),
		T(test_pg_retries_a_call_whose_session_dies_mid_way, setup_pg),
	};
#undef COMMON
#undef T
	uint64_t t0;
	int failed;

	t0 = veil_now_ns();
	failed = cmocka_run_group_tests_name("store on sqlite", sqlite_tests,
					     NULL, NULL);
	print_message("sqlite cases: %.1f s\n", (double)(veil_now_ns() - t0) / 1e9);
	t0 = veil_now_ns();
	pg_start();
	failed += cmocka_run_group_tests_name("store on postgres", pg_tests,
					      NULL, NULL);
	pg_stop();
	print_message("postgres cases, cluster start and stop included: %.1f s\n",
		      (double)(veil_now_ns() - t0) / 1e9);
	return failed;
}
