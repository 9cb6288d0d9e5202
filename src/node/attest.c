/* Attestation of veil-node: RTMR3 measurements at start (binary, flags,
 * model, the model's SHA-256 when known, in that order; both model digests
 * are of the bytes loaded, computed by main.c in the same read) and
 * GET /v1/attestation/report. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "veil/attester.h"
#include "veil/eventlog.h"

#include "node.h"

static int sha384_file(const char *path, uint8_t out[48])
{
	FILE *f = fopen(path, "rb");
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	static uint8_t buf[1 << 16];
	unsigned len = 48;
	size_t r;
	int rc = VEIL_EIO;

	if (!f || !md || !EVP_DigestInit_ex(md, EVP_sha384(), NULL))
		goto out;
	while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(md, buf, r);
	if (!ferror(f) && EVP_DigestFinal_ex(md, out, &len))
		rc = 0;
out:
	if (f)
		fclose(f);
	EVP_MD_CTX_free(md);
	return rc;
}

static void sha384(const void *p, size_t n, uint8_t out[48])
{
	unsigned len = 48;

	EVP_Digest(p, n, out, &len, EVP_sha384(), NULL);
}

static int report(struct node *n, const uint8_t nonce[32], json_t **out)
{
	struct veil_report_extra x = {n->o.model_name,
				      n->have_model_hash ? n->model_sha256_hex : NULL};

	return veil_attester_report(n->attester, n->keyset_enc, n->keyset_len, nonce, &x,
				    out);
}

int node_attest_init(struct node *n)
{
	struct veil_attester_opts ao = {0};
	struct veil_attester *a = NULL;
	uint8_t d[3][48];
	struct veil_buf log = VEIL_BUF_INIT(1 << 20);
	uint8_t nonce[32];
	int rc;

	ao.tee = n->o.tee;
	ao.allow_sim_fallback = !strcmp(n->o.tee, "auto");
	if ((rc = veil_attester_open(&ao, &a)) < 0) {
		VEIL_ERROR(NODE_MOD, "attestation: %s (%s)", veil_strerror(rc),
			   veil_err_detail());
		return rc;
	}
	n->attester = a;
	if (!strcmp(veil_attester_kind(a), "sim"))
		VEIL_WARN(NODE_MOD, "attestation: SIMULATED TEE - reports prove nothing "
			  "about hardware; verifiers refuse them unless told --allow-sim");
	if ((rc = sha384_file("/proc/self/exe", d[0])) < 0) {
		VEIL_ERROR(NODE_MOD, "cannot read /proc/self/exe to measure it");
		return rc;
	}
	sha384(n->o.config_json, strlen(n->o.config_json), d[1]);
	if (n->o.model) {
		/* from the one read that loaded the weights (main.c): reading
		 * the file again here could measure other bytes than served */
		if (!n->have_model_hash) {
			VEIL_ERROR(NODE_MOD, "attestation: the model was not measured");
			return VEIL_EINTERNAL;
		}
		memcpy(d[2], n->model_sha384, 48);
	} else {
		sha384(n->o.upstream, strlen(n->o.upstream), d[2]);
	}
	if ((rc = veil_attester_extend(a, VEIL_EVLOG_NODE_BINARY, d[0], 48)) < 0 ||
	    (rc = veil_attester_extend(a, VEIL_EVLOG_NODE_CONFIG, d[1], 48)) < 0 ||
	    (rc = veil_attester_extend(a, VEIL_EVLOG_MODEL, d[2], 48)) < 0 ||
	    /* binds the report's model.sha256 (what receipts and policies
	     * name) to the quote; verifiers refuse an unmeasured one */
	    (n->have_model_hash &&
	     (rc = veil_attester_extend(a, VEIL_EVLOG_MODEL_SHA256, n->model_sha256,
					VEIL_EVLOG_MODEL_SHA256_LEN)) < 0)) {
		VEIL_ERROR(NODE_MOD, "attestation: extending RTMR3 failed: %s (%s)",
			   veil_strerror(rc), veil_err_detail());
		return rc;
	}
	if (veil_evlog_encode_json(veil_attester_log(a), &log) == 0)
		VEIL_INFO(NODE_MOD, "attestation: %s, event log %s", veil_attester_kind(a),
			  (const char *)log.data);
	veil_buf_free(&log);
	veil_random(nonce, sizeof(nonce));
	if ((rc = report(n, nonce, &n->cached_report)) < 0) {
		VEIL_ERROR(NODE_MOD, "attestation: report failed: %s (%s)", veil_strerror(rc),
			   veil_err_detail());
		return rc;
	}
	return 0;
}

static void h_report(struct veil_http_req *req, void *arg)
{
	struct node *n = arg;
	const char *hex = veil_http_req_query(req, "nonce");
	uint8_t nonce[32];
	size_t got;
	json_t *r = NULL;
	int rc;

	if (!hex) {
		node_metrics_status(n, 200);
		veil_http_reply_json(req, 200, json_incref(n->cached_report));
		return;
	}
	if (strlen(hex) != 64 ||
	    veil_hex_decode(hex, 64, nonce, sizeof(nonce), &got) < 0) {
		node_metrics_status(n, 400);
		veil_http_reply_error(req, 400, NULL, "invalid_nonce",
				      "nonce must be 64 hex characters (32 bytes)");
		return;
	}
	if ((rc = report(n, nonce, &r)) < 0) {
		node_metrics_status(n, 500);
		veil_http_reply_error(req, 500, NULL, "attestation_failed",
				      "the report could not be made: %s", veil_strerror(rc));
		return;
	}
	node_metrics_status(n, 200);
	veil_http_reply_json(req, 200, r);
}

void node_attest_routes(struct node *n)
{
	veil_http_route(n->srv, "GET", "/v1/attestation/report", false, h_report, n);
}

void node_attest_free(struct node *n)
{
	json_decref(n->cached_report);
	n->cached_report = NULL;
	veil_attester_free(n->attester);
	n->attester = NULL;
}
