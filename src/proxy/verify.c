/* The receipt checker of veil-proxy: a worker thread that checks each
 * receipt (parse, signatures, hashes, model) and logs its line, so that no
 * check ever runs on the event loop while other streams wait there.  The
 * verdict goes back to the loop through a channel; only then is the
 * answer released ([DONE] of a stream, the whole non-streamed body).
 *
 * The check on this path is veil_receipt_verify_ed25519: the Ed25519
 * signatures (payload and NEAR AI text) under the attested Ed25519 key,
 * which the same attestation binds as the Ethereum address.  The ECDSA
 * (EIP-191) signatures, two secp256k1 public-key recoveries (with
 * libsecp256k1 about as much again as the Ed25519 checks), add no origin
 * evidence under one attested key set, so they are left to `veil receipts
 * verify`, which checks all four; every receipt line says so
 * ("signatures_checked": "ed25519").  docs/proxy.md, "Receipts", gives the
 * reasoning. */
#include <stdlib.h>
#include <string.h>

#include "veil/http.h"
#include "veil/receipt.h"

#include "proxy.h"

/* Verdicts the channel holds at most; past it a check runs on the loop
 * (never a dropped verdict, never a wait). */
#define CHECK_CHAN_CAP 4096
#define CHECKED "ed25519"

void proxy_log_receipt(struct proxy *p, const char *model, const char *node_id,
		       const char *node_report_sha256, const uint8_t req_sha[32],
		       const uint8_t *resp_sha, json_t *receipt, bool ok,
		       const char *error, const char *checked, const char *node_error)
{
	char rq[65], rs[65];
	json_t *line;

	if (!p->rlog) {
		json_decref(receipt);
		return;
	}
	veil_hex_encode(req_sha, 32, rq, sizeof(rq));
	if (resp_sha)
		veil_hex_encode(resp_sha, 32, rs, sizeof(rs));
	line = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s?, s:o, s:b, s:s?}", "type", "receipt",
			 "version", "veil-receipts/1", "time", (json_int_t)(veil_wall_ms() / 1000),
			 "model", model, "node_report_sha256", node_report_sha256,
			 "request_sha256", rq, "response_sha256", resp_sha ? rs : NULL,
			 "receipt", receipt ? receipt : json_null(), "ok", ok, "error", error);
	if (!line)
		return;
	json_object_set_new(line, "node_id", json_string(node_id));
	if (checked)
		json_object_set_new(line, "signatures_checked", json_string(checked));
	if (node_error)
		json_object_set_new(line, "node_error", json_string(node_error));
	rlog_write(p->rlog, line);
}

static void hex(const uint8_t *b, size_t n, char *out, size_t cap)
{
	veil_hex_encode(b, n, out, cap);
}

/* The receipt must be signed by the keys the node's attestation bound, and
 * name exactly the sealed bytes sent, the bytes received, the model asked
 * for and the attested model hash.  Any thread. */
static void check(struct proxy *p, struct rcheck *c)
{
	struct veil_receipt rc = {0};
	char got[65];
	const char *why = NULL;
	json_t *obj = NULL;
	bool parsed = false;

	c->ok = false;
	if (veil_receipt_parse((const uint8_t *)c->json, c->len, &rc) < 0) {
		c->code = "receipt_invalid";
		snprintf(c->msg, sizeof(c->msg), "the receipt is malformed: %s", veil_err_detail());
		goto out;
	}
	parsed = true;
	if (veil_receipt_verify_ed25519(&rc, &c->keys) < 0) {
		c->code = "receipt_invalid";
		snprintf(c->msg, sizeof(c->msg), "the receipt is not signed by the attested keys "
			 "of node %s: %s", c->node_id, veil_err_detail());
		goto out;
	}
	if (memcmp(rc.request_sha256, c->req_sha, 32))
		why = "it is for another request (request_sha256 is not the hash of the "
		      "sealed request sent): a swapped or replayed receipt";
	else if (memcmp(rc.response_sha256, c->resp_sha, 32))
		why = "it does not cover the response received (response_sha256 differs): "
		      "the response was altered or is not the one the node sent";
	else if (strcmp(rc.model, c->model))
		why = "it names another model than the one asked for";
	if (!why && c->model_sha256[0]) {
		if (!rc.has_model_sha256)
			why = "it names no model_sha256 while the attested report does";
		else {
			hex(rc.model_sha256, 32, got, sizeof(got));
			if (strcmp(got, c->model_sha256))
				why = "its model_sha256 is not the attested model's";
		}
	}
	if (why) {
		c->code = "receipt_mismatch";
		snprintf(c->msg, sizeof(c->msg), "the receipt does not match: %s", why);
		goto out;
	}
	c->ok = true;
	snprintf(c->id, sizeof(c->id), "%s", rc.id);
	c->last = json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:I}", "time",
			    (json_int_t)(veil_wall_ms() / 1000), "id", rc.id, "model", rc.model,
			    "node", c->node_id, "node_key_id", c->node_key_id, "prompt_tokens",
			    (json_int_t)rc.prompt_tokens, "completion_tokens",
			    (json_int_t)rc.completion_tokens);
out:
	if (parsed)
		obj = json_loads(rc.json, JSON_REJECT_DUPLICATES, NULL);
	if (c->ok && c->want_obj)
		c->obj = json_incref(obj);
	proxy_log_receipt(p, c->model, c->node_id, c->node_report_sha256, c->req_sha,
			  c->resp_sha, obj, c->ok, c->ok ? NULL : c->msg,
			  parsed ? CHECKED : NULL, c->node_error[0] ? c->node_error : NULL);
	veil_receipt_free(&rc);
}

static void rcheck_free(struct rcheck *c)
{
	if (!c)
		return;
	free(c->json);
	json_decref(c->obj);
	json_decref(c->last);
	free(c);
}

static void *checker_main(void *arg)
{
	struct proxy *p = arg;

	pthread_mutex_lock(&p->cmu);
	for (;;) {
		struct rcheck *c;

		while (!p->cq_head && !p->c_stop)
			pthread_cond_wait(&p->ccond, &p->cmu);
		if (!p->cq_head)
			break; /* stopping, and the queue is done */
		c = p->cq_head;
		p->cq_head = c->next;
		if (!p->cq_head)
			p->cq_tail = NULL;
		c->next = NULL;
		pthread_mutex_unlock(&p->cmu);
		check(p, c);
		/* The loop keeps at most CHECK_CHAN_CAP checks out: this
		 * cannot be full. */
		if (veil_http_chan_post(p->cchan, c) < 0) {
			VEIL_ERROR(PROXY_MOD, "receipt checker: a verdict was lost");
			rcheck_free(c);
		}
		pthread_mutex_lock(&p->cmu);
	}
	pthread_mutex_unlock(&p->cmu);
	return NULL;
}

/* A verdict, on the loop. */
static void deliver(struct proxy *p, struct rcheck *c)
{
	if (c->ok) {
		p->stats.receipts_ok++;
		if (c->last) {
			json_decref(p->last_receipt);
			p->last_receipt = c->last;
			c->last = NULL;
		}
	} else {
		p->stats.receipts_failed++;
	}
	if (c->owner)
		c->done(c);
	rcheck_free(c);
}

static void on_verdict(void *msg, void *arg)
{
	struct proxy *p = arg;

	p->checks_out--;
	deliver(p, msg);
}

static void on_verdict_drop(void *msg, void *arg)
{
	(void)arg;
	rcheck_free(msg);
}

void proxy_verify_submit(struct proxy *p, struct rcheck *c)
{
	c->next = NULL;
	if (!p->checker_started || p->checks_out >= CHECK_CHAN_CAP) {
		check(p, c);
		deliver(p, c);
		return;
	}
	p->checks_out++;
	pthread_mutex_lock(&p->cmu);
	if (p->cq_tail)
		p->cq_tail->next = c;
	else
		p->cq_head = c;
	p->cq_tail = c;
	pthread_cond_signal(&p->ccond);
	pthread_mutex_unlock(&p->cmu);
}

int proxy_verify_init(struct proxy *p)
{
	int rc;

	pthread_mutex_init(&p->cmu, NULL);
	pthread_cond_init(&p->ccond, NULL);
	p->checker_inited = true;
	if ((rc = veil_http_chan_new(p->base, CHECK_CHAN_CAP, on_verdict, on_verdict_drop, p,
				     &p->cchan)) < 0)
		return rc;
	if (pthread_create(&p->checker, NULL, checker_main, p) != 0)
		return veil_errf(VEIL_EIO, "cannot start the receipt checker");
	p->checker_started = true;
	return 0;
}

void proxy_verify_free(struct proxy *p)
{
	if (p->checker_started) {
		pthread_mutex_lock(&p->cmu);
		p->c_stop = true;
		pthread_cond_signal(&p->ccond);
		pthread_mutex_unlock(&p->cmu);
		pthread_join(p->checker, NULL);
		p->checker_started = false;
	}
	if (p->cchan)
		veil_http_chan_free(p->cchan);
	p->cchan = NULL;
	if (p->checker_inited) {
		pthread_mutex_destroy(&p->cmu);
		pthread_cond_destroy(&p->ccond);
		p->checker_inited = false;
	}
}
