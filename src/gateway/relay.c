/* The OpenAI endpoints of veil-gateway: POST /v1/chat/completions and
 * /v1/completions, relayed to a verified node.
 *
 * A request is authenticated (auth.c), routed (nodes.c: sealed bodies to
 * the node whose attested HPKE key id the sealed header names, plaintext
 * ones to the least busy node of the model, with optional prefix
 * affinity), and relayed byte for byte over a connection pinned to the
 * node's attested TLS key.  Bodies are never parsed beyond the "model" of a
 * plaintext request (and its first messages with --affinity prefix), never
 * logged and never stored.
 *
 * Receipts and usage.  The node's signed receipt (X-Veil-Receipt header;
 * in a stream, the veil.receipt event before [DONE]) is checked — on the
 * loop up to INLINE_PER_MS in the current millisecond (a worker round trip
 * costs two thread wake-ups and context switches, as much CPU as a fifth
 * of the check), beyond that on a CPU worker, so that a loop that has more
 * answers to relay than it can check spreads the checks over the cores —:
 * signatures against the node's attested keys, request_sha256 ==
 * SHA-256 of the body relayed, response_sha256 == SHA-256 of the response
 * bytes relayed before it, model == the node's.  A good receipt becomes a
 * usage record (tokens from the receipt, the receipt JSON stored with it:
 * it holds only hashes) handed straight to the writer.  The client's answer
 * is completed (a plain reply sent; a stream's final [DONE] sent) only once
 * that record is durable: an answer the client got is a record that
 * survives a crash.  If the store fails, the answer is not completed (503,
 * or a stream error event) — no unrecorded answers.  A receipt that fails
 * its checks is logged (no content), counted, not billed, and the answer is
 * still delivered (the client's proxy judges it).
 *
 * Failures.  A request that failed before any response byte (no connection,
 * or the node answered 429/503) is retried once on another node of the
 * model (not sealed ones: they are bound to one node's key; the client gets
 * 503 node_unavailable and seals again).  A connection error takes the node
 * out of rotation at once.  A stream cut mid-way ends with an explicit
 * `event: error`, never [DONE]. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "veil/receipt.h"
#include "veil/seal.h"

#include "gateway.h"

#define SEALED_TYPE "application/veil-sealed"
#define MAX_RESPONSE (64u << 20)
#define PAUSE_ABOVE (256u << 10)
/* A paused stream whose client drains less than STALL_MIN_BYTES in a
 * STALL_MS tick is cut and its relay detached (the node's answer read to
 * its end and billed): left paused, the node's own output queue fills and
 * it ends the stream (client_too_slow, a receipt for what it generated)
 * behind bytes that nobody would read. */
#define STALL_MS 1000
#define STALL_MIN_BYTES (16u << 10)
#define INLINE_PER_MS 12  /* receipt checks on the loop (~0.045 ms each) */

struct usage_req;

struct gw_relay {
	struct gw *g;
	struct gw_relay *prev, *next;
	struct veil_http_req *req;      /* NULL once completed */
	uint64_t req_id;                /* the client request's, for logs */
	/* the client left after the node had the request: its answer is read
	 * to the end (hashed, not kept) so that its receipt is billed */
	bool detached;
	bool was_detached;              /* counted in g->relays_detached_live */
	bool chat;
	bool sealed;
	bool auth_pending;
	struct usage_req *usage;        /* a receipt/usage job in flight */
	struct gw_key key;
	char model[VEIL_STORE_MODEL_MAX + 1];
	uint8_t key_id[VEIL_SEAL_KEY_ID_LEN];
	bool has_aff;
	uint8_t aff[32];
	const uint8_t *body;            /* the request's (valid while req is) */
	size_t body_len;
	uint8_t req_sha[32];
	uint64_t t0_ns;
	uint64_t up_start_ns, up_ns;    /* time spent waiting for nodes */

	/* the current attempt */
	struct gw_node *node;           /* ref held while set */
	struct gw_node *tried;          /* the first attempt's node (ref) */
	struct veil_hconn_call *call;
	int attempts;
	int up_status;
	bool sse;                       /* the node answers with a stream */
	bool got_bytes;
	bool paused;
	struct event *stall_ev;         /* the paused stream's drain check */
	size_t stall_pending;           /* bytes waiting at the last check */

	/* stream */
	bool started;                   /* client head sent */
	struct gw_framer fr;
	EVP_MD_CTX *md;                 /* response bytes before the receipt */
	struct veil_buf receipt;
	bool receipt_seen, done_seen, error_seen;
	bool after_receipt;             /* an event other than [DONE] followed it */
	struct veil_buf held;           /* [DONE] and anything after it */

	/* plain answer */
	struct veil_buf resp;
	char ctype[128];
	char retry_after[16];
	char receipt_id[VEIL_STORE_ID_MAX + 1];
	/* the node's X-Veil-Receipt, passed on with the answer it belongs to
	 * (not at the head: a body that breaks is retried on another node) */
	struct veil_buf receipt_hdr;
};

struct usage_req {
	struct gw_usage_job uj;
	struct gw_relay *r;
	struct gw *g;
	struct veil_keyset keys;
	uint8_t req_sha[32], resp_sha[32];
	char expect_model[VEIL_STORE_MODEL_MAX + 1];
	char eth_text[VEIL_ETH_ADDRESS_STR_LEN]; /* the attested address, EIP-55 */
	enum gw_receipt_check mode;     /* --receipt-check */
	bool receipt_ok;                /* verified (billed if rc == 0) */
	char error[256];
	uint64_t t0_ns;
};

static void relay_try(struct gw_relay *r);

/* ---- bookkeeping --------------------------------------------------------- */

static void drop_node(struct gw_relay *r)
{
	if (r->node) {
		if (r->node->outstanding)
			r->node->outstanding--;
		gw_node_unref(r->node);
		r->node = NULL;
	}
}

static void relay_free(struct gw_relay *r)
{
	struct gw *g = r->g;

	if (r->prev)
		r->prev->next = r->next;
	else if (g->relays == r)
		g->relays = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->call)
		veil_hconn_cancel(r->call);
	drop_node(r);
	gw_node_unref(r->tried);
	if (r->stall_ev)
		event_free(r->stall_ev);
	gw_framer_free(&r->fr);
	EVP_MD_CTX_free(r->md);
	veil_buf_free(&r->receipt);
	veil_buf_free(&r->receipt_hdr);
	veil_buf_free(&r->held);
	veil_buf_free(&r->resp);
	if (g->m.relays_active)
		g->m.relays_active--;
	if (r->started && g->m.streams_active)
		g->m.streams_active--;
	if (r->was_detached && g->relays_detached_live &&
	    --g->relays_detached_live == 0 && g->detached_idle_cb) {
		void (*cb)(void *) = g->detached_idle_cb;

		g->detached_idle_cb = NULL;
		cb(g->detached_idle_arg);
	}
	veil_wipe(r, sizeof(*r));
	free(r);
}

/* Frees the relay once nothing refers to it any more. */
static void relay_maybe_free(struct gw_relay *r)
{
	if (!r->req && !r->call && !r->auth_pending && !r->usage)
		relay_free(r);
}

static void reply_error(struct gw_relay *r, int status, const char *type,
			const char *code, const char *msg)
{
	if (!r->req)
		return;
	gw_reply_error(r->g, r->req, status, type, code, "%s", msg);
	r->req = NULL;
}

/* Ends a started stream with an explicit error event (never [DONE]). */
static void stream_cut(struct gw_relay *r, const char *code, const char *msg)
{
	struct veil_buf b = VEIL_BUF_INIT(4096);
	json_t *e;
	char *s;

	if (!r->req)
		return;
	e = json_pack("{s:{s:s, s:s, s:s}}", "error", "message", msg, "type",
		      "server_error", "code", code);
	s = e ? json_dumps(e, JSON_COMPACT) : NULL;
	json_decref(e);
	if (s && veil_buf_appendf(&b, "event: error\ndata: %s\n\n", s) == 0)
		veil_http_stream_write(r->req, b.data, b.len);
	free(s);
	veil_buf_free(&b);
	veil_http_stream_end(r->req);
	r->req = NULL;
	r->g->m.streams_cut++;
}

/* ---- receipts and usage (CPU worker, then writer) ------------------------ */

static void usage_done(struct gw_job *j);

/* What the checks read of a receipt, from either parser. */
struct rview {
	const uint8_t *request_sha256, *response_sha256;
	const char *model, *id;
	int64_t prompt_tokens, completion_tokens;
};

/* One payload signature by a key of the attested set proves where the
 * payload comes from (one attestation binds them all); the other
 * signatures are the clients' to check (`--receipt-check full` checks them
 * here too, at ~10x the CPU).  ed25519: libsodium's verification, ~40 us
 * here; ecdsa: Keccak-256 of the EIP-191 message and libsecp256k1's
 * verification against the attested public key, ~32 us (no recovery: the
 * key is known, so v is only checked to be one veil_eip191_recover
 * takes; s must be low, as for recovery).
 * Either way the payload must name both attested keys.  `payload_len`
 * bytes at `payload`; 0 or VEIL_EBADMSG with u->error set. */
static int check_sig(struct usage_req *u, const char *payload, size_t payload_len,
		     const uint8_t ed_pub[32], const uint8_t eth_address[20],
		     const uint8_t sig_ed25519[64], const uint8_t sig_ecdsa[65])
{
	uint8_t h[32];

	if (CRYPTO_memcmp(ed_pub, u->keys.ed25519, 32) ||
	    CRYPTO_memcmp(eth_address, u->keys.eth_address, 20)) {
		snprintf(u->error, sizeof(u->error), "the payload's keys are not the attested node's");
		return VEIL_EBADMSG;
	}
	if (u->mode == GW_RC_ECDSA) {
		veil_eip191_hash(payload, payload_len, h);
		if (!(u->keys.present & VEIL_KEYSET_HAS(VEIL_KEY_SECP256K1)) ||
		    (sig_ecdsa[64] > 1 && sig_ecdsa[64] != 27 && sig_ecdsa[64] != 28) ||
		    veil_secp256k1_verify_hash(u->keys.secp256k1, h, sig_ecdsa) < 0) {
			snprintf(u->error, sizeof(u->error),
				 "the ECDSA signature is not the attested node's");
			return VEIL_EBADMSG;
		}
		return 0;
	}
	if (veil_ed25519_verify(u->keys.ed25519, payload, payload_len, sig_ed25519) < 0) {
		snprintf(u->error, sizeof(u->error),
			 "the Ed25519 signature is not the attested node's");
		return VEIL_EBADMSG;
	}
	return 0;
}

/* Any other spelling, and --receipt-check full: the full parser. */
static int check_full(struct usage_req *u, const struct veil_receipt *rc)
{
	if (u->mode == GW_RC_FULL) {
		if (veil_receipt_verify(rc, &u->keys) < 0) {
			snprintf(u->error, sizeof(u->error), "signature: %s", veil_err_detail());
			return VEIL_EBADMSG;
		}
		return 0;
	}
	return check_sig(u, rc->payload, strlen(rc->payload), rc->ed25519_public_key,
			 rc->eth_address, rc->sig_ed25519, rc->sig_ecdsa);
}

/* Checks the receipt (loop or CPU worker: touches only u); a good one
 * fills the usage record and sets receipt_ok.  A receipt in the nodes'
 * canonical form is read without a JSON library (gw_receipt_fast, a strict
 * subset of veil_receipt_parse); any other falls back to the full parser,
 * so both spellings are judged alike. */
static void receipt_check(struct usage_req *u)
{
	struct gw_receipt_lite lite;
	struct veil_receipt rc;
	struct rview v;

	memset(&rc, 0, sizeof(rc));
	if (u->mode != GW_RC_FULL &&
	    gw_receipt_fast(u->uj.receipt, u->uj.receipt_len, u->eth_text, &lite) == 0) {
		/* its signing_address is the attested one by construction */
		if (check_sig(u, lite.payload, lite.payload_len, lite.ed25519_public_key,
			      u->keys.eth_address, lite.sig_ed25519, lite.sig_ecdsa) < 0)
			goto out;
		v = (struct rview){lite.request_sha256, lite.response_sha256, lite.model,
				   lite.id, lite.prompt_tokens, lite.completion_tokens};
	} else {
		if (veil_receipt_parse(u->uj.receipt, u->uj.receipt_len, &rc) < 0) {
			snprintf(u->error, sizeof(u->error), "malformed: %s", veil_err_detail());
			goto out;
		}
		if (check_full(u, &rc) < 0)
			goto out;
		v = (struct rview){rc.request_sha256, rc.response_sha256, rc.model, rc.id,
				   rc.prompt_tokens, rc.completion_tokens};
	}
	if (CRYPTO_memcmp(v.request_sha256, u->req_sha, 32)) {
		snprintf(u->error, sizeof(u->error),
			 "request_sha256 is not the hash of the body relayed");
		goto out;
	}
	if (CRYPTO_memcmp(v.response_sha256, u->resp_sha, 32)) {
		snprintf(u->error, sizeof(u->error),
			 "response_sha256 is not the hash of the answer relayed");
		goto out;
	}
	if (strcmp(v.model, u->expect_model)) {
		snprintf(u->error, sizeof(u->error), "model is not the node's");
		goto out;
	}
	if (!v.id[0] || strlen(v.id) > VEIL_STORE_ID_MAX) {
		snprintf(u->error, sizeof(u->error), "bad id");
		goto out;
	}
	u->receipt_ok = true;
	if (u->uj.charge_tokens)
		u->uj.charge_tokens = VEIL_MAX(v.prompt_tokens + v.completion_tokens - 1, 0);
	snprintf(u->uj.request_id, sizeof(u->uj.request_id), "%s", v.id);
	u->uj.u.request_id = u->uj.request_id;
	u->uj.u.prompt_tokens = v.prompt_tokens;
	u->uj.u.completion_tokens = v.completion_tokens;
	u->uj.u.created_ms = (int64_t)veil_wall_ms();
	u->uj.u.receipt = u->uj.receipt;
	u->uj.u.receipt_len = u->uj.receipt_len;
out:
	veil_receipt_free(&rc);
}

/* CPU worker: the check, then straight on to the writer (a good receipt)
 * or back to the loop. */
static void usage_verify_run(struct gw_job *j, struct veil_store *s)
{
	struct usage_req *u = (struct usage_req *)j;

	(void)s;
	j->rc = 0;
	receipt_check(u);
	if (!u->receipt_ok)
		return;
	/* on to the writer: a usage record (run NULL) */
	j->run = NULL;
	if (gw_job_handoff(u->g->writer, j) == 0)
		return;
	j->run = usage_verify_run;
	j->rc = VEIL_EBUSY;
}

/* The stream's held tail, or the plain reply: the record is durable. */
static void relay_complete(struct gw_relay *r)
{
	struct gw *g = r->g;

	if (!r->req)
		return;
	if (r->sse) {
		if (r->held.len)
			veil_http_stream_write(r->req, r->held.data, r->held.len);
		veil_http_stream_end(r->req);
		r->req = NULL;
		return;
	}
	gw_status(g, r->up_status);
	/* the gateway's own share: all but the node's time */
	gw_hist_add(&g->m.added, (double)(veil_now_ns() - r->t0_ns - r->up_ns) / 1e9);
	veil_http_reply(r->req, r->up_status, r->ctype[0] ? r->ctype : "application/json",
			r->resp.data ? r->resp.data : (const uint8_t *)"", r->resp.len);
	r->req = NULL;
}

/* The receipt's verdict and its record's fate: the answer completes (or is
 * withheld); frees u, not the relay. */
static void usage_finish(struct usage_req *u)
{
	struct gw_job *j = &u->uj.job;
	struct gw_relay *r = u->r;
	struct gw *g = u->g;

	r->usage = NULL;
	if (!u->receipt_ok) {
		g->m.receipts_bad++;
		VEIL_WARN(GW_MOD, "request %s: receipt from node %s refused (%s); not billed",
			  r->receipt_id[0] ? r->receipt_id : "?", u->uj.node_id, u->error);
		relay_complete(r);
	} else if (j->rc < 0) {
		g->m.usage_failed++;
		g->m.receipts_ok++;
		VEIL_ERROR(GW_MOD, "request %s: usage record not stored (%s): answer withheld",
			   u->uj.request_id, veil_strerror(j->rc));
		if (r->req && r->sse) {
			stream_cut(r, "usage_store_unavailable",
				   "the usage record could not be stored; the answer is withheld");
		} else {
			reply_error(r, 503, NULL, "usage_store_unavailable",
				    "the usage record could not be stored; retry later");
		}
	} else {
		g->m.receipts_ok++;
		g->m.usage_records++;
		gw_hist_add(&g->m.usage_write, (double)(veil_now_ns() - u->t0_ns) / 1e9);
		relay_complete(r);
	}
	free(u->uj.receipt);
	veil_wipe(u, sizeof(*u));
	free(u);
}

static void usage_done(struct gw_job *j)
{
	struct gw_relay *r = ((struct usage_req *)j)->r;

	usage_finish((struct usage_req *)j);
	relay_maybe_free(r);
}

/* Whether this receipt is checked on the loop now (see the top). */
static bool check_inline(struct gw *g)
{
	uint64_t ms;

	if (g->o.receipt_check == GW_RC_FULL)
		return false;
	ms = veil_now_ns() / 1000000;
	if (ms != g->inline_ms) {
		g->inline_ms = ms;
		g->inline_n = 0;
	}
	return g->inline_n++ < INLINE_PER_MS;
}

/* The node's attested address as its receipts spell it ("0x" + EIP-55
 * hex), formatted once per key rather than per receipt (a Keccak). */
static const char *node_eth_text(struct gw_node *n)
{
	if (!n->eth_text[0] || memcmp(n->eth_text_of, n->keys.eth_address, 20)) {
		veil_eth_address_format(n->keys.eth_address, n->eth_text);
		memcpy(n->eth_text_of, n->keys.eth_address, 20);
	}
	return n->eth_text;
}

/* Hands the receipt to the CPU worker; the answer completes in usage_done.
 * Without a receipt the answer completes now (not billed). */
static void settle(struct gw_relay *r, const uint8_t resp_sha[32])
{
	struct gw *g = r->g;
	struct usage_req *u;

	if (!r->receipt.len) {
		g->m.receipts_missing++;
		VEIL_WARN(GW_MOD, "request to node %s: no receipt; not billed",
			  r->node ? r->node->id : "?");
		relay_complete(r);
		return;
	}
	if (!(u = calloc(1, sizeof(*u))))
		goto fail;
	u->uj.job.run = usage_verify_run;
	u->uj.job.done = usage_done;
	/* the receipt's bytes move to the record (no copy) */
	u->uj.receipt = veil_buf_steal(&r->receipt, &u->uj.receipt_len);
	u->r = r;
	u->g = g;
	u->keys = r->node->keys;
	u->mode = g->o.receipt_check;
	memcpy(u->req_sha, r->req_sha, 32);
	memcpy(u->resp_sha, resp_sha, 32);
	snprintf(u->expect_model, sizeof(u->expect_model), "%s", r->node->model);
	memcpy(u->eth_text, node_eth_text(r->node), sizeof(u->eth_text));
	snprintf(u->uj.model, sizeof(u->uj.model), "%s", r->node->model);
	snprintf(u->uj.node_id, sizeof(u->uj.node_id), "%s", r->node->id);
	u->uj.u.key_id = r->key.id;
	u->uj.u.model = u->uj.model;
	u->uj.u.node_id = u->uj.node_id;
	u->t0_ns = veil_now_ns();
	if (r->key.limits.tokens_per_min > 0)
		u->uj.charge_tokens = -1; /* set from the receipt below */
	r->usage = u;
	if (check_inline(g)) {
		receipt_check(u);
		if (u->receipt_ok) {
			u->uj.job.run = NULL; /* a usage record */
			if (gw_worker_submit_pass(g->writer, &u->uj.job) == 0)
				return;
			u->uj.job.rc = VEIL_EBUSY;
		}
		/* refused (delivered unbilled), or no room at the writer
		 * (withheld); the caller frees the relay when it is done */
		usage_finish(u);
		return;
	}
	if (gw_worker_submit(g->cpu[g->cpu_rr++ % g->n_cpu], &u->uj.job) < 0) {
		r->usage = NULL;
		free(u->uj.receipt);
		free(u);
		goto fail;
	}
	return;
fail:
	g->m.usage_failed++;
	if (r->sse)
		stream_cut(r, "overloaded", "the gateway is overloaded; the answer is withheld");
	else
		reply_error(r, 503, NULL, "overloaded", "the gateway is overloaded; retry later");
}

/* ---- the node's answer -------------------------------------------------------- */

/* The running hash of the response bytes the receipt covers. */
static int md_start(struct gw_relay *r)
{
	if (r->md)
		return 0;
	if (!(r->md = EVP_MD_CTX_new()) ||
	    !EVP_DigestInit_ex(r->md, veil_digest_sha256_md(), NULL))
		return VEIL_ENOMEM;
	return 0;
}

static int write_client(struct gw_relay *r, const uint8_t *p, size_t n)
{
	/* VEIL_EBUSY cannot happen (the transfer pauses above PAUSE_ABOVE,
	 * far below the server's cap, at most one read of the node's
	 * connection later); if it did, the stream must end with an error
	 * rather than lose bytes */
	return veil_http_stream_write(r->req, p, n);
}

static int on_event(void *arg, const uint8_t *raw, size_t n)
{
	struct gw_relay *r = arg;
	enum gw_ev_kind k = GW_EV_DATA;

	if (r->done_seen) {
		/* after [DONE]: held with it */
		return veil_buf_append(&r->held, raw, n) < 0 ? VEIL_ERANGE : 0;
	}
	if (!r->receipt_seen) {
		veil_buf_reset(&r->receipt);
		if (gw_sse_classify(raw, n, &k, &r->receipt) < 0)
			k = GW_EV_DATA;
	} else if (gw_sse_classify(raw, n, &k, NULL) < 0) {
		k = GW_EV_DATA;
	}
	if (r->receipt_seen && k != GW_EV_DONE)
		r->after_receipt = true; /* bytes no receipt covers: not billed */
	switch (k) {
	case GW_EV_RECEIPT:
		if (r->receipt_seen)
			break; /* a second one: relayed, not billed (after_receipt) */
		r->receipt_seen = true;
		break;
	case GW_EV_DONE:
		r->done_seen = true;
		return veil_buf_append(&r->held, raw, n) < 0 ? VEIL_ERANGE : 0;
	case GW_EV_ERROR:
		r->error_seen = true;
		/* fall through */
	default:
		if (!r->receipt_seen) {
			veil_buf_reset(&r->receipt);
			EVP_DigestUpdate(r->md, raw, n);
		}
		break;
	}
	/* detached: hashed and parsed above, not kept */
	return r->req ? write_client(r, raw, n) : 0;
}

static void on_drain(struct veil_http_req *req, void *arg)
{
	struct gw_relay *r = arg;

	if (r->paused && r->call) {
		VEIL_DEBUG(GW_MOD, "request %llu: node stream resumed",
			   (unsigned long long)veil_http_req_id(req));
		r->paused = false;
		if (r->stall_ev)
			evtimer_del(r->stall_ev);
		veil_hconn_resume(r->call);
	}
}

static int relay_detach(struct gw_relay *r);

/* STALL_MS after a pause, and every STALL_MS while it lasts: a client that
 * drained less than STALL_MIN_BYTES since the last look has its stream
 * cut (client_too_slow, queued behind what it has not read) and the relay
 * detached, so that the node's answer is billed. */
static void stall_check(evutil_socket_t fd, short what, void *arg)
{
	struct gw_relay *r = arg;
	struct gw *g = r->g;
	struct timeval tv = {STALL_MS / 1000, (STALL_MS % 1000) * 1000};
	size_t pending;

	(void)fd;
	(void)what;
	if (!r->req || !r->paused || !r->call)
		return;
	pending = veil_http_stream_pending(r->req);
	if (pending + STALL_MIN_BYTES <= r->stall_pending ||
	    !veil_hconn_sent(r->call) || g->relays_detached_live >= g->o.max_conns) {
		/* reading (slowly), or it cannot be detached: still paused */
		r->stall_pending = pending;
		evtimer_add(r->stall_ev, &tv);
		return;
	}
	VEIL_WARN(GW_MOD, "request %llu: the client stopped reading (%zu bytes waiting); "
		  "stream cut, the answer of node %s read to its end to bill it",
		  (unsigned long long)r->req_id, pending, r->node->id);
	g->m.clients_stalled++;
	if (relay_detach(r) < 0)
		return;
	stream_cut(r, "client_too_slow", "the client did not read the stream");
}

static void up_head(void *arg, struct veil_hconn_call *call, int status)
{
	struct gw_relay *r = arg;
	const char *ct = veil_hconn_header(call, "Content-Type");
	const char *ra = veil_hconn_header(call, "Retry-After");
	const char *rid = veil_hconn_header(call, "X-Veil-Receipt-Id");

	r->up_status = status;
	snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
	snprintf(r->retry_after, sizeof(r->retry_after), "%s", ra ? ra : "");
	/* this attempt's, never a failed one's */
	snprintf(r->receipt_id, sizeof(r->receipt_id), "%s", rid ? rid : "");
	r->sse = status == 200 && ct && !strncasecmp(ct, "text/event-stream", 17);
}

static int up_data(void *arg, struct veil_hconn_call *call, const uint8_t *p, size_t n)
{
	struct gw_relay *r = arg;
	int rc;

	if (!r->req && !r->detached)
		return VEIL_ECANCELED;
	r->got_bytes = true;
	if (!r->sse) {
		if (r->detached) {
			/* only its hash is needed (the receipt's response_sha256) */
			if (md_start(r) < 0)
				return VEIL_ENOMEM;
			EVP_DigestUpdate(r->md, p, n);
			return 0;
		}
		if (veil_buf_append(&r->resp, p, n) < 0)
			return VEIL_ERANGE;
		return 0;
	}
	if (md_start(r) < 0)
		return VEIL_ENOMEM;
	if (!r->req)
		return gw_framer_feed(&r->fr, p, n, on_event, r);
	if (!r->started) {
		veil_http_add_header(r->req, "X-Veil-Node", r->node->id);
		if ((rc = veil_http_stream_start(r->req, 200, r->ctype)) < 0)
			return rc;
		r->started = true;
		r->g->m.streams_active++;
		gw_status(r->g, 200);
		veil_http_req_on_drain(r->req, on_drain, r);
	}
	if ((rc = gw_framer_feed(&r->fr, p, n, on_event, r)) < 0)
		return rc;
	/* Backpressure: a client that reads slowly pauses the node's stream
	 * until what waits for it has drained (on_drain). */
	if (r->req && !r->paused && veil_http_stream_pending(r->req) > PAUSE_ABOVE) {
		struct timeval tv = {STALL_MS / 1000, (STALL_MS % 1000) * 1000};

		VEIL_DEBUG(GW_MOD, "request %llu: the client reads slowly; node stream paused",
			   (unsigned long long)veil_http_req_id(r->req));
		if (!r->stall_ev && !(r->stall_ev = evtimer_new(r->g->base, stall_check, r)))
			return VEIL_ENOMEM;
		r->stall_pending = veil_http_stream_pending(r->req);
		evtimer_add(r->stall_ev, &tv);
		r->paused = true;
		veil_hconn_pause(call);
	}
	return 0;
}

/* The node failed us (not the client, not a size cap): passive health.
 * A timeout is not one: hconn says VEIL_ETIMEDOUT only when the node had
 * the whole request and its answer took longer than --upstream-timeout-ms
 * (a plain answer sends no head before generation ends, so a long one
 * lands here); a connect, handshake or write that timed out is VEIL_EIO. */
static bool node_fault(int rc, int status)
{
	(void)status;
	return rc == VEIL_EIO || rc == VEIL_EBADMSG || rc == VEIL_EFORMAT;
}

static bool retryable(const struct gw_relay *r, int rc, int status)
{
	/* nothing reached the client yet (a plain answer is sent only at the
	 * end), and the node did not answer, broke off, or said it is busy */
	if (r->sealed || r->attempts >= 2 || r->started || r->detached)
		return false;
	if (rc == 0)
		return status == 503 || status == 429;
	return node_fault(rc, status);
}

/* A stream whose receipt is checked and billed: it ended cleanly with
 * [DONE], or with a receipt and no [DONE] (veil-node's end of a stream it
 * could not finish, e.g. its client fell behind: an error event, then a
 * receipt for what it generated; sealed, the error is inside the final
 * chunk): a node that vouches for the tokens it generated is billed for
 * them. */
static bool stream_billable(const struct gw_relay *r, int rc)
{
	return rc == 0 && gw_framer_pending(&r->fr) == 0 && !r->after_receipt &&
	       (r->done_seen || r->receipt_seen);
}

static void reply_timeout(struct gw_relay *r)
{
	reply_error(r, 504, "server_error", "upstream_timeout",
		    "the node did not complete the answer within the gateway's upstream "
		    "timeout");
}

/* The end of a detached relay's answer: its receipt is checked and billed
 * as any other (settle; nothing is sent), or it ended without one. */
static void detached_done(struct gw_relay *r, int rc, int status)
{
	struct gw *g = r->g;
	uint8_t d[32];
	unsigned l = 32;

	if (g->m.relays_detached_active)
		g->m.relays_detached_active--;
	if (r->sse ? stream_billable(r, rc) : rc == 0 && status == 200) {
		if (md_start(r) < 0) {
			g->m.usage_failed++;
			VEIL_ERROR(GW_MOD, "request %llu: out of memory; detached answer not billed",
				   (unsigned long long)r->req_id);
			return;
		}
		EVP_DigestFinal_ex(r->md, d, &l);
		settle(r, d);
		return;
	}
	VEIL_WARN(GW_MOD, "request %llu: the detached answer of node %s ended without a "
		  "receipt to bill (%s)", (unsigned long long)r->req_id,
		  r->node ? r->node->id : "?",
		  rc < 0 ? veil_strerror(rc) : status != 200 ? "not a 200" : "no [DONE]");
}

static void up_done(void *arg, int rc, int status, const uint8_t *body, size_t len)
{
	struct gw_relay *r = arg;
	struct gw *g = r->g;
	struct gw_node *n = r->node;

	(void)body;
	(void)len;
	r->call = NULL;
	/* hconn reports 0 when the body broke after the head: the node did
	 * answer (not "unreachable", and not a request to run again) */
	if (!status)
		status = r->up_status;
	r->up_ns += veil_now_ns() - r->up_start_ns;
	if (!r->req && !r->detached) {
		drop_node(r);
		relay_maybe_free(r);
		return;
	}
	if (node_fault(rc, status)) /* passive health: out of rotation now */
		gw_node_failed(g, n, rc == VEIL_EBADMSG ? "TLS key does not match the pin"
				     : rc == VEIL_EFORMAT ? "malformed HTTP answer"
				     : status ? "the answer broke off" : "connection failed");
	if (rc == VEIL_ETIMEDOUT) {
		g->m.upstream_timeouts++;
		VEIL_WARN(GW_MOD, "request %llu: node %s did not answer within %u ms",
			  (unsigned long long)r->req_id, n->id, g->o.upstream_timeout_ms);
		/* One long answer is the client's; --unhealthy-after of them in
		 * a row, with nothing answered between, is a node that accepts
		 * work and never finishes it (its /readyz may still be fine). */
		if (++n->answer_timeouts >= g->o.unhealthy_after)
			gw_node_failed(g, n, "answers timed out in a row");
	} else if (rc == 0) {
		n->answer_timeouts = 0;
	}
	if (r->detached) {
		detached_done(r, rc, status);
		drop_node(r);
		relay_maybe_free(r);
		return;
	}
	if (retryable(r, rc, status)) {
		g->m.retries++;
		VEIL_INFO(GW_MOD, "request %llu: node %s %s; retrying on another node",
			  (unsigned long long)veil_http_req_id(r->req), n->id,
			  rc == 0 ? "is busy" : "failed before the client saw a byte");
		gw_node_unref(r->tried);
		r->tried = n;
		gw_node_ref(n);
		drop_node(r);
		veil_buf_reset(&r->resp);
		relay_try(r);
		return;
	}
	if (r->sse) {
		if (stream_billable(r, rc)) {
			uint8_t d[32];
			unsigned l = 32;

			EVP_DigestFinal_ex(r->md, d, &l);
			settle(r, d);
		} else if (r->error_seen && rc == 0) {
			/* the node ended its stream with its own error event */
			veil_http_stream_end(r->req);
			r->req = NULL;
		} else if (r->started) {
			VEIL_WARN(GW_MOD, "request %llu: stream from node %s cut (%s)",
				  (unsigned long long)veil_http_req_id(r->req), n->id,
				  rc < 0 ? veil_strerror(rc) : "ended without [DONE]");
			if (rc == VEIL_ETIMEDOUT)
				stream_cut(r, "upstream_timeout",
					   "the node's answer took longer than the gateway's "
					   "upstream timeout");
			else
				stream_cut(r, "upstream_stream_cut",
					   "the node's stream broke before the answer was complete");
		} else if (rc == VEIL_ETIMEDOUT) {
			reply_timeout(r);
		} else {
			reply_error(r, 502, "server_error", "upstream_error",
				    "the node's stream ended before it began");
		}
	} else if (rc < 0) {
		if (rc == VEIL_ETIMEDOUT)
			reply_timeout(r);
		else if (rc == VEIL_ERANGE)
			reply_error(r, 502, "server_error", "upstream_too_large",
				    "the node's answer is too large");
		else if (r->sealed && status == 0)
			reply_error(r, 503, NULL, "node_unavailable",
				    "the node this request is sealed to is not reachable; "
				    "fetch reports and seal to another node");
		else
			reply_error(r, 502, "server_error", "upstream_error",
				    status ? "the node's answer broke off"
					   : "no node could be reached");
	} else if (status == 200) {
		uint8_t d[32];

		veil_digest_sha256(r->resp.data ? r->resp.data : (const uint8_t *)"", r->resp.len, d);
		veil_http_add_header(r->req, "X-Veil-Node", n->id);
		if (r->receipt_hdr.len)
			veil_http_add_header(r->req, "X-Veil-Receipt", (const char *)r->receipt_hdr.data);
		if (r->receipt_id[0])
			veil_http_add_header(r->req, "X-Veil-Receipt-Id", r->receipt_id);
		settle(r, d);
	} else {
		/* the node's own error: passed on as it is */
		if (r->retry_after[0])
			veil_http_add_header(r->req, "Retry-After", r->retry_after);
		gw_status(g, status);
		veil_http_reply(r->req, status, r->ctype[0] ? r->ctype : "application/json",
				r->resp.data ? r->resp.data : (const uint8_t *)"", r->resp.len);
		r->req = NULL;
	}
	drop_node(r);
	relay_maybe_free(r);
}

/* The head of the node's answer; a plain answer's receipt header is read
 * here (the header list is complete once the head is). */
static void up_head_receipt(void *arg, struct veil_hconn_call *call, int status)
{
	struct gw_relay *r = arg;
	const char *h;

	up_head(arg, call, status);
	veil_buf_reset(&r->receipt);
	veil_buf_reset(&r->receipt_hdr);
	if (status == 200 && !r->sse && (h = veil_hconn_header(call, "X-Veil-Receipt"))) {
		if (gw_receipt_from_header(h, strlen(h), &r->receipt) < 0)
			veil_buf_reset(&r->receipt);
		/* NUL-terminated; one too long for the cap is not passed on */
		if (veil_buf_append(&r->receipt_hdr, h, strlen(h) + 1) < 0)
			veil_buf_reset(&r->receipt_hdr);
	}
}

static void relay_try(struct gw_relay *r)
{
	struct gw *g = r->g;
	struct gw_node *n;
	struct veil_hconn_request rq = {0};
	char ct[160], mh[VEIL_STORE_MODEL_MAX + 32];
	const char *hdrs[4];
	const char *cth = veil_http_req_header(r->req, "Content-Type");
	int k = 0, rc;

	r->attempts++;
	n = r->sealed ? gw_pick_by_key_id(g, r->key_id)
		      : gw_pick(g, r->model, r->has_aff ? r->aff : NULL, r->tried);
	if (!n) {
		if (r->sealed)
			reply_error(r, 503, NULL, "node_unavailable",
				    "no verified node holds the key this body is sealed to; "
				    "fetch reports and seal to another node");
		else if (r->tried)
			reply_error(r, 503, NULL, "no_node_available",
				    "no other verified, healthy node serves this model");
		else if (!gw_model_available(g, r->model)) {
			bool known = false;

			for (struct gw_node *x = g->nodes; x; x = x->next)
				known |= !strcmp(x->model, r->model);
			if (known)
				reply_error(r, 503, NULL, "no_node_available",
					    "no verified, healthy node serves this model right now");
			else {
				gw_reply_error(g, r->req, 404, "invalid_request_error",
					       "model_not_found", "The model '%.100s' does not exist",
					       r->model);
				r->req = NULL;
			}
		} else
			reply_error(r, 503, NULL, "no_node_available",
				    "no verified, healthy node serves this model right now");
		relay_maybe_free(r);
		return;
	}
	r->node = n;
	gw_node_ref(n);
	n->outstanding++;
	n->requests++;
	r->up_status = 0;
	r->sse = false;
	r->got_bytes = false;
	snprintf(ct, sizeof(ct), "Content-Type: %s", cth ? cth : "application/json");
	hdrs[k++] = ct;
	hdrs[k++] = "Accept: text/event-stream, application/json";
	if (r->sealed) {
		snprintf(mh, sizeof(mh), "X-Veil-Model: %s", r->model);
		hdrs[k++] = mh;
	}
	hdrs[k] = NULL;
	rq.method = "POST";
	rq.path = r->chat ? "/v1/chat/completions" : "/v1/completions";
	rq.headers = hdrs;
	rq.body = r->body; /* the request's: valid until it completes */
	rq.body_len = r->body_len;
	rq.timeout_ms = g->o.upstream_timeout_ms;
	rq.max_response = MAX_RESPONSE;
	rq.on_head = up_head_receipt;
	rq.on_data = up_data;
	rq.on_done = up_done;
	rq.arg = r;
	r->up_start_ns = veil_now_ns();
	r->paused = false;
	if ((rc = gw_up_start(g, n, &rq, &r->call)) < 0) {
		r->call = NULL;
		drop_node(r);
		reply_error(r, 500, NULL, "internal", "the request could not be started");
		relay_maybe_free(r);
	}
}

/* ---- the client ------------------------------------------------------------------ */

/* The client left while the node works on its request.  Its answer may
 * already have reached the client in part (a stream's deltas), so it is
 * read to its end — bounded by --upstream-timeout-ms, in bounded memory:
 * a stream's events are parsed for the receipt and hashed, a plain body
 * only hashed — and its receipt checked and billed like any other (the
 * record is written; nothing is sent).  Cancelling instead would let a
 * client read an answer and close before the receipt: never billed.  The
 * client's request (connection, buffers, body) is let go by the caller. */
static int relay_detach(struct gw_relay *r)
{
	struct gw *g = r->g;

	/* part of a plain body: hashed now, the rest as it comes */
	if (r->resp.len) {
		if (md_start(r) < 0)
			return VEIL_ENOMEM;
		EVP_DigestUpdate(r->md, r->resp.data, r->resp.len);
	}
	veil_buf_free(&r->resp);
	r->detached = true;
	r->was_detached = true;
	g->relays_detached_live++;
	g->m.relays_detached++;
	g->m.relays_detached_active++;
	/* the body is the client request's, freed with it (hconn reads it no
	 * more: veil_hconn_sent) */
	r->body = NULL;
	r->body_len = 0;
	if (r->started) {
		r->started = false;
		if (g->m.streams_active)
			g->m.streams_active--;
	}
	/* no client drain will resume a paused transfer any more */
	if (r->stall_ev)
		evtimer_del(r->stall_ev);
	if (r->paused) {
		r->paused = false;
		veil_hconn_resume(r->call);
	}
	VEIL_INFO(GW_MOD, "request %llu: the client left; the answer of node %s is read to "
		  "its end to bill it", (unsigned long long)r->req_id, r->node->id);
	return 0;
}

static void on_close(struct veil_http_req *req, void *arg)
{
	struct gw_relay *r = arg;
	struct gw *g = r->g;
	bool started = r->started; /* a detach clears it */
	bool room;

	if (r->req != req)
		return;
	/* Detached relays hold no client connection, so --max-conns does not
	 * bound them: at most as many again, beyond that cancelled (logged). */
	room = g->relays_detached_live < g->o.max_conns;

	if (!room && r->call && veil_hconn_sent(r->call))
		VEIL_WARN(GW_MOD, "request %llu: the client left and %u detached answers are "
			  "being read already; cancelled, not billed",
			  (unsigned long long)r->req_id, g->relays_detached_live);
	if (!(room && r->call && veil_hconn_sent(r->call) && relay_detach(r) == 0)) {
		/* the node does not have the request yet: nothing to bill */
		if (r->call) {
			veil_hconn_cancel(r->call);
			r->call = NULL;
		}
		drop_node(r);
	}
	if (started)
		veil_http_stream_end(req);
	else
		veil_http_reply(req, 499, "text/plain", "", 0);
	r->req = NULL;
	relay_maybe_free(r);
}

/* The body's checks (400s); replies itself and returns -1. */
static int validate(struct gw_relay *r)
{
	struct gw *g = r->g;
	struct veil_http_req *req = r->req;
	const uint8_t *body = r->body;
	size_t len = r->body_len;

	if (r->sealed) {
		const char *m = veil_http_req_header(req, "X-Veil-Model");

		if (!m || !gw_model_valid(m, strlen(m))) {
			reply_error(r, 400, NULL, "missing_model",
				    "a sealed request names its model in X-Veil-Model");
			return -1;
		}
		snprintf(r->model, sizeof(r->model), "%s", m);
		if (veil_seal_peek_key_id(body, len, r->key_id) < 0) {
			reply_error(r, 400, NULL, "bad_sealed_body",
				    "the sealed body's header is malformed");
			return -1;
		}
	} else {
		json_t *o = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
		json_t *m = json_object_get(o, "model");

		if (!json_is_object(o)) {
			json_decref(o);
			reply_error(r, 400, NULL, "invalid_json", "the body is not a JSON object");
			return -1;
		}
		if (!json_is_string(m) ||
		    !gw_model_valid(json_string_value(m), json_string_length(m))) {
			json_decref(o);
			reply_error(r, 400, NULL, "missing_model", "'model' must be a string");
			return -1;
		}
		snprintf(r->model, sizeof(r->model), "%s", json_string_value(m));
		json_decref(o);
		if (g->o.affinity) {
			const char *ah = veil_http_req_header(req, "X-Veil-Affinity");

			if (ah && *ah) {
				veil_digest_sha256(ah, strlen(ah), r->aff);
				r->has_aff = true;
			} else {
				r->has_aff = gw_affinity_key(body, len, r->aff);
			}
		}
	}
	veil_digest_sha256(body, len, r->req_sha);
	return 0;
}

/* The end of gw_auth's or gw_rate's wait: true when the relay is over
 * (the client left, or the answer is the refusal, sent here). */
static bool auth_refused(struct gw_relay *r, int status, int retry_after, const char *code,
			 const char *msg)
{
	r->auth_pending = false;
	if (r->req && status) {
		if (retry_after > 0)
			veil_http_set_retry_after(r->req, (unsigned)retry_after);
		/* OpenAI's quota error has its own type; the rest take the
		 * status's (rate_limit_error for 429) */
		reply_error(r, status,
			    code && !strcmp(code, "insufficient_quota") ? "insufficient_quota" : NULL,
			    code, msg);
	}
	if (r->req && !status)
		return false;
	relay_maybe_free(r);
	return true;
}

/* Limits taken (or none to take): relay. */
static void rate_done(void *arg, int status, const struct gw_key *k, int retry_after,
		      const char *code, const char *msg)
{
	struct gw_relay *r = arg;

	(void)k;
	if (!auth_refused(r, status, retry_after, code, msg))
		relay_try(r);
}

/* The order of the answers: the key first (401 whatever the body: a client
 * with a bad key learns that, not what else is wrong), then the body (400),
 * then the route (404 model_not_found, 503 no_node_available /
 * node_unavailable), and only then the key's limits (429): a request
 * refused for its body or its route takes nothing from the requests/min or
 * tokens/min window.  (413 comes before all of them: the HTTP server
 * refuses a body over its cap before the handler runs.) */
static void auth_done(void *arg, int status, const struct gw_key *k, int retry_after,
		      const char *code, const char *msg)
{
	struct gw_relay *r = arg;
	struct gw *g = r->g;

	if (auth_refused(r, status, retry_after, code, msg))
		return;
	r->key = *k;
	if (validate(r) < 0) {
		relay_maybe_free(r);
		return;
	}
	/* the same test relay_try's pick makes: a request that would find
	 * no node is refused (by relay_try's answers) before any take */
	if (r->sealed ? !gw_pick_by_key_id(g, r->key_id) : !gw_model_available(g, r->model)) {
		relay_try(r);
		return;
	}
	r->auth_pending = true;
	gw_rate(g, &r->key, rate_done, r);
}

static void h_completion(struct veil_http_req *req, void *arg, bool chat)
{
	struct gw *g = arg;
	const char *ct = veil_http_req_header(req, "Content-Type");
	struct gw_relay *r;
	size_t len;
	const uint8_t *body = veil_http_req_body(req, &len);

	if (!g->ready || g->stopping) {
		gw_reply_error(g, req, 503, NULL, "not_ready", "the gateway is not ready");
		return;
	}
	if (!veil_http_req_header(req, "Authorization")) {
		/* before looking at the body: no key, no further answer */
		gw_reply_error(g, req, 401, NULL, "missing_api_key",
			       "You didn't provide an API key (Authorization: Bearer "
			       "sk-veil-...)");
		return;
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		gw_reply_error(g, req, 503, NULL, "overloaded", "out of memory");
		return;
	}
	r->g = g;
	r->req = req;
	r->req_id = veil_http_req_id(req);
	r->chat = chat;
	r->body = body;
	r->body_len = len;
	r->t0_ns = veil_now_ns();
	gw_framer_init(&r->fr, 4u << 20);
	r->receipt = (struct veil_buf)VEIL_BUF_INIT(VEIL_STORE_RECEIPT_MAX);
	r->receipt_hdr = (struct veil_buf)VEIL_BUF_INIT(2 * VEIL_STORE_RECEIPT_MAX);
	r->held = (struct veil_buf)VEIL_BUF_INIT(1u << 20);
	/* a plaintext answer: wiped before it is freed */
	r->resp = (struct veil_buf)VEIL_BUF_SECRET_INIT(MAX_RESPONSE);
	r->next = g->relays;
	if (g->relays)
		g->relays->prev = r;
	g->relays = r;
	g->m.relays_active++;
	r->sealed = ct && !strncasecmp(ct, SEALED_TYPE, strlen(SEALED_TYPE));
	veil_http_req_on_close(req, on_close, r);
	r->auth_pending = true;
	/* the key is looked up only (no take): auth_done checks the body and
	 * the route, then takes from the key's limits (gw_rate) */
	gw_auth(g, req, auth_done, r);
}

static void h_chat(struct veil_http_req *req, void *arg)
{
	h_completion(req, arg, true);
}

static void h_cmpl(struct veil_http_req *req, void *arg)
{
	h_completion(req, arg, false);
}

void gw_relay_routes(struct gw *g)
{
	veil_http_route(g->srv, "POST", "/v1/chat/completions", false, h_chat, g);
	veil_http_route(g->srv, "POST", "/v1/completions", false, h_cmpl, g);
}

void gw_relay_abort_all(struct gw *g, const char *why)
{
	struct gw_relay *r, *next;

	for (r = g->relays; r; r = next) {
		next = r->next;
		/* A usage record on its way to the writer (or being checked for
		 * it) is committed even at exit: its answer is let complete when
		 * the writer returns (the loop runs on for a while after this),
		 * rather than told it failed and billed all the same. */
		if (r->usage)
			continue;
		if (!r->req && !r->detached)
			continue;
		if (r->call) {
			veil_hconn_cancel(r->call);
			r->call = NULL;
		}
		if (r->detached) {
			/* not billed: the node's answer had not ended */
			VEIL_WARN(GW_MOD, "request %llu: detached answer of node %s abandoned (%s); "
				  "not billed", (unsigned long long)r->req_id,
				  r->node ? r->node->id : "?", why);
			r->detached = false;
			if (g->m.relays_detached_active)
				g->m.relays_detached_active--;
		}
		drop_node(r);
		if (!r->req) {
			relay_maybe_free(r);
			continue;
		}
		if (r->started)
			stream_cut(r, "shutting_down", why);
		else
			reply_error(r, 503, NULL, "shutting_down", why);
		relay_maybe_free(r);
	}
}

void gw_relay_when_detached_done(struct gw *g, void (*cb)(void *), void *arg)
{
	if (!g->relays_detached_live) {
		g->detached_idle_cb = NULL;
		cb(arg);
		return;
	}
	g->detached_idle_cb = cb;
	g->detached_idle_arg = arg;
}
