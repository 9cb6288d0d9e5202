/* veil-node: the private LLM node (DESIGN.md §1).
 *
 * At start: keys born in memory (Ed25519, secp256k1, X25519 HPKE, TLS), the
 * model loaded (or an upstream engine named), RTMR3 extended with the
 * binary, the flags and the model; then one event loop serves the API until
 * SIGINT/SIGTERM, after which requests in flight get a grace period and
 * every key is wiped. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/crypto.h>

#include "veil/chat.h"
#include "veil/gguf.h"
#include "veil/opt.h"
#include "veil/seal.h"

#include "node.h"
#include "rstore.h"

#define GRACE_MS 10000

/* --print-config: print the measured configuration and exit. */
static bool print_config;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: veil-node --model PATH [options]\n"
		"\n"
		"Serves an OpenAI-compatible API from inside a TEE: sealed requests,\n"
		"signed receipts, attestation reports.  See docs/operations.md.\n"
		"\n"
		"  --model PATH          GGUF model (optional with --upstream: then only measured)\n"
		"  --model-name NAME     name in the API (default: file name without .gguf)\n"
		"  --listen ADDR:PORT    default 127.0.0.1:8443 (port 0: any free port)\n"
		"  --tee auto|tdx|sev-snp|sim   default auto (a simulated TEE when none is found)\n"
		"  --upstream URL        relay inference to an OpenAI-compatible engine\n"
		"  --plain-http          no TLS (loopback tests only; refused on other addresses)\n"
		"  --allow-plaintext     accept unsealed request bodies\n"
		"  --max-batch N         sequences decoded together (default 8)\n"
		"  --max-queue N         requests waiting beyond them (default 64; over: 429)\n"
		"  --ctx N               context positions per sequence (default: the model's,\n"
		"                        at most 4096; up to 1048576)\n"
		"  --threads N           inference threads (default: all cores)\n"
		"  --lazy-kv             KV cache pages made resident as written, not at start\n"
		"  --max-body BYTES      request body cap (default 1048576; over: 413)\n"
		"  --max-header-bytes N  request head cap (default 16384; over: 431)\n"
		"  --max-conns N         open connections (default 1024; over: 503)\n"
		"  --receipts-max N      receipts kept for GET /v1/signature (default 131072)\n"
		"  --request-timeout-ms N  whole request head+body (default 30000; over: 408)\n"
		"  --idle-timeout-ms N   keep-alive idle (default 30000)\n"
		"  --pccs URL|none       DCAP collateral for the reports from a PCCS or Intel PCS\n"
		"                        (default on TDX: " VEIL_PCCS_DEFAULT_URL ";\n"
		"                        sim: none, the sim's own)\n"
		"  --pccs-cache DIR      keep fetched collateral in DIR (an existing directory)\n"
		"  --sim-state DIR       sim TEE: keep its keys in DIR/sim-tee.pem across restarts\n"
		"  --log-level L         debug|info|warn|error (default info)\n"
		"  --log-json            one JSON object per log line\n"
		"  --print-config        print the configuration this node measures (one line of\n"
		"                        JSON; its SHA-384 is the report's node_config) and exit\n");
}

/* Jansson holds request bodies (prompts) and answers: wipe on free. */
static void *wiping_malloc(size_t n)
{
	return malloc(n);
}

static void wiping_free(void *p)
{
	if (p) {
		veil_wipe(p, malloc_usable_size(p));
		free(p);
	}
}

/* --upstream: only an http(s) engine is relayed to. */
static int upstream_url(const char *v, void *dst)
{
	if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
		return VEIL_EINVAL;
	*(const char **)dst = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct node_opts *o, int *exit_code)
{
	static const char *const tees[] = {"auto", "tdx", "sev-snp", "sim", NULL};
	const char *name = NULL;
	int lvl = VEIL_LOG_INFO, tee = 0;
	bool json_log = false, help = false;
	const struct veil_opt opts[] = {
		VEIL_OPT_STOP("-h", &help),
		VEIL_OPT_STOP("--help", &help),
		VEIL_OPT_FLAG("--plain-http", &o->plain_http),
		VEIL_OPT_FLAG("--allow-plaintext", &o->allow_plaintext),
		VEIL_OPT_FLAG("--log-json", &json_log),
		VEIL_OPT_FLAG("--print-config", &print_config),
		VEIL_OPT_FLAG("--lazy-kv", &o->lazy_kv),
		VEIL_OPT_STR("--model", &o->model),
		VEIL_OPT_STR("--model-name", &name),
		VEIL_OPT_STR("--listen", &o->listen),
		VEIL_OPT_CHOICE("--tee", &tee, tees),
		VEIL_OPT_FN("--upstream", upstream_url, &o->upstream,
			    "--upstream must be http(s)://host:port"),
		VEIL_OPT_FN("--log-level", veil_opt_log_level, &lvl, "unknown log level"),
		VEIL_OPT_FN("--pccs", veil_pccs_opt_url, &o->pccs,
			    "--pccs must be http(s)://host[:port][/prefix] or none"),
		VEIL_OPT_FN("--pccs-cache", veil_opt_dir, &o->pccs_cache,
			    "--pccs-cache must name an existing directory"),
		VEIL_OPT_FN("--sim-state", veil_opt_dir, &o->sim_state,
			    "--sim-state must name an existing directory"),
		VEIL_OPT_INT("--max-batch", &o->max_batch, 1, 1024),
		VEIL_OPT_INT("--max-queue", &o->max_queue, 1, 65536),
		VEIL_OPT_INT("--ctx", &o->ctx, 16, 1 << 20),
		VEIL_OPT_INT("--threads", &o->threads, 1, 1024),
		VEIL_OPT_INT("--max-body", &o->max_body, 1024, 1ll << 30),
		VEIL_OPT_INT("--max-header-bytes", &o->max_header_bytes, 256, 1 << 20),
		VEIL_OPT_INT("--max-conns", &o->max_conns, 1, 1 << 20),
		VEIL_OPT_INT("--receipts-max", &o->receipts_max, 1, 1 << 24),
		VEIL_OPT_INT("--request-timeout-ms", &o->request_timeout_ms, 10, 3600000),
		VEIL_OPT_INT("--idle-timeout-ms", &o->idle_timeout_ms, 10, 3600000),
	};
	const struct veil_opt_cmd cmd = {"veil-node", opts, VEIL_ARRAY_LEN(opts), NULL};

	o->listen = "127.0.0.1:8443";
	o->max_batch = 8;
	o->max_queue = 64;
	o->max_body = 1 << 20;
	o->max_conns = 1024;
	o->receipts_max = NODE_RECEIPTS_MAX;
	o->max_header_bytes = 16384;
	o->request_timeout_ms = 30000;
	o->idle_timeout_ms = 30000;
	if (veil_opt_parse(&cmd, argc, argv) < 0)
		goto bad;
	if (help) {
		usage(stdout);
		*exit_code = 0;
		return -1;
	}
	o->tee = tees[tee];
	veil_log_setup((enum veil_log_level)lvl, json_log, stderr);
	if (!o->model && !o->upstream) {
		fprintf(stderr, "veil-node: --model PATH is required (or --upstream URL)\n");
		goto bad;
	}
	if (!name && o->model) {
		const char *base = strrchr(o->model, '/');
		size_t len;

		base = base ? base + 1 : o->model;
		len = strlen(base);
		if (len > 5 && !strcmp(base + len - 5, ".gguf"))
			len -= 5;
		if (len >= sizeof(o->model_name)) {
			fprintf(stderr, "veil-node: the model file's name is over %zu bytes: give "
				"the model a name with --model-name\n", sizeof(o->model_name) - 1);
			goto bad;
		}
		snprintf(o->model_name, sizeof(o->model_name), "%.*s", (int)len, base);
	} else if (name) {
		snprintf(o->model_name, sizeof(o->model_name), "%s", name);
	}
	if (!o->model_name[0]) {
		fprintf(stderr, "veil-node: --model-name is required with --upstream and no --model\n");
		goto bad;
	}
	/* the gateways' rule: a name with a control byte or invalid UTF-8 made
	 * every receipt fail to build or parse, a longer one was cut */
	if (!veil_model_name_ok(name ? name : o->model_name,
				strlen(name ? name : o->model_name), sizeof(o->model_name) - 1)) {
		fprintf(stderr, "veil-node: the model name '%.*s' (%s) must be 1..%zu bytes of "
			"printable ASCII without spaces, quotes or backslashes, as clients and "
			"gateways name models: give one with --model-name\n",
			(int)VEIL_MIN(strlen(o->model_name), 64), o->model_name,
			name ? "--model-name" : "the file name", sizeof(o->model_name) - 1);
		goto bad;
	}
	return 0;
bad:
	*exit_code = 2;
	return -1;
}

static bool is_loopback(const char *addr)
{
	return !strncmp(addr, "127.", 4) || !strcmp(addr, "::1") ||
	       !strcmp(addr, "localhost");
}

/* The measured configuration: every flag that changes behaviour, as JSON
 * with sorted keys and no spaces.  Not measured, like the log flags:
 * --pccs and --pccs-cache, which change only where the reports' DCAP
 * collateral comes from, not what the node attests to or does with a
 * request: the collateral is public and signed by Intel, verified against
 * Intel's root by every verifier, so any URL or cache can make a report
 * fail verification but never pass; the request carries only the FMSPC and
 * CA type, which the quote shows anyway; and measuring a deployment's PCCS
 * address would give each site another node_config for policies to pin.
 * (How fresh the collateral is rests on the operator either way: a
 * verifier that wants the newest fetches its own, docs/security.md.)
 * --sim-state neither: it keeps the sim TEE's keys, and sim reports prove
 * nothing about the node anyway. */
static char *config_json(const struct node_opts *o)
{
	json_t *c = json_pack("{s:b, s:i, s:b, s:s, s:I, s:I, s:I, s:i, s:i, s:s, s:b, s:I, s:I, s:I, s:s, s:i, s:s?}",
			      "allow_plaintext", o->allow_plaintext, "ctx", o->ctx,
			      "lazy_kv", o->lazy_kv,
			      "listen", o->listen, "max_body", (json_int_t)o->max_body,
			      "max_conns", (json_int_t)o->max_conns, "max_header_bytes",
			      (json_int_t)o->max_header_bytes, "max_batch", o->max_batch,
			      "max_queue", o->max_queue, "model_name", o->model_name,
			      "plain_http", o->plain_http, "receipts_max",
			      (json_int_t)o->receipts_max, "request_timeout_ms",
			      (json_int_t)o->request_timeout_ms, "idle_timeout_ms",
			      (json_int_t)o->idle_timeout_ms, "tee", o->tee, "threads",
			      o->threads, "upstream", o->upstream);
	char *s = c ? json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	json_decref(c);
	return s;
}

static int make_keys(struct node *n)
{
	uint8_t pub[VEIL_SECP256K1_PUB_LEN], addr[VEIL_ETH_ADDRESS_LEN];
	int rc;

	if ((rc = veil_ed25519_key_generate(&n->ed)) < 0 ||
	    (rc = veil_secp256k1_key_generate(&n->k1)) < 0 ||
	    (rc = veil_hpke_keygen(&n->hpke)) < 0 ||
	    (rc = veil_seal_key_id(n->hpke.pub, n->hpke_key_id)) < 0)
		return rc;
	if (!n->o.plain_http &&
	    (rc = veil_http_selfsigned(VEIL_HTTP_KEY_P256, NULL, 365, &n->tls_key,
				       &n->tls_cert)) < 0)
		return rc;
	memset(&n->keyset, 0, sizeof(n->keyset));
	veil_ed25519_public(n->ed, n->keyset.ed25519);
	n->keyset.present |= VEIL_KEYSET_HAS(VEIL_KEY_ED25519);
	veil_secp256k1_public(n->k1, pub);
	if ((rc = veil_keyset_set_secp256k1(&n->keyset, pub)) < 0)
		return rc;
	memcpy(n->keyset.x25519_hpke, n->hpke.pub, 32);
	n->keyset.present |= VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE);
	if (n->tls_key) {
		if ((rc = veil_http_spki_sha256_key(n->tls_key, n->keyset.tls_spki_sha256)) < 0)
			return rc;
		n->keyset.present |= VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256);
	}
	if ((rc = veil_keyset_encode(&n->keyset, n->keyset_enc, sizeof(n->keyset_enc),
				     &n->keyset_len)) < 0)
		return rc;
	veil_secp256k1_address(n->k1, addr);
	veil_eth_address_format(addr, n->eth_address);
	veil_hex_encode(n->keyset.ed25519, 32, n->ed_pub_hex, sizeof(n->ed_pub_hex));
	return 0;
}

static void free_keys(struct node *n)
{
	veil_ed25519_key_free(n->ed);
	veil_secp256k1_key_free(n->k1);
	veil_wipe(&n->hpke, sizeof(n->hpke));
	EVP_PKEY_free(n->tls_key); /* OpenSSL cleanses private keys on free */
	X509_free(n->tls_cert);
	n->ed = NULL;
	n->k1 = NULL;
	n->tls_key = NULL;
	n->tls_cert = NULL;
}

/* The loop thread asks for a short time slice.  Linux's EEVDF scheduler
 * (6.12 on) takes sched_attr.sched_runtime of a SCHED_OTHER thread as its
 * slice; with a short one the loop, woken by a token while the engine's
 * threads keep every core busy, runs at once instead of after their slice
 * (about a millisecond of a stream's time to first token).  The loop's
 * work per wake-up is tens of microseconds.  Older kernels ignore the
 * field; policy and nice stay as they are; threads started later (none but
 * libcurl's resolver) inherit it.  Only a hint: failures are logged. */
#define LOOP_SLICE_NS 100000ull

static void loop_latency_hint(void)
{
	if (veil_thread_slice_hint(LOOP_SLICE_NS) < 0)
		VEIL_DEBUG(NODE_MOD, "loop thread: time slice hint not taken (%s)", veil_err_detail());
}

static void shutdown_done(void *arg)
{
	struct node *n = arg;

	event_base_loopexit(n->base, NULL);
}

/* The grace period is nearly over: answers still open end with an explicit
 * error rather than a cut connection. */
static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;

	(void)fd;
	(void)what;
	node_api_abort_all(n, "the node is shutting down");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct node *n = arg;
	struct timeval tv = {0, 200000};

	(void)what;
	if (n->stopping) {
		VEIL_WARN(NODE_MOD, "second signal: stopping now");
		node_api_abort_all(n, "the node is shutting down");
		event_base_loopexit(n->base, &tv); /* let the error events go out */
		return;
	}
	VEIL_INFO(NODE_MOD, "signal %d: shutting down (grace %d ms)", (int)sig, GRACE_MS);
	n->stopping = true;
	tv.tv_sec = (GRACE_MS - 500) / 1000;
	tv.tv_usec = ((GRACE_MS - 500) % 1000) * 1000;
	event_base_once(n->base, -1, EV_TIMEOUT, grace_cb, n, &tv);
	veil_http_server_shutdown(n->srv, GRACE_MS, shutdown_done, n);
}

static void set_model_digests(struct node *n, const struct veil_gguf_digests *dg)
{
	memcpy(n->model_sha256, dg->sha256, sizeof(n->model_sha256));
	memcpy(n->model_sha384, dg->sha384, sizeof(n->model_sha384));
	n->have_model_hash = true;
	veil_hex_encode(n->model_sha256, 32, n->model_sha256_hex,
			sizeof(n->model_sha256_hex));
}

int main(int argc, char **argv)
{
	struct node *n = calloc(1, sizeof(*n));
	struct veil_http_server_opts so = {0};
	struct event *sigint = NULL, *sigterm = NULL;
	char addr[64];
	uint16_t port;
	int code = 1, rc;

	if (!n)
		return 1;
	if (parse_args(argc, argv, &n->o, &code) < 0)
		goto out;
	json_set_alloc_funcs(wiping_malloc, wiping_free);
	if (veil_opt_listen(n->o.listen, addr, sizeof(addr), &port) < 0) {
		fprintf(stderr, "veil-node: --listen ADDR:PORT\n");
		code = 2;
		goto out;
	}
	if (n->o.plain_http && !is_loopback(addr)) {
		fprintf(stderr, "veil-node: --plain-http is for loopback tests only; "
				"refusing to listen on %s without TLS\n", addr);
		code = 2;
		goto out;
	}
	if (!(n->o.config_json = config_json(&n->o)))
		goto out;
	if (print_config) {
		code = printf("%s\n", n->o.config_json) < 0 || fflush(stdout) ? 1 : 0;
		goto out;
	}
	n->started_ms = veil_wall_ms();
	evthread_use_pthreads();
	if (!(n->base = event_base_new()))
		goto out;
	if ((rc = make_keys(n)) < 0) {
		VEIL_ERROR(NODE_MOD, "key generation failed: %s", veil_strerror(rc));
		goto out;
	}
	if (n->o.upstream) {
		if (n->o.model) {
			struct veil_gguf_digests dg;

			/* measured only, not served: one streamed read */
			if ((rc = veil_gguf_digest_file(n->o.model, &dg)) < 0) {
				VEIL_ERROR(NODE_MOD, "cannot read the model: %s (%s)",
					   veil_strerror(rc), veil_err_detail());
				goto out;
			}
			set_model_digests(n, &dg);
		}
		if ((rc = veil_http_client_new(n->base, &n->client)) < 0)
			goto out;
		VEIL_INFO(NODE_MOD, "upstream mode: inference relayed to %s", n->o.upstream);
	} else {
		struct veil_engine_params ep;
		struct veil_gguf_digests dg;
		struct veil_model *m = NULL;
		struct veil_tok *tok = NULL;
		const struct veil_gguf *g;
		struct veil_gguf_str ts = {NULL, 0};
		bool known = false;

		veil_engine_params_default(&ep);
		ep.max_batch = n->o.max_batch;
		ep.max_queue = n->o.max_queue;
		ep.n_ctx = n->o.ctx;
		ep.n_threads = n->o.threads;
		ep.lazy_kv = n->o.lazy_kv;
		/* One read of the file into private memory, hashed as read; the
		 * engine serves those bytes and RTMR3 / model.sha256 measure
		 * them (no file mapping left for the file's writer to change:
		 * docs/security.md). */
		if ((rc = veil_model_load_private(n->o.model, &dg, &m)) < 0 ||
		    (rc = veil_tok_load(veil_model_gguf(m), &tok)) < 0) {
			VEIL_ERROR(NODE_MOD, "cannot load the model: %s (%s)", veil_strerror(rc),
				   veil_err_detail());
			veil_model_free(m);
			goto out;
		}
		set_model_digests(n, &dg);
		/* takes m and tok, also on failure */
		if ((rc = veil_engine_new(m, tok, &ep, &n->engine)) < 0) {
			VEIL_ERROR(NODE_MOD, "cannot start the engine: %s (%s)",
				   veil_strerror(rc), veil_err_detail());
			goto out;
		}
		n->tok = veil_engine_tok(n->engine);
		g = veil_model_gguf(veil_engine_model(n->engine));
		veil_gguf_get_str(g, "tokenizer.chat_template", &ts);
		n->chat_tmpl = (int)veil_chat_detect(ts.p, (size_t)ts.len, &known);
		VEIL_INFO(NODE_MOD, "model %s (sha256 %s), chat template %s, context %d, batch %d, "
			  "KV cache %zu MiB%s", n->o.model_name, n->model_sha256_hex,
			  veil_chat_name((enum veil_chat_tmpl)n->chat_tmpl),
			  (int)veil_engine_n_ctx(n->engine), n->o.max_batch,
			  veil_ctx_kv_bytes(veil_engine_ctx(n->engine)) >> 20,
			  n->o.lazy_kv ? " (reserved)" : " (resident)");
	}
	if ((rc = rstore_new((size_t)n->o.receipts_max, NODE_RECEIPTS_KEEP_MS, &n->receipts)) < 0)
		goto out;
	if ((rc = node_signer_start(n)) < 0)
		goto out;
	if ((rc = node_attest_init(n)) < 0)
		goto out;
	so.addr = addr;
	so.port = port;
	so.tls_key = n->tls_key;
	so.tls_cert = n->tls_cert;
	so.max_conns = n->o.max_conns;
	so.max_body = n->o.max_body;
	so.max_header_bytes = n->o.max_header_bytes;
	so.request_timeout_ms = n->o.request_timeout_ms;
	so.idle_timeout_ms = n->o.idle_timeout_ms;
	so.retry_after_s = 1;
	if ((rc = veil_http_server_new(n->base, &so, &n->srv)) < 0) {
		VEIL_ERROR(NODE_MOD, "cannot listen on %s: %s (%s)", n->o.listen,
			   veil_strerror(rc), veil_err_detail());
		goto out;
	}
	if ((rc = node_api_init(n)) < 0)
		goto out;
	node_ops_routes(n);
	node_api_routes(n);
	node_receipt_routes(n);
	node_attest_routes(n);
	sigint = evsignal_new(n->base, SIGINT, on_signal, n);
	sigterm = evsignal_new(n->base, SIGTERM, on_signal, n);
	if (!sigint || !sigterm || event_add(sigint, NULL) || event_add(sigterm, NULL))
		goto out;
	if (n->o.plain_http)
		VEIL_WARN(NODE_MOD, "--plain-http: NO TLS - for loopback tests only");
	if (n->o.allow_plaintext)
		VEIL_WARN(NODE_MOD, "--allow-plaintext: unsealed request bodies accepted");
	VEIL_INFO(NODE_MOD, "keys: ed25519 %s, ethereum %s", n->ed_pub_hex, n->eth_address);
	loop_latency_hint();
	n->ready = true;
	VEIL_INFO(NODE_MOD, "listening on %s://%s:%u", n->o.plain_http ? "http" : "https",
		  addr, (unsigned)veil_http_server_port(n->srv));
	event_base_dispatch(n->base);
	VEIL_INFO(NODE_MOD, "stopped");
	code = 0;
out:
	if (sigint)
		event_free(sigint);
	if (sigterm)
		event_free(sigterm);
	veil_http_server_free(n->srv);
	if (n->base)
		event_base_loop(n->base, EVLOOP_NONBLOCK);
	node_api_stop(n); /* its tokenizer threads read the engine's tokenizer */
	veil_engine_free(n->engine);
	/* after the engine: no answer can end (and want a receipt) any more */
	node_signer_stop(n);
	if (n->chan)
		node_api_free(n);
	veil_http_client_free(n->client);
	node_attest_free(n);
	rstore_free(n->receipts);
	free_keys(n);
	free(n->o.config_json);
	if (n->base)
		event_base_free(n->base);
	veil_wipe(n, sizeof(*n));
	free(n);
	return code;
}
