/* The OpenAI-compatible API of veil-node: /v1/models, /v1/chat/completions,
 * /v1/completions, plain or sealed (veil-seal/1), streamed or not, answered
 * by the built-in engine or relayed from an upstream engine; every answer
 * carries a signed receipt (receipt.c).
 *
 * A completion is a `struct job`.  The engine thread only appends to the
 * job's mutex-guarded inbox and, when the job is not already queued, posts
 * the job to the channel; so the channel holds each job at most once and
 * never fills (its capacity exceeds the most jobs that can exist).  The loop
 * drains the inbox and writes to the client.  A job is freed on the loop
 * once its final event was drained (engine) or its call ended (upstream)
 * and its receipt, signed off the loop (receipt.c), came back; a client
 * that leaves first cancels the engine sequence at once.  A prompt of more
 * than TOK_OFFLOAD_BYTES is tokenized on a tokenizer thread (tok_offload),
 * the rest of its request done on the loop when the ids come back. */
#include <ctype.h>
#include <stdatomic.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/evp.h>

#include "veil/chat.h"
#include "veil/digest.h"
#include "veil/seal.h"

#include "node.h"
#include "parse.h"

#define SEALED_TYPE "application/veil-sealed"
#define MAX_PROMPT_TOKENS 65536
/* The largest upstream SSE line / event relayed (a chunk with many tokens'
 * logprobs), 1 MiB. */
#define UP_MAX_EVENT 1048576

/* A prompt is tokenized on the loop unless its text is larger than this:
 * then on a tokenizer thread (tok_offload()).  Measured with SmolLM2's BPE
 * (tiny-synth, 2 cores): 8 KiB of words take ~0.7 ms, of one letter
 * ~1.5 ms, of runs of spaces or dashes 2.5 to 7 ms; 600 KB bodies that pass
 * the pre-check (text_over_cap(), parse.c) at --ctx 4096 take 0.4 to 2.4 s,
 * every stream of the node stalled meanwhile.  So below this the loop
 * stalls a few ms at most, an engine step or so, and the common prompt
 * keeps the inline path (no hand-off in its time to first token); above
 * it the hand-off (~50 us there and back) is a few % of the prompt's own
 * tokenizing. */
#define TOK_OFFLOAD_BYTES 8192
/* What a message adds to the text besides its content: role and template
 * markup (a request of many empty messages tokenizes that much). */
#define TOK_MSG_OVERHEAD 64
/* Two threads: tokenizing is one core's work per prompt, and the engine
 * wants the others.  Big prompts handed to them and not back yet: past
 * that 503 tokenizer_busy with Retry-After (a full queue is seconds of
 * work already); it also bounds the channel back, which then never fills. */
#define TOK_THREADS 2
#define TOK_MAX_PENDING 16
#define TOK_RETRY_AFTER_S 1

struct tokrec {
	size_t text_end;                /* inbox text length after this token */
	struct veil_logprob chosen;
	int n_top;
	struct veil_logprob top[VEIL_ENGINE_MAX_LOGPROBS];
};

struct inbox {
	struct veil_buf text;           /* secret: generated text */
	struct tokrec *toks;
	size_t ntoks, captoks;
	bool final;
	enum veil_finish finish;
	int error;
	bool lost;      /* text could not be queued (out of memory): none is sent */
	struct veil_engine_usage usage;
	uint64_t t_first_ns;            /* engine time of the first token */
	uint64_t gap_sum_ns;
	uint64_t gap_n;
};

struct job {
	struct node *n;
	struct job *prev, *next;        /* n->jobs */
	struct veil_http_req *req;      /* NULL once completed */
	bool chat, stream, include_usage, sealed;
	bool logprobs;                  /* report logprobs at all */
	int top_logprobs;
	char id[48];
	int64_t created;
	uint64_t t_start_ns;
	uint64_t last_tok_ns;           /* engine thread only */

	/* engine */
	uint64_t eng_id;
	bool submitted;
	int32_t prompt_tokens;

	/* engine thread -> loop */
	pthread_mutex_t mu;
	bool posted;
	struct inbox in;
	/* The loop's: the emptied text buffer of the last drained inbox, the
	 * next inbox's (two buffers take turns: no allocation per token). */
	struct veil_buf spare;

	/* loop side */
	bool started;                   /* stream head sent */
	bool ttft_done;
	struct veil_buf full;           /* secret: non-streamed text */
	json_t *lp_content;             /* chat logprobs.content */
	json_t *lp_cmpl;                /* completions logprobs object */
	size_t text_off;
	char *chunk_prefix;             /* token chunks' JSON up to the choice */
	size_t chunk_prefix_len;
	EVP_MD_CTX *resp_md;            /* SHA-256 of the response as sent */
	uint8_t req_sha[32];
	struct veil_seal *seal;

	/* the end: the answer is complete, its receipt is being signed */
	bool released;                  /* the engine / upstream side is done */
	bool receipt_pending;           /* node_receipt_start() called, done not yet */
	/* the client fell behind (its queue full): generation cancelled, no
	 * more tokens sent; at the engine's final event the stream ends with
	 * an error event and a receipt for what was generated */
	bool slow;
	/* the stream ends with an error event and a receipt for what was
	 * generated, no [DONE] (stream_error_end) */
	bool err_end;
	/* text of the answer was lost (out of memory): it cannot end whole */
	bool lost;
	bool cancel_lost;               /* ... and its generation was cancelled */
	/* the node is shutting down: generation cancelled by
	 * node_api_abort_all(), the stream ends at the engine's final event
	 * (shutting_down, with a receipt when tokens were generated) */
	bool stopping;
	char *reply_body;               /* secret: a non-streamed answer's JSON */
	struct veil_buf reply_sealed;   /* ... sealed, when the request was */

	/* its prompt is with a tokenizer thread (tok_offload()): the job is
	 * not submitted yet; NULL again when the ids came back */
	struct tokjob *tj;

	/* upstream */
	struct veil_http_call *call;
	struct veil_http_sse_parser sse;
	int up_status;
	int64_t up_prompt, up_completion;
	bool up_done;
};

static void job_free(struct job *j)
{
	if (!j)
		return;
	if (j->prev)
		j->prev->next = j->next;
	else if (j->n->jobs == j)
		j->n->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	pthread_mutex_destroy(&j->mu);
	veil_buf_free(&j->in.text);
	veil_buf_free(&j->spare);
	free(j->in.toks);
	veil_buf_free(&j->full);
	json_decref(j->lp_content);
	json_decref(j->lp_cmpl);
	free(j->chunk_prefix);
	EVP_MD_CTX_free(j->resp_md);
	veil_seal_free(j->seal);
	if (j->reply_body) {
		veil_wipe(j->reply_body, strlen(j->reply_body));
		free(j->reply_body);
	}
	veil_buf_free(&j->reply_sealed);
	if (j->call)
		veil_http_call_cancel(j->call);
	veil_http_sse_free(&j->sse);
	if (j->n->m.jobs_active)
		j->n->m.jobs_active--;
	veil_wipe(j, sizeof(*j));
	free(j);
}

/* The engine or upstream side of the job is done; it is freed now, or when
 * its receipt comes back. */
static void job_release(struct job *j)
{
	j->released = true;
	if (!j->receipt_pending)
		job_free(j);
}

/* ---- small helpers ------------------------------------------------------ */

static bool utf8_valid(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		size_t k;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3;
		else
			return false;
		if (i + k >= n)
			return false;
		for (size_t m = 1; m <= k; m++)
			if (((unsigned char)s[i + m] & 0xc0) != 0x80)
				return false;
		i += k + 1;
	}
	return true;
}

/* The token's text as a JSON string, and its bytes. */
static json_t *tok_json(const struct veil_tok *t, int32_t id, json_t **bytes)
{
	char buf[256];
	int len = veil_tok_piece(t, id, false, buf, sizeof(buf));
	json_t *b = json_array();

	if (len < 0)
		len = 0;
	for (int i = 0; i < len; i++)
		json_array_append_new(b, json_integer((unsigned char)buf[i]));
	if (bytes)
		*bytes = b;
	else
		json_decref(b);
	if (utf8_valid(buf, (size_t)len))
		return json_stringn(buf, (size_t)len);
	{
		/* A piece that is a part of a UTF-8 sequence: OpenAI's
		 * "bytes:\xNN" notation. */
		char o[6 + 4 * 256 + 1];
		size_t w = (size_t)snprintf(o, sizeof(o), "bytes:");

		for (int i = 0; i < len && w + 5 < sizeof(o); i++)
			w += (size_t)snprintf(o + w, sizeof(o) - w, "\\x%02x",
					      (unsigned char)buf[i]);
		return json_string(o);
	}
}

static void hash_update(struct job *j, const void *p, size_t n)
{
	if (j->resp_md)
		EVP_DigestUpdate(j->resp_md, p, n);
}

static void hash_final(struct job *j, uint8_t out[32])
{
	unsigned len = 32;

	memset(out, 0, 32);
	if (j->resp_md)
		EVP_DigestFinal_ex(j->resp_md, out, &len);
}

static int reply_err(struct node *n, struct veil_http_req *req, int status,
		     const char *type, const char *code, const char *msg)
{
	node_metrics_status(n, status);
	return veil_http_reply_error(req, status, type, code, "%s", msg);
}

/* ---- streaming output --------------------------------------------------- */

/* Writes raw bytes of the response body and hashes them. */
static int out_raw(struct job *j, const void *p, size_t n)
{
	int rc;

	if (!j->req)
		return VEIL_ECANCELED;
	if ((rc = veil_http_stream_write(j->req, p, n)) < 0)
		return rc;
	hash_update(j, p, n);
	return 0;
}

static int stream_begin(struct job *j)
{
	int rc;

	if (j->started)
		return 0;
	if ((rc = veil_http_sse_start(j->req)) < 0)
		return rc;
	j->started = true;
	node_metrics_status(j->n, 200);
	return 0;
}

/* Empties a scratch buffer of the loop, wiping what it held (its bytes
 * beyond len were wiped when it was emptied before). */
static void scratch_reset(struct veil_buf *b)
{
	if (b->data) {
		veil_wipe(b->data, b->len);
		b->len = 0;
		b->data[0] = '\0';
	}
}

static json_t *chunk_base(struct job *j);

/* Sends the event in n->sc_ev (a whole SSE event) and empties it:
 * plaintext, or sealed as one response chunk whose plaintext is the whole
 * event's bytes, base64 in a "data:" line.  The loop's scratch buffers
 * make this allocation-free once they have grown. */
static int out_event_scratch(struct job *j, bool final)
{
	struct node *n = j->n;
	struct veil_buf *ev = &n->sc_ev, *o = &n->sc_out, *ct = &n->sc_ct;
	size_t cap, clen, blen;
	int rc;

	if ((rc = stream_begin(j)) < 0)
		goto out;
	if (!j->seal) {
		rc = out_raw(j, ev->data, ev->len);
		goto out;
	}
	/* Refused before sealing: a sealed chunk takes the next sequence
	 * number (and may be the final one) whether or not it is sent. */
	if (veil_http_stream_full(j->req)) {
		rc = VEIL_EBUSY;
		goto out;
	}
	/* the first chunk also carries the response nonce */
	cap = ev->len + VEIL_SEAL_CHUNK_OVERHEAD + VEIL_SEAL_RESPONSE_NONCE_LEN;
	ct->len = o->len = 0;
	if ((rc = veil_buf_reserve(ct, cap)) < 0 ||
	    (rc = veil_seal_chunk(j->seal, ev->data, ev->len, final, ct->data, cap,
				  &clen)) < 0)
		goto out;
	blen = veil_b64_encoded_len(clen, 0);
	if ((rc = veil_buf_reserve(o, 6 + blen + 2)) < 0)
		goto out;
	memcpy(o->data, "data: ", 6);
	veil_b64_encode(ct->data, clen, 0, (char *)o->data + 6, blen + 1);
	memcpy(o->data + 6 + blen, "\n\n", 2);
	o->len = 6 + blen + 2;
	rc = out_raw(j, o->data, o->len);
out:
	scratch_reset(ev);
	return rc;
}

/* One SSE event of the answer ("event: <event>" when event is non-NULL).
 * A sealed event is one sealed chunk: over VEIL_SEAL_MAX_CHUNK bytes it is
 * refused (VEIL_ERANGE; the engine's token events are split below that,
 * see stream_tokens()).  A plaintext event has no such cap: one bigger than
 * the scratch buffer (an upstream's) is written as it is. */
static int out_event(struct job *j, const char *event, const char *data,
		     size_t len, bool final)
{
	struct veil_buf *ev = &j->n->sc_ev;
	int rc;

	if ((rc = stream_begin(j)) < 0)
		return rc;
	scratch_reset(ev);
	if (!j->seal && !event && len > ev->max - 8) {
		/* three writes, one event: room for all of them or none, or a
		 * refused second one would leave "data: " alone on the wire */
		if (!j->req)
			return VEIL_ECANCELED;
		if (veil_http_stream_full(j->req))
			return VEIL_EBUSY;
		veil_http_stream_allow(j->req, len + 8);
		if ((rc = out_raw(j, "data: ", 6)) < 0 || (rc = out_raw(j, data, len)) < 0)
			return rc;
		return out_raw(j, "\n\n", 2);
	}
	if ((event && ((rc = veil_buf_append_str(ev, "event: ")) < 0 ||
		       (rc = veil_buf_append_str(ev, event)) < 0 ||
		       (rc = veil_buf_append_str(ev, "\n")) < 0)) ||
	    (rc = veil_buf_append_str(ev, "data: ")) < 0 ||
	    (rc = veil_buf_append(ev, data, len)) < 0 ||
	    (rc = veil_buf_append_str(ev, "\n\n")) < 0) {
		scratch_reset(ev);
		return rc;
	}
	return out_event_scratch(j, final);
}

/* ---- token chunks without jansson ----------------------------------------- */

/* A token chunk is the hot path of a stream (one per token and stream):
 * built straight into the scratch buffer, byte for byte what json_pack +
 * json_dumps(JSON_COMPACT) make of it (chunk_base() and the choice of
 * job_on_msg()), without a dozen allocations per token.  Text that is not
 * valid UTF-8 goes the jansson way, which has its own rules for it. */

/* Valid UTF-8 as jansson checks it (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
static bool utf8_strict(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i], k;
		uint32_t u;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			u = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			u = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			u = c & 0x07;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (unsigned m = 1; m <= k; m++) {
			if ((s[i + m] & 0xc0) != 0x80)
				return false;
			u = (u << 6) | (s[i + m] & 0x3f);
		}
		if ((k == 2 && (u < 0x800 || (u >= 0xd800 && u <= 0xdfff))) ||
		    (k == 3 && (u < 0x10000 || u > 0x10ffff)))
			return false;
		i += k + 1;
	}
	return true;
}

/* Appends s as a JSON string exactly as jansson's json_dumps writes one
 * (no JSON_ENSURE_ASCII, no JSON_ESCAPE_SLASH): '"', '\\' and control
 * characters escaped, \b \f \n \r \t by name, others as \u00XX (upper
 * case); everything else as is.  s must pass utf8_strict(). */
static int json_str_append(struct veil_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i = 0, run;
	int rc;

	if ((rc = veil_buf_reserve(b, n + 2)) < 0)
		return rc;
	b->data[b->len++] = '"';
	while (i < n) {
		unsigned char c;
		char esc[6];
		size_t el = 2;

		for (run = i; run < n; run++) {
			c = (unsigned char)s[run];
			if (c < 0x20 || c == '"' || c == '\\')
				break;
		}
		if (run > i && (rc = veil_buf_append(b, s + i, run - i)) < 0)
			return rc;
		if ((i = run) == n)
			break;
		c = (unsigned char)s[i++];
		esc[0] = '\\';
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			el = 6;
		}
		if ((rc = veil_buf_append(b, esc, el)) < 0)
			return rc;
	}
	return veil_buf_append(b, "\"", 1);
}

/* The part of every chunk of this job before the choice:
 * {"id":..., "object":..., "created":..., "model":...,
 * "system_fingerprint":null[, "usage":null], "choices":[ -- jansson's own
 * output of chunk_base(), cut before its empty choices' "]}". */
static int chunk_prefix(struct job *j)
{
	json_t *c;
	char *t;
	size_t len;

	if (j->chunk_prefix)
		return 0;
	c = chunk_base(j);
	if (!c || json_object_set_new(c, "choices", json_array()) < 0) {
		json_decref(c);
		return VEIL_ENOMEM;
	}
	t = json_dumps(c, JSON_COMPACT);
	json_decref(c);
	if (!t)
		return VEIL_ENOMEM;
	len = strlen(t);
	if (len < 2 || strcmp(t + len - 2, "]}")) {
		free(t);
		return VEIL_EINTERNAL;
	}
	t[len - 2] = '\0';
	j->chunk_prefix = t;
	j->chunk_prefix_len = len - 2;
	return 0;
}

/* A token chunk of `text` with no logprobs.  VEIL_EAGAIN: not for this
 * path (the caller builds it with jansson). */
static int out_text_chunk(struct job *j, const char *text, size_t len)
{
	struct veil_buf *ev = &j->n->sc_ev;
	int rc;

	if (!utf8_strict((const unsigned char *)text, len))
		return VEIL_EAGAIN;
	if ((rc = stream_begin(j)) < 0 || (rc = chunk_prefix(j)) < 0)
		return rc;
	scratch_reset(ev);
	if ((rc = veil_buf_append(ev, "data: ", 6)) < 0 ||
	    (rc = veil_buf_append(ev, j->chunk_prefix, j->chunk_prefix_len)) < 0 ||
	    (rc = veil_buf_append_str(ev, j->chat ? "{\"index\":0,\"delta\":{\"content\":"
						  : "{\"text\":")) < 0 ||
	    (rc = json_str_append(ev, text, len)) < 0 ||
	    (rc = veil_buf_append_str(ev, j->chat ? "},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
						  : ",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n")) < 0) {
		scratch_reset(ev);
		return rc;
	}
	return out_event_scratch(j, false);
}

static int out_json_event(struct job *j, json_t *obj, bool final)
{
	char *s = json_dumps(obj, JSON_COMPACT);
	int rc;

	json_decref(obj);
	if (!s)
		return VEIL_ENOMEM;
	rc = out_event(j, NULL, s, strlen(s), final);
	veil_wipe(s, strlen(s));
	free(s);
	return rc;
}

static void job_complete_stream(struct job *j)
{
	if (j->req) {
		veil_http_stream_end(j->req);
		j->req = NULL;
	}
}

/* The error event that ends a stream which cannot finish (OpenAI's error
 * object; sealed: the final chunk).  It goes past a full queue (a client
 * too slow, say): it is what tells the client the answer is cut. */
static int out_error_event(struct job *j, const char *code, const char *msg)
{
	json_t *e = json_pack("{s:{s:s, s:s, s:s}}", "error", "message", msg,
			      "type", "server_error", "code", code);
	char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
	int rc;

	json_decref(e);
	if (!j->req)
		rc = VEIL_ECANCELED;
	else if (!s)
		rc = VEIL_ENOMEM;
	else {
		veil_http_stream_allow(j->req, 64u << 10);
		rc = out_event(j, "error", s, strlen(s), true);
	}
	free(s);
	return rc;
}

/* Ends a stream that cannot finish with an explicit error event (never a
 * silent [DONE]). */
static void stream_fail(struct job *j, const char *code, const char *msg)
{
	out_error_event(j, code, msg);
	VEIL_WARN(NODE_MOD, "%s: stream ended with error %s", j->id, code);
	job_complete_stream(j);
}

static json_t *usage_json(int64_t p, int64_t c)
{
	return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)p,
			 "completion_tokens", (json_int_t)c, "total_tokens",
			 (json_int_t)(p + c));
}

static json_t *chunk_base(struct job *j)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:n}", "id", j->id, "object",
			      j->chat ? "chat.completion.chunk" : "text_completion",
			      "created", (json_int_t)j->created, "model",
			      j->n->o.model_name, "system_fingerprint");

	if (j->include_usage)
		json_object_set_new(o, "usage", json_null());
	return o;
}

/* The receipt of a stream is signed: its event, then [DONE] (none after an
 * error event: stream_error_end); completes the request. */
static void stream_receipt_done(void *arg, int rc, char *rj)
{
	struct job *j = arg;
	struct veil_buf b = VEIL_BUF_INIT(1 << 16);

	j->receipt_pending = false;
	if (!j->req)
		goto out; /* the client left, or a shutdown answered it */
	if (rc < 0)
		goto fail;
	/* Sealed streams go to veil-aware clients: a named event outside the
	 * sealed body.  Plaintext streams reach any OpenAI client, which
	 * passes named events up as if they were chunks: there the receipt is
	 * a chunk with no choices (like the usage chunk). */
	if (j->seal) {
		if (veil_buf_appendf(&b, "event: veil.receipt\ndata: %s\n\n%s", rj,
				     j->err_end ? "" : "data: [DONE]\n\n") < 0)
			goto fail;
	} else {
		json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", j->id,
				      "object", "veil.receipt", "created",
				      (json_int_t)j->created, "model", j->n->o.model_name,
				      "choices", "veil_receipt", json_loads(rj, 0, NULL));
		char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;

		json_decref(o);
		rc = t ? veil_buf_appendf(&b, "data: %s\n\n%s", t,
					  j->err_end ? "" : "data: [DONE]\n\n")
		       : VEIL_ENOMEM;
		free(t);
		if (rc < 0)
			goto fail;
	}
	veil_http_stream_write(j->req, b.data, b.len);
	job_complete_stream(j);
	goto out;
fail:
	stream_fail(j, "receipt_failed", "the answer could not be completed");
out:
	veil_buf_free(&b);
	free(rj);
	if (j->released)
		job_free(j);
}

/* The answer is complete: for sealed streams the final sealed chunk, then
 * the receipt (stream_receipt_done). */
static void stream_slow_end(struct job *j, int64_t p, int64_t c);

static void stream_finish(struct job *j, int64_t p, int64_t c)
{
	uint8_t rs[32];
	struct node_receipt_in ri;

	if (j->seal) {
		static const char done[] = "[DONE]";
		int rc = out_event(j, NULL, done, sizeof(done) - 1, true);

		if (rc == VEIL_EBUSY) {
			stream_slow_end(j, p, c);
			return;
		}
		if (rc < 0) {
			stream_fail(j, "receipt_failed", "the answer could not be completed");
			return;
		}
	}
	hash_final(j, rs);
	ri = (struct node_receipt_in){j->id, j->req_sha, rs, p, c, j->created};
	j->receipt_pending = true;
	node_receipt_start(j->n, &ri, stream_receipt_done, j);
}

/* A stream that cannot finish after the engine generated tokens ends with
 * an error event (sealed: the final chunk) and then, so that what it was
 * sent is billed, a receipt for the tokens generated (the engine's count)
 * and the bytes sent, the error event included; no [DONE].  Both go past
 * the client's queue cap: a relay that paused the stream (veil-gateway)
 * reads them once it stops waiting for its own client. */
static void stream_error_end(struct job *j, const char *code, const char *msg,
			     int64_t p, int64_t c)
{
	uint8_t rs[32];
	struct node_receipt_in ri;

	VEIL_WARN(NODE_MOD, "%s: stream ended with error %s (receipt for %lld "
		  "generated tokens)", j->id, code, (long long)c);
	j->err_end = true;
	if (out_error_event(j, code, msg) < 0) {
		job_complete_stream(j);
		return;
	}
	hash_final(j, rs);
	ri = (struct node_receipt_in){j->id, j->req_sha, rs, p, c, j->created};
	j->receipt_pending = true;
	node_receipt_start(j->n, &ri, stream_receipt_done, j);
}

/* A stream whose client fell behind: cancelled (counted once), then ended
 * as above with client_too_slow. */
static void stream_slow_end(struct job *j, int64_t p, int64_t c)
{
	/* set already when the queue filled before the engine's final batch */
	if (!j->slow) {
		j->n->m.cancelled++;
		j->slow = true;
	}
	stream_error_end(j, "client_too_slow", "the client did not read the stream", p, c);
}

/* ---- non-streamed replies ------------------------------------------------ */

/* The receipt of a whole answer is signed: the reply with it. */
static void reply_receipt_done(void *arg, int rc, char *rj)
{
	struct job *j = arg;
	char *hdr = NULL;

	j->receipt_pending = false;
	if (j->req) {
		const uint8_t *out = (const uint8_t *)j->reply_body;
		size_t outlen = strlen(j->reply_body);

		if (j->seal) {
			out = j->reply_sealed.data;
			outlen = j->reply_sealed.len;
		}
		if (rc == 0 && (hdr = node_b64url(rj, strlen(rj))))
			veil_http_add_header(j->req, "X-Veil-Receipt", hdr);
		veil_http_add_header(j->req, "X-Veil-Receipt-Id", j->id);
		node_metrics_status(j->n, 200);
		veil_http_reply(j->req, 200, j->seal ? SEALED_TYPE : "application/json",
				out, outlen);
		j->req = NULL;
	}
	free(hdr);
	free(rj);
	if (j->released)
		job_free(j);
}

static void reply_final(struct job *j, json_t *resp, int64_t p, int64_t c)
{
	uint8_t rs[32];
	struct node_receipt_in ri;

	j->reply_body = json_dumps(resp, JSON_COMPACT);
	json_decref(resp);
	if (!j->reply_body) {
		reply_err(j->n, j->req, 500, NULL, "internal", "out of memory");
		j->req = NULL;
		return;
	}
	j->reply_sealed = (struct veil_buf)VEIL_BUF_INIT(64u << 20);
	if (j->seal) {
		if (veil_seal_body(j->seal, (const uint8_t *)j->reply_body,
				   strlen(j->reply_body), &j->reply_sealed) < 0) {
			reply_err(j->n, j->req, 500, NULL, "seal_failed",
				  "the answer could not be sealed");
			j->req = NULL;
			return;
		}
		veil_digest_sha256(j->reply_sealed.data, j->reply_sealed.len, rs);
	} else {
		veil_digest_sha256(j->reply_body, strlen(j->reply_body), rs);
	}
	ri = (struct node_receipt_in){j->id, j->req_sha, rs, p, c, j->created};
	j->receipt_pending = true;
	node_receipt_start(j->n, &ri, reply_receipt_done, j);
}

/* ---- engine events ------------------------------------------------------- */

static void engine_cb(const struct veil_engine_event *ev, void *user)
{
	struct job *j = user;
	bool post = false;
	uint64_t now = veil_now_ns();

	pthread_mutex_lock(&j->mu);
	if (ev->text_len && veil_buf_append(&j->in.text, ev->text, ev->text_len) < 0) {
		j->in.error = VEIL_ENOMEM;
		j->in.lost = true;
	}
	if (ev->token >= 0) {
		if (!j->in.t_first_ns && !j->last_tok_ns)
			j->in.t_first_ns = now;
		else if (j->last_tok_ns) {
			j->in.gap_sum_ns += now - j->last_tok_ns;
			j->in.gap_n++;
		}
		j->last_tok_ns = now;
		if (j->logprobs) {
			if (j->in.ntoks == j->in.captoks) {
				size_t nc = j->in.captoks ? 2 * j->in.captoks : 16;
				struct tokrec *t = realloc(j->in.toks, nc * sizeof(*t));

				if (t) {
					j->in.toks = t;
					j->in.captoks = nc;
				}
			}
			if (j->in.ntoks < j->in.captoks) {
				struct tokrec *t = &j->in.toks[j->in.ntoks++];

				t->text_end = j->in.text.len;
				t->chosen = ev->chosen;
				t->n_top = VEIL_MIN(ev->n_top, VEIL_ENGINE_MAX_LOGPROBS);
				for (int i = 0; i < t->n_top; i++)
					t->top[i] = ev->top[i];
			}
		}
	}
	if (ev->finish != VEIL_FINISH_NONE) {
		j->in.final = true;
		j->in.finish = ev->finish;
		if (ev->finish == VEIL_FINISH_ERROR)
			j->in.error = ev->error;
	}
	j->in.usage = ev->usage;
	if (!j->posted) {
		j->posted = true;
		post = true;
	}
	pthread_mutex_unlock(&j->mu);
	if (post && veil_http_chan_post(j->n->chan, j) < 0)
		VEIL_ERROR(NODE_MOD, "%s: channel full (a bug: capacity too small)", j->id);
}

static json_t *logprob_entry(const struct veil_tok *t, const struct veil_logprob *lp)
{
	json_t *bytes = NULL;
	json_t *tok = tok_json(t, lp->id, &bytes);

	return json_pack("{s:o, s:f, s:o}", "token", tok, "logprob",
			 (double)lp->logprob, "bytes", bytes);
}

/* Logprobs of a batch of tokens, for chat (content entries) and completions
 * (OpenAI's legacy object). */
static void add_logprobs(struct job *j, const struct tokrec *toks, size_t n,
			 json_t *content, json_t *cmpl)
{
	const struct veil_tok *t = j->n->tok;

	for (size_t i = 0; i < n; i++) {
		const struct tokrec *r = &toks[i];

		if (content) {
			json_t *e = logprob_entry(t, &r->chosen);
			json_t *top = json_array();

			for (int k = 0; k < r->n_top && k < j->top_logprobs; k++)
				json_array_append_new(top, logprob_entry(t, &r->top[k]));
			json_object_set_new(e, "top_logprobs", top);
			json_array_append_new(content, e);
		}
		if (cmpl) {
			json_t *tj = tok_json(t, r->chosen.id, NULL);
			json_t *topo = json_object();

			for (int k = 0; k < r->n_top && k < j->top_logprobs; k++) {
				json_t *s = tok_json(t, r->top[k].id, NULL);

				json_object_set_new(topo, json_string_value(s),
						    json_real(r->top[k].logprob));
				json_decref(s);
			}
			json_array_append_new(json_object_get(cmpl, "text_offset"),
					      json_integer((json_int_t)j->text_off));
			j->text_off += json_string_length(tj);
			json_array_append_new(json_object_get(cmpl, "tokens"), tj);
			json_array_append_new(json_object_get(cmpl, "token_logprobs"),
					      json_real(r->chosen.logprob));
			json_array_append_new(json_object_get(cmpl, "top_logprobs"),
					      j->top_logprobs ? topo : json_null());
			if (!j->top_logprobs)
				json_decref(topo);
		}
	}
}

static json_t *new_cmpl_logprobs(void)
{
	return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs",
			 "top_logprobs", "text_offset");
}

static const char *finish_reason(enum veil_finish f)
{
	return f == VEIL_FINISH_LENGTH ? "length" : "stop";
}

/* A token chunk built with jansson: with logprobs, or text out_text_chunk()
 * leaves to jansson. */
static json_t *token_chunk_json(struct job *j, const struct inbox *in)
{
	json_t *c = chunk_base(j), *ch;

	if (j->chat)
		ch = json_pack("{s:i, s:{s:s%}, s:n, s:n}", "index", 0, "delta",
			       "content", in->text.len ? (char *)in->text.data : "",
			       in->text.len, "logprobs", "finish_reason");
	else
		ch = json_pack("{s:s%, s:i, s:n, s:n}", "text",
			       in->text.len ? (char *)in->text.data : "",
			       in->text.len, "index", 0, "logprobs",
			       "finish_reason");
	if (j->logprobs && in->ntoks) {
		if (j->chat) {
			json_t *content = json_array();

			add_logprobs(j, in->toks, in->ntoks, content, NULL);
			json_object_set_new(ch, "logprobs",
					    json_pack("{s:o, s:n}", "content",
						      content, "refusal"));
		} else {
			json_t *lp = new_cmpl_logprobs();

			add_logprobs(j, in->toks, in->ntoks, NULL, lp);
			json_object_set_new(ch, "logprobs", lp);
		}
	}
	json_object_set_new(c, "choices", json_pack("[o]", ch));
	return c;
}

/* Room for a token event's JSON: the sealed chunk cap (plaintext streams
 * keep to it too, so both see the same events) less the chunk's fixed part
 * and "data: ", "\n\n" and the choice's keys. */
static size_t event_budget(const struct job *j)
{
	size_t fixed = j->chunk_prefix_len + 512;

	return fixed < VEIL_SEAL_MAX_CHUNK / 2 ? VEIL_SEAL_MAX_CHUNK - fixed
					       : VEIL_SEAL_MAX_CHUNK / 2;
}

/* An upper bound on the JSON one logprob entry of token `id` adds (chat:
 * token string, logprob, bytes array and keys; completions: token, logprob,
 * a top_logprobs key and a text_offset): a piece of L bytes is at most 6L
 * as a JSON string ("\u00XX", or "bytes:\\xNN" per byte) and 4L as a bytes
 * array, a double at most 24 characters. */
static size_t lp_bound(const struct veil_tok *t, int32_t id)
{
	char buf[256];
	int len = veil_tok_piece(t, id, false, buf, sizeof(buf));

	return 10 * (size_t)(len < 0 ? 256 : len) + 96;
}

static size_t tokrec_bound(const struct job *j, const struct tokrec *r)
{
	size_t b = 128 + lp_bound(j->n->tok, r->chosen.id);

	for (int k = 0; k < r->n_top && k < j->top_logprobs; k++)
		b += lp_bound(j->n->tok, r->top[k].id);
	return b;
}

/* One token event of text[0:len) (and the tokens' logprobs, if any). */
static int out_token_event(struct job *j, const char *text, size_t len,
			   const struct tokrec *toks, size_t ntoks)
{
	struct inbox sub = {0};
	int rc = VEIL_EAGAIN;

	if (!ntoks)
		rc = out_text_chunk(j, text, len);
	if (rc != VEIL_EAGAIN)
		return rc;
	sub.text.data = (uint8_t *)(uintptr_t)text;
	sub.text.len = len;
	sub.toks = (struct tokrec *)(uintptr_t)toks;
	sub.ntoks = ntoks;
	return out_json_event(j, token_chunk_json(j, &sub), false);
}

/* Text alone, in events of at most `max` bytes cut at UTF-8 boundaries. */
static int stream_text(struct job *j, const char *t, size_t len, size_t max)
{
	int rc = 0;

	while (len && rc == 0) {
		size_t cut = len;

		if (cut > max) {
			cut = max;
			/* back to the start of a UTF-8 sequence (at most 3) */
			for (int k = 0; k < 3 && cut > 1 &&
			     ((unsigned char)t[cut] & 0xc0) == 0x80; k++)
				cut--;
		}
		rc = out_token_event(j, t, cut, NULL, 0);
		t += cut;
		len -= cut;
	}
	return rc;
}

/* Sends what one inbox holds: every token the engine made since the last
 * drain.  A loop that fell behind finds many (with top_logprobs 20 each
 * adds ~1.5 KB), so they go out in several events, cut at token
 * boundaries, each within one sealed chunk (docs/protocol.md): a sealed
 * event cannot be larger, and a plaintext stream gets the same events. */
/* What token i of an inbox adds to an event at most: its logprobs and its
 * own text, escaped (6 bytes a byte at worst). */
static size_t tok_cost(const struct job *j, const struct inbox *in, size_t i)
{
	size_t te = VEIL_MIN(in->toks[i].text_end, in->text.len);
	size_t ts = i ? VEIL_MIN(in->toks[i - 1].text_end, te) : 0;

	return tokrec_bound(j, &in->toks[i]) + 6 * (te - ts);
}

static int stream_tokens(struct job *j, const struct inbox *in)
{
	const char *text = in->text.len ? (const char *)in->text.data : "";
	size_t budget = event_budget(j), a = 0, off = 0, cost_a;
	int rc = 0;

	if (!(j->logprobs && in->ntoks))
		return stream_text(j, text, in->text.len, budget / 6);
	cost_a = tok_cost(j, in, 0);
	while (a < in->ntoks && rc == 0) {
		size_t b = a + 1, est = cost_a, end;

		/* at least one token per event; each token's cost is taken
		 * once (the one that does not fit opens the next event) */
		while (b < in->ntoks) {
			size_t c = tok_cost(j, in, b);

			if (est + c > budget) {
				cost_a = c;
				break;
			}
			est += c;
			b++;
		}
		/* text after the last token (the stopper's flush) goes with it */
		end = b == in->ntoks ? in->text.len
				     : VEIL_MIN(in->toks[b - 1].text_end, in->text.len);
		if (end < off)
			end = off;
		rc = out_token_event(j, text + off, end - off, in->toks + a, b - a);
		off = end;
		a = b;
	}
	return rc;
}

/* A stream event could not be written: ends the stream with an error that
 * names why, and stops the engine's work on it.  Only a full output queue
 * (VEIL_EBUSY) is a slow client. */
static void stream_write_failed(struct job *j, int rc, bool cancel_engine)
{
	struct node *n = j->n;

	if (cancel_engine)
		veil_engine_cancel(n->engine, j->eng_id);
	if (rc == VEIL_EBUSY && j->submitted) {
		/* ended at the engine's final event (stream_slow_end), which
		 * may be in the batch that failed: no more tokens are sent */
		n->m.cancelled++;
		j->slow = true;
	} else if (rc == VEIL_EBUSY) {
		n->m.cancelled++;
		stream_fail(j, "client_too_slow", "the client did not read the stream");
	} else if (rc == VEIL_ECANCELED) {
		n->m.cancelled++;
		stream_fail(j, "cancelled", "the client went away");
	} else if (rc == VEIL_ERANGE) {
		stream_fail(j, "event_too_large",
			    "a stream event exceeds the 64 KiB sealed chunk size");
	} else {
		stream_fail(j, "write_failed", "the stream could not be written");
	}
}

static void job_on_msg(struct job *j)
{
	struct node *n = j->n;
	struct inbox in;

	pthread_mutex_lock(&j->mu);
	in = j->in;
	memset(&j->in, 0, sizeof(j->in));
	j->in.text = j->spare;
	j->posted = false;
	pthread_mutex_unlock(&j->mu);
	j->spare = (struct veil_buf)VEIL_BUF_SECRET_INIT(in.text.max);

	if (in.t_first_ns && !j->ttft_done) {
		j->ttft_done = true;
		node_hist_add(&n->m.ttft, (double)(in.t_first_ns - j->t_start_ns) / 1e9);
	}
	for (uint64_t i = 0; i < in.gap_n; i++)
		node_hist_add(&n->m.tpot, (double)in.gap_sum_ns / (double)in.gap_n / 1e9);

	/* an engine's error ends the answer after the text it made (billed by
	 * the receipt that follows the error event: stream_error_end) */
	if (in.lost)
		j->lost = true;
	if (j->req && j->lost && !j->slow && j->stream) {
		/* no receipt: the engine's count would bill text never sent */
		if (j->submitted && !in.final)
			veil_engine_cancel(n->engine, j->eng_id);
		stream_fail(j, "out_of_memory", "the answer could not be completed");
	} else if (j->req && !j->stream && j->lost && !in.final && j->submitted &&
		   !j->cancel_lost) {
		/* a whole answer missing text ends in a 500 at its final event:
		 * generating the rest would be for nothing */
		j->cancel_lost = true;
		veil_engine_cancel(n->engine, j->eng_id);
	} else if (j->req && !j->slow && !j->lost && (in.text.len || in.ntoks)) {
		if (j->stream) {
			int rc = stream_tokens(j, &in);

			if (rc < 0)
				stream_write_failed(j, rc, j->submitted && !in.final);
		} else {
			if (veil_buf_append(&j->full, in.text.data, in.text.len) < 0)
				j->lost = true;
			if (j->logprobs)
				add_logprobs(j, in.toks, in.ntoks, j->lp_content, j->lp_cmpl);
		}
	}
	if (in.final) {
		int64_t p = in.usage.prompt_tokens, c = in.usage.completion_tokens;

		n->m.tokens_in += (uint64_t)p;
		n->m.tokens_out += (uint64_t)c;
		VEIL_INFO(NODE_MOD, "%s: %lld prompt tokens, %lld generated, finish %s%s",
			  j->id, (long long)p, (long long)c,
			  veil_finish_name(in.finish) ? veil_finish_name(in.finish) : "?",
			  j->req ? "" : " (client gone)");
		if (!j->req) {
			/* nothing to send */
		} else if (j->slow) {
			stream_slow_end(j, p, c);
		} else if (j->lost || in.error || in.finish == VEIL_FINISH_ERROR ||
			   in.finish == VEIL_FINISH_CANCELLED) {
			const char *code = j->stopping ? "shutting_down"
					   : in.finish == VEIL_FINISH_CANCELLED ? "cancelled"
					   : "engine_error";
			const char *msg = j->stopping ? n->abort_why
					  : "generation stopped before the answer was complete";

			/* what the client was sent is billed: a receipt for
			 * the tokens generated, after the error event */
			if (j->stream && c > 0)
				stream_error_end(j, code, msg, p, c);
			else if (j->stream)
				stream_fail(j, code, msg);
			else {
				bool cancelled = in.finish == VEIL_FINISH_CANCELLED && !j->lost;

				reply_err(n, j->req, cancelled ? 503 : 500, NULL,
					  cancelled ? "cancelled" : "engine_error",
					  "generation stopped before the answer was complete");
				j->req = NULL;
			}
		} else if (j->stream) {
			json_t *ck = chunk_base(j);
			int rc;

			if (j->chat)
				json_object_set_new(ck, "choices",
						    json_pack("[{s:i, s:{}, s:n, s:s}]", "index", 0,
							      "delta", "logprobs", "finish_reason",
							      finish_reason(in.finish)));
			else
				json_object_set_new(ck, "choices",
						    json_pack("[{s:s, s:i, s:n, s:s}]", "text", "",
							      "index", 0, "logprobs", "finish_reason",
							      finish_reason(in.finish)));
			rc = out_json_event(j, ck, false);
			if (rc == 0 && j->include_usage) {
				ck = chunk_base(j);
				json_object_set_new(ck, "choices", json_array());
				json_object_set_new(ck, "usage", usage_json(p, c));
				rc = out_json_event(j, ck, false);
			}
			if (rc == VEIL_EBUSY) {
				stream_slow_end(j, p, c);
			} else if (rc < 0) {
				stream_write_failed(j, rc, false);
			} else {
				stream_finish(j, p, c);
			}
		} else {
			json_t *resp, *lp = json_null();

			if (j->logprobs)
				lp = j->chat ? json_pack("{s:O, s:n}", "content", j->lp_content,
							 "refusal")
					     : json_incref(j->lp_cmpl);
			if (j->chat)
				resp = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s%, s:n}, s:o, s:s}], s:o, s:n}",
						 "id", j->id, "object", "chat.completion",
						 "created", (json_int_t)j->created, "model",
						 n->o.model_name, "choices", "index", 0, "message",
						 "role", "assistant", "content",
						 j->full.len ? (char *)j->full.data : "", j->full.len,
						 "refusal", "logprobs", lp, "finish_reason",
						 finish_reason(in.finish), "usage",
						 usage_json(p, c), "system_fingerprint");
			else
				resp = json_pack("{s:s, s:s, s:I, s:s, s:[{s:s%, s:i, s:o, s:s}], s:o, s:n}",
						 "id", j->id, "object", "text_completion",
						 "created", (json_int_t)j->created, "model",
						 n->o.model_name, "choices", "text",
						 j->full.len ? (char *)j->full.data : "", j->full.len,
						 "index", 0, "logprobs", lp, "finish_reason",
						 finish_reason(in.finish), "usage",
						 usage_json(p, c), "system_fingerprint");
			reply_final(j, resp, p, c);
		}
	}
	/* wiped (its whole capacity), then the next inbox's; a big one (a
	 * burst while the loop was late) is not kept */
	if (in.text.cap > 4096)
		veil_buf_free(&in.text);
	else
		veil_buf_reset(&in.text);
	j->spare = in.text;
	free(in.toks);
	if (in.final)
		job_release(j);
}

static void chan_cb(void *msg, void *arg)
{
	(void)arg;
	job_on_msg(msg);
}

static void chan_drop(void *msg, void *arg)
{
	struct job *j = msg;

	(void)arg;
	if (j->in.final)
		job_free(j);
}

/* ---- the client went away ------------------------------------------------ */

static void tok_drop(struct job *j);

static void on_close(struct veil_http_req *req, void *arg)
{
	struct job *j = arg;
	struct node *n = j->n;

	if (j->req != req)
		return;
	if (j->tj) {
		/* its prompt is being tokenized: no sequence yet; the ids,
		 * when they come back, are dropped (tok_done) */
		n->m.cancelled++;
		VEIL_INFO(NODE_MOD, "%s: client went away while its prompt was tokenized",
			  j->id);
		veil_http_reply(req, 499, "text/plain", "", 0);
		j->req = NULL;
		tok_drop(j);
		return;
	}
	if (!j->released && !j->slow)
		n->m.cancelled++; /* a slow one was counted then */
	VEIL_INFO(NODE_MOD, "%s: client went away%s", j->id,
		  j->released ? " before its receipt" : ", cancelling");
	if (j->started)
		veil_http_stream_end(req);
	else
		veil_http_reply(req, 499, "text/plain", "", 0);
	j->req = NULL;
	if (j->call) {
		/* upstream: nothing else refers to the job */
		job_free(j);
		return;
	}
	if (j->submitted && !j->released)
		veil_engine_cancel(n->engine, j->eng_id);
}

/* ---- request parsing ----------------------------------------------------- */

/* ---- upstream relay ------------------------------------------------------ */

static int up_sse_event(void *arg, const char *event, const char *data, size_t len,
			const char *id)
{
	struct job *j = arg;
	json_t *o;
	int rc;

	(void)id;
	if (strcmp(event, "message"))
		return 0;
	if (len == 6 && !memcmp(data, "[DONE]", 6)) {
		j->up_done = true;
		return 0;
	}
	if ((o = json_loadb(data, len, 0, NULL))) {
		json_t *u = json_object_get(o, "usage");
		const char *obj = json_string_value(json_object_get(o, "object"));
		char *t;

		if (json_is_object(u)) {
			j->up_prompt = json_integer_value(json_object_get(u, "prompt_tokens"));
			j->up_completion = json_integer_value(json_object_get(u, "completion_tokens"));
		}
		if (obj && !strcmp(obj, "veil.receipt")) {
			/* an upstream veil-node's own receipt: ours follows */
			json_decref(o);
			return 0;
		}
		if (!j->include_usage) {
			/* Usage was asked upstream for the receipt only. */
			json_t *ch = json_object_get(o, "choices");

			if (json_is_array(ch) && !json_array_size(ch) && json_is_object(u)) {
				json_decref(o);
				return 0;
			}
			json_object_del(o, "usage");
		}
		/* Our id on every chunk: the receipt store knows that one. */
		json_object_set_new(o, "id", json_string(j->id));
		t = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		if (!t)
			return VEIL_ENOMEM;
		rc = out_event(j, NULL, t, strlen(t), false);
		veil_wipe(t, strlen(t));
		free(t);
	} else {
		rc = out_event(j, NULL, data, len, false);
	}
	if (rc < 0) {
		/* ends the stream with the reason; up_done() then frees the job */
		stream_write_failed(j, rc, false);
		return VEIL_ECANCELED;
	}
	return 0;
}

static void up_head(void *arg, struct veil_http_call *call, int status)
{
	struct job *j = arg;

	(void)call;
	j->up_status = status;
}

static int up_data(void *arg, struct veil_http_call *call, const uint8_t *p, size_t n)
{
	struct job *j = arg;

	(void)call;
	if (!j->req)
		return VEIL_ECANCELED;
	if (j->up_status != 200)
		return 0; /* an error body: buffered below? relay as error */
	if (veil_http_sse_feed(&j->sse, p, n) < 0) {
		/* not started: up_done() answers 502 */
		if (j->req && j->started)
			stream_fail(j, "upstream_error", "the upstream sent malformed SSE "
				    "or an event over 1 MiB");
		return VEIL_ECANCELED;
	}
	return 0;
}

static void up_done(void *arg, int rc, int status, const uint8_t *body, size_t len)
{
	struct job *j = arg;
	struct node *n = j->n;

	j->call = NULL;
	if (!j->req) {
		job_free(j);
		return;
	}
	if (j->stream) {
		if (rc == 0 && status == 200 && j->up_done) {
			n->m.tokens_in += (uint64_t)j->up_prompt;
			n->m.tokens_out += (uint64_t)j->up_completion;
			stream_finish(j, j->up_prompt, j->up_completion);
		} else if (!j->started) {
			bool refused = status >= 400 && status < 500;

			/* A 4xx is the request's fault: pass the status on. */
			node_metrics_status(n, refused ? status : 502);
			veil_http_reply_error(j->req, refused ? status : 502,
					      refused ? NULL : "server_error", "upstream_error",
					      "the upstream engine %s (status %d)",
					      refused ? "refused the request" : "failed", status);
			j->req = NULL;
		} else {
			stream_fail(j, "upstream_error", "the upstream stream broke");
		}
	} else if (rc == 0 && status == 200) {
		json_t *o = json_loadb((const char *)body, len, 0, NULL);
		json_t *u = json_object_get(o, "usage");
		int64_t p = json_integer_value(json_object_get(u, "prompt_tokens"));
		int64_t c = json_integer_value(json_object_get(u, "completion_tokens"));

		if (!o) {
			reply_err(n, j->req, 502, "server_error", "upstream_error",
				  "the upstream engine sent malformed JSON");
			j->req = NULL;
		} else {
			/* Our id, so the receipt store can find it. */
			json_object_set_new(o, "id", json_string(j->id));
			n->m.tokens_in += (uint64_t)p;
			n->m.tokens_out += (uint64_t)c;
			reply_final(j, o, p, c);
			o = NULL;
		}
		json_decref(o);
	} else {
		reply_err(n, j->req, status >= 400 && status < 500 ? status : 502,
			  status >= 400 && status < 500 ? NULL : "server_error",
			  "upstream_error", "the upstream engine failed");
		j->req = NULL;
	}
	job_release(j);
}

static int start_upstream(struct job *j, const char *path, json_t *body)
{
	struct node *n = j->n;
	char url[1024];
	char *b = NULL;
	static const char *const hdrs[] = {"Content-Type: application/json",
					   "Accept: text/event-stream, application/json",
					   NULL};
	struct veil_http_request rq = {0};
	int rc;

	snprintf(url, sizeof(url), "%s%s", n->o.upstream, path);
	if (j->stream)
		/* the receipt needs the usage */
		json_object_set_new(body, "stream_options",
				    json_pack("{s:b}", "include_usage", 1));
	if (!(b = json_dumps(body, JSON_COMPACT)))
		return VEIL_ENOMEM;
	rq.method = "POST";
	rq.url = url;
	rq.headers = hdrs;
	rq.body = b;
	rq.body_len = strlen(b);
	rq.timeout_ms = 600000;
	rq.on_head = up_head;
	rq.on_data = j->stream ? up_data : NULL;
	rq.on_done = up_done;
	rq.arg = j;
	/* Plaintext streams relay events of any size up to this (a sealed
	 * event over VEIL_SEAL_MAX_CHUNK is refused: out_event()). */
	veil_http_sse_init(&j->sse, UP_MAX_EVENT, UP_MAX_EVENT, up_sse_event, j);
	rc = veil_http_client_start(n->client, &rq, &j->call);
	veil_wipe(b, strlen(b));
	free(b);
	return rc;
}

/* ---- handlers ------------------------------------------------------------ */

static bool is_sealed(struct veil_http_req *req)
{
	const char *ct = veil_http_req_header(req, "Content-Type");

	return ct && !strncasecmp(ct, SEALED_TYPE, strlen(SEALED_TYPE));
}

/* The rest of a completion once its prompt is tokenized (rc, err, ids,
 * n_ids: what node_chat_tokens() / node_prompt_tokens() made of it under
 * cap ids): the context checks, the engine submit, a chat stream's first
 * chunk.  Takes j: submitted (its engine events own it from then on), or
 * answered with an error and freed.  tok_ms: how long a tokenizer thread
 * took (< 0: tokenized here, on the loop), wait_ms: how long the prompt
 * waited besides (queue, hand-offs), for the log.  On the loop; p's stops point
 * into a body that lives until this returns. */
static void job_start(struct job *j, struct veil_http_req *req, const struct node_params *p,
		      int rc, const char *err, const int32_t *ids, size_t n_ids, size_t cap,
		      double tok_ms, double wait_ms)
{
	struct node *n = j->n;
	char took[96] = "";

	j->req = NULL; /* until submitted: an error below completes req */
	if (rc == VEIL_ERANGE) {
		node_metrics_status(n, 400);
		veil_http_reply_error(req, 400, NULL, "context_length_exceeded",
				      "the prompt has more than %zu tokens; this model's context is %d",
				      cap, (int)veil_engine_n_ctx(n->engine));
		goto fail;
	}
	if (rc < 0) {
		reply_err(n, req, 400, NULL, "invalid_prompt", err);
		goto fail;
	}
	if (n_ids == 0) {
		reply_err(n, req, 400, NULL, "invalid_prompt", "the prompt is empty");
		goto fail;
	}
	if (n_ids >= (size_t)veil_engine_n_ctx(n->engine)) {
		node_metrics_status(n, 400);
		veil_http_reply_error(req, 400, NULL, "context_length_exceeded",
				      "the prompt has %zu tokens; this model's context is %d",
				      n_ids, (int)veil_engine_n_ctx(n->engine));
		goto fail;
	}
	/* All of the loop's own work on this request before the engine starts:
	 * once submitted, the engine thread and its pool take every core (two
	 * here), and what the loop still does then is done on a core taken
	 * from the prefill, after waiting for one. */
	if (j->stream && chunk_prefix(j) < 0) {
		reply_err(n, req, 500, NULL, "internal", "out of memory");
		goto fail;
	}
	if (tok_ms >= 0)
		snprintf(took, sizeof(took), ", tokenized off the loop in %.1f ms (%.2f ms queued)",
			 tok_ms, wait_ms);
	VEIL_INFO(NODE_MOD, "%s: request %llu, %zu prompt tokens%s%s%s", j->id,
		  (unsigned long long)veil_http_req_id(req), n_ids,
		  j->sealed ? ", sealed" : "", j->stream ? ", streamed" : "", took);
	{
		struct veil_engine_request er = {0};

		er.prompt = ids;
		er.n_prompt = n_ids;
		er.sampling = p->sp;
		er.max_tokens = p->max_tokens;
		er.stops = p->n_stops ? p->stops : NULL;
		er.n_stops = p->n_stops;
		er.n_logprobs = p->logprobs ? VEIL_MAX(p->top_logprobs, 1) : 0;
		er.cb = engine_cb;
		er.user = j;
		j->prompt_tokens = (int32_t)n_ids;
		j->req = req;
		rc = veil_engine_submit(n->engine, &er, &j->eng_id);
		if (rc < 0) {
			j->req = NULL;
			if (rc == VEIL_EBUSY) {
				reply_err(n, req, 429, "rate_limit_error", "overloaded",
					  "the node is busy; retry later");
			} else {
				node_metrics_status(n, 400);
				veil_http_reply_error(req, 400, NULL, "invalid_parameter",
						      "the request was refused: %s",
						      veil_strerror(rc));
			}
			goto fail;
		}
		j->submitted = true;
	}
	veil_http_req_on_close(req, on_close, j);
	if (j->stream && j->chat) {
		/* OpenAI's first chunk names the role. */
		json_t *c = chunk_base(j);

		json_object_set_new(c, "choices",
				    json_pack("[{s:i, s:{s:s, s:s, s:n}, s:n, s:n}]", "index", 0,
					      "delta", "role", "assistant", "content", "",
					      "refusal", "logprobs", "finish_reason"));
		out_json_event(j, c, false);
	}
	return;
fail:
	job_free(j);
}

/* ---- big prompts, tokenized off the loop ---------------------------------- */

/* A big prompt with a tokenizer thread.  The worker reads n's tokenizer and
 * chat template (fixed after load), chat, body and cap and writes rc, err,
 * ids, n_ids and tok_ns; the loop touches none of them meanwhile (the
 * queue and the channel order the two). */
struct tokjob {
	struct node_job job;            /* first: the workers hand it back */
	struct node *n;
	/* the loop's: NULL once the job was dropped (its client left, or a
	 * shutdown answered it) */
	struct job *j;
	atomic_bool gone;               /* ... and then nobody needs the ids */
	bool chat;
	json_t *body;                   /* owned; p's stops point into it */
	struct node_params p;
	size_t cap;
	int rc;
	int32_t *ids;                   /* secret: cap of them, wiped */
	size_t n_ids;
	uint64_t t_submit_ns;           /* the loop's: when handed over */
	uint64_t tok_ns;
	bool stopped;                   /* not tokenized: node_api_stop() */
	char err[256];
};

/* The bytes a tokenizer reads for the prompt of body b, about: message
 * contents (strings or text parts) with TOK_MSG_OVERHEAD each, or the
 * prompt string.  What node_chat_tokens() / node_prompt_tokens() refuse
 * counts for nothing (refused before any tokenizing). */
static size_t prompt_text_bytes(json_t *b, bool chat)
{
	json_t *v, *m, *part, *c;
	size_t i, k, sum = 0;

	if (!chat) {
		v = json_object_get(b, "prompt");
		if (json_is_array(v) && json_array_size(v) == 1)
			v = json_array_get(v, 0);
		return json_is_string(v) ? json_string_length(v) : 0;
	}
	v = json_object_get(b, "messages");
	if (!json_is_array(v))
		return 0;
	json_array_foreach(v, i, m) {
		sum += TOK_MSG_OVERHEAD;
		c = json_object_get(m, "content");
		if (json_is_string(c))
			sum += json_string_length(c);
		else if (json_is_array(c))
			json_array_foreach(c, k, part)
				sum += json_string_length(json_object_get(part, "text")) + 1;
	}
	return sum;
}

/* A tokenizer thread.  A prompt nobody waits for any more (its client
 * left, the node stops) is not tokenized. */
static void tok_run(struct node_job *nj, bool stopping)
{
	struct tokjob *t = (struct tokjob *)nj;
	uint64_t t0 = veil_now_ns();

	if (stopping || atomic_load(&t->gone)) {
		t->stopped = true;
		t->rc = VEIL_ECANCELED;
		return;
	}
	t->rc = t->chat ? node_chat_tokens(t->n->tok, t->n->chat_tmpl,
					   json_object_get(t->body, "messages"), t->ids,
					   t->cap, &t->n_ids, t->err, sizeof(t->err))
			: node_prompt_tokens(t->n->tok, json_object_get(t->body, "prompt"),
					     t->ids, t->cap, &t->n_ids, t->err, sizeof(t->err));
	t->tok_ns = veil_now_ns() - t0;
}

static void tok_free(struct tokjob *t)
{
	if (t->ids)
		veil_wipe(t->ids, t->cap * sizeof(*t->ids));
	free(t->ids);
	json_decref(t->body);
	veil_wipe(t, sizeof(*t));
	free(t);
}

/* On the loop (or on node_api_stop's thread, after the server was freed:
 * every job dropped by then): the job goes on with the ids, or they are
 * dropped. */
static void tok_done(struct node_job *nj)
{
	struct tokjob *t = (struct tokjob *)nj;
	struct node *n = t->n;
	struct job *j = t->j;

	if (n->m.tok_pending)
		n->m.tok_pending--;
	if (j) {
		j->tj = NULL;
		if (t->stopped) {
			/* stopped with its request open: not by the contract
			 * of node_api_stop(), but then nothing more is sent */
			j->req = NULL;
			job_free(j);
		} else {
			job_start(j, j->req, &t->p, t->rc, t->err, t->ids, t->n_ids, t->cap,
				  (double)t->tok_ns / 1e6,
				  (double)(veil_now_ns() - t->t_submit_ns - t->tok_ns) / 1e6);
		}
	}
	tok_free(t);
}

/* Drops a job whose prompt is being tokenized (its request completed or
 * gone): freed now, its ids dropped when they come back. */
static void tok_drop(struct job *j)
{
	struct tokjob *t = j->tj;

	t->j = NULL;
	atomic_store(&t->gone, true);
	j->tj = NULL;
	job_free(j);
}

/* Hands the prompt of body b to a tokenizer thread; job_start() follows
 * on the loop when the ids come back.  Takes j (and req with it) and b. */
static void tok_offload(struct job *j, struct veil_http_req *req, json_t *b,
			const struct node_params *p, size_t cap)
{
	struct node *n = j->n;
	struct tokjob *t = NULL;

	if (!n->tokenizer || n->m.tok_pending >= TOK_MAX_PENDING) {
		node_reply_busy(n, req, &n->m.tok_busy, TOK_RETRY_AFTER_S, "tokenizer_busy",
				"%d large prompts are being tokenized; retry later",
				TOK_MAX_PENDING);
		goto fail;
	}
	if (!(t = calloc(1, sizeof(*t))) || !(t->ids = calloc(cap, sizeof(*t->ids)))) {
		reply_err(n, req, 500, NULL, "internal", "out of memory");
		goto fail;
	}
	t->job.run = tok_run;
	t->job.done = tok_done;
	t->n = n;
	t->j = j;
	t->chat = j->chat;
	t->body = b;
	t->p = *p;
	t->cap = cap;
	j->tj = t;
	j->req = req;
	veil_http_req_on_close(req, on_close, j);
	n->m.tok_pending++;
	t->t_submit_ns = veil_now_ns();
	VEIL_DEBUG(NODE_MOD, "%s: request %llu, prompt tokenized off the loop", j->id,
		   (unsigned long long)veil_http_req_id(req));
	node_workers_submit(n->tokenizer, &t->job);
	return;
fail:
	free(t);
	json_decref(b);
	job_free(j);
}

static void h_completion(struct veil_http_req *req, void *arg, bool chat)
{
	struct node *n = arg;
	size_t blen;
	const uint8_t *body = veil_http_req_body(req, &blen);
	struct veil_buf plain = VEIL_BUF_SECRET_INIT(n->o.max_body + 1);
	struct veil_seal *seal = NULL;
	json_t *b = NULL, *model;
	json_error_t jerr;
	struct node_params p;
	char err[256] = "";
	struct job *j = NULL;
	int32_t *ids = n->sc_ids;
	size_t n_ids = 0, ids_used = 0, cap;
	int rc;

	if (!n->ready || n->stopping) {
		reply_err(n, req, 503, NULL, "not_ready", "the node is not ready");
		return;
	}
	if (is_sealed(req)) {
		if ((rc = veil_seal_node_new(&n->hpke, &seal)) < 0 ||
		    (rc = veil_seal_open_body(seal, body, blen, &plain)) < 0) {
			if (rc == VEIL_ERANGE) {
				/* it opens to more than --max-body bytes (or
				 * more than 2^24 chunks): too large either way */
				reply_err(n, req, 413, NULL, "body_too_large",
					  "request body too large");
				goto out;
			}
			reply_err(n, req, 400, NULL,
				  rc == VEIL_ENOENT ? "unknown_key_id" : "bad_sealed_body",
				  rc == VEIL_ENOENT
					  ? "the body is sealed to another node's key"
					  : "the sealed body does not open");
			goto out;
		}
	} else if (!n->o.allow_plaintext) {
		reply_err(n, req, 403, NULL, "plaintext_refused",
			  "this node accepts only sealed bodies (Content-Type: "
			  SEALED_TYPE "); see docs/protocol.md");
		goto out;
	} else if (veil_buf_append(&plain, body, blen) < 0) {
		reply_err(n, req, 413, NULL, "body_too_large", "request body too large");
		goto out;
	}
	b = json_loadb(plain.data ? (char *)plain.data : "", plain.len,
		       JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(b)) {
		reply_err(n, req, 400, NULL, "invalid_json",
			  "the body is not a JSON object");
		goto out;
	}
	model = json_object_get(b, "model");
	if (!json_is_string(model)) {
		reply_err(n, req, 400, NULL, "missing_model", "'model' must be a string");
		goto out;
	}
	if (strcmp(json_string_value(model), n->o.model_name)) {
		node_metrics_status(n, 404);
		/* a sealed request's model name is user content: not echoed in
		 * the plaintext error (docs/protocol.md) */
		if (seal)
			veil_http_reply_error(req, 404, "invalid_request_error",
					      "model_not_found",
					      "The model named in the sealed request does not exist");
		else
			veil_http_reply_error(req, 404, "invalid_request_error",
					      "model_not_found", "The model '%.100s' does not exist",
					      json_string_value(model));
		goto out;
	}
	if ((rc = node_parse_params(b, chat, &p, err, sizeof(err))) < 0) {
		reply_err(n, req, 400, NULL,
			  rc == VEIL_ENOTSUP ? "unsupported_parameter" : "invalid_parameter", err);
		goto out;
	}
	if (!(j = calloc(1, sizeof(*j)))) {
		reply_err(n, req, 500, NULL, "internal", "out of memory");
		goto out;
	}
	n->m.jobs_active++;
	pthread_mutex_init(&j->mu, NULL);
	j->n = n;
	j->next = n->jobs;
	if (n->jobs)
		n->jobs->prev = j;
	n->jobs = j;
	j->chat = chat;
	j->stream = p.stream;
	j->include_usage = p.include_usage;
	j->logprobs = p.logprobs;
	j->top_logprobs = p.top_logprobs;
	j->created = (int64_t)(veil_wall_ms() / 1000);
	j->t_start_ns = veil_now_ns();
	j->in.text = (struct veil_buf)VEIL_BUF_SECRET_INIT(64u << 20);
	j->spare = (struct veil_buf)VEIL_BUF_SECRET_INIT(64u << 20);
	j->full = (struct veil_buf)VEIL_BUF_SECRET_INIT(64u << 20);
	j->resp_md = EVP_MD_CTX_new();
	if (!j->resp_md || !EVP_DigestInit_ex(j->resp_md, veil_digest_sha256_md(), NULL)) {
		reply_err(n, req, 500, NULL, "internal", "out of memory");
		goto out;
	}
	{
		uint8_t rnd[12];
		char hex[25];

		veil_random(rnd, sizeof(rnd));
		veil_hex_encode(rnd, sizeof(rnd), hex, sizeof(hex));
		snprintf(j->id, sizeof(j->id), "%s-%s", chat ? "chatcmpl" : "cmpl", hex);
	}
	veil_digest_sha256(body, blen, j->req_sha);
	if (p.logprobs) {
		j->lp_content = json_array();
		j->lp_cmpl = new_cmpl_logprobs();
	}
	j->seal = seal;
	seal = NULL;
	j->sealed = j->seal != NULL;

	if (n->o.upstream) {
		j->req = req;
		if (start_upstream(j, chat ? "/v1/chat/completions" : "/v1/completions", b) < 0) {
			j->req = NULL;
			reply_err(n, req, 502, "server_error", "upstream_error",
				  "the upstream engine could not be reached");
			goto out;
		}
		veil_http_req_on_close(req, on_close, j);
		VEIL_INFO(NODE_MOD, "%s: request %llu relayed upstream%s%s", j->id,
			  (unsigned long long)veil_http_req_id(req), j->sealed ? ", sealed" : "",
			  j->stream ? ", streamed" : "");
		j = NULL;
		goto out;
	}

	/* What can fit: a prompt needs at least one free position. */
	cap = VEIL_MIN((size_t)veil_engine_n_ctx(n->engine), (size_t)MAX_PROMPT_TOKENS);
	if (prompt_text_bytes(b, chat) > TOK_OFFLOAD_BYTES) {
		/* takes j and b, answers the request if it cannot */
		tok_offload(j, req, b, &p, cap);
		j = NULL;
		b = NULL;
		goto out;
	}
	ids_used = cap; /* until the tokenizer says how many */
	rc = chat ? node_chat_tokens(n->tok, n->chat_tmpl, json_object_get(b, "messages"),
				     ids, cap, &n_ids, err, sizeof(err))
		  : node_prompt_tokens(n->tok, json_object_get(b, "prompt"), ids, cap,
				       &n_ids, err, sizeof(err));
	if (rc == 0)
		ids_used = n_ids;
	job_start(j, req, &p, rc, err, ids, n_ids, cap, -1, 0);
	j = NULL;
out:
	if (j) {
		j->req = NULL;
		job_free(j);
	}
	veil_wipe(ids, ids_used * sizeof(*ids));
	json_decref(b);
	veil_seal_free(seal);
	veil_buf_free(&plain);
}

static void h_chat(struct veil_http_req *req, void *arg)
{
	h_completion(req, arg, true);
}

static void h_cmpl(struct veil_http_req *req, void *arg)
{
	h_completion(req, arg, false);
}

static void h_models(struct veil_http_req *req, void *arg)
{
	struct node *n = arg;

	node_metrics_status(n, 200);
	veil_http_reply_json(req, 200,
			     json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list",
				       "data", "id", n->o.model_name, "object", "model",
				       "created", (json_int_t)(n->started_ms / 1000),
				       "owned_by", "veil"));
}

static void h_model_one(struct veil_http_req *req, void *arg)
{
	struct node *n = arg;
	const char *id = veil_http_req_path(req) + strlen("/v1/models/");

	if (strcmp(id, n->o.model_name)) {
		reply_err(n, req, 404, "invalid_request_error", "model_not_found",
			  "The model does not exist");
		return;
	}
	node_metrics_status(n, 200);
	veil_http_reply_json(req, 200,
			     json_pack("{s:s, s:s, s:I, s:s}", "id", n->o.model_name,
				       "object", "model", "created",
				       (json_int_t)(n->started_ms / 1000), "owned_by", "veil"));
}

int node_api_init(struct node *n)
{
	/* Every job can be in the channel at most once: capacity above the most
	 * jobs the engine accepts, plus jobs between submit and their end. */
	size_t cap = (size_t)(n->o.max_batch + n->o.max_queue) * 2 + n->o.max_conns + 64;
	int rc;

	n->sc_ev = (struct veil_buf)VEIL_BUF_SECRET_INIT(VEIL_SEAL_MAX_CHUNK);
	n->sc_ct = (struct veil_buf)VEIL_BUF_INIT(VEIL_SEAL_MAX_CHUNK + VEIL_SEAL_CHUNK_OVERHEAD +
						  VEIL_SEAL_RESPONSE_NONCE_LEN);
	n->sc_out = (struct veil_buf)VEIL_BUF_INIT(2 * (VEIL_SEAL_MAX_CHUNK +
							 VEIL_SEAL_CHUNK_OVERHEAD) + 16);
	if (!(n->sc_ids = calloc(MAX_PROMPT_TOKENS, sizeof(*n->sc_ids))))
		return VEIL_ENOMEM;
	if ((rc = veil_http_chan_new(n->base, cap, chan_cb, chan_drop, n, &n->chan)) < 0)
		return rc;
	if (!n->engine)
		return 0; /* upstream mode: nothing tokenized here */
	return node_workers_start(n, "tokenizer", TOK_THREADS, TOK_MAX_PENDING + 1,
				  &n->tokenizer);
}

void node_api_routes(struct node *n)
{
	veil_http_route(n->srv, "GET", "/v1/models", false, h_models, n);
	veil_http_route(n->srv, "GET", "/v1/models/", true, h_model_one, n);
	veil_http_route(n->srv, "POST", "/v1/chat/completions", false, h_chat, n);
	veil_http_route(n->srv, "POST", "/v1/completions", false, h_cmpl, n);
}

/* How long node_api_abort_all() waits for the final events of the streams
 * it cancelled before it ends them without one: an engine step or two
 * (decode steps of a loaded engine take tens of ms), and well inside what
 * the shutdown leaves (main.c: the grace's last 500 ms, or the 200 ms a
 * second signal gives the error events). */
#define ABORT_WAIT_MS 150

static void abort_wait_cb(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;

	(void)fd;
	(void)what;
	node_api_abort_all(n, n->abort_why);
}

void node_api_abort_all(struct node *n, const char *why)
{
	struct job *j = n->jobs, *next;
	bool wait = false;

	if (why != n->abort_why)
		snprintf(n->abort_why, sizeof(n->abort_why), "%s", why);
	for (; j; j = next) {
		next = j->next;
		/* a job whose receipt is being signed has written its end
		 * already but the receipt: it completes in a moment */
		if (!j->req || j->receipt_pending)
			continue;
		if (!j->call && j->stream && j->started && j->submitted && !j->released &&
		    !j->stopping) {
			/* A stream under way: its generation stops at the next
			 * engine step, and its final event ends the stream
			 * with shutting_down and, for the tokens the client
			 * was sent, a receipt (billed).  A slow one's was
			 * cancelled already; it ends as a slow one. */
			j->stopping = true;
			if (!j->slow)
				veil_engine_cancel(n->engine, j->eng_id);
			wait = true;
			continue;
		}
		/* anything else, and a stream whose final event did not come
		 * within ABORT_WAIT_MS (or a second signal): at once */
		if (j->stream && j->started) {
			stream_fail(j, "shutting_down", n->abort_why);
		} else {
			reply_err(n, j->req, 503, NULL, "shutting_down", n->abort_why);
			j->req = NULL;
		}
		if (j->call) {
			job_free(j); /* cancels the upstream call */
			continue;
		}
		if (j->tj) {
			tok_drop(j); /* its prompt was being tokenized */
			continue;
		}
		if (j->submitted && !j->released)
			veil_engine_cancel(n->engine, j->eng_id);
	}
	if (wait) {
		struct timeval tv = {0, ABORT_WAIT_MS * 1000};

		if (event_base_once(n->base, -1, EV_TIMEOUT, abort_wait_cb, n, &tv) < 0) {
			VEIL_ERROR(NODE_MOD, "out of memory: streams end without waiting");
			node_api_abort_all(n, n->abort_why);
		}
	}
}

void node_api_stop(struct node *n)
{
	node_workers_stop(n->tokenizer);
	n->tokenizer = NULL;
}

void node_api_free(struct node *n)
{
	node_api_stop(n); /* when node_api_stop() was not called */
	veil_http_chan_free(n->chan);
	n->chan = NULL;
	veil_buf_free(&n->sc_ev);
	veil_buf_free(&n->sc_ct);
	veil_buf_free(&n->sc_out);
	if (n->sc_ids)
		veil_wipe(n->sc_ids, MAX_PROMPT_TOKENS * sizeof(*n->sc_ids));
	free(n->sc_ids);
	n->sc_ids = NULL;
}
