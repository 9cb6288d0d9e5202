/* What veil-proxy has verified, and how it keeps it fresh.
 *
 * A verification round (on the worker thread, so report fetching and quote
 * checking never stall streams on the loop): a fresh 32-byte nonce;
 * GET <gateway>/v1/attestation/report?nonce=N over a connection whose TLS
 * key is captured (veil_policy_fetch_report); the document is a gateway's
 * (its own report + one per node, each made for this nonce) or a bare node
 * report (--gateway pointing at a node).  Every report goes through
 * veil_policy_verify_report (evidence, binding of the keys to the quote,
 * nonce, TEE kind, TCB status, measurements, GPUs, model pins), then: the
 * TLS key we talked to must be the attested one (it is pinned from then
 * on), and a node must have bound an HPKE key and both signing keys.  The
 * result goes to the loop through a channel and becomes the current state.
 *
 * The state is used until recheck_s has passed (a refresh starts in the
 * background at 80% of it, so requests rarely wait), or until a request
 * finds it stale (the gateway does not know the key: node gone, restarted).
 * A failed round is answered for 2 s, then the next request tries again. */
#include <string.h>

#include <event2/event.h>

#include "veil/http.h"
#include "veil/policy.h"
#include "veil/seal.h"
#include "veil/sign.h"

#include "proxy.h"

#define MAX_WAITERS 4096
#define FAIL_HOLD_NS (2ull * 1000000000ull)
#define FETCH_TIMEOUT_MS 30000

/* ---- states ------------------------------------------------------------ */

static void vstate_free(struct vstate *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->n_nodes; i++)
		json_decref(st->nodes[i].info);
	free(st->nodes);
	json_decref(st->gateway_info);
	free(st);
}

void vstate_ref(struct vstate *st)
{
	if (st)
		st->refs++;
}

void vstate_unref(struct vstate *st)
{
	if (st && --st->refs == 0)
		vstate_free(st);
}

struct pnode *vstate_pick(struct vstate *st, const char *model)
{
	size_t n = st->n_nodes;

	for (size_t k = 0; k < n; k++) {
		struct pnode *nd = &st->nodes[(st->rr + k) % n];

		if (nd->ok && !strcmp(nd->model, model)) {
			st->rr = (st->rr + k + 1) % n;
			return nd;
		}
	}
	return NULL;
}

/* ---- one round (worker thread) -------------------------------------------- */

static void hex32(const uint8_t b[32], char out[65])
{
	veil_hex_encode(b, 32, out, 65);
}

/* The parts of a verdict /veil/status shows. */
static json_t *verdict_info(const struct veil_report_verdict *v)
{
	json_t *o = json_object();
	json_t *j = v->json;
	json_t *g = json_object_get(j, "gpus");

	json_object_set_new(o, "ok", json_boolean(v->ok));
	json_object_set_new(o, "tee", json_string(v->tee));
	json_object_set_new(o, "sim", json_boolean(v->sim));
	json_object_set_new(o, "tcb_status", json_string(v->status[0] ? v->status : "unknown"));
	if (json_object_get(j, "measurements"))
		json_object_set(o, "measurements", json_object_get(j, "measurements"));
	if (json_object_get(j, "advisories"))
		json_object_set(o, "advisories", json_object_get(j, "advisories"));
	json_object_set_new(o, "gpus", json_integer(json_is_array(g) ? (json_int_t)json_array_size(g) : 0));
	if (json_is_array(g) && json_array_size(g)) {
		json_t *arch = json_array();

		for (size_t i = 0; i < json_array_size(g); i++) {
			json_t *a = json_object_get(json_array_get(g, i), "arch");

			json_array_append_new(arch, json_string(json_is_string(a) ? json_string_value(a)
								  : "?"));
		}
		json_object_set_new(o, "gpu_arch", arch);
	}
	if (v->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS)) {
		char a[43];

		veil_eth_address_format(v->keys.eth_address, a);
		json_object_set_new(o, "eth_address", json_string(a));
	}
	if (v->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_ED25519)) {
		char h[65];

		hex32(v->keys.ed25519, h);
		json_object_set_new(o, "ed25519", json_string(h));
	}
	if (v->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256)) {
		char h[65];

		hex32(v->keys.tls_spki_sha256, h);
		json_object_set_new(o, "tls_spki_sha256", json_string(h));
	}
	if (v->error[0])
		json_object_set_new(o, "error", json_string(v->error));
	return o;
}

static void model_sha256_of(const struct veil_report_verdict *v, char out[65]);

/* The receipts log's attestation line. */
static void log_attestation(struct proxy *p, const char *role,
			    const struct proxy_doc_report *r, const char *nonce_hex,
			    const char *sha_hex, const struct veil_report_verdict *v)
{
	json_t *line, *vd;

	if (!p->rlog)
		return;
	vd = json_pack("{s:b, s:s, s:b, s:s}", "ok", v->ok, "tee", v->tee, "sim", v->sim,
		       "status", v->status[0] ? v->status : "unknown");
	if (vd && json_object_get(v->json, "measurements"))
		json_object_set(vd, "measurements", json_object_get(v->json, "measurements"));
	if (vd && v->error[0])
		json_object_set_new(vd, "error", json_string(v->error));
	if (vd && !strcmp(role, "node") && v->ok) {
		char m[65];

		model_sha256_of(v, m);
		json_object_set_new(vd, "model_sha256_bound", json_boolean(m[0]));
	}
	line = json_pack("{s:s, s:s, s:I, s:s}", "type", "attestation", "version",
			 "veil-receipts/1", "time", (json_int_t)(veil_wall_ms() / 1000),
			 "role", role);
	if (!line || !vd) {
		json_decref(line);
		json_decref(vd);
		return;
	}
	if (r->id[0] && strcmp(role, "gateway"))
		json_object_set_new(line, "node_id", json_string(r->id));
	if (r->model[0])
		json_object_set_new(line, "model", json_string(r->model));
	json_object_set_new(line, "nonce", json_string(nonce_hex));
	json_object_set(line, "report", r->report);
	json_object_set_new(line, "report_sha256", json_string(sha_hex));
	json_object_set_new(line, "verdict", vd);
	rlog_write(p->rlog, line);
}

static void refuse(struct vstate *st, int rc, const char *fmt, ...) VEIL_PRINTF(3, 4);

static void refuse(struct vstate *st, int rc, const char *fmt, ...)
{
	va_list ap;

	st->ok = false;
	st->status = rc == VEIL_EPERM ? 403 : 502;
	st->code = rc == VEIL_EPERM ? "policy_refused" : "attestation_failed";
	va_start(ap, fmt);
	vsnprintf(st->error, sizeof(st->error), fmt, ap);
	va_end(ap);
}

/* The model hash the quote binds: the verdict's measurements.model_sha256
 * when veil_report_verify checked it against the replayed veil-model-sha256
 * event (checks.model_sha256 true: TDX, sim), else "" (SEV-SNP: the event
 * log is not replayed, the verdict says model_sha256_bound false, and the
 * value is only what the node claims).  "" means receipts' model hashes
 * are not checked against an attested one; /veil/status says so. */
static void model_sha256_of(const struct veil_report_verdict *v, char out[65])
{
	json_t *m = json_object_get(json_object_get(v->json, "measurements"), "model_sha256");
	json_t *ck = json_object_get(json_object_get(v->json, "checks"), "model_sha256");

	out[0] = '\0';
	if (!v->ok || !json_is_true(ck) || !json_is_string(m) || json_string_length(m) != 64)
		return;
	for (size_t i = 0; i < 64; i++) {
		char c = json_string_value(m)[i];

		out[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
		if (!strchr("0123456789abcdef", out[i]) || !out[i]) {
			out[0] = '\0';
			return;
		}
	}
	out[64] = '\0';
}

/* Verifies one node report into nd.  0 or the failure's code. */
static int verify_node(struct proxy *p, const struct proxy_doc_report *r,
		       const uint8_t nonce[32], const char *nonce_hex, struct pnode *nd,
		       struct veil_report_verdict *v)
{
	uint8_t sha[32];
	const uint32_t need = VEIL_KEYSET_HAS(VEIL_KEY_ED25519) |
			      VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS) |
			      VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE);
	int rc;

	snprintf(nd->id, sizeof(nd->id), "%s", r->id);
	snprintf(nd->model, sizeof(nd->model), "%s", r->model);
	/* model_sha256 comes from the verdict, never from the report's JSON
	 * (a relay could have rewritten that): see model_sha256_of */
	nd->model_sha256[0] = '\0';
	veil_digest_sha256(r->text, r->text_len, sha);
	hex32(sha, nd->report_sha256);
	if (!r->model[0]) {
		rc = veil_errf(VEIL_EFORMAT, "the report names no model");
		snprintf(v->error, sizeof(v->error), "the report names no model");
		v->ok = false;
	} else {
		rc = veil_policy_verify_report(p->policy, VEIL_POLICY_NODE, r->model,
					       (const uint8_t *)r->text, r->text_len, nonce, v);
		if (rc == 0 && (v->keys.present & need) != need) {
			rc = VEIL_EBADMSG;
			v->ok = false;
			snprintf(v->error, sizeof(v->error), "the report binds no HPKE key or "
				 "no signing keys (sealing and receipts need them)");
		}
	}
	if (rc == 0)
		model_sha256_of(v, nd->model_sha256);
	log_attestation(p, "node", r, nonce_hex, nd->report_sha256, v);
	nd->info = verdict_info(v);
	json_object_set_new(nd->info, "id", json_string(nd->id));
	json_object_set_new(nd->info, "model", json_string(nd->model));
	json_object_set_new(nd->info, "model_sha256",
			    nd->model_sha256[0] ? json_string(nd->model_sha256) : json_null());
	json_object_set_new(nd->info, "model_sha256_bound", json_boolean(nd->model_sha256[0]));
	json_object_set_new(nd->info, "report_sha256", json_string(nd->report_sha256));
	if (rc < 0) {
		nd->ok = false;
		nd->status = rc == VEIL_EPERM ? 403 : 502;
		nd->code = rc == VEIL_EPERM ? "policy_refused" : "attestation_failed";
		snprintf(nd->error, sizeof(nd->error), "node %.127s (model %.127s) %s: %.600s", nd->id,
			 nd->model[0] ? nd->model : "?",
			 rc == VEIL_EPERM ? "refused by the policy" : "failed verification",
			 v->error[0] ? v->error : veil_strerror(rc));
		return rc;
	}
	uint8_t kid[VEIL_SEAL_KEY_ID_LEN];

	nd->ok = true;
	nd->keys = v->keys;
	veil_seal_key_id(v->keys.x25519_hpke, kid);
	veil_hex_encode(kid, sizeof(kid), nd->key_id_hex, sizeof(nd->key_id_hex));
	json_object_set_new(nd->info, "hpke_key_id", json_string(nd->key_id_hex));
	return 0;
}

/* The TLS key we fetched the report over must be the one the report binds. */
static int check_tls(const struct veil_report_verdict *v, const uint8_t spki[32],
		     const char *who, struct vstate *st)
{
	char got[65], want[65] = "none";

	if ((v->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256)) &&
	    !memcmp(v->keys.tls_spki_sha256, spki, 32))
		return 0;
	hex32(spki, got);
	if (v->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256))
		hex32(v->keys.tls_spki_sha256, want);
	refuse(st, VEIL_EBADMSG, "the TLS key of the %s (SPKI sha256 %s) is not the "
	       "attested one (%s): a relay or another server answered", who, got, want);
	st->code = "tls_key_not_attested";
	return VEIL_EBADMSG;
}

static struct vstate *verify_round(struct proxy *p)
{
	struct vstate *st = calloc(1, sizeof(*st));
	struct veil_buf body = VEIL_BUF_INIT(PROXY_DOC_MAX);
	struct proxy_doc doc = {0};
	uint8_t nonce[32], spki[32];
	bool tls = false;
	int rc;

	if (!st)
		return NULL;
	st->t_mono_ns = veil_now_ns();
	st->verified_at = (int64_t)(veil_wall_ms() / 1000);
	veil_random(nonce, sizeof(nonce));
	hex32(nonce, st->nonce_hex);
	veil_err_clear();
	rc = veil_policy_fetch_report(p->o.gateway, NULL, nonce, FETCH_TIMEOUT_MS, &body,
				      spki, &tls);
	if (rc < 0) {
		refuse(st, rc, "cannot fetch the attestation report from %s: %s (%s)",
		       p->o.gateway, veil_strerror(rc), veil_err_detail());
		st->code = "gateway_unreachable";
		st->status = 502;
		st->busy = rc == VEIL_EBUSY;
		goto out;
	}
	if (p->o.tls && !tls) {
		refuse(st, VEIL_EBADMSG, "the gateway answered without TLS");
		goto out;
	}
	st->tls = tls;
	memcpy(st->spki, spki, 32);
	if ((rc = proxy_doc_parse(body.data, body.len, &doc)) < 0) {
		refuse(st, rc, "the attestation document is not valid: %s", veil_err_detail());
		goto out;
	}
	st->via_gateway = doc.gateway;
	if (!doc.gateway && veil_policy_pins_gateway(p->policy)) {
		/* a bare node report has no gateway report to judge: with gateway
		 * pins, that would be the pins skipped, not met */
		refuse(st, VEIL_EPERM, "the policy pins the gateway, but %s answered with a "
		       "bare node report, not a %s document: no gateway report to check "
		       "the pins against", p->o.gateway, VEIL_GATEWAY_REPORT_VERSION);
		goto out;
	}
	if (doc.gateway) {
		struct veil_report_verdict v = {0};
		uint8_t sha[32];
		char sha_hex[65];

		veil_digest_sha256(doc.gw.text, doc.gw.text_len, sha);
		hex32(sha, sha_hex);
		rc = veil_policy_verify_report(p->policy, VEIL_POLICY_GATEWAY, NULL,
					       (const uint8_t *)doc.gw.text, doc.gw.text_len,
					       nonce, &v);
		log_attestation(p, "gateway", &doc.gw, st->nonce_hex, sha_hex, &v);
		st->gateway_info = verdict_info(&v);
		json_object_set_new(st->gateway_info, "report_sha256", json_string(sha_hex));
		if (rc < 0)
			refuse(st, rc, "gateway attestation %s: %s",
			       rc == VEIL_EPERM ? "refused by the policy" : "failed",
			       v.error[0] ? v.error : veil_strerror(rc));
		else if (tls)
			rc = check_tls(&v, spki, "gateway", st);
		veil_report_verdict_free(&v);
		if (rc < 0)
			goto out;
	}
	if (doc.n_nodes && !(st->nodes = calloc(doc.n_nodes, sizeof(*st->nodes)))) {
		refuse(st, VEIL_ENOMEM, "out of memory");
		goto out;
	}
	st->n_nodes = doc.n_nodes;
	for (size_t i = 0; i < doc.n_nodes; i++) {
		struct veil_report_verdict v = {0};

		rc = verify_node(p, &doc.nodes[i], nonce, st->nonce_hex, &st->nodes[i], &v);
		if (!doc.gateway) {
			/* Direct to a node: the node is the gateway. */
			if (rc < 0) {
				refuse(st, rc, "%s", st->nodes[i].error);
			} else if (tls) {
				rc = check_tls(&v, spki, "node", st);
			}
		}
		if (rc < 0)
			VEIL_WARN(PROXY_MOD, "%s", st->nodes[i].error[0] ? st->nodes[i].error
								: st->error);
		veil_report_verdict_free(&v);
		if (rc < 0 && !doc.gateway)
			goto out;
	}
	st->ok = true;
	st->status = 200;
out:
	proxy_doc_free(&doc);
	veil_buf_free(&body);
	return st;
}

static void *worker_main(void *arg)
{
	struct proxy *p = arg;

	pthread_mutex_lock(&p->wmu);
	for (;;) {
		struct vstate *st;

		while (!p->w_want && !p->w_stop)
			pthread_cond_wait(&p->wcond, &p->wmu);
		if (p->w_stop)
			break;
		p->w_want = false;
		pthread_mutex_unlock(&p->wmu);
		st = verify_round(p);
		if (!st || veil_http_chan_post(p->vchan, st) < 0)
			vstate_free(st); /* cannot happen: one round at a time */
		pthread_mutex_lock(&p->wmu);
	}
	pthread_mutex_unlock(&p->wmu);
	return NULL;
}

/* ---- the loop side --------------------------------------------------------- */

static void start_round(struct proxy *p)
{
	if (p->verifying || p->stopping)
		return;
	p->verifying = true;
	pthread_mutex_lock(&p->wmu);
	p->w_want = true;
	pthread_cond_signal(&p->wcond);
	pthread_mutex_unlock(&p->wmu);
}

static uint64_t ttl_ns(const struct proxy *p)
{
	return (uint64_t)p->o.recheck_s * 1000000000ull;
}

double vstate_age_s(const struct vstate *st)
{
	return (double)(veil_now_ns() - st->t_mono_ns) / 1e9;
}

/* Usable now for a request that needs generation >= min_gen.  A state with
 * no usable node (the gateway had none up) is held like a failure: 2 s. */
static bool usable(const struct proxy *p, const struct vstate *st, uint64_t min_gen)
{
	uint64_t age;

	if (!st || st->gen < min_gen || st->stale)
		return false;
	age = veil_now_ns() - st->t_mono_ns;
	return st->ok && st->n_ok ? age < ttl_ns(p) : age < FAIL_HOLD_NS;
}

static void on_round(void *msg, void *arg)
{
	struct proxy *p = arg;
	struct vstate *st = msg;
	struct proxy_waiter *w;
	struct timeval tv;
	uint64_t ms;

	p->verifying = false;
	/* A background refresh that found the gateway busy (anyone can fill
	 * its fresh-report slots) is no reason to drop a state still in date:
	 * it stays, and the gateway is asked again in a second. */
	if (!st->ok && st->busy && !p->waiters && p->refresh && usable(p, p->st, 0)) {
		struct timeval one = {1, 0};

		if (!p->refresh_busy)
			VEIL_WARN(PROXY_MOD, "re-verification: %s; the state verified %.0f s "
				  "ago stays, asking again each second", st->error,
				  vstate_age_s(p->st));
		p->refresh_busy = true;
		vstate_free(st);
		evtimer_add(p->refresh, &one);
		return;
	}
	if (p->refresh_busy)
		VEIL_INFO(PROXY_MOD, "re-verification: the gateway answers again");
	p->refresh_busy = false;
	st->refs = 1;
	st->gen = ++p->next_gen;
	p->stats.rounds++;
	if (!st->ok) {
		p->stats.rounds_failed++;
		VEIL_ERROR(PROXY_MOD, "verification failed: %s", st->error);
	} else {
		for (size_t i = 0; i < st->n_nodes; i++)
			st->n_ok += st->nodes[i].ok;
		VEIL_INFO(PROXY_MOD, "verified %s%s: %zu of %zu node(s) pass the policy%s",
			  st->via_gateway ? "the gateway" : "the node",
			  st->tls ? " (TLS key pinned)" : " (plain http)", st->n_ok, st->n_nodes,
			  veil_policy_allows_sim(p->policy) ? " [SIMULATED TEE ALLOWED]" : "");
		for (size_t i = 0; i < st->n_nodes; i++) {
			json_t *t = json_object_get(st->nodes[i].info, "tee");

			if (st->nodes[i].ok && json_is_string(t) &&
			    !strcmp(json_string_value(t), "sim"))
				VEIL_WARN(PROXY_MOD, "node %s runs in a SIMULATED TEE: its "
					  "attestation proves nothing about hardware (--allow-sim)",
					  st->nodes[i].id);
			if (st->nodes[i].ok && !st->nodes[i].model_sha256[0])
				VEIL_WARN(PROXY_MOD, "node %s: model_sha256_bound false: its "
					  "attestation binds no model hash (SEV-SNP, or none "
					  "named), so its receipts' model hash is not checked",
					  st->nodes[i].id);
		}
	}
	vstate_unref(p->st);
	p->st = st;
	/* Refresh in the background before it expires; after a failure, only
	 * when asked. */
	if (st->ok && p->refresh) {
		ms = (uint64_t)p->o.recheck_s * 800;
		tv.tv_sec = (time_t)(ms / 1000);
		tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
		evtimer_add(p->refresh, &tv);
	}
	/* Everyone waiting gets this state; new waiters added by a callback
	 * (a retry) wait for the next round. */
	w = p->waiters;
	p->waiters = NULL;
	p->n_waiters = 0;
	vstate_ref(st);
	while (w) {
		struct proxy_waiter *next = w->next;

		w->queued = false;
		w->prev = w->next = NULL;
		w->cb(w, st);
		w = next;
	}
	vstate_unref(st);
	if (p->waiters)
		start_round(p);
}

static void on_round_drop(void *msg, void *arg)
{
	(void)arg;
	vstate_free(msg);
}

static void refresh_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	start_round(arg);
}

int proxy_state_get(struct proxy *p, struct proxy_waiter *w, uint64_t min_gen)
{
	if (usable(p, p->st, min_gen)) {
		w->cb(w, p->st);
		return 0;
	}
	if (p->n_waiters >= MAX_WAITERS)
		return veil_errf(VEIL_EBUSY, "too many requests wait for verification");
	w->prev = NULL;
	w->next = p->waiters;
	if (p->waiters)
		p->waiters->prev = w;
	p->waiters = w;
	w->queued = true;
	p->n_waiters++;
	start_round(p);
	return 0;
}

void proxy_state_cancel(struct proxy *p, struct proxy_waiter *w)
{
	if (!w->queued)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		p->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->queued = false;
	w->prev = w->next = NULL;
	p->n_waiters--;
}

void proxy_state_invalidate(struct proxy *p, uint64_t gen, const char *why)
{
	if (p->st && p->st->gen == gen && !p->st->stale) {
		VEIL_INFO(PROXY_MOD, "verified state %llu is stale (%s): verifying again",
			  (unsigned long long)gen, why);
		p->st->stale = true; /* the next request starts a round */
	}
}

int proxy_attest_init(struct proxy *p)
{
	int rc;

	pthread_mutex_init(&p->wmu, NULL);
	pthread_cond_init(&p->wcond, NULL);
	if ((rc = veil_http_chan_new(p->base, 4, on_round, on_round_drop, p, &p->vchan)) < 0)
		return rc;
	if (!(p->refresh = evtimer_new(p->base, refresh_cb, p)))
		return VEIL_ENOMEM;
	if (pthread_create(&p->worker, NULL, worker_main, p) != 0)
		return veil_errf(VEIL_EIO, "cannot start the attestation worker");
	p->worker_started = true;
	start_round(p); /* verify at once: the first request need not wait */
	return 0;
}

void proxy_attest_stop(struct proxy *p)
{
	if (!p->worker_started)
		return;
	pthread_mutex_lock(&p->wmu);
	p->w_stop = true;
	pthread_cond_signal(&p->wcond);
	pthread_mutex_unlock(&p->wmu);
	pthread_join(p->worker, NULL);
	p->worker_started = false;
}

void proxy_attest_free(struct proxy *p)
{
	proxy_attest_stop(p);
	if (p->vchan)
		veil_http_chan_free(p->vchan);
	p->vchan = NULL;
	if (p->refresh)
		event_free(p->refresh);
	p->refresh = NULL;
	vstate_unref(p->st);
	p->st = NULL;
	pthread_mutex_destroy(&p->wmu);
	pthread_cond_destroy(&p->wcond);
}

/* ---- /veil/status, /v1/models --------------------------------------------- */

static json_t *models_of(const struct vstate *st)
{
	json_t *a = json_array();

	for (size_t i = 0; st && st->ok && i < st->n_nodes; i++) {
		bool seen = false;

		if (!st->nodes[i].ok)
			continue;
		for (size_t k = 0; k < i; k++)
			if (st->nodes[k].ok && !strcmp(st->nodes[k].model, st->nodes[i].model))
				seen = true;
		if (!seen)
			json_array_append_new(a, json_string(st->nodes[i].model));
	}
	return a;
}

static void h_status(struct veil_http_req *req, void *arg)
{
	struct proxy *p = arg;
	struct vstate *st = p->st;
	const char *state = !st ? (p->verifying ? "verifying" : "unverified")
			  : st->ok ? "verified" : "failed";
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "version",
			      "veil-proxy-status/1", "state", state, "gateway", p->o.gateway,
			      "transport", p->o.tls ? "https" : "http", "verifying", p->verifying,
			      "allow_sim", veil_policy_allows_sim(p->policy));
	json_t *nodes = json_array();

	if (!o || !nodes) {
		json_decref(o);
		json_decref(nodes);
		veil_http_reply_error(req, 500, NULL, "internal", "out of memory");
		return;
	}
	json_object_set_new(o, "policy", veil_policy_to_json(p->policy));
	if (st) {
		char pin[65];
		int64_t ttl = (int64_t)p->o.recheck_s;

		json_object_set_new(o, "mode", json_string(st->via_gateway ? "gateway" : "node"));
		json_object_set_new(o, "verified_at", json_integer(st->verified_at));
		json_object_set_new(o, "expires_at",
				    st->ok ? json_integer(st->verified_at + ttl) : json_null());
		json_object_set_new(o, "generation", json_integer((json_int_t)st->gen));
		json_object_set_new(o, "stale", json_boolean(st->stale));
		json_object_set_new(o, "nonce", json_string(st->nonce_hex));
		if (st->tls) {
			hex32(st->spki, pin);
			json_object_set_new(o, "tls_spki_sha256", json_string(pin));
		} else {
			json_object_set_new(o, "tls_spki_sha256", json_null());
		}
		json_object_set_new(o, "error",
				    st->ok ? json_null()
					   : json_pack("{s:s, s:s}", "code", st->code, "message",
						       st->error));
		json_object_set(o, "gateway_attestation",
				st->gateway_info ? st->gateway_info : json_null());
		for (size_t i = 0; i < st->n_nodes; i++) {
			json_t *n = json_deep_copy(st->nodes[i].info);

			if (!n)
				continue;
			json_object_set_new(n, "ok", json_boolean(st->nodes[i].ok));
			if (!st->nodes[i].ok)
				json_object_set_new(n, "error", json_string(st->nodes[i].error));
			json_array_append_new(nodes, n);
		}
	} else {
		json_object_set_new(o, "error", json_null());
	}
	json_object_set_new(o, "nodes", nodes);
	json_object_set_new(o, "models", models_of(st));
	json_object_set_new(o, "receipts_log", p->o.receipts_path
					       ? json_string(p->o.receipts_path) : json_null());
	json_object_set_new(o, "stats",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
				      "requests", (json_int_t)p->stats.requests,
				      "answered", (json_int_t)p->stats.answered,
				      "failed", (json_int_t)p->stats.failed,
				      "receipts_ok", (json_int_t)p->stats.receipts_ok,
				      "receipts_failed", (json_int_t)p->stats.receipts_failed,
				      "verifications", (json_int_t)p->stats.rounds,
				      "verifications_failed", (json_int_t)p->stats.rounds_failed,
				      "log_lines_dropped", (json_int_t)rlog_dropped(p->rlog)));
	json_object_set(o, "last_receipt", p->last_receipt ? p->last_receipt : json_null());
	veil_http_add_header(req, "Cache-Control", "no-store");
	veil_http_reply_json(req, 200, o);
}

/* /v1/models waits for a verified state like a completion does: the list
 * is the models of the nodes that passed the policy. */
struct models_wait {
	struct proxy_waiter w;
	struct veil_http_req *req;
	struct proxy *p;
	char one[PROXY_NAME_MAX + 1]; /* /v1/models/{id}, or "" */
};

static void models_reply(struct proxy_waiter *w, struct vstate *st)
{
	struct models_wait *m = (struct models_wait *)w;
	json_t *names, *data;

	if (!st->ok) {
		veil_http_reply_error(m->req, st->status, NULL, st->code, "%s", st->error);
		goto out;
	}
	names = models_of(st);
	data = json_array();
	for (size_t i = 0; i < json_array_size(names); i++) {
		const char *id = json_string_value(json_array_get(names, i));
		json_t *e = json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", "model",
				      "created", (json_int_t)st->verified_at, "owned_by", "veil");

		if (m->one[0] && !strcmp(m->one, id)) {
			json_decref(names);
			json_decref(data);
			veil_http_reply_json(m->req, 200, e);
			goto out;
		}
		json_array_append_new(data, e);
	}
	json_decref(names);
	if (m->one[0]) {
		json_decref(data);
		veil_http_reply_error(m->req, 404, "invalid_request_error", "model_not_found",
				      "The model '%.100s' does not exist (or no verified node "
				      "serves it)", m->one);
		goto out;
	}
	veil_http_reply_json(m->req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
out:
	m->req = NULL;
	free(m);
}

static void models_close(struct veil_http_req *req, void *arg)
{
	struct models_wait *m = arg;

	proxy_state_cancel(m->p, &m->w);
	veil_http_reply_error(req, 503, NULL, "client_closed", "client went away");
	free(m);
}

static void h_models(struct veil_http_req *req, void *arg)
{
	struct proxy *p = arg;
	struct models_wait *m = calloc(1, sizeof(*m));
	const char *path = veil_http_req_path(req);

	if (!m) {
		veil_http_reply_error(req, 500, NULL, "internal", "out of memory");
		return;
	}
	m->p = p;
	m->req = req;
	m->w.cb = models_reply;
	if (!strncmp(path, "/v1/models/", 11))
		snprintf(m->one, sizeof(m->one), "%s", path + 11);
	if (!strncmp(path, "/v1/models/", 11) && !m->one[0]) {
		free(m);
		veil_http_reply_error(req, 404, NULL, "model_not_found", "no model named");
		return;
	}
	veil_http_req_on_close(req, models_close, m);
	if (proxy_state_get(p, &m->w, 0) < 0) {
		veil_http_req_on_close(req, NULL, NULL);
		free(m);
		veil_http_reply_error(req, 503, NULL, "busy", "too many requests wait for "
				      "verification");
	}
}

static void h_healthz(struct veil_http_req *req, void *arg)
{
	(void)arg;
	veil_http_reply(req, 200, "text/plain", "ok\n", 3);
}

/* Ready = a verified state is current. */
static void h_readyz(struct veil_http_req *req, void *arg)
{
	struct proxy *p = arg;

	if (usable(p, p->st, 0) && p->st->ok && p->st->n_ok)
		veil_http_reply(req, 200, "text/plain", "ready\n", 6);
	else
		veil_http_reply_error(req, 503, NULL, "not_verified",
				      "the gateway has not been verified (see /veil/status)");
}

void proxy_attest_routes(struct proxy *p)
{
	veil_http_route(p->srv, "GET", "/veil/status", false, h_status, p);
	veil_http_route(p->srv, "GET", "/v1/models", false, h_models, p);
	veil_http_route(p->srv, "GET", "/v1/models/", true, h_models, p);
	veil_http_route(p->srv, "GET", "/healthz", false, h_healthz, p);
	veil_http_route(p->srv, "GET", "/readyz", false, h_readyz, p);
}
