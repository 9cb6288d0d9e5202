/* The gateway's own endpoints: /v1/models, /v1/usage, /v1/signature/{id},
 * /v1/attestation/report (the gateway's report and its nodes'), /healthz,
 * /readyz, /metrics; and the gateway's attestation (keys born at start,
 * RTMR3 events veil-gateway-binary / veil-gateway-config, the DCAP
 * collateral for its own quote: --pccs). */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "veil/attester.h"
#include "veil/receipt.h"

#include "gateway.h"

#define MAX_FRESH_REPORTS 64   /* /v1/attestation/report?nonce= in flight */
#define FRESH_TIMEOUT_MS 15000 /* ... each, for its nodes' reports (queued included),
				* from when the gateway's own report is made */
#define FRESH_TOTAL_MS 25000   /* ... and within this of the request */

/* ---- small shared helpers ------------------------------------------------- */

char *gw_b64url(const void *p, size_t n)
{
	size_t l = veil_b64_encoded_len(n, VEIL_B64_URL | VEIL_B64_NOPAD);
	char *o = malloc(l + 1);

	if (o && veil_b64_encode(p, n, VEIL_B64_URL | VEIL_B64_NOPAD, o, l + 1) < 0) {
		free(o);
		o = NULL;
	}
	return o;
}

static const double hist_le[GW_HIST_N] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 5,
};

void gw_hist_add(struct gw_hist *h, double s)
{
	for (int i = 0; i < GW_HIST_N; i++)
		if (s <= hist_le[i])
			h->bucket[i]++;
	h->count++;
	h->sum += s;
}

void gw_status(struct gw *g, int status)
{
	if (status >= 100 && status < 600)
		g->m.by_status[status]++;
}

int gw_reply_error(struct gw *g, struct veil_http_req *req, int status,
		   const char *type, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	gw_status(g, status);
	return veil_http_reply_error(req, status, type, code, "%s", msg);
}

int gw_query(struct gw *g, struct gw_job *j, struct veil_http_req *req)
{
	if (gw_worker_submit(g->query, j) < 0) {
		gw_reply_error(g, req, 503, NULL, "overloaded",
			       "the gateway is overloaded; retry later");
		return VEIL_EBUSY;
	}
	return 0;
}

int gw_report_query(struct gw *g, struct gw_job *j, struct veil_http_req *req)
{
	if (gw_worker_submit(g->report, j) < 0) {
		veil_http_set_retry_after(req, 1);
		gw_reply_error(g, req, 503, NULL, "overloaded",
			       "too many usage reports at once; retry later");
		return VEIL_EBUSY;
	}
	return 0;
}

/* ---- /v1/models ------------------------------------------------------------ */

static json_t *model_obj(struct gw *g, const char *id)
{
	return json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", "model", "created",
			 (json_int_t)(g->started_ms / 1000), "owned_by", "veil");
}

static void h_models(struct veil_http_req *req, void *arg)
{
	struct gw *g = arg;
	json_t *data = json_array();

	for (struct gw_node *n = g->nodes; n; n = n->next) {
		bool dup = false;
		size_t i;
		json_t *v;

		if (!gw_node_usable(n))
			continue;
		json_array_foreach(data, i, v)
			dup |= !strcmp(json_string_value(json_object_get(v, "id")), n->model);
		if (!dup)
			json_array_append_new(data, model_obj(g, n->model));
	}
	gw_status(g, 200);
	veil_http_reply_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void h_model_one(struct veil_http_req *req, void *arg)
{
	struct gw *g = arg;
	const char *id = veil_http_req_path(req) + strlen("/v1/models/");

	if (!gw_model_available(g, id)) {
		gw_reply_error(g, req, 404, "invalid_request_error", "model_not_found",
			       "The model does not exist");
		return;
	}
	gw_status(g, 200);
	veil_http_reply_json(req, 200, model_obj(g, id));
}

/* ---- /v1/usage --------------------------------------------------------------- */

struct usage_q {
	struct gw_job job;
	struct gw *g;
	struct veil_http_req *req;
	int64_t key_id, from, to;
	struct veil_store_totals t;
};

static void usage_run(struct gw_job *j, struct veil_store *s)
{
	struct usage_q *q = (struct usage_q *)j;

	j->rc = veil_store_usage_totals(s, q->key_id, q->from, q->to, &q->t);
}

static void usage_done(struct gw_job *j)
{
	struct usage_q *q = (struct usage_q *)j;
	struct gw *g = q->g;

	if (j->rc < 0) {
		gw_reply_error(g, q->req, 503, NULL, "store_unavailable",
			       "the usage store is not available");
	} else {
		gw_status(g, 200);
		veil_http_reply_json(
			q->req, 200,
			json_pack("{s:s, s:I, s:o, s:o, s:I, s:I, s:I, s:I}", "object", "usage",
				  "key_id", (json_int_t)q->key_id, "from",
				  q->from ? json_integer(q->from / 1000) : json_null(), "to",
				  q->to ? json_integer(q->to / 1000) : json_null(), "requests",
				  (json_int_t)q->t.requests, "prompt_tokens",
				  (json_int_t)q->t.prompt_tokens, "completion_tokens",
				  (json_int_t)q->t.completion_tokens, "total_tokens",
				  (json_int_t)(q->t.prompt_tokens + q->t.completion_tokens)));
	}
	free(q);
}

/* from/to of a usage query; replies 400 itself. */
static int range(struct gw *g, struct veil_http_req *req, int64_t *from, int64_t *to)
{
	const char *f = veil_http_req_query(req, "from");
	const char *t = veil_http_req_query(req, "to");

	*from = 0;
	*to = 0;
	if ((f && gw_parse_time(f, from) < 0) || (t && gw_parse_time(t, to) < 0)) {
		gw_reply_error(g, req, 400, NULL, "invalid_time",
			       "from and to are unix seconds");
		return -1;
	}
	return 0;
}

struct authed {
	struct gw *g;
	struct veil_http_req *req;
	void (*next)(struct authed *a, const struct gw_key *k);
};

static void authed_cb(void *arg, int status, const struct gw_key *k, int retry_after,
		      const char *code, const char *msg)
{
	struct authed *a = arg;

	if (status) {
		if (retry_after > 0)
			veil_http_set_retry_after(a->req, (unsigned)retry_after);
		gw_reply_error(a->g, a->req, status, NULL, code, "%s", msg);
		free(a);
		return;
	}
	a->next(a, k);
	free(a);
}

static void with_key(struct gw *g, struct veil_http_req *req,
		     void (*next)(struct authed *a, const struct gw_key *k))
{
	struct authed *a = calloc(1, sizeof(*a));

	if (!a) {
		gw_reply_error(g, req, 503, NULL, "overloaded", "out of memory");
		return;
	}
	a->g = g;
	a->req = req;
	a->next = next;
	gw_auth(g, req, authed_cb, a);
}

static void usage_next(struct authed *a, const struct gw_key *k)
{
	struct usage_q *q = calloc(1, sizeof(*q));

	if (!q) {
		gw_reply_error(a->g, a->req, 503, NULL, "overloaded", "out of memory");
		return;
	}
	if (range(a->g, a->req, &q->from, &q->to) < 0) {
		free(q);
		return;
	}
	q->job.run = usage_run;
	q->job.done = usage_done;
	q->g = a->g;
	q->req = a->req;
	q->key_id = k->id;
	if (gw_report_query(a->g, &q->job, a->req) < 0)
		free(q);
}

static void h_usage(struct veil_http_req *req, void *arg)
{
	with_key(arg, req, usage_next);
}

/* ---- /v1/signature/{id} ---------------------------------------------------------- */

struct sig_q {
	struct gw_job job;
	struct gw *g;
	struct veil_http_req *req;
	char id[VEIL_STORE_ID_MAX + 1];
	bool ed;
	int64_t key_id, owner;
	struct veil_buf receipt;
};

static void sig_run(struct gw_job *j, struct veil_store *s)
{
	struct sig_q *q = (struct sig_q *)j;

	j->rc = veil_store_receipt_get(s, q->id, &q->receipt, &q->owner);
}

static void sig_done(struct gw_job *j)
{
	struct sig_q *q = (struct sig_q *)j;
	struct gw *g = q->g;
	struct veil_receipt r;
	char text[VEIL_RECEIPT_TEXT_MAX], sig[2 + 130 + 1], addr[VEIL_ETH_ADDRESS_STR_LEN];
	char edpub[65];

	memset(&r, 0, sizeof(r));
	if (j->rc == VEIL_ENOENT || (j->rc == 0 && q->owner != q->key_id)) {
		/* another key's request is "not found" too: ids are not secret
		 * enough to tell their owners apart */
		gw_reply_error(g, q->req, 404, NULL, "signature_not_found",
			       "no signature for this id (unknown, or made with another key)");
		goto out;
	}
	if (j->rc < 0) {
		gw_reply_error(g, q->req, 503, NULL, "store_unavailable",
			       "the receipt store is not available");
		goto out;
	}
	if (veil_receipt_parse(q->receipt.data, q->receipt.len, &r) < 0 || !r.has_text_sigs) {
		gw_reply_error(g, q->req, 404, NULL, "signature_unavailable",
			       "the stored receipt for this id has no text signatures "
			       "(made by an older node); verify the receipt itself instead");
		goto out;
	}
	veil_receipt_text(&r, text, sizeof(text));
	if (q->ed) {
		veil_hex_encode(r.text_sig_ed25519, 64, sig, sizeof(sig));
		veil_hex_encode(r.ed25519_public_key, 32, edpub, sizeof(edpub));
	} else {
		sig[0] = '0';
		sig[1] = 'x';
		veil_hex_encode(r.text_sig_ecdsa, 65, sig + 2, sizeof(sig) - 2);
		veil_eth_address_format(r.eth_address, addr);
	}
	gw_status(g, 200);
	veil_http_reply_json(q->req, 200,
			     json_pack("{s:s, s:s, s:s, s:s}", "text", text, "signature", sig,
				       "signing_address", q->ed ? edpub : addr, "signing_algo",
				       q->ed ? "ed25519" : "ecdsa"));
out:
	veil_receipt_free(&r);
	veil_buf_free(&q->receipt);
	free(q);
}

static void sig_next(struct authed *a, const struct gw_key *k)
{
	const char *id = veil_http_req_path(a->req) + strlen("/v1/signature/");
	const char *algo = veil_http_req_query(a->req, "signing_algo");
	struct sig_q *q;

	if (!algo || !*algo)
		algo = "ecdsa";
	if (strcmp(algo, "ecdsa") && strcmp(algo, "ed25519")) {
		gw_reply_error(a->g, a->req, 400, NULL, "invalid_signing_algo",
			       "signing_algo must be ecdsa or ed25519");
		return;
	}
	if (!*id || strlen(id) > VEIL_STORE_ID_MAX) {
		gw_reply_error(a->g, a->req, 404, NULL, "signature_not_found",
			       "no signature for this id");
		return;
	}
	if (!(q = calloc(1, sizeof(*q)))) {
		gw_reply_error(a->g, a->req, 503, NULL, "overloaded", "out of memory");
		return;
	}
	q->job.run = sig_run;
	q->job.done = sig_done;
	q->g = a->g;
	q->req = a->req;
	q->ed = !strcmp(algo, "ed25519");
	q->key_id = k->id;
	q->receipt = (struct veil_buf)VEIL_BUF_INIT(VEIL_STORE_RECEIPT_MAX + 1);
	snprintf(q->id, sizeof(q->id), "%s", id);
	if (gw_query(a->g, &q->job, a->req) < 0)
		free(q);
}

static void h_signature(struct veil_http_req *req, void *arg)
{
	with_key(arg, req, sig_next);
}

/* ---- the gateway's attestation ------------------------------------------------------ */

static int sha384_file(const char *path, uint8_t out[48])
{
	FILE *f = fopen(path, "rb");
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t *buf = malloc(1 << 16);
	unsigned len = 48;
	size_t r;
	int rc = VEIL_EIO;

	if (!f || !md || !buf || !EVP_DigestInit_ex(md, EVP_sha384(), NULL))
		goto out;
	while ((r = fread(buf, 1, 1 << 16, f)) > 0)
		EVP_DigestUpdate(md, buf, r);
	if (!ferror(f) && EVP_DigestFinal_ex(md, out, &len))
		rc = 0;
out:
	if (f)
		fclose(f);
	free(buf);
	EVP_MD_CTX_free(md);
	return rc;
}

int gw_attest_init(struct gw *g)
{
	struct veil_attester_opts ao = {0};
	struct veil_attester *a = NULL;
	uint8_t d[2][48], pub[VEIL_SECP256K1_PUB_LEN], addr[20], nonce[32];
	unsigned l = 48;
	int rc;

	if ((rc = veil_ed25519_key_generate(&g->ed)) < 0 ||
	    (rc = veil_secp256k1_key_generate(&g->k1)) < 0)
		return rc;
	if (!g->o.plain_http &&
	    (rc = veil_http_selfsigned(VEIL_HTTP_KEY_P256, NULL, 365, &g->tls_key,
				       &g->tls_cert)) < 0)
		return rc;
	memset(&g->keyset, 0, sizeof(g->keyset));
	veil_ed25519_public(g->ed, g->keyset.ed25519);
	g->keyset.present |= VEIL_KEYSET_HAS(VEIL_KEY_ED25519);
	veil_secp256k1_public(g->k1, pub);
	if ((rc = veil_keyset_set_secp256k1(&g->keyset, pub)) < 0)
		return rc;
	if (g->tls_key) {
		if ((rc = veil_http_spki_sha256_key(g->tls_key, g->keyset.tls_spki_sha256)) < 0)
			return rc;
		g->keyset.present |= VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256);
	}
	if ((rc = veil_keyset_encode(&g->keyset, g->keyset_enc, sizeof(g->keyset_enc),
				     &g->keyset_len)) < 0)
		return rc;
	veil_secp256k1_address(g->k1, addr);
	veil_eth_address_format(addr, g->eth_address);

	ao.tee = g->o.tee;
	ao.allow_sim_fallback = !strcmp(g->o.tee, "auto");
	ao.no_gpu = true; /* the gateway needs no GPU */
	ao.state_dir = g->o.sim_state; /* used by the sim TEE only */
	if ((rc = veil_attester_open(&ao, &a)) < 0) {
		VEIL_ERROR(GW_MOD, "attestation: %s (%s)", veil_strerror(rc), veil_err_detail());
		return rc;
	}
	g->attester = a;
	if (!strcmp(veil_attester_kind(a), "sim"))
		VEIL_WARN(GW_MOD, "attestation: SIMULATED TEE - the gateway's report proves "
			  "nothing about hardware");
	if ((rc = sha384_file("/proc/self/exe", d[0])) < 0) {
		VEIL_ERROR(GW_MOD, "cannot read /proc/self/exe to measure it");
		return rc;
	}
	EVP_Digest(g->o.config_json, strlen(g->o.config_json), d[1], &l, EVP_sha384(), NULL);
	if ((rc = veil_attester_extend(a, VEIL_EVLOG_GATEWAY_BINARY, d[0], 48)) < 0 ||
	    (rc = veil_attester_extend(a, VEIL_EVLOG_GATEWAY_CONFIG, d[1], 48)) < 0) {
		VEIL_ERROR(GW_MOD, "attestation: extending RTMR3 failed: %s (%s)",
			   veil_strerror(rc), veil_err_detail());
		return rc;
	}
	veil_random(nonce, sizeof(nonce));
	if ((rc = veil_attester_report(a, g->keyset_enc, g->keyset_len, nonce, NULL,
				       &g->cached_report)) < 0) {
		VEIL_ERROR(GW_MOD, "attestation: report failed: %s (%s)", veil_strerror(rc),
			   veil_err_detail());
		return rc;
	}
	/* DCAP collateral for the gateway's own quote, as veil-node does for
	 * its own (--pccs, --pccs-cache; docs/operations.md): a TDX report
	 * without it is refused by every verifier that has none of its own,
	 * a veil-proxy among them.  Reports take the last good copy and never
	 * wait for a fetch. */
	if ((rc = veil_pccs_fetcher_start_report(g->o.pccs, veil_attester_kind(a),
						 g->o.pccs_cache, GW_MOD, g->cached_report,
						 &g->coll, &g->cached_coll)) < 0)
		return rc;
	VEIL_INFO(GW_MOD, "attestation: %s; keys: ethereum %s", veil_attester_kind(a),
		  g->eth_address);
	return 0;
}

void gw_attest_free(struct gw *g)
{
	/* Only the signing and TLS keys: the CPU workers are not stopped at
	 * exit (main.c), and one may still be making a report with the
	 * attester, the key set and the collateral fetcher, which the
	 * process's end takes with it (the fetcher's thread too).  No
	 * worker uses these keys. */
	veil_ed25519_key_free(g->ed);
	veil_secp256k1_key_free(g->k1);
	EVP_PKEY_free(g->tls_key);
	X509_free(g->tls_cert);
	g->ed = NULL;
	g->k1 = NULL;
	g->tls_key = NULL;
	g->tls_cert = NULL;
}

/* GET /v1/attestation/report: the gateway's own report and, fetched now with
 * the same nonce over each node's pinned connection, its nodes' reports. */
struct fresh {
	struct gw_job job;       /* the gateway's own report, on a CPU worker */
	struct gw *g;
	struct veil_http_req *req;
	uint8_t nonce[32];
	char hex[65];
	char model[VEIL_STORE_MODEL_MAX + 1];
	bool any_model;
	json_t *own;
	json_t *doc;
	json_t *nodes;
	int pending;
	uint64_t t0_ns;          /* monotonic: the request came */
	uint64_t deadline_ns;    /* monotonic: node reports not in by then are left out */
};

struct fresh_one {
	struct fresh_one *next;  /* fresh_wait */
	struct fresh *f;
	struct gw_node *n;
	uint64_t not_before_ns;  /* monotonic: a busy node is asked again from then */
};

static unsigned fresh_in_flight;

/* A node makes one quote at a time and takes at most 8 nonce reports at
 * once (src/node/attest.c; past that 503 attestation_busy), while up to
 * MAX_FRESH_REPORTS callers here can each want one from every node: the
 * gateway asks a node for at most NODE_FRESH_MAX at a time and the rest
 * wait here, in order, so a burst of callers never has a node left out of
 * its report. */
#define NODE_FRESH_MAX 4
/* A node busy with others' reports (503 attestation_busy, or 429) is asked
 * again after this, while the report's time lasts: its slots free as its
 * quotes finish (milliseconds each), and leaving it out would make the
 * caller (a veil-proxy) find no verified node for its model. */
#define FRESH_BUSY_RETRY_MS 500
static struct fresh_one *fresh_wait, **fresh_wait_tail = &fresh_wait;

static void fresh_finish(struct fresh *f)
{
	if (--f->pending > 0)
		return;
	fresh_in_flight--;
	json_object_set_new(f->doc, "nodes", f->nodes);
	gw_status(f->g, 200);
	veil_http_reply_json(f->req, 200, f->doc);
	free(f);
}

static void fresh_pump(void);

static void fresh_done(void *arg, int rc, int status, const uint8_t *body, size_t len)
{
	struct fresh_one *o = arg;
	json_t *r = NULL;

	o->n->fresh_out--;
	if (rc == 0 && (status == 503 || status == 429)) {
		uint64_t now = veil_now_ns();

		o->not_before_ns = now + (uint64_t)FRESH_BUSY_RETRY_MS * 1000000;
		if (o->not_before_ns + 1000000 < o->f->deadline_ns && gw_node_usable(o->n)) {
			VEIL_INFO(GW_MOD, "node %s: busy making reports (%d); its fresh report is "
				  "asked again in %d ms", o->n->id, status, FRESH_BUSY_RETRY_MS);
			o->next = NULL;
			*fresh_wait_tail = o;
			fresh_wait_tail = &o->next;
			fresh_pump();
			return;
		}
	}
	if (rc == 0 && status == 200)
		r = json_loadb((const char *)body, len, 0, NULL);
	if (r)
		json_array_append_new(o->f->nodes,
				      json_pack("{s:s, s:s, s:o}", "id", o->n->id, "model",
						o->n->model, "report", r));
	else
		VEIL_WARN(GW_MOD, "node %s: fresh report failed (%s, status %d); left out",
			  o->n->id, rc ? veil_strerror(rc) : "http", status);
	gw_node_unref(o->n);
	fresh_finish(o->f);
	free(o);
	fresh_pump();
}

/* now: the pump's clock, which found the deadline at least 1 ms away */
static int fresh_start(struct fresh_one *o, uint64_t now)
{
	struct veil_http_request rq = {0};
	char url[VEIL_STORE_URL_MAX + 128];

	snprintf(url, sizeof(url), "%s/v1/attestation/report?nonce=%s", o->n->url, o->f->hex);
	rq.url = url;
	rq.timeout_ms = (unsigned)((o->f->deadline_ns - now) / 1000000);
	gw_node_request(o->n, &rq);
	rq.max_response = VEIL_REPORT_MAX;
	rq.on_done = fresh_done;
	rq.arg = o;
	o->n->fresh_out++;
	if (veil_http_client_start(o->f->g->client, &rq, NULL) < 0) {
		o->n->fresh_out--;
		return -1;
	}
	return 0;
}

/* Starts every waiting fetch whose node has room, oldest first; leaves out
 * those whose report's time is up or whose node left the rotation
 * meanwhile. */
static void fresh_pump(void)
{
	struct fresh_one **pp = &fresh_wait, *o;
	uint64_t now = veil_now_ns();

	while ((o = *pp)) {
		const char *why = NULL;

		if (now + 1000000 >= o->f->deadline_ns)
			why = "its time ran out in the queue";
		else if (!gw_node_usable(o->n))
			why = "it left the rotation";
		else if (o->n->fresh_out >= NODE_FRESH_MAX || o->not_before_ns > now) {
			pp = &o->next;
			continue;
		}
		if (!(*pp = o->next))
			fresh_wait_tail = pp;
		o->next = NULL;
		if (why || fresh_start(o, now) < 0) {
			VEIL_WARN(GW_MOD, "node %s: fresh report not asked (%s); left out", o->n->id,
				  why ? why : "the request could not start");
			gw_node_unref(o->n);
			fresh_finish(o->f);
			free(o);
		}
	}
}

void gw_fresh_tick(void)
{
	if (fresh_wait)
		fresh_pump();
}

/* Quote generation blocks (configfs-tsm on a real TEE): not on the loop. */
static void own_report_run(struct gw_job *j, struct veil_store *s)
{
	struct fresh *f = (struct fresh *)j;

	(void)s;
	j->rc = veil_attester_report(f->g->attester, f->g->keyset_enc, f->g->keyset_len,
				     f->nonce, NULL, &f->own);
	/* the fetched DCAP collateral, never waited for (g->coll is set
	 * before any request and never freed: gw_attest_free) */
	if (j->rc == 0 && (j->rc = veil_pccs_fetcher_apply(f->g->coll, f->own, NULL)) < 0) {
		json_decref(f->own);
		f->own = NULL;
	}
}

static void own_report_done(struct gw_job *j)
{
	struct fresh *f = (struct fresh *)j;
	struct gw *g = f->g;

	if (j->rc < 0) {
		fresh_in_flight--;
		gw_reply_error(g, f->req, 500, NULL, "attestation_failed",
			       "the report could not be made: %s", veil_strerror(j->rc));
		free(f);
		return;
	}
	f->doc = json_pack("{s:s, s:o}", "version", VEIL_GATEWAY_REPORT_VERSION, "gateway",
			   f->own);
	/* from here (the gateway's own quote may have waited for a worker),
	 * but within FRESH_TOTAL_MS of the request: callers wait 30 s */
	f->deadline_ns = VEIL_MIN(veil_now_ns() + (uint64_t)FRESH_TIMEOUT_MS * 1000000,
				  f->t0_ns + (uint64_t)FRESH_TOTAL_MS * 1000000);
	f->nodes = json_array();
	f->pending = 1;
	for (struct gw_node *n = g->nodes; n; n = n->next) {
		struct fresh_one *o;

		if (!gw_node_usable(n) || (!f->any_model && strcmp(f->model, n->model)))
			continue;
		if (!(o = calloc(1, sizeof(*o))))
			continue;
		o->f = f;
		o->n = n;
		gw_node_ref(n);
		f->pending++;
		*fresh_wait_tail = o;
		fresh_wait_tail = &o->next;
	}
	fresh_pump();
	fresh_finish(f);
}

static void h_report(struct veil_http_req *req, void *arg)
{
	struct gw *g = arg;
	const char *hex = veil_http_req_query(req, "nonce");
	const char *model = veil_http_req_query(req, "model");
	size_t got;
	json_t *nodes;
	struct fresh *f;

	if (model && !gw_model_valid(model, strlen(model))) {
		gw_reply_error(g, req, 400, NULL, "invalid_model", "bad model name");
		return;
	}
	if (!hex) {
		/* cached reports: NOT fresh (documented) */
		veil_pccs_fetcher_refresh(g->coll, &g->cached_report, &g->cached_coll);
		nodes = json_array();
		for (struct gw_node *n = g->nodes; n; n = n->next)
			if (gw_node_usable(n) && n->report && (!model || !strcmp(model, n->model)))
				json_array_append_new(nodes, json_pack("{s:s, s:s, s:O}", "id", n->id,
								       "model", n->model, "report",
								       n->report));
		gw_status(g, 200);
		veil_http_reply_json(req, 200,
				     json_pack("{s:s, s:O, s:o, s:b}", "version",
					       VEIL_GATEWAY_REPORT_VERSION, "gateway",
					       g->cached_report, "nodes", nodes, "cached", 1));
		return;
	}
	if (fresh_in_flight >= MAX_FRESH_REPORTS) {
		veil_http_set_retry_after(req, 1);
		gw_reply_error(g, req, 429, NULL, "too_many_reports",
			       "too many attestation requests at once; retry later");
		return;
	}
	if (!(f = calloc(1, sizeof(*f)))) {
		gw_reply_error(g, req, 503, NULL, "overloaded", "out of memory");
		return;
	}
	if (strlen(hex) != 64 || veil_hex_decode(hex, 64, f->nonce, sizeof(f->nonce), &got) < 0) {
		free(f);
		gw_reply_error(g, req, 400, NULL, "invalid_nonce",
			       "nonce must be 64 hex characters (32 bytes)");
		return;
	}
	f->t0_ns = veil_now_ns();
	f->job.run = own_report_run;
	f->job.done = own_report_done;
	f->g = g;
	f->req = req;
	memcpy(f->hex, hex, 65);
	f->any_model = !model;
	if (model)
		snprintf(f->model, sizeof(f->model), "%s", model);
	fresh_in_flight++;
	if (gw_worker_submit(g->cpu[g->cpu_rr++ % g->n_cpu], &f->job) < 0) {
		fresh_in_flight--;
		free(f);
		gw_reply_error(g, req, 503, NULL, "overloaded", "the gateway is overloaded");
	}
}

/* ---- operations ---------------------------------------------------------------------- */

static void h_healthz(struct veil_http_req *req, void *arg)
{
	(void)arg;
	veil_http_reply(req, 200, "text/plain", "ok\n", 3);
}

static void h_readyz(struct veil_http_req *req, void *arg)
{
	struct gw *g = arg;

	if (!g->ready || g->stopping) {
		veil_http_reply_error(req, 503, NULL, "not_ready",
				      g->stopping ? "shutting down" : "starting");
		return;
	}
	veil_http_reply(req, 200, "text/plain", "ready\n", 6);
}

static void hist_out(struct veil_buf *b, const char *name, const char *help,
		     const struct gw_hist *h)
{
	veil_buf_appendf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (int i = 0; i < GW_HIST_N; i++)
		veil_buf_appendf(b, "%s_bucket{le=\"%g\"} %llu\n", name, hist_le[i],
				 (unsigned long long)h->bucket[i]);
	veil_buf_appendf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
			 (unsigned long long)h->count, name, h->sum, name,
			 (unsigned long long)h->count);
}

static void counter(struct veil_buf *b, const char *name, const char *help, uint64_t v,
		    bool gauge)
{
	veil_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name,
			 gauge ? "gauge" : "counter", name, (unsigned long long)v);
}

static void h_metrics(struct veil_http_req *req, void *arg)
{
	struct gw *g = arg;
	struct veil_buf b = VEIL_BUF_INIT(4u << 20);
	const struct gw_metrics *m = &g->m;

	veil_buf_append_str(&b, "# HELP veil_gateway_requests_total HTTP responses by status.\n"
				"# TYPE veil_gateway_requests_total counter\n");
	for (int s = 100; s < 600; s++)
		if (m->by_status[s])
			veil_buf_appendf(&b, "veil_gateway_requests_total{status=\"%d\"} %llu\n",
					 s, (unsigned long long)m->by_status[s]);
	counter(&b, "veil_gateway_retries_total", "Requests retried on another node.",
		m->retries, false);
	counter(&b, "veil_gateway_receipts_verified_total", "Receipts that verified.",
		m->receipts_ok, false);
	counter(&b, "veil_gateway_receipts_failed_total",
		"Receipts refused (bad signature or hashes); not billed.", m->receipts_bad,
		false);
	counter(&b, "veil_gateway_receipts_missing_total", "Answers without a receipt.",
		m->receipts_missing, false);
	counter(&b, "veil_gateway_usage_records_total", "Usage records stored.",
		m->usage_records, false);
	counter(&b, "veil_gateway_usage_failed_total", "Usage records the store refused.",
		m->usage_failed, false);
	counter(&b, "veil_gateway_usage_commits_total",
		"Usage transactions (group commits) the writer ran.",
		(uint64_t)atomic_load(&g->usage_commits), false);
	counter(&b, "veil_gateway_streams_cut_total", "Streams ended with an error event.",
		m->streams_cut, false);
	counter(&b, "veil_gateway_clients_stalled_total",
		"Streams cut because their client stopped reading (the answer was then read "
		"to its end and billed).", m->clients_stalled, false);
	counter(&b, "veil_gateway_streams_active", "Streams being relayed.",
		m->streams_active, true);
	counter(&b, "veil_gateway_requests_active", "Completions in flight.", m->relays_active,
		true);
	counter(&b, "veil_gateway_relays_detached_total",
		"Answers whose client left after the node had the request: read to their "
		"end and billed.", m->relays_detached, false);
	counter(&b, "veil_gateway_relays_detached_active",
		"Detached answers still being read.", m->relays_detached_active, true);
	counter(&b, "veil_gateway_upstream_timeouts_total",
		"Answers not complete within --upstream-timeout-ms (504 or a cut stream).",
		m->upstream_timeouts, false);
	counter(&b, "veil_gateway_key_cache_hits_total", "API keys found in memory.",
		m->key_cache_hits, false);
	counter(&b, "veil_gateway_key_cache_misses_total", "API keys looked up in the store.",
		m->key_cache_misses, false);
	counter(&b, "veil_gateway_attestations_passed_total", "Node attestations passed.",
		m->attestations_ok, false);
	counter(&b, "veil_gateway_attestations_failed_total", "Node attestations failed.",
		m->attestations_failed, false);
	counter(&b, "veil_gateway_connections", "Open client connections.",
		veil_http_server_conns(g->srv), true);
	counter(&b, "veil_gateway_usage_queue", "Records waiting for the writer.",
		gw_worker_queued(g->writer), true);
	veil_buf_append_str(&b,
		"# HELP veil_gateway_node_outstanding Requests in flight per node.\n"
		"# TYPE veil_gateway_node_outstanding gauge\n");
	for (struct gw_node *n = g->nodes; n; n = n->next)
		veil_buf_appendf(&b, "veil_gateway_node_outstanding{node=\"%s\",model=\"%s\"} %u\n",
				 n->id, n->model, n->outstanding);
	veil_buf_append_str(&b, "# HELP veil_gateway_node_healthy 1 when health checks pass.\n"
				"# TYPE veil_gateway_node_healthy gauge\n");
	for (struct gw_node *n = g->nodes; n; n = n->next)
		veil_buf_appendf(&b, "veil_gateway_node_healthy{node=\"%s\",model=\"%s\"} %d\n",
				 n->id, n->model, n->healthy ? 1 : 0);
	veil_buf_append_str(&b,
		"# HELP veil_gateway_node_verified 1 when the node's attestation passed.\n"
		"# TYPE veil_gateway_node_verified gauge\n");
	for (struct gw_node *n = g->nodes; n; n = n->next)
		veil_buf_appendf(&b, "veil_gateway_node_verified{node=\"%s\",model=\"%s\"} %d\n",
				 n->id, n->model,
				 n->state == VEIL_NODE_VERIFIED && n->have_keys ? 1 : 0);
	veil_buf_append_str(&b, "# HELP veil_gateway_node_requests_total Requests sent per node.\n"
				"# TYPE veil_gateway_node_requests_total counter\n");
	for (struct gw_node *n = g->nodes; n; n = n->next)
		veil_buf_appendf(&b, "veil_gateway_node_requests_total{node=\"%s\",model=\"%s\"} %llu\n",
				 n->id, n->model, (unsigned long long)n->requests);
	veil_pccs_fetcher_metrics(g->coll, "veil_gateway", &b);
	hist_out(&b, "veil_gateway_usage_write_seconds",
		 "Receipt check + durable usage write, per record.", &m->usage_write);
	hist_out(&b, "veil_gateway_added_seconds",
		 "Gateway time of non-streamed answers (total minus the node's).", &m->added);
	veil_http_reply(req, 200, "text/plain; version=0.0.4", b.data ? (char *)b.data : "",
			b.len);
	veil_buf_free(&b);
}

void gw_api_routes(struct gw *g)
{
	veil_http_route(g->srv, "GET", "/healthz", false, h_healthz, g);
	veil_http_route(g->srv, "GET", "/readyz", false, h_readyz, g);
	veil_http_route(g->srv, "GET", "/metrics", false, h_metrics, g);
	veil_http_route(g->srv, "GET", "/v1/models", false, h_models, g);
	veil_http_route(g->srv, "GET", "/v1/models/", true, h_model_one, g);
	veil_http_route(g->srv, "GET", "/v1/usage", false, h_usage, g);
	veil_http_route(g->srv, "GET", "/v1/signature/", true, h_signature, g);
	veil_http_route(g->srv, "GET", "/v1/attestation/report", false, h_report, g);
}
