/* veil-proxy: the client side of veil (DESIGN.md §1).  Serves the OpenAI API
 * on loopback for any client; verifies the gateway and its nodes against a
 * policy before any plaintext leaves the machine; seals every request to an
 * attested node key; opens and checks every answer and receipt.
 * docs/proxy.md says what it guarantees and how it fails. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/evp.h>

#include "veil/hconn.h"
#include "veil/http.h"
#include "veil/opt.h"
#include "veil/policy.h"

#include "proxy.h"

#define GRACE_MS 5000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: veil-proxy --gateway URL [options]\n"
		"\n"
		"Serves the OpenAI API on 127.0.0.1 for any client.  Before any plaintext\n"
		"leaves the machine it verifies the gateway's and the nodes' attestation\n"
		"against a policy; every request is sealed to an attested node key and\n"
		"every answer and receipt is checked.  See docs/proxy.md.\n"
		"\n"
		"  --gateway URL        veil-gateway (or a veil-node) base URL, https:// or\n"
		"                       http:// (allowed with a warning: sealing still\n"
		"                       protects the content)\n"
		"  --listen ADDR:PORT   loopback only; default 127.0.0.1:8080 (port 0: any)\n"
		"  --api-key KEY        the gateway API key (default: $VEIL_API_KEY)\n"
		"  --policy FILE        veil-policy/1 file (default: any model, TDX or SEV-SNP,\n"
		"                       TCB UpToDate; see docs/policy.md)\n"
		"  --allow-sim          accept simulated TEE evidence (tests and demos only)\n"
		"  --receipts FILE      append receipts and verification results (JSON lines);\n"
		"                       `veil receipts verify FILE` re-checks them offline\n"
		"  --recheck-s N        re-verify after N seconds (default 300)\n"
		"  --timeout-s N        one upstream exchange (default 600)\n"
		"  --max-body BYTES     request body cap (default 4194304; over: 413)\n"
		"  --log-level L        debug|info|warn|error (default info)\n"
		"  --log-json           one JSON object per log line\n");
}

/* Jansson holds prompts and answers: wipe on free. */
static void *wiping_malloc(size_t n)
{
	return malloc(n);
}

static void wiping_free(void *ptr)
{
	if (ptr) {
		veil_wipe(ptr, malloc_usable_size(ptr));
		free(ptr);
	}
}

static bool header_safe(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

static int parse_args(int argc, char **argv, struct proxy_opts *o, int *exit_code)
{
	const char *gw = NULL;
	int lvl = VEIL_LOG_INFO;
	bool json_log = false, help = false;
	size_t len;
	const struct veil_opt opts[] = {
		VEIL_OPT_STOP("-h", &help),
		VEIL_OPT_STOP("--help", &help),
		VEIL_OPT_FLAG("--allow-sim", &o->allow_sim),
		VEIL_OPT_FLAG("--log-json", &json_log),
		VEIL_OPT_STR("--gateway", &gw),
		VEIL_OPT_STR("--listen", &o->listen),
		VEIL_OPT_STR("--api-key", &o->api_key),
		VEIL_OPT_STR("--policy", &o->policy_path),
		VEIL_OPT_STR("--receipts", &o->receipts_path),
		VEIL_OPT_FN("--log-level", veil_opt_log_level, &lvl, "unknown log level"),
		VEIL_OPT_INT("--recheck-s", &o->recheck_s, 1, 86400),
		VEIL_OPT_INT("--timeout-s", &o->timeout_s, 1, 86400),
		VEIL_OPT_INT("--max-body", &o->max_body, 1024, 1ll << 30),
	};
	const struct veil_opt_cmd cmd = {"veil-proxy", opts, VEIL_ARRAY_LEN(opts), NULL};

	o->listen = "127.0.0.1:8080";
	o->recheck_s = 300;
	o->timeout_s = 600;
	o->max_body = 4u << 20;
	if (veil_opt_parse(&cmd, argc, argv) < 0)
		goto bad;
	if (help) {
		usage(stdout);
		*exit_code = 0;
		return -1;
	}
	veil_log_setup((enum veil_log_level)lvl, json_log, stderr);
	if (!gw) {
		fprintf(stderr, "veil-proxy: --gateway URL is required\n");
		goto bad;
	}
	if ((strncmp(gw, "http://", 7) && strncmp(gw, "https://", 8)) ||
	    !header_safe(gw, 1024)) {
		fprintf(stderr, "veil-proxy: --gateway must be http(s)://host[:port][/path]\n");
		goto bad;
	}
	if (!(o->gateway = strdup(gw)))
		goto bad;
	len = strlen(o->gateway);
	while (len > 8 && o->gateway[len - 1] == '/')
		o->gateway[--len] = '\0';
	o->tls = !strncmp(o->gateway, "https://", 8);
	{
		/* the relayed requests go to the origin, at the URL's path */
		const char *h = o->gateway + (o->tls ? 8 : 7), *slash = strchr(h, '/');
		size_t ol = slash ? (size_t)(slash - o->gateway) : len;

		if (ol <= (size_t)(h - o->gateway) || ol >= sizeof(o->up_origin) ||
		    memchr(h, '@', ol - (size_t)(h - o->gateway))) {
			fprintf(stderr, "veil-proxy: --gateway must be "
				"http(s)://host[:port][/path]\n");
			goto bad;
		}
		memcpy(o->up_origin, o->gateway, ol);
		o->up_origin[ol] = '\0';
		snprintf(o->up_base, sizeof(o->up_base), "%s", o->gateway + ol);
	}
	if (!o->api_key) {
		const char *e = getenv("VEIL_API_KEY");

		if (e && *e)
			o->api_key = e;
	}
	if (o->api_key && !header_safe(o->api_key, 512)) {
		fprintf(stderr, "veil-proxy: the API key must be 1..512 printable characters\n");
		goto bad;
	}
	return 0;
bad:
	*exit_code = 2;
	return -1;
}

static bool is_loopback(const char *addr)
{
	return !strncmp(addr, "127.", 4) || !strcmp(addr, "::1");
}

/* The loop thread asks for a short time slice.  Linux's EEVDF scheduler
 * (6.12 on) takes sched_attr.sched_runtime of a SCHED_OTHER thread as its
 * slice; with a short one the loop, woken by a token while other processes
 * keep every core busy (the node's engine, when they share a machine, or
 * anything on a user's laptop), runs at once instead of after their slice.
 * Its work per wake-up is tens of microseconds, and the hint does not give
 * it a larger share of the CPU.  Set after the worker threads are started,
 * so only the loop (and libcurl's resolver threads) has it; older kernels
 * ignore the field.  The same as veil-node's loop. */
#define LOOP_SLICE_NS 100000ull

static void loop_latency_hint(void)
{
	if (veil_thread_slice_hint(LOOP_SLICE_NS) < 0)
		VEIL_DEBUG(PROXY_MOD, "loop thread: time slice hint not taken (%s)", veil_err_detail());
}

static void shutdown_done(void *arg)
{
	struct proxy *p = arg;

	event_base_loopexit(p->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct proxy *p = arg;
	struct timeval tv = {0, 200000};

	(void)what;
	if (p->stopping) {
		VEIL_WARN(PROXY_MOD, "second signal: stopping now");
		proxy_api_abort_all(p, "veil-proxy is shutting down");
		event_base_loopexit(p->base, &tv);
		return;
	}
	VEIL_INFO(PROXY_MOD, "signal %d: shutting down (grace %d ms)", (int)sig, GRACE_MS);
	p->stopping = true;
	veil_http_server_shutdown(p->srv, GRACE_MS, shutdown_done, p);
}

int main(int argc, char **argv)
{
	struct proxy *p = calloc(1, sizeof(*p));
	struct veil_http_server_opts so = {0};
	struct event *sigint = NULL, *sigterm = NULL;
	char addr[64];
	uint16_t port;
	int code = 1, rc;

	if (!p)
		return 1;
	if (parse_args(argc, argv, &p->o, &code) < 0)
		goto out;
	code = 2;
	if (veil_opt_listen(p->o.listen, addr, sizeof(addr), &port) < 0) {
		fprintf(stderr, "veil-proxy: --listen ADDR:PORT\n");
		goto out;
	}
	if (!is_loopback(addr)) {
		/* Clients speak plaintext to the proxy: it must not be reachable
		 * from another machine. */
		fprintf(stderr, "veil-proxy: --listen must be a loopback address (127.x.x.x "
				"or ::1): clients talk plaintext to it\n");
		goto out;
	}
	if (p->o.policy_path) {
		if ((rc = veil_policy_load_file(p->o.policy_path, &p->policy)) < 0) {
			fprintf(stderr, "veil-proxy: policy %s: %s (%s)\n", p->o.policy_path,
				veil_strerror(rc), veil_err_detail());
			goto out;
		}
	} else if (!(p->policy = veil_policy_new())) {
		goto out;
	}
	code = 1;
	if (p->o.allow_sim)
		veil_policy_set_allow_sim(p->policy, true);
	json_set_alloc_funcs(wiping_malloc, wiping_free);
	if (p->o.receipts_path && (rc = rlog_open(p->o.receipts_path, &p->rlog)) < 0) {
		VEIL_ERROR(PROXY_MOD, "receipts log: %s", veil_err_detail());
		goto out;
	}
	p->started_ms = veil_wall_ms();
	evthread_use_pthreads();
	if (!(p->base = event_base_new()))
		goto out;
	if ((rc = veil_http_client_new(p->base, &p->client)) < 0 ||
	    (rc = veil_hconn_new(p->base, &p->hconn)) < 0 ||
	    (rc = veil_hconn_pool_new(p->hconn, 0, 0, &p->up_pool)) < 0)
		goto out;
	so.addr = addr;
	so.port = port;
	so.max_body = p->o.max_body;
	so.max_output = 8u << 20;
	so.idle_timeout_ms = 60000;
	so.write_timeout_ms = 120000;
	so.retry_after_s = 1;
	if ((rc = veil_http_server_new(p->base, &so, &p->srv)) < 0) {
		VEIL_ERROR(PROXY_MOD, "cannot listen on %s: %s (%s)", p->o.listen,
			   veil_strerror(rc), veil_err_detail());
		goto out;
	}
	proxy_attest_routes(p);
	proxy_api_routes(p);
	sigint = evsignal_new(p->base, SIGINT, on_signal, p);
	sigterm = evsignal_new(p->base, SIGTERM, on_signal, p);
	if (!sigint || !sigterm || event_add(sigint, NULL) || event_add(sigterm, NULL))
		goto out;
	if (!p->o.tls)
		VEIL_WARN(PROXY_MOD, "--gateway is plain http: no TLS to the gateway; request "
			  "and answer bodies are still sealed end to end, but the API key, "
			  "model names and sizes travel in clear");
	if (veil_policy_allows_sim(p->policy))
		VEIL_WARN(PROXY_MOD, "SIMULATED TEE evidence is ACCEPTED (--allow-sim): answers "
			  "then prove nothing about real hardware - tests and demos only");
	if (!p->o.api_key)
		VEIL_INFO(PROXY_MOD, "no API key (--api-key or $VEIL_API_KEY)");
	if ((rc = proxy_verify_init(p)) < 0) {
		VEIL_ERROR(PROXY_MOD, "receipt checker: %s", veil_strerror(rc));
		goto out;
	}
	if ((rc = proxy_attest_init(p)) < 0) {
		VEIL_ERROR(PROXY_MOD, "attestation worker: %s", veil_strerror(rc));
		goto out;
	}
	VEIL_INFO(PROXY_MOD, "gateway %s, re-verified every %u s%s", p->o.gateway,
		  p->o.recheck_s, p->o.receipts_path ? ", receipts logged" : "");
	loop_latency_hint();
	VEIL_INFO(PROXY_MOD, "listening on http://%s:%u", addr,
		  (unsigned)veil_http_server_port(p->srv));
	event_base_dispatch(p->base);
	VEIL_INFO(PROXY_MOD, "stopped");
	code = 0;
out:
	if (sigint)
		event_free(sigint);
	if (sigterm)
		event_free(sigterm);
	proxy_attest_stop(p);
	proxy_api_abort_all(p, "veil-proxy is shutting down");
	/* after every request is gone: checks still queued are done and
	 * logged, their verdicts dropped */
	proxy_verify_free(p);
	veil_http_server_free(p->srv);
	if (p->base)
		event_base_loop(p->base, EVLOOP_NONBLOCK);
	veil_http_client_free(p->client);
	veil_hconn_pool_free(p->up_pool);
	veil_hconn_free(p->hconn);
	if (p->base)
		proxy_attest_free(p);
	json_decref(p->last_receipt);
	rlog_close(p->rlog);
	veil_policy_free(p->policy);
	free(p->o.gateway);
	if (p->base)
		event_base_free(p->base);
	free(p);
	return code;
}
