/* Unit tests of the policy module (include/veil/policy.h) and of report
 * roles (include/veil/report.h): reports made by the simulated TEE for a
 * node (with and without GPUs) and for a gateway verify in their own shape,
 * a report mixing node and gateway events is refused; policies load
 * strictly (unknown keys and bad values refused, with the field named),
 * round-trip through their canonical JSON, and each rule passes and fails:
 * sim evidence, TCB ordering, measurement pins, model_sha256, model name,
 * other_models, GPU requirements, roles; trust-on-first-use pinning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "veil/attester.h"
#include "veil/base.h"
#include "veil/eventlog.h"
#include "veil/hpke.h"
#include "veil/keyset.h"
#include "veil/policy.h"
#include "veil/report.h"
#include "veil/sign.h"
#include "veil/snp.h"

/* ---- fixtures: sim reports ------------------------------------------------- */

struct fx {
	struct veil_attester *node, *gpu, *gw;
	uint8_t nonce[32];
	uint8_t bin[48], cfg[48], model[48], gbin[48], gcfg[48];
	char bin_hex[97], cfg_hex[97], model_hex[97], gbin_hex[97], gcfg_hex[97];
	char *node_rep;     /* node, no GPU, model stories260K with sha256 */
	char *nosha_rep;    /* node, model name only */
	char *gpu_rep;      /* node with one sim HOPPER GPU */
	char *gw_rep;       /* gateway */
};

static const char MODEL_SHA[] = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";
static const char OTHER_SHA[] = "370cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";
static const char OTHER_48[] = "000000000000000000000000000000000000000000000000"
			       "000000000000000000000000000000000000000000000001";

static void keyset(bool hpke, uint8_t *enc, size_t *len)
{
	struct veil_ed25519_key *ed = NULL;
	struct veil_secp256k1_key *k1 = NULL;
	struct veil_hpke_keypair kp;
	struct veil_keyset ks;
	uint8_t pub[65];

	memset(&ks, 0, sizeof(ks));
	assert_int_equal(veil_ed25519_key_generate(&ed), 0);
	assert_int_equal(veil_secp256k1_key_generate(&k1), 0);
	veil_ed25519_public(ed, ks.ed25519);
	ks.present |= VEIL_KEYSET_HAS(VEIL_KEY_ED25519);
	veil_secp256k1_public(k1, pub);
	assert_int_equal(veil_keyset_set_secp256k1(&ks, pub), 0);
	if (hpke) {
		assert_int_equal(veil_hpke_keygen(&kp), 0);
		memcpy(ks.x25519_hpke, kp.pub, 32);
		ks.present |= VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE);
		veil_hpke_keypair_wipe(&kp);
	}
	memset(ks.tls_spki_sha256, 0x42, 32);
	ks.present |= VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256);
	assert_int_equal(veil_keyset_encode(&ks, enc, VEIL_KEYSET_MAX, len), 0);
	veil_ed25519_key_free(ed);
	veil_secp256k1_key_free(k1);
}

static void sha384(const char *s, uint8_t out[48], char hex[97])
{
	SHA384((const uint8_t *)s, strlen(s), out);
	veil_hex_encode(out, 48, hex, 97);
}

static char *report_text(struct veil_attester *a, bool hpke, const uint8_t nonce[32],
			 const struct veil_report_extra *x)
{
	uint8_t enc[VEIL_KEYSET_MAX];
	size_t len;
	json_t *r = NULL;
	char *t;

	keyset(hpke, enc, &len);
	assert_int_equal(veil_attester_report(a, enc, len, nonce, x, &r), 0);
	t = json_dumps(r, JSON_COMPACT);
	assert_non_null(t);
	json_decref(r);
	return t;
}

static struct veil_attester *node_attester(const struct fx *f, int gpus)
{
	struct veil_attester_opts o = {.tee = "sim", .sim_gpus = gpus};
	struct veil_attester *a;
	uint8_t sha[32];
	size_t got;

	assert_int_equal(veil_hex_decode(MODEL_SHA, 64, sha, 32, &got), 0);
	assert_int_equal(veil_attester_open(&o, &a), 0);
	assert_int_equal(veil_attester_extend(a, VEIL_EVLOG_NODE_BINARY, f->bin, 48), 0);
	assert_int_equal(veil_attester_extend(a, VEIL_EVLOG_NODE_CONFIG, f->cfg, 48), 0);
	assert_int_equal(veil_attester_extend(a, VEIL_EVLOG_MODEL, f->model, 48), 0);
	/* as veil-node does: the model's SHA-256, which binds model.sha256 */
	assert_int_equal(veil_attester_extend(a, VEIL_EVLOG_MODEL_SHA256, sha, 32), 0);
	return a;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct veil_attester_opts o = {.tee = "sim"};
	struct veil_report_extra x = {"stories260K", MODEL_SHA}, xn = {"stories260K", NULL};

	assert_non_null(f);
	sha384("node binary", f->bin, f->bin_hex);
	sha384("node config", f->cfg, f->cfg_hex);
	sha384("model file", f->model, f->model_hex);
	sha384("gateway binary", f->gbin, f->gbin_hex);
	sha384("gateway config", f->gcfg, f->gcfg_hex);
	assert_int_equal(veil_random(f->nonce, 32), 0);
	f->node = node_attester(f, 0);
	f->gpu = node_attester(f, 1);
	assert_int_equal(veil_attester_open(&o, &f->gw), 0);
	assert_int_equal(veil_attester_extend(f->gw, VEIL_EVLOG_GATEWAY_BINARY, f->gbin, 48), 0);
	assert_int_equal(veil_attester_extend(f->gw, VEIL_EVLOG_GATEWAY_CONFIG, f->gcfg, 48), 0);
	f->node_rep = report_text(f->node, true, f->nonce, &x);
	f->nosha_rep = report_text(f->node, true, f->nonce, &xn);
	f->gpu_rep = report_text(f->gpu, true, f->nonce, &x);
	f->gw_rep = report_text(f->gw, false, f->nonce, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	free(f->node_rep);
	free(f->nosha_rep);
	free(f->gpu_rep);
	free(f->gw_rep);
	veil_attester_free(f->node);
	veil_attester_free(f->gpu);
	veil_attester_free(f->gw);
	free(f);
	return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static struct veil_policy *load(const char *fmt, ...) VEIL_PRINTF(1, 2);

static struct veil_policy *load(const char *fmt, ...)
{
	struct veil_policy *p = NULL;
	char buf[8192];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	rc = veil_policy_load((const uint8_t *)buf, strlen(buf), &p);
	if (rc != 0)
		fprintf(stderr, "policy did not load: %s\n%s\n", veil_err_detail(), buf);
	assert_int_equal(rc, 0);
	return p;
}

/* The load error of a document (must fail), its detail in err. */
static int load_err(const char *doc, char *err, size_t cap)
{
	struct veil_policy *p = NULL;
	int rc = veil_policy_load((const uint8_t *)doc, strlen(doc), &p);

	if (rc == 0) {
		fprintf(stderr, "policy loaded but should not: %s\n", doc);
		veil_policy_free(p);
	}
	snprintf(err, cap, "%s", veil_err_detail());
	return rc;
}

static int verify(const struct veil_policy *p, enum veil_policy_role role, const char *model,
		  const char *rep, const uint8_t *nonce, char *err, size_t cap)
{
	struct veil_report_verdict v;
	int rc = veil_policy_verify_report(p, role, model, (const uint8_t *)rep, strlen(rep),
					   nonce, &v);

	assert_non_null(v.json);
	assert_int_equal(v.ok, rc == 0);
	assert_int_equal(json_is_true(json_object_get(v.json, "ok")), rc == 0);
	if (rc < 0)
		assert_string_equal(json_string_value(json_object_get(v.json, "error")), v.error);
	if (err)
		snprintf(err, cap, "%s", v.error);
	veil_report_verdict_free(&v);
	return rc;
}

/* ---- report roles ------------------------------------------------------------- */

static void test_report_roles_node_and_gateway_shapes(void **state)
{
	struct fx *f = *state;
	struct veil_report_opts o = {.nonce = f->nonce, .allow_sim = true};
	struct veil_report_verdict v;
	json_t *m, *doc;

	/* node: four measurements (the model's SHA-256 too), HPKE key bound */
	assert_int_equal(veil_report_verify((const uint8_t *)f->node_rep, strlen(f->node_rep), &o,
					    &v), 0);
	assert_string_equal(json_string_value(json_object_get(v.json, "role")), "node");
	m = json_object_get(v.json, "measurements");
	assert_int_equal(json_object_size(m), 4);
	assert_string_equal(json_string_value(json_object_get(m, "model_sha256")), MODEL_SHA);
	assert_string_equal(json_string_value(json_object_get(m, "node_binary")), f->bin_hex);
	assert_string_equal(json_string_value(json_object_get(m, "model")), f->model_hex);
	assert_true(v.keys.present & VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE));
	veil_report_verdict_free(&v);
	/* gateway: two measurements, no HPKE key */
	assert_int_equal(veil_report_verify((const uint8_t *)f->gw_rep, strlen(f->gw_rep), &o, &v),
			 0);
	assert_string_equal(json_string_value(json_object_get(v.json, "role")), "gateway");
	m = json_object_get(v.json, "measurements");
	assert_int_equal(json_object_size(m), 2);
	assert_string_equal(json_string_value(json_object_get(m, "gateway_binary")), f->gbin_hex);
	assert_string_equal(json_string_value(json_object_get(m, "gateway_config")), f->gcfg_hex);
	assert_false(v.keys.present & VEIL_KEYSET_HAS(VEIL_KEY_X25519_HPKE));
	assert_null(json_object_get(json_object_get(v.json, "keys"), "x25519_hpke"));
	assert_true(v.keys.present & VEIL_KEYSET_HAS(VEIL_KEY_TLS_SPKI_SHA256));
	veil_report_verdict_free(&v);
	/* the report document names the gateway's measurements */
	doc = json_loads(f->gw_rep, 0, NULL);
	m = json_object_get(doc, "measurements");
	assert_string_equal(json_string_value(json_object_get(m, "gateway_binary")), f->gbin_hex);
	assert_null(json_object_get(m, "node_binary"));
	json_decref(doc);
	/* node-report pins of the old policy struct do not fit a gateway */
	{
		struct veil_report_policy pol = {.node_binary = f->bin};

		o.policy = &pol;
		assert_int_equal(veil_report_verify((const uint8_t *)f->gw_rep, strlen(f->gw_rep),
						    &o, &v), VEIL_EPERM);
		assert_non_null(strstr(v.error, "node_binary"));
		veil_report_verdict_free(&v);
	}
}

static int verify_doc(json_t *doc, const uint8_t *nonce, char *err, size_t cap)
{
	struct veil_report_opts o = {.nonce = nonce, .allow_sim = true};
	struct veil_report_verdict v;
	char *t = json_dumps(doc, JSON_COMPACT);
	int rc;

	assert_non_null(t);
	rc = veil_report_verify((const uint8_t *)t, strlen(t), &o, &v);
	snprintf(err, cap, "%s", v.error);
	veil_report_verdict_free(&v);
	free(t);
	return rc;
}

static void test_report_mixing_node_and_gateway_events_is_refused(void **state)
{
	struct fx *f = *state;
	struct veil_attester_opts o = {.tee = "sim"};
	struct veil_attester *a;
	uint8_t enc[VEIL_KEYSET_MAX], d[48];
	char hex[97], err[512];
	size_t len;
	json_t *r = NULL, *doc, *ev;

	/* the builder refuses a log with both roles */
	assert_int_equal(veil_attester_open(&o, &a), 0);
	assert_int_equal(veil_attester_extend(a, VEIL_EVLOG_NODE_BINARY, f->bin, 48), 0);
	assert_int_equal(veil_attester_extend(a, VEIL_EVLOG_GATEWAY_BINARY, f->gbin, 48), 0);
	keyset(true, enc, &len);
	assert_int_equal(veil_attester_report(a, enc, len, f->nonce, NULL, &r), VEIL_EFORMAT);
	assert_null(r);
	assert_non_null(strstr(veil_err_detail(), "both node"));
	veil_attester_free(a);
	/* a verifier refuses one too: a node report with a gateway event added
	 * (a well-formed runtime event, listed in measurements) */
	doc = json_loads(f->node_rep, 0, NULL);
	assert_non_null(doc);
	assert_int_equal(veil_evlog_runtime_digest(VEIL_EVLOG_GATEWAY_BINARY, f->gbin, 48, d), 0);
	veil_hex_encode(d, 48, hex, sizeof(hex));
	ev = json_pack("{s:i, s:I, s:s, s:s, s:s}", "imr", 3, "event_type",
		       (json_int_t)VEIL_EVLOG_RUNTIME_EVENT_TYPE, "digest", hex, "event",
		       VEIL_EVLOG_GATEWAY_BINARY, "event_payload", f->gbin_hex);
	json_array_append_new(json_object_get(doc, "event_log"), ev);
	json_object_set_new(json_object_get(doc, "measurements"), "gateway_binary",
			    json_string(f->gbin_hex));
	assert_int_equal(verify_doc(doc, f->nonce, err, sizeof(err)), VEIL_EFORMAT);
	assert_non_null(strstr(err, "both node"));
	json_decref(doc);
	/* a gateway measurement listed without its event */
	doc = json_loads(f->node_rep, 0, NULL);
	json_object_set_new(json_object_get(doc, "measurements"), "gateway_config",
			    json_string(f->gcfg_hex));
	assert_int_equal(verify_doc(doc, f->nonce, err, sizeof(err)), VEIL_EBADMSG);
	assert_non_null(strstr(err, "gateway_config"));
	json_decref(doc);
	/* an unknown measurement name */
	doc = json_loads(f->gw_rep, 0, NULL);
	json_object_set_new(json_object_get(doc, "measurements"), "gateway_secret",
			    json_string(f->gcfg_hex));
	assert_int_equal(verify_doc(doc, f->nonce, err, sizeof(err)), VEIL_EFORMAT);
	assert_non_null(strstr(err, "unknown key"));
	json_decref(doc);
	/* a gateway report's measurement changed */
	doc = json_loads(f->gw_rep, 0, NULL);
	json_object_set_new(json_object_get(doc, "measurements"), "gateway_binary",
			    json_string(OTHER_48));
	assert_int_equal(verify_doc(doc, f->nonce, err, sizeof(err)), VEIL_EBADMSG);
	assert_non_null(strstr(err, "differs from the event log"));
	json_decref(doc);
}

/* ---- loading ------------------------------------------------------------------------ */

static void test_default_policy_and_its_canonical_json(void **state)
{
	struct veil_policy *p = veil_policy_new();
	json_t *j, *want;

	(void)state;
	assert_non_null(p);
	assert_false(veil_policy_allows_sim(p));
	j = veil_policy_to_json(p);
	want = json_loads("{\"version\":\"veil-policy/1\",\"tee\":[\"sev-snp\",\"tdx\"],"
			  "\"allow_sim\":false,\"min_tcb_status\":\"UpToDate\","
			  "\"snp_max_vmpl\":0,\"gpu\":{\"required\":false,\"min_count\":0},\"gateway\":{},"
			  "\"models\":{}}", 0, NULL);
	assert_true(json_equal(j, want));
	json_decref(j);
	veil_policy_set_allow_sim(p, true);
	assert_true(veil_policy_allows_sim(p));
	j = veil_policy_to_json(p);
	assert_string_equal(json_string_value(json_array_get(json_object_get(j, "tee"), 0)), "sim");
	assert_true(json_is_true(json_object_get(j, "allow_sim")));
	json_decref(j);
	json_decref(want);
	veil_policy_free(p);
	/* an empty file is the default too */
	p = load("{}");
	assert_false(veil_policy_allows_sim(p));
	veil_policy_free(p);
}

static void test_policy_round_trips_through_canonical_json(void **state)
{
	struct fx *f = *state;
	struct veil_policy *p, *q;
	json_t *a, *b, *pins;
	char *t;

	p = load("{\"version\":\"veil-policy/1\",\"tee\":[\"tdx\",\"sim\"],\"allow_sim\":true,"
		 "\"min_tcb_status\":\"SWHardeningNeeded\","
		 "\"gpu\":{\"required\":true,\"min_count\":2,\"arch\":[\"hopper\",\"BLACKWELL\"]},"
		 "\"gateway\":{\"gateway_binary\":[\"%s\"],\"gateway_config\":\"%s\"},"
		 "\"models\":{\"stories260K\":{\"node_binary\":[\"%s\",\"%s\",\"%s\"],"
		 "\"model_sha256\":[\"%s\"]},\"b\":{}},\"other_models\":\"any\"}",
		 f->gbin_hex, f->gcfg_hex, f->bin_hex, OTHER_48, f->bin_hex, MODEL_SHA);
	a = veil_policy_to_json(p);
	assert_non_null(a);
	/* lists sorted, repeats gone, one string became a list */
	pins = json_object_get(json_object_get(json_object_get(a, "models"), "stories260K"),
			       "node_binary");
	assert_int_equal(json_array_size(pins), 2);
	assert_string_equal(json_string_value(json_array_get(pins, 0)), OTHER_48);
	assert_int_equal(json_array_size(json_object_get(json_object_get(a, "gateway"),
							 "gateway_config")), 1);
	assert_string_equal(json_string_value(json_array_get(
				    json_object_get(json_object_get(a, "gpu"), "arch"), 0)),
			    "BLACKWELL");
	assert_string_equal(json_string_value(json_object_get(a, "other_models")), "any");
	t = json_dumps(a, 0);
	assert_int_equal(veil_policy_load((const uint8_t *)t, strlen(t), &q), 0);
	b = veil_policy_to_json(q);
	assert_true(json_equal(a, b));
	free(t);
	json_decref(a);
	json_decref(b);
	veil_policy_free(p);
	veil_policy_free(q);
}

static void test_policy_load_refuses_unknown_keys_and_bad_values(void **state)
{
	static const struct {
		const char *doc, *detail;
		int rc;
	} bad[] = {
		{"[]", "not a JSON object", VEIL_EFORMAT},
		{"{\"allow_sim\":true,", "JSON error", VEIL_EFORMAT},
		{"{\"allow_sim\":false,\"allow_sim\":true}", "JSON error", VEIL_EFORMAT},
		{"{\"version\":\"veil-policy/2\"}", "version", VEIL_ENOTSUP},
		{"{\"alow_sim\":true}", "unknown key \"alow_sim\"", VEIL_EFORMAT},
		{"{\"gpu\":{\"requried\":true}}", "unknown key gpu.\"requried\"", VEIL_EFORMAT},
		{"{\"gateway\":{\"gateway_bin\":[]}}", "unknown key gateway.\"gateway_bin\"",
		 VEIL_EFORMAT},
		{"{\"models\":{\"m\":{\"model_sha\":[]}}}", "unknown key models.m.\"model_sha\"",
		 VEIL_EFORMAT},
		{"{\"allow_sim\":1}", "allow_sim", VEIL_EFORMAT},
		{"{\"tee\":[\"sgx\"]}", "\"tee\"[0]", VEIL_EFORMAT},
		{"{\"tee\":[]}", "non-empty", VEIL_EFORMAT},
		{"{\"tee\":[\"sim\"]}", "\"allow_sim\" is not true", VEIL_EFORMAT},
		{"{\"tee\":[\"tdx\"],\"allow_sim\":true}", "does not list \"sim\"", VEIL_EFORMAT},
		{"{\"min_tcb_status\":\"Uptodate\"}", "min_tcb_status", VEIL_EFORMAT},
		{"{\"min_tcb_status\":\"Revoked\"}", "min_tcb_status", VEIL_EFORMAT},
		{"{\"gpu\":{\"min_count\":-1}}", "min_count", VEIL_EFORMAT},
		{"{\"gpu\":{\"required\":\"yes\"}}", "required", VEIL_EFORMAT},
		{"{\"gpu\":{\"arch\":[\"AMPERE\"]}}", "arch", VEIL_EFORMAT},
		{"{\"gateway\":{\"gateway_binary\":[]}}", "list of 1..", VEIL_EFORMAT},
		{"{\"gateway\":{\"gateway_binary\":[\"abcd\"]}}", "96 hex", VEIL_EFORMAT},
		{"{\"models\":{\"m\":{\"model_sha256\":[\"zz\"]}}}", "64 hex", VEIL_EFORMAT},
		{"{\"models\":{\"\":{}}}", "model name", VEIL_EFORMAT},
		{"{\"models\":[]}", "models", VEIL_EFORMAT},
		{"{\"other_models\":\"some\"}", "other_models", VEIL_EFORMAT},
	};
	char err[600];

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(bad); i++) {
		int rc = load_err(bad[i].doc, err, sizeof(err));

		if (rc != bad[i].rc || !strstr(err, bad[i].detail))
			fprintf(stderr, "case %zu: rc %d detail \"%s\"\n", i, rc, err);
		assert_int_equal(rc, bad[i].rc);
		assert_non_null(strstr(err, bad[i].detail));
	}
	/* size cap */
	{
		struct veil_policy *p;
		size_t n = VEIL_POLICY_MAX + 1;
		uint8_t *big = malloc(n);

		assert_non_null(big);
		memset(big, ' ', n);
		assert_int_equal(veil_policy_load(big, n, &p), VEIL_ERANGE);
		free(big);
	}
	{
		struct veil_policy *p = NULL;

		assert_true(veil_policy_load_file("/nonexistent/policy.json", &p) < 0);
		assert_null(p);
	}
}

/* ---- rules ------------------------------------------------------------------------------ */

static void test_sim_is_refused_unless_allowed(void **state)
{
	struct fx *f = *state;
	struct veil_policy *p = veil_policy_new();
	char err[512];

	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	assert_non_null(strstr(err, "simulated TEE evidence refused"));
	veil_policy_set_allow_sim(p, true);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 0);
	veil_policy_free(p);
	/* the file's allow_sim counts the same */
	p = load("{\"allow_sim\":true}");
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 0);
	veil_policy_free(p);
	/* a real-TEE-only list plus the caller's --allow-sim */
	p = load("{\"tee\":[\"tdx\"]}");
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	veil_policy_set_allow_sim(p, true);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 0);
	veil_policy_free(p);
}

static void test_tcb_status_ordering(void **state)
{
	static const char *const order[] = {
		"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded",
		"ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded",
	};
	struct fx *f = *state;
	char doc[128], err[512];

	for (size_t m = 0; m < VEIL_ARRAY_LEN(order); m++) {
		struct veil_policy *p;

		snprintf(doc, sizeof(doc), "{\"min_tcb_status\":\"%s\",\"allow_sim\":true}",
			 order[m]);
		p = load("%s", doc);
		for (size_t s = 0; s < VEIL_ARRAY_LEN(order); s++)
			assert_int_equal(veil_policy_tcb_allows(p, order[s]), s <= m);
		assert_false(veil_policy_tcb_allows(p, "Revoked"));
		assert_false(veil_policy_tcb_allows(p, ""));
		assert_false(veil_policy_tcb_allows(p, NULL));
		assert_false(veil_policy_tcb_allows(p, "SomethingNew"));
		/* a sim report is UpToDate: it meets every minimum */
		assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err,
					sizeof(err)), 0);
		veil_policy_free(p);
	}
	{
		struct veil_policy *p = load("{\"min_tcb_status\":\"any\"}");

		assert_true(veil_policy_tcb_allows(p, "OutOfDateConfigurationNeeded"));
		assert_true(veil_policy_tcb_allows(p, ""));
		assert_true(veil_policy_tcb_allows(p, "SomethingNew"));
		assert_false(veil_policy_tcb_allows(p, "Revoked"));
		veil_policy_free(p);
	}
}

static void test_measurement_pins(void **state)
{
	static const char *const keys[] = {"node_binary", "node_config", "model"};
	struct fx *f = *state;
	const char *right[] = {f->bin_hex, f->cfg_hex, f->model_hex};
	char err[512];

	for (size_t k = 0; k < VEIL_ARRAY_LEN(keys); k++) {
		struct veil_policy *p;

		p = load("{\"allow_sim\":true,\"models\":{\"stories260K\":{\"%s\":[\"%s\"]}}}",
			 keys[k], OTHER_48);
		assert_int_equal(verify(p, VEIL_POLICY_NODE, "stories260K", f->node_rep, f->nonce,
					err, sizeof(err)), VEIL_EPERM);
		assert_non_null(strstr(err, keys[k]));
		assert_non_null(strstr(err, "not one of the pinned values"));
		veil_policy_free(p);
		/* a list: any of them */
		p = load("{\"allow_sim\":true,\"models\":{\"stories260K\":{\"%s\":[\"%s\",\"%s\"]}}}",
			 keys[k], OTHER_48, right[k]);
		assert_int_equal(verify(p, VEIL_POLICY_NODE, "stories260K", f->node_rep, f->nonce,
					err, sizeof(err)), 0);
		veil_policy_free(p);
	}
}

static void test_model_sha256_pin(void **state)
{
	struct fx *f = *state;
	struct veil_policy *p;
	char err[512];

	p = load("{\"allow_sim\":true,\"models\":{\"stories260K\":{\"model_sha256\":[\"%s\"]}}}",
		 OTHER_SHA);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	assert_non_null(strstr(err, "not a pinned model_sha256"));
	veil_policy_free(p);
	p = load("{\"allow_sim\":true,\"models\":{\"stories260K\":{\"model_sha256\":[\"%s\"]}}}",
		 MODEL_SHA);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 0);
	/* the report names no model.sha256: the pin is judged by the measured
	 * veil-model-sha256 event, which it has */
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->nosha_rep, f->nonce, err,
				sizeof(err)), 0);
	veil_policy_free(p);
}

static char *with_field(const char *rep, const char *obj, const char *key, json_t *val)
{
	json_t *doc = json_loads(rep, 0, NULL), *o;
	char *t;

	assert_non_null(doc);
	o = obj ? json_object_get(doc, obj) : doc;
	assert_non_null(o);
	if (val)
		json_object_set_new(o, key, val);
	else
		json_object_del(o, key);
	t = json_dumps(doc, JSON_COMPACT);
	assert_non_null(t);
	json_decref(doc);
	return t;
}

/* A relay that rewrites model.sha256 (what receipts and model_sha256 pins
 * name) is caught: it must equal the measured veil-model-sha256 event. */
static void test_model_sha256_is_bound_to_the_quote(void **state)
{
	struct fx *f = *state;
	struct veil_report_opts o = {.nonce = f->nonce, .allow_sim = true};
	struct veil_report_extra x = {"stories260K", MODEL_SHA};
	struct veil_attester_opts ao = {.tee = "sim"};
	struct veil_report_verdict v;
	struct veil_attester *old;
	struct veil_policy *p;
	char err[512], *t;

	t = with_field(f->node_rep, "model", "sha256", json_string(OTHER_SHA));
	assert_int_equal(veil_report_verify((const uint8_t *)t, strlen(t), &o, &v), VEIL_EBADMSG);
	assert_non_null(strstr(v.error, "model.sha256 differs from the measured"));
	veil_report_verdict_free(&v);
	/* a policy pinning the rewritten value is not satisfied by it */
	p = load("{\"allow_sim\":true,\"models\":{\"stories260K\":{\"model_sha256\":[\"%s\"]}}}",
		 OTHER_SHA);
	assert_true(verify(p, VEIL_POLICY_NODE, NULL, t, f->nonce, err, sizeof(err)) < 0);
	veil_policy_free(p);
	free(t);
	/* not hex */
	t = with_field(f->node_rep, "model", "sha256", json_string("zz"));
	assert_int_equal(veil_report_verify((const uint8_t *)t, strlen(t), &o, &v), VEIL_EFORMAT);
	veil_report_verdict_free(&v);
	free(t);
	/* a node that did not measure it (an older veil-node) cannot claim it */
	assert_int_equal(veil_attester_open(&ao, &old), 0);
	assert_int_equal(veil_attester_extend(old, VEIL_EVLOG_NODE_BINARY, f->bin, 48), 0);
	assert_int_equal(veil_attester_extend(old, VEIL_EVLOG_NODE_CONFIG, f->cfg, 48), 0);
	assert_int_equal(veil_attester_extend(old, VEIL_EVLOG_MODEL, f->model, 48), 0);
	t = report_text(old, true, f->nonce, &x);
	assert_int_equal(veil_report_verify((const uint8_t *)t, strlen(t), &o, &v), VEIL_EBADMSG);
	assert_non_null(strstr(v.error, "model.sha256 is not measured"));
	veil_report_verdict_free(&v);
	free(t);
	/* and a pin refuses a report without the measurement */
	t = report_text(old, true, f->nonce, NULL);
	p = load("{\"allow_sim\":true,\"other_models\":\"any\",\"models\":{\"stories260K\":"
		 "{\"model_sha256\":[\"%s\"]}}}", MODEL_SHA);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, "stories260K", t, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	veil_policy_free(p);
	free(t);
	veil_attester_free(old);
}

/* {"tee":"tdx","sim":true} is not a TDX report: sim evidence is labelled. */
static void test_sim_flag_requires_tee_sim(void **state)
{
	struct fx *f = *state;
	struct veil_report_opts o = {.nonce = f->nonce, .allow_sim = true};
	struct veil_report_verdict v;
	char *t;

	t = with_field(f->node_rep, NULL, "tee", json_string("tdx"));
	assert_int_equal(veil_report_verify((const uint8_t *)t, strlen(t), &o, &v), VEIL_EFORMAT);
	assert_non_null(strstr(v.error, "\"sim\": true"));
	veil_report_verdict_free(&v);
	free(t);
	t = with_field(f->node_rep, NULL, "sim", json_string("yes"));
	assert_int_equal(veil_report_verify((const uint8_t *)t, strlen(t), &o, &v), VEIL_EFORMAT);
	veil_report_verdict_free(&v);
	free(t);
}

/* The verdict's hex field `key` (top level, or in "quote"). */
static const char *vfield(const struct veil_report_verdict *v, const char *obj, const char *key)
{
	json_t *o = obj ? json_object_get(v->json, obj) : v->json;

	return json_string_value(json_object_get(o, key));
}

static void test_boot_chain_pins(void **state)
{
	struct fx *f = *state;
	struct veil_report_opts o = {.nonce = f->nonce, .allow_sim = true};
	struct veil_report_verdict v;
	struct veil_policy *p, *q;
	char err[512], mrtd[97], rtmr1[97], cfg[97], *t;
	json_t *j;

	assert_int_equal(veil_report_verify((const uint8_t *)f->node_rep, strlen(f->node_rep), &o,
					    &v), 0);
	snprintf(mrtd, sizeof(mrtd), "%s", vfield(&v, NULL, "mrtd"));
	snprintf(rtmr1, sizeof(rtmr1), "%s", vfield(&v, NULL, "rtmr1"));
	snprintf(cfg, sizeof(cfg), "%s", vfield(&v, NULL, "mr_config_id"));
	veil_report_verdict_free(&v);
	p = load("{\"allow_sim\":true,\"models\":{\"stories260K\":{\"mrtd\":[\"%s\"],"
		 "\"rtmr1\":\"%s\",\"mr_config_id\":[\"%s\"]}},\"gateway\":{\"mrtd\":[\"%s\"]}}",
		 mrtd, rtmr1, cfg, mrtd);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 0);
	assert_int_equal(verify(p, VEIL_POLICY_GATEWAY, NULL, f->gw_rep, f->nonce, err,
				sizeof(err)), 0);
	/* canonical JSON keeps them */
	j = veil_policy_to_json(p);
	assert_string_equal(json_string_value(json_array_get(json_object_get(
		json_object_get(json_object_get(j, "models"), "stories260K"), "rtmr1"), 0)), rtmr1);
	t = json_dumps(j, JSON_COMPACT);
	q = load("%s", t);
	free(t);
	json_decref(j);
	veil_policy_free(q);
	veil_policy_free(p);
	/* another MRTD / RTMR2 / MR_CONFIG_ID: refused, named */
	p = load("{\"allow_sim\":true,\"models\":{\"stories260K\":{\"rtmr2\":[\"%s\"]}}}",
		 OTHER_48);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	assert_non_null(strstr(err, "\"rtmr2\" is not one of the pinned"));
	veil_policy_free(p);
	p = load("{\"allow_sim\":true,\"gateway\":{\"mrtd\":[\"%s\"]}}", OTHER_48);
	assert_int_equal(verify(p, VEIL_POLICY_GATEWAY, NULL, f->gw_rep, f->nonce, err,
				sizeof(err)), VEIL_EPERM);
	veil_policy_free(p);
	/* a SEV-SNP pin refuses a TDX (sim) report */
	p = load("{\"allow_sim\":true,\"models\":{\"stories260K\":{\"snp_measurement\":"
		 "[\"%s\"]}}}", OTHER_48);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	assert_non_null(strstr(err, "SEV-SNP evidence"));
	veil_policy_free(p);
	assert_int_equal(load_err("{\"models\":{\"m\":{\"host_data\":[\"00\"]}}}", err,
				  sizeof(err)), VEIL_EFORMAT);
	assert_int_equal(load_err("{\"gateway\":{\"rtmr3\":[]}}", err, sizeof(err)),
			 VEIL_EFORMAT);
}

/* SEV-SNP: no RTMR replay, so the veil measurements in the JSON are not
 * authenticated; a policy pinning them refuses a SEV-SNP verdict, and
 * snp_measurement / host_data are judged against the signed report's
 * fields.  (No SEV-SNP evidence can be generated with veil's keys bound,
 * so the verdict of a verified sim report is relabelled, as
 * veil_report_verify would have filled it for SEV-SNP.) */
static void test_snp_refuses_measurement_pins(void **state)
{
	struct fx *f = *state;
	static const char *const pins[] = {"node_binary", "node_config", "model"};
	struct veil_report_opts o = {.nonce = f->nonce, .allow_sim = true};
	struct veil_report_verdict v;
	struct veil_policy *p;
	char meas[97], host[65];
	const char *hexes[] = {f->bin_hex, f->cfg_hex, f->model_hex};

	memset(meas, 'a', 96);
	meas[96] = 0;
	memset(host, 'b', 64);
	host[64] = 0;
	for (size_t i = 0; i < 4; i++) {
		p = i < 3 ? load("{\"min_tcb_status\":\"any\",\"models\":{\"stories260K\":"
				 "{\"%s\":[\"%s\"]}}}", pins[i], hexes[i])
			  : load("{\"min_tcb_status\":\"any\",\"models\":{\"stories260K\":"
				 "{\"model_sha256\":[\"%s\"]}}}", MODEL_SHA);
		assert_int_equal(veil_report_verify((const uint8_t *)f->node_rep,
						    strlen(f->node_rep), &o, &v), 0);
		/* the same pins pass on the replayed (sim) verdict */
		assert_int_equal(veil_policy_check_verdict(p, VEIL_POLICY_NODE, NULL,
							   (const uint8_t *)f->node_rep,
							   strlen(f->node_rep), &v), 0);
		veil_report_verdict_free(&v);
		assert_int_equal(veil_report_verify((const uint8_t *)f->node_rep,
						    strlen(f->node_rep), &o, &v), 0);
		snprintf(v.tee, sizeof(v.tee), "sev-snp");
		v.sim = false;
		assert_int_equal(veil_policy_check_verdict(p, VEIL_POLICY_NODE, NULL,
							   (const uint8_t *)f->node_rep,
							   strlen(f->node_rep), &v), VEIL_EPERM);
		assert_non_null(strstr(v.error, "SEV-SNP report's event log is not replayed"));
		veil_report_verdict_free(&v);
		veil_policy_free(p);
	}
	/* snp_measurement / host_data against the verdict's quote fields */
	p = load("{\"min_tcb_status\":\"any\",\"models\":{\"stories260K\":{"
		 "\"snp_measurement\":[\"%s\"],\"host_data\":[\"%s\"]}}}", meas, host);
	for (int round = 0; round < 3; round++) {
		json_t *q = json_object();

		assert_int_equal(veil_report_verify((const uint8_t *)f->node_rep,
						    strlen(f->node_rep), &o, &v), 0);
		snprintf(v.tee, sizeof(v.tee), "sev-snp");
		v.sim = false;
		json_object_set_new(q, "measurement", json_string(round == 1 ? OTHER_48 : meas));
		json_object_set_new(q, "host_data", json_string(round == 2 ? OTHER_SHA : host));
		json_object_set_new(v.json, "quote", q);
		assert_int_equal(veil_policy_check_verdict(p, VEIL_POLICY_NODE, NULL,
							   (const uint8_t *)f->node_rep,
							   strlen(f->node_rep), &v),
				 round == 0 ? 0 : VEIL_EPERM);
		if (round)
			assert_non_null(strstr(v.error, round == 1 ? "snp_measurement" : "host_data"));
		veil_report_verdict_free(&v);
	}
	veil_policy_free(p);
	/* a TDX pin refuses a SEV-SNP report */
	p = load("{\"min_tcb_status\":\"any\",\"gateway\":{\"mrtd\":[\"%s\"]}}", OTHER_48);
	assert_int_equal(veil_report_verify((const uint8_t *)f->gw_rep, strlen(f->gw_rep), &o, &v),
			 0);
	snprintf(v.tee, sizeof(v.tee), "sev-snp");
	v.sim = false;
	assert_int_equal(veil_policy_check_verdict(p, VEIL_POLICY_GATEWAY, NULL,
						   (const uint8_t *)f->gw_rep, strlen(f->gw_rep),
						   &v), VEIL_EPERM);
	assert_non_null(strstr(v.error, "(TDX evidence) but the report is sev-snp"));
	veil_report_verdict_free(&v);
	veil_policy_free(p);
}

static void test_model_name_must_be_the_one_asked_for(void **state)
{
	struct fx *f = *state;
	struct veil_policy *p = load("{\"allow_sim\":true}");
	char err[512];

	assert_int_equal(verify(p, VEIL_POLICY_NODE, "llama-70b", f->node_rep, f->nonce, err,
				sizeof(err)), VEIL_EPERM);
	assert_non_null(strstr(err, "serves model \"stories260K\", not \"llama-70b\""));
	assert_int_equal(verify(p, VEIL_POLICY_NODE, "stories260K", f->node_rep, f->nonce, err,
				sizeof(err)), 0);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 0);
	veil_policy_free(p);
}

static void test_other_models_refuse_or_any(void **state)
{
	struct fx *f = *state;
	struct veil_policy *p;
	char err[512];

	/* models names another model: refused by default */
	p = load("{\"allow_sim\":true,\"models\":{\"other\":{\"model_sha256\":[\"%s\"]}}}",
		 OTHER_SHA);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	assert_non_null(strstr(err, "\"stories260K\" is not in the policy"));
	veil_policy_free(p);
	p = load("{\"allow_sim\":true,\"models\":{\"other\":{}},\"other_models\":\"refuse\"}");
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	veil_policy_free(p);
	p = load("{\"allow_sim\":true,\"models\":{\"other\":{}},\"other_models\":\"any\"}");
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 0);
	veil_policy_free(p);
	/* no model named at all: "refuse" refuses every model */
	p = load("{\"allow_sim\":true,\"other_models\":\"refuse\"}");
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	veil_policy_free(p);
	p = load("{\"allow_sim\":true}");
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 0);
	veil_policy_free(p);
}

static void test_gpu_requirements(void **state)
{
	struct fx *f = *state;
	struct veil_policy *p;
	char err[512];

	p = load("{\"allow_sim\":true,\"gpu\":{\"required\":true}}");
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	assert_non_null(strstr(err, "0 verified GPUs, at least 1 required"));
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->gpu_rep, f->nonce, err, sizeof(err)),
			 0);
	/* GPUs are the nodes' requirement: a gateway has none (it runs no
	 * model), and judged by it, gateway mode refused every request */
	assert_int_equal(verify(p, VEIL_POLICY_GATEWAY, NULL, f->gw_rep, f->nonce, err, sizeof(err)),
			 0);
	veil_policy_free(p);
	p = load("{\"allow_sim\":true,\"gpu\":{\"min_count\":2}}");
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->gpu_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	assert_non_null(strstr(err, "at least 2"));
	veil_policy_free(p);
	p = load("{\"allow_sim\":true,\"gpu\":{\"arch\":[\"BLACKWELL\"]}}");
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->gpu_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	assert_non_null(strstr(err, "not an allowed architecture"));
	/* no GPU at all: nothing to object to unless required */
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, f->nonce, err, sizeof(err)),
			 0);
	veil_policy_free(p);
	p = load("{\"allow_sim\":true,\"gpu\":{\"required\":true,\"arch\":[\"HOPPER\"]}}");
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->gpu_rep, f->nonce, err, sizeof(err)),
			 0);
	veil_policy_free(p);
}

static void test_roles_and_gateway_pins(void **state)
{
	struct fx *f = *state;
	struct veil_policy *p = load("{\"allow_sim\":true}");
	char err[512];

	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->gw_rep, f->nonce, err, sizeof(err)),
			 VEIL_EPERM);
	assert_non_null(strstr(err, "expected a node report, this one is a gateway's"));
	assert_int_equal(verify(p, VEIL_POLICY_GATEWAY, NULL, f->node_rep, f->nonce, err,
				sizeof(err)), VEIL_EPERM);
	assert_non_null(strstr(err, "expected a gateway report"));
	assert_int_equal(verify(p, VEIL_POLICY_GATEWAY, NULL, f->gw_rep, f->nonce, err,
				sizeof(err)), 0);
	veil_policy_free(p);
	p = load("{\"allow_sim\":true,\"gateway\":{\"gateway_binary\":[\"%s\"],"
		 "\"gateway_config\":[\"%s\"]}}", f->gbin_hex, f->gcfg_hex);
	assert_int_equal(verify(p, VEIL_POLICY_GATEWAY, NULL, f->gw_rep, f->nonce, err,
				sizeof(err)), 0);
	veil_policy_free(p);
	p = load("{\"allow_sim\":true,\"gateway\":{\"gateway_config\":[\"%s\"]}}", OTHER_48);
	assert_int_equal(verify(p, VEIL_POLICY_GATEWAY, NULL, f->gw_rep, f->nonce, err,
				sizeof(err)), VEIL_EPERM);
	assert_non_null(strstr(err, "gateway \"gateway_config\""));
	veil_policy_free(p);
}

static void test_nonce_is_checked_unless_skipped(void **state)
{
	struct fx *f = *state;
	struct veil_policy *p = load("{\"allow_sim\":true}");
	uint8_t other[32];
	char err[512];

	memcpy(other, f->nonce, 32);
	other[0] ^= 1;
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, other, err, sizeof(err)),
			 VEIL_EPERM);
	assert_non_null(strstr(err, "nonce"));
	/* no nonce is not a silent skip */
	assert_int_equal(verify(p, VEIL_POLICY_NODE, NULL, f->node_rep, NULL, err, sizeof(err)),
			 VEIL_EINVAL);
	assert_non_null(strstr(err, "no expected nonce"));
	{
		struct veil_policy_verify_opts po = {.skip_nonce = true};
		struct veil_report_verdict v;

		assert_int_equal(veil_policy_verify_report_ex(p, VEIL_POLICY_NODE, NULL,
							      (const uint8_t *)f->node_rep,
							      strlen(f->node_rep), &po, &v), 0);
		assert_true(json_is_false(json_object_get(v.json, "nonce_checked")));
		veil_report_verdict_free(&v);
		/* judged at another time: the sim chain is not valid in 1990 */
		po.now = 631152000;
		assert_true(veil_policy_verify_report_ex(p, VEIL_POLICY_NODE, NULL,
							 (const uint8_t *)f->node_rep,
							 strlen(f->node_rep), &po, &v) < 0);
		veil_report_verdict_free(&v);
	}
	veil_policy_free(p);
}

/* A real SEV-SNP report (go-sev-guest's Milan sample) from ../shared, or
 * NULL with a skip message when the vectors are absent. */
static uint8_t *snp_sample(size_t *len)
{
	const char *root = getenv("VEIL_SHARED");
	char path[1024];
	uint8_t *buf;
	FILE *f;

	snprintf(path, sizeof(path), "%s/vectors/attest/sev-snp/go-sev-guest/attestation.bin",
		 root ? root : "../shared");
	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "skip: %s absent (set VEIL_SHARED)\n", path);
		return NULL;
	}
	buf = malloc(VEIL_SNP_REPORT_LEN + 1);
	assert_non_null(buf);
	*len = fread(buf, 1, VEIL_SNP_REPORT_LEN + 1, f);
	fclose(f);
	assert_int_equal(*len, VEIL_SNP_REPORT_LEN);
	return buf;
}

static void test_snp_min_tcb_loads_and_round_trips(void **state)
{
	struct veil_policy *p, *q;
	char err[512], *t;
	json_t *j, *m;

	(void)state;
	p = load("{\"tee\":[\"sev-snp\"],\"snp_min_tcb\":{\"bootloader\":3,\"tee\":0,"
		 "\"snp\":8,\"microcode\":115}}");
	j = veil_policy_to_json(p);
	m = json_object_get(j, "snp_min_tcb");
	assert_int_equal(json_integer_value(json_object_get(m, "bootloader")), 3);
	assert_int_equal(json_integer_value(json_object_get(m, "snp")), 8);
	assert_int_equal(json_integer_value(json_object_get(m, "microcode")), 115);
	assert_int_equal(json_integer_value(json_object_get(m, "fmc")), 0);
	t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	q = load("%s", t);
	free(t);
	json_decref(j);
	veil_policy_free(q);
	veil_policy_free(p);
	/* without it the canonical form says nothing about SNP minimums */
	p = load("{}");
	j = veil_policy_to_json(p);
	assert_null(json_object_get(j, "snp_min_tcb"));
	json_decref(j);
	veil_policy_free(p);
	assert_int_equal(load_err("{\"snp_min_tcb\":{\"snp\":256}}", err, sizeof(err)),
			 VEIL_EFORMAT);
	assert_non_null(strstr(err, "snp_min_tcb.snp"));
	assert_int_equal(load_err("{\"snp_min_tcb\":{\"tee\":-1}}", err, sizeof(err)),
			 VEIL_EFORMAT);
	assert_int_equal(load_err("{\"snp_min_tcb\":{\"tee\":\"1\"}}", err, sizeof(err)),
			 VEIL_EFORMAT);
	assert_int_equal(load_err("{\"snp_min_tcb\":{\"ucode\":1}}", err, sizeof(err)),
			 VEIL_EFORMAT);
	assert_non_null(strstr(err, "ucode"));
	assert_int_equal(load_err("{\"snp_min_tcb\":[1,2]}", err, sizeof(err)), VEIL_EFORMAT);
}

/* "snp_max_vmpl": 0..3, default 0, in the canonical form; pinning an SNP
 * report raises it to the report's VMPL unless the file set it. */
static void test_snp_max_vmpl_loads_pins_and_round_trips(void **state)
{
	const char *root = getenv("VEIL_SHARED");
	struct veil_buf rep = VEIL_BUF_INIT(1u << 12);
	struct veil_policy *p;
	char err[512], path[1024], *hex, *doc;
	json_t *j;
	FILE *f;

	(void)state;
	p = load("{\"snp_max_vmpl\":2}");
	j = veil_policy_to_json(p);
	assert_int_equal(json_integer_value(json_object_get(j, "snp_max_vmpl")), 2);
	json_decref(j);
	veil_policy_free(p);
	p = load("{}");
	j = veil_policy_to_json(p);
	assert_int_equal(json_integer_value(json_object_get(j, "snp_max_vmpl")), 0);
	assert_true(json_is_integer(json_object_get(j, "snp_max_vmpl")));
	json_decref(j);
	veil_policy_free(p);
	assert_int_equal(load_err("{\"snp_max_vmpl\":4}", err, sizeof(err)), VEIL_EFORMAT);
	assert_non_null(strstr(err, "snp_max_vmpl"));
	assert_int_equal(load_err("{\"snp_max_vmpl\":-1}", err, sizeof(err)), VEIL_EFORMAT);
	assert_int_equal(load_err("{\"snp_max_vmpl\":\"1\"}", err, sizeof(err)), VEIL_EFORMAT);
	assert_int_equal(load_err("{\"snp_max_vmpl\":1.0}", err, sizeof(err)), VEIL_EFORMAT);

	/* AMD's VLEK sample was requested at VMPL 1 */
	snprintf(path, sizeof(path), "%s/vectors/attest/sev-snp/trustee/test-vlek-report.bin",
		 root ? root : "../shared");
	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "skip: %s absent (set VEIL_SHARED)\n", path);
		skip();
	}
	assert_int_equal(veil_buf_reserve(&rep, VEIL_SNP_REPORT_LEN), 0);
	rep.len = fread(rep.data, 1, VEIL_SNP_REPORT_LEN, f);
	fclose(f);
	assert_int_equal(rep.len, VEIL_SNP_REPORT_LEN);
	hex = malloc(2 * rep.len + 1);
	assert_non_null(hex);
	assert_int_equal(veil_hex_encode(rep.data, rep.len, hex, 2 * rep.len + 1), 0);
	doc = malloc(2 * rep.len + 128);
	assert_non_null(doc);
	sprintf(doc, "{\"tee\":\"sev-snp\",\"quote\":\"%s\",\"measurements\":{}}", hex);
	for (int set = 0; set < 2; set++) {
		p = set ? load("{\"snp_max_vmpl\":0}") : load("{}");
		assert_int_equal(veil_policy_pin(p, VEIL_POLICY_GATEWAY, NULL, (const uint8_t *)doc,
						 strlen(doc)), 0);
		j = veil_policy_to_json(p);
		/* trust on first use takes the VMPL it saw; a file's choice stays */
		assert_int_equal(json_integer_value(json_object_get(j, "snp_max_vmpl")), set ? 0 : 1);
		assert_non_null(json_object_get(j, "snp_min_tcb"));
		json_decref(j);
		veil_policy_free(p);
	}
	free(doc);
	free(hex);
	veil_buf_free(&rep);
}

static void test_snp_min_tcb_judges_reported_tcb(void **state)
{
	struct veil_snp_report r;
	struct veil_snp_tcb t, low;
	struct veil_policy *p;
	uint8_t *raw;
	size_t len;

	(void)state;
	raw = snp_sample(&len);
	if (!raw)
		skip();
	assert_int_equal(veil_snp_report_parse(raw, len, &r), 0);
	veil_snp_tcb_decode(r.reported_tcb, veil_snp_report_product(&r), &t);
	/* no minimum: refused, and the error says how to accept SNP */
	p = load("{}");
	assert_int_equal(veil_policy_snp_tcb_check(p, &t), VEIL_EPERM);
	assert_non_null(strstr(veil_err_detail(), "snp_min_tcb"));
	veil_policy_free(p);
	/* the sample's own TCB as the minimum passes; one more in any part fails */
	p = load("{\"snp_min_tcb\":{\"bootloader\":%u,\"tee\":%u,\"snp\":%u,\"microcode\":%u}}",
		 t.bootloader, t.tee, t.snp, t.microcode);
	assert_int_equal(veil_policy_snp_tcb_check(p, &t), 0);
	veil_policy_free(p);
	p = load("{\"snp_min_tcb\":{}}");
	assert_int_equal(veil_policy_snp_tcb_check(p, &t), 0);
	veil_policy_free(p);
	{
		const char *parts[] = {"bootloader", "tee", "snp", "microcode"};
		unsigned have[] = {t.bootloader, t.tee, t.snp, t.microcode};

		for (size_t i = 0; i < 4; i++) {
			if (have[i] == 255)
				continue;
			p = load("{\"snp_min_tcb\":{\"%s\":%u}}", parts[i], have[i] + 1);
			assert_int_equal(veil_policy_snp_tcb_check(p, &t), VEIL_EPERM);
			assert_non_null(strstr(veil_err_detail(), parts[i]));
			veil_policy_free(p);
		}
	}
	low = t;
	low.microcode = 0;
	p = load("{\"snp_min_tcb\":{\"microcode\":1}}");
	assert_int_equal(veil_policy_snp_tcb_check(p, &low), VEIL_EPERM);
	veil_policy_free(p);
	free(raw);
}

static void test_pin_sets_snp_min_tcb(void **state)
{
	struct fx *f = *state;
	struct veil_snp_report r;
	struct veil_snp_tcb t;
	struct veil_policy *p;
	char *hex, *txt;
	uint8_t *raw;
	size_t len;
	json_t *doc, *m, *j;

	raw = snp_sample(&len);
	if (!raw)
		skip();
	assert_int_equal(veil_snp_report_parse(raw, len, &r), 0);
	veil_snp_tcb_decode(r.reported_tcb, veil_snp_report_product(&r), &t);
	hex = malloc(2 * len + 1);
	assert_non_null(hex);
	assert_int_equal(veil_hex_encode(raw, len, hex, 2 * len + 1), 0);
	/* a node report as an SNP node would send it (pin parses, not verifies) */
	doc = json_loads(f->node_rep, 0, NULL);
	assert_non_null(doc);
	json_object_set_new(doc, "tee", json_string("sev-snp"));
	json_object_set_new(doc, "quote", json_string(hex));
	txt = json_dumps(doc, JSON_COMPACT);
	p = veil_policy_new();
	assert_int_equal(veil_policy_pin(p, VEIL_POLICY_NODE, NULL, (const uint8_t *)txt,
					 strlen(txt)), 0);
	assert_int_equal(veil_policy_snp_tcb_check(p, &t), 0);
	j = veil_policy_to_json(p);
	m = json_object_get(j, "snp_min_tcb");
	assert_non_null(m);
	assert_int_equal(json_integer_value(json_object_get(m, "microcode")), t.microcode);
	assert_int_equal(json_integer_value(json_object_get(m, "snp")), t.snp);
	/* the signed launch measurement and HOST_DATA are pinned; the veil
	 * measurements (unauthenticated JSON without a replay) are not */
	m = json_object_get(json_object_get(j, "models"), "stories260K");
	{
		char mh[97], hh[65];

		veil_hex_encode(r.measurement, 48, mh, sizeof(mh));
		veil_hex_encode(r.host_data, 32, hh, sizeof(hh));
		assert_string_equal(json_string_value(json_array_get(
					    json_object_get(m, "snp_measurement"), 0)), mh);
		assert_string_equal(json_string_value(json_array_get(
					    json_object_get(m, "host_data"), 0)), hh);
	}
	assert_null(json_object_get(m, "node_binary"));
	assert_null(json_object_get(m, "model_sha256"));
	assert_null(json_object_get(m, "mrtd"));
	json_decref(j);
	veil_policy_free(p);
	/* a quote that is not an SNP report is refused */
	json_object_set_new(doc, "quote", json_string("00"));
	free(txt);
	txt = json_dumps(doc, JSON_COMPACT);
	p = veil_policy_new();
	assert_int_equal(veil_policy_pin(p, VEIL_POLICY_NODE, NULL, (const uint8_t *)txt,
					 strlen(txt)), VEIL_EFORMAT);
	veil_policy_free(p);
	free(txt);
	json_decref(doc);
	free(hex);
	free(raw);
}

static void test_pin_trusts_on_first_use(void **state)
{
	struct fx *f = *state;
	struct veil_policy *p = veil_policy_new();
	struct veil_attester *other;
	struct veil_report_extra x = {"stories260K", MODEL_SHA};
	json_t *j, *m;
	char err[512], *rep;
	uint8_t saved[48];

	veil_policy_set_allow_sim(p, true);
	assert_int_equal(veil_policy_pin(p, VEIL_POLICY_NODE, NULL, (const uint8_t *)f->node_rep,
					 strlen(f->node_rep)), 0);
	assert_int_equal(veil_policy_pin(p, VEIL_POLICY_GATEWAY, NULL, (const uint8_t *)f->gw_rep,
					 strlen(f->gw_rep)), 0);
	/* roles are not mixed up */
	assert_int_equal(veil_policy_pin(p, VEIL_POLICY_GATEWAY, NULL, (const uint8_t *)f->node_rep,
					 strlen(f->node_rep)), VEIL_EFORMAT);
	assert_int_equal(veil_policy_pin(p, VEIL_POLICY_NODE, NULL, (const uint8_t *)f->gw_rep,
					 strlen(f->gw_rep)), VEIL_EFORMAT);
	j = veil_policy_to_json(p);
	m = json_object_get(json_object_get(j, "models"), "stories260K");
	assert_string_equal(json_string_value(json_array_get(json_object_get(m, "node_binary"), 0)),
			    f->bin_hex);
	assert_string_equal(json_string_value(json_array_get(json_object_get(m, "model"), 0)),
			    f->model_hex);
	assert_string_equal(json_string_value(json_array_get(json_object_get(m, "model_sha256"), 0)),
			    MODEL_SHA);
	assert_string_equal(json_string_value(json_object_get(j, "other_models")), "refuse");
	assert_string_equal(json_string_value(json_array_get(json_object_get(
				    json_object_get(j, "gateway"), "gateway_binary"), 0)),
			    f->gbin_hex);
	/* the boot chain of the (sim) quote is pinned for both roles */
	{
		static const char *const boot[] = {"mrtd", "rtmr0", "rtmr1", "rtmr2",
						   "mr_config_id"};
		struct veil_report_opts o = {.nonce = f->nonce, .allow_sim = true};
		struct veil_report_verdict v;

		assert_int_equal(veil_report_verify((const uint8_t *)f->node_rep,
						    strlen(f->node_rep), &o, &v), 0);
		for (size_t i = 0; i < 5; i++) {
			assert_string_equal(json_string_value(json_array_get(
						    json_object_get(m, boot[i]), 0)),
					    vfield(&v, NULL, boot[i]));
			assert_string_equal(json_string_value(json_array_get(json_object_get(
						    json_object_get(j, "gateway"), boot[i]), 0)),
					    vfield(&v, NULL, boot[i]));
		}
		assert_null(json_object_get(m, "snp_measurement"));
		veil_report_verdict_free(&v);
	}
	json_decref(j);
	/* what was pinned verifies, fresh */
	assert_int_equal(verify(p, VEIL_POLICY_NODE, "stories260K", f->node_rep, f->nonce, err,
				sizeof(err)), 0);
	assert_int_equal(verify(p, VEIL_POLICY_GATEWAY, NULL, f->gw_rep, f->nonce, err,
				sizeof(err)), 0);
	/* a node with other weights under the same name does not */
	memcpy(saved, f->model, 48);
	SHA384((const uint8_t *)"other weights", 13, f->model);
	other = node_attester(f, 0);
	memcpy(f->model, saved, 48);
	rep = report_text(other, true, f->nonce, &x);
	assert_int_equal(verify(p, VEIL_POLICY_NODE, "stories260K", rep, f->nonce, err,
				sizeof(err)), VEIL_EPERM);
	assert_non_null(strstr(err, "\"model\" measurement"));
	free(rep);
	veil_attester_free(other);
	/* a model name must come from somewhere */
	{
		struct veil_attester_opts o = {.tee = "sim"};
		struct veil_attester *a;

		assert_int_equal(veil_attester_open(&o, &a), 0);
		assert_int_equal(veil_attester_extend(a, VEIL_EVLOG_NODE_BINARY, f->bin, 48), 0);
		rep = report_text(a, true, f->nonce, NULL);
		assert_int_equal(veil_policy_pin(p, VEIL_POLICY_NODE, NULL, (const uint8_t *)rep,
						 strlen(rep)), VEIL_EINVAL);
		free(rep);
		veil_attester_free(a);
	}
	veil_policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_report_roles_node_and_gateway_shapes),
		cmocka_unit_test(test_report_mixing_node_and_gateway_events_is_refused),
		cmocka_unit_test(test_default_policy_and_its_canonical_json),
		cmocka_unit_test(test_policy_round_trips_through_canonical_json),
		cmocka_unit_test(test_policy_load_refuses_unknown_keys_and_bad_values),
		cmocka_unit_test(test_sim_is_refused_unless_allowed),
		cmocka_unit_test(test_tcb_status_ordering),
		cmocka_unit_test(test_measurement_pins),
		cmocka_unit_test(test_model_sha256_pin),
		cmocka_unit_test(test_model_sha256_is_bound_to_the_quote),
		cmocka_unit_test(test_sim_flag_requires_tee_sim),
		cmocka_unit_test(test_boot_chain_pins),
		cmocka_unit_test(test_snp_refuses_measurement_pins),
		cmocka_unit_test(test_model_name_must_be_the_one_asked_for),
		cmocka_unit_test(test_other_models_refuse_or_any),
		cmocka_unit_test(test_gpu_requirements),
		cmocka_unit_test(test_roles_and_gateway_pins),
		cmocka_unit_test(test_nonce_is_checked_unless_skipped),
		cmocka_unit_test(test_pin_trusts_on_first_use),
		cmocka_unit_test(test_snp_min_tcb_loads_and_round_trips),
		cmocka_unit_test(test_snp_max_vmpl_loads_pins_and_round_trips),
		cmocka_unit_test(test_snp_min_tcb_judges_reported_tcb),
		cmocka_unit_test(test_pin_sets_snp_min_tcb),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
