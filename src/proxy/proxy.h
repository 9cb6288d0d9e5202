/* veil-proxy internals: state shared by the files of src/proxy/.
 *
 * Threads: one event loop runs the local OpenAI server and every upstream
 * call; the attestation worker (attest.c) fetches and verifies reports and
 * hands each result to the loop through a channel; the receipt checker
 * (verify.c) checks receipts and hands each verdict back the same way, so
 * no signature check ever stalls the streams on the loop; the receipts
 * log's syncer (rlog.c) fdatasyncs the JSON-lines log that those threads
 * append to.  Everything below is loop-only unless a comment says
 * otherwise.
 *
 * wire.c holds the parsers of what the gateway sends (attestation document,
 * sealed event stream, error bodies); it depends on libveil only, so the
 * fuzz harnesses tests/fuzz/fuzz_proxy_*.c compile it in directly. */
#ifndef VEIL_PROXY_H
#define VEIL_PROXY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "veil/base.h"
#include "veil/digest.h"
#include "veil/keyset.h"

#define PROXY_MOD "proxy"
#define PROXY_NAME_MAX 128        /* model names and node ids, with NUL */
#define PROXY_MAX_NODES 256       /* nodes in one gateway document */
#define PROXY_DOC_MAX (64u << 20) /* a whole attestation document */

/* ======================================================================
 * wire.c: parsers of outside input (fuzzed)
 * ====================================================================== */

/* One report of an attestation document. */
struct proxy_doc_report {
	char id[PROXY_NAME_MAX];    /* node id ("" for the gateway) */
	char model[PROXY_NAME_MAX]; /* the model it serves ("" if none named) */
	json_t *report;             /* the veil-report/1 object (owned ref) */
	char *text;                 /* its canonical JSON (compact, sorted keys;
				     * owned): what is verified and hashed */
	size_t text_len;
	char model_sha256[65];      /* report.model.sha256 when 64 hex, else "":
				     * as received, NOT verified; the proxy
				     * uses the verdict's (pnode.model_sha256) */
};

/* GET /v1/attestation/report of a gateway (veil-gateway-report/1: a gateway
 * report and its nodes' reports) or of a node (a bare veil-report/1, which
 * becomes the one node). */
struct proxy_doc {
	bool gateway;
	struct proxy_doc_report gw;       /* gateway only */
	struct proxy_doc_report *nodes;   /* owned */
	size_t n_nodes;
};

/* Parses a document of at most PROXY_DOC_MAX bytes.  Structure only: the
 * reports are verified by the caller.  VEIL_EFORMAT with the field named;
 * VEIL_ENOTSUP for another version; VEIL_ERANGE for too many nodes.  On
 * success free with proxy_doc_free(). */
int proxy_doc_parse(const uint8_t *p, size_t n, struct proxy_doc *out);
void proxy_doc_free(struct proxy_doc *d);

/* The sealed event stream of a node (docs/protocol.md, "Sealed requests over
 * HTTP"), strictly:
 *
 *   ("data: " base64(sealed chunk) "\n" "\n")+        the last one final
 *   "event: veil.receipt\n" "data: " receipt "\n" "\n"
 *   "data: [DONE]\n" "\n"                              then nothing
 *
 * Any other byte is an error: a relay may not add, drop or reorder
 * anything, since the node's receipt hashes every byte before its receipt
 * event.  `chunk` gets each sealed chunk's base64 text once its event is
 * complete and returns 1 when it was the final chunk, 0 when more follow, or
 * a negative code to stop; `receipt` gets the receipt object's text; `hash`
 * gets every byte the receipt's response_sha256 covers, in order.  Memory is
 * bounded by one line (max_line). */
enum proxy_sealed_phase {
	PS_CHUNK_DATA, PS_CHUNK_BLANK, PS_RCPT_EVENT, PS_RCPT_DATA,
	PS_RCPT_BLANK, PS_DONE_DATA, PS_DONE_BLANK, PS_END,
};

struct proxy_sealed_stream {
	struct veil_buf line;       /* the line being read */
	struct veil_buf ev;         /* the pending event's data */
	enum proxy_sealed_phase phase;
	int error;                  /* sticky */
	int (*chunk)(void *arg, const char *b64, size_t len);
	int (*receipt)(void *arg, const char *json, size_t len);
	void (*hash)(void *arg, const uint8_t *p, size_t n);
	void *arg;
};

void proxy_sealed_init(struct proxy_sealed_stream *s, size_t max_line,
		       int (*chunk)(void *, const char *, size_t),
		       int (*receipt)(void *, const char *, size_t),
		       void (*hash)(void *, const uint8_t *, size_t), void *arg);
/* Feeds bytes in any split.  VEIL_EFORMAT (unexpected bytes), VEIL_ERANGE
 * (a line over max_line) or a callback's code; sticky. */
int proxy_sealed_feed(struct proxy_sealed_stream *s, const uint8_t *p, size_t n);
/* The body ended: 0 when the whole grammar was read, else VEIL_EBADMSG
 * naming what is missing (truncated). */
int proxy_sealed_end(struct proxy_sealed_stream *s);
/* True once the final sealed chunk's event has been read. */
bool proxy_sealed_final_seen(const struct proxy_sealed_stream *s);
void proxy_sealed_free(struct proxy_sealed_stream *s);

/* Decodes the standard base64 (with padding) of one sealed chunk into
 * out (cap bytes).  VEIL_EFORMAT / VEIL_ERANGE. */
int proxy_b64_chunk(const char *b64, size_t len, uint8_t *out, size_t cap,
		    size_t *out_len);

/* The OpenAI error shape {"error":{"code","message"}} of an upstream
 * answer: copies code (or "") and message (or "") into the buffers, keeping
 * printable ASCII only (other bytes become '?'), truncated.  Never fails:
 * a body that is not that shape gives two empty strings. */
void proxy_error_parse(const uint8_t *p, size_t n, char *code, size_t ccap,
		       char *msg, size_t mcap);

/* ======================================================================
 * The program
 * ====================================================================== */

struct event_base;
struct event;
struct veil_http_server;
struct veil_http_client;
struct veil_hconn;
struct veil_hconn_pool;
struct veil_http_chan;
struct veil_policy;
struct rlog;

struct proxy_opts {
	const char *listen;        /* ADDR:PORT, loopback only */
	char *gateway;             /* base URL, no trailing '/' (owned) */
	char up_origin[1025];      /* its "scheme://host[:port]" ... */
	char up_base[1025];        /* ... and its path ("" or "/prefix") */
	const char *api_key;       /* or NULL */
	const char *policy_path;   /* or NULL: the permissive default */
	const char *receipts_path; /* or NULL */
	bool allow_sim;
	bool tls;                  /* gateway URL is https */
	unsigned recheck_s;        /* verified state lifetime */
	unsigned timeout_s;        /* one upstream exchange */
	size_t max_body;
};

/* A verified node (or one that failed: ok false, error says why). */
struct pnode {
	char id[PROXY_NAME_MAX];
	char model[PROXY_NAME_MAX];
	bool ok;
	int status;                /* HTTP status to answer when refused */
	const char *code;          /* error code when refused */
	char error[1024];
	struct veil_keyset keys;   /* the attested keys (ok only) */
	char key_id_hex[17];       /* veil-seal/1 key id of its HPKE key */
	char model_sha256[65];     /* the verdict's measurements.model_sha256 when
				    * the quote binds it (TDX, sim), else "" (none
				    * named, or SEV-SNP: model_sha256_bound false) */
	char report_sha256[65];    /* SHA-256 of the canonical report text */
	json_t *info;              /* for /veil/status (owned) */
};

/* One verification round's outcome.  Reference-counted on the loop: a
 * request in flight keeps the state whose keys it sealed to. */
struct vstate {
	int refs;
	uint64_t gen;              /* installation order, from 1 */
	bool ok;                   /* gateway (or the direct node) verified */
	int status;                /* when !ok: the HTTP status to answer */
	const char *code;          /* when !ok: the error code */
	char error[1280];
	bool via_gateway;
	bool tls;                  /* spki valid: pin it */
	uint8_t spki[32];
	uint64_t t_mono_ns;        /* when it was made (monotonic) */
	bool stale;                /* found out of date: verify again */
	bool busy;                 /* !ok: the gateway said busy (503/429) */
	int64_t verified_at;       /* unix seconds */
	char nonce_hex[65];
	json_t *gateway_info;      /* gateway only (owned) */
	struct pnode *nodes;       /* owned */
	size_t n_nodes;
	size_t n_ok;               /* nodes that passed */
	size_t rr;                 /* round-robin position */
};

/* Waits for a usable verified state (attest.c). */
struct proxy_waiter {
	struct proxy_waiter *prev, *next;
	bool queued;
	void (*cb)(struct proxy_waiter *w, struct vstate *st);
};

/* One receipt to check on the receipt checker's thread (verify.c).  The
 * loop fills the inputs and submits; the worker reads only the inputs and
 * writes only the outputs; the loop reads the outputs in done() (the
 * channel orders the two).  Owned by verify.c once submitted. */
struct rcheck {
	/* loop only */
	void *owner;               /* NULL once the request is gone: done() is
				    * then not called (the line is logged all
				    * the same) */
	void (*done)(struct rcheck *c);
	struct rcheck *next;       /* the worker's queue (under its mutex) */

	/* inputs */
	char *json;                /* the receipt object's text (owned) */
	size_t len;
	struct veil_keyset keys;   /* the node's attested keys */
	char model[PROXY_NAME_MAX];          /* the model asked for */
	char model_sha256[65];     /* the attested model hash, "" when none */
	char node_id[PROXY_NAME_MAX];
	char node_key_id[17];
	char node_report_sha256[65];
	uint8_t req_sha[32];       /* SHA-256 of the sealed request sent */
	uint8_t resp_sha[32];      /* of the bytes the receipt must cover */
	bool want_obj;             /* return the receipt object (obj) */
	char node_error[64];       /* the error code the node ended the stream
				    * with, "" when it finished */

	/* outputs */
	bool ok;
	const char *code;          /* "receipt_invalid" | "receipt_mismatch" */
	char msg[768];
	char id[160];              /* the receipt's id (ok) */
	json_t *obj;               /* the receipt object (ok and want_obj) */
	json_t *last;              /* /veil/status last_receipt (ok) */
};

struct proxy_stats {
	uint64_t requests, answered, failed;
	uint64_t receipts_ok, receipts_failed;
	uint64_t rounds, rounds_failed;
	uint64_t log_dropped;
};

struct proxy {
	struct proxy_opts o;
	struct event_base *base;
	struct veil_http_server *srv;
	struct veil_http_client *client;
	/* the relayed requests to the gateway (api.c): kept-alive, pinned
	 * connections of the hconn client (veil/hconn.h), to o.up_origin
	 * at o.up_base */
	struct veil_hconn *hconn;
	struct veil_hconn_pool *up_pool;
	struct veil_policy *policy;    /* read by the worker; never changed */
	struct rlog *rlog;             /* NULL without --receipts */
	bool stopping;
	uint64_t started_ms;

	/* attestation (attest.c) */
	struct veil_http_chan *vchan;
	pthread_t worker;
	bool worker_started;
	pthread_mutex_t wmu;
	pthread_cond_t wcond;
	bool w_want, w_stop;           /* under wmu */
	bool verifying;
	bool refresh_busy;         /* background rounds keep meeting a busy gateway */
	uint64_t next_gen;
	struct vstate *st;             /* current, or NULL before the first */
	struct proxy_waiter *waiters;
	size_t n_waiters;
	struct event *refresh;

	/* receipt checks (verify.c) */
	struct veil_http_chan *cchan;
	pthread_t checker;
	bool checker_inited, checker_started;
	pthread_mutex_t cmu;
	pthread_cond_t ccond;
	struct rcheck *cq_head, *cq_tail; /* under cmu */
	bool c_stop;                   /* under cmu */
	size_t checks_out;             /* submitted, verdict not yet handled */

	struct proxy_stats stats;
	json_t *last_receipt;          /* for /veil/status */
	struct preq *reqs;             /* requests in flight (api.c) */
};

/* attest.c */
int proxy_attest_init(struct proxy *p);
void proxy_attest_stop(struct proxy *p);     /* joins the worker */
void proxy_attest_free(struct proxy *p);
void proxy_attest_routes(struct proxy *p);
/* Calls w->cb with a state (possibly a failed one, st->ok false) now, or
 * once a verification round ends.  A state older than min_gen is not used
 * (a request that found the old one stale asks for a newer one).
 * VEIL_EBUSY when too many requests already wait. */
int proxy_state_get(struct proxy *p, struct proxy_waiter *w, uint64_t min_gen);
void proxy_state_cancel(struct proxy *p, struct proxy_waiter *w);
/* The state `gen` turned out stale (a key the gateway does not know, a
 * node gone, a TLS key changed): the next request verifies again. */
void proxy_state_invalidate(struct proxy *p, uint64_t gen, const char *why);
void vstate_ref(struct vstate *st);
void vstate_unref(struct vstate *st);
/* A verified node of `model`, round robin; NULL when none. */
struct pnode *vstate_pick(struct vstate *st, const char *model);
/* Seconds since the state was made. */
double vstate_age_s(const struct vstate *st);

/* api.c */
void proxy_api_routes(struct proxy *p);
/* Ends every request still open with an explicit error. */
void proxy_api_abort_all(struct proxy *p, const char *why);

/* verify.c: the receipt checker */
int proxy_verify_init(struct proxy *p);
/* Checks what the queue still holds (their lines are logged), joins the
 * worker and frees the channel (verdicts not yet handled are dropped). */
void proxy_verify_free(struct proxy *p);
/* Takes c (done() on the loop later, unless c->owner is cleared first).
 * When the checker is behind by as many checks as its channel holds, the
 * check runs here and now, and done() is called before this returns. */
void proxy_verify_submit(struct proxy *p, struct rcheck *c);
/* A receipts-log line of kind "receipt" (docs/proxy.md), any thread;
 * `receipt` is taken (NULL: null); resp_sha NULL: null; node_error: the
 * code of the error event the node ended the stream with, NULL when none. */
void proxy_log_receipt(struct proxy *p, const char *model, const char *node_id,
		       const char *node_report_sha256, const uint8_t req_sha[32],
		       const uint8_t *resp_sha, json_t *receipt, bool ok,
		       const char *error, const char *checked, const char *node_error);

/* rlog.c: the receipts log (JSON lines, appended, fsync'd). */
int rlog_open(const char *path, struct rlog **out);
/* Thread-safe.  Takes `line` (an object) and writes it before returning
 * (one write(2), in call order); a thread of the log syncs it soon after.
 * A line that cannot be written is dropped and counted (VEIL_EIO,
 * VEIL_ENOMEM). */
int rlog_write(struct rlog *l, json_t *line);
/* Syncs what was written, stops the syncer and frees.  NULL is fine. */
void rlog_close(struct rlog *l);
uint64_t rlog_dropped(struct rlog *l);

#endif
