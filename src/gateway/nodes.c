/* The node registry of veil-gateway.
 *
 * A node is registered (--nodes file, admin API, or another gateway through
 * the shared store) as "pending" and gets no traffic until its attestation
 * report, fetched with a fresh nonce, verifies against the gateway's policy
 * (veil_policy_verify_report: TEE kind, TCB status, measurements, model
 * name and hash, GPU evidence; sim only with --allow-sim) and the TLS key
 * the gateway met on that connection is the one the report binds.  From
 * then on every connection to the node is pinned to that key (hconn for
 * relayed requests, curl for health checks and report fetches: both refuse
 * any other), so a node that restarts with new keys fails the pin and is
 * verified afresh before it gets traffic again.
 *
 * Verification (fetch + verify, blocking: veil_policy_fetch_report) runs on
 * the attest workers; its verdict, with time and measurements, goes to the
 * store's audit log (GET /admin/nodes/{id}/attestations) and the node's
 * state to the registry.  Nodes are re-verified every --reverify-s
 * (default 300).
 *
 * Health: active GET /readyz every --health-interval-ms; --unhealthy-after
 * failures in a row take a node out of rotation, --healthy-after successes
 * (then a fresh verification) bring it back.  Passive: a request that
 * cannot connect, or breaks, takes the node out at once (gw_node_failed).
 *
 * Registry sync: every --registry-poll-ms the store's node list is read;
 * nodes other gateways added are taken up (and verified here: a gateway
 * never trusts another's verdict), nodes they removed are dropped, nodes
 * they drained are drained. */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "veil/seal.h"

#include "gateway.h"

#define TICK_MS 100
#define ATTEST_TIMEOUT_MS 15000
#define ATTEST_RETRY_MS 5000
#define ATTEST_BUSY_RETRY_MS 1000
#define BUSY_GRACE_S 900ull   /* a busy node's verdict outlives --reverify-s by this */

static uint64_t mono_ms(void)
{
	return veil_now_ns() / 1000000;
}

void gw_node_ref(struct gw_node *n)
{
	n->refs++;
}

void gw_node_unref(struct gw_node *n)
{
	if (!n || --n->refs > 0)
		return;
	gw_up_node_flush(n);
	json_decref(n->report);
	json_decref(n->verdict);
	free(n);
}

bool gw_node_usable(const struct gw_node *n)
{
	return n && !n->removed && !n->draining && n->state == VEIL_NODE_VERIFIED &&
	       n->healthy && n->have_keys;
}

struct gw_node *gw_node_find(struct gw *g, const char *id)
{
	for (struct gw_node *n = g->nodes; n; n = n->next)
		if (!strcmp(n->id, id))
			return n;
	return NULL;
}

bool gw_model_available(struct gw *g, const char *model)
{
	for (struct gw_node *n = g->nodes; n; n = n->next)
		if (gw_node_usable(n) && !strcmp(n->model, model))
			return true;
	return false;
}

void gw_node_request(const struct gw_node *n, struct veil_http_request *rq)
{
	if (n->https)
		rq->pin_spki_sha256 = n->spki;
	rq->connect_timeout_ms = n->g->o.connect_timeout_ms;
}

/* ---- store mirror (writer thread) -------------------------------------------- */

enum sop { SOP_PUT, SOP_STATE, SOP_AUDIT, SOP_REMOVE };

struct store_job {
	struct gw_job job;
	struct gw *g;
	struct gw_node *n;      /* ref held (PUT: marks persisted) */
	enum sop op;
	char id[GW_NODE_ID_MAX + 1];
	char url[VEIL_STORE_URL_MAX + 1];
	char model[VEIL_STORE_MODEL_MAX + 1];
	enum veil_store_node_state st;
	bool ok;
	int64_t t_ms;
	char *verdict;          /* owned */
};

static void store_run(struct gw_job *j, struct veil_store *s)
{
	struct store_job *sj = (struct store_job *)j;
	struct veil_store_node cur;
	int rc = 0;

	switch (sj->op) {
	case SOP_PUT: {
		struct veil_store_node n = {sj->id, sj->url, sj->model, sj->st,
					    sj->verdict, 0, 0, 0};

		rc = veil_store_node_put(s, &n, sj->t_ms);
		break;
	}
	case SOP_STATE:
		/* Draining is the operator's word, shared by every gateway: a
		 * verification here must not undo another gateway's drain. */
		if (sj->st != VEIL_NODE_DRAINING &&
		    veil_store_node_get(s, sj->id, &cur) == 0) {
			if (cur.state == VEIL_NODE_DRAINING)
				sj->st = VEIL_NODE_DRAINING;
			veil_store_node_clear(&cur);
		}
		rc = veil_store_node_set_state(s, sj->id, sj->st, sj->verdict, sj->t_ms);
		if (rc == VEIL_ENOENT)
			rc = 0; /* removed meanwhile */
		break;
	case SOP_AUDIT: {
		struct veil_store_audit a = {0, sj->id, sj->t_ms, sj->ok, sj->verdict};

		rc = veil_store_audit_add(s, &a);
		break;
	}
	case SOP_REMOVE:
		rc = veil_store_node_remove(s, sj->id);
		if (rc == VEIL_ENOENT)
			rc = 0;
		break;
	}
	if (rc < 0)
		VEIL_ERROR(GW_MOD, "node %s: store update failed: %s (%s)", sj->id,
			   veil_strerror(rc), veil_err_detail());
	j->rc = rc;
}

static void store_done(struct gw_job *j)
{
	struct store_job *sj = (struct store_job *)j;

	if (sj->op == SOP_PUT && sj->n && j->rc == 0) {
		sj->n->persisted = true;
		sj->n->persisted_ms = mono_ms();
	}
	gw_node_unref(sj->n);
	free(sj->verdict);
	free(sj);
}

static void store_submit(struct gw *g, struct gw_node *n, enum sop op,
			 enum veil_store_node_state st, bool ok, const char *verdict)
{
	struct store_job *sj = calloc(1, sizeof(*sj));

	if (!sj)
		return;
	sj->job.run = store_run;
	sj->job.done = store_done;
	sj->g = g;
	sj->op = op;
	sj->st = st;
	sj->ok = ok;
	sj->t_ms = (int64_t)veil_wall_ms();
	snprintf(sj->id, sizeof(sj->id), "%s", n->id);
	snprintf(sj->url, sizeof(sj->url), "%s", n->url);
	snprintf(sj->model, sizeof(sj->model), "%s", n->model);
	if (verdict)
		sj->verdict = strdup(verdict);
	sj->n = n;
	gw_node_ref(n);
	if (gw_worker_submit(g->writer, &sj->job) < 0) {
		VEIL_ERROR(GW_MOD, "node %s: store queue full; registry not updated", n->id);
		gw_node_unref(n);
		free(sj->verdict);
		free(sj);
	}
}

/* ---- attestation --------------------------------------------------------------- */

struct att_job {
	struct gw_job job;
	struct gw *g;
	struct gw_node *n;      /* ref held */
	const struct veil_policy *policy;
	char url[VEIL_STORE_URL_MAX + 1];
	char model[VEIL_STORE_MODEL_MAX + 1];
	uint8_t nonce[32];
	/* results */
	bool ok, tls;
	bool busy;              /* the node answered 503 / 429: making other reports */
	uint8_t spki[32];
	struct veil_keyset keys;
	json_t *report;
	char *summary;          /* verdict summary JSON text */
	char error[512];
};

static json_t *verdict_summary(const struct veil_report_verdict *v, const uint8_t nonce[32],
			       const char *model, const uint8_t *body, size_t len)
{
	char nh[65], rh[65];
	uint8_t d[32];
	json_t *s;

	veil_hex_encode(nonce, 32, nh, sizeof(nh));
	veil_digest_sha256(body, len, d);
	veil_hex_encode(d, 32, rh, sizeof(rh));
	s = json_pack("{s:b, s:s, s:b, s:s, s:s?, s:s, s:s, s:s, s:I}", "ok", v->ok,
		      "tee", v->tee, "sim", v->sim, "status", v->status, "error",
		      v->ok ? NULL : v->error, "model", model, "nonce", nh,
		      "report_sha256", rh, "time", (json_int_t)(veil_wall_ms() / 1000));
	if (s && v->json) {
		json_t *m = json_object_get(v->json, "measurements");
		json_t *role = json_object_get(v->json, "role");
		json_t *w = json_object_get(v->json, "warning");

		json_object_set(s, "measurements", m ? m : json_null());
		if (role)
			json_object_set(s, "role", role);
		if (w)
			json_object_set(s, "warning", w);
		if (v->ok) {
			json_t *k = json_object_get(v->json, "keys");

			if (k)
				json_object_set(s, "keys", k);
		}
	}
	return s;
}

static void att_run(struct gw_job *j, struct veil_store *s)
{
	struct att_job *a = (struct att_job *)j;
	struct veil_buf body = VEIL_BUF_INIT(VEIL_REPORT_MAX);
	struct veil_report_verdict v;
	json_t *sum = NULL;
	int rc;

	(void)s;
	memset(&v, 0, sizeof(v));
	rc = veil_policy_fetch_report(a->url, NULL, a->nonce, ATTEST_TIMEOUT_MS, &body,
				      a->spki, &a->tls);
	if (rc < 0) {
		a->busy = rc == VEIL_EBUSY;
		snprintf(a->error, sizeof(a->error), "report fetch failed: %s (%s)",
			 veil_strerror(rc), veil_err_detail());
		sum = json_pack("{s:b, s:s, s:s, s:I}", "ok", 0, "error", a->error, "model",
				a->model, "time", (json_int_t)(veil_wall_ms() / 1000));
		goto out;
	}
	rc = veil_policy_verify_report(a->policy, VEIL_POLICY_NODE, a->model, body.data,
				       body.len, a->nonce, &v);
	a->ok = rc == 0 && v.ok;
	if (a->ok) {
		a->keys = v.keys;
		a->report = json_loadb((const char *)body.data, body.len, 0, NULL);
	} else {
		snprintf(a->error, sizeof(a->error), "%s",
			 v.error[0] ? v.error : veil_err_detail());
	}
	sum = verdict_summary(&v, a->nonce, a->model, body.data, body.len);
out:
	if (sum) {
		a->summary = json_dumps(sum, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(sum);
	}
	veil_report_verdict_free(&v);
	veil_buf_free(&body);
}

static void set_state(struct gw *g, struct gw_node *n, enum veil_store_node_state st,
		      const char *verdict)
{
	n->state = st;
	if (!n->removed)
		store_submit(g, n, SOP_STATE, n->draining ? VEIL_NODE_DRAINING : st, false,
			     verdict);
}

static void att_done(struct gw_job *j)
{
	struct att_job *a = (struct att_job *)j;
	struct gw *g = a->g;
	struct gw_node *n = a->n;
	bool ok = a->ok;

	n->verifying = false;
	if (n->removed || strcmp(n->url, a->url) || strcmp(n->model, a->model))
		goto out; /* changed meanwhile: a new check is under way */
	/* A node busy making other reports (a bounded number at a time;
	 * anyone may ask for them) has not failed its attestation: a verified
	 * one - the same TLS key said busy - keeps its verdict and pin while
	 * that is younger than a re-check interval and at most 15 minutes
	 * more (BUSY_GRACE_S), a new one stays pending; both are asked again
	 * in a second.  Past that age a busy node fails as any other. */
	if (a->busy &&
	    (!n->have_keys ||
	     ((!n->https || (a->tls && !CRYPTO_memcmp(a->spki, n->spki, 32))) &&
	      mono_ms() - n->verified_mono_ms <
		      ((uint64_t)g->o.reverify_s +
		       VEIL_MIN(2ull * g->o.reverify_s, BUSY_GRACE_S)) * 1000))) {
		if (!n->attest_busy)
			VEIL_INFO(GW_MOD, "node %s (%s): busy making reports; its attestation "
				  "is checked again in %d ms", n->id, n->url,
				  ATTEST_BUSY_RETRY_MS);
		n->attest_busy = true;
		n->next_verify_ms = mono_ms() + ATTEST_BUSY_RETRY_MS;
		goto out;
	}
	if (a->busy && n->have_keys)
		snprintf(a->error + strlen(a->error), sizeof(a->error) - strlen(a->error), "%s",
			 n->https && (!a->tls || CRYPTO_memcmp(a->spki, n->spki, 32))
				 ? " (answered by a TLS key other than the pinned one)"
				 : " (busy past its last verification's grace)");
	n->attest_busy = false;
	if (ok && a->tls) {
		if (!(a->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256)) ||
		    CRYPTO_memcmp(a->keys.tls_spki_sha256, a->spki, 32)) {
			ok = false;
			snprintf(a->error, sizeof(a->error),
				 "the TLS key the node presented is not the one its report binds");
		}
	}
	if (ok && (!(a->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_ED25519)) ||
		   !(a->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS)))) {
		ok = false;
		snprintf(a->error, sizeof(a->error), "the report binds no receipt signing keys");
	}
	if (ok && !a->tls && n->https) {
		ok = false;
		snprintf(a->error, sizeof(a->error), "https node reached without TLS");
	}
	if (ok) {
		bool again = n->have_keys;

		n->keys = a->keys;
		n->have_keys = true;
		memcpy(n->spki, a->spki, 32);
		memset(n->hpke_key_id, 0, sizeof(n->hpke_key_id));
		if (a->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE))
			veil_seal_key_id(a->keys.x25519_hpke, n->hpke_key_id);
		json_decref(n->report);
		n->report = a->report;
		a->report = NULL;
		n->verified_ms = veil_wall_ms();
		n->verified_mono_ms = mono_ms();
		n->next_verify_ms = mono_ms() + (uint64_t)g->o.reverify_s * 1000;
		n->reverify_wanted = false;
		n->healthy = true;
		n->fails = 0;
		n->answer_timeouts = 0;
		n->verify_fails = 0;
		n->last_error[0] = '\0';
		g->m.attestations_ok++;
		if (n->state != VEIL_NODE_VERIFIED || !again)
			VEIL_INFO(GW_MOD, "node %s (%s, model %s): attestation verified%s", n->id,
				  n->url, n->model,
				  n->https ? ", TLS key pinned" : " (plain http: NO TLS pin)");
		set_state(g, n, VEIL_NODE_VERIFIED, a->summary);
	} else {
		unsigned back = ATTEST_RETRY_MS << VEIL_MIN(n->verify_fails, 4);

		g->m.attestations_failed++;
		/* the same failure again is logged once, and retried less often
		 * (5 s doubling to 80 s) */
		if (n->verify_fails == 0 || strcmp(n->last_error, a->error))
			VEIL_WARN(GW_MOD, "node %s (%s): attestation FAILED, no traffic: %s",
				  n->id, n->url, a->error);
		n->verify_fails++;
		snprintf(n->last_error, sizeof(n->last_error), "%s", a->error);
		n->have_keys = false;
		n->attest_busy = false;
		n->healthy = false;
		n->next_verify_ms = mono_ms() + back;
		set_state(g, n, VEIL_NODE_FAILED, a->summary);
	}
	json_decref(n->verdict);
	n->verdict = a->summary ? json_loads(a->summary, 0, NULL) : NULL;
	if (!ok && n->verdict && !json_object_get(n->verdict, "error"))
		json_object_set_new(n->verdict, "error", json_string(a->error));
	store_submit(g, n, SOP_AUDIT, n->state, ok, a->summary ? a->summary : "{}");
out:
	json_decref(a->report);
	free(a->summary);
	gw_node_unref(n);
	free(a);
}

static struct gw_worker *attest_worker(struct gw *g);

void gw_node_verify(struct gw *g, struct gw_node *n)
{
	struct att_job *a;

	if (n->verifying || n->removed)
		return;
	if (!(a = calloc(1, sizeof(*a))))
		return;
	a->job.run = att_run;
	a->job.done = att_done;
	a->g = g;
	a->n = n;
	a->policy = g->policy;
	snprintf(a->url, sizeof(a->url), "%s", n->url);
	snprintf(a->model, sizeof(a->model), "%s", n->model);
	veil_random(a->nonce, sizeof(a->nonce));
	gw_node_ref(n);
	n->verifying = true;
	if (gw_worker_submit(attest_worker(g), &a->job) < 0) {
		n->verifying = false;
		gw_node_unref(n);
		free(a);
		n->next_verify_ms = mono_ms() + 1000;
	}
}

/* Several attest workers: a node that does not answer holds one for up to
 * the fetch timeout, and the others must go on. */
#define N_ATTEST 4
static struct gw_worker *attesters[N_ATTEST];
static unsigned attest_rr;

static struct gw_worker *attest_worker(struct gw *g)
{
	(void)g;
	return attesters[attest_rr++ % N_ATTEST];
}

/* ---- health -------------------------------------------------------------------- */

static void health_done(void *arg, int rc, int status, const uint8_t *body, size_t len)
{
	struct gw_node *n = arg;
	struct gw *g = n->g;

	(void)body;
	(void)len;
	n->health_call = NULL;
	n->next_health_ms = mono_ms() + g->o.health_interval_ms;
	if (n->removed) {
		gw_node_unref(n);
		return;
	}
	if (rc == 0 && status == 200) {
		n->fails = 0;
		n->oks++;
		if (!n->healthy && n->oks >= g->o.healthy_after) {
			if (n->reverify_wanted || n->state != VEIL_NODE_VERIFIED) {
				/* back after a failure: its keys may have changed */
				gw_node_verify(g, n);
			} else {
				n->healthy = true;
				n->answer_timeouts = 0;
				VEIL_INFO(GW_MOD, "node %s: healthy again", n->id);
			}
		}
	} else {
		n->oks = 0;
		n->fails++;
		if (rc == VEIL_EBADMSG) {
			/* the pin failed: another TLS key (a restarted node); only a
			 * fresh verification can bring it back */
			n->reverify_wanted = true;
			if (n->healthy)
				VEIL_WARN(GW_MOD, "node %s: TLS key changed; out of rotation "
					  "until it verifies again", n->id);
			n->healthy = false;
			gw_node_verify(g, n);
		} else if (n->healthy && n->fails >= g->o.unhealthy_after) {
			n->healthy = false;
			n->reverify_wanted = true;
			snprintf(n->last_error, sizeof(n->last_error),
				 "health check failed (%s, status %d)",
				 rc ? veil_strerror(rc) : "http", status);
			VEIL_WARN(GW_MOD, "node %s: unhealthy (%s); out of rotation", n->id,
				  n->last_error);
		}
	}
	gw_node_unref(n);
}

static void health_start(struct gw *g, struct gw_node *n)
{
	struct veil_http_request rq = {0};
	char url[VEIL_STORE_URL_MAX + 16];

	snprintf(url, sizeof(url), "%s/readyz", n->url);
	rq.url = url;
	rq.timeout_ms = g->o.health_timeout_ms;
	gw_node_request(n, &rq);
	rq.connect_timeout_ms = g->o.health_timeout_ms;
	rq.max_response = 4096;
	rq.on_done = health_done;
	rq.arg = n;
	gw_node_ref(n);
	if (veil_http_client_start(g->client, &rq, &n->health_call) < 0) {
		n->health_call = NULL;
		gw_node_unref(n);
		n->next_health_ms = mono_ms() + g->o.health_interval_ms;
	}
}

void gw_node_failed(struct gw *g, struct gw_node *n, const char *why)
{
	n->errors++;
	n->last_fail_ms = mono_ms();
	n->oks = 0;
	n->fails = VEIL_MAX(n->fails, g->o.unhealthy_after);
	if (n->healthy) {
		snprintf(n->last_error, sizeof(n->last_error), "%s", why);
		VEIL_WARN(GW_MOD, "node %s: request failed (%s); out of rotation", n->id, why);
	}
	n->healthy = false;
	n->reverify_wanted = true;
	/* its kept-alive connections may be as broken as this one */
	gw_up_node_flush(n);
	/* look again soon */
	n->next_health_ms = VEIL_MIN(n->next_health_ms, mono_ms() + 500);
}

/* ---- registry ---------------------------------------------------------------- */

static void node_unlink(struct gw *g, struct gw_node *n)
{
	struct gw_node **pp = &g->nodes;

	while (*pp && *pp != n)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = n->next;
		g->n_nodes--;
	}
	n->next = NULL;
}

int gw_node_add(struct gw *g, const struct gw_node_spec *s, bool persist,
		struct gw_node **out)
{
	struct gw_node *n = gw_node_find(g, s->id);

	if (n) {
		bool changed = strcmp(n->url, s->url) || strcmp(n->model, s->model);

		if (changed) {
			snprintf(n->url, sizeof(n->url), "%s", s->url);
			snprintf(n->model, sizeof(n->model), "%s", s->model);
			n->https = s->https;
			n->have_keys = false;
			n->attest_busy = false;
			n->state = VEIL_NODE_PENDING;
			n->healthy = false;
			n->verify_fails = 0;
		}
		if (persist)
			n->draining = false;
		if (persist)
			store_submit(g, n, SOP_PUT, n->state, false, NULL);
		if (changed || n->state != VEIL_NODE_VERIFIED)
			gw_node_verify(g, n);
		if (out)
			*out = n;
		return 0;
	}
	if (g->n_nodes >= GW_NODES_MAX)
		return veil_errf(VEIL_ERANGE, "more than %d nodes", GW_NODES_MAX);
	if (!(n = calloc(1, sizeof(*n))))
		return VEIL_ENOMEM;
	n->g = g;
	n->refs = 1;
	snprintf(n->id, sizeof(n->id), "%s", s->id);
	snprintf(n->url, sizeof(n->url), "%s", s->url);
	snprintf(n->model, sizeof(n->model), "%s", s->model);
	n->https = s->https;
	n->state = VEIL_NODE_PENDING;
	n->next_health_ms = mono_ms() + g->o.health_interval_ms;
	n->next = g->nodes;
	g->nodes = n;
	g->n_nodes++;
	if (!n->https)
		VEIL_WARN(GW_MOD, "node %s: %s is plain http: no TLS, no key pin "
			  "(loopback tests only)", n->id, n->url);
	VEIL_INFO(GW_MOD, "node %s registered: %s, model %s; verifying", n->id, n->url,
		  n->model);
	if (persist)
		store_submit(g, n, SOP_PUT, VEIL_NODE_PENDING, false, NULL);
	gw_node_verify(g, n);
	if (out)
		*out = n;
	return 0;
}

void gw_node_drain(struct gw *g, struct gw_node *n, bool persist)
{
	if (!n->draining)
		VEIL_INFO(GW_MOD, "node %s: draining (%u requests in flight)", n->id,
			  n->outstanding);
	n->draining = true;
	if (persist)
		store_submit(g, n, SOP_STATE, VEIL_NODE_DRAINING, false, NULL);
}

void gw_node_remove(struct gw *g, struct gw_node *n, bool persist)
{
	VEIL_INFO(GW_MOD, "node %s: removed (%u requests in flight finish)", n->id,
		  n->outstanding);
	if (persist)
		store_submit(g, n, SOP_REMOVE, VEIL_NODE_REMOVED, false, NULL);
	n->removed = true;
	node_unlink(g, n);
	gw_up_node_flush(n);
	if (n->health_call) {
		veil_http_call_cancel(n->health_call);
		n->health_call = NULL;
		gw_node_unref(n);
	}
	gw_node_unref(n);
}

/* ---- routing ------------------------------------------------------------------ */

static uint64_t hrw(const uint8_t *key, const char *id)
{
	uint8_t buf[32 + GW_NODE_ID_MAX + 1], d[32];
	size_t l = strlen(id);
	uint64_t v = 0;

	memcpy(buf, key, 32);
	memcpy(buf + 32, id, l);
	veil_digest_sha256(buf, 32 + l, d);
	for (int i = 0; i < 8; i++)
		v = v << 8 | d[i];
	return v;
}

struct gw_node *gw_pick(struct gw *g, const char *model, const uint8_t *affinity,
			const struct gw_node *avoid)
{
	struct gw_node *n, *aff = NULL;
	unsigned min = ~0u, ties = 0, turn;
	uint64_t best_w = 0;

	for (n = g->nodes; n; n = n->next) {
		if (n == avoid || !gw_node_usable(n) || strcmp(n->model, model))
			continue;
		if (n->outstanding < min) {
			min = n->outstanding;
			ties = 0;
		}
		if (n->outstanding == min)
			ties++;
		if (affinity) {
			uint64_t w = hrw(affinity, n->id);

			if (!aff || w > best_w) {
				aff = n;
				best_w = w;
			}
		}
	}
	if (!ties)
		return NULL;
	/* Prefix affinity (rendezvous hashing) unless that node is busier
	 * than the least busy by more than the slack. */
	if (aff && aff->outstanding <= min + g->o.affinity_slack)
		return aff;
	/* ties take turns */
	turn = g->rr++ % ties;
	for (n = g->nodes; n; n = n->next) {
		if (n == avoid || !gw_node_usable(n) || strcmp(n->model, model) ||
		    n->outstanding != min)
			continue;
		if (turn-- == 0)
			return n;
	}
	return NULL;
}

struct gw_node *gw_pick_by_key_id(struct gw *g, const uint8_t id[8])
{
	for (struct gw_node *n = g->nodes; n; n = n->next)
		if (gw_node_usable(n) &&
		    (n->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE)) &&
		    !memcmp(n->hpke_key_id, id, 8))
			return n;
	return NULL;
}

/* ---- registry sync ------------------------------------------------------------ */

struct poll_job {
	struct gw_job job;
	struct gw *g;
	uint64_t started_ms;
	struct veil_store_node *v;
	size_t n;
};

static void poll_run(struct gw_job *j, struct veil_store *s)
{
	struct poll_job *p = (struct poll_job *)j;

	j->rc = veil_store_node_list(s, &p->v, &p->n);
}

static void poll_done(struct gw_job *j)
{
	struct poll_job *p = (struct poll_job *)j;
	struct gw *g = p->g;
	struct gw_node *n, *next;

	g->polling = false;
	if (j->rc < 0) {
		VEIL_WARN(GW_MOD, "registry: cannot list nodes: %s", veil_strerror(j->rc));
		goto out;
	}
	for (size_t i = 0; i < p->n; i++) {
		const struct veil_store_node *r = &p->v[i];
		struct gw_node_spec s;

		if (r->state == VEIL_NODE_REMOVED || !gw_node_id_valid(r->id))
			continue;
		n = gw_node_find(g, r->id);
		if (!n) {
			memset(&s, 0, sizeof(s));
			snprintf(s.id, sizeof(s.id), "%s", r->id);
			if (gw_url_check(r->url, strlen(r->url), s.url, sizeof(s.url),
					 &s.https) < 0 ||
			    !gw_model_valid(r->model, strlen(r->model)))
				continue;
			snprintf(s.model, sizeof(s.model), "%s", r->model);
			VEIL_INFO(GW_MOD, "registry: node %s added by another gateway", r->id);
			if (gw_node_add(g, &s, false, &n) == 0) {
				n->persisted = true;
				n->persisted_ms = mono_ms();
			}
		} else if (strcmp(n->url, r->url) || strcmp(n->model, r->model)) {
			/* another gateway re-registered it */
			memset(&s, 0, sizeof(s));
			snprintf(s.id, sizeof(s.id), "%s", r->id);
			if (gw_url_check(r->url, strlen(r->url), s.url, sizeof(s.url),
					 &s.https) == 0 &&
			    gw_model_valid(r->model, strlen(r->model))) {
				snprintf(s.model, sizeof(s.model), "%s", r->model);
				gw_node_add(g, &s, false, NULL);
			}
		}
		if (n && r->state == VEIL_NODE_DRAINING && !n->draining) {
			VEIL_INFO(GW_MOD, "registry: node %s drained by another gateway", r->id);
			gw_node_drain(g, n, false);
		}
	}
	/* Nodes the store no longer has were removed elsewhere; only those we
	 * know were stored before this listing began. */
	for (n = g->nodes; n; n = next) {
		bool found = false;

		next = n->next;
		if (!n->persisted || n->persisted_ms >= p->started_ms)
			continue;
		for (size_t i = 0; i < p->n && !found; i++)
			found = !strcmp(p->v[i].id, n->id) &&
				p->v[i].state != VEIL_NODE_REMOVED;
		if (!found) {
			VEIL_INFO(GW_MOD, "registry: node %s removed by another gateway", n->id);
			gw_node_remove(g, n, false);
		}
	}
out:
	veil_store_nodes_free(p->v, p->n);
	free(p);
}

static void poll_start(struct gw *g)
{
	struct poll_job *p = calloc(1, sizeof(*p));

	if (!p)
		return;
	p->job.run = poll_run;
	p->job.done = poll_done;
	p->g = g;
	p->started_ms = mono_ms();
	g->polling = true;
	if (gw_worker_submit(g->query, &p->job) < 0) {
		g->polling = false;
		free(p);
	}
}

/* ---- the timer ------------------------------------------------------------------ */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gw *g = arg;
	uint64_t now = mono_ms();

	(void)fd;
	(void)what;
	if (g->stopping)
		return;
	gw_fresh_tick();
	for (struct gw_node *n = g->nodes; n; n = n->next) {
		if (n->verifying)
			continue;
		if (n->state != VEIL_NODE_VERIFIED || !n->have_keys) {
			/* not verified: retry the attestation now and then */
			if (now >= n->next_verify_ms)
				gw_node_verify(g, n);
			continue;
		}
		if (now >= n->next_verify_ms) {
			gw_node_verify(g, n);
			continue;
		}
		if (!n->health_call && now >= n->next_health_ms)
			health_start(g, n);
	}
	if (g->o.registry_poll_ms && !g->polling && now >= g->next_poll_ms) {
		g->next_poll_ms = now + g->o.registry_poll_ms;
		poll_start(g);
	}
}

int gw_nodes_init(struct gw *g)
{
	struct timeval tv = {0, TICK_MS * 1000};
	int rc;

	for (int i = 0; i < N_ATTEST; i++) {
		char name[16];

		snprintf(name, sizeof(name), "attest%d", i);
		if ((rc = gw_worker_start(g, name, false, false, GW_NODES_MAX * 2,
					  &attesters[i])) < 0)
			return rc;
	}
	if (!(g->tick = event_new(g->base, -1, EV_PERSIST, tick_cb, g)) ||
	    event_add(g->tick, &tv))
		return VEIL_ENOMEM;
	g->next_poll_ms = mono_ms() + g->o.registry_poll_ms;
	return 0;
}

void gw_nodes_free(struct gw *g)
{
	struct gw_node *n, *next;

	if (g->tick)
		event_free(g->tick);
	g->tick = NULL;
	for (int i = 0; i < N_ATTEST; i++) {
		gw_worker_stop(attesters[i]);
		attesters[i] = NULL;
	}
	for (n = g->nodes; n; n = next) {
		next = n->next;
		if (n->health_call) {
			veil_http_call_cancel(n->health_call);
			n->health_call = NULL;
			n->refs--;
		}
		n->removed = true;
		gw_node_unref(n);
	}
	g->nodes = NULL;
}

/* ---- JSON views ------------------------------------------------------------------ */

json_t *gw_node_json(const struct gw_node *n, bool detail)
{
	const char *state = n->draining ? "draining" : veil_store_node_state_name(n->state);
	char spki[65] = "", eth[VEIL_ETH_ADDRESS_STR_LEN] = "", ed[65] = "", kid[17] = "";
	json_t *o;

	if (n->have_keys) {
		if (n->https)
			veil_hex_encode(n->spki, 32, spki, sizeof(spki));
		if (n->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS))
			veil_eth_address_format(n->keys.eth_address, eth);
		veil_hex_encode(n->keys.ed25519, 32, ed, sizeof(ed));
		if (n->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE))
			veil_hex_encode(n->hpke_key_id, 8, kid, sizeof(kid));
	}
	o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:I, s:I, s:I, s:I}", "id", n->id,
		      "url", n->url, "model", n->model, "state", state, "verified",
		      n->state == VEIL_NODE_VERIFIED && n->have_keys, "healthy", n->healthy,
		      "usable", gw_node_usable(n), "outstanding", (json_int_t)n->outstanding,
		      "requests", (json_int_t)n->requests, "errors", (json_int_t)n->errors,
		      "verified_at", (json_int_t)(n->verified_ms / 1000));
	if (!o)
		return NULL;
	json_object_set_new(o, "tls_pinned", json_boolean(n->https && n->have_keys));
	/* its last attestation check was answered 503: asked again each second */
	json_object_set_new(o, "attestation_busy", json_boolean(n->attest_busy));
	json_object_set_new(o, "last_error",
			    n->last_error[0] ? json_string(n->last_error) : json_null());
	if (n->have_keys)
		json_object_set_new(o, "keys",
				    json_pack("{s:s, s:s, s:s, s:s}", "tls_spki_sha256", spki,
					      "eth_address", eth, "ed25519", ed,
					      "hpke_key_id", kid));
	if (detail)
		json_object_set(o, "verdict", n->verdict ? n->verdict : json_null());
	return o;
}
