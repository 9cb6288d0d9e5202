/* veil-node speed figures, each beside a reference measured in the same
 * run (never a pass/fail test).  scripts/bench_node.sh starts the nodes and
 * calls the three modes:
 *
 *   node_bench latency --url URL --model PATH --model-name NAME [--sealed]
 *                      [--threads N] [--max-batch N] [--ctx N]
 *                      [--max-tokens N] [--reps N] [--label L] [--prompt S]
 *     One streamed /v1/completions request at a time through the node
 *     (HTTP, SSE, veil-seal/1 with --sealed, receipt) against the same work
 *     submitted in this process to an engine opened with the same model and
 *     parameters (same prompt tokens, max_tokens, temperature 0).  Runs
 *     alternate between the two so that the machine's other load hits both
 *     alike, each after a 5 ms pause so that neither shares the cores with
 *     the other engine's still spinning pool workers; the best of --reps is
 *     kept for each (struct best says how).  With --sealed the node's time
 *     to first token includes the client's own sealing of the request (an
 *     HPKE seal: two X25519 operations), as a client's would; its best time
 *     is printed on stderr.
 *     Time to first token: from sending the request (the client's sealing
 *     of it before that counted in, libcurl's own setup of the transfer
 *     not: it is printed on stderr) to the first token's text at the
 *     client; in process: from tokenizing to the engine's first token
 *     event.  Decode: tokens after the first one /
 *     the time from the first token's text to the last one's.  The
 *     node's chunks carry no token counts, so text is mapped back to tokens
 *     through the in-process run (greedy: both produce the same text, which
 *     is checked).
 *
 *   node_bench concurrent --url URL --model-name NAME --clients K
 *                         --max-tokens N [--sealed] [--prompt S]
 *                         [--ref-tok-s X | --raw]
 *     K streamed requests at once (K connections, one libcurl multi
 *     handle on one thread: a thread per client would cost a context
 *     switch per client and token on the node's cores): aggregate
 *     completion tokens / wall time from the first send to the last
 *     [DONE]; and the aggregate while all K stream (steady_tok_s() says
 *     how).  The reference (`veil model bench --parallel K`, measured by
 *     the script in the same run) comes in as --ref-tok-s; --raw prints
 *     only "aggregate_tok_s X" and "steady_tok_s X" (0 when a request
 *     failed) for the script to combine.
 *
 *   node_bench engine-concurrent --model PATH --clients K --max-tokens N
 *                                [--threads N] [--max-batch N] [--ctx N]
 *                                [--rounds R]
 *     The same K requests submitted at once to an engine in this process
 *     (no HTTP, no sealing), after one warm-up round, R times (default 1);
 *     prints "aggregate_tok_s X" (the best round) and "cpu_ms_per_round
 *     X" (this process's CPU time per round: with --threads 1 the work
 *     itself, no spinning pool worker).  Splits the gap
 *     between the node and `veil model bench` into the engine's share
 *     (sampling, scheduling) and the node's.
 *
 *   node_bench forward --model PATH --clients K --max-tokens N
 *                      [--threads N] [--max-batch N] [--ctx N] [--rounds R]
 *     The forward pass alone as `veil model bench -p 0 -n N --parallel K`
 *     runs it, on a context made as the engine makes its own (--ctx
 *     positions, --max-batch sequences); prints "aggregate_tok_s X" (the
 *     best of R rounds).  run_forward() says why the node needs it.
 *
 *   node_bench conns --port P --pid PID --conns N --mode idle|sse
 *                    [--model-name NAME]
 *     N TCP connections to the node on 127.0.0.1; idle: each has had one
 *     GET /healthz answered and stays open (keep-alive); sse: each holds a
 *     streamed chat request whose SSE stream has started (the role chunk
 *     arrived) and waits for tokens.  The node's VmRSS before and after,
 *     per connection.
 *
 * Output: BENCH|<figure>|<ours>|<unit>|<reference>|<ratio>; ratio is our
 * speed / the reference's (1.00 = no overhead; for times reference/ours),
 * for memory ours / goal (<= 1 is within it).  Diagnostics on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>

#include "veil/base.h"
#include "veil/engine.h"
#include "veil/http.h"
#include "veil/model.h"
#include "veil/quant.h"
#include "veil/seal.h"

#define DEFAULT_PROMPT "Once upon a time, in a small village by the sea, there lived"

struct opts {
	const char *url, *model, *model_name, *label, *prompt, *mode;
	bool sealed, raw;
	int threads, max_batch, ctx, max_tokens, reps, rounds, clients, conns, port;
	long pid;
	double ref_tok_s;
};

static void die(const char *fmt, const char *what)
{
	fprintf(stderr, "node_bench: ");
	fprintf(stderr, fmt, what);
	fprintf(stderr, "\n");
	exit(1);
}

/* ==================================================================== */
/* one streamed request through the node                                */
/* ==================================================================== */

struct mark {
	uint64_t t;      /* arrival (monotonic ns) */
	size_t cum;      /* text bytes received so far, this chunk included */
};

struct stream {
	bool sealed;
	struct veil_seal *seal;             /* opens the response */
	struct veil_http_sse_parser outer;  /* the HTTP body */
	struct veil_http_sse_parser inner;  /* one opened chunk */
	struct veil_buf text;
	struct mark *marks;
	size_t nmarks, capmarks;
	long completion_tokens;
	bool finished, done, failed, receipt;
	uint64_t t_finish;
	uint64_t seal_ns;   /* the client's sealing of the request */
	uint64_t t_send;    /* libcurl is about to send the request */
	uint64_t setup_ns;  /* libcurl's own work before that */
};

static int on_event(void *arg, const char *event, const char *data, size_t len,
		    const char *id)
{
	struct stream *s = arg;
	json_t *o, *ch, *c0, *u, *fr;
	const char *txt = NULL;

	(void)id;
	if (!strcmp(event, "error")) {
		fprintf(stderr, "node_bench: error event: %.*s\n", (int)len, data);
		s->failed = true;
		return 0;
	}
	if (!strcmp(event, "veil.receipt")) {
		s->receipt = true;
		return 0;
	}
	if (len == 6 && !memcmp(data, "[DONE]", 6)) {
		s->done = true;
		return 0;
	}
	if (!(o = json_loadb(data, len, 0, NULL))) {
		s->failed = true;
		return 0;
	}
	if (json_is_string(json_object_get(o, "object")) &&
	    !strcmp(json_string_value(json_object_get(o, "object")), "veil.receipt"))
		s->receipt = true;
	ch = json_object_get(o, "choices");
	c0 = json_array_get(ch, 0);
	if (c0) {
		txt = json_string_value(json_object_get(c0, "text"));
		if (!txt)
			txt = json_string_value(json_object_get(json_object_get(c0, "delta"),
								"content"));
		fr = json_object_get(c0, "finish_reason");
		if (json_is_string(fr) && !s->finished) {
			s->finished = true;
			s->t_finish = veil_now_ns();
		}
	}
	if (txt && *txt) {
		if (s->nmarks == s->capmarks) {
			size_t nc = s->capmarks ? 2 * s->capmarks : 256;
			struct mark *m = realloc(s->marks, nc * sizeof(*m));

			if (!m)
				die("%s", "out of memory");
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

/* The HTTP body: plaintext events, or one sealed chunk (base64) per event
 * whose plaintext is a whole event of its own. */
static int on_outer(void *arg, const char *event, const char *data, size_t len,
		    const char *id)
{
	struct stream *s = arg;
	uint8_t *ct;
	size_t clen, plen;
	bool fin;
	int rc;

	if (!s->sealed || strcmp(event, "message") ||
	    (len == 6 && !memcmp(data, "[DONE]", 6)))
		return on_event(arg, event, data, len, id);
	if (!(ct = malloc(len + 4)))
		die("%s", "out of memory");
	if ((rc = veil_b64_decode(data, len, 0, ct, len + 4, &clen)) < 0 ||
	    (rc = veil_seal_open_chunk(s->seal, ct, clen, &plen, &fin)) < 0) {
		fprintf(stderr, "node_bench: sealed chunk: %s\n", veil_strerror(rc));
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

static void stream_reset(struct stream *s, bool sealed)
{
	stream_free(s);
	s->sealed = sealed;
	s->text = (struct veil_buf)VEIL_BUF_INIT(16u << 20);
	veil_http_sse_init(&s->outer, 0, 0, on_outer, s);
	veil_http_sse_init(&s->inner, 0, 0, on_event, s);
}

static char *completion_body(const struct opts *o, const char *prompt)
{
	json_t *b = json_pack("{s:s, s:s, s:i, s:i, s:b, s:{s:b}}", "model", o->model_name,
			      "prompt", prompt, "max_tokens", o->max_tokens,
			      "temperature", 0, "stream", 1, "stream_options",
			      "include_usage", 1);
	char *s = b ? json_dumps(b, JSON_COMPACT) : NULL;

	json_decref(b);
	if (!s)
		die("%s", "out of memory");
	return s;
}

/* libcurl has its connection (reused) and sends the request next. */
static int on_prereq(void *arg, char *ip, char *lip, int rport, int lport)
{
	struct stream *s = arg;

	(void)ip;
	(void)lip;
	(void)rport;
	(void)lport;
	if (!s->t_send)
		s->t_send = veil_now_ns();
	return CURL_PREREQFUNC_OK;
}

/* One request on its way: what stream_begin() made for it. */
struct xfer {
	struct veil_buf sb;          /* the sealed body */
	struct curl_slist *hd;
	char url[512];
};

/* Prepares the handle h (kept alive between calls) to POST `body` (sealed
 * to node_pub when given) to URL/v1/completions and read the stream into
 * s.  *t0 is when the request starts on its way: the client's sealing
 * (timed here) before libcurl's send.  libcurl's own setup of a transfer in
 * between (easy_perform: its multi handle, URL, connection cache: 0.1-0.3
 * ms on this machine, as much as the node's whole share) is this client
 * library's cost, not the node's, and is left out (s->setup_ns, taken in
 * stream_end()). */
static void stream_begin(CURL *h, const char *url, const uint8_t *node_pub,
			 const char *body, struct stream *s, struct xfer *x, uint64_t *t0)
{
	*x = (struct xfer){.sb = VEIL_BUF_INIT(1u << 20)};
	stream_reset(s, node_pub != NULL);
	*t0 = veil_now_ns();
	if (node_pub &&
	    veil_seal_request(node_pub, (const uint8_t *)body, strlen(body), &x->sb, &s->seal) < 0)
		die("%s", "veil_seal_request failed");
	s->seal_ns = veil_now_ns() - *t0;
	snprintf(x->url, sizeof(x->url), "%s/v1/completions", url);
	x->hd = curl_slist_append(x->hd, node_pub ? "Content-Type: application/veil-sealed"
						  : "Content-Type: application/json");
	x->hd = curl_slist_append(x->hd, "Accept: text/event-stream");
	curl_easy_setopt(h, CURLOPT_URL, x->url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hd);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(node_pub ? x->sb.len : strlen(body)));
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, node_pub ? (const char *)x->sb.data : body);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 300L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, on_prereq);
	curl_easy_setopt(h, CURLOPT_PREREQDATA, s);
}

/* The transfer on h ended with cc: checks the answer, frees x. */
static int stream_end(CURL *h, CURLcode cc, struct stream *s, struct xfer *x, uint64_t *t0)
{
	long status = 0;

	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (s->t_send) {
		s->setup_ns = s->t_send - (*t0 + s->seal_ns);
		*t0 = s->t_send - s->seal_ns;
	}
	curl_slist_free_all(x->hd);
	x->hd = NULL;
	veil_buf_free(&x->sb);
	/* a complete answer: finish reason, the signed receipt, [DONE] */
	if (cc != CURLE_OK || status != 200 || s->failed || !s->done || !s->finished ||
	    !s->receipt) {
		fprintf(stderr, "node_bench: request failed: curl %d (%s), HTTP %ld%s%s%s\n",
			(int)cc, curl_easy_strerror(cc), status, s->failed ? ", bad stream" : "",
			s->done ? "" : ", no [DONE]", s->receipt ? "" : ", no receipt");
		return -1;
	}
	return 0;
}

/* One request on h, start to end (see stream_begin). */
static int stream_run(CURL *h, const char *url, const uint8_t *node_pub,
		      const char *body, struct stream *s, uint64_t *t0)
{
	struct xfer x;

	stream_begin(h, url, node_pub, body, s, &x, t0);
	return stream_end(h, curl_easy_perform(h), s, &x, t0);
}

/* keys.x25519_hpke of the node's attestation report.  (A real client
 * verifies the report first; `veil verify` does, tests/integration too.) */
static void fetch_hpke_key(const char *url, uint8_t pub[VEIL_HPKE_NPK])
{
	struct veil_http_request rq = {0};
	struct veil_buf body = VEIL_BUF_INIT(1u << 20);
	char full[512];
	int status = 0;
	json_t *r;
	const char *hex;
	size_t n;

	snprintf(full, sizeof(full), "%s/v1/attestation/report", url);
	rq.url = full;
	if (veil_http_fetch(&rq, &status, &body) < 0 || status != 200)
		die("%s", "GET /v1/attestation/report failed");
	r = json_loadb((const char *)body.data, body.len, 0, NULL);
	hex = json_string_value(json_object_get(json_object_get(r, "keys"), "x25519_hpke"));
	if (!hex || veil_hex_decode(hex, strlen(hex), pub, VEIL_HPKE_NPK, &n) < 0 ||
	    n != VEIL_HPKE_NPK)
		die("%s", "the report has no keys.x25519_hpke");
	json_decref(r);
	veil_buf_free(&body);
}

/* ==================================================================== */
/* latency: the node against the engine alone                           */
/* ==================================================================== */

struct erec {
	uint64_t t;
	size_t cum;   /* text bytes so far */
	int ntok;     /* tokens so far */
};

struct erun {
	struct erec *ev;
	size_t n, cap;
	int ntok;
	struct veil_buf text;
};

static void engine_cb(const struct veil_engine_event *ev, void *user)
{
	struct erun *r = user;
	uint64_t now = veil_now_ns();

	if (ev->token >= 0)
		r->ntok++;
	if (ev->text_len) {
		veil_buf_append(&r->text, ev->text, ev->text_len);
		if (r->n < r->cap)
			r->ev[r->n++] = (struct erec){now, r->text.len, r->ntok};
	}
}

/* One answer: time to the first token's text and to the last token's
 * text, both from the start; the tokens between them. */
struct figures {
	double ttft_ms, total_ms;
	int k_first, k_last;
};

/* The best of several runs.  A stall of the client (this machine is
 * shared) only ever makes a time longer, so each time is taken as its
 * minimum over the runs, and decode = tokens after the first / (best total
 * - best ttft); a rate per run would be inflated by a stall just after the
 * first chunk, when the rest arrives at once. */
struct best {
	double ttft_ms, total_ms;
	int k_first, k_last, runs;
};

static void best_add(struct best *b, const struct figures *f)
{
	if (!b->runs++ || f->ttft_ms < b->ttft_ms)
		b->ttft_ms = f->ttft_ms;
	if (b->runs == 1 || f->total_ms < b->total_ms)
		b->total_ms = f->total_ms;
	b->k_first = f->k_first;
	b->k_last = f->k_last;
}

static double best_tok_s(const struct best *b)
{
	return b->total_ms > b->ttft_ms
		       ? (double)(b->k_last - b->k_first) * 1e3 / (b->total_ms - b->ttft_ms)
		       : 0;
}

/* As the node's prompt_tokens(): BOS if the model wants one, then the text
 * with special tokens off. */
static int engine_run(struct veil_engine *e, const struct opts *o, struct erun *r,
		      struct figures *f)
{
	const struct veil_tok *tok = veil_engine_tok(e);
	struct veil_engine_request rq = {0};
	enum veil_finish fin;
	int32_t ids[4096];
	size_t n = 0, got = 0;
	uint64_t t0;
	int rc;

	veil_buf_reset(&r->text);
	r->n = 0;
	r->ntok = 0;
	t0 = veil_now_ns();
	if (veil_tok_add_bos(tok) && veil_tok_bos(tok) >= 0)
		ids[n++] = veil_tok_bos(tok);
	if ((rc = veil_tok_encode(tok, o->prompt, strlen(o->prompt), false, false, ids + n,
				  VEIL_ARRAY_LEN(ids) - n, &got)) < 0)
		return rc;
	n += got;
	rq.prompt = ids;
	rq.n_prompt = n;
	veil_sampler_params_default(&rq.sampling);
	rq.sampling.temperature = 0;
	rq.sampling.repeat_last_n = 64;
	rq.max_tokens = o->max_tokens;
	rq.cb = engine_cb;
	rq.user = r;
	if ((rc = veil_engine_generate(e, &rq, &fin, NULL)) < 0)
		return rc;
	if (r->n < 2)
		return VEIL_EINVAL;
	f->ttft_ms = (double)(r->ev[0].t - t0) / 1e6;
	f->total_ms = (double)(r->ev[r->n - 1].t - t0) / 1e6;
	f->k_first = r->ev[0].ntok;
	f->k_last = r->ev[r->n - 1].ntok;
	return 0;
}

/* Between two runs: both engines' pool workers spin for 2 ms after their
 * last job (pool.c) before they sleep.  Without a pause the run that comes
 * next shares the two cores with the other engine's spinning worker: the
 * node's runs follow the in-process ones at once, the in-process ones
 * follow the node's after its receipt; so both start on a quiet machine. */
#define QUIET_US 5000

/* Tokens behind `cum` bytes of text, from the in-process run. */
static int tokens_at(const struct erun *ref, size_t cum)
{
	for (size_t i = 0; i < ref->n; i++)
		if (ref->ev[i].cum >= cum)
			return ref->ev[i].ntok;
	return -1;
}

static int node_figures(const struct stream *s, const struct erun *ref, uint64_t t0,
			struct figures *f)
{
	int k0, k1;

	if (s->nmarks < 2)
		return -1;
	k0 = tokens_at(ref, s->marks[0].cum);
	k1 = tokens_at(ref, s->marks[s->nmarks - 1].cum);
	if (k0 < 0 || k1 <= k0)
		return -1;
	/* the text of the first chunk may hold more than one token (the
	 * node's loop was late): decode counts from the engine's first */
	f->ttft_ms = (double)(s->marks[0].t - t0) / 1e6;
	f->total_ms = (double)(s->marks[s->nmarks - 1].t - t0) / 1e6;
	f->k_first = ref->ev[0].ntok;
	f->k_last = k1;
	return 0;
}

static int run_latency(const struct opts *o)
{
	struct veil_engine_params ep;
	struct veil_engine *e = NULL;
	uint8_t pub[VEIL_HPKE_NPK];
	struct erun ref = {0};
	struct stream s = {0};
	struct best be = {0}, bn = {0};
	struct figures f;
	char *body;
	CURL *h;
	uint64_t t0, seal_best = 0, setup_best = 0;
	int rc;
	long ntok = 0;
	const char *how = o->sealed ? "sealed" : "plaintext";

	if (!o->model || !o->url || !o->model_name)
		die("%s", "latency needs --model, --url and --model-name");
	veil_engine_params_default(&ep);
	ep.max_batch = o->max_batch;
	ep.n_ctx = o->ctx;
	ep.n_threads = o->threads;
	if ((rc = veil_engine_open(o->model, &ep, &e)) < 0)
		die("cannot open the model: %s", veil_strerror(rc));
	ref.cap = (size_t)o->max_tokens + 8;
	ref.ev = calloc(ref.cap, sizeof(*ref.ev));
	ref.text = (struct veil_buf)VEIL_BUF_INIT(16u << 20);
	if (!ref.ev || !(h = curl_easy_init()))
		die("%s", "out of memory");
	if (o->sealed)
		fetch_hpke_key(o->url, pub);
	body = completion_body(o, o->prompt);

	/* warm-up, and the text that maps the node's chunks to tokens */
	if (engine_run(e, o, &ref, &f) < 0)
		die("%s", "in-process generation failed (or gave fewer than 2 tokens)");
	if (stream_run(h, o->url, o->sealed ? pub : NULL, body, &s, &t0) < 0)
		die("%s", "the node's answer failed");
	if (s.text.len != ref.text.len || memcmp(s.text.data, ref.text.data, s.text.len)) {
		fprintf(stderr, "node_bench: %s: the node's text differs from the engine's "
				"(%zu vs %zu bytes); decode figures n/a\n", o->label,
			s.text.len, ref.text.len);
		printf("BENCH|veil-node decode, %s (%s)|n/a|tok/s|engine alone (text differs)|n/a\n",
		       o->label, how);
		goto out;
	}
	ntok = s.completion_tokens;
	for (int i = 0; i < o->reps; i++) {
		/* alternate the order so drift in the machine's load hits both */
		for (int k = 0; k < 2; k++) {
			usleep(QUIET_US);
			if ((k == 0) == (i % 2 == 0)) {
				if (engine_run(e, o, &ref, &f) == 0)
					best_add(&be, &f);
			} else if (stream_run(h, o->url, o->sealed ? pub : NULL, body, &s, &t0) == 0 &&
				   node_figures(&s, &ref, t0, &f) == 0) {
				best_add(&bn, &f);
				if (!seal_best || s.seal_ns < seal_best)
					seal_best = s.seal_ns;
				if (!setup_best || s.setup_ns < setup_best)
					setup_best = s.setup_ns;
			}
		}
	}
	fprintf(stderr, "node_bench: %s (%s): %ld tokens per answer, best of %d/%d node and "
			"%d/%d engine runs: ttft %.2f vs %.2f ms, decode %.1f vs %.1f tok/s\n",
		o->label, how, ntok, bn.runs, o->reps, be.runs, o->reps, bn.ttft_ms, be.ttft_ms,
		best_tok_s(&bn), best_tok_s(&be));
	fprintf(stderr, "node_bench: %s (%s): libcurl's own setup of a request before "
			"sending it (not in the node's ttft), best %.3f ms\n", o->label, how,
		(double)setup_best / 1e6);
	if (o->sealed)
		fprintf(stderr, "node_bench: %s (sealed): the node's ttft includes the client's own "
				"sealing of the request (HPKE: two X25519), best %.3f ms\n", o->label,
			(double)seal_best / 1e6);
	if (be.runs && bn.runs) {
		printf("BENCH|veil-node time to first token, %s (%s, goal ratio >= 0.97)|%.2f|ms|"
		       "engine alone %.2f ms (same run)|%.2f\n", o->label, how, bn.ttft_ms,
		       be.ttft_ms, be.ttft_ms / bn.ttft_ms);
		printf("BENCH|veil-node decode, %s (%s, goal ratio >= 0.97)|%.1f|tok/s|"
		       "engine alone %.1f tok/s (same run)|%.2f\n", o->label, how, best_tok_s(&bn),
		       best_tok_s(&be), best_tok_s(&bn) / best_tok_s(&be));
	} else {
		printf("BENCH|veil-node time to first token, %s (%s)|n/a|ms|engine alone|n/a\n",
		       o->label, how);
	}
out:
	stream_free(&s);
	free(body);
	free(ref.ev);
	veil_buf_free(&ref.text);
	curl_easy_cleanup(h);
	veil_engine_free(e);
	return 0;
}

/* ==================================================================== */
/* concurrent streaming clients                                         */
/* ==================================================================== */

struct client {
	CURL *h;
	struct stream s;
	struct xfer x;
	uint64_t t0, t_first, t_end;
	long tokens;
	int rc;
};

/* Aggregate decode rate while all K streams are open at once: the window
 * runs from the last client's first token to the first client's last one;
 * within it every engine step decodes one token for every client, which is
 * what `veil model bench --parallel K` measures (K sequences, decode only).
 * The whole-run figure also holds the admission of K requests arriving one
 * by one (the first steps run part of the batch and the prompts) and the
 * tail, which model bench has not.  Each client's own rate in the window is
 * (its chunks there - 1) / (its last - its first chunk there), one chunk
 * per step, so the phase of its chunk within a step's burst of K writes
 * cancels; the sum over clients is the aggregate.  A chunk that carries
 * two tokens counts one (the figure can only err low).  Returns -1 when
 * the window holds fewer than 8 steps. */
static double steady_tok_s(const struct client *cl, int k, double *window_s)
{
	uint64_t t_a = 0, t_b = UINT64_MAX;
	double sum = 0;

	for (int i = 0; i < k; i++) {
		const struct stream *s = &cl[i].s;

		if (!s->nmarks)
			return -1;
		t_a = VEIL_MAX(t_a, s->marks[0].t);
		t_b = VEIL_MIN(t_b, s->marks[s->nmarks - 1].t);
	}
	if (t_b <= t_a)
		return -1;
	for (int i = 0; i < k; i++) {
		const struct stream *s = &cl[i].s;
		uint64_t first = 0, last = 0;
		size_t n = 0;

		for (size_t j = 0; j < s->nmarks; j++) {
			if (s->marks[j].t < t_a || s->marks[j].t > t_b)
				continue;
			if (!n++)
				first = s->marks[j].t;
			last = s->marks[j].t;
		}
		if (n < 8 || last <= first)
			return -1;
		sum += (double)(n - 1) * 1e9 / (double)(last - first);
	}
	*window_s = (double)(t_b - t_a) / 1e9;
	return sum;
}

/* The K clients are K transfers of one libcurl multi handle on this
 * thread (K connections), not K threads: the clients share the node's two
 * cores, and a thread per client costs a context switch per client per
 * token (64 per step; it was half of the clients' CPU time, which came off
 * the node's).  Each chunk is still opened, parsed and checked. */
static int run_concurrent(const struct opts *o)
{
	int k = o->clients, left;
	uint8_t pub[VEIL_HPKE_NPK];
	struct client *cl = calloc((size_t)k, sizeof(*cl));
	struct stream s = {0};
	uint64_t t_first = UINT64_MAX, t_last = 0, t0, ttft_max = 0, first_end = UINT64_MAX;
	long total = 0;
	int ok = 0;
	char *body;
	CURL *h = curl_easy_init();
	CURLM *mh = curl_multi_init();
	CURLMsg *msg;
	const char *how = o->sealed ? "sealed" : "plaintext";
	double agg, steady, window_s = 0;

	if (!o->url || !o->model_name || k < 1 || !cl || !h || !mh)
		die("%s", "concurrent needs --url, --model-name and --clients");
	if (o->sealed)
		fetch_hpke_key(o->url, pub);
	body = completion_body(o, o->prompt);
	/* warm-up: one request alone */
	if (stream_run(h, o->url, o->sealed ? pub : NULL, body, &s, &t0) < 0)
		die("%s", "the warm-up request failed");
	curl_multi_setopt(mh, CURLMOPT_MAXCONNECTS, (long)k);
	for (int i = 0; i < k; i++) {
		cl[i].rc = -1;
		if (!(cl[i].h = curl_easy_init()))
			die("%s", "out of memory");
		curl_easy_setopt(cl[i].h, CURLOPT_PRIVATE, &cl[i]);
	}
	for (int i = 0; i < k; i++) {
		stream_begin(cl[i].h, o->url, o->sealed ? pub : NULL, body, &cl[i].s,
			     &cl[i].x, &cl[i].t0);
		curl_multi_add_handle(mh, cl[i].h);
		/* on its way at once, as a client of its own would be */
		curl_multi_perform(mh, &left);
	}
	left = k;
	while (left > 0) {
		int running, n;

		if (curl_multi_perform(mh, &running) != CURLM_OK)
			die("%s", "curl_multi_perform failed");
		while ((msg = curl_multi_info_read(mh, &n))) {
			struct client *c = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
			c->t_end = veil_now_ns();
			c->rc = stream_end(c->h, msg->data.result, &c->s, &c->x, &c->t0);
			c->t_first = c->s.nmarks ? c->s.marks[0].t : c->t_end;
			c->tokens = c->s.completion_tokens;
			curl_multi_remove_handle(mh, c->h);
			left--;
		}
		if (left > 0 && curl_multi_poll(mh, NULL, 0, 1000, NULL) != CURLM_OK)
			die("%s", "curl_multi_poll failed");
	}
	for (int i = 0; i < k; i++) {
		if (cl[i].rc == 0) {
			ok++;
			total += cl[i].tokens;
		}
		t_first = VEIL_MIN(t_first, cl[i].t0);
		t_last = VEIL_MAX(t_last, cl[i].t_end);
		first_end = VEIL_MIN(first_end, cl[i].t_end);
	}
	for (int i = 0; i < k; i++)
		ttft_max = VEIL_MAX(ttft_max, cl[i].t_first - t_first);
	agg = (double)total * 1e9 / (double)(t_last - t_first);
	steady = ok == k ? steady_tok_s(cl, k, &window_s) : -1;
	fprintf(stderr, "node_bench: %d clients (%s): %d answered, %ld tokens in %.2f s: "
			"%.1f tok/s aggregate; last first token at %.2f s, first answer done "
			"at %.2f s; all %d streaming: %.1f tok/s over %.2f s\n", k, how, ok, total,
		(double)(t_last - t_first) / 1e9, agg, (double)ttft_max / 1e9,
		(double)(first_end - t_first) / 1e9, k, steady, window_s);
	if (o->raw) {
		printf("aggregate_tok_s %.3f\n", ok == k ? agg : 0.0);
		printf("steady_tok_s %.3f\n", steady > 0 ? steady : 0.0);
	}
	else if (ok != k)
		printf("BENCH|veil-node %d streaming clients, aggregate decode (%s)|n/a|tok/s|"
		       "%d of %d answered|n/a\n", k, how, ok, k);
	else if (o->ref_tok_s > 0) {
		if (steady > 0)
			printf("BENCH|veil-node %d streaming clients, aggregate while all %d stream "
			       "(%s, goal ratio >= 0.95)|%.1f|tok/s|veil model bench --parallel %d "
			       "%.1f tok/s (same run)|%.2f\n", k, k, how, steady, k, o->ref_tok_s,
			       steady / o->ref_tok_s);
		printf("BENCH|veil-node %d streaming clients, aggregate, whole run (%s)|"
		       "%.1f|tok/s|veil model bench --parallel %d %.1f tok/s (same run)|%.2f\n",
		       k, how, agg, k, o->ref_tok_s, agg / o->ref_tok_s);
	}
	else
		printf("BENCH|veil-node %d streaming clients, aggregate (%s)|%.1f|tok/s|"
		       "veil model bench --parallel %d n/a|n/a\n", k, how, agg, k);
	for (int i = 0; i < k; i++) {
		stream_free(&cl[i].s);
		curl_easy_cleanup(cl[i].h);
	}
	curl_multi_cleanup(mh);
	stream_free(&s);
	curl_easy_cleanup(h);
	free(body);
	free(cl);
	return 0;
}

/* ==================================================================== */
/* The same K requests submitted at once to an engine in this process (no
 * HTTP, no sealing): how much of the gap to `veil model bench` is the
 * engine's (sampling, scheduling) and how much the node's. */
struct agg {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int left;
	long tokens;
	uint64_t t_end;
};

static void agg_cb(const struct veil_engine_event *ev, void *user)
{
	struct agg *a = user;

	if (ev->finish == VEIL_FINISH_NONE)
		return;
	pthread_mutex_lock(&a->mu);
	a->tokens += ev->usage.completion_tokens;
	a->t_end = veil_now_ns();
	if (--a->left == 0)
		pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

static int engine_batch(struct veil_engine *e, const struct opts *o, int k,
			struct agg *a, uint64_t *t0)
{
	const struct veil_tok *tok = veil_engine_tok(e);
	struct veil_engine_request rq = {0};
	int32_t ids[4096];
	size_t n = 0, got = 0;
	int rc = 0;

	pthread_mutex_lock(&a->mu);
	a->left = k;
	a->tokens = 0;
	pthread_mutex_unlock(&a->mu);
	*t0 = veil_now_ns();
	if (veil_tok_add_bos(tok) && veil_tok_bos(tok) >= 0)
		ids[n++] = veil_tok_bos(tok);
	if (veil_tok_encode(tok, o->prompt, strlen(o->prompt), false, false, ids + n,
			    VEIL_ARRAY_LEN(ids) - n, &got) < 0)
		return -1;
	rq.prompt = ids;
	rq.n_prompt = n + got;
	veil_sampler_params_default(&rq.sampling);
	rq.sampling.temperature = 0;
	rq.sampling.repeat_last_n = 64;
	rq.max_tokens = o->max_tokens;
	rq.cb = agg_cb;
	rq.user = a;
	for (int i = 0; i < k; i++)
		if (veil_engine_submit(e, &rq, NULL) < 0) {
			pthread_mutex_lock(&a->mu);
			a->left -= k - i;
			pthread_mutex_unlock(&a->mu);
			rc = -1;
			break;
		}
	pthread_mutex_lock(&a->mu);
	while (a->left > 0)
		pthread_cond_wait(&a->cv, &a->mu);
	pthread_mutex_unlock(&a->mu);
	return rc;
}

static double cpu_secs(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int run_engine_concurrent(const struct opts *o)
{
	struct veil_engine_params ep;
	struct veil_engine *e = NULL;
	struct agg a = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
	uint64_t t0;
	double agg = 0, cpu = 0;
	int rc, rounds = VEIL_MAX(o->rounds, 1), done = 0;

	if (!o->model)
		die("%s", "engine-concurrent needs --model");
	veil_engine_params_default(&ep);
	ep.max_batch = o->max_batch;
	ep.max_queue = VEIL_MAX(64, o->clients);
	ep.n_ctx = o->ctx;
	ep.n_threads = o->threads;
	if ((rc = veil_engine_open(o->model, &ep, &e)) < 0)
		die("cannot open the model: %s", veil_strerror(rc));
	/* warm-up: all K once, so that the KV cache of every slot has been
	 * touched (a fresh cache costs page zeroing: a quarter of the time of
	 * a first round), as it has in the node after its first round */
	if (engine_batch(e, o, o->clients, &a, &t0) == 0) {
		for (; done < rounds; done++) {
			double c0 = cpu_secs(), r;

			if (engine_batch(e, o, o->clients, &a, &t0) < 0)
				break;
			cpu += cpu_secs() - c0;
			r = (double)a.tokens * 1e9 / (double)(a.t_end - t0);
			agg = VEIL_MAX(agg, r);
		}
	}
	if (done < rounds)
		agg = 0;
	fprintf(stderr, "node_bench: engine alone, %d requests at once: %ld tokens, %.1f tok/s "
			"aggregate (best of %d), %.1f ms CPU per round\n", o->clients, a.tokens,
		agg, rounds, done ? cpu * 1e3 / done : 0.0);
	printf("aggregate_tok_s %.3f\n", agg);
	printf("cpu_ms_per_round %.1f\n", done ? cpu * 1e3 / done : 0.0);
	veil_engine_free(e);
	return 0;
}

/* The forward pass alone, as `veil model bench -p 0 -n N --parallel K`
 * runs it (K sequences, N single-token steps from an empty cache, random
 * tokens, logits of every row; a 16-step warm-up first), but on a context
 * made as the engine makes its own: --ctx positions per sequence,
 * --max-batch sequences, the engine's step of 512 tokens.  `veil model
 * bench` sizes its context to N + 8 positions; the KV cache's rows are then
 * 96 positions apart instead of the node's 576 (--ctx 512), and attention
 * and the cache writes cost more with the longer rows (about 5% of a
 * 64-sequence step of SmolLM2-135M): the like-for-like reference for the
 * node is this one. */
static uint64_t fw_rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int run_forward(const struct opts *o)
{
	struct veil_model *m = NULL;
	struct veil_ctx *c = NULL;
	struct veil_ctx_params cp;
	int32_t k = o->clients, n = o->max_tokens, nv, *tok, *pos, *seq;
	bool *lg;
	uint64_t rng = 0x5eed;
	double best = 0;
	int rc, rounds = VEIL_MIN(VEIL_MAX(o->rounds, 1), 64);

	if (!o->model || k < 1 || k > o->max_batch || n < 1 || (o->ctx && n > o->ctx))
		die("%s", "forward needs --model, --clients K <= --max-batch, "
			  "--max-tokens N <= --ctx");
	veil_quant_init();
	if ((rc = veil_model_load(o->model, &m)) < 0)
		die("cannot open the model: %s", veil_strerror(rc));
	veil_ctx_params_default(&cp);
	cp.n_ctx = o->ctx;
	cp.n_seq = o->max_batch;
	cp.n_batch = VEIL_MAX(512, o->max_batch); /* the engine's step_tokens */
	cp.n_outputs = o->max_batch;
	cp.n_threads = o->threads;
	cp.populate = true; /* as the engine's */
	if ((rc = veil_ctx_new(m, &cp, &c)) < 0)
		die("cannot make the context: %s", veil_strerror(rc));
	nv = veil_model_hparams(m)->n_vocab;
	tok = calloc((size_t)k, sizeof(*tok));
	pos = calloc((size_t)k, sizeof(*pos));
	seq = calloc((size_t)k, sizeof(*seq));
	lg = calloc((size_t)k, sizeof(*lg));
	if (!tok || !pos || !seq || !lg)
		die("%s", "out of memory");
	for (int r = -1; r < rounds; r++) {
		int32_t steps = r < 0 ? VEIL_MIN(n, 16) : n;
		struct veil_batch b = {k, tok, pos, seq, lg};
		uint64_t t0 = veil_now_ns();

		for (int32_t st = 0; st < steps; st++) {
			for (int32_t i = 0; i < k; i++) {
				tok[i] = (int32_t)(fw_rng(&rng) % (uint64_t)nv);
				pos[i] = st;
				seq[i] = i;
				lg[i] = true;
			}
			if ((rc = veil_ctx_decode(c, &b)) < 0)
				die("forward step failed: %s", veil_strerror(rc));
		}
		if (r >= 0)
			best = VEIL_MAX(best, (double)n * k * 1e9 / (double)(veil_now_ns() - t0));
	}
	fprintf(stderr, "node_bench: forward pass alone, %d sequences x %d steps, context %d: "
			"%.1f tok/s (best of %d)\n", k, n, veil_ctx_n_ctx(c), best, rounds);
	printf("aggregate_tok_s %.3f\n", best);
	free(tok);
	free(pos);
	free(seq);
	free(lg);
	veil_ctx_free(c);
	veil_model_free(m);
	return 0;
}

/* ==================================================================== */
/* many open connections: the node's memory per connection             */
/* ==================================================================== */

enum cstate { C_CONNECTING, C_SENT, C_READY, C_FAILED };

struct conn {
	int fd;
	enum cstate st;
	size_t got;
	char head[2048];  /* the start of the response */
};

static long vm_rss_kib(long pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Lines of /proc/PID/maps: memory mappings (each large malloc is one). */
static long n_maps(long pid)
{
	char path[64];
	long n = 0;
	int ch;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/maps", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while ((ch = getc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

/* idle: the whole /healthz answer is in; sse: the stream's first event. */
static bool conn_ready(struct conn *c, bool sse)
{
	const char *end = memmem(c->head, c->got, "\r\n\r\n", 4);
	const char *cl;
	long clen = 0;

	if (!end)
		return false;
	if (c->got < 12 || memcmp(c->head + 9, "200", 3)) {
		c->st = C_FAILED;
		return false;
	}
	if (sse)
		return memmem(end, c->got - (size_t)(end - c->head), "data:", 5) != NULL;
	c->head[VEIL_MIN(c->got, sizeof(c->head) - 1)] = '\0';
	if ((cl = strcasestr(c->head, "\r\ncontent-length:")))
		clen = strtol(cl + 17, NULL, 10);
	return (size_t)(end + 4 - c->head) + (size_t)clen <= c->got;
}

struct tally {
	int ep, ready, failed, pending;
};

/* Closes c and moves it out of whichever count it was in. */
static void conn_fail(struct tally *t, struct conn *c, const struct conn *base)
{
	if (c->st == C_CONNECTING || c->st == C_SENT)
		t->pending--;
	else if (c->st == C_READY)
		t->ready--;
	if (t->failed < 3)
		fprintf(stderr, "node_bench: connection %d failed: %.*s\n", (int)(c - base),
			(int)VEIL_MIN(c->got, 60), c->head);
	c->st = C_FAILED;
	t->failed++;
	if (c->fd >= 0) {
		epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
}

/* One readiness event of c: send the request once connected, then read. */
static void conn_event(struct tally *t, struct conn *c, const struct conn *base,
		       uint32_t events, const char *req, size_t rlen, bool sse)
{
	char tmp[4096];
	ssize_t r;

	if (c->st == C_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);
		struct epoll_event ev = {EPOLLIN, {.ptr = c}};

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err || send(c->fd, req, rlen, MSG_NOSIGNAL) != (ssize_t)rlen) {
			conn_fail(t, c, base);
			return;
		}
		c->st = C_SENT;
		epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
	}
	/* drain: the one stream that is generating keeps sending */
	while ((r = recv(c->fd, tmp, sizeof(tmp), 0)) > 0) {
		size_t m;

		if (c->st != C_SENT)
			continue;
		m = VEIL_MIN((size_t)r, sizeof(c->head) - 1 - c->got);
		memcpy(c->head + c->got, tmp, m);
		c->got += m;
		if (conn_ready(c, sse)) {
			c->st = C_READY;
			t->ready++;
			t->pending--;
		} else if (c->st == C_FAILED) {
			c->st = C_SENT;
			conn_fail(t, c, base);
			return;
		}
	}
	if (r == 0 || errno != EAGAIN)
		conn_fail(t, c, base);
}

static int run_conns(const struct opts *o)
{
	bool sse = o->mode && !strcmp(o->mode, "sse");
	int n = o->conns, opened = 0;
	struct tally t = {epoll_create1(0), 0, 0, 0};
	struct conn *cs = calloc((size_t)n, sizeof(*cs));
	struct sockaddr_in sa = {0};
	struct epoll_event evs[256];
	struct rlimit rl;
	char req[1024], body[512];
	long before, after, maps0, maps1;
	uint64_t deadline = veil_now_ns() + 90ull * 1000000000ull, settle = 0;
	size_t rlen;

	if (!cs || t.ep < 0 || o->port <= 0 || o->pid <= 0 || n < 1)
		die("%s", "conns needs --port, --pid and --conns");
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = VEIL_MIN(rl.rlim_max, (rlim_t)n + 256);
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (sse) {
		snprintf(body, sizeof(body),
			 "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":"
			 "\"Tell me a story.\"}],\"stream\":true,\"max_tokens\":100000,"
			 "\"temperature\":0}", o->model_name ? o->model_name : "");
		snprintf(req, sizeof(req),
			 "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 strlen(body), body);
	} else {
		snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
	}
	rlen = strlen(req);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)o->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	before = vm_rss_kib(o->pid);
	maps0 = n_maps(o->pid);

	while (veil_now_ns() < deadline) {
		int k;

		/* at most 128 connections being set up at once: the listen
		 * backlog is not what is measured */
		while (opened < n && t.pending < 128) {
			struct conn *c = &cs[opened++];
			struct epoll_event ev = {EPOLLOUT | EPOLLIN, {.ptr = c}};
			int one = 1;

			c->st = C_CONNECTING;
			t.pending++;
			c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (c->fd < 0) {
				fprintf(stderr, "node_bench: socket: %s\n", strerror(errno));
				conn_fail(&t, c, cs);
				continue;
			}
			setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			if ((connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
			     errno != EINPROGRESS) ||
			    epoll_ctl(t.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
				conn_fail(&t, c, cs);
		}
		if (opened == n && t.pending == 0) {
			/* all in: let the node settle (and the generating stream
			 * drain) before reading its memory */
			if (!settle)
				settle = veil_now_ns() + 500000000ull;
			else if (veil_now_ns() >= settle)
				break;
		}
		k = epoll_wait(t.ep, evs, VEIL_ARRAY_LEN(evs), 50);
		for (int i = 0; i < k; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c->st != C_FAILED)
				conn_event(&t, c, cs, evs[i].events, req, rlen, sse);
		}
	}
	after = vm_rss_kib(o->pid);
	maps1 = n_maps(o->pid);
	fprintf(stderr, "node_bench: %d connections (%s): %d held, %d failed; node VmRSS "
			"%ld -> %ld KiB, memory mappings %ld -> %ld\n", n, sse ? "sse" : "idle",
		t.ready, t.failed, before, after, maps0, maps1);
	{
		const char *fig = sse ? "open SSE streams waiting for tokens"
				      : "idle keep-alive connections";

		if (t.ready < n || before < 0 || after < 0)
			printf("BENCH|veil-node memory per connection, %d %s|n/a|KiB|goal 64 KiB "
			       "(%d of %d connections held)|n/a\n", n, fig, t.ready, n);
		else
			printf("BENCH|veil-node memory per connection, %d %s (goal ratio <= 1)|"
			       "%.1f|KiB|goal 64 KiB (node VmRSS %ld -> %ld KiB)|%.2f\n", n, fig,
			       (double)(after - before) / n, before, after,
			       (double)(after - before) / n / 64.0);
	}
	for (int i = 0; i < opened; i++)
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	close(t.ep);
	free(cs);
	return 0;
}

/* ==================================================================== */

static void usage(void)
{
	fprintf(stderr,
		"usage: node_bench latency --url URL --model PATH --model-name NAME [--sealed]\n"
		"                  [--threads N] [--max-batch N] [--ctx N] [--max-tokens N]\n"
		"                  [--reps N] [--label L] [--prompt S]\n"
		"       node_bench concurrent --url URL --model-name NAME --clients K\n"
		"                  [--max-tokens N] [--sealed] [--prompt S] [--ref-tok-s X | --raw]\n"
		"       node_bench engine-concurrent --model PATH --clients K [--max-tokens N]\n"
		"                  [--threads N] [--max-batch N] [--ctx N] [--prompt S] [--rounds R]\n"
		"       node_bench forward --model PATH --clients K --max-tokens N [--threads N]\n"
		"                  [--max-batch N] [--ctx N] [--rounds R]\n"
		"       node_bench conns --port P --pid PID --conns N --mode idle|sse\n"
		"                  [--model-name NAME]\n");
	exit(2);
}

static int num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!*s || *end || v < 0 || v > 1 << 30)
		usage();
	return (int)v;
}

int main(int argc, char **argv)
{
	struct opts o = {0};

	if (argc < 2)
		usage();
	o.label = "model";
	o.prompt = DEFAULT_PROMPT;
	o.max_batch = 8;
	o.max_tokens = 64;
	o.reps = 5;
	o.clients = 64;
	o.conns = 2000;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--sealed") || !strcmp(a, "--raw")) {
			*(a[2] == 's' ? &o.sealed : &o.raw) = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--url")) o.url = v;
		else if (!strcmp(a, "--model")) o.model = v;
		else if (!strcmp(a, "--model-name")) o.model_name = v;
		else if (!strcmp(a, "--label")) o.label = v;
		else if (!strcmp(a, "--prompt")) o.prompt = v;
		else if (!strcmp(a, "--mode")) o.mode = v;
		else if (!strcmp(a, "--threads")) o.threads = num(v);
		else if (!strcmp(a, "--max-batch")) o.max_batch = num(v);
		else if (!strcmp(a, "--ctx")) o.ctx = num(v);
		else if (!strcmp(a, "--max-tokens")) o.max_tokens = num(v);
		else if (!strcmp(a, "--reps")) o.reps = num(v);
		else if (!strcmp(a, "--rounds")) o.rounds = num(v);
		else if (!strcmp(a, "--clients")) o.clients = num(v);
		else if (!strcmp(a, "--conns")) o.conns = num(v);
		else if (!strcmp(a, "--port")) o.port = num(v);
		else if (!strcmp(a, "--pid")) o.pid = num(v);
		else if (!strcmp(a, "--ref-tok-s")) o.ref_tok_s = strtod(v, NULL);
		else usage();
	}
	veil_log_setup(VEIL_LOG_WARN, false, stderr);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!strcmp(argv[1], "latency"))
		run_latency(&o);
	else if (!strcmp(argv[1], "concurrent"))
		run_concurrent(&o);
	else if (!strcmp(argv[1], "engine-concurrent"))
		run_engine_concurrent(&o);
	else if (!strcmp(argv[1], "forward"))
		run_forward(&o);
	else if (!strcmp(argv[1], "conns"))
		run_conns(&o);
	else
		usage();
	curl_global_cleanup();
	return 0;
}
