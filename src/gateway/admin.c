/* The admin API of veil-gateway: /admin/..., bearer admin token
 * (--admin-token-file).  Without that flag the whole /admin tree answers
 * 404, as if it did not exist.  Nodes, keys and usage; see docs/gateway.md.
 *
 *   POST   /admin/nodes                  {"url","model","id"?}  -> 201
 *   GET    /admin/nodes                  every node and its state
 *   GET    /admin/nodes/{id}             one node, with its last verdict
 *   POST   /admin/nodes/{id}/drain       no new requests; in-flight finish
 *   POST   /admin/nodes/{id}/verify      re-attest now
 *   DELETE /admin/nodes/{id}
 *   GET    /admin/nodes/{id}/attestations[?limit=N]   audit log, newest first
 *   GET    /admin/usage?by=key|model[&from=S&to=S]
 *   POST   /admin/keys                   {"name","limits"?} -> 201, key shown once
 *   GET    /admin/keys
 *   POST   /admin/keys/{id}/revoke
 *   POST   /admin/keys/{id}/limits       {"requests_per_min"?,...} */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "gateway.h"

static bool admin_ok(struct gw *g, struct veil_http_req *req)
{
	const char *h = veil_http_req_header(req, "Authorization");
	uint8_t d[32];

	if (!h || strncasecmp(h, "Bearer ", 7))
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	/* compare hashes: constant time whatever the lengths */
	veil_digest_sha256(h, strlen(h), d);
	return CRYPTO_memcmp(d, g->admin_token_sha, 32) == 0;
}

/* ---- store queries ------------------------------------------------------------ */

enum aq_op { AQ_AUDIT, AQ_USAGE, AQ_KEY_CREATE, AQ_KEY_LIST, AQ_KEY_REVOKE, AQ_KEY_LIMITS };

struct admin_q {
	struct gw_job job;
	struct gw *g;
	struct veil_http_req *req;
	enum aq_op op;
	char id[GW_NODE_ID_MAX + 1];
	size_t limit;
	enum veil_store_group by;
	int64_t from, to, key_id;
	char name[VEIL_STORE_NAME_MAX + 1];
	struct veil_store_limits lim;
	bool has_lim;
	char key[VEIL_STORE_KEY_TEXT_MAX];   /* wiped */
	struct veil_store_key_info info;
	struct veil_store_audit *audit;
	struct veil_store_group_row *rows;
	struct veil_store_key_info *keys;
	size_t n;
};

static void aq_run(struct gw_job *j, struct veil_store *s)
{
	struct admin_q *q = (struct admin_q *)j;
	int rc = 0;

	switch (q->op) {
	case AQ_AUDIT:
		rc = veil_store_audit_list(s, q->id, q->limit, &q->audit, &q->n);
		break;
	case AQ_USAGE:
		rc = veil_store_usage_grouped(s, q->by, q->from, q->to, &q->rows, &q->n);
		break;
	case AQ_KEY_CREATE:
		rc = veil_store_key_create(s, q->name, q->key, sizeof(q->key), &q->key_id);
		if (rc == 0 && q->has_lim)
			rc = veil_store_key_set_limits(s, q->key_id, &q->lim);
		if (rc == 0)
			rc = veil_store_key_get(s, q->key_id, &q->info);
		break;
	case AQ_KEY_LIST:
		rc = veil_store_key_list(s, &q->keys, &q->n);
		break;
	case AQ_KEY_REVOKE:
		rc = veil_store_key_revoke(s, q->key_id, (int64_t)veil_wall_ms());
		if (rc == 0)
			rc = veil_store_key_get(s, q->key_id, &q->info);
		break;
	case AQ_KEY_LIMITS: {
		/* Only the fields the body names change (-1: not given), as with
		 * `veil-gateway keys limits`: {"requests_per_min": 10} must not
		 * lift a quota the key has.  Read-modify-write in two calls: a
		 * concurrent change of the same key's other fields may be lost
		 * (last writer wins), as with the CLI. */
		struct veil_store_limits l;

		if ((rc = veil_store_key_get(s, q->key_id, &q->info)) < 0)
			break;
		l = q->info.limits;
		if (q->lim.requests_per_min >= 0)
			l.requests_per_min = q->lim.requests_per_min;
		if (q->lim.tokens_per_min >= 0)
			l.tokens_per_min = q->lim.tokens_per_min;
		if (q->lim.quota_tokens >= 0)
			l.quota_tokens = q->lim.quota_tokens;
		rc = veil_store_key_set_limits(s, q->key_id, &l);
		if (rc == 0)
			rc = veil_store_key_get(s, q->key_id, &q->info);
		break;
	}
	}
	j->rc = rc;
}

static json_t *key_json(const struct veil_store_key_info *k)
{
	return json_pack("{s:I, s:s, s:s, s:I, s:o, s:{s:I, s:I, s:I}}", "id",
			 (json_int_t)k->id, "name", k->name, "prefix", k->prefix, "created",
			 (json_int_t)(k->created_ms / 1000), "revoked",
			 k->revoked_ms ? json_integer(k->revoked_ms / 1000) : json_null(),
			 "limits", "requests_per_min", (json_int_t)k->limits.requests_per_min,
			 "tokens_per_min", (json_int_t)k->limits.tokens_per_min,
			 "quota_tokens", (json_int_t)k->limits.quota_tokens);
}

static void aq_done(struct gw_job *j)
{
	struct admin_q *q = (struct admin_q *)j;
	struct gw *g = q->g;
	json_t *data, *o;

	if (j->rc == VEIL_ENOENT) {
		gw_reply_error(g, q->req, 404, NULL, "not_found", "no such key");
		goto out;
	}
	if (j->rc == VEIL_EINVAL) {
		gw_reply_error(g, q->req, 400, NULL, "invalid_request", "%s",
			       "the store refused the request (bad name or limits)");
		goto out;
	}
	if (j->rc < 0) {
		gw_reply_error(g, q->req, 503, NULL, "store_unavailable",
			       "the store failed: %s", veil_strerror(j->rc));
		goto out;
	}
	data = json_array();
	switch (q->op) {
	case AQ_AUDIT:
		for (size_t i = 0; i < q->n; i++) {
			json_t *v = q->audit[i].verdict ? json_loads(q->audit[i].verdict, 0, NULL)
							: NULL;

			json_array_append_new(
				data, json_pack("{s:I, s:s, s:I, s:b, s:o}", "id",
						(json_int_t)q->audit[i].id, "node_id",
						q->audit[i].node_id, "time",
						(json_int_t)(q->audit[i].time_ms / 1000), "ok",
						q->audit[i].ok, "verdict", v ? v : json_null()));
		}
		o = json_pack("{s:s, s:s, s:o}", "object", "list", "node_id", q->id, "data", data);
		break;
	case AQ_USAGE:
		for (size_t i = 0; i < q->n; i++) {
			const struct veil_store_group_row *r = &q->rows[i];
			json_t *row = json_pack("{s:I, s:I, s:I, s:I}", "requests",
						(json_int_t)r->t.requests, "prompt_tokens",
						(json_int_t)r->t.prompt_tokens, "completion_tokens",
						(json_int_t)r->t.completion_tokens, "total_tokens",
						(json_int_t)(r->t.prompt_tokens +
							     r->t.completion_tokens));

			if (q->by == VEIL_STORE_BY_KEY) {
				json_object_set_new(row, "key_id", json_integer(r->key_id));
				json_object_set_new(row, "name", json_string(r->label));
			} else {
				json_object_set_new(row, "model", json_string(r->label));
			}
			json_array_append_new(data, row);
		}
		o = json_pack("{s:s, s:s, s:o, s:o, s:o}", "object", "list", "by",
			      q->by == VEIL_STORE_BY_KEY ? "key" : "model", "from",
			      q->from ? json_integer(q->from / 1000) : json_null(), "to",
			      q->to ? json_integer(q->to / 1000) : json_null(), "data", data);
		break;
	case AQ_KEY_CREATE:
		json_decref(data);
		o = key_json(&q->info);
		/* the only time the key text leaves the gateway */
		json_object_set_new(o, "key", json_string(q->key));
		veil_wipe(q->key, sizeof(q->key));
		VEIL_INFO(GW_MOD, "admin: key %lld (%s) created", (long long)q->info.id,
			  q->info.prefix);
		gw_status(g, 201);
		veil_http_add_header(q->req, "Cache-Control", "no-store");
		veil_http_reply_json(q->req, 201, o);
		goto out;
	case AQ_KEY_LIST:
		for (size_t i = 0; i < q->n; i++)
			json_array_append_new(data, key_json(&q->keys[i]));
		o = json_pack("{s:s, s:o}", "object", "list", "data", data);
		break;
	default:
		json_decref(data);
		if (q->op == AQ_KEY_REVOKE) {
			gw_keys_forget(g, q->key_id);
			VEIL_INFO(GW_MOD, "admin: key %lld revoked", (long long)q->key_id);
		} else {
			gw_keys_forget(g, q->key_id); /* new limits apply now */
		}
		o = key_json(&q->info);
		break;
	}
	gw_status(g, 200);
	veil_http_reply_json(q->req, 200, o);
out:
	veil_store_audit_free(q->audit, q->n * (q->op == AQ_AUDIT));
	free(q->rows);
	free(q->keys);
	veil_wipe(q, sizeof(*q));
	free(q);
}

static struct admin_q *aq_new(struct gw *g, struct veil_http_req *req, enum aq_op op)
{
	struct admin_q *q = calloc(1, sizeof(*q));

	if (!q) {
		gw_reply_error(g, req, 503, NULL, "overloaded", "out of memory");
		return NULL;
	}
	q->job.run = aq_run;
	q->job.done = aq_done;
	q->g = g;
	q->req = req;
	q->op = op;
	return q;
}

/* Reports (usage over every key, the audit log) scan: they go to the report
 * worker with /v1/usage, never ahead of key lookups.  Key changes stay on
 * the query worker, in order with the lookups (a revoked key is never
 * cached again after its revocation). */
static void aq_submit(struct admin_q *q)
{
	bool report = q->op == AQ_USAGE || q->op == AQ_AUDIT;

	if ((report ? gw_report_query(q->g, &q->job, q->req)
		    : gw_query(q->g, &q->job, q->req)) < 0)
		free(q);
}

/* ---- handlers ------------------------------------------------------------------- */

static bool parse_id64(const char *s, size_t len, int64_t *out)
{
	int64_t v = 0;

	if (!len || len > 18)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return v > 0;
}

static void nodes_list(struct gw *g, struct veil_http_req *req)
{
	json_t *a = json_array();

	for (struct gw_node *n = g->nodes; n; n = n->next)
		json_array_append_new(a, gw_node_json(n, false));
	gw_status(g, 200);
	veil_http_reply_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", a));
}

static void node_add(struct gw *g, struct veil_http_req *req)
{
	size_t len;
	const uint8_t *body = veil_http_req_body(req, &len);
	struct gw_node_spec s;
	struct gw_node *n;
	int rc;

	if ((rc = gw_parse_node_body(body, len, &s)) < 0) {
		gw_reply_error(g, req, 400, NULL, "invalid_node", "%s", veil_err_detail());
		return;
	}
	if (!s.id[0])
		gw_node_default_id(s.url, s.id);
	if ((rc = gw_node_add(g, &s, true, &n)) < 0) {
		gw_reply_error(g, req, rc == VEIL_ERANGE ? 409 : 500, NULL, "node_not_added",
			       "%s", veil_err_detail());
		return;
	}
	VEIL_INFO(GW_MOD, "admin: node %s registered (%s, model %s)", n->id, n->url, n->model);
	gw_status(g, 201);
	veil_http_reply_json(req, 201, gw_node_json(n, true));
}

static void h_admin(struct veil_http_req *req, void *arg)
{
	struct gw *g = arg;
	const char *method = veil_http_req_method(req);
	const char *path = veil_http_req_path(req);
	const char *rest;
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	bool del = !strcmp(method, "DELETE");

	if (!g->admin_enabled) {
		gw_reply_error(g, req, 404, NULL, "not_found", "not found");
		return;
	}
	if (!admin_ok(g, req)) {
		gw_reply_error(g, req, 401, NULL, "invalid_admin_token",
			       "the admin API needs Authorization: Bearer <admin token>");
		return;
	}
	if (!strcmp(path, "/admin/nodes")) {
		if (get)
			nodes_list(g, req);
		else if (post)
			node_add(g, req);
		else
			goto bad_method;
		return;
	}
	if (!strncmp(path, "/admin/nodes/", 13)) {
		char id[GW_NODE_ID_MAX + 1];
		const char *slash;
		size_t il;
		struct gw_node *n;

		rest = path + 13;
		slash = strchr(rest, '/');
		il = slash ? (size_t)(slash - rest) : strlen(rest);
		if (!il || il > GW_NODE_ID_MAX)
			goto not_found;
		memcpy(id, rest, il);
		id[il] = '\0';
		if (!gw_node_id_valid(id))
			goto not_found;
		n = gw_node_find(g, id);
		if (slash && !strcmp(slash, "/attestations")) {
			const char *ls = veil_http_req_query(req, "limit");
			struct admin_q *q;
			int64_t lim = 100;

			if (!get)
				goto bad_method;
			if (ls && (!parse_id64(ls, strlen(ls), &lim) || lim > 10000)) {
				gw_reply_error(g, req, 400, NULL, "invalid_limit", "limit: 1..10000");
				return;
			}
			if (!(q = aq_new(g, req, AQ_AUDIT)))
				return;
			snprintf(q->id, sizeof(q->id), "%s", id);
			q->limit = (size_t)lim;
			aq_submit(q);
			return;
		}
		if (!n)
			goto not_found;
		if (!slash) {
			if (get) {
				gw_status(g, 200);
				veil_http_reply_json(req, 200, gw_node_json(n, true));
			} else if (del) {
				gw_node_remove(g, n, true);
				gw_status(g, 200);
				veil_http_reply_json(req, 200, json_pack("{s:s, s:b}", "id", id,
									 "removed", 1));
			} else {
				goto bad_method;
			}
			return;
		}
		if (!strcmp(slash, "/drain") && post) {
			gw_node_drain(g, n, true);
			gw_status(g, 200);
			veil_http_reply_json(req, 200, gw_node_json(n, false));
			return;
		}
		if (!strcmp(slash, "/verify") && post) {
			n->verify_fails = 0; /* the operator asks: no backoff */
			gw_node_verify(g, n);
			gw_status(g, 202);
			veil_http_reply_json(req, 202, gw_node_json(n, false));
			return;
		}
		goto not_found;
	}
	if (!strcmp(path, "/admin/usage")) {
		const char *by = veil_http_req_query(req, "by");
		const char *f = veil_http_req_query(req, "from");
		const char *t = veil_http_req_query(req, "to");
		struct admin_q *q;
		int64_t from = 0, to = 0;

		if (!get)
			goto bad_method;
		if (by && strcmp(by, "key") && strcmp(by, "model")) {
			gw_reply_error(g, req, 400, NULL, "invalid_by", "by=key or by=model");
			return;
		}
		if ((f && gw_parse_time(f, &from) < 0) || (t && gw_parse_time(t, &to) < 0)) {
			gw_reply_error(g, req, 400, NULL, "invalid_time",
				       "from and to are unix seconds");
			return;
		}
		if (!(q = aq_new(g, req, AQ_USAGE)))
			return;
		q->by = by && !strcmp(by, "model") ? VEIL_STORE_BY_MODEL : VEIL_STORE_BY_KEY;
		q->from = from;
		q->to = to;
		aq_submit(q);
		return;
	}
	if (!strcmp(path, "/admin/keys")) {
		struct admin_q *q;

		if (get) {
			if ((q = aq_new(g, req, AQ_KEY_LIST)))
				aq_submit(q);
		} else if (post) {
			size_t len;
			const uint8_t *body = veil_http_req_body(req, &len);

			if (!(q = aq_new(g, req, AQ_KEY_CREATE)))
				return;
			if (gw_parse_key_body(body, len, q->name, sizeof(q->name), &q->lim,
					      &q->has_lim) < 0) {
				gw_reply_error(g, req, 400, NULL, "invalid_key_request", "%s",
					       veil_err_detail());
				free(q);
				return;
			}
			aq_submit(q);
		} else {
			goto bad_method;
		}
		return;
	}
	if (!strncmp(path, "/admin/keys/", 12)) {
		const char *slash;
		int64_t kid;
		struct admin_q *q;

		rest = path + 12;
		slash = strchr(rest, '/');
		if (!slash || !parse_id64(rest, (size_t)(slash - rest), &kid))
			goto not_found;
		if (!post)
			goto bad_method;
		if (!strcmp(slash, "/revoke")) {
			if ((q = aq_new(g, req, AQ_KEY_REVOKE))) {
				q->key_id = kid;
				aq_submit(q);
			}
			return;
		}
		if (!strcmp(slash, "/limits")) {
			size_t len;
			const uint8_t *body = veil_http_req_body(req, &len);

			if (!(q = aq_new(g, req, AQ_KEY_LIMITS)))
				return;
			q->key_id = kid;
			if (gw_parse_key_body(body, len, NULL, 0, &q->lim, &q->has_lim) < 0) {
				gw_reply_error(g, req, 400, NULL, "invalid_limits", "%s",
					       veil_err_detail());
				free(q);
				return;
			}
			aq_submit(q);
			return;
		}
		goto not_found;
	}
not_found:
	gw_reply_error(g, req, 404, NULL, "not_found", "no such admin resource");
	return;
bad_method:
	gw_reply_error(g, req, 405, NULL, "method_not_allowed", "method not allowed here");
}

void gw_admin_routes(struct gw *g)
{
	veil_http_route(g->srv, NULL, "/admin/", true, h_admin, g);
}
