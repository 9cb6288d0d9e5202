/* Attestation of veil-node: RTMR3 measurements at start (binary, flags,
 * model, the model's SHA-256 when known, in that order; both model digests
 * are of the bytes loaded, computed by main.c in the same read) and
 * GET /v1/attestation/report.
 *
 * A report for a client's nonce needs a fresh quote: ~6 ms with the sim TEE,
 * tens of milliseconds through configfs-tsm and the QGS on a real TDX guest.
 * On the loop that would stall every stream of the node, and any client
 * could keep it stalled, so one reporter thread owns the attester once
 * node_attest_init is done: the loop hands it (request, nonce), the report
 * comes back through a channel and is answered on the loop.  The report
 * without a nonce (made at start) is served from the loop.  Both carry the
 * DCAP collateral the library's fetcher got, when the node fetches it (--pccs),
 * in place of any the attester put in. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "veil/attester.h"
#include "veil/eventlog.h"

#include "node.h"

static int sha384_file(const char *path, uint8_t out[48])
{
	FILE *f = fopen(path, "rb");
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	static uint8_t buf[1 << 16];
	unsigned len = 48;
	size_t r;
	int rc = VEIL_EIO;

	if (!f || !md || !EVP_DigestInit_ex(md, EVP_sha384(), NULL))
		goto out;
	while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(md, buf, r);
	if (!ferror(f) && EVP_DigestFinal_ex(md, out, &len))
		rc = 0;
out:
	if (f)
		fclose(f);
	EVP_MD_CTX_free(md);
	return rc;
}

static void sha384(const void *p, size_t n, uint8_t out[48])
{
	unsigned len = 48;

	EVP_Digest(p, n, out, &len, EVP_sha384(), NULL);
}

/* The event log in the node's log: one short line naming the events, then
 * one line per event with its payload and digest.  The whole JSON log on one
 * line was cut at the logger's cap (1023 bytes) once the node measured a
 * fourth event, so the log showed neither the last events nor all of the
 * model's.  Each line here stays far below the cap: names are at most
 * VEIL_EVLOG_MAX_NAME bytes (the node's are short), and a payload longer
 * than a SHA-384 is logged by its length only (the node's are 48 and 32
 * bytes).  The authoritative log is the report's (GET
 * /v1/attestation/report), which is what veil up compares. */
static void log_events(const char *kind, const struct veil_evlog *log)
{
	char names[640];
	size_t off = 0;

	names[0] = '\0';
	for (size_t i = 0; i < log->n && off < sizeof(names); i++) {
		int w = snprintf(names + off, sizeof(names) - off, "%s%.64s", i ? ", " : "",
				 log->ev[i].name[0] ? log->ev[i].name : "(boot)");

		if (w < 0)
			break;
		off += (size_t)w;
	}
	if (off >= sizeof(names)) /* snprintf truncated: say so */
		memcpy(names + sizeof(names) - 5, " ...", 5);
	VEIL_INFO(NODE_MOD, "attestation: %s, event log of %zu events: %s", kind, log->n, names);
	for (size_t i = 0; i < log->n; i++) {
		const struct veil_evlog_event *e = &log->ev[i];
		char dig[2 * VEIL_EVLOG_DIGEST_LEN + 1], pay[2 * 48 + 1];

		veil_hex_encode(e->digest, VEIL_EVLOG_DIGEST_LEN, dig, sizeof(dig));
		if (e->payload_len <= 48)
			veil_hex_encode(e->payload, e->payload_len, pay, sizeof(pay));
		else
			snprintf(pay, sizeof(pay), "(%zu bytes)", e->payload_len);
		VEIL_INFO(NODE_MOD, "attestation: event %zu/%zu imr %u %.64s payload %s digest %s",
			  i + 1, log->n, e->imr, e->name[0] ? e->name : "(boot)", pay, dig);
	}
}

static int report(struct node *n, const uint8_t nonce[32], json_t **out)
{
	struct veil_report_extra x = {n->o.model_name,
				      n->have_model_hash ? n->model_sha256_hex : NULL};

	return veil_attester_report(n->attester, n->keyset_enc, n->keyset_len, nonce, &x,
				    out);
}

/* ---- nonce reports, off the loop ---------------------------------------- */

/* Nonce reports handed to the reporter and not answered yet.  One at a time
 * is what the TEE does anyway (configfs-tsm serializes quotes), so a deep
 * queue would only make clients wait longer; past it: 503
 * attestation_busy with Retry-After (docs/api.md).  It also bounds the
 * channel back, which can then never be full. */
#define ATTEST_MAX_PENDING 8
#define ATTEST_RETRY_AFTER_S 1

struct areq {
	struct node_job job;           /* first: the workers hand it back */
	struct node *n;
	struct veil_http_req *req;     /* loop only; NULL once the client left */
	atomic_bool gone;              /* the client left: no quote for it */
	uint8_t nonce[32];
	/* written by the reporter */
	int rc;
	json_t *report;
};

/* The reporter thread: the only user of n->attester once started (the
 * attester's own lock serializes reports too); reads the key set and model
 * fields, which are fixed before it starts.  After the loop ended, or once
 * its client left, nobody can read an answer: no quote (a burst of clients
 * that gave up would otherwise keep the reporter busy for nobody). */
static void report_run(struct node_job *j, bool stopping)
{
	struct areq *r = (struct areq *)j;

	r->rc = stopping || atomic_load(&r->gone) ? VEIL_ECANCELED
						  : report(r->n, r->nonce, &r->report);
	/* the fetched DCAP collateral, never waited for */
	if (r->rc == 0)
		r->rc = veil_pccs_fetcher_apply(r->n->coll, r->report, NULL);
	if (r->rc < 0 && r->rc != VEIL_ECANCELED)
		VEIL_WARN(NODE_MOD, "attestation: report failed: %s (%s)",
			  veil_strerror(r->rc), veil_err_detail());
}

/* On the loop (or on the thread of node_attest_free, after the loop ended):
 * answers the request if its client is still there, else drops the
 * report. */
static void report_done(struct node_job *j)
{
	struct areq *r = (struct areq *)j;
	struct node *n = r->n;

	if (n->m.reports_pending)
		n->m.reports_pending--;
	if (r->req) { /* completing it frees it: on_gone cannot fire after */
		if (r->rc < 0) {
			node_metrics_status(n, 500);
			veil_http_reply_error(r->req, 500, NULL, "attestation_failed",
					      "the report could not be made: %s",
					      veil_strerror(r->rc));
		} else {
			node_metrics_status(n, 200);
			veil_http_reply_json(r->req, 200, r->report);
			r->report = NULL;
		}
	}
	json_decref(r->report);
	free(r);
}

int node_attest_init(struct node *n)
{
	struct veil_attester_opts ao = {0};
	struct veil_attester *a = NULL;
	uint8_t d[3][48];
	uint8_t nonce[32];
	int rc;

	ao.tee = n->o.tee;
	ao.allow_sim_fallback = !strcmp(n->o.tee, "auto");
	ao.state_dir = n->o.sim_state; /* used by the sim TEE only */
	if ((rc = veil_attester_open(&ao, &a)) < 0) {
		VEIL_ERROR(NODE_MOD, "attestation: %s (%s)", veil_strerror(rc),
			   veil_err_detail());
		return rc;
	}
	n->attester = a;
	if (!strcmp(veil_attester_kind(a), "sim"))
		VEIL_WARN(NODE_MOD, "attestation: SIMULATED TEE - reports prove nothing "
			  "about hardware; verifiers refuse them unless told --allow-sim");
	if ((rc = sha384_file("/proc/self/exe", d[0])) < 0) {
		VEIL_ERROR(NODE_MOD, "cannot read /proc/self/exe to measure it");
		return rc;
	}
	sha384(n->o.config_json, strlen(n->o.config_json), d[1]);
	if (n->o.model) {
		/* from the one read that loaded the weights (main.c): reading
		 * the file again here could measure other bytes than served */
		if (!n->have_model_hash) {
			VEIL_ERROR(NODE_MOD, "attestation: the model was not measured");
			return VEIL_EINTERNAL;
		}
		memcpy(d[2], n->model_sha384, 48);
	} else {
		sha384(n->o.upstream, strlen(n->o.upstream), d[2]);
	}
	if ((rc = veil_attester_extend(a, VEIL_EVLOG_NODE_BINARY, d[0], 48)) < 0 ||
	    (rc = veil_attester_extend(a, VEIL_EVLOG_NODE_CONFIG, d[1], 48)) < 0 ||
	    (rc = veil_attester_extend(a, VEIL_EVLOG_MODEL, d[2], 48)) < 0 ||
	    /* binds the report's model.sha256 (what receipts and policies
	     * name) to the quote; verifiers refuse an unmeasured one */
	    (n->have_model_hash &&
	     (rc = veil_attester_extend(a, VEIL_EVLOG_MODEL_SHA256, n->model_sha256,
					VEIL_EVLOG_MODEL_SHA256_LEN)) < 0)) {
		VEIL_ERROR(NODE_MOD, "attestation: extending RTMR3 failed: %s (%s)",
			   veil_strerror(rc), veil_err_detail());
		return rc;
	}
	log_events(veil_attester_kind(a), veil_attester_log(a));
	veil_random(nonce, sizeof(nonce));
	if ((rc = report(n, nonce, &n->cached_report)) < 0) {
		VEIL_ERROR(NODE_MOD, "attestation: report failed: %s (%s)", veil_strerror(rc),
			   veil_err_detail());
		return rc;
	}
	/* DCAP collateral for the node's own quotes (--pccs, --pccs-cache;
	 * docs/operations.md "DCAP collateral"): a TDX report without it is
	 * refused by every verifier that has none of its own, gateways and
	 * proxies among them.  Fetched on a thread of its own
	 * (src/lib/attest/pccs_fetcher.c); reports take the last good copy
	 * and never wait. */
	if ((rc = veil_pccs_fetcher_start_report(n->o.pccs, veil_attester_kind(a),
						 n->o.pccs_cache, NODE_MOD, n->cached_report,
						 &n->coll, &n->cached_coll)) < 0)
		return rc;
	/* one thread: the TEE makes one quote at a time anyway */
	return node_workers_start(n, "attestation reporter", 1, ATTEST_MAX_PENDING + 1,
				  &n->reporter);
}

static void on_gone(struct veil_http_req *req, void *arg)
{
	struct areq *r = arg;

	/* the client left (or a forced shutdown closed it): complete the
	 * request now, which frees it; the report, when it comes, is dropped */
	r->req = NULL;
	atomic_store(&r->gone, true);
	veil_http_reply(req, 499, "text/plain", "", 0); /* nobody reads it */
}

static void h_report(struct veil_http_req *req, void *arg)
{
	struct node *n = arg;
	const char *hex = veil_http_req_query(req, "nonce");
	uint8_t nonce[32];
	struct areq *r;
	size_t got;

	if (!hex) {
		veil_pccs_fetcher_refresh(n->coll, &n->cached_report, &n->cached_coll);
		node_metrics_status(n, 200);
		veil_http_reply_json(req, 200, json_incref(n->cached_report));
		return;
	}
	if (strlen(hex) != 64 || veil_hex_decode(hex, 64, nonce, sizeof(nonce), &got) < 0 ||
	    got != sizeof(nonce)) {
		node_metrics_status(n, 400);
		veil_http_reply_error(req, 400, NULL, "invalid_nonce",
				      "nonce must be 64 hex characters (32 bytes)");
		return;
	}
	if (!n->reporter || n->m.reports_pending >= ATTEST_MAX_PENDING) {
		node_reply_busy(n, req, &n->m.reports_busy, ATTEST_RETRY_AFTER_S,
				"attestation_busy",
				"%d attestation reports are being made; retry later",
				ATTEST_MAX_PENDING);
		return;
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		node_metrics_status(n, 500);
		veil_http_reply_error(req, 500, NULL, "attestation_failed",
				      "the report could not be made: %s",
				      veil_strerror(VEIL_ENOMEM));
		return;
	}
	r->job.run = report_run;
	r->job.done = report_done;
	r->n = n;
	r->req = req;
	memcpy(r->nonce, nonce, sizeof(nonce));
	veil_http_req_on_close(req, on_gone, r);
	n->m.reports_pending++;
	node_workers_submit(n->reporter, &r->job);
}

void node_attest_routes(struct node *n)
{
	veil_http_route(n->srv, "GET", "/v1/attestation/report", false, h_report, n);
}

void node_attest_free(struct node *n)
{
	node_workers_stop(n->reporter);
	n->reporter = NULL;
	veil_pccs_fetcher_stop(n->coll); /* after the reporter, which reads it */
	n->coll = NULL;
	json_decref(n->cached_report);
	n->cached_report = NULL;
	veil_attester_free(n->attester);
	n->attester = NULL;
}
