/* Signed receipts (docs/protocol.md, "Receipts") and GET /v1/signature/{id}
 * (NEAR AI's shape) over the store in rstore.c.
 *
 * The loop builds a receipt's payload and NEAR AI text; signer threads sign
 * both with both keys (about 0.6 ms, which on the loop would hold up every
 * stream); the result comes back to the loop through a channel, is stored,
 * and only then handed to the answer, so a receipt the client holds can
 * always be looked up. */
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "rstore.h"

char *node_b64url(const char *s, size_t len)
{
	size_t n = veil_b64_encoded_len(len, VEIL_B64_URL | VEIL_B64_NOPAD);
	char *o = malloc(n + 1);

	if (o && veil_b64_encode((const uint8_t *)s, len,
				 VEIL_B64_URL | VEIL_B64_NOPAD, o, n + 1) < 0) {
		free(o);
		o = NULL;
	}
	return o;
}

/* ---- signing, off the loop ---------------------------------------------- */

/* Two threads: a round of answers that end together (a batch finishing its
 * last step) is signed by both while the engine is idle.  Each receipt is
 * four signatures (payload and NEAR AI text, Ed25519 and EIP-191), about
 * 0.6 ms of CPU, mostly secp256k1's k*G. */
#define SIGNER_THREADS 2
/* Receipts handed to the signers and not back yet; beyond this the loop
 * signs in line (it slows down rather than queueing without bound), so the
 * channel back can never be full. */
#define SIGNER_MAX_PENDING 4096

struct sreq {
	struct node_job job;        /* first: the signers hand it back */
	struct node *n;
	char id[80];
	char *payload;              /* canonical JSON, signed */
	char *text;                 /* NEAR AI text, signed */
	node_receipt_done done;
	void *arg;
	bool queued;                /* went through the signer threads */
	/* written by the signer */
	int rc;
	char ed_sig[2 * VEIL_ED25519_SIG_LEN + 1];
	char ec_sig[2 + 2 * VEIL_EIP191_SIG_LEN + 1];
	char text_ed_sig[2 * VEIL_ED25519_SIG_LEN + 1];
	char text_ec_sig[2 + 2 * VEIL_EIP191_SIG_LEN + 1];
};

struct node_signer {
	struct node_workers *w;
	size_t pending;             /* loop only */
};

/* Thread-safe: the keys are read-only once made (Ed25519 signs with
 * libsodium from the key's bytes; secp256k1 reads the scalar and the
 * curve constants set up once). */
static int sign_both(struct node *n, const char *msg, size_t len,
		     char ed_hex[2 * VEIL_ED25519_SIG_LEN + 1],
		     char ec_hex[2 + 2 * VEIL_EIP191_SIG_LEN + 1])
{
	uint8_t es[VEIL_ED25519_SIG_LEN], ks[VEIL_EIP191_SIG_LEN];
	int rc;

	if ((rc = veil_ed25519_sign(n->ed, msg, len, es)) < 0 ||
	    (rc = veil_eip191_sign(n->k1, msg, len, VEIL_SECP256K1_RFC6979, ks)) < 0)
		return rc;
	veil_hex_encode(es, sizeof(es), ed_hex, 2 * VEIL_ED25519_SIG_LEN + 1);
	ec_hex[0] = '0';
	ec_hex[1] = 'x';
	veil_hex_encode(ks, sizeof(ks), ec_hex + 2, 2 * VEIL_EIP191_SIG_LEN + 1);
	return 0;
}

static void sreq_sign(struct sreq *r)
{
	if ((r->rc = sign_both(r->n, r->payload, strlen(r->payload), r->ed_sig,
			       r->ec_sig)) == 0)
		r->rc = sign_both(r->n, r->text, strlen(r->text), r->text_ed_sig,
				  r->text_ec_sig);
}

static void sreq_free(struct sreq *r)
{
	if (!r)
		return;
	free(r->payload);
	free(r->text);
	free(r);
}

/* On the loop: the receipt object, stored for /v1/signature/{id}, then
 * handed to its owner. */
static void sreq_finish(struct sreq *r)
{
	struct node *n = r->n;
	json_t *o = NULL;
	char *out = NULL;
	int early = 0;
	int rc = r->rc;

	if (r->queued && n->signer && n->signer->pending)
		n->signer->pending--;
	if (rc < 0) {
		VEIL_ERROR(NODE_MOD, "%s: the receipt failed: %s", r->id,
			   veil_strerror(rc));
		goto out;
	}
	rc = VEIL_ENOMEM;
	o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "payload", r->payload,
		      "signature_ed25519", r->ed_sig, "signature_ecdsa", r->ec_sig,
		      "text_signature_ed25519", r->text_ed_sig,
		      "text_signature_ecdsa", r->text_ec_sig);
	if (!o || !(out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS)))
		goto out;
	rc = rstore_add(n->receipts, veil_now_ns() / 1000000u, r->id, r->text,
			r->text_ed_sig, r->text_ec_sig, &early);
	r->text = NULL; /* the store's, stored or freed */
	if (rc < 0) {
		VEIL_ERROR(NODE_MOD, "%s: the receipt could not be stored: %s", r->id,
			   veil_strerror(rc));
		goto out;
	}
	if (early) {
		struct rstore_stats st;

		/* the first, then every 10000th: an operator's cue to raise it */
		rstore_stats(n->receipts, &st);
		if (st.early % 10000 == 1)
			VEIL_WARN(NODE_MOD, "the receipt store is full (--receipts-max %zu): "
				  "receipts younger than 20 minutes are being dropped from "
				  "GET /v1/signature (%llu so far)", n->o.receipts_max,
				  (unsigned long long)st.early);
	}
	n->m.receipts++;
out:
	json_decref(o);
	r->done(r->arg, rc, rc == 0 ? out : NULL);
	if (rc < 0)
		free(out);
	sreq_free(r);
}

/* The threads sign what is queued before they leave (stopping too): its
 * owner is still waiting for the receipt. */
static void sreq_run(struct node_job *j, bool stopping)
{
	(void)stopping;
	sreq_sign((struct sreq *)j);
}

static void sreq_back(struct node_job *j)
{
	sreq_finish((struct sreq *)j);
}

int node_signer_start(struct node *n)
{
	struct node_signer *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return VEIL_ENOMEM;
	n->signer = s;
	if ((rc = node_workers_start(n, "receipt signer", SIGNER_THREADS, SIGNER_MAX_PENDING + 1,
				     &s->w)) < 0) {
		n->signer = NULL;
		free(s);
	}
	return rc;
}

void node_signer_stop(struct node *n)
{
	struct node_signer *s = n->signer;

	if (!s)
		return;
	/* the drop hands the receipts still on their way to their owners,
	 * here, while n->signer still counts them */
	node_workers_stop(s->w);
	n->signer = NULL;
	free(s);
}

void node_receipt_start(struct node *n, const struct node_receipt_in *in,
			node_receipt_done done, void *arg)
{
	struct node_signer *s = n->signer;
	char rq[65], rs[65];
	json_t *p = NULL;
	struct sreq *r = calloc(1, sizeof(*r));

	if (!r) {
		done(arg, VEIL_ENOMEM, NULL);
		return;
	}
	r->job.run = sreq_run;
	r->job.done = sreq_back;
	r->n = n;
	r->done = done;
	r->arg = arg;
	snprintf(r->id, sizeof(r->id), "%s", in->id);
	veil_hex_encode(in->req_sha256, 32, rq, sizeof(rq));
	veil_hex_encode(in->resp_sha256, 32, rs, sizeof(rs));
	p = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:I, s:I, s:I}, s:I, s:s, s:s}",
		      "version", "veil-receipt/1", "id", in->id,
		      "model", n->o.model_name,
		      "model_sha256", n->have_model_hash ? n->model_sha256_hex : "",
		      "request_sha256", rq, "response_sha256", rs,
		      "usage", "prompt_tokens", (json_int_t)in->prompt_tokens,
		      "completion_tokens", (json_int_t)in->completion_tokens,
		      "total_tokens",
		      (json_int_t)(in->prompt_tokens + in->completion_tokens),
		      "created", (json_int_t)in->created,
		      "signing_address", n->eth_address,
		      "ed25519_public_key", n->ed_pub_hex);
	r->rc = VEIL_ENOMEM;
	if (!p || !(r->payload = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS)) ||
	    asprintf(&r->text, "%s:%s:%s", n->o.model_name, rq, rs) < 0) {
		r->text = NULL;
		json_decref(p);
		sreq_finish(r);
		return;
	}
	json_decref(p);
	r->rc = 0;
	if (s && s->pending < SIGNER_MAX_PENDING) {
		r->queued = true;
		s->pending++;
		node_workers_submit(s->w, &r->job);
		return;
	}
	sreq_sign(r);
	sreq_finish(r);
}

static void h_signature(struct veil_http_req *req, void *arg)
{
	struct node *n = arg;
	const char *path = veil_http_req_path(req);
	const char *id = path + strlen("/v1/signature/");
	const char *algo = veil_http_req_query(req, "signing_algo");
	struct rstore_entry e;
	bool ed;

	if (!algo || !*algo)
		algo = "ecdsa";
	if (!strcmp(algo, "ed25519"))
		ed = true;
	else if (!strcmp(algo, "ecdsa"))
		ed = false;
	else {
		node_metrics_status(n, 400);
		veil_http_reply_error(req, 400, NULL, "invalid_signing_algo",
				      "signing_algo must be ecdsa or ed25519");
		return;
	}
	if (!*id || rstore_find(n->receipts, veil_now_ns() / 1000000u, id, &e) < 0) {
		node_metrics_status(n, 404);
		veil_http_reply_error(req, 404, NULL, "signature_not_found",
				      "no signature for this id (unknown or expired)");
		return;
	}
	node_metrics_status(n, 200);
	veil_http_reply_json(req, 200,
			     json_pack("{s:s, s:s, s:s, s:s}", "text", e.text,
				       "signature", ed ? e.ed_sig : e.ec_sig,
				       "signing_address",
				       ed ? n->ed_pub_hex : n->eth_address,
				       "signing_algo", ed ? "ed25519" : "ecdsa"));
}

void node_receipt_routes(struct node *n)
{
	veil_http_route(n->srv, "GET", "/v1/signature/", true, h_signature, n);
}
