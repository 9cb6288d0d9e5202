/* Operations endpoints: /healthz, /readyz, /metrics (Prometheus text). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "rstore.h"

static const double hist_le[NODE_HIST_N] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
};

void node_hist_add(struct node_hist *h, double s)
{
	for (int i = 0; i < NODE_HIST_N; i++)
		if (s <= hist_le[i])
			h->bucket[i]++;
	h->count++;
	h->sum += s;
}

void node_reply_busy(struct node *n, struct veil_http_req *req, uint64_t *busy_total,
		     unsigned retry_s, const char *code, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(*busy_total)++;
	node_metrics_status(n, 503);
	veil_http_set_retry_after(req, retry_s);
	veil_http_reply_error(req, 503, NULL, code, "%s", msg);
}

void node_metrics_status(struct node *n, int status)
{
	if (status >= 100 && status < 600)
		n->m.by_status[status]++;
}

static void h_healthz(struct veil_http_req *req, void *arg)
{
	(void)arg;
	veil_http_reply(req, 200, "text/plain", "ok\n", 3);
}

static void h_readyz(struct veil_http_req *req, void *arg)
{
	struct node *n = arg;

	if (!n->ready || n->stopping) {
		veil_http_reply_error(req, 503, NULL, "not_ready",
				      n->stopping ? "shutting down" : "starting");
		return;
	}
	veil_http_reply(req, 200, "text/plain", "ready\n", 6);
}

static void hist_out(struct veil_buf *b, const char *name, const char *help,
		     const struct node_hist *h)
{
	veil_buf_appendf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (int i = 0; i < NODE_HIST_N; i++)
		veil_buf_appendf(b, "%s_bucket{le=\"%g\"} %llu\n", name, hist_le[i],
				 (unsigned long long)h->bucket[i]);
	veil_buf_appendf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
			 name, (unsigned long long)h->count, name, h->sum, name,
			 (unsigned long long)h->count);
}

static void h_metrics(struct veil_http_req *req, void *arg)
{
	struct node *n = arg;
	struct veil_buf b = VEIL_BUF_INIT(1 << 20);
	struct veil_engine_stats st = {0};
	struct rstore_stats rs;

	if (n->engine)
		veil_engine_get_stats(n->engine, &st);
	veil_buf_append_str(&b, "# HELP veil_node_requests_total HTTP API responses by status.\n"
				"# TYPE veil_node_requests_total counter\n");
	for (int s = 100; s < 600; s++)
		if (n->m.by_status[s])
			veil_buf_appendf(&b, "veil_node_requests_total{status=\"%d\"} %llu\n",
					 s, (unsigned long long)n->m.by_status[s]);
	veil_buf_appendf(&b,
		"# HELP veil_node_prompt_tokens_total Prompt tokens processed.\n"
		"# TYPE veil_node_prompt_tokens_total counter\n"
		"veil_node_prompt_tokens_total %llu\n"
		"# HELP veil_node_completion_tokens_total Tokens generated.\n"
		"# TYPE veil_node_completion_tokens_total counter\n"
		"veil_node_completion_tokens_total %llu\n"
		"# HELP veil_node_cancelled_total Sequences stopped because the client went away.\n"
		"# TYPE veil_node_cancelled_total counter\n"
		"veil_node_cancelled_total %llu\n"
		"# HELP veil_node_receipts_total Receipts signed.\n"
		"# TYPE veil_node_receipts_total counter\n"
		"veil_node_receipts_total %llu\n"
		"# HELP veil_node_active_requests Completions in progress (HTTP side).\n"
		"# TYPE veil_node_active_requests gauge\n"
		"veil_node_active_requests %llu\n"
		"# HELP veil_node_queue_depth Requests waiting for an engine slot.\n"
		"# TYPE veil_node_queue_depth gauge\n"
		"veil_node_queue_depth %d\n"
		"# HELP veil_node_batch_size Sequences in the engine's batch.\n"
		"# TYPE veil_node_batch_size gauge\n"
		"veil_node_batch_size %d\n"
		"# HELP veil_node_engine_steps_total Forward steps run.\n"
		"# TYPE veil_node_engine_steps_total counter\n"
		"veil_node_engine_steps_total %llu\n"
		"# HELP veil_node_connections Open HTTP connections.\n"
		"# TYPE veil_node_connections gauge\n"
		"veil_node_connections %zu\n",
		(unsigned long long)n->m.tokens_in, (unsigned long long)n->m.tokens_out,
		(unsigned long long)n->m.cancelled, (unsigned long long)n->m.receipts,
		(unsigned long long)n->m.jobs_active, st.queued, st.active,
		(unsigned long long)st.steps, veil_http_server_conns(n->srv));
	veil_buf_appendf(&b,
		"# HELP veil_node_attestation_reports_pending Nonce attestation reports "
		"being made (attest.c caps them).\n"
		"# TYPE veil_node_attestation_reports_pending gauge\n"
		"veil_node_attestation_reports_pending %llu\n"
		"# HELP veil_node_attestation_busy_total Nonce attestation reports refused "
		"(503 attestation_busy).\n"
		"# TYPE veil_node_attestation_busy_total counter\n"
		"veil_node_attestation_busy_total %llu\n",
		(unsigned long long)n->m.reports_pending,
		(unsigned long long)n->m.reports_busy);
	veil_buf_appendf(&b,
		"# HELP veil_node_tokenizer_pending Big prompts with the tokenizer threads.\n"
		"# TYPE veil_node_tokenizer_pending gauge\n"
		"veil_node_tokenizer_pending %llu\n"
		"# HELP veil_node_tokenizer_busy_total Big prompts refused (503 "
		"tokenizer_busy).\n"
		"# TYPE veil_node_tokenizer_busy_total counter\n"
		"veil_node_tokenizer_busy_total %llu\n",
		(unsigned long long)n->m.tok_pending, (unsigned long long)n->m.tok_busy);
	rstore_stats(n->receipts, &rs);
	veil_buf_appendf(&b,
		"# HELP veil_node_receipts_stored Receipts held for GET /v1/signature.\n"
		"# TYPE veil_node_receipts_stored gauge\n"
		"veil_node_receipts_stored %zu\n"
		"# HELP veil_node_receipts_dropped_early_total Receipts dropped from the full "
		"store (--receipts-max) before 20 minutes.\n"
		"# TYPE veil_node_receipts_dropped_early_total counter\n"
		"veil_node_receipts_dropped_early_total %llu\n",
		rs.n, (unsigned long long)rs.early);
	veil_pccs_fetcher_metrics(n->coll, "veil_node", &b);
	hist_out(&b, "veil_node_ttft_seconds", "Time to first token.", &n->m.ttft);
	hist_out(&b, "veil_node_token_latency_seconds",
		 "Time between generated tokens.", &n->m.tpot);
	veil_http_reply(req, 200, "text/plain; version=0.0.4", b.data ? (char *)b.data : "",
			b.len);
	veil_buf_free(&b);
}

void node_ops_routes(struct node *n)
{
	veil_http_route(n->srv, "GET", "/healthz", false, h_healthz, n);
	veil_http_route(n->srv, "GET", "/readyz", false, h_readyz, n);
	veil_http_route(n->srv, "GET", "/metrics", false, h_metrics, n);
}
