/* DCAP collateral for a server's own quotes, fetched in the background
 * (include/veil/pccs.h; veil-node's and veil-gateway's --pccs, --pccs-cache;
 * docs/operations.md "DCAP collateral").
 *
 * A TDX quote says nothing about its TCB status without Intel's collateral
 * (TCB info, QE identity, the PCK and root CA CRLs, all signed by Intel): a
 * verifier given a report without it refuses it ("no collateral in the
 * report and none given").  Gateways and proxies take it from the report,
 * so a server fetches it for its own quote from a PCCS or Intel PCS (the
 * FMSPC and CA come from the PCK certificate in the quote made at start)
 * and puts the last good copy into every report while it is within its
 * earliest nextUpdate.  The collateral is public and signed: a wrong or
 * tampered server can make a report fail verification, never pass it.
 *
 * The fetch is four blocking HTTP GETs (libcurl, up to FETCH_TIMEOUT_MS
 * each): it runs on a thread of its own, never on a server's loop (every
 * stream would stall) nor on its report thread (a client's report would
 * wait for Intel).  Reports never wait for it: one made before the first
 * fetch succeeded, or after the collateral's nextUpdate passed without a
 * newer one, has no "collateral" (with the sim TEE and an explicit --pccs,
 * not the sim's own either: the server then behaves as on TDX).
 *
 * Schedule: at start (a fresh cache file is used as is); after a success,
 * again from the server at the earlier of nextUpdate - 1 h and 24 h later
 * (Intel publishes new TCB info, e.g. after a TCB recovery, before the old
 * one's nextUpdate); after a failure, or when what came is within an hour
 * of its nextUpdate, 30 s later, doubling up to 15 min.  A failure is
 * logged as a warning when the state changes (the first one after a
 * success or at start; the last good collateral running out while fetches
 * fail), later ones at debug level; the metrics count them.
 *
 * Threads: the fetcher thread touches only its struct veil_pccs_fetcher
 * (fixed fields, and the rest under mu), never its server's state, so a
 * shutdown that cannot wait for a fetch stuck in a slow server leaves it
 * behind (veil_pccs_fetcher_stop) and the last of the two to let go frees
 * the struct.  Servers read the collateral under mu (apply, text). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "veil/pccs.h"
#include "veil/x509.h"

#define FETCH_TIMEOUT_MS 10000        /* one GET */
#define FETCH_CONNECT_TIMEOUT_MS 5000
#define MARGIN_S 3600                 /* refresh this long before nextUpdate */
#define REFRESH_MAX_S 86400           /* and at least once a day */
#define RETRY_MIN_S 30
#define RETRY_MAX_S 900
#define STOP_WAIT_S 2                 /* a shutdown waits this long for a fetch */

struct veil_pccs_fetcher {
	pthread_mutex_t mu;
	pthread_cond_t cv;           /* CLOCK_MONOTONIC; stop and exit */
	pthread_t th;
	/* fixed before the thread starts */
	const char *mod;             /* static string */
	char *base_url;
	char *cache_dir;             /* NULL: no cache */
	unsigned timeout_ms, connect_timeout_ms;
	uint8_t fmspc[6];
	char fmspc_hex[13];
	const char *ca;              /* static string (pccs.h) */
	enum veil_pccs_tee tee;
	/* under mu */
	int refs;                    /* the server and the thread */
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

static void fetcher_free(struct veil_pccs_fetcher *f)
{
	free(f->base_url);
	free(f->cache_dir);
	free(f->text);
	free(f);
}

static void release(struct veil_pccs_fetcher *f)
{
	bool last;

	pthread_mutex_lock(&f->mu);
	last = --f->refs == 0;
	pthread_mutex_unlock(&f->mu);
	if (!last)
		return;
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	fetcher_free(f);
}

/* One fetch.  refresh: from the server even when the cache is fresh (it
 * holds what the fetcher already has), then written to the cache here.  On
 * success *text (malloc'd) and *nu (its earliest nextUpdate). */
static int fetch_once(const struct veil_pccs_fetcher *f, bool refresh, char **text,
		      int64_t *nu)
{
	struct veil_pccs_opts po = {0};
	struct veil_buf b = VEIL_BUF_INIT(VEIL_PCCS_COLLATERAL_MAX);
	int rc;

	po.base_url = f->base_url;
	po.cache_dir = refresh ? NULL : f->cache_dir;
	po.timeout_ms = f->timeout_ms;
	po.connect_timeout_ms = f->connect_timeout_ms;
	po.quiet = true; /* retried: the fetcher logs a state change once */
	if ((rc = veil_pccs_fetch(&po, f->fmspc, f->ca, f->tee, &b)) < 0 ||
	    (rc = veil_pccs_collateral_next_update(b.data, b.len, nu)) < 0 ||
	    (rc = veil_buf_append(&b, "", 1)) < 0)
		goto out;
	if (refresh && f->cache_dir && *nu > now_s()) {
		po.cache_dir = f->cache_dir;
		/* the collateral is good; a cache that cannot be written only
		 * costs a fetch at the next start */
		if (veil_pccs_cache_write(&po, f->fmspc, f->ca, f->tee, b.data, b.len - 1) < 0)
			VEIL_WARN(f->mod, "collateral: %s", veil_err_detail());
	}
	*text = (char *)veil_buf_steal(&b, NULL);
	rc = *text ? 0 : VEIL_ENOMEM;
out:
	veil_buf_free(&b);
	return rc;
}

static unsigned next_backoff(unsigned b)
{
	return b * 2 > RETRY_MAX_S ? RETRY_MAX_S : b * 2;
}

static void *fetcher_main(void *arg)
{
	struct veil_pccs_fetcher *f = arg;
	unsigned backoff = RETRY_MIN_S;
	bool failing = false, have = false, expired = false;
	int64_t wait_s = 0, nu, now;
	struct timespec until;
	char *text, nu_s[VEIL_X509_ISO8601_LEN];
	int rc;

	pthread_mutex_lock(&f->mu);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += (time_t)wait_s;
		while (!f->stop && pthread_cond_timedwait(&f->cv, &f->mu, &until) != ETIMEDOUT)
			;
		if (f->stop)
			break;
		pthread_mutex_unlock(&f->mu);

		text = NULL;
		nu = 0;
		rc = fetch_once(f, have, &text, &nu);
		now = now_s();
		if (rc == 0 && nu <= now) {
			rc = veil_errf(VEIL_EAGAIN, "the collateral from %s is past its nextUpdate",
				       f->base_url);
			free(text);
			text = NULL;
		}
		veil_x509_iso8601_format(nu, nu_s); /* decimal seconds on error */
		pthread_mutex_lock(&f->mu);
		if (rc < 0) {
			f->failures++;
			if (!failing)
				VEIL_WARN(f->mod, "collateral: fetching DCAP collateral for FMSPC "
					  "%s from %s failed: %s (%s); reports carry %s; retrying "
					  "in %u s, then up to every %d s", f->fmspc_hex, f->base_url,
					  veil_strerror(rc), veil_err_detail(),
					  f->text && f->next_update > now
						  ? "the last good collateral until its nextUpdate"
						  : "no collateral",
					  backoff, RETRY_MAX_S);
			else if (have && !expired && f->next_update <= now)
				VEIL_WARN(f->mod, "collateral: the last good collateral is past its "
					  "nextUpdate and fetching still fails (%s): reports carry "
					  "no collateral", veil_err_detail());
			else
				VEIL_DEBUG(f->mod, "collateral: fetch failed again: %s (%s)",
					   veil_strerror(rc), veil_err_detail());
			expired = have && f->next_update <= now;
			failing = true;
			wait_s = backoff;
			backoff = next_backoff(backoff);
			continue;
		}
		if (failing || !have || nu != f->next_update)
			VEIL_INFO(f->mod, "collateral: DCAP collateral for FMSPC %s (%s CA) from "
				  "%s%s, next update %s", f->fmspc_hex, f->ca, f->base_url,
				  !have && f->cache_dir ? " or the cache" : "", nu_s);
		free(f->text);
		f->text = text;
		f->next_update = nu;
		f->gen++;
		failing = false;
		expired = false;
		have = true;
		wait_s = nu - MARGIN_S - now;
		if (wait_s > REFRESH_MAX_S)
			wait_s = REFRESH_MAX_S;
		if (wait_s < RETRY_MIN_S) {
			/* close to its end: a newer one is due; ask again soon,
			 * not in a tight loop if the server has none yet */
			wait_s = backoff;
			backoff = next_backoff(backoff);
		} else {
			backoff = RETRY_MIN_S;
		}
	}
	f->exited = true;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	release(f);
	return NULL;
}

const char *veil_pccs_fetcher_base(const char *flag, const char *kind, const char *log_mod)
{
	if (flag && !strcmp(flag, "none"))
		return NULL;
	if (kind && !strcmp(kind, "sev-snp")) {
		if (flag)
			VEIL_WARN(log_mod ? log_mod : "pccs", "--pccs %s ignored: SEV-SNP reports "
				  "need no DCAP collateral", flag);
		return NULL;
	}
	if (kind && !strcmp(kind, "tdx"))
		return flag ? flag : VEIL_PCCS_DEFAULT_URL;
	return flag; /* sim: only when asked (tests, demos) */
}

int veil_pccs_fetcher_start(const struct veil_pccs_fetcher_opts *o,
			    struct veil_pccs_fetcher **out)
{
	struct veil_pccs_fetcher *f = NULL;
	pthread_condattr_t ca;
	int rc;

	if (!out)
		return VEIL_EINVAL;
	*out = NULL;
	if (!o || !o->base_url || !*o->base_url)
		return veil_errf(VEIL_EINVAL, "collateral: no base URL");
	if (!(f = calloc(1, sizeof(*f))))
		return VEIL_ENOMEM;
	f->mod = o->log_mod ? o->log_mod : "pccs";
	if (o->quote) {
		if ((rc = veil_pccs_quote_target(o->quote, o->quote_len, f->fmspc, &f->ca,
						 &f->tee)) < 0) {
			/* a quote without a PCK chain (certification data
			 * other than type 5): nothing can be fetched for it,
			 * and a verifier needs its own collateral anyway; the
			 * server still serves */
			VEIL_WARN(f->mod, "collateral: not fetched: what to fetch for the %s's "
				  "quote: %s; reports carry no collateral", f->mod,
				  veil_err_detail());
			free(f);
			return 0;
		}
	} else {
		if (!o->ca || (strcmp(o->ca, "processor") && strcmp(o->ca, "platform"))) {
			free(f);
			return veil_errf(VEIL_EINVAL, "collateral: ca must be processor or platform");
		}
		memcpy(f->fmspc, o->fmspc, 6);
		f->ca = !strcmp(o->ca, "processor") ? "processor" : "platform";
		f->tee = o->tee;
	}
	veil_hex_encode(f->fmspc, 6, f->fmspc_hex, sizeof(f->fmspc_hex));
	for (char *p = f->fmspc_hex; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 32);
	f->timeout_ms = o->timeout_ms ? o->timeout_ms : FETCH_TIMEOUT_MS;
	f->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms
						      : FETCH_CONNECT_TIMEOUT_MS;
	f->base_url = strdup(o->base_url);
	f->cache_dir = o->cache_dir ? strdup(o->cache_dir) : NULL;
	if (!f->base_url || (o->cache_dir && !f->cache_dir)) {
		fetcher_free(f);
		return VEIL_ENOMEM;
	}
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cv, &ca);
	pthread_condattr_destroy(&ca);
	f->refs = 2;
	VEIL_INFO(f->mod, "collateral: fetching DCAP collateral for FMSPC %s (%s CA) from %s%s%s",
		  f->fmspc_hex, f->ca, f->base_url, f->cache_dir ? ", cache " : "",
		  f->cache_dir ? f->cache_dir : "");
	if ((rc = pthread_create(&f->th, NULL, fetcher_main, f)) != 0) {
		f->refs = 1;
		release(f);
		return veil_errf(VEIL_EINTERNAL, "collateral: pthread_create: %s", strerror(rc));
	}
	*out = f;
	return 0;
}

char *veil_pccs_fetcher_text(struct veil_pccs_fetcher *f, uint64_t *stamp)
{
	char *text = NULL;
	uint64_t s = 0;

	if (f) {
		pthread_mutex_lock(&f->mu);
		if (f->text && f->next_update > now_s() && (text = strdup(f->text)))
			s = f->gen;
		pthread_mutex_unlock(&f->mu);
	}
	if (stamp)
		*stamp = s;
	return text;
}

uint64_t veil_pccs_fetcher_stamp(struct veil_pccs_fetcher *f)
{
	uint64_t s;

	if (!f)
		return 0;
	pthread_mutex_lock(&f->mu);
	s = f->text && f->next_update > now_s() ? f->gen : 0;
	pthread_mutex_unlock(&f->mu);
	return s;
}

int veil_pccs_fetcher_apply(struct veil_pccs_fetcher *f, json_t *report, uint64_t *stamp)
{
	uint64_t s = 0;
	char *text;
	json_t *col = NULL;
	json_error_t je;

	if (stamp)
		*stamp = 0;
	if (!f)
		return 0;
	if (!report)
		return VEIL_EINVAL;
	if ((text = veil_pccs_fetcher_text(f, &s))) {
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

void veil_pccs_fetcher_stats(struct veil_pccs_fetcher *f, uint64_t *failures,
			     int64_t *next_update_s)
{
	uint64_t n = 0;
	int64_t left = 0;

	if (f) {
		pthread_mutex_lock(&f->mu);
		n = f->failures;
		if (f->text)
			left = f->next_update - now_s();
		pthread_mutex_unlock(&f->mu);
	}
	if (failures)
		*failures = n;
	if (next_update_s)
		*next_update_s = left > 0 ? left : 0;
}

void veil_pccs_fetcher_metrics(struct veil_pccs_fetcher *f, const char *prefix,
			       struct veil_buf *b)
{
	uint64_t failures;
	int64_t left;

	if (!f || !prefix || !b)
		return;
	veil_pccs_fetcher_stats(f, &failures, &left);
	veil_buf_appendf(b,
		"# HELP %s_collateral_fetch_failures_total Failed fetches of DCAP "
		"collateral (--pccs).\n"
		"# TYPE %s_collateral_fetch_failures_total counter\n"
		"%s_collateral_fetch_failures_total %llu\n"
		"# HELP %s_collateral_next_update_seconds Seconds until the reports' "
		"collateral reaches its nextUpdate (0: reports carry none).\n"
		"# TYPE %s_collateral_next_update_seconds gauge\n"
		"%s_collateral_next_update_seconds %lld\n",
		prefix, prefix, prefix, (unsigned long long)failures, prefix, prefix, prefix,
		(long long)left);
}

void veil_pccs_fetcher_stop(struct veil_pccs_fetcher *f)
{
	struct timespec until;
	pthread_t th;
	bool exited;

	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	f->stop = true;
	pthread_cond_broadcast(&f->cv);
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += STOP_WAIT_S;
	while (!f->exited && pthread_cond_timedwait(&f->cv, &f->mu, &until) != ETIMEDOUT)
		;
	exited = f->exited;
	th = f->th;
	pthread_mutex_unlock(&f->mu);
	if (exited) {
		pthread_join(th, NULL);
	} else {
		/* a GET is waiting for a slow server (up to timeout_ms): the
		 * thread ends on its own and frees what is left */
		VEIL_WARN(f->mod, "collateral: a fetch is still in progress; not waiting for it");
		pthread_detach(th);
	}
	release(f);
}

void veil_pccs_fetcher_refresh(struct veil_pccs_fetcher *f, json_t **report, uint64_t *stamp)
{
	json_t *r;

	if (veil_pccs_fetcher_stamp(f) == *stamp || !(r = json_copy(*report)))
		return;
	if (veil_pccs_fetcher_apply(f, r, stamp) < 0) {
		json_decref(r);
		return;
	}
	json_decref(*report);
	*report = r;
}

int veil_pccs_fetcher_start_report(const char *flag, const char *kind, const char *cache_dir,
				   const char *log_mod, json_t *report,
				   struct veil_pccs_fetcher **out, uint64_t *stamp)
{
	struct veil_pccs_fetcher_opts fo = {0};
	const char *qhex = json_string_value(json_object_get(report, "quote"));
	uint8_t *quote = NULL;
	size_t qlen = 0, cap;
	int rc;

	*out = NULL;
	if (!(fo.base_url = veil_pccs_fetcher_base(flag, kind, log_mod)))
		return 0;
	if (!qhex) {
		rc = veil_errf(VEIL_EINTERNAL, "collateral: the report has no quote");
		goto fail;
	}
	cap = strlen(qhex) / 2 + 1;
	if (!(quote = malloc(cap))) {
		rc = VEIL_ENOMEM;
		goto fail;
	}
	if ((rc = veil_hex_decode(qhex, strlen(qhex), quote, cap, &qlen)) < 0)
		goto fail;
	fo.quote = quote;
	fo.quote_len = qlen;
	fo.cache_dir = cache_dir;
	fo.log_mod = log_mod;
	if ((rc = veil_pccs_fetcher_start(&fo, out)) < 0)
		goto fail;
	free(quote);
	/* the report made at start has none yet (with the sim: not its own) */
	veil_pccs_fetcher_apply(*out, report, stamp);
	return 0;
fail:
	free(quote);
	VEIL_ERROR(log_mod ? log_mod : "pccs", "collateral: %s (%s)", veil_strerror(rc),
		   veil_err_detail());
	return rc;
}

int veil_pccs_opt_url(const char *value, void *dst)
{
	if (strcmp(value, "none") && strncmp(value, "http://", 7) &&
	    strncmp(value, "https://", 8))
		return VEIL_EINVAL;
	*(const char **)dst = value;
	return 0;
}
