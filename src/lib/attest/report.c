/* veil report: building and verifying veil-report/1 (include/veil/report.h,
 * docs/protocol.md "Attestation report (veil-report/1)"). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "report_impl.h"
#include "veil/base.h"
#include "veil/eventlog.h"
#include "veil/keyset.h"
#include "veil/nvgpu.h"
#include "veil/report.h"
#include "veil/snp.h"
#include "veil/tdx.h"
#include "veil/x509.h"

#define MAX_GPUS 64

static const char SIM_WARNING[] =
	"SIMULATED TEE: this evidence was produced by veil's simulator and signed by a "
	"locally generated root; it proves nothing about real hardware";

/* ---- shared helpers ------------------------------------------------------------- */

int rpt_fail(struct veil_report_verdict *v, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->error, sizeof(v->error), fmt, ap);
	va_end(ap);
	return veil_errf(rc, "%s", v->error);
}

int rpt_hex_exact(json_t *o, const char *key, uint8_t *out, size_t want)
{
	json_t *s = json_object_get(o, key);
	size_t got;

	if (!json_is_string(s) || json_string_length(s) != 2 * want ||
	    veil_hex_decode(json_string_value(s), 2 * want, out, want, &got) < 0 || got != want)
		return veil_errf(VEIL_EFORMAT, "\"%s\" is not %zu bytes of hex", key, want);
	return 0;
}

int rpt_hex_alloc(json_t *o, const char *key, size_t max, uint8_t **out, size_t *len)
{
	json_t *s = json_object_get(o, key);
	const char *p;
	size_t n, got;
	uint8_t *b;

	if (!json_is_string(s))
		return veil_errf(VEIL_EFORMAT, "\"%s\" missing or not a string", key);
	p = json_string_value(s);
	n = json_string_length(s);
	if (n >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		p += 2;
		n -= 2;
	}
	if (n == 0 || n % 2 || n / 2 > max)
		return veil_errf(VEIL_EFORMAT, "\"%s\": %zu hex chars (even, 2..%zu expected)", key, n,
				 2 * max);
	b = malloc(n / 2);
	if (!b)
		return VEIL_ENOMEM;
	if (veil_hex_decode(p, n, b, n / 2, &got) < 0) {
		free(b);
		return veil_errf(VEIL_EFORMAT, "\"%s\" is not hex", key);
	}
	*out = b;
	*len = got;
	return 0;
}

int rpt_set_hex(json_t *o, const char *key, const uint8_t *p, size_t n)
{
	char *h = malloc(2 * n + 1);
	int rc;

	if (!h)
		return VEIL_ENOMEM;
	veil_hex_encode(p, n, h, 2 * n + 1);
	rc = json_object_set_new(o, key, json_string(h)) == 0 ? 0 : VEIL_ENOMEM;
	free(h);
	return rc;
}

int rpt_pem_last_der(const char *pem, size_t len, uint8_t **der, size_t *der_len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *last = NULL, *x;
	unsigned char *d = NULL;
	int n, rc = VEIL_EFORMAT;

	if (!b || len > (1u << 20)) {
		BIO_free(b);
		return VEIL_EINVAL;
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		X509_free(last);
		last = x;
	}
	BIO_free(b);
	ERR_clear_error();
	if (!last)
		return veil_errf(VEIL_EFORMAT, "certificate chain: no PEM certificate");
	n = i2d_X509(last, &d);
	if (n > 0 && (*der = malloc((size_t)n))) {
		memcpy(*der, d, (size_t)n);
		*der_len = (size_t)n;
		rc = 0;
	} else {
		rc = VEIL_ENOMEM;
	}
	OPENSSL_free(d);
	X509_free(last);
	return rc;
}

int rpt_quote_sigs_only(const uint8_t *quote, size_t n, int64_t now, struct veil_tdx_quote *q)
{
	STACK_OF(X509) *pck = NULL;
	EVP_PKEY *ak = NULL;
	X509 *root = NULL;
	const uint8_t *rd;
	size_t rl;
	uint8_t cat[64 + 65536], h[32];
	int rc;

	if ((rc = veil_tdx_quote_parse(quote, n, q)) < 0)
		return rc;
	if (q->pck_cert_type != 5)
		return veil_errf(VEIL_ENOTSUP, "quote: PCK certification data type %u (only 5)",
				 q->pck_cert_type);
	memcpy(cat, q->attest_key, 64);
	memcpy(cat + 64, q->qe_auth, q->qe_auth_len);
	SHA256(cat, 64 + (size_t)q->qe_auth_len, h);
	if (memcmp(h, q->qe.report_data, 32) != 0)
		return veil_errf(VEIL_EBADMSG, "QE report hash mismatch");
	for (int i = 32; i < 64; i++)
		if (q->qe.report_data[i])
			return veil_errf(VEIL_EBADMSG, "QE report hash mismatch");
	if ((rc = veil_x509_p256_pubkey(q->attest_key, &ak)) < 0)
		goto out;
	if (veil_x509_ecdsa_verify_rs(ak, EVP_sha256(), q->signed_data, q->signed_len, q->signature,
				      64) != 0) {
		rc = veil_errf(VEIL_EBADMSG, "ISV enclave report signature is invalid");
		goto out;
	}
	if ((rc = veil_x509_pem_chain_parse_canonical(q->pck_data, q->pck_data_len, &pck)) < 0)
		goto out;
	if (veil_x509_ecdsa_verify_rs(X509_get0_pubkey(sk_X509_value(pck, 0)), EVP_sha256(),
				      q->qe_report, VEIL_TDX_SGX_REPORT_LEN, q->qe_report_sig, 64) != 0) {
		rc = veil_errf(VEIL_EBADMSG, "Signature is invalid for qe_report in quote");
		goto out;
	}
	rd = veil_tdx_intel_root_der(&rl);
	if ((rc = veil_x509_der_parse(rd, rl, &root)) < 0)
		goto out;
	rc = veil_x509_chain_verify(pck, root, NULL, 0, now, VEIL_X509_LEAF_NOT_CA);
out:
	X509_free(root);
	sk_X509_pop_free(pck, X509_free);
	EVP_PKEY_free(ak);
	ERR_clear_error();
	return rc;
}

json_t *rpt_keys_json(const struct veil_keyset *ks, const uint8_t *enc, size_t n)
{
	json_t *k = json_object();
	bool bad = !k;

	if (!bad)
		bad = rpt_set_hex(k, "encoding", enc, n) < 0;
	if (!bad && (ks->present & VEIL_KEYSET_HAS(VEIL_KEY_ED25519)))
		bad = rpt_set_hex(k, "ed25519", ks->ed25519, 32) < 0;
	if (!bad && (ks->present & VEIL_KEYSET_HAS(VEIL_KEY_SECP256K1)))
		bad = rpt_set_hex(k, "secp256k1", ks->secp256k1, 65) < 0;
	if (!bad && (ks->present & VEIL_KEYSET_HAS(VEIL_KEY_ETH_ADDRESS))) {
		char a[43] = "0x";

		veil_hex_encode(ks->eth_address, 20, a + 2, sizeof(a) - 2);
		bad = json_object_set_new(k, "eth_address", json_string(a)) < 0;
	}
	if (!bad && (ks->present & VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE)))
		bad = rpt_set_hex(k, "x25519_hpke", ks->x25519_hpke, 32) < 0;
	if (!bad && (ks->present & VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256)))
		bad = rpt_set_hex(k, "tls_spki_sha256", ks->tls_spki_sha256, 32) < 0;
	if (bad) {
		json_decref(k);
		return NULL;
	}
	return k;
}

void rpt_copy_td_fields(json_t *j, json_t *tv)
{
	static const char *const keys[] = {"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3",
					   "mr_config_id", "mr_owner", "mr_owner_config",
					   "mr_seam", "td_attributes", "xfam", "tee_tcb_svn",
					   "fmspc"};

	for (size_t i = 0; i < VEIL_ARRAY_LEN(keys); i++) {
		json_t *x = json_object_get(tv, keys[i]);

		if (x)
			json_object_set(j, keys[i], x);
	}
}

int rpt_finish(struct veil_report_verdict *v, int rc)
{
	json_t *j = v->json;

	if (rc < 0 && !v->error[0])
		snprintf(v->error, sizeof(v->error), "%s",
			 veil_err_detail()[0] ? veil_err_detail() : veil_strerror(rc));
	v->ok = rc == 0;
	if (rc == 0)
		v->error[0] = 0;
	if (j) {
		if (!json_object_get(j, "advisories"))
			json_object_set_new(j, "advisories", json_array());
		json_object_set_new(j, "ok", json_boolean(v->ok));
		json_object_set_new(j, "tee", v->tee[0] ? json_string(v->tee) : json_null());
		json_object_set_new(j, "sim", json_boolean(v->sim));
		json_object_set_new(j, "status", v->status[0] ? json_string(v->status)
							      : json_string("unknown"));
		json_object_set_new(j, "error", v->ok ? json_null() : json_string(v->error));
	}
	return rc;
}

void veil_report_verdict_free(struct veil_report_verdict *v)
{
	if (!v)
		return;
	json_decref(v->json);
	v->json = NULL;
}

/* ---- building ------------------------------------------------------------------------ */

/* The veil measurements, both roles; a log holds one role's events. */
static const struct {
	const char *key, *event;
	bool gateway;
	size_t len;         /* payload bytes: SHA-384, or the model's SHA-256 */
} MEAS[] = {
	{"node_binary", VEIL_EVLOG_NODE_BINARY, false, 48},
	{"node_config", VEIL_EVLOG_NODE_CONFIG, false, 48},
	{"model", VEIL_EVLOG_MODEL, false, 48},
	{"model_sha256", VEIL_EVLOG_MODEL_SHA256, false, VEIL_EVLOG_MODEL_SHA256_LEN},
	{"gateway_binary", VEIL_EVLOG_GATEWAY_BINARY, true, 48},
	{"gateway_config", VEIL_EVLOG_GATEWAY_CONFIG, true, 48},
};
#define N_MEAS VEIL_ARRAY_LEN(MEAS)
#define MEAS_MODEL_SHA256 3 /* index of "model_sha256" in MEAS */

struct role_meas {
	bool gateway;                       /* false: a node (or no veil event) */
	struct veil_evlog_value v[N_MEAS];  /* indexed like MEAS */
};

/* Reads the veil runtime events of a log (each at most once, 48 bytes) and
 * decides the role.  A log with both node and gateway events is refused: a
 * verifier must not guess which program it talks to. */
static int log_measurements(const struct veil_evlog *log, struct role_meas *m)
{
	struct veil_evlog_claims cl;
	bool node = false, gw = false;
	int rc;

	memset(m, 0, sizeof(*m));
	if ((rc = veil_evlog_claims(log, &cl)) < 0)
		return rc;
	m->v[0] = cl.node_binary;
	m->v[1] = cl.node_config;
	m->v[2] = cl.model;
	for (size_t i = 3; i < N_MEAS; i++) {
		const struct veil_evlog_event *e;

		rc = veil_evlog_find_runtime(log, MEAS[i].event, &e);
		if (rc == VEIL_ENOENT)
			continue;
		if (rc < 0)
			return rc;
		if (e->payload_len != MEAS[i].len)
			return veil_errf(VEIL_EFORMAT, "runtime event %s: payload is %zu bytes, "
					 "not %zu", MEAS[i].event, e->payload_len, MEAS[i].len);
		m->v[i] = (struct veil_evlog_value){true, e->payload, e->payload_len};
	}
	for (size_t i = 0; i < N_MEAS; i++) {
		if (!m->v[i].present)
			continue;
		if (MEAS[i].gateway)
			gw = true;
		else
			node = true;
	}
	if (node && gw)
		return veil_errf(VEIL_EFORMAT, "the event log holds both node (veil-node-*, "
				 "veil-model) and gateway (veil-gateway-*) events; a report "
				 "has one role");
	m->gateway = gw;
	return 0;
}

int veil_report_build(const struct veil_report_parts *p, json_t **out)
{
	json_t *r = NULL, *gpus, *m, *keys, *log, *col = NULL;
	struct veil_keyset ks;
	struct role_meas rm;
	uint8_t gn[32];
	int rc = VEIL_ENOMEM;

	if (!p || !out || !p->tee || !p->quote || !p->keyset || !p->nonce || !p->report_data ||
	    !p->log || (p->n_gpus && !p->gpus))
		return VEIL_EINVAL;
	if ((rc = veil_keyset_parse(p->keyset, p->keyset_len, &ks)) < 0 ||
	    (rc = log_measurements(p->log, &rm)) < 0)
		return rc;
	if (p->collateral) {
		json_error_t e;

		col = json_loads(p->collateral, JSON_REJECT_DUPLICATES, &e);
		if (!col)
			return veil_errf(VEIL_EINVAL, "report: collateral is not JSON: %s", e.text);
	}
	rc = VEIL_ENOMEM;
	r = json_object();
	gpus = json_array();
	m = json_object();
	keys = rpt_keys_json(&ks, p->keyset, p->keyset_len);
	log = veil_evlog_to_json(p->log);
	if (!r || json_object_set_new(r, "version", json_string(VEIL_REPORT_VERSION)) < 0 ||
	    json_object_set_new(r, "tee", json_string(p->tee)) < 0 ||
	    json_object_set_new(r, "sim", json_boolean(p->sim)) < 0 ||
	    json_object_set_new(r, "gpu_evidence", gpus) < 0 ||
	    json_object_set_new(r, "keys", keys) < 0 ||
	    json_object_set_new(r, "event_log", log) < 0 ||
	    json_object_set_new(r, "measurements", m) < 0 || !gpus || !m || !keys || !log)
		goto out;
	if (rpt_set_hex(r, "quote", p->quote, p->quote_len) < 0 ||
	    rpt_set_hex(r, "report_data", p->report_data, 64) < 0 ||
	    rpt_set_hex(r, "nonce", p->nonce, 32) < 0)
		goto out;
	SHA256(p->report_data, 64, gn);
	if (rpt_set_hex(r, "gpu_nonce", gn, 32) < 0)
		goto out;
	if (p->vcek && rpt_set_hex(r, "vcek", p->vcek, p->vcek_len) < 0)
		goto out;
	for (size_t i = 0; i < p->n_gpus; i++) {
		json_t *g = json_object();

		if (!g || json_array_append_new(gpus, g) < 0 ||
		    json_object_set_new(g, "arch", json_string(p->gpus[i].arch ? p->gpus[i].arch
										: "unknown")) < 0 ||
		    rpt_set_hex(g, "evidence", p->gpus[i].evidence, p->gpus[i].evidence_len) < 0 ||
		    json_object_set_new(g, "certificate_chain", json_string(p->gpus[i].pem)) < 0)
			goto out;
	}
	for (size_t i = 0; i < N_MEAS; i++)
		if (rm.v[i].present && rpt_set_hex(m, MEAS[i].key, rm.v[i].p, rm.v[i].len) < 0)
			goto out;
	if (p->model || p->model_sha256) {
		json_t *mo = json_object();

		if (!mo || json_object_set_new(r, "model", mo) < 0 ||
		    (p->model && json_object_set_new(mo, "name", json_string(p->model)) < 0) ||
		    (p->model_sha256 &&
		     json_object_set_new(mo, "sha256", json_string(p->model_sha256)) < 0))
			goto out;
	}
	if (col) {
		if (json_object_set_new(r, "collateral", col) < 0) {
			col = NULL;
			goto out;
		}
		col = NULL;
	}
	if (json_object_set_new(r, "generated_at", json_integer((json_int_t)time(NULL))) < 0)
		goto out;
	*out = r;
	r = NULL;
	rc = 0;
out:
	json_decref(col);
	json_decref(r);
	return rc;
}

/* ---- verification ---------------------------------------------------------------------- */

static bool status_allowed(const struct veil_report_policy *p, const char *st)
{
	if (!p || !p->n_tcb_status)
		return true;
	for (size_t i = 0; i < p->n_tcb_status; i++)
		if (!strcmp(p->tcb_status[i], st))
			return true;
	return false;
}

static void check(json_t *j, const char *name, bool ok)
{
	json_t *c = json_object_get(j, "checks");

	if (!c) {
		c = json_object();
		json_object_set_new(j, "checks", c);
	}
	json_object_set_new(c, name, json_boolean(ok));
}

/* Broken-out keys must equal the encoding's (and name no key it lacks). */
static int keys_consistent(struct veil_report_verdict *v, json_t *given, json_t *derived)
{
	const char *k;
	json_t *val;

	json_object_foreach(given, k, val) {
		json_t *d = json_object_get(derived, k);

		if (!d)
			return rpt_fail(v, VEIL_EBADMSG, "keys: \"%s\" is not in the key-set encoding", k);
		if (!json_is_string(val) || strcasecmp(json_string_value(val), json_string_value(d)))
			return rpt_fail(v, VEIL_EBADMSG, "keys: \"%s\" differs from the key-set encoding",
					k);
	}
	json_object_foreach(derived, k, val)
		if (!json_object_get(given, k))
			return rpt_fail(v, VEIL_EFORMAT, "keys: \"%s\" missing (it is in the encoding)", k);
	return 0;
}

/* `replayed`: the event log was replayed against the quote (TDX, sim); a
 * SEV-SNP log is not, so its measurements are only what the report says
 * and a policy pin on them would be met by an edited document. */
static int measurements_check(struct veil_report_verdict *v, json_t *j, json_t *m,
			      const struct role_meas *rm,
			      const struct veil_report_policy *pol, bool replayed)
{
	const uint8_t *want[N_MEAS] = {0};
	json_t *out = json_object(), *val;
	const char *key;

	if (!out)
		return VEIL_ENOMEM;
	json_object_set_new(j, "measurements", out);
	json_object_set_new(j, "role", json_string(rm->gateway ? "gateway" : "node"));
	if (pol) {
		want[0] = pol->node_binary;
		want[1] = pol->node_config;
		want[2] = pol->model;
	}
	if (!json_is_object(m))
		return rpt_fail(v, VEIL_EFORMAT, "\"measurements\" missing or not an object");
	json_object_foreach(m, key, val) {
		size_t i = 0;

		while (i < N_MEAS && strcmp(MEAS[i].key, key))
			i++;
		if (i == N_MEAS)
			return rpt_fail(v, VEIL_EFORMAT, "measurements: unknown key \"%.64s\"", key);
	}
	for (size_t i = 0; i < N_MEAS; i++) {
		json_t *g = json_object_get(m, MEAS[i].key);
		uint8_t b[48];

		if (rm->v[i].present)
			rpt_set_hex(out, MEAS[i].key, rm->v[i].p, rm->v[i].len);
		if (!g && !rm->v[i].present)
			continue;
		if (!g || !rm->v[i].present)
			return rpt_fail(v, VEIL_EBADMSG, "measurements: \"%s\" %s", MEAS[i].key,
					g ? "is not in the event log" : "is in the event log but not listed");
		if (rpt_hex_exact(m, MEAS[i].key, b, MEAS[i].len) < 0 ||
		    memcmp(b, rm->v[i].p, MEAS[i].len))
			return rpt_fail(v, VEIL_EBADMSG,
					"measurements: \"%s\" differs from the event log", MEAS[i].key);
	}
	check(j, "measurements", true);
	for (size_t i = 0; i < N_MEAS; i++) {
		if (!want[i])
			continue;
		if (!replayed)
			return rpt_fail(v, VEIL_EPERM, "policy: \"%s\" is pinned, but this report's "
					"event log is not replayed against its evidence (SEV-SNP), "
					"so its measurements are unauthenticated", MEAS[i].key);
		if (!rm->v[i].present)
			return rpt_fail(v, VEIL_EPERM, "policy: no \"%s\" measurement in the report",
					MEAS[i].key);
		if (memcmp(want[i], rm->v[i].p, 48))
			return rpt_fail(v, VEIL_EPERM, "policy: \"%s\" measurement differs from the "
					"expected value", MEAS[i].key);
	}
	if (pol)
		check(j, "policy", true);
	return 0;
}

/* A node report's model.sha256 is what receipts and model_sha256 pins name:
 * where the log is replayed against the quote (TDX, sim) it must be the
 * veil-model-sha256 event's payload, or a relay could rewrite it.  Without a
 * replay (SEV-SNP) it is not bound, and the verdict says so. */
static int model_sha256_check(struct veil_report_verdict *v, json_t *j, json_t *doc,
			      const struct role_meas *rm, bool replayed)
{
	json_t *mo = json_object_get(doc, "model"), *s;
	const struct veil_evlog_value *ev = &rm->v[MEAS_MODEL_SHA256];
	uint8_t d[32];

	if (mo && !json_is_object(mo) && !json_is_null(mo))
		return rpt_fail(v, VEIL_EFORMAT, "\"model\" is not an object");
	s = json_object_get(mo, "sha256");
	if (!s) {
		/* the measured value stands whatever the document says: a relay
		 * deleting model.sha256 must not switch the receipts' model-hash
		 * check off (clients read measurements.model_sha256) */
		if (replayed && ev->present)
			check(j, "model_sha256", true);
		return 0;
	}
	if (rpt_hex_exact(mo, "sha256", d, 32) < 0)
		return rpt_fail(v, VEIL_EFORMAT, "model.sha256 is not 64 hex characters");
	if (rm->gateway)
		return rpt_fail(v, VEIL_EFORMAT, "a gateway's report names a model.sha256");
	if (!replayed) {
		json_object_set_new(j, "model_sha256_bound", json_false());
		return 0;
	}
	if (!ev->present)
		return rpt_fail(v, VEIL_EBADMSG, "model.sha256 is not measured: the event log has "
				"no %s event, so the quote does not bind it", VEIL_EVLOG_MODEL_SHA256);
	if (memcmp(d, ev->p, 32))
		return rpt_fail(v, VEIL_EBADMSG, "model.sha256 differs from the measured %s event",
				VEIL_EVLOG_MODEL_SHA256);
	check(j, "model_sha256", true);
	return 0;
}

static int gpus_check(struct veil_report_verdict *v, json_t *j, json_t *list, bool sim,
		      const uint8_t rd[64], int64_t now)
{
	uint8_t gn[32];
	json_t *out = json_array(), *item;
	struct veil_nvgpu_result *res = NULL;
	char (*ueids)[sizeof(res->ueid)] = NULL;  /* the GPUs verified so far */
	size_t i;
	int rc = 0;

	if (!out)
		return VEIL_ENOMEM;
	json_object_set_new(j, "gpus", out);
	if (!json_is_array(list) || json_array_size(list) > MAX_GPUS)
		return rpt_fail(v, VEIL_EFORMAT, "\"gpu_evidence\" missing or not an array of at most %d",
				MAX_GPUS);
	SHA256(rd, 64, gn);
	res = malloc(sizeof(*res));
	ueids = calloc(MAX_GPUS, sizeof(*ueids));
	if (!res || !ueids) {
		free(res);
		free(ueids);
		return VEIL_ENOMEM;
	}
	json_array_foreach(list, i, item) {
		struct veil_nvgpu_opts no;
		uint8_t *ev = NULL, *root = NULL;
		size_t ev_len = 0, root_len = 0;
		json_t *pem = json_object_get(item, "certificate_chain");

		memset(&no, 0, sizeof(no));
		no.now = now;
		no.expected_nonce = gn;
		if (!json_is_object(item) || !json_is_string(pem)) {
			rc = rpt_fail(v, VEIL_EFORMAT, "gpu_evidence[%zu]: no certificate_chain", i);
			break;
		}
		if ((rc = rpt_hex_alloc(item, "evidence", VEIL_NVGPU_MAX_EVIDENCE, &ev, &ev_len)) < 0) {
			rpt_fail(v, rc, "gpu_evidence[%zu]: %s", i, veil_err_detail());
			break;
		}
		if (sim && (rc = rpt_pem_last_der(json_string_value(pem), json_string_length(pem),
						  &root, &root_len)) < 0) {
			free(ev);
			rpt_fail(v, rc, "gpu_evidence[%zu]: %s", i, veil_err_detail());
			break;
		}
		no.root_der = root;
		no.root_der_len = root_len;
		rc = veil_nvgpu_verify(ev, ev_len, json_string_value(pem), json_string_length(pem), &no,
				       res);
		json_array_append_new(out, veil_nvgpu_verdict_json(res, rc));
		free(ev);
		free(root);
		if (rc < 0) {
			rpt_fail(v, rc, "gpu_evidence[%zu]: %s", i, res->error);
			break;
		}
		/* Every GPU signs the same nonce (SHA-256(report_data)) and the
		 * list is not in the quote: a copy of one GPU's evidence verifies
		 * as well as the original, and must not count as another GPU. */
		for (size_t k = 0; k < i; k++) {
			if (!strcmp(ueids[k], res->ueid)) {
				rc = rpt_fail(v, VEIL_EBADMSG, "gpu_evidence[%zu]: the same GPU as "
					      "gpu_evidence[%zu] (ueid %s)", i, k, res->ueid);
				break;
			}
		}
		if (rc < 0)
			break;
		snprintf(ueids[i], sizeof(ueids[i]), "%s", res->ueid);
	}
	free(res);
	free(ueids);
	if (rc == 0)
		check(j, "gpus", true);
	return rc;
}

static int quote_check(struct veil_report_verdict *v, json_t *j, json_t *doc,
		       const struct veil_report_opts *o, int64_t now, uint8_t rtmr[4][48],
		       uint8_t rd[64])
{
	struct veil_tdx_collateral *own = NULL;
	const struct veil_tdx_collateral *c = o->collateral;
	struct veil_tdx_verdict *tv = NULL;
	uint8_t *quote = NULL, *root = NULL;
	size_t qlen = 0, root_len = 0;
	json_t *tj = NULL;
	int rc;

	if ((rc = rpt_hex_alloc(doc, "quote", VEIL_TDX_QUOTE_MAX, &quote, &qlen)) < 0)
		return rpt_fail(v, rc, "quote: %s", veil_err_detail());
	if (!c) {
		json_t *cj = json_object_get(doc, "collateral");
		char *txt;

		if (!json_is_object(cj)) {
			rc = rpt_fail(v, VEIL_EPERM, "no collateral in the report and none given: the "
				      "TCB status cannot be evaluated (pass --collateral)");
			goto out;
		}
		txt = json_dumps(cj, JSON_COMPACT);
		if (!txt) {
			rc = VEIL_ENOMEM;
			goto out;
		}
		rc = veil_tdx_collateral_parse((const uint8_t *)txt, strlen(txt), &own);
		free(txt);
		if (rc < 0) {
			rpt_fail(v, rc, "collateral: %s", veil_err_detail());
			goto out;
		}
		c = own;
	}
	if (v->sim) {
		struct veil_tdx_quote q;

		if ((rc = veil_tdx_quote_parse(quote, qlen, &q)) < 0 ||
		    (rc = rpt_pem_last_der((const char *)q.pck_data, q.pck_data_len, &root,
					   &root_len)) < 0) {
			rpt_fail(v, rc, "quote: %s", veil_err_detail());
			goto out;
		}
	}
	tv = calloc(1, sizeof(*tv));
	if (!tv) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	rc = veil_tdx_verify(quote, qlen, c, now, root, root_len, tv);
	if (veil_tdx_verdict_json(tv, &tj) == 0) {
		json_object_set(j, "quote", tj);
		json_object_set(j, "advisories", json_object_get(tj, "advisories"));
		rpt_copy_td_fields(j, tj);
	}
	if (rc < 0) {
		rpt_fail(v, rc, "quote: %s", tv->error);
		goto out;
	}
	if (tv->tee_type != VEIL_TDX_TEE_TDX) {
		rc = rpt_fail(v, VEIL_ENOTSUP, "quote: not a TDX quote");
		goto out;
	}
	snprintf(v->status, sizeof(v->status), "%s", tv->status);
	check(j, "quote", true);
	if (!status_allowed(o->policy, tv->status)) {
		rc = rpt_fail(v, VEIL_EPERM, "policy: TCB status %s is not allowed", tv->status);
		goto out;
	}
	for (int i = 0; i < 4; i++)
		memcpy(rtmr[i], tv->td.rtmr[i], 48);
	memcpy(rd, tv->report_data, 64);
	rc = 0;
out:
	json_decref(tj);
	free(tv);
	free(quote);
	free(root);
	veil_tdx_collateral_free(own);
	return rc;
}

static int snp_check(struct veil_report_verdict *v, json_t *j, json_t *doc,
		     const struct veil_report_opts *o, int64_t now, uint8_t rd[64])
{
	struct veil_snp_result *res = calloc(1, sizeof(*res));
	struct veil_snp_opts so;
	uint8_t *rep = NULL, *vcek = NULL;
	size_t rl = 0, vl = 0;
	int rc;

	if (!res)
		return VEIL_ENOMEM;
	memset(&so, 0, sizeof(so));
	so.now = now;
	so.max_vmpl = o->snp_max_vmpl;
	if ((rc = rpt_hex_alloc(doc, "quote", 1u << 16, &rep, &rl)) < 0 ||
	    (rc = rpt_hex_alloc(doc, "vcek", 1u << 16, &vcek, &vl)) < 0) {
		rpt_fail(v, rc, "sev-snp: %s", veil_err_detail());
		goto out;
	}
	rc = veil_snp_verify(rep, rl, vcek, vl, &so, res);
	json_object_set_new(j, "quote", veil_snp_verdict_json(res, rc));
	if (rc < 0) {
		rpt_fail(v, rc, "sev-snp report: %s", res->error);
		goto out;
	}
	memcpy(rd, res->report.report_data, 64);
	check(j, "quote", true);
out:
	free(rep);
	free(vcek);
	free(res);
	return rc;
}

static int verify_doc(struct veil_report_verdict *v, json_t *j, json_t *doc,
		      const struct veil_report_opts *o)
{
	const char *tee;
	int64_t now = o->now ? o->now : (int64_t)time(NULL);
	uint8_t nonce[32], rd[64], rd_field[64], rtmr[4][48];
	uint8_t *enc = NULL;
	size_t enc_len = 0;
	json_t *keys, *derived = NULL;
	struct veil_evlog log = VEIL_EVLOG_INIT;
	struct role_meas rm;
	unsigned mask = 0;
	bool tdx_like;
	int rc;

	if (!json_is_object(doc) ||
	    !json_is_string(json_object_get(doc, "version")) ||
	    strcmp(json_string_value(json_object_get(doc, "version")), VEIL_REPORT_VERSION))
		return rpt_fail(v, VEIL_EFORMAT, "not a %s document (\"version\")", VEIL_REPORT_VERSION);
	tee = json_string_value(json_object_get(doc, "tee"));
	if (!tee || (strcmp(tee, "tdx") && strcmp(tee, "sev-snp") && strcmp(tee, "sim")))
		return rpt_fail(v, VEIL_EFORMAT, "\"tee\" must be \"tdx\", \"sev-snp\" or \"sim\"");
	snprintf(v->tee, sizeof(v->tee), "%s", tee);
	/* simulated evidence is labelled "sim", never as the TEE it imitates */
	if (json_object_get(doc, "sim") && !json_is_boolean(json_object_get(doc, "sim")))
		return rpt_fail(v, VEIL_EFORMAT, "\"sim\" is not true or false");
	if (json_is_true(json_object_get(doc, "sim")) && strcmp(tee, "sim"))
		return rpt_fail(v, VEIL_EFORMAT, "\"sim\": true with \"tee\": \"%s\" (simulated "
				"evidence must say \"tee\": \"sim\")", tee);
	v->sim = !strcmp(tee, "sim");
	if (v->sim) {
		json_object_set_new(j, "warning", json_string(SIM_WARNING));
		if (!o->allow_sim)
			return rpt_fail(v, VEIL_EPERM,
					"simulated TEE evidence refused: this report comes from veil's "
					"simulated TEE, which proves nothing about real hardware (allow it "
					"only for tests and demos: --allow-sim)");
	}
	tdx_like = strcmp(tee, "sev-snp") != 0;
	if ((rc = rpt_hex_exact(doc, "nonce", nonce, 32)) < 0)
		return rpt_fail(v, rc, "%s", veil_err_detail());
	rpt_set_hex(j, "nonce", nonce, 32);
	if (!o->skip_nonce) {
		if (!o->nonce)
			return rpt_fail(v, VEIL_EINVAL, "no expected nonce given (freshness cannot be "
				       "checked; skip it explicitly if that is intended)");
		if (memcmp(o->nonce, nonce, 32))
			return rpt_fail(v, VEIL_EPERM, "the report's nonce differs from the expected "
					"nonce (stale or replayed report)");
		check(j, "nonce", true);
	} else {
		json_object_set_new(j, "nonce_checked", json_false());
	}
	/* keys */
	keys = json_object_get(doc, "keys");
	if (!json_is_object(keys) ||
	    (rc = rpt_hex_alloc(keys, "encoding", VEIL_KEYSET_MAX, &enc, &enc_len)) < 0) {
		rc = rpt_fail(v, VEIL_EFORMAT, "keys: \"encoding\" missing or not hex");
		goto out;
	}
	if ((rc = veil_keyset_parse(enc, enc_len, &v->keys)) < 0) {
		rpt_fail(v, rc, "keys: %s", veil_err_detail());
		goto out;
	}
	derived = rpt_keys_json(&v->keys, enc, enc_len);
	if (!derived) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	json_object_set(j, "keys", derived);
	if ((rc = keys_consistent(v, keys, derived)) < 0)
		goto out;
	/* the quote */
	rc = tdx_like ? quote_check(v, j, doc, o, now, rtmr, rd) : snp_check(v, j, doc, o, now, rd);
	if (rc < 0)
		goto out;
	/* A SEV-SNP report has no TCB status to meet a flat policy's list:
	 * silence would accept any TCB (veil-policy/1 judges SNP by
	 * snp_min_tcb) */
	if (!tdx_like && !status_allowed(o->policy, "unknown")) {
		rc = rpt_fail(v, VEIL_EPERM, "policy: a SEV-SNP report has no TCB status, so "
			      "tcb_status cannot be met (veil-policy/1: snp_min_tcb)");
		goto out;
	}
	/* report_data binds the keys and the nonce */
	rpt_set_hex(j, "report_data", rd, 64);
	if (rpt_hex_exact(doc, "report_data", rd_field, 64) < 0 || memcmp(rd_field, rd, 64)) {
		rc = rpt_fail(v, VEIL_EBADMSG, "\"report_data\" differs from the quote's");
		goto out;
	}
	if ((rc = veil_keyset_check_report_data(enc, enc_len, nonce, rd)) < 0) {
		rpt_fail(v, rc, "report_data does not bind these keys and this nonce: %s",
			 veil_err_detail());
		goto out;
	}
	memcpy(v->report_data, rd, 64);
	check(j, "report_data", true);
	/* event log */
	if ((rc = veil_evlog_from_json(json_object_get(doc, "event_log"), &log)) < 0) {
		rpt_fail(v, rc, "event_log: %s", veil_err_detail());
		goto out;
	}
	if ((rc = veil_evlog_check_runtime(&log)) < 0) {
		rpt_fail(v, rc, "%s", veil_err_detail());
		goto out;
	}
	/* the role (structure) before the replay (cryptography): a log that
	 * mixes roles is refused for that, whatever else is wrong with it */
	if ((rc = log_measurements(&log, &rm)) < 0) {
		rpt_fail(v, rc, "event_log: %s", veil_err_detail());
		goto out;
	}
	if (tdx_like) {
		if ((rc = veil_evlog_check_rtmrs(&log, (const uint8_t(*)[48])rtmr, &mask)) < 0) {
			rpt_fail(v, rc, "%s", veil_err_detail());
			goto out;
		}
		check(j, "event_log", true);
	} else {
		json_object_set_new(j, "event_log_replayed", json_false());
	}
	if ((rc = measurements_check(v, j, json_object_get(doc, "measurements"), &rm, o->policy,
				     tdx_like)) < 0 ||
	    (rc = model_sha256_check(v, j, doc, &rm, tdx_like)) < 0)
		goto out;
	rc = gpus_check(v, j, json_object_get(doc, "gpu_evidence"), v->sim, rd, now);
out:
	json_decref(derived);
	veil_evlog_free(&log);
	free(enc);
	return rc;
}

int veil_report_verify(const uint8_t *json, size_t n, const struct veil_report_opts *o,
		       struct veil_report_verdict *v)
{
	static const struct veil_report_opts none;
	json_error_t e;
	json_t *doc = NULL;
	int rc;

	if (!v)
		return VEIL_EINVAL;
	memset(v, 0, sizeof(*v));
	v->json = json_object();
	if (v->json)
		json_object_set_new(v->json, "kind", json_string("report"));
	if (!o)
		o = &none;
	if (!json || n > VEIL_REPORT_MAX) {
		rc = rpt_fail(v, VEIL_ERANGE, "report: missing or larger than %u bytes", VEIL_REPORT_MAX);
		return rpt_finish(v, rc);
	}
	doc = json_loadb((const char *)json, n, JSON_REJECT_DUPLICATES, &e);
	if (!doc) {
		rc = rpt_fail(v, VEIL_EFORMAT, "report: JSON error at line %d: %s", e.line, e.text);
		return rpt_finish(v, rc);
	}
	rc = v->json ? verify_doc(v, v->json, doc, o) : VEIL_ENOMEM;
	json_decref(doc);
	return rpt_finish(v, rc);
}

/* ---- policy ------------------------------------------------------------------------------ */

struct policy_store {
	struct veil_report_policy p;
	uint8_t bin[48], cfg[48], model[48];
	char **status;
};

int veil_report_policy_load(const uint8_t *json, size_t n, struct veil_report_policy **out)
{
	struct policy_store *s = calloc(1, sizeof(*s));
	json_error_t e;
	json_t *doc = json_loadb((const char *)json, n, JSON_REJECT_DUPLICATES, &e), *st, *x;
	size_t i;
	int rc = 0;

	if (!s) {
		json_decref(doc);
		return VEIL_ENOMEM;
	}
	if (!json_is_object(doc)) {
		rc = veil_errf(VEIL_EFORMAT, "policy: not a JSON object");
		goto out;
	}
	/* a veil-policy/1 file read as this flat format would enforce nothing:
	 * the caller routes those to veil_policy_load (`veil verify` does) */
	if (json_object_get(doc, "version")) {
		rc = veil_errf(VEIL_ENOTSUP, "policy: a \"version\"ed policy (veil-policy/1) is "
			       "not the flat report policy; load it with veil_policy_load");
		goto out;
	}
	/* a typo must not weaken a policy */
	{
		static const char *const keys[] = {"node_binary", "node_config", "model",
						   "tcb_status"};
		const char *k;

		json_object_foreach(doc, k, x) {
			size_t j = 0;

			while (j < VEIL_ARRAY_LEN(keys) && strcmp(keys[j], k))
				j++;
			if (j == VEIL_ARRAY_LEN(keys)) {
				rc = veil_errf(VEIL_EFORMAT, "policy: unknown key \"%.64s\" (a typo "
					       "must not weaken a policy)", k);
				goto out;
			}
		}
	}
	if (json_object_get(doc, "node_binary")) {
		if ((rc = rpt_hex_exact(doc, "node_binary", s->bin, 48)) < 0)
			goto out;
		s->p.node_binary = s->bin;
	}
	if (json_object_get(doc, "node_config")) {
		if ((rc = rpt_hex_exact(doc, "node_config", s->cfg, 48)) < 0)
			goto out;
		s->p.node_config = s->cfg;
	}
	if (json_object_get(doc, "model")) {
		if ((rc = rpt_hex_exact(doc, "model", s->model, 48)) < 0)
			goto out;
		s->p.model = s->model;
	}
	st = json_object_get(doc, "tcb_status");
	if (st) {
		if (!json_is_array(st) || json_array_size(st) == 0 || json_array_size(st) > 16) {
			rc = veil_errf(VEIL_EFORMAT, "policy: tcb_status is not a list of 1..16 "
				       "statuses (leave it out to accept any)");
			goto out;
		}
		s->status = calloc(json_array_size(st) + 1, sizeof(char *));
		if (!s->status) {
			rc = VEIL_ENOMEM;
			goto out;
		}
		json_array_foreach(st, i, x) {
			if (!json_is_string(x) || !(s->status[i] = strdup(json_string_value(x)))) {
				rc = veil_errf(VEIL_EFORMAT, "policy: tcb_status[%zu] is not a string", i);
				goto out;
			}
		}
		s->p.tcb_status = (const char *const *)s->status;
		s->p.n_tcb_status = json_array_size(st);
	}
out:
	json_decref(doc);
	if (rc < 0) {
		veil_report_policy_free(&s->p);
		return rc;
	}
	*out = &s->p;
	return 0;
}

void veil_report_policy_free(struct veil_report_policy *p)
{
	struct policy_store *s = (struct policy_store *)p; /* p is the first member */

	if (!s)
		return;
	for (size_t i = 0; s->status && s->status[i]; i++)
		free(s->status[i]);
	free(s->status);
	free(s);
}

/* ---- sniffing ---------------------------------------------------------------------------- */

static bool has_key(const uint8_t *p, size_t n, const char *needle)
{
	size_t k = strlen(needle);

	for (size_t i = 0; i + k <= n; i++)
		if (!memcmp(p + i, needle, k))
			return true;
	return false;
}

bool veil_report_sniff(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && isspace(p[i]))
		i++;
	return i < n && p[i] == '{' && has_key(p, n, "\"" VEIL_REPORT_VERSION "\"");
}

bool veil_nearai_sniff(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && isspace(p[i]))
		i++;
	return i < n && p[i] == '{' && (has_key(p, n, "\"intel_quote\"") ||
					has_key(p, n, "\"signing_address\"") ||
					has_key(p, n, "\"nvidia_payload\"") ||
					has_key(p, n, "\"gateway_attestation\"") ||
					has_key(p, n, "\"model_attestations\""));
}
