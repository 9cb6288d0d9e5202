/* End-to-end speed: veil-proxy + veil-gateway + veil-node against the node
 * alone, both measured in the same run (never a pass/fail test).
 * scripts/bench_e2e.sh starts the servers and calls the two modes:
 *
 *   e2e_bench latency --ours URL --ref URL --model-name NAME [--model PATH]
 *                     [--gateway URL --node URL] [--max-tokens N] [--reps N]
 *                     [--prompt S] [--insecure] [-v]
 *     One streamed POST /v1/completions at a time (the same body: a fixed
 *     prompt, max_tokens N, temperature 0, stream, include_usage), taking
 *     turns between the sides back to back, one kept-alive connection
 *     each, in a new order every round (drift in the machine's load hits
 *     all alike, and no side always follows the same one).  (A pause
 *     between requests, so that the engines' workers, which spin 2 ms after
 *     a job, are asleep for every request, was tried: on a loaded 2-core
 *     machine their wake-up then dominates and varies by milliseconds.)
 *       ours  a veil-proxy: the client speaks plaintext to it; the proxy
 *             seals, opens every chunk and verifies the receipt.  Every
 *             answer must carry `X-Veil-Verified: stream` and the receipt
 *             chunk (X-Veil-Receipt-Chunk: 1) with "veil_verified": true;
 *       ref   a veil-node with --allow-plaintext: the same JSON body,
 *             unsealed; its receipt chunk ("object": "veil.receipt") must
 *             come.
 *     With --gateway and --node, two more sides split the difference (the
 *     breakdown, on stderr and as "side" lines): the request sealed by this
 *     client (veil-seal/1 to keys.x25519_hpke of the node's report, which a
 *     real client verifies first; here it is only read) and posted
 *       gw    to the gateway (Authorization: Bearer $VEIL_API_KEY,
 *             X-Veil-Model), which relays it to the node;
 *       node  straight to that node;
 *     each chunk opened here; the node's `event: veil.receipt` must come
 *     (not verified here: no keys).
 *     Medians over --reps of:
 *       ttft    from just before the request is sent (before sealing) to
 *               the first token's text at the client;
 *       tok/s   completion tokens (the usage chunk) / the time from the
 *               request to the last token's text;
 *       done    the time to `data: [DONE]` (through the proxy sent only
 *               after the receipt verified);
 *       decode  tokens after the first chunk's / the time from the first
 *               chunk to the last (a small model's answer comes in a few
 *               large chunks: the node's loop coalesces text while a write
 *               is pending; runs of one chunk are left out).  Chunks carry
 *               no token counts: with --model PATH the same request is
 *               generated once in this process (not timed) to map the
 *               answer's text to tokens (same text, checked); without it
 *               decode is n/a.
 *     All sides must give the same text (greedy).
 *
 *   e2e_bench concurrent --ours URL --ref URL --model-name NAME --clients K
 *                        [--rounds R] [--max-tokens N] [--prompt S]
 *                        [--insecure] [-v]
 *     K streamed requests at once (one thread and one kept-alive connection
 *     each, warmed up first), rounds alternating between ours and ref,
 *     back to back:
 *     aggregate completion tokens / the time from the first send to the
 *     last [DONE] (through the proxy: the last receipt verified); median of
 *     R rounds each.  Every round must make as many completion tokens as
 *     the reference's warm-up round (same work on both sides); one that
 *     does not is said and left out.
 *
 * Output (stdout): "key value..." lines for the script to format into
 * BENCH| lines:
 *   latency:    tokens N, reps_ok OURS REF, ttft_ms OURS REF,
 *               tok_s OURS REF, done_ms OURS REF, decode_tok_s OURS REF,
 *               and per side "side NAME OK TTFT_MS LAST_MS DONE_MS"
 *   concurrent: agg_tok_s OURS REF
 * A value 0 means n/a (a failed request, or texts that differ).
 * Diagnostics (per-run details with -v) on stderr. */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "veil/base.h"
#include "veil/engine.h"
#include "veil/hpke.h"
#include "veil/http.h"
#include "veil/seal.h"

#define DEFAULT_PROMPT "Once upon a time, in a small village by the sea, there lived"
#define MAX_REPS 1000
#define MAX_CLIENTS 256
#define MAX_SIDES 4

struct opts {
	const char *ours, *ref, *gateway, *node, *model_name, *prompt, *model;
	int max_tokens, reps, clients, rounds;
	bool insecure, verbose;
};

static int n_fail_msgs;

static void die(const char *what)
{
	fprintf(stderr, "e2e_bench: %s\n", what);
	exit(1);
}

/* ==================================================================== */
/* one streamed request                                                 */
/* ==================================================================== */

enum kind {
	K_PROXY,   /* plaintext to a veil-proxy, verified there */
	K_PLAIN,   /* plaintext to a node that allows it */
	K_SEALED,  /* sealed here, to a node or through a gateway */
};

struct side {
	const char *name;
	const char *url;       /* base URL, without /v1 */
	enum kind kind;
	const char *api_key;   /* K_SEALED through a gateway */
	uint8_t pub[VEIL_HPKE_NPK];
};

struct mark {
	uint64_t t;      /* arrival (monotonic ns) */
	size_t cum;      /* text bytes received so far, this chunk included */
};

struct stream {
	enum kind kind;
	struct veil_seal *seal;             /* K_SEALED: opens the response */
	struct veil_http_sse_parser outer;  /* the HTTP body */
	struct veil_http_sse_parser inner;  /* K_SEALED: one opened chunk */
	struct veil_buf text;
	struct mark *marks;
	size_t nmarks, capmarks;
	long completion_tokens;
	bool finished, done, failed, receipt, verified_hdr;
	uint64_t t_done;
};

static int on_event(void *arg, const char *event, const char *data, size_t len,
		    const char *id)
{
	struct stream *s = arg;
	json_t *o, *c0, *u, *fr;
	const char *txt = NULL, *obj;

	(void)id;
	if (!strcmp(event, "error")) {
		fprintf(stderr, "e2e_bench: error event: %.*s\n", (int)VEIL_MIN(len, 300),
			data);
		s->failed = true;
		return 0;
	}
	if (!strcmp(event, "veil.receipt")) {
		/* a sealed stream's: outside the sealed body */
		if (s->kind == K_SEALED)
			s->receipt = true;
		return 0;
	}
	if (len == 6 && !memcmp(data, "[DONE]", 6)) {
		s->done = true;
		s->t_done = veil_now_ns();
		return 0;
	}
	if (!(o = json_loadb(data, len, 0, NULL))) {
		s->failed = true;
		return 0;
	}
	obj = json_string_value(json_object_get(o, "object"));
	if (obj && !strcmp(obj, "veil.receipt")) {
		/* the proxy's receipt chunk (checked by it before [DONE]), or
		 * the node's own signed receipt on a plaintext stream */
		if (json_is_object(json_object_get(o, "veil_receipt")) &&
		    (s->kind != K_PROXY || json_is_true(json_object_get(o, "veil_verified"))))
			s->receipt = true;
		json_decref(o);
		return 0;
	}
	c0 = json_array_get(json_object_get(o, "choices"), 0);
	if (c0) {
		txt = json_string_value(json_object_get(c0, "text"));
		if (!txt)
			txt = json_string_value(json_object_get(json_object_get(c0, "delta"),
								"content"));
		fr = json_object_get(c0, "finish_reason");
		if (json_is_string(fr))
			s->finished = true;
	}
	if (txt && *txt) {
		if (s->nmarks == s->capmarks) {
			size_t nc = s->capmarks ? 2 * s->capmarks : 256;
			struct mark *m = realloc(s->marks, nc * sizeof(*m));

			if (!m)
				die("out of memory");
			s->marks = m;
			s->capmarks = nc;
		}
		veil_buf_append_str(&s->text, txt);
		s->marks[s->nmarks++] = (struct mark){veil_now_ns(), s->text.len};
	}
	u = json_object_get(o, "usage");
	if (json_is_object(u))
		s->completion_tokens =
			(long)json_integer_value(json_object_get(u, "completion_tokens"));
	json_decref(o);
	return 0;
}

/* The HTTP body: plaintext events, or (K_SEALED) one sealed chunk
 * (base64) per event whose plaintext is a whole event of its own. */
static int on_outer(void *arg, const char *event, const char *data, size_t len,
		    const char *id)
{
	struct stream *s = arg;
	uint8_t *ct;
	size_t clen, plen;
	bool fin;
	int rc;

	if (s->kind != K_SEALED || strcmp(event, "message") ||
	    (len == 6 && !memcmp(data, "[DONE]", 6)))
		return on_event(arg, event, data, len, id);
	if (!(ct = malloc(len + 4)))
		die("out of memory");
	if ((rc = veil_b64_decode(data, len, 0, ct, len + 4, &clen)) < 0 ||
	    (rc = veil_seal_open_chunk(s->seal, ct, clen, &plen, &fin)) < 0) {
		fprintf(stderr, "e2e_bench: sealed chunk: %s\n", veil_strerror(rc));
		s->failed = true;
	} else {
		veil_http_sse_feed(&s->inner, ct, plen);
	}
	free(ct);
	return 0;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
	struct stream *s = arg;

	if (veil_http_sse_feed(&s->outer, (const uint8_t *)p, sz * nm) < 0)
		return 0;
	return sz * nm;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *arg)
{
	struct stream *s = arg;
	size_t n = sz * nm;
	static const char want[] = "x-veil-verified: stream";

	if (n >= sizeof(want) - 1 && !strncasecmp(p, want, sizeof(want) - 1))
		s->verified_hdr = true;
	return n;
}

/* Frees what s holds; a zeroed stream is fine. */
static void stream_free(struct stream *s)
{
	veil_seal_free(s->seal);
	veil_http_sse_free(&s->outer);
	veil_http_sse_free(&s->inner);
	veil_buf_free(&s->text);
	free(s->marks);
	memset(s, 0, sizeof(*s));
}

static void stream_reset(struct stream *s, enum kind kind)
{
	stream_free(s);
	s->kind = kind;
	s->text = (struct veil_buf)VEIL_BUF_INIT(16u << 20);
	veil_http_sse_init(&s->outer, 0, 0, on_outer, s);
	veil_http_sse_init(&s->inner, 0, 0, on_event, s);
}

static char *completion_body(const struct opts *o)
{
	json_t *b = json_pack("{s:s, s:s, s:i, s:i, s:b, s:{s:b}}", "model", o->model_name,
			      "prompt", o->prompt, "max_tokens", o->max_tokens,
			      "temperature", 0, "stream", 1, "stream_options",
			      "include_usage", 1);
	char *s = b ? json_dumps(b, JSON_COMPACT) : NULL;

	json_decref(b);
	if (!s)
		die("out of memory");
	return s;
}

static void tls_opts(const struct opts *o, CURL *h)
{
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (o->insecure) {
		/* the nodes' and the gateway's self-signed certificates
		 * (loopback; the proxy pins the attested key itself) */
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

/* POSTs body to sd's /v1/completions on the handle h (kept alive between
 * calls) and reads the stream into s; *t0 just before sealing / sending. */
static int stream_run(const struct opts *o, CURL *h, const struct side *sd,
		      const char *body, struct stream *s, uint64_t *t0)
{
	struct veil_buf sb = VEIL_BUF_INIT(1u << 20);
	struct curl_slist *hd = NULL;
	char full[512], hv[512];
	long status = 0;
	CURLcode cc;
	bool sealed = sd->kind == K_SEALED;

	stream_reset(s, sd->kind);
	snprintf(full, sizeof(full), "%s/v1/completions", sd->url);
	hd = curl_slist_append(hd, "Accept: text/event-stream");
	if (sd->kind == K_PROXY)
		hd = curl_slist_append(hd, "X-Veil-Receipt-Chunk: 1");
	if (sealed) {
		hd = curl_slist_append(hd, "Content-Type: application/veil-sealed");
		snprintf(hv, sizeof(hv), "X-Veil-Model: %s", o->model_name);
		hd = curl_slist_append(hd, hv);
		if (sd->api_key) {
			snprintf(hv, sizeof(hv), "Authorization: Bearer %s", sd->api_key);
			hd = curl_slist_append(hd, hv);
		}
	} else {
		hd = curl_slist_append(hd, "Content-Type: application/json");
	}
	curl_easy_setopt(h, CURLOPT_URL, full);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, s);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
	tls_opts(o, h);
	*t0 = veil_now_ns();
	if (sealed &&
	    veil_seal_request(sd->pub, (const uint8_t *)body, strlen(body), &sb, &s->seal) < 0)
		die("veil_seal_request failed");
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(sealed ? sb.len : strlen(body)));
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, sealed ? (const char *)sb.data : body);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hd);
	veil_buf_free(&sb);
	if (cc != CURLE_OK || status != 200 || s->failed || !s->done || !s->finished ||
	    !s->receipt || s->completion_tokens <= 0 || s->nmarks == 0 ||
	    (sd->kind == K_PROXY && !s->verified_hdr)) {
		/* a dead server fails every request: say it a few times only */
		if (__atomic_fetch_add(&n_fail_msgs, 1, __ATOMIC_RELAXED) < 5)
			fprintf(stderr, "e2e_bench: %s: request failed: curl %d (%s), HTTP %ld"
					"%s%s%s%s%s\n", sd->name, (int)cc, curl_easy_strerror(cc),
				status, s->failed ? ", bad stream" : "",
				s->done ? "" : ", no [DONE]",
				s->receipt ? "" : ", no (verified) receipt",
				s->completion_tokens > 0 ? "" : ", no usage",
				sd->kind == K_PROXY && !s->verified_hdr ? ", no X-Veil-Verified" : "");
		return -1;
	}
	return 0;
}

static size_t on_collect(char *p, size_t sz, size_t nm, void *arg)
{
	return veil_buf_append(arg, p, sz * nm) < 0 ? 0 : sz * nm;
}

/* keys.x25519_hpke of the node's attestation report (read, not verified:
 * the proxy side is the one that verifies); -1 if there is none. */
static int fetch_hpke_key(const struct opts *o, const char *url, uint8_t pub[VEIL_HPKE_NPK])
{
	struct veil_buf body = VEIL_BUF_INIT(4u << 20);
	CURL *h = curl_easy_init();
	char full[512];
	long status = 0;
	json_t *r = NULL;
	const char *hex;
	size_t n = 0;
	int rc = -1;

	if (!h)
		die("out of memory");
	snprintf(full, sizeof(full), "%s/v1/attestation/report", url);
	curl_easy_setopt(h, CURLOPT_URL, full);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	tls_opts(o, h);
	if (curl_easy_perform(h) == CURLE_OK &&
	    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200)
		r = json_loadb((const char *)body.data, body.len, 0, NULL);
	hex = json_string_value(json_object_get(json_object_get(r, "keys"), "x25519_hpke"));
	if (hex && veil_hex_decode(hex, strlen(hex), pub, VEIL_HPKE_NPK, &n) >= 0 &&
	    n == VEIL_HPKE_NPK)
		rc = 0;
	else
		fprintf(stderr, "e2e_bench: no keys.x25519_hpke from %s (HTTP %ld)\n", full, status);
	json_decref(r);
	veil_buf_free(&body);
	curl_easy_cleanup(h);
	return rc;
}

/* ==================================================================== */
/* latency                                                              */
/* ==================================================================== */

struct run {
	double ttft_ms, last_ms, done_ms, tok_s, decode_tok_s;  /* decode 0: n/a */
	size_t cum0, cum1, nchunks;  /* text bytes after the first and last chunk */
};

/* Where the tokens end in the answer's text: the same request (prompt
 * tokens as the node makes them: BOS if the model wants one, then the text
 * with special tokens off; greedy) generated once in this process (not
 * timed).  tok_cum[i] = text bytes after token i+1, for the tokens that
 * end on a text boundary. */
struct tokmap {
	size_t *cum;
	long *ntok;
	size_t n, cap;
	long tokens;
	struct veil_buf text;
};

static void map_cb(const struct veil_engine_event *ev, void *user)
{
	struct tokmap *m = user;

	if (ev->token >= 0)
		m->tokens++;
	if (!ev->text_len)
		return;
	veil_buf_append(&m->text, ev->text, ev->text_len);
	if (m->n < m->cap) {
		m->cum[m->n] = m->text.len;
		m->ntok[m->n++] = m->tokens;
	}
}

static int tokmap_build(const struct opts *o, struct tokmap *m)
{
	struct veil_engine_params ep;
	struct veil_engine *e = NULL;
	struct veil_engine_request rq = {0};
	const struct veil_tok *tok;
	enum veil_finish fin;
	int32_t ids[4096];
	size_t n = 0, got = 0;
	int rc;

	m->cap = (size_t)o->max_tokens + 8;
	m->cum = calloc(m->cap, sizeof(*m->cum));
	m->ntok = calloc(m->cap, sizeof(*m->ntok));
	m->text = (struct veil_buf)VEIL_BUF_INIT(16u << 20);
	if (!m->cum || !m->ntok)
		die("out of memory");
	veil_engine_params_default(&ep);
	ep.n_threads = 1;
	ep.max_batch = 1;
	if ((rc = veil_engine_open(o->model, &ep, &e)) < 0)
		goto out;
	tok = veil_engine_tok(e);
	if (veil_tok_add_bos(tok) && veil_tok_bos(tok) >= 0)
		ids[n++] = veil_tok_bos(tok);
	if ((rc = veil_tok_encode(tok, o->prompt, strlen(o->prompt), false, false, ids + n,
				  VEIL_ARRAY_LEN(ids) - n, &got)) < 0)
		goto out;
	rq.prompt = ids;
	rq.n_prompt = n + got;
	veil_sampler_params_default(&rq.sampling);
	rq.sampling.temperature = 0;
	rq.sampling.repeat_last_n = 64;
	rq.max_tokens = o->max_tokens;
	rq.cb = map_cb;
	rq.user = m;
	rc = veil_engine_generate(e, &rq, &fin, NULL);
out:
	if (rc < 0)
		fprintf(stderr, "e2e_bench: in-process run of %s failed (%s): decode n/a\n",
			o->model, veil_strerror(rc));
	veil_engine_free(e);
	return rc;
}

static void tokmap_free(struct tokmap *m)
{
	free(m->cum);
	free(m->ntok);
	veil_buf_free(&m->text);
	memset(m, 0, sizeof(*m));
}

/* Tokens behind `cum` bytes of the answer; -1 if not on a token boundary. */
static long tokens_at(const struct tokmap *m, size_t cum)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->cum[i] == cum)
			return m->ntok[i];
	return -1;
}

static void figures(const struct stream *s, uint64_t t0, struct run *r)
{
	r->ttft_ms = (double)(s->marks[0].t - t0) / 1e6;
	r->last_ms = (double)(s->marks[s->nmarks - 1].t - t0) / 1e6;
	r->done_ms = (double)(s->t_done - t0) / 1e6;
	r->tok_s = r->last_ms > 0 ? (double)s->completion_tokens * 1e3 / r->last_ms : 0;
	r->decode_tok_s = 0;
	r->cum0 = s->marks[0].cum;
	r->cum1 = s->marks[s->nmarks - 1].cum;
	r->nchunks = s->nmarks;
}

/* Decode of a run: the tokens after the first chunk's over the time from
 * the first chunk to the last (0: n/a, one chunk only). */
static void decode_of(struct run *r, const struct tokmap *m)
{
	long k0 = tokens_at(m, r->cum0), k1 = tokens_at(m, r->cum1);

	r->decode_tok_s = 0;
	if (r->nchunks >= 2 && k0 > 0 && k1 > k0 && r->last_ms > r->ttft_ms)
		r->decode_tok_s = (double)(k1 - k0) * 1e3 / (r->last_ms - r->ttft_ms);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median of the field at `off` of n runs; 0 when none.  Zeros (n/a) are
 * left out when skip0. */
static double median(const struct run *runs, size_t n, size_t off, bool skip0)
{
	double v[MAX_REPS];
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		double x = *(const double *)((const char *)&runs[i] + off);

		if (!skip0 || x > 0)
			v[k++] = x;
	}
	if (!k)
		return 0;
	qsort(v, k, sizeof(*v), cmp_double);
	return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

static int run_latency(const struct opts *o)
{
	struct side sides[MAX_SIDES] = {{"ours", o->ours, K_PROXY, NULL, {0}},
					{"ref", o->ref, K_PLAIN, NULL, {0}}};
	int ns = 2;
	struct run *runs[MAX_SIDES] = {0};
	size_t nruns[MAX_SIDES] = {0}, ndec[MAX_SIDES] = {0};
	struct tokmap map = {0};
	bool have_map = false;
	struct stream s = {0}, warm[MAX_SIDES] = {{0}};
	CURL *h[MAX_SIDES] = {0};
	char *body = completion_body(o);
	uint64_t t0;
	bool off[MAX_SIDES] = {0};
	unsigned seed = 1;
	const size_t off_ttft = offsetof(struct run, ttft_ms),
		     off_last = offsetof(struct run, last_ms),
		     off_tok = offsetof(struct run, tok_s), off_done = offsetof(struct run, done_ms),
		     off_dec = offsetof(struct run, decode_tok_s);

	if (o->gateway && o->node) {
		sides[ns] = (struct side){"gw", o->gateway, K_SEALED, getenv("VEIL_API_KEY"), {0}};
		sides[ns + 1] = (struct side){"node", o->node, K_SEALED, NULL, {0}};
		if (fetch_hpke_key(o, o->node, sides[ns].pub) == 0) {
			memcpy(sides[ns + 1].pub, sides[ns].pub, VEIL_HPKE_NPK);
			ns += 2;
		}
	}
	for (int k = 0; k < ns; k++) {
		runs[k] = calloc((size_t)o->reps, sizeof(struct run));
		if (!(h[k] = curl_easy_init()) || !runs[k])
			die("out of memory");
	}
	/* warm-up on each (connections, TLS, the engine's buffers) and the
	 * texts, which must be the node's (ref, warm[1]).  A breakdown side
	 * that fails is left out; ours or ref failing ends the measurement. */
	for (int k = 0; k < ns; k++) {
		int j = k == 0 ? 1 : k == 1 ? 0 : k;  /* ref first */
		bool same;

		if (stream_run(o, h[j], &sides[j], body, &warm[j], &t0) < 0) {
			off[j] = true;
			continue;
		}
		same = j == 1 || (!off[1] && warm[j].text.len == warm[1].text.len &&
				  !memcmp(warm[j].text.data, warm[1].text.data, warm[j].text.len) &&
				  warm[j].completion_tokens == warm[1].completion_tokens);
		if (!same) {
			fprintf(stderr, "e2e_bench: %s: the answer differs from the node's "
					"(%zu vs %zu bytes, %ld vs %ld tokens)\n", sides[j].name,
				warm[j].text.len, warm[1].text.len, warm[j].completion_tokens,
				warm[1].completion_tokens);
			off[j] = true;
		}
	}
	for (int k = 2; k < ns; k++)
		if (off[k])
			fprintf(stderr, "e2e_bench: breakdown side %s left out\n", sides[k].name);
	if (off[0] || off[1]) {
		printf("reps_ok 0 0\n");
		goto out;
	}
	for (int i = 0; i < o->reps; i++) {
		int order[MAX_SIDES];

		/* a new order every round (fixed seed: the same sequence every
		 * run), so that no side always follows the same other side */
		for (int j = 0; j < ns; j++)
			order[j] = j;
		for (int j = ns - 1; j > 0; j--) {
			int x = (int)(rand_r(&seed) % (unsigned)(j + 1)), t = order[j];

			order[j] = order[x];
			order[x] = t;
		}
		for (int j = 0; j < ns; j++) {
			int k = order[j];
			struct run r;

			if (off[k])
				continue;
			if (stream_run(o, h[k], &sides[k], body, &s, &t0) < 0)
				continue;
			if (s.text.len != warm[1].text.len ||
			    memcmp(s.text.data, warm[1].text.data, s.text.len)) {
				fprintf(stderr, "e2e_bench: %s: the text changed\n", sides[k].name);
				continue;
			}
			figures(&s, t0, &r);
			runs[k][nruns[k]++] = r;
			if (o->verbose)
				fprintf(stderr, "e2e_bench: %-4s ttft %7.3f ms, last token %7.3f ms, "
						"[DONE] %7.3f ms, %3zu chunks\n", sides[k].name,
					r.ttft_ms, r.last_ms, r.done_ms, s.nmarks);
		}
	}
	if (o->model && tokmap_build(o, &map) == 0) {
		if (map.text.len == warm[1].text.len &&
		    !memcmp(map.text.data, warm[1].text.data, map.text.len))
			have_map = true;
		else
			fprintf(stderr, "e2e_bench: the in-process answer differs from the node's "
					"(%zu vs %zu bytes): decode n/a\n", map.text.len,
				warm[1].text.len);
	}
	for (int k = 0; k < ns; k++)
		for (size_t i = 0; have_map && i < nruns[k]; i++) {
			decode_of(&runs[k][i], &map);
			ndec[k] += runs[k][i].decode_tok_s > 0;
		}
	fprintf(stderr, "e2e_bench: %ld tokens per answer, %d rounds; medians (decode: in how "
			"many runs the answer came in more than one chunk%s):\n",
		warm[1].completion_tokens, o->reps, have_map ? "" : "; n/a without --model");
	fprintf(stderr, "e2e_bench:   side  runs  ttft ms  last token ms  [DONE] ms  tok/s  "
			"decode tok/s\n");
	for (int k = 0; k < ns; k++)
		if (!off[k])
			fprintf(stderr, "e2e_bench:   %-4s  %4zu  %7.3f  %13.3f  %9.3f  %5.0f  %6.0f (%zu)\n",
				sides[k].name, nruns[k], median(runs[k], nruns[k], off_ttft, false),
				median(runs[k], nruns[k], off_last, false),
				median(runs[k], nruns[k], off_done, false),
				median(runs[k], nruns[k], off_tok, false),
				median(runs[k], nruns[k], off_dec, true), ndec[k]);
	printf("tokens %ld\n", warm[1].completion_tokens);
	printf("reps_ok %zu %zu\n", nruns[0], nruns[1]);
	printf("ttft_ms %.3f %.3f\n", median(runs[0], nruns[0], off_ttft, false),
	       median(runs[1], nruns[1], off_ttft, false));
	printf("tok_s %.1f %.1f\n", median(runs[0], nruns[0], off_tok, false),
	       median(runs[1], nruns[1], off_tok, false));
	printf("done_ms %.3f %.3f\n", median(runs[0], nruns[0], off_done, false),
	       median(runs[1], nruns[1], off_done, false));
	/* decode only where at least half of the runs could measure it */
	printf("decode_tok_s %.1f %.1f\n",
	       ndec[0] && 2 * ndec[0] >= nruns[0] ? median(runs[0], nruns[0], off_dec, true) : 0.0,
	       ndec[1] && 2 * ndec[1] >= nruns[1] ? median(runs[1], nruns[1], off_dec, true) : 0.0);
	for (int k = 0; k < ns; k++)
		if (!off[k])
			printf("side %s %zu %.3f %.3f %.3f\n", sides[k].name, nruns[k],
			       median(runs[k], nruns[k], off_ttft, false),
			       median(runs[k], nruns[k], off_last, false),
			       median(runs[k], nruns[k], off_done, false));
out:
	stream_free(&s);
	for (int k = 0; k < ns; k++) {
		stream_free(&warm[k]);
		free(runs[k]);
		curl_easy_cleanup(h[k]);
	}
	tokmap_free(&map);
	free(body);
	return 0;
}

/* ==================================================================== */
/* concurrent streams                                                   */
/* ==================================================================== */

struct client {
	const struct opts *o;
	const struct side *sd;
	CURL *h;               /* kept alive across rounds */
	pthread_barrier_t *bar;
	const char *body;
	uint64_t t0, t_end;
	long tokens;
	size_t text_len;
	int rc;
};

static void *client_main(void *arg)
{
	struct client *c = arg;
	struct stream s = {0};

	pthread_barrier_wait(c->bar);
	c->rc = stream_run(c->o, c->h, c->sd, c->body, &s, &c->t0);
	c->t_end = veil_now_ns();
	c->tokens = s.completion_tokens;
	c->text_len = s.text.len;
	stream_free(&s);
	return NULL;
}

/* What one round produced, to check that both sides did the same work:
 * completion tokens and answer bytes over all streams. */
struct work {
	long tokens;
	size_t bytes;
};

/* One round: K requests at once to sd; aggregate tok/s, 0 if any failed;
 * *w gets what the round produced. */
static double round_run(const struct opts *o, const struct side *sd, CURL **hs,
			const char *body, struct work *w)
{
	int k = o->clients, ok = 0;
	struct client cl[MAX_CLIENTS];
	pthread_t th[MAX_CLIENTS];
	pthread_barrier_t bar;
	uint64_t t_first = UINT64_MAX, t_last = 0;
	long total = 0;
	size_t bytes = 0;

	pthread_barrier_init(&bar, NULL, (unsigned)k);
	for (int i = 0; i < k; i++) {
		cl[i] = (struct client){.o = o, .sd = sd, .h = hs[i], .bar = &bar,
					.body = body, .rc = -1};
		if (pthread_create(&th[i], NULL, client_main, &cl[i]))
			die("pthread_create failed");
	}
	for (int i = 0; i < k; i++) {
		pthread_join(th[i], NULL);
		if (cl[i].rc == 0) {
			ok++;
			total += cl[i].tokens;
			bytes += cl[i].text_len;
		}
		t_first = VEIL_MIN(t_first, cl[i].t0);
		t_last = VEIL_MAX(t_last, cl[i].t_end);
	}
	pthread_barrier_destroy(&bar);
	*w = (struct work){total, bytes};
	if (ok != k) {
		fprintf(stderr, "e2e_bench: %s: %d of %d streams answered\n", sd->name, ok, k);
		return 0;
	}
	return (double)total * 1e9 / (double)(t_last - t_first);
}

static int run_concurrent(const struct opts *o)
{
	struct side sides[2] = {{"ours", o->ours, K_PROXY, NULL, {0}},
				{"ref", o->ref, K_PLAIN, NULL, {0}}};
	CURL *hs[2][MAX_CLIENTS];
	struct run *agg[2];
	size_t n[2] = {0, 0};
	char *body = completion_body(o);
	struct work w0[2], w;
	int differ = 0;

	agg[0] = calloc((size_t)o->rounds, sizeof(struct run));
	agg[1] = calloc((size_t)o->rounds, sizeof(struct run));
	if (!agg[0] || !agg[1])
		die("out of memory");
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < o->clients; i++)
			if (!(hs[k][i] = curl_easy_init()))
				die("out of memory");
	/* warm-up: one round each opens (and keeps) every connection */
	for (int k = 0; k < 2; k++)
		if (round_run(o, &sides[k], hs[k], body, &w0[k]) <= 0) {
			printf("agg_tok_s 0 0\n");
			goto out;
		}
	/* Same work on both sides: the rates divide by the tokens each round
	 * made, but a side whose streams stopped early (or ran longer) would
	 * still not be doing the same job.  The warm-up rounds set what every
	 * round must produce; a round that differs (greedy text can change
	 * with the batch's make-up) is said, and left out. */
	if (w0[0].tokens != w0[1].tokens)
		fprintf(stderr, "e2e_bench: warning: the warm-up rounds made %ld (ours) and %ld "
				"(ref) completion tokens: the sides do not do the same work\n",
			w0[0].tokens, w0[1].tokens);
	for (int r = 0; r < o->rounds; r++)
		for (int j = 0; j < 2; j++) {
			int k = (j + r) % 2;
			double a = round_run(o, &sides[k], hs[k], body, &w);

			if (o->verbose)
				fprintf(stderr, "e2e_bench: round %d %s: %.1f tok/s, %ld tokens, "
						"%zu bytes\n", r, sides[k].name, a, w.tokens, w.bytes);
			if (a > 0 && w.tokens != w0[1].tokens) {
				differ++;
				continue;
			}
			if (a > 0)
				agg[k][n[k]++].tok_s = a;
		}
	if (differ)
		fprintf(stderr, "e2e_bench: %d round(s) left out: their completion tokens were not "
				"the reference's %ld\n", differ, w0[1].tokens);
	fprintf(stderr, "e2e_bench: %d streams at once: %zu/%d ours and %zu/%d ref rounds, "
			"median %.0f vs %.0f tok/s\n", o->clients, n[0], o->rounds, n[1], o->rounds,
		median(agg[0], n[0], offsetof(struct run, tok_s), false),
		median(agg[1], n[1], offsetof(struct run, tok_s), false));
	printf("agg_tok_s %.1f %.1f\n", median(agg[0], n[0], offsetof(struct run, tok_s), false),
	       median(agg[1], n[1], offsetof(struct run, tok_s), false));
out:
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < o->clients; i++)
			curl_easy_cleanup(hs[k][i]);
	free(agg[0]);
	free(agg[1]);
	free(body);
	return 0;
}

/* ==================================================================== */

static void usage(void)
{
	fprintf(stderr,
		"usage: e2e_bench latency --ours URL --ref URL --model-name NAME [--model PATH]\n"
		"                 [--gateway URL --node URL] [--max-tokens N] [--reps N]\n"
		"                 [--prompt S] [--insecure] [-v]\n"
		"       e2e_bench concurrent --ours URL --ref URL --model-name NAME\n"
		"                 [--clients K] [--rounds R] [--max-tokens N] [--prompt S]\n"
		"                 [--insecure] [-v]\n"
		"URLs without /v1 (a trailing /v1 is dropped).  --gateway takes its API key\n"
		"from $VEIL_API_KEY.\n");
	exit(2);
}

static int num(const char *s, int lo, int hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!*s || *end || v < lo || v > hi)
		usage();
	return (int)v;
}

/* A copy of url without a trailing "/" or "/v1" (the proxy's URL is given
 * as an OpenAI base URL).  Never freed: a few bytes for the process. */
static const char *base_url(const char *url)
{
	char *s = strdup(url);
	size_t n;

	if (!s)
		die("out of memory");
	n = strlen(s);
	while (n && s[n - 1] == '/')
		s[--n] = '\0';
	if (n >= 3 && !strcmp(s + n - 3, "/v1"))
		s[n - 3] = '\0';
	return s;
}

int main(int argc, char **argv)
{
	struct opts o = {0};

	if (argc < 2)
		usage();
	o.prompt = DEFAULT_PROMPT;
	o.max_tokens = 128;
	o.reps = 10;
	o.clients = 8;
	o.rounds = 5;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--insecure")) {
			o.insecure = true;
			continue;
		}
		if (!strcmp(a, "-v")) {
			o.verbose = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--ours")) o.ours = base_url(v);
		else if (!strcmp(a, "--ref")) o.ref = base_url(v);
		else if (!strcmp(a, "--gateway")) o.gateway = base_url(v);
		else if (!strcmp(a, "--node")) o.node = base_url(v);
		else if (!strcmp(a, "--model-name")) o.model_name = v;
		else if (!strcmp(a, "--model")) o.model = v;
		else if (!strcmp(a, "--prompt")) o.prompt = v;
		else if (!strcmp(a, "--max-tokens")) o.max_tokens = num(v, 1, 1 << 20);
		else if (!strcmp(a, "--reps")) o.reps = num(v, 1, MAX_REPS);
		else if (!strcmp(a, "--clients")) o.clients = num(v, 1, MAX_CLIENTS);
		else if (!strcmp(a, "--rounds")) o.rounds = num(v, 1, MAX_REPS);
		else usage();
	}
	if (!o.ours || !o.ref || !o.model_name || !o.gateway != !o.node)
		usage();
	veil_log_setup(VEIL_LOG_WARN, false, stderr);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!strcmp(argv[1], "latency"))
		run_latency(&o);
	else if (!strcmp(argv[1], "concurrent"))
		run_concurrent(&o);
	else
		usage();
	curl_global_cleanup();
	return 0;
}
