/* veil-node internals: state shared by the files of src/node/.
 *
 * Everything here runs on the one event-loop thread, except the engine
 * callback in api.c (engine thread), which touches only its job's mutex-
 * guarded inbox and the channel, and the receipt signers in receipt.c
 * (signer threads), which touch only their own requests, the read-only
 * signing keys and their channel, and the attestation reporter in attest.c
 * (one thread), which owns the attester after node_attest_init and touches
 * only its queued requests' nonces and reports and its channel, and the
 * tokenizer threads in api.c, which touch only their own prompt jobs (a
 * parsed body no other thread touches meanwhile, their own id buffer), the
 * tokenizer and chat template (read-only after load) and their channel,
 * and the collateral fetcher attest.c starts (one thread, the
 * library's struct veil_pccs_fetcher), which touches only that struct (the
 * loop and the reporter read it under its lock). */
#ifndef VEIL_NODE_H
#define VEIL_NODE_H

#include <pthread.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "veil/base.h"
#include "veil/engine.h"
#include "veil/hpke.h"
#include "veil/http.h"
#include "veil/keyset.h"
#include "veil/pccs.h"
#include "veil/sign.h"

#define NODE_MOD "node"

/* Receipts are kept an hour; the issue promises 20 minutes, which the
 * default store holds at up to 109 answers a second (--receipts-max
 * raises it; about 400 bytes each). */
#define NODE_RECEIPTS_MAX 131072
#define NODE_RECEIPTS_KEEP_MS (60ull * 60 * 1000)

struct node_opts {
	const char *model;
	char model_name[128];
	const char *listen;       /* ADDR:PORT */
	const char *tee;
	const char *upstream;
	bool plain_http;
	bool allow_plaintext;
	bool lazy_kv;
	int max_batch;
	int max_queue;
	int ctx;
	int threads;
	size_t max_body;
	size_t max_conns;
	unsigned request_timeout_ms;
	unsigned idle_timeout_ms;
	size_t max_header_bytes;
	size_t receipts_max;      /* receipts kept for GET /v1/signature */
	const char *pccs;         /* --pccs URL or "none"; NULL: the TEE's default */
	const char *pccs_cache;   /* --pccs-cache DIR, or NULL */
	const char *sim_state;    /* --sim-state DIR (sim TEE keys), or NULL */
	char *config_json;        /* canonical JSON of the flags (measured) */
};

/* Latency histogram (Prometheus, seconds). */
#define NODE_HIST_N 12
struct node_hist {
	uint64_t bucket[NODE_HIST_N]; /* cumulative counts per upper bound */
	uint64_t count;
	double sum;
};

struct node_metrics {
	uint64_t requests[6];        /* by status class index, see metrics.c */
	uint64_t by_status[600];
	uint64_t tokens_in;
	uint64_t tokens_out;
	uint64_t cancelled;          /* sequences stopped because a client left */
	uint64_t streams_active;
	uint64_t jobs_active;
	uint64_t receipts;
	uint64_t reports_pending;    /* nonce reports with the reporter (attest.c) */
	uint64_t reports_busy;       /* nonce reports refused: too many pending */
	uint64_t tok_pending;        /* big prompts with the tokenizer threads (api.c) */
	uint64_t tok_busy;           /* big prompts refused: too many pending */
	struct node_hist ttft;
	struct node_hist tpot;
	int32_t last_batch;
};

struct rstore;
struct node_signer;
struct node_workers;
struct job;
struct veil_pccs_fetcher;

struct node {
	struct node_opts o;
	struct event_base *base;
	struct veil_http_server *srv;
	struct veil_http_chan *chan;
	struct veil_http_client *client;   /* upstream mode */
	struct veil_engine *engine;        /* NULL in upstream mode */
	const struct veil_tok *tok;
	int chat_tmpl;                     /* enum veil_chat_tmpl */
	bool ready;
	bool stopping;
	uint64_t started_ms;

	/* Keys born here, in memory only. */
	struct veil_ed25519_key *ed;
	struct veil_secp256k1_key *k1;
	struct veil_hpke_keypair hpke;
	uint8_t hpke_key_id[8];
	EVP_PKEY *tls_key;
	X509 *tls_cert;
	struct veil_keyset keyset;
	uint8_t keyset_enc[VEIL_KEYSET_MAX];
	size_t keyset_len;
	char eth_address[VEIL_ETH_ADDRESS_STR_LEN];
	char ed_pub_hex[65];

	/* both digests come from the one read that loaded the weights
	 * (veil_model_load_private), or from one streamed read with
	 * --upstream: what is measured is what is served */
	bool have_model_hash;
	uint8_t model_sha256[32];
	uint8_t model_sha384[48];          /* RTMR3 veil-model event */
	char model_sha256_hex[65];

	struct veil_buf event_log;         /* JSON array text of extensions */
	void *attester;                    /* struct veil_attester *, attest.c;
					    * the reporter thread's once started */
	struct node_workers *reporter;     /* nonce reports, off the loop */
	struct node_workers *tokenizer;    /* big prompts' tokenization (api.c) */
	json_t *cached_report;
	struct veil_pccs_fetcher *coll;    /* DCAP collateral (attest.c); NULL:
					    * not fetched */
	uint64_t cached_coll;              /* veil_pccs_fetcher_stamp() of
					    * cached_report's collateral */

	/* The loop's scratch space for one stream event at a time (api.c):
	 * its plaintext (secret, wiped after each event), sealed chunk, and
	 * base64 "data:" line. */
	struct veil_buf sc_ev, sc_ct, sc_out;
	/* The loop's buffer for one request's prompt token ids (api.c; secret,
	 * the part used wiped after each request): made once, not 256 KiB
	 * malloc'd and freed per request, whose unmapping (or heap trimming)
	 * interrupts the engine's threads on every core (TLB shootdown). */
	int32_t *sc_ids;

	struct rstore *receipts;     /* rstore.h */
	struct node_signer *signer;        /* receipt.c */
	struct node_metrics m;
	struct job *jobs;                  /* every live completion (api.c) */
	char abort_why[128];               /* node_api_abort_all()'s message */
};

/* api.c */
int node_api_init(struct node *n);
void node_api_routes(struct node *n);
/* Joins the tokenizer threads (a big prompt's tokenization in progress
 * ends first); prompts still queued are not tokenized.  After the server
 * is freed (every pending request's close callback has fired: no job
 * waits for them), before the engine, whose tokenizer they read. */
void node_api_stop(struct node *n);
void node_api_free(struct node *n);
/* Ends every answer still open, with code shutting_down and message why:
 * a stream the engine is generating has its sequence cancelled and ends
 * at its final event (an error event, then a receipt for the tokens it
 * generated: billed), or without a receipt if that event has not come
 * within 150 ms (api.c, ABORT_WAIT_MS); other answers end at once
 * (streams with an error event, others a 503), their work cancelled;
 * answers whose receipt is being signed complete.  A second call ends at
 * once what the first left waiting.  For a shutdown that cannot wait any
 * longer (the loop must run 150 ms more). */
void node_api_abort_all(struct node *n, const char *why);

/* metrics.c */
void node_metrics_status(struct node *n, int status);
/* A 503 for work refused because too much of its kind is pending (big
 * prompts, nonce reports): counted in *busy_total and the status
 * metrics, with Retry-After: retry_s and an OpenAI-shaped error of `code`
 * whose message is fmt's.  Loop only. */
void node_reply_busy(struct node *n, struct veil_http_req *req, uint64_t *busy_total,
		     unsigned retry_s, const char *code, const char *fmt, ...) VEIL_PRINTF(6, 7);
void node_hist_add(struct node_hist *h, double seconds);
void node_ops_routes(struct node *n);

/* work.c: threads for jobs that would stall the loop.  A job is run on a
 * worker thread, then handed back to the loop (done).  The caller keeps at
 * most cap - 1 jobs out, so the channel back is never full. */
#define NODE_WORKERS_MAX 8
struct node_job {
	struct node_job *next;                          /* queue, under its lock */
	/* a worker thread; stopping: node_workers_stop was called */
	void (*run)(struct node_job *j, bool stopping);
	/* the loop, or node_workers_stop's thread after the loop ended */
	void (*done)(struct node_job *j);
};
int node_workers_start(struct node *n, const char *what, int threads, size_t cap,
		       struct node_workers **out);
/* Loop thread; takes j until its done runs. */
void node_workers_submit(struct node_workers *w, struct node_job *j);
/* Jobs still queued run with stopping = true, the threads are joined, and
 * every job not yet back is handed to its done on the calling thread.  NULL
 * is a no-op. */
void node_workers_stop(struct node_workers *w);

/* receipt.c */
struct node_receipt_in {
	const char *id;
	const uint8_t *req_sha256;   /* 32 bytes */
	const uint8_t *resp_sha256;  /* 32 bytes */
	int64_t prompt_tokens;
	int64_t completion_tokens;
	int64_t created;
};
/* The signer threads and their channel back to the loop. */
int node_signer_start(struct node *n);
/* Joins the signers (they finish what is queued) and hands every receipt
 * still on its way to its owner, on the calling thread.  After the loop
 * stopped, before the keys are freed. */
void node_signer_stop(struct node *n);
/* Called on the loop once a receipt is signed and stored (for
 * /v1/signature/{id}): rc 0 and its JSON text (the callee frees it with
 * free()), or rc < 0 and NULL. */
typedef void (*node_receipt_done)(void *arg, int rc, char *json_text);
/* Starts a receipt: `done` runs exactly once, later on the loop, or before
 * this returns (when the signers are busy beyond their cap, or on a
 * failure); in holds nothing needed after the call. */
void node_receipt_start(struct node *n, const struct node_receipt_in *in,
			node_receipt_done done, void *arg);
/* base64url (no padding) of s, caller frees. */
char *node_b64url(const char *s, size_t len);
void node_receipt_routes(struct node *n);

/* attest.c */
/* Measures, makes the cached report, then starts the reporter thread that
 * makes nonce reports off the loop (after n->base and the keys exist). */
int node_attest_init(struct node *n);
void node_attest_routes(struct node *n);
/* Stops and joins the reporter (reports still queued are not made) and
 * answers or drops what it handed back; after the server is freed (every
 * pending request's close callback has fired by then). */
void node_attest_free(struct node *n);

#endif
