/* The OpenAI API veil-proxy serves on loopback: POST /v1/chat/completions
 * and /v1/completions, streamed or not.
 *
 * A request (struct preq) waits for a verified state (attest.c), is sealed
 * to one verified node's attested HPKE key (veil-seal/1; the plaintext
 * header X-Veil-Model lets the gateway route) and posted to the gateway
 * over a pinned, kept-alive connection of the hconn client (veil/hconn.h:
 * no libcurl on this path; attestation fetches keep it).  The answer is
 * opened as it arrives:
 *  - non-streamed: the whole sealed body is buffered, opened, its receipt
 *    (X-Veil-Receipt) checked against the node's attested keys and the
 *    exact bytes sent and received; only then is the plaintext answered;
 *  - streamed: each sealed event is opened and relayed as the plain SSE
 *    event it carries; the node's [DONE] (the final sealed chunk) is held
 *    back until the receipt after it has been checked; then [DONE].
 * Receipts are checked on the receipt checker's thread (verify.c): the
 * request waits for the verdict (r->check) while the loop serves the
 * other streams.
 * Any failure ends the request with an explicit OpenAI-shaped error: an
 * HTTP status >= 400 when nothing was sent yet, else an `event: error`
 * and no [DONE].  A gateway answer that names a key or node it does not
 * have (node_unavailable, unknown_key_id) or a TLS key that no longer
 * matches the pin makes the proxy verify again and seal once more. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "veil/hconn.h"
#include "veil/http.h"
#include "veil/policy.h"
#include "veil/receipt.h"
#include "veil/seal.h"

#include "proxy.h"

#define SEALED_TYPE "application/veil-sealed"
#define MAX_SEALED_RESPONSE (64u << 20)
#define MAX_ERROR_BODY (64u << 10)
#define MAX_RECEIPT_HEADER (128u << 10)
#define SSE_MAX_LINE (128u << 10)
#define HIGH_WATER (256u << 10)
#define DONE_EVENT "data: [DONE]\n\n"

struct preq {
	struct proxy_waiter w;         /* first: the waiter callback casts */
	struct proxy *p;
	struct preq *prev, *next;      /* p->reqs */
	struct veil_http_req *req;     /* NULL once completed */
	uint64_t rid;
	bool chat, stream, receipt_chunk;
	char model[PROXY_NAME_MAX];
	struct veil_buf plain;         /* secret: the client's body (for a retry) */

	/* one exchange */
	struct vstate *st;             /* the state whose keys it sealed to */
	struct pnode *node;
	struct veil_seal *seal;
	uint8_t req_sha[32];           /* SHA-256 of the sealed bytes sent */
	struct veil_buf sealed;        /* the sealed body, borrowed by the call */
	struct veil_hconn_call *call;
	int up_status;
	bool up_sealed, up_sse, paused, retried, started;
	char *rcpt_b64;                /* X-Veil-Receipt as received */
	char rcpt_id[160];
	struct veil_buf resp;          /* non-stream body, or an error body */
	EVP_MD_CTX *md;                /* SHA-256 of the bytes the receipt covers */
	struct proxy_sealed_stream ss;
	bool ss_init;
	uint8_t *ct;                   /* one chunk, opened in place (wiped) */
	size_t ct_cap;
	size_t ct_high;                /* the most of ct ever used */
	bool final_done, receipt_ok;
	char node_error[64];           /* the code of the error event the node
					* ended the stream with; "" when none */
	json_t *receipt_obj;
	struct rcheck *check;          /* the receipt being checked, or NULL */
	bool up_ended;                 /* the upstream call ended well */
	bool in_cb;                    /* inside an upstream callback */
	struct veil_buf answer;        /* secret: non-stream plaintext, held
					* until its receipt is verified */

	/* the first failure, reported when the call ends */
	bool failed;
	int f_status;
	const char *f_code;
	char f_msg[768];

	uint64_t t0_ns, t_first_ns;
	size_t events;
};

/* ---- life cycle ---------------------------------------------------------- */

/* The request no longer wants the verdict (the check still runs and logs
 * its line). */
static void check_detach(struct preq *r)
{
	if (r->check)
		r->check->owner = NULL;
	r->check = NULL;
}

static void exchange_reset(struct preq *r)
{
	check_detach(r);
	veil_buf_free(&r->answer);
	veil_seal_free(r->seal);
	r->seal = NULL;
	veil_buf_free(&r->sealed);
	veil_buf_free(&r->resp);
	free(r->rcpt_b64);
	r->rcpt_b64 = NULL;
	r->rcpt_id[0] = '\0';
	if (r->ss_init)
		proxy_sealed_free(&r->ss);
	r->ss_init = false;
	EVP_MD_CTX_free(r->md);
	r->md = NULL;
	if (r->ct) {
		/* each opened chunk is wiped after use already; this is in
		 * case a path missed one (only the part ever used) */
		veil_wipe(r->ct, r->ct_high);
		free(r->ct);
	}
	r->ct = NULL;
	r->ct_high = 0;
	r->up_status = 0;
	r->up_sealed = r->up_sse = r->paused = false;
	r->final_done = r->receipt_ok = r->up_ended = false;
	r->node_error[0] = '\0';
	vstate_unref(r->st);
	r->st = NULL;
	r->node = NULL;
}

static void preq_free(struct preq *r)
{
	struct proxy *p = r->p;

	if (r->call)
		veil_hconn_cancel(r->call);
	proxy_state_cancel(p, &r->w);
	exchange_reset(r);
	json_decref(r->receipt_obj);
	veil_buf_free(&r->plain);
	if (r->prev)
		r->prev->next = r->next;
	else if (p->reqs == r)
		p->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	free(r);
}

/* Frees once the client's request is completed and no call or wait is
 * left. */
static void preq_done(struct preq *r)
{
	if (!r->req && !r->call && !r->w.queued)
		preq_free(r);
}

/* ---- failures ---------------------------------------------------------------- */

/* Records the first failure; the caller aborts the transfer (returns the
 * code from a callback) and the failure is answered when the call ends. */
static int set_fail(struct preq *r, int status, const char *code, const char *fmt, ...)
	VEIL_PRINTF(4, 5);

static int set_fail(struct preq *r, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (r->failed)
		return VEIL_ECANCELED;
	r->failed = true;
	r->f_status = status;
	r->f_code = code;
	va_start(ap, fmt);
	vsnprintf(r->f_msg, sizeof(r->f_msg), fmt, ap);
	va_end(ap);
	return VEIL_ECANCELED;
}

/* Answers the recorded failure and completes the client's request. */
static void report_fail(struct preq *r)
{
	struct proxy *p = r->p;

	p->stats.failed++;
	VEIL_WARN(PROXY_MOD, "request %llu: %s: %s", (unsigned long long)r->rid, r->f_code,
		  r->f_msg);
	if (!r->req)
		return;
	if (r->started) {
		/* The stream has begun: an error event and no [DONE], which
		 * OpenAI clients raise as an error. */
		json_t *e = json_pack("{s:{s:s, s:s, s:s}}", "error", "message", r->f_msg,
				      "type", "server_error", "code", r->f_code);
		char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;

		json_decref(e);
		if (s)
			veil_http_sse_send(r->req, "error", s, strlen(s));
		free(s);
		veil_http_stream_end(r->req);
	} else {
		veil_http_reply_error(r->req, r->f_status, NULL, r->f_code, "%s", r->f_msg);
	}
	r->req = NULL;
}

static void fail(struct preq *r, int status, const char *code, const char *fmt, ...)
	VEIL_PRINTF(4, 5);

static void fail(struct preq *r, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	r->failed = true;
	r->f_status = status;
	r->f_code = code;
	va_start(ap, fmt);
	vsnprintf(r->f_msg, sizeof(r->f_msg), fmt, ap);
	va_end(ap);
	report_fail(r);
}

/* ---- receipts ------------------------------------------------------------------ */

/* A failed exchange without a receipt to check: its line says why. */
static void log_fail(struct preq *r, const uint8_t *resp_sha, const char *error)
{
	proxy_log_receipt(r->p, r->model, r->node->id, r->node->report_sha256, r->req_sha,
			  resp_sha, NULL, false, error, NULL,
			  r->node_error[0] ? r->node_error : NULL);
}

static void on_checked(struct rcheck *c);

/* Hands the receipt to the checker (verify.c): it must be signed by the
 * node's attested keys and name the sealed bytes sent (req_sha), the bytes
 * received (resp_sha), the model asked for and the attested model hash.
 * The answer waits for the verdict (on_checked), which may come before
 * this returns. */
static int submit_check(struct preq *r, const char *json, size_t len, const uint8_t resp_sha[32])
{
	struct rcheck *c = calloc(1, sizeof(*c));

	if (!c || !(c->json = malloc(len + 1))) {
		free(c);
		return set_fail(r, 500, "internal", "out of memory checking the receipt");
	}
	memcpy(c->json, json, len);
	c->json[len] = '\0';
	c->len = len;
	c->owner = r;
	c->done = on_checked;
	c->keys = r->node->keys;
	snprintf(c->model, sizeof(c->model), "%s", r->model);
	memcpy(c->model_sha256, r->node->model_sha256, sizeof(c->model_sha256));
	snprintf(c->node_id, sizeof(c->node_id), "%s", r->node->id);
	memcpy(c->node_key_id, r->node->key_id_hex, sizeof(c->node_key_id));
	memcpy(c->node_report_sha256, r->node->report_sha256, sizeof(c->node_report_sha256));
	memcpy(c->req_sha, r->req_sha, 32);
	memcpy(c->resp_sha, resp_sha, 32);
	c->want_obj = r->stream && r->receipt_chunk;
	snprintf(c->node_error, sizeof(c->node_error), "%s", r->node_error);
	r->check = c;
	proxy_verify_submit(r->p, c);
	return r->failed ? VEIL_ECANCELED : 0;
}

/* ---- answering --------------------------------------------------------------- */

static bool node_is_sim(const struct pnode *n)
{
	json_t *t = json_object_get(n->info, "tee");

	return json_is_string(t) && !strcmp(json_string_value(t), "sim");
}

static void verified_headers(struct preq *r, const char *how)
{
	veil_http_add_header(r->req, "X-Veil-Verified", how);
	veil_http_add_header(r->req, "X-Veil-Node", r->node->id);
	veil_http_add_header(r->req, "X-Veil-Node-Key", r->node->key_id_hex);
	if (r->node->model_sha256[0])
		veil_http_add_header(r->req, "X-Veil-Model-Sha256", r->node->model_sha256);
	if (node_is_sim(r->node))
		veil_http_add_header(r->req, "X-Veil-Warning",
				     "simulated TEE (--allow-sim): proves nothing about hardware");
}

static int stream_begin(struct preq *r)
{
	int rc;

	if (r->started)
		return 0;
	verified_headers(r, "stream");
	if ((rc = veil_http_sse_start(r->req)) < 0)
		return rc;
	r->started = true;
	return 0;
}

/* The non-streamed answer, once its receipt verified. */
static void plain_reply(struct preq *r)
{
	struct proxy *p = r->p;

	verified_headers(r, "receipt");
	veil_http_add_header(r->req, "X-Veil-Receipt", r->rcpt_b64);
	veil_http_add_header(r->req, "X-Veil-Receipt-Id", r->rcpt_id);
	veil_http_reply(r->req, 200, "application/json",
			r->answer.data ? r->answer.data : (uint8_t *)"", r->answer.len);
	r->req = NULL;
	p->stats.answered++;
	VEIL_INFO(PROXY_MOD, "request %llu: answered by node %s (key %s), %zu bytes, "
		  "receipt %s verified, %.1f ms", (unsigned long long)r->rid, r->node->id,
		  r->node->key_id_hex, r->answer.len, r->rcpt_id,
		  (double)(veil_now_ns() - r->t0_ns) / 1e6);
	veil_buf_free(&r->answer);
}

/* Opens the whole sealed answer and hands its receipt to the checker; the
 * plaintext waits in r->answer for the verdict. */
static void finish_plain(struct preq *r)
{
	struct proxy *p = r->p;
	struct veil_buf rj = VEIL_BUF_INIT(MAX_RECEIPT_HEADER);
	uint8_t rs[32];
	int rc;

	veil_digest_sha256(r->resp.data ? r->resp.data : (const uint8_t *)"", r->resp.len, rs);
	if (!r->up_sealed) {
		fail(r, 502, "response_not_sealed", "the answer is not sealed "
		     "(Content-Type is not " SEALED_TYPE "): refused");
		goto out;
	}
	r->answer = (struct veil_buf)VEIL_BUF_SECRET_INIT(MAX_SEALED_RESPONSE);
	if ((rc = veil_seal_open_body(r->seal, r->resp.data, r->resp.len, &r->answer)) < 0) {
		set_fail(r, 502, rc == VEIL_EBADMSG ? "bad_sealed_response" : "malformed_sealed_response",
			 "the sealed answer does not open (%s: %s): it was altered, truncated, "
			 "replayed or is not for this request", veil_strerror(rc), veil_err_detail());
		goto bad;
	}
	if (!r->rcpt_b64) {
		set_fail(r, 502, "receipt_missing", "the answer came without a receipt");
		goto bad;
	}
	rc = veil_buf_reserve(&rj, strlen(r->rcpt_b64) + 4); /* decodes shorter */
	if (rc == 0) {
		size_t got = 0;

		rc = veil_b64_decode(r->rcpt_b64, strlen(r->rcpt_b64), VEIL_B64_URL | VEIL_B64_NOPAD,
				     rj.data, rj.cap, &got);
		rj.len = rc == 0 ? got : 0;
	}
	if (rc < 0) {
		set_fail(r, 502, "receipt_invalid", "the X-Veil-Receipt header is not base64url");
		goto bad;
	}
	submit_check(r, (const char *)rj.data, rj.len, rs);
	if (r->check)
		goto out; /* on_checked answers */
	if (r->failed)
		report_fail(r);
	else
		plain_reply(r);
	goto out;
bad:
	p->stats.receipts_failed++;
	log_fail(r, rs, r->f_msg);
	report_fail(r);
out:
	if (!r->req)
		veil_buf_free(&r->answer);
	veil_buf_free(&rj);
}

/* The end of a verified stream: the opt-in receipt chunk and [DONE] go out
 * in one write (one sendmsg, not one per event: each costs the loop ~20 us
 * on loopback, and [DONE] is what the client waits for). */
static void finish_stream(struct preq *r)
{
	struct proxy *p = r->p;
	struct veil_buf out = VEIL_BUF_INIT(2 * SSE_MAX_LINE);

	if (stream_begin(r) < 0) {
		fail(r, 500, "internal", "the stream could not start");
		return;
	}
	if (r->receipt_chunk && r->receipt_obj) {
		/* Opt-in: the verified receipt as one chunk without choices,
		 * shaped like OpenAI's usage chunk.  Compact JSON holds no raw
		 * CR or LF (escaped), so it is one SSE data line. */
		json_t *c = json_pack("{s:s, s:s, s:[], s:O, s:b, s:s}", "object", "veil.receipt",
				      "model", r->model, "choices", "veil_receipt", r->receipt_obj,
				      "veil_verified", true, "veil_node", r->node->id);
		char *s = c ? json_dumps(c, JSON_COMPACT) : NULL;

		json_decref(c);
		if (s && (veil_buf_append(&out, "data: ", 6) < 0 ||
			  veil_buf_append_str(&out, s) < 0 || veil_buf_append(&out, "\n\n", 2) < 0))
			out.len = 0; /* too large: [DONE] alone, as before when it failed */
		free(s);
	}
	if (veil_buf_append(&out, DONE_EVENT, strlen(DONE_EVENT)) == 0)
		veil_http_stream_write(r->req, out.data, out.len);
	veil_buf_free(&out);
	veil_http_stream_end(r->req);
	r->req = NULL;
	p->stats.answered++;
	VEIL_INFO(PROXY_MOD, "request %llu: streamed by node %s (key %s), %zu events, "
		  "first after %.1f ms, %.1f ms in all, receipt %s verified",
		  (unsigned long long)r->rid, r->node->id, r->node->key_id_hex, r->events,
		  r->t_first_ns ? (double)(r->t_first_ns - r->t0_ns) / 1e6 : 0.0,
		  (double)(veil_now_ns() - r->t0_ns) / 1e6, r->rcpt_id);
}

/* ---- the sealed stream ---------------------------------------------------------- */

static void ss_hash(void *arg, const uint8_t *p, size_t n)
{
	struct preq *r = arg;

	EVP_DigestUpdate(r->md, p, n);
}

/* The code of the node's error event ("data: {"error":{"code":…}}\n\n"),
 * for the receipts log: "error" when it names none. */
static void error_code(const uint8_t *ev, size_t n, char *out, size_t cap)
{
	json_t *e = NULL;
	const char *code = NULL;

	if (n > 8 && !memcmp(ev, "data: ", 6))
		e = json_loadb((const char *)ev + 6, n - 8, 0, NULL);
	code = json_string_value(json_object_get(json_object_get(e, "error"), "code"));
	snprintf(out, cap, "%s", code && code[0] ? code : "error");
	json_decref(e);
}

static int ss_chunk(void *arg, const char *b64, size_t len)
{
	struct preq *r = arg;
	size_t clen, plen;
	bool final;
	int rc;

	if ((rc = proxy_b64_chunk(b64, len, r->ct, r->ct_cap, &clen)) < 0)
		return set_fail(r, 502, "bad_sealed_response",
				"a sealed event is not a base64 chunk: %s", veil_err_detail());
	r->ct_high = VEIL_MAX(r->ct_high, clen);
	if ((rc = veil_seal_open_chunk(r->seal, r->ct, clen, &plen, &final)) < 0)
		return set_fail(r, 502, "bad_sealed_response",
				"sealed chunk %zu does not open (%s): the answer was altered, "
				"reordered, replayed or is not for this request", r->events,
				veil_strerror(rc));
	if (!final) {
		if (!r->req)
			return VEIL_ECANCELED;
		if (plen < 2 || memcmp(r->ct + plen - 2, "\n\n", 2)) {
			veil_wipe(r->ct, plen);
			return set_fail(r, 502, "bad_sealed_response",
					"an opened chunk is not one server-sent event");
		}
		if ((rc = stream_begin(r)) == 0)
			rc = veil_http_stream_write(r->req, r->ct, plen);
		veil_wipe(r->ct, plen);
		if (rc < 0)
			return set_fail(r, 502, "client_write_failed", "the answer could not be "
					"relayed: %s", veil_strerror(rc));
		if (!r->t_first_ns)
			r->t_first_ns = veil_now_ns();
		r->events++;
		return 0;
	}
	if (plen == strlen(DONE_EVENT) && !memcmp(r->ct, DONE_EVENT, plen)) {
		r->final_done = true; /* held back until the receipt verifies */
		return 1;
	}
	if (plen > 13 && !memcmp(r->ct, "event: error\n", 13) &&
	    !memcmp(r->ct + plen - 2, "\n\n", 2) && r->req) {
		/* The node ended the answer with an error of its own
		 * (authenticated): relay it; no [DONE] follows. */
		if (stream_begin(r) == 0)
			veil_http_stream_write(r->req, r->ct, plen);
		error_code(r->ct + 13, plen - 13, r->node_error, sizeof(r->node_error));
		veil_wipe(r->ct, plen);
		return 1;
	}
	veil_wipe(r->ct, plen);
	return set_fail(r, 502, "bad_sealed_response", "the final sealed chunk is neither "
			"[DONE] nor an error event");
}

static int ss_receipt(void *arg, const char *json, size_t len)
{
	struct preq *r = arg;
	uint8_t rs[32];
	unsigned n = 32;

	EVP_DigestFinal_ex(r->md, rs, &n);
	return submit_check(r, json, len, rs);
}

/* The checker's verdict on the loop (or at once, inside the upstream
 * callback that submitted it: that callback then goes on from here). */
static void on_checked(struct rcheck *c)
{
	struct preq *r = c->owner;

	r->check = NULL;
	if (c->ok) {
		r->receipt_ok = true;
		snprintf(r->rcpt_id, sizeof(r->rcpt_id), "%s", c->id);
		if (c->obj) {
			json_decref(r->receipt_obj);
			r->receipt_obj = c->obj;
			c->obj = NULL;
		}
	} else {
		set_fail(r, 502, c->code, "%s", c->msg);
	}
	if (r->in_cb)
		return;
	if (r->failed) {
		/* the rest of the stream is not wanted */
		if (r->call) {
			veil_hconn_cancel(r->call);
			r->call = NULL;
		}
		report_fail(r);
	} else if (!r->stream) {
		plain_reply(r);
	} else if (r->up_ended) {
		finish_stream(r);
	}
	preq_done(r);
}

/* ---- the upstream call ----------------------------------------------------------- */

static void retry(struct preq *r, const char *why);

static void up_head(void *arg, struct veil_hconn_call *call, int status)
{
	struct preq *r = arg;
	const char *ct = veil_hconn_header(call, "Content-Type");
	const char *h;

	r->up_status = status;
	r->up_sealed = ct && !strncasecmp(ct, SEALED_TYPE, strlen(SEALED_TYPE));
	r->up_sse = ct && !strncasecmp(ct, "text/event-stream", 17);
	if (status == 200 && !r->stream &&
	    (h = veil_hconn_header(call, "X-Veil-Receipt")) &&
	    strlen(h) < MAX_RECEIPT_HEADER)
		r->rcpt_b64 = strdup(h);
}

static int up_data(void *arg, struct veil_hconn_call *call, const uint8_t *p, size_t n)
{
	struct preq *r = arg;
	int rc;

	if (r->failed)
		return VEIL_ECANCELED;
	if (r->up_status != 200) {
		/* An error answer (plaintext JSON, no user content): keep its
		 * start to report it. */
		size_t room = MAX_ERROR_BODY - r->resp.len;

		veil_buf_append(&r->resp, p, VEIL_MIN(n, room));
		return 0;
	}
	if (!r->stream) {
		if (!r->up_sealed)
			return set_fail(r, 502, "response_not_sealed", "the answer is not sealed "
					"(Content-Type is not " SEALED_TYPE "): refused");
		if (veil_buf_append(&r->resp, p, n) < 0)
			return set_fail(r, 502, "response_too_large", "the sealed answer is over "
					"%u bytes", MAX_SEALED_RESPONSE);
		return 0;
	}
	if (!r->up_sse)
		return set_fail(r, 502, "response_not_sealed", "the streamed answer is not "
				"an event stream: refused");
	r->in_cb = true;
	rc = proxy_sealed_feed(&r->ss, p, n);
	r->in_cb = false;
	if (rc < 0 && !r->failed)
		set_fail(r, 502, "bad_sealed_response", "the sealed stream is malformed: %s",
			 veil_err_detail());
	if (rc < 0)
		return rc;
	/* Backpressure: a client that reads slowly pauses the answer (these
	 * bytes are taken; what the gateway sends meanwhile waits in the
	 * socket) until its output drains (on_drain). */
	if (r->req && !r->paused && veil_http_stream_pending(r->req) > HIGH_WATER) {
		r->paused = true;
		veil_hconn_pause(call);
	}
	return 0;
}

static void up_done(void *arg, int rc, int status, const uint8_t *body, size_t len)
{
	struct preq *r = arg;
	struct proxy *p = r->p;
	char code[64], msg[320];

	(void)body;
	(void)len;
	r->call = NULL;
	/* an answer whose head came and whose body then turned out
	 * malformed: the client reports no status, the head was there */
	if (!status && r->up_status)
		status = r->up_status;
	if (!r->req)
		goto out;
	if (r->failed) {
		if (r->stream && r->up_status == 200 && !r->receipt_ok &&
		    !proxy_sealed_final_seen(&r->ss))
			log_fail(r, NULL, r->f_msg);
		report_fail(r);
		goto out;
	}
	if (rc < 0 && status == 0) {
		/* hconn says VEIL_EBADMSG only when the pin check refused the
		 * key; a TLS error otherwise (handshake broken off, bad record)
		 * is VEIL_EIO, a connection failure like any other */
		if (rc == VEIL_EBADMSG && r->st->tls && !r->retried) {
			retry(r, "the gateway's TLS key is not the pinned one");
			return;
		}
		if (rc == VEIL_EBADMSG && r->st->tls)
			fail(r, 502, "tls_key_not_attested", "the gateway's TLS key is not the "
			     "attested one (pin refused)");
		else
			fail(r, rc == VEIL_ETIMEDOUT ? 504 : 502, "gateway_unreachable",
			     "the gateway could not be reached: %s", veil_strerror(rc));
		goto out;
	}
	if (status != 200) {
		proxy_error_parse(r->resp.data, r->resp.len, code, sizeof(code), msg, sizeof(msg));
		if (!r->retried && (!strcmp(code, "node_unavailable") ||
				    !strcmp(code, "unknown_key_id"))) {
			retry(r, code);
			return;
		}
		fail(r, status >= 400 && status <= 599 ? status : 502,
		     code[0] ? code : "upstream_error", "%s (HTTP %d from the %s)",
		     msg[0] ? msg : "the request was refused", status,
		     r->st->via_gateway ? "gateway" : "node");
		goto out;
	}
	if (rc < 0) {
		fail(r, 502, "response_truncated", "the answer broke off (%s): nothing after "
		     "the last verified chunk is trusted", veil_strerror(rc));
		if (r->stream && !r->receipt_ok && !r->check)
			log_fail(r, NULL, r->f_msg);
		goto out;
	}
	if (!r->stream) {
		r->in_cb = true;
		finish_plain(r);
		r->in_cb = false;
		goto out;
	}
	if (r->node_error[0]) {
		p->stats.failed++;
		VEIL_WARN(PROXY_MOD, "request %llu: the node ended the stream with an error",
			  (unsigned long long)r->rid);
		/* with a receipt (tokens were sent) its check logs the line;
		 * without one (none generated, or a relay dropped it) the
		 * failed exchange is logged here */
		if (!r->receipt_ok && !r->check)
			log_fail(r, NULL, "the node ended the stream with an error and no receipt");
		veil_http_stream_end(r->req);
		r->req = NULL;
		goto out;
	}
	if (proxy_sealed_end(&r->ss) < 0) {
		fail(r, 502, "response_truncated", "%s: the answer is incomplete",
		     veil_err_detail());
		if (!r->receipt_ok && !r->check)
			log_fail(r, NULL, r->f_msg);
		goto out;
	}
	if (r->final_done && r->check) {
		r->up_ended = true; /* on_checked finishes */
		goto out;
	}
	if (!r->final_done || !r->receipt_ok) {
		fail(r, 502, "receipt_missing", "the stream ended without a verified receipt");
		goto out;
	}
	finish_stream(r);
out:
	preq_done(r);
}

static int send_upstream(struct preq *r)
{
	struct proxy *p = r->p;
	struct veil_buf sealed = VEIL_BUF_INIT(r->p->o.max_body + 65536);
	uint8_t header[VEIL_SEAL_HEADER_LEN];
	char path[1200], mh[PROXY_NAME_MAX + 16], auth[600];
	const char *hdrs[7];
	size_t nh = 0;
	struct veil_hconn_request rq = {0};
	int rc;

	if ((rc = veil_seal_client_new(r->node->keys.x25519_hpke, NULL, 0, header, &r->seal)) < 0 ||
	    (rc = veil_buf_append(&sealed, header, sizeof(header))) < 0 ||
	    (rc = veil_seal_body(r->seal, r->plain.data ? r->plain.data : (uint8_t *)"",
				 r->plain.len, &sealed)) < 0)
		goto out;
	veil_digest_sha256(sealed.data, sealed.len, r->req_sha);
	rc = VEIL_ENOMEM;
	if (!(r->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex2(r->md, veil_digest_sha256_md(), NULL))
		goto out;
	r->resp = (struct veil_buf)VEIL_BUF_INIT(r->stream ? MAX_ERROR_BODY : MAX_SEALED_RESPONSE);
	if (r->stream) {
		r->ct_cap = VEIL_SEAL_RESPONSE_NONCE_LEN + VEIL_SEAL_MAX_CHUNK +
			    VEIL_SEAL_CHUNK_OVERHEAD + 4; /* the first event: nonce too */
		if (!(r->ct = malloc(r->ct_cap)))
			goto out;
		proxy_sealed_init(&r->ss, SSE_MAX_LINE, ss_chunk, ss_receipt, ss_hash, r);
		r->ss_init = true;
	}
	snprintf(path, sizeof(path), "%s%s", p->o.up_base,
		 r->chat ? "/v1/chat/completions" : "/v1/completions");
	snprintf(mh, sizeof(mh), "X-Veil-Model: %s", r->model);
	hdrs[nh++] = "Content-Type: " SEALED_TYPE;
	hdrs[nh++] = mh;
	hdrs[nh++] = r->stream ? "Accept: text/event-stream" : "Accept: " SEALED_TYPE;
	if (p->o.api_key) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", p->o.api_key);
		hdrs[nh++] = auth;
	}
	hdrs[nh] = NULL;
	rq.url = p->o.up_origin;
	/* https: the key the verified state saw and the attestation binds
	 * (a plain http:// gateway was allowed, with its warning, at start) */
	rq.pin = r->st->tls ? r->st->spki : NULL;
	rq.label = "the gateway";
	rq.method = "POST";
	rq.path = path;
	rq.headers = hdrs;
	rq.body = sealed.data;
	rq.body_len = sealed.len;
	rq.timeout_ms = p->o.timeout_s * 1000u;
	rq.connect_timeout_ms = VEIL_MIN(10000u, rq.timeout_ms);
	/* no cap of the client's: the buffers below have theirs (a sealed
	 * answer MAX_SEALED_RESPONSE, an error MAX_ERROR_BODY; a stream is
	 * opened as it comes), and say so in their own words */
	rq.max_response = UINT64_MAX;
	rq.on_head = up_head;
	rq.on_data = up_data;
	rq.on_done = up_done;
	rq.arg = r;
	/* the sealed body is written from `sealed` at once on a kept-alive
	 * connection, or later on a new one: it must live until the call
	 * ends (r->sealed) */
	rc = veil_hconn_start(p->up_pool, &rq, &r->call);
	veil_wipe(auth, sizeof(auth));
	if (rc == 0) {
		r->sealed = sealed;
		sealed = (struct veil_buf)VEIL_BUF_INIT(0);
	}
out:
	veil_buf_free(&sealed);
	return rc;
}

static void on_state(struct proxy_waiter *w, struct vstate *st)
{
	struct preq *r = (struct preq *)w;
	int rc;

	if (!r->req) {
		preq_done(r);
		return;
	}
	if (!st->ok) {
		fail(r, st->status, st->code, "%s", st->error);
		preq_done(r);
		return;
	}
	if (!(r->node = vstate_pick(st, r->model))) {
		/* Say why: a node of that model failed verification... */
		for (size_t i = 0; i < st->n_nodes; i++) {
			if (!strcmp(st->nodes[i].model, r->model)) {
				fail(r, st->nodes[i].status, st->nodes[i].code, "%s: nothing was "
				     "sent", st->nodes[i].error);
				preq_done(r);
				return;
			}
		}
		/* ...or none serves it.  The gateway may have gained the model
		 * (or a node came back) since: look once more with a fresh
		 * state, at most every 2 s. */
		if (!r->retried && vstate_age_s(st) > 2.0) {
			uint64_t gen = st->gen;

			r->retried = true;
			proxy_state_invalidate(r->p, gen, "a model no verified node serves");
			if (proxy_state_get(r->p, &r->w, gen + 1) < 0) {
				fail(r, 503, "busy", "too many requests wait for verification");
				preq_done(r);
			}
			return;
		}
		if (st->n_ok == 0)
			fail(r, 503, "no_verified_node", "the %s has no node that passed "
			     "verification", st->via_gateway ? "gateway" : "node");
		else
			fail(r, 404, "model_not_found", "The model '%s' does not exist (no "
			     "verified node serves it; see GET /v1/models)", r->model);
		preq_done(r);
		return;
	}
	r->st = st;
	vstate_ref(st);
	if ((rc = send_upstream(r)) < 0) {
		fail(r, 500, "seal_failed", "the request could not be sealed and sent: %s",
		     veil_strerror(rc));
		preq_done(r);
	}
}

static void retry(struct preq *r, const char *why)
{
	struct proxy *p = r->p;
	uint64_t gen = r->st->gen;

	VEIL_INFO(PROXY_MOD, "request %llu: %s: verifying again and sealing anew",
		  (unsigned long long)r->rid, why);
	exchange_reset(r);
	r->retried = true;
	proxy_state_invalidate(p, gen, why);
	if (proxy_state_get(p, &r->w, gen + 1) < 0) {
		fail(r, 503, "busy", "too many requests wait for verification");
		preq_done(r);
	}
}

/* ---- the client side ---------------------------------------------------------------- */

static void on_close(struct veil_http_req *req, void *arg)
{
	struct preq *r = arg;

	VEIL_INFO(PROXY_MOD, "request %llu: the client went away", (unsigned long long)r->rid);
	if (r->started)
		veil_http_stream_end(req);
	else
		veil_http_reply_error(req, 503, NULL, "client_closed", "client went away");
	r->req = NULL;
	preq_free(r); /* cancels the call: the node stops generating */
}

static void on_drain(struct veil_http_req *req, void *arg)
{
	struct preq *r = arg;

	(void)req;
	if (r->paused && r->call) {
		r->paused = false;
		veil_hconn_resume(r->call);
	}
}

static bool name_ok(const char *s, size_t len)
{
	if (len == 0 || len >= PROXY_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

static void h_completion(struct veil_http_req *req, void *arg, bool chat)
{
	struct proxy *p = arg;
	size_t blen;
	const uint8_t *body = veil_http_req_body(req, &blen);
	const char *opt = veil_http_req_header(req, "X-Veil-Receipt-Chunk");
	json_t *b = NULL, *model, *stream;
	struct preq *r = NULL;

	p->stats.requests++;
	if (p->stopping) {
		veil_http_reply_error(req, 503, NULL, "shutting_down", "veil-proxy is stopping");
		return;
	}
	b = json_loadb((const char *)body, blen, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(b)) {
		veil_http_reply_error(req, 400, NULL, "invalid_json", "the body is not a JSON object");
		goto out;
	}
	model = json_object_get(b, "model");
	stream = json_object_get(b, "stream");
	if (!json_is_string(model) || !name_ok(json_string_value(model), json_string_length(model))) {
		veil_http_reply_error(req, 400, NULL, "missing_model", "'model' must be a model "
				      "name (1..127 printable ASCII characters)");
		goto out;
	}
	if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
		veil_http_reply_error(req, 400, NULL, "invalid_parameter", "'stream' must be a boolean");
		goto out;
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		veil_http_reply_error(req, 500, NULL, "internal", "out of memory");
		goto out;
	}
	r->p = p;
	r->req = req;
	r->rid = veil_http_req_id(req);
	r->chat = chat;
	r->stream = json_is_true(stream);
	r->receipt_chunk = opt && !strcmp(opt, "1");
	r->w.cb = on_state;
	r->t0_ns = veil_now_ns();
	snprintf(r->model, sizeof(r->model), "%s", json_string_value(model));
	/* The body is sealed exactly as the client sent it. */
	r->plain = (struct veil_buf)VEIL_BUF_SECRET_INIT(p->o.max_body + 1);
	if (veil_buf_append(&r->plain, body, blen) < 0) {
		veil_http_reply_error(req, 413, NULL, "body_too_large", "request body too large");
		r->req = NULL;
		goto out;
	}
	r->next = p->reqs;
	if (p->reqs)
		p->reqs->prev = r;
	p->reqs = r;
	veil_http_req_on_close(req, on_close, r);
	veil_http_req_on_drain(req, on_drain, r);
	VEIL_DEBUG(PROXY_MOD, "request %llu: %s, model %s%s", (unsigned long long)r->rid,
		   chat ? "chat" : "completion", r->model, r->stream ? ", streamed" : "");
	if (proxy_state_get(p, &r->w, 0) < 0) {
		fail(r, 503, "busy", "too many requests wait for verification");
		preq_done(r);
	}
	r = NULL;
out:
	if (r)
		preq_free(r);
	json_decref(b);
}

static void h_chat(struct veil_http_req *req, void *arg)
{
	h_completion(req, arg, true);
}

static void h_cmpl(struct veil_http_req *req, void *arg)
{
	h_completion(req, arg, false);
}

void proxy_api_routes(struct proxy *p)
{
	veil_http_route(p->srv, "POST", "/v1/chat/completions", false, h_chat, p);
	veil_http_route(p->srv, "POST", "/v1/completions", false, h_cmpl, p);
}

void proxy_api_abort_all(struct proxy *p, const char *why)
{
	struct preq *r = p->reqs, *next;

	for (; r; r = next) {
		next = r->next;
		if (r->req) {
			if (r->call) {
				veil_hconn_cancel(r->call);
				r->call = NULL;
			}
			proxy_state_cancel(p, &r->w);
			fail(r, 503, "shutting_down", "%s", why);
		}
		preq_done(r);
	}
}
