/* Signed receipts (docs/protocol.md, "Receipts") and the bounded store
 * behind GET /v1/signature/{id} (NEAR AI's shape). */
#include <stdlib.h>
#include <string.h>

#include "node.h"

struct rentry {
	char id[80];
	uint64_t t_ms;
	char *text;                 /* "model:sha256(req):sha256(resp)" */
	char ed_sig[2 * VEIL_ED25519_SIG_LEN + 1];
	char ec_sig[2 + 2 * VEIL_EIP191_SIG_LEN + 1];
};

struct receipt_store {
	struct rentry *e;
	size_t cap, head, n;        /* ring: oldest at head */
	uint64_t keep_ms;
};

int receipt_store_new(size_t cap, uint64_t keep_ms, struct receipt_store **out)
{
	struct receipt_store *s = calloc(1, sizeof(*s));

	if (!s || !(s->e = calloc(cap, sizeof(*s->e)))) {
		free(s);
		return VEIL_ENOMEM;
	}
	s->cap = cap;
	s->keep_ms = keep_ms;
	*out = s;
	return 0;
}

void receipt_store_free(struct receipt_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->cap; i++)
		free(s->e[i].text);
	free(s->e);
	free(s);
}

static void store_expire(struct receipt_store *s, uint64_t now)
{
	while (s->n && (now - s->e[s->head].t_ms > s->keep_ms)) {
		free(s->e[s->head].text);
		s->e[s->head].text = NULL;
		s->head = (s->head + 1) % s->cap;
		s->n--;
	}
}

static struct rentry *store_add(struct receipt_store *s)
{
	struct rentry *e;

	store_expire(s, veil_wall_ms());
	if (s->n == s->cap) { /* full: the oldest goes */
		free(s->e[s->head].text);
		s->e[s->head].text = NULL;
		s->head = (s->head + 1) % s->cap;
		s->n--;
	}
	e = &s->e[(s->head + s->n) % s->cap];
	s->n++;
	return e;
}

static struct rentry *store_find(struct receipt_store *s, const char *id)
{
	store_expire(s, veil_wall_ms());
	for (size_t i = s->n; i-- > 0;) {
		struct rentry *e = &s->e[(s->head + i) % s->cap];

		if (!strcmp(e->id, id))
			return e;
	}
	return NULL;
}

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

int node_receipt_make(struct node *n, const struct node_receipt_in *in,
		      char **json_text)
{
	char rq[65], rs[65];
	char ed_hex[2 * VEIL_ED25519_SIG_LEN + 1];
	char ec_hex[2 + 2 * VEIL_EIP191_SIG_LEN + 1];
	json_t *p = NULL, *r = NULL;
	char *payload = NULL, *text = NULL, *out = NULL;
	struct rentry *e;
	int rc = VEIL_ENOMEM;

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
	if (!p || !(payload = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS)))
		goto out;
	if ((rc = sign_both(n, payload, strlen(payload), ed_hex, ec_hex)) < 0)
		goto out;
	rc = VEIL_ENOMEM;
	r = json_pack("{s:s, s:s, s:s}", "payload", payload,
		      "signature_ed25519", ed_hex, "signature_ecdsa", ec_hex);
	if (!r || !(out = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS)))
		goto out;

	/* NEAR AI's text, signed separately for /v1/signature/{id}. */
	if (asprintf(&text, "%s:%s:%s", n->o.model_name, rq, rs) < 0) {
		text = NULL;
		goto out;
	}
	e = store_add(n->receipts);
	snprintf(e->id, sizeof(e->id), "%s", in->id);
	e->t_ms = veil_wall_ms();
	if ((rc = sign_both(n, text, strlen(text), e->ed_sig, e->ec_sig)) < 0) {
		e->id[0] = '\0';
		goto out;
	}
	e->text = text;
	text = NULL;
	n->m.receipts++;
	*json_text = out;
	out = NULL;
	rc = 0;
out:
	free(text);
	free(out);
	free(payload);
	json_decref(p);
	json_decref(r);
	return rc;
}

static void h_signature(struct veil_http_req *req, void *arg)
{
	struct node *n = arg;
	const char *path = veil_http_req_path(req);
	const char *id = path + strlen("/v1/signature/");
	const char *algo = veil_http_req_query(req, "signing_algo");
	struct rentry *e;
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
	if (!*id || !(e = store_find(n->receipts, id))) {
		node_metrics_status(n, 404);
		veil_http_reply_error(req, 404, NULL, "signature_not_found",
				      "no signature for this id (unknown or expired)");
		return;
	}
	node_metrics_status(n, 200);
	veil_http_reply_json(req, 200,
			     json_pack("{s:s, s:s, s:s, s:s}", "text", e->text,
				       "signature", ed ? e->ed_sig : e->ec_sig,
				       "signing_address",
				       ed ? n->ed_pub_hex : n->eth_address,
				       "signing_algo", ed ? "ed25519" : "ecdsa"));
}

void node_receipt_routes(struct node *n)
{
	veil_http_route(n->srv, "GET", "/v1/signature/", true, h_signature, n);
}
