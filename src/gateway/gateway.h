/* veil-gateway internals: state shared by the files of src/gateway/.
 *
 *   main.c    options, the `keys` subcommand, start and shutdown
 *   worker.c  threads that own store handles (queries, the usage writer)
 *             and a CPU worker (report and receipt verification); results
 *             come back to the loop through one veil_http_chan
 *   auth.c    API keys (in-memory cache in front of the store), rate limits
 *   nodes.c   the node registry: attestation checks, TLS pins, health
 *             checks, registry sync with other gateways, routing choice
 *   relay.c   the OpenAI endpoints: request -> node -> response, receipts,
 *             usage records, retries, streams
 *   upstream.c the HTTP/1.1 client of relayed requests: pinned TLS
 *             connections to nodes, kept alive in a pool per node
 *   api.c     /v1/models, /v1/usage, /v1/signature, /v1/attestation/report,
 *             /healthz, /readyz, /metrics
 *   admin.c   /admin/... (bearer admin token)
 *   parse.c   parsers of outside input (no gateway state; fuzzed)
 *
 * Threading: everything here runs on the one event-loop thread except the
 * `run` functions of worker jobs (worker.c), which touch only their job and
 * their thread's store handle, and the policy (read-only after start) - a
 * fresh gateway report's job the attester and the collateral fetcher too,
 * both locked inside - and the collateral fetcher's own thread (api.c,
 * --pccs), which touches only its struct veil_pccs_fetcher. */
#ifndef VEIL_GATEWAY_H
#define VEIL_GATEWAY_H

#include <pthread.h>
#include <stdatomic.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "veil/base.h"
#include "veil/digest.h"
#include "veil/hconn.h"
#include "veil/http.h"
#include "veil/keyset.h"
#include "veil/pccs.h"
#include "veil/policy.h"
#include "veil/report.h"
#include "veil/sign.h"
#include "veil/store.h"

#include "parse.h"

#define GW_MOD "gateway"

struct evdns_base;

struct gw_opts {
	const char *listen;
	const char *db;
	const char *nodes_file;
	const char *policy_file;
	const char *admin_token_file;
	const char *secret_file;
	const char *tee;
	const char *pccs;         /* --pccs URL or "none"; NULL: the TEE's default */
	const char *pccs_cache;   /* --pccs-cache DIR, or NULL */
	const char *sim_state;    /* --sim-state DIR (sim TEE keys), or NULL */
	bool allow_sim;
	bool plain_http;
	bool affinity;            /* --affinity prefix */
	size_t max_body;
	size_t max_conns;
	size_t max_header_bytes;
	unsigned request_timeout_ms;  /* client -> gateway head+body */
	unsigned idle_timeout_ms;
	unsigned upstream_timeout_ms; /* whole relayed answer */
	unsigned connect_timeout_ms;  /* to a node */
	unsigned health_interval_ms;
	unsigned health_timeout_ms;
	int unhealthy_after;      /* consecutive failed checks */
	int healthy_after;        /* consecutive good checks */
	unsigned reverify_s;      /* periodic re-attestation */
	unsigned registry_poll_ms;
	unsigned key_cache_ms;    /* revocation delay */
	unsigned affinity_slack;
	size_t usage_batch;       /* records per group commit */
	enum gw_receipt_check {   /* --receipt-check: what is verified */
		GW_RC_ED25519,    /* the Ed25519 payload signature */
		GW_RC_ECDSA,      /* the EIP-191 secp256k1 payload signature
				   * (default: ~7.5 us less CPU per check) */
		GW_RC_FULL,       /* every signature (veil_receipt_verify) */
	} receipt_check;
	char *config_json;        /* canonical JSON of the flags (measured) */
};

/* Latency histogram (Prometheus, seconds). */
#define GW_HIST_N 14
struct gw_hist {
	uint64_t bucket[GW_HIST_N];
	uint64_t count;
	double sum;
};

struct gw_metrics {
	uint64_t by_status[600];
	uint64_t retries;
	uint64_t receipts_ok, receipts_bad, receipts_missing;
	uint64_t usage_records, usage_failed;
	uint64_t streams_active;
	uint64_t streams_cut;
	uint64_t clients_stalled;       /* streams cut for a client that stopped reading */
	uint64_t relays_active;
	uint64_t relays_detached;       /* client gone, node's answer read to bill it */
	uint64_t relays_detached_active;
	uint64_t upstream_timeouts;     /* answers over --upstream-timeout-ms (504) */
	uint64_t key_cache_hits, key_cache_misses;
	uint64_t attestations_ok, attestations_failed;
	struct gw_hist usage_write;   /* enqueue -> durable */
	struct gw_hist added;         /* gateway time of non-streamed answers */
};

/* ---- nodes ------------------------------------------------------------------ */

struct gw_node {
	struct gw *g;
	struct gw_node *next;
	char id[GW_NODE_ID_MAX + 1];
	char url[VEIL_STORE_URL_MAX + 1];
	char model[VEIL_STORE_MODEL_MAX + 1];
	bool https;
	int refs;                 /* the list holds one; each user one more */

	enum veil_store_node_state state; /* pending/verified/failed/draining */
	bool removed;             /* out of the list, freed at refs == 0 */
	bool healthy;             /* health checks say it answers */
	bool draining;
	bool persisted;           /* the store has it (registry sync) */
	uint64_t persisted_ms;

	/* attestation */
	bool verifying;
	unsigned verify_fails;    /* in a row: retry backoff */
	bool reverify_wanted;     /* after a pin failure / reconnect */
	bool attest_busy;         /* the last check found it busy (503): retrying */
	uint64_t verified_ms;     /* wall time of the last pass, 0 never */
	uint64_t verified_mono_ms; /* ... monotonic (how old a verdict is) */
	uint64_t next_verify_ms;  /* monotonic ms */
	bool have_keys;
	struct veil_keyset keys;  /* attested (valid when have_keys) */
	uint8_t spki[32];         /* the pin (https) */
	uint8_t hpke_key_id[8];
	json_t *report;           /* last verified report (cached) */
	json_t *verdict;          /* last verdict summary */
	char last_error[512];

	/* health */
	struct veil_http_call *health_call;
	int fails, oks;           /* consecutive */
	int answer_timeouts;      /* answers in a row past --upstream-timeout-ms */
	uint64_t next_health_ms;
	uint64_t last_fail_ms;

	/* routing */
	unsigned outstanding;
	unsigned fresh_out;       /* nonce reports asked of it now (api.c) */
	uint64_t requests, errors;

	/* relayed requests (upstream.c) */
	struct veil_hconn_pool *up_pool; /* kept-alive connections (first request) */
	/* receipts (relay.c): the attested address as text, and for which */
	char eth_text[VEIL_ETH_ADDRESS_STR_LEN];
	uint8_t eth_text_of[20];
};

/* ---- the gateway ------------------------------------------------------------- */

struct gw_worker;
struct gw_key_cache;

struct gw {
	struct gw_opts o;
	struct event_base *base;
	struct veil_http_server *srv;
	struct veil_http_client *client;    /* health checks, reports (curl) */
	struct veil_hconn *up;              /* relayed requests: pinned, pooled */
	struct veil_http_chan *chan;        /* worker results -> loop */
	struct gw_worker *query;            /* store reads, rate takes, admin */
	struct gw_worker *report;           /* /v1/usage: scans of a key's
					     * records, never ahead of auth */
	struct gw_worker *writer;           /* usage records (group commit) */
#define GW_MAX_CPU 8
	struct gw_worker *cpu[GW_MAX_CPU];  /* receipt verification */
	unsigned n_cpu, cpu_rr;
	atomic_uint_least64_t usage_commits; /* the writer's usage transactions */
	uint64_t inline_ms;                 /* receipt checks on the loop: this ms ... */
	unsigned inline_n;                  /* ... and how many */
	struct veil_store *store;           /* the loop's handle: start-up only */
	struct veil_secret secret;          /* API-key HMAC key (wiped at exit) */
	struct veil_policy *policy;
	struct gw_key_cache *keys;
	bool ready;
	bool stopping;
	uint64_t started_ms;

	/* own keys, born at start */
	struct veil_ed25519_key *ed;
	struct veil_secp256k1_key *k1;
	EVP_PKEY *tls_key;
	X509 *tls_cert;
	struct veil_keyset keyset;
	uint8_t keyset_enc[VEIL_KEYSET_MAX];
	size_t keyset_len;
	void *attester;                     /* struct veil_attester * */
	json_t *cached_report;              /* loop only */
	struct veil_pccs_fetcher *coll;     /* DCAP collateral for the gateway's
					     * own quote (api.c); NULL: not fetched */
	uint64_t cached_coll;               /* veil_pccs_fetcher_stamp() of
					     * cached_report's collateral */
	char eth_address[VEIL_ETH_ADDRESS_STR_LEN];

	/* admin */
	bool admin_enabled;
	uint8_t admin_token_sha[32];

	/* nodes */
	struct gw_node *nodes;
	size_t n_nodes;
	unsigned rr;                        /* tie breaker */
	struct event *tick;                 /* health / verify / registry timer */
	uint64_t next_poll_ms;
	bool polling;

	struct gw_metrics m;
	struct gw_relay *relays;            /* every relay in flight */
	unsigned relays_detached_live;      /* detached relays not yet freed */
	void (*detached_idle_cb)(void *);   /* gw_relay_when_detached_done */
	void *detached_idle_arg;
};

/* ---- worker.c ---------------------------------------------------------------
 * A job runs `run` on a worker thread (with that worker's store handle, NULL
 * for the CPU worker), then `done` on the loop.  The job is the caller's
 * (usually embedded in a larger struct); `done` owns it again.  Submitting
 * never blocks: the queue is bounded (VEIL_EBUSY when full). */
struct gw_job {
	struct gw_job *next;
	void (*run)(struct gw_job *j, struct veil_store *s);
	void (*done)(struct gw_job *j);
	int rc;
	uint64_t t_ns;               /* submit time */
};

int gw_worker_start(struct gw *g, const char *name, bool with_store,
		    bool batching, size_t cap, struct gw_worker **out);
int gw_worker_submit(struct gw_worker *w, struct gw_job *j);
/* Loop thread, batching workers: as gw_worker_submit, but the job waits
 * until the end of the current loop pass and goes to the worker with every
 * other one queued meanwhile — one lock and one thread wake-up for the
 * lot, and the writer commits them in one transaction.  It costs little
 * latency: the rest of the pass runs first (the events that were ready
 * together), nothing else. */
int gw_worker_submit_pass(struct gw_worker *w, struct gw_job *j);
/* From inside a job's `run`: passes the job on to worker `w` (its run
 * field says what happens there) instead of back to the loop.  The job
 * must not be touched after a 0 return; on failure it is still the
 * caller's (and goes back to the loop as usual). */
int gw_job_handoff(struct gw_worker *w, struct gw_job *j);
size_t gw_worker_queued(struct gw_worker *w);
/* Stops after the queue is drained (the writer commits what it holds). */
void gw_worker_stop(struct gw_worker *w);
int gw_chan_init(struct gw *g);

/* The writer's usage records: submitted as jobs of this type; the writer
 * commits every record it holds in one transaction (run is not called). */
struct gw_usage_job {
	struct gw_job job;            /* run NULL: a usage record */
	struct veil_store_usage u;
	int64_t charge_tokens;        /* rate window charge (0: none) */
	char model[VEIL_STORE_MODEL_MAX + 1];
	char node_id[GW_NODE_ID_MAX + 1];
	char request_id[VEIL_STORE_ID_MAX + 1];
	uint8_t *receipt;             /* owned */
	size_t receipt_len;
};

/* ---- auth.c ---------------------------------------------------------------- */

struct gw_key {
	int64_t id;
	struct veil_store_limits limits;
	bool revoked;
};

/* The result of authenticating a request; `status` 0 means go on. */
typedef void (*gw_auth_fn)(void *arg, int status, const struct gw_key *k,
			   int retry_after_s, const char *code, const char *msg);

int gw_keys_init(struct gw *g);
void gw_keys_free(struct gw *g);
/* Authenticates `req` (Authorization: Bearer KEY); takes nothing from the
 * key's limits (gw_rate does, once the request will be served).  Calls cb
 * now (cached key) or later (store round trip); the caller must keep what
 * arg points to alive until then; if the client leaves meanwhile cb still
 * runs.  status: 401 (missing/unknown/revoked key), 503 (store down). */
void gw_auth(struct gw *g, struct veil_http_req *req, gw_auth_fn cb, void *arg);
/* Takes one request from the rate window of `k` (a key gw_auth returned)
 * and checks its quota; for callers that authenticate first and take only
 * once the request will be served (the completions: a refused request
 * takes nothing).  Calls cb now (no limits) or after a store round trip,
 * with k's copy; statuses 429 and 503. */
void gw_rate(struct gw *g, const struct gw_key *k, gw_auth_fn cb, void *arg);
/* Forgets a key at once (this gateway's revocations). */
void gw_keys_forget(struct gw *g, int64_t key_id);

/* ---- nodes.c ---------------------------------------------------------------- */

int gw_nodes_init(struct gw *g);
void gw_nodes_free(struct gw *g);
/* Registers (or re-registers) a node: pending until its report verifies.
 * `persist` mirrors it to the store.  *out borrowed (may be NULL). */
int gw_node_add(struct gw *g, const struct gw_node_spec *s, bool persist,
		struct gw_node **out);
struct gw_node *gw_node_find(struct gw *g, const char *id);
void gw_node_drain(struct gw *g, struct gw_node *n, bool persist);
void gw_node_remove(struct gw *g, struct gw_node *n, bool persist);
void gw_node_ref(struct gw_node *n);
void gw_node_unref(struct gw_node *n);
bool gw_node_usable(const struct gw_node *n);
/* Least outstanding among usable nodes of `model` (affinity key optional),
 * never `avoid`.  NULL when none. */
struct gw_node *gw_pick(struct gw *g, const char *model, const uint8_t *affinity,
			const struct gw_node *avoid);
/* The usable node whose attested HPKE key has this id. */
struct gw_node *gw_pick_by_key_id(struct gw *g, const uint8_t id[8]);
/* A request to the node failed to connect or broke: out of rotation now,
 * active checks bring it back (and re-verify it first). */
void gw_node_failed(struct gw *g, struct gw_node *n, const char *why);
json_t *gw_node_json(const struct gw_node *n, bool detail);
/* Pin and timeouts for a call to the node. */
void gw_node_request(const struct gw_node *n, struct veil_http_request *rq);
/* Verifies the node now (admin, reconnect). */
void gw_node_verify(struct gw *g, struct gw_node *n);
bool gw_model_available(struct gw *g, const char *model);

/* ---- upstream.c ---------------------------------------------------------------
 * HTTP/1.1 requests to a node: the hconn client (veil/hconn.h) with one pool
 * of kept-alive connections per node, pinned to the node's attested TLS key
 * (https nodes must be verified: have_keys).  Callbacks run on the loop;
 * the call is freed right after on_done. */

/* The client of the loop (at start). */
int gw_up_init(struct gw *g);
/* Starts rq (method, path, headers, body, timeout, limits, callbacks) to
 * node n: url, pin, label and connect timeout are filled in here from the
 * node and --connect-timeout-ms.  As veil_hconn_start; VEIL_EPERM for an
 * https node not verified. */
int gw_up_start(struct gw *g, struct gw_node *n, struct veil_hconn_request *rq,
		struct veil_hconn_call **out);
/* Closes the node's idle connections (it failed, changed or goes away; a
 * removed node keeps none from then on, a freed one frees its pool). */
void gw_up_node_flush(struct gw_node *n);

/* ---- relay.c ------------------------------------------------------------------ */

struct gw_relay;
void gw_relay_routes(struct gw *g);
/* Ends every relay in flight (shutdown): streams get an error event, the
 * detached ones (a client gone, the node's answer read to bill it) are
 * abandoned unbilled; relays whose usage record is with the writer are
 * left to complete when it returns (the record is committed at exit). */
void gw_relay_abort_all(struct gw *g, const char *why);
/* Calls cb(arg) once, on the loop, when no detached relay is left (their
 * records handed to the writer), or at once when there is none: for a
 * shutdown that waits for them within its grace (gw_relay_abort_all ends
 * the rest).  A later call replaces an earlier one. */
void gw_relay_when_detached_done(struct gw *g, void (*cb)(void *), void *arg);

/* ---- api.c / admin.c ------------------------------------------------------------ */

void gw_api_routes(struct gw *g);
void gw_admin_routes(struct gw *g);
int gw_attest_init(struct gw *g);
/* Starts the fresh node reports whose wait is over (a busy node's retry);
 * on every tick (nodes.c). */
void gw_fresh_tick(void);
/* At exit: wipes the gateway's signing and TLS keys; leaves the attester,
 * the cached report and the collateral fetcher, which a CPU worker may
 * still be using, to the process's end. */
void gw_attest_free(struct gw *g);
void gw_status(struct gw *g, int status);
void gw_hist_add(struct gw_hist *h, double seconds);
int gw_reply_error(struct gw *g, struct veil_http_req *req, int status,
		   const char *type, const char *code, const char *fmt, ...)
	VEIL_PRINTF(6, 7);
/* Runs a store job on the query worker and answers 503 when it is full.
 * Returns 0 when submitted. */
int gw_query(struct gw *g, struct gw_job *j, struct veil_http_req *req);
/* The same on the report worker (a caller's usage over a window scans its
 * records: seconds for a busy key, which must not hold up key lookups and
 * rate takes); 503 with Retry-After when its GW_REPORT_QUEUE are taken. */
#define GW_REPORT_QUEUE 16
int gw_report_query(struct gw *g, struct gw_job *j, struct veil_http_req *req);
/* base64url without padding; caller frees. */
char *gw_b64url(const void *p, size_t n);

#endif
