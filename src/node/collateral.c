/* DCAP collateral for the node's own quotes (--pccs, --pccs-cache;
 * docs/operations.md).
 *
 * A TDX quote says nothing about its TCB status without Intel's collateral
 * (TCB info, QE identity, the PCK and root CA CRLs, all signed by Intel): a
 * verifier given a report without it refuses it ("no collateral in the
 * report and none given").  Gateways and proxies take it from the report,
 * so the node fetches it for its own quotes from a PCCS or Intel PCS
 * (include/veil/pccs.h: the FMSPC and CA come from the PCK certificate in
 * the quote made at start) and puts the last good copy into every report
 * while it is within its earliest nextUpdate.  The collateral is public and
 * signed: a wrong or tampered server can make a report fail verification,
 * never pass it.
 *
 * The fetch is four blocking HTTP GETs (libcurl, up to COLL_TIMEOUT_MS
 * each): it runs on a thread of its own, never on the loop (every stream
 * would stall) nor on the reporter (a client's report would wait for
 * Intel).  Reports never wait for it: one made before the first fetch
 * succeeded, or after the collateral's nextUpdate passed without a newer
 * one, has no "collateral" (with the sim TEE and an explicit --pccs, not
 * the sim's own either: the node then behaves as a TDX node would).
 *
 * Schedule: at start (a fresh --pccs-cache file is used as is); after a
 * success, again from the server at the earlier of nextUpdate - 1 h and
 * 24 h later (Intel publishes new TCB info, e.g. after a TCB recovery,
 * before the old one's nextUpdate); after a failure, or when what came is
 * within an hour of its nextUpdate, 30 s later, doubling up to 15 min.  A
 * failure is logged as a warning when the state changes (the first one
 * after a success or at start; the last good collateral running out while
 * fetches fail), later ones at debug level; the metrics count them.
 *
 * Threads: the fetcher touches only its struct node_coll (fixed fields, and
 * the rest under mu), never struct node, so a shutdown that cannot wait
 * for a fetch stuck in a slow server leaves it behind (node_collateral_stop)
 * and the last of the two to let go frees the struct.  The loop and the
 * reporter read the collateral under mu (node_collateral_apply). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "veil/pccs.h"
#include "veil/x509.h"

#include "node.h"

#define COLL_TIMEOUT_MS 10000         /* one GET */
#define COLL_CONNECT_TIMEOUT_MS 5000
#define COLL_MARGIN_S 3600            /* refresh this long before nextUpdate */
#define COLL_REFRESH_MAX_S 86400      /* and at least once a day */
#define COLL_RETRY_MIN_S 30
#define COLL_RETRY_MAX_S 900
#define COLL_STOP_WAIT_S 2            /* shutdown waits this long for a fetch */

struct node_coll {
	pthread_mutex_t mu;
	pthread_cond_t cv;           /* CLOCK_MONOTONIC; stop and exit */
	pthread_t th;
	/* fixed before the thread starts */
	char *base_url;
	char *cache_dir;             /* NULL: no cache */
	uint8_t fmspc[6];
	char fmspc_hex[13];
	const char *ca;              /* static string (pccs.h) */
	enum veil_pccs_tee tee;
	/* under mu */
	int refs;                    /* the node and the thread */
	bool stop, exited;
	char *text;                  /* last good collateral (dcap-qvl JSON), or NULL */
	int64_t next_update;         /* its earliest nextUpdate, unix seconds */
	uint64_t gen;                /* bumped for each new text */
	uint64_t failures;
};

static int64_t now_s(void)
{
	return (int64_t)(veil_wall_ms() / 1000);
}

static void coll_release(struct node_coll *c)
{
	bool last;

	pthread_mutex_lock(&c->mu);
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (!last)
		return;
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c->base_url);
	free(c->cache_dir);
	free(c->text);
	free(c);
}

/* Writes the cache file the way veil_pccs_fetch does (temporary file in the
 * same directory, fsync, rename): a refresh fetches without reading the
 * cache (which holds what the node already has), so the library does not
 * write it then. */
static int write_cache(const struct node_coll *c, const struct veil_pccs_opts *po,
		       const uint8_t *p, size_t n)
{
	char path[4096], tmp[4160];
	size_t off = 0;
	int fd, rc;

	if ((rc = veil_pccs_cache_path(po, c->fmspc, c->ca, c->tee, path, sizeof(path))) < 0)
		return rc;
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return veil_errf(VEIL_EIO, "cannot write %s: %s", tmp, strerror(errno));
	while (off < n) {
		ssize_t w = write(fd, p + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	if (off != n || fsync(fd) < 0) {
		rc = veil_errf(VEIL_EIO, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return rc;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		rc = veil_errf(VEIL_EIO, "cannot rename %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return rc;
	}
	return 0;
}

/* One fetch.  refresh: from the server even when the cache is fresh.  On
 * success *text (malloc'd) and *nu (its earliest nextUpdate). */
static int fetch_once(const struct node_coll *c, bool refresh, char **text, int64_t *nu)
{
	struct veil_pccs_opts po = {0};
	struct veil_buf b = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	int rc;

	po.base_url = c->base_url;
	po.cache_dir = refresh ? NULL : c->cache_dir;
	po.timeout_ms = COLL_TIMEOUT_MS;
	po.connect_timeout_ms = COLL_CONNECT_TIMEOUT_MS;
	if ((rc = veil_pccs_fetch(&po, c->fmspc, c->ca, c->tee, &b)) < 0 ||
	    (rc = veil_pccs_collateral_next_update(b.data, b.len, nu)) < 0 ||
	    (rc = veil_buf_append(&b, "", 1)) < 0)
		goto out;
	if (refresh && c->cache_dir) {
		po.cache_dir = c->cache_dir;
		/* the collateral is good; a cache that cannot be written only
		 * costs a fetch at the next start */
		if (write_cache(c, &po, b.data, b.len - 1) < 0)
			VEIL_WARN(NODE_MOD, "collateral: %s", veil_err_detail());
	}
	*text = (char *)veil_buf_steal(&b, NULL);
	rc = *text ? 0 : VEIL_ENOMEM;
out:
	veil_buf_free(&b);
	return rc;
}

static void *coll_main(void *arg)
{
	struct node_coll *c = arg;
	unsigned backoff = COLL_RETRY_MIN_S;
	bool failing = false, have = false, expired = false;
	int64_t wait_s = 0, nu, now;
	struct timespec until;
	char *text, nu_s[VEIL_X509_ISO8601_LEN];
	int rc;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += (time_t)wait_s;
		while (!c->stop && pthread_cond_timedwait(&c->cv, &c->mu, &until) != ETIMEDOUT)
			;
		if (c->stop)
			break;
		pthread_mutex_unlock(&c->mu);

		text = NULL;
		nu = 0;
		rc = fetch_once(c, have, &text, &nu);
		now = now_s();
		if (rc == 0 && nu <= now) {
			rc = veil_errf(VEIL_EAGAIN, "the collateral from %s is past its nextUpdate",
				       c->base_url);
			free(text);
			text = NULL;
		}
		veil_x509_iso8601_format(nu, nu_s); /* decimal seconds on error */
		pthread_mutex_lock(&c->mu);
		if (rc < 0) {
			c->failures++;
			if (!failing)
				VEIL_WARN(NODE_MOD, "collateral: fetching DCAP collateral for FMSPC "
					  "%s from %s failed: %s (%s); reports carry %s; retrying "
					  "in %u s, then up to every %d s", c->fmspc_hex, c->base_url,
					  veil_strerror(rc), veil_err_detail(),
					  c->text && c->next_update > now
						  ? "the last good collateral until its nextUpdate"
						  : "no collateral",
					  backoff, COLL_RETRY_MAX_S);
			else if (have && !expired && c->next_update <= now)
				VEIL_WARN(NODE_MOD, "collateral: the last good collateral is past its "
					  "nextUpdate and fetching still fails (%s): reports carry "
					  "no collateral", veil_err_detail());
			else
				VEIL_DEBUG(NODE_MOD, "collateral: fetch failed again: %s (%s)",
					   veil_strerror(rc), veil_err_detail());
			expired = have && c->next_update <= now;
			failing = true;
			wait_s = backoff;
			backoff = backoff * 2 > COLL_RETRY_MAX_S ? COLL_RETRY_MAX_S : backoff * 2;
			continue;
		}
		if (failing || !have || nu != c->next_update)
			VEIL_INFO(NODE_MOD, "collateral: DCAP collateral for FMSPC %s (%s CA) from "
				  "%s%s, next update %s", c->fmspc_hex, c->ca, c->base_url,
				  !have && c->cache_dir ? " or the cache" : "", nu_s);
		free(c->text);
		c->text = text;
		c->next_update = nu;
		c->gen++;
		failing = false;
		expired = false;
		have = true;
		wait_s = nu - COLL_MARGIN_S - now;
		if (wait_s > COLL_REFRESH_MAX_S)
			wait_s = COLL_REFRESH_MAX_S;
		if (wait_s < COLL_RETRY_MIN_S) {
			/* close to its end: a newer one is due; ask again soon,
			 * not in a tight loop if the server has none yet */
			wait_s = backoff;
			backoff = backoff * 2 > COLL_RETRY_MAX_S ? COLL_RETRY_MAX_S : backoff * 2;
		} else {
			backoff = COLL_RETRY_MIN_S;
		}
	}
	c->exited = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	coll_release(c);
	return NULL;
}

/* The default --pccs for a TEE kind: Intel PCS for TDX, nothing for the sim
 * (its own collateral stays) and for SEV-SNP (no DCAP collateral). */
static const char *base_for(const struct node *n, const char *kind)
{
	const char *p = n->o.pccs;

	if (p && !strcmp(p, "none"))
		return NULL;
	if (!strcmp(kind, "sev-snp")) {
		if (p)
			VEIL_WARN(NODE_MOD, "--pccs %s ignored: SEV-SNP reports need no DCAP "
				  "collateral", p);
		return NULL;
	}
	if (!strcmp(kind, "tdx"))
		return p ? p : NODE_PCCS_DEFAULT;
	return p; /* sim: only when asked (tests, demos) */
}

/* The sim TEE's PCK chain is issued by "veil SIMULATED SGX PCK Platform
 * CA", which veil_pccs_quote_target() does not take for Intel's; what to
 * fetch is then what the sim says its platform is: the FMSPC of the sim's
 * own TCB info (the report made at start carries it), the platform CA.
 * Everything after this (the fetch, the cache, the reports) is the TDX
 * path. */
static int sim_target(json_t *report, struct node_coll *c)
{
	const char *ti = json_string_value(
		json_object_get(json_object_get(report, "collateral"), "tcb_info"));
	json_t *tj = ti ? json_loads(ti, 0, NULL) : NULL;
	const char *fm = json_string_value(json_object_get(tj, "fmspc"));
	size_t got = 0;
	int rc = 0;

	if (!fm || strlen(fm) != 12 || veil_hex_decode(fm, 12, c->fmspc, 6, &got) < 0 ||
	    got != 6)
		rc = veil_errf(VEIL_EFORMAT, "sim: no FMSPC in the sim's own collateral");
	json_decref(tj);
	c->ca = "platform";
	c->tee = VEIL_PCCS_TDX;
	return rc;
}

int node_collateral_start(struct node *n, const char *kind)
{
	struct node_coll *c = NULL;
	json_t *qj = json_object_get(n->cached_report, "quote");
	const char *qhex = json_string_value(qj);
	uint8_t *quote = NULL;
	size_t qlen = 0;
	const char *base = base_for(n, kind);
	pthread_condattr_t ca;
	int rc;

	if (!base)
		return 0;
	if (!qhex) {
		rc = veil_errf(VEIL_EINTERNAL, "collateral: the report has no quote");
		goto fail;
	}
	if (!(quote = malloc(strlen(qhex) / 2 + 1))) {
		rc = VEIL_ENOMEM;
		goto fail;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		rc = VEIL_ENOMEM;
		goto fail;
	}
	if ((rc = veil_hex_decode(qhex, strlen(qhex), quote, strlen(qhex) / 2 + 1, &qlen)) == 0 &&
	    (rc = veil_pccs_quote_target(quote, qlen, c->fmspc, &c->ca, &c->tee)) < 0 &&
	    !strcmp(kind, "sim"))
		rc = sim_target(n->cached_report, c);
	if (rc < 0) {
		/* a quote without a PCK chain (certification data other than
		 * type 5): nothing can be fetched for it, and a verifier needs
		 * its own collateral anyway; the node still serves */
		VEIL_WARN(NODE_MOD, "collateral: not fetched: what to fetch for the node's "
			  "quote: %s; reports carry no collateral", veil_err_detail());
		free(c);
		free(quote);
		return 0;
	}
	veil_hex_encode(c->fmspc, 6, c->fmspc_hex, sizeof(c->fmspc_hex));
	for (char *p = c->fmspc_hex; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 32);
	c->base_url = strdup(base);
	c->cache_dir = n->o.pccs_cache ? strdup(n->o.pccs_cache) : NULL;
	if (!c->base_url || (n->o.pccs_cache && !c->cache_dir)) {
		rc = VEIL_ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	c->refs = 2;
	VEIL_INFO(NODE_MOD, "collateral: fetching DCAP collateral for FMSPC %s (%s CA) from %s%s%s",
		  c->fmspc_hex, c->ca, c->base_url, c->cache_dir ? ", cache " : "",
		  c->cache_dir ? c->cache_dir : "");
	if ((rc = pthread_create(&c->th, NULL, coll_main, c)) != 0) {
		c->refs = 1;
		coll_release(c);
		c = NULL;
		rc = veil_errf(VEIL_EINTERNAL, "collateral: pthread_create: %s", strerror(rc));
		goto fail;
	}
	n->coll = c;
	free(quote);
	/* the report made at start has none yet (with the sim: not its own) */
	node_collateral_apply(n, n->cached_report, &n->cached_coll);
	return 0;
fail:
	if (c) {
		free(c->base_url);
		free(c->cache_dir);
		free(c);
	}
	free(quote);
	VEIL_ERROR(NODE_MOD, "collateral: %s (%s)", veil_strerror(rc), veil_err_detail());
	return rc;
}

uint64_t node_collateral_stamp(const struct node *n)
{
	struct node_coll *c = n->coll;
	uint64_t s;

	if (!c)
		return 0;
	pthread_mutex_lock(&c->mu);
	s = c->text && c->next_update > now_s() ? c->gen : 0;
	pthread_mutex_unlock(&c->mu);
	return s;
}

int node_collateral_apply(struct node *n, json_t *report, uint64_t *stamp)
{
	struct node_coll *c = n->coll;
	char *text = NULL;
	uint64_t s = 0;
	json_t *col = NULL;
	json_error_t je;

	if (!c)
		return 0;
	pthread_mutex_lock(&c->mu);
	if (c->text && c->next_update > now_s()) {
		text = strdup(c->text);
		s = c->gen;
	}
	pthread_mutex_unlock(&c->mu);
	if (text) {
		/* one copy per report: jansson values are not shared across
		 * threads (its dumper marks the values it is inside of) */
		col = json_loads(text, JSON_REJECT_DUPLICATES, &je);
		free(text);
		if (!json_is_object(col)) {
			json_decref(col);
			col = NULL;
			s = 0;
		}
	}
	if (stamp)
		*stamp = s;
	if (col)
		return json_object_set_new(report, "collateral", col) < 0 ? VEIL_ENOMEM : 0;
	json_object_del(report, "collateral");
	return 0;
}

void node_collateral_metrics(const struct node *n, struct veil_buf *b)
{
	struct node_coll *c = n->coll;
	uint64_t failures;
	int64_t left = 0;

	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	failures = c->failures;
	if (c->text)
		left = c->next_update - now_s();
	pthread_mutex_unlock(&c->mu);
	veil_buf_appendf(b,
		"# HELP veil_node_collateral_fetch_failures_total Failed fetches of DCAP "
		"collateral (--pccs).\n"
		"# TYPE veil_node_collateral_fetch_failures_total counter\n"
		"veil_node_collateral_fetch_failures_total %llu\n"
		"# HELP veil_node_collateral_next_update_seconds Seconds until the reports' "
		"collateral reaches its nextUpdate (0: reports carry none).\n"
		"# TYPE veil_node_collateral_next_update_seconds gauge\n"
		"veil_node_collateral_next_update_seconds %lld\n",
		(unsigned long long)failures, (long long)(left > 0 ? left : 0));
}

void node_collateral_stop(struct node *n)
{
	struct node_coll *c = n->coll;
	struct timespec until;
	pthread_t th;
	bool exited;

	if (!c)
		return;
	n->coll = NULL;
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_broadcast(&c->cv);
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += COLL_STOP_WAIT_S;
	while (!c->exited && pthread_cond_timedwait(&c->cv, &c->mu, &until) != ETIMEDOUT)
		;
	exited = c->exited;
	th = c->th;
	pthread_mutex_unlock(&c->mu);
	if (exited) {
		pthread_join(th, NULL);
	} else {
		/* a GET is waiting for a slow server (up to COLL_TIMEOUT_MS):
		 * the thread ends on its own and frees what is left */
		VEIL_WARN(NODE_MOD, "collateral: a fetch is still in progress; not waiting for it");
		pthread_detach(th);
	}
	coll_release(c);
}
