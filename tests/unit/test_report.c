/* Unit tests of the report module (include/veil/report.h): NEAR AI report
 * verification on the real samples in $VEIL_SHARED/vectors/nearai (expected
 * outcomes from vectors/MANIFEST.md: signatures and chain valid, TCB status
 * unknown without collateral, OutOfDate with the cross-paired collateral,
 * RTMR replay, mr_config_id = 01 || sha256(app_compose)), their tampered
 * variants, the policy file, sniffing, and malformed veil reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "veil/base.h"
#include "veil/report.h"
#include "veil/tdx.h"
#include "veil/x509.h"

static bool load(const char *rel, struct veil_buf *b)
{
	const char *root = getenv("VEIL_SHARED");
	char path[4096];

	snprintf(path, sizeof(path), "%s/vectors/%s", root && *root ? root : "../shared", rel);
	memset(b, 0, sizeof(*b));
	b->max = 4u << 20;
	if (veil_buf_read_file(b, path) < 0) {
		fprintf(stderr, "test_report: SKIP: %s not readable; set VEIL_SHARED to the shared "
			"data directory\n", path);
		return false;
	}
	return true;
}

static int64_t at(const char *iso)
{
	int64_t t;

	assert_int_equal(veil_x509_iso8601_parse(iso, strlen(iso), &t), 0);
	return t;
}

static int nearai(json_t *doc, const struct veil_report_opts *o, struct veil_report_verdict *v)
{
	char *txt = json_dumps(doc, JSON_COMPACT);
	int rc;

	assert_non_null(txt);
	rc = veil_nearai_verify((const uint8_t *)txt, strlen(txt), o, v);
	free(txt);
	assert_non_null(v->json);
	assert_string_equal(json_string_value(json_object_get(v->json, "kind")), "nearai");
	assert_int_equal(json_is_true(json_object_get(v->json, "ok")), rc == 0);
	return rc;
}

static bool checked(const struct veil_report_verdict *v, const char *name)
{
	return json_is_true(json_object_get(json_object_get(v->json, "checks"), name));
}

static void test_nearai_private_ml_sdk_report(void **state)
{
	struct veil_buf b, cb;
	struct veil_report_opts o = {0};
	struct veil_report_verdict v;
	struct veil_tdx_collateral *c;
	json_t *doc;

	(void)state;
	if (!load("nearai/private-ml-sdk-report.json", &b))
		skip();
	doc = json_loadb((const char *)b.data, b.len, 0, NULL);
	assert_non_null(doc);
	o.now = at("2026-03-01T00:00:00Z");
	/* no collateral: signatures and chain, GPU evidence; status unknown */
	assert_int_equal(nearai(doc, &o, &v), 0);
	assert_true(v.ok);
	assert_string_equal(v.status, "");
	assert_string_equal(json_string_value(json_object_get(v.json, "status")), "unknown");
	assert_true(checked(&v, "quote") && checked(&v, "gpus"));
	assert_int_equal(json_array_size(json_object_get(v.json, "gpus")), 1);
	assert_non_null(json_object_get(v.json, "warnings"));
	veil_report_verdict_free(&v);
	/* with the cross-paired collateral: OutOfDate and its advisories */
	if (!load("attest/tdx/dcap-qvl/tdx_quote_outdated_collateral.json", &cb))
		skip();
	assert_int_equal(veil_tdx_collateral_parse(cb.data, cb.len, &c), 0);
	o.collateral = c;
	assert_int_equal(nearai(doc, &o, &v), 0);
	assert_string_equal(v.status, "OutOfDate");
	assert_int_equal(json_array_size(json_object_get(v.json, "advisories")), 5);
	veil_report_verdict_free(&v);
	/* a nonce the GPU evidence does not carry */
	{
		uint8_t nonce[32] = {0};

		o.nonce = nonce;
		assert_true(nearai(doc, &o, &v) < 0);
		assert_false(v.ok);
		veil_report_verdict_free(&v);
	}
	veil_tdx_collateral_free(c);
	json_decref(doc);
	veil_buf_free(&b);
	veil_buf_free(&cb);
}

/* quote.hex + event_log.json + info.json, as NEAR AI's report carries them */
static json_t *dstack_report(void)
{
	struct veil_buf q, ev, info;
	json_t *doc;

	if (!load("nearai/quote.hex", &q) || !load("nearai/event_log.json", &ev) ||
	    !load("nearai/info.json", &info))
		return NULL;
	while (q.len && (q.data[q.len - 1] == '\n' || q.data[q.len - 1] == '\r'))
		q.len--;
	doc = json_pack("{s:s%, s:s%, s:o}", "intel_quote", (const char *)q.data, q.len,
			"event_log", (const char *)ev.data, ev.len, "info",
			json_loadb((const char *)info.data, info.len, 0, NULL));
	veil_buf_free(&q);
	veil_buf_free(&ev);
	veil_buf_free(&info);
	return doc;
}

static void test_nearai_dstack_quote_event_log_and_compose(void **state)
{
	struct veil_report_opts o = {0};
	struct veil_report_verdict v;
	json_t *doc = dstack_report(), *c, *tcb;

	(void)state;
	if (!doc)
		skip();
	assert_int_equal(nearai(doc, &o, &v), 0);
	assert_true(checked(&v, "quote") && checked(&v, "event_log") && checked(&v, "mr_config_id") &&
		    checked(&v, "compose_hash_event"));
	assert_int_equal(json_integer_value(json_object_get(v.json, "event_log_events")), 29);
	assert_string_equal(json_string_value(json_object_get(v.json, "compose_hash")),
			    "62dd36d22b7d704aaa4d598226801ed4e6a3bfd17dde762b2efd9876768be800");
	veil_report_verdict_free(&v);

	/* app_compose changed by one byte: mr_config_id no longer matches */
	c = json_deep_copy(doc);
	tcb = json_object_get(json_object_get(c, "info"), "tcb_info");
	{
		char *s = strdup(json_string_value(json_object_get(tcb, "app_compose")));

		s[10] ^= 1;
		json_object_set_new(tcb, "app_compose", json_string(s));
		free(s);
	}
	assert_int_equal(nearai(c, &o, &v), VEIL_EBADMSG);
	assert_non_null(strstr(v.error, "mr_config_id"));
	veil_report_verdict_free(&v);
	json_decref(c);

	/* event log with one digest changed: replay fails */
	c = json_deep_copy(doc);
	{
		json_t *arr = json_loads(json_string_value(json_object_get(c, "event_log")), 0, NULL);
		json_t *e = json_array_get(arr, 5);
		char *s = strdup(json_string_value(json_object_get(e, "digest")));

		s[0] = s[0] == 'a' ? 'b' : 'a';
		json_object_set_new(e, "digest", json_string(s));
		free(s);
		json_object_set_new(c, "event_log", arr);
	}
	assert_int_equal(nearai(c, &o, &v), VEIL_EBADMSG);
	assert_non_null(strstr(v.error, "event_log"));
	veil_report_verdict_free(&v);
	json_decref(c);

	/* a signing address the quote does not bind */
	c = json_deep_copy(doc);
	json_object_set_new(c, "signing_address",
			    json_string("0x0101010101010101010101010101010101010101"));
	assert_int_equal(nearai(c, &o, &v), VEIL_EBADMSG);
	veil_report_verdict_free(&v);
	json_object_set_new(c, "tls_cert_fingerprint", json_string("0101010101010101010101010101010101010101010101010101010101010101"));
	assert_int_equal(nearai(c, &o, &v), VEIL_EBADMSG);
	assert_non_null(strstr(v.error, "tls_cert_fingerprint"));
	veil_report_verdict_free(&v);
	json_decref(c);

	/* a flipped quote byte (MRTD) */
	c = json_deep_copy(doc);
	{
		char *s = strdup(json_string_value(json_object_get(c, "intel_quote")));

		s[2 * (48 + 136)] = s[2 * (48 + 136)] == '0' ? '1' : '0';
		json_object_set_new(c, "intel_quote", json_string(s));
		free(s);
	}
	assert_int_equal(nearai(c, &o, &v), VEIL_EBADMSG);
	veil_report_verdict_free(&v);
	json_decref(c);

	/* a "_tcb_info" key of the document never stands in for the parsed
	 * info.tcb_info string: here the real one has a changed app_compose
	 * (mr_config_id fails) and the planted one the genuine compose */
	c = json_deep_copy(doc);
	tcb = json_deep_copy(json_object_get(json_object_get(c, "info"), "tcb_info"));
	assert_true(json_is_object(tcb));
	json_object_set_new(c, "_tcb_info", json_deep_copy(tcb));
	{
		char *s = strdup(json_string_value(json_object_get(tcb, "app_compose"))), *t;

		s[10] ^= 1;
		json_object_set_new(tcb, "app_compose", json_string(s));
		free(s);
		t = json_dumps(tcb, JSON_COMPACT);
		json_object_set_new(json_object_get(c, "info"), "tcb_info", json_string(t));
		free(t);
	}
	json_decref(tcb);
	assert_int_equal(nearai(c, &o, &v), VEIL_EBADMSG);
	assert_non_null(strstr(v.error, "mr_config_id"));
	veil_report_verdict_free(&v);
	json_decref(c);
	json_decref(doc);
}

/* NEAR AI's composite form, with tcb_info served as a JSON string. */
static void test_nearai_composite_report(void **state)
{
	struct veil_buf b;
	struct veil_report_opts o = {0};
	struct veil_report_verdict v;
	json_t *gw = dstack_report(), *model, *doc, *info;
	char *tcb;

	(void)state;
	if (!gw || !load("nearai/private-ml-sdk-report.json", &b))
		skip();
	model = json_loadb((const char *)b.data, b.len, 0, NULL);
	info = json_object_get(gw, "info");
	tcb = json_dumps(json_object_get(info, "tcb_info"), JSON_COMPACT);
	json_object_set_new(info, "tcb_info", json_string(tcb));
	free(tcb);
	json_object_del(gw, "event_log"); /* then it comes from tcb_info.event_log */
	doc = json_pack("{s:o, s:[o]}", "gateway_attestation", gw, "model_attestations", model);
	assert_non_null(doc);
	o.now = at("2026-03-01T00:00:00Z");
	assert_int_equal(nearai(doc, &o, &v), 0);
	{
		json_t *c = json_object_get(v.json, "components");

		assert_int_equal(json_array_size(c), 2);
		assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "role")),
				    "gateway");
		assert_true(json_is_true(json_object_get(
			json_object_get(json_array_get(c, 0), "checks"), "event_log")));
		assert_true(json_is_true(json_object_get(
			json_object_get(json_array_get(c, 0), "checks"), "mr_config_id")));
	}
	veil_report_verdict_free(&v);
	/* one bad component fails the whole */
	json_object_set_new(json_object_get(doc, "gateway_attestation"), "signing_address",
			    json_string("0x0101010101010101010101010101010101010101"));
	assert_int_equal(nearai(doc, &o, &v), VEIL_EBADMSG);
	assert_non_null(strstr(v.error, "gateway 0"));
	veil_report_verdict_free(&v);
	json_decref(doc);
	veil_buf_free(&b);
}

static void test_policy_load(void **state)
{
	struct veil_report_policy *p = NULL;
	char good[400];
	char typo[400];
	const char *bad[] = {"[]", "{\"model\":\"00\"}", "{\"tcb_status\":[1]}", "{\"tcb_status\":\"x\"}",
			     "not json",
			     /* an empty list would accept any status */
			     "{\"tcb_status\":[]}",
			     /* a veil-policy/1 file read here would enforce nothing */
			     "{\"version\":\"veil-policy/1\",\"models\":{}}",
			     typo};

	(void)state;
	snprintf(good, sizeof(good), "{\"model\":\"%096d\",\"tcb_status\":[\"UpToDate\",\"SWHardeningNeeded\"]}", 7);
	/* a typo must not weaken the policy to nothing */
	snprintf(typo, sizeof(typo), "{\"node_binry\":\"%096d\"}", 7);
	assert_int_equal(veil_report_policy_load((const uint8_t *)good, strlen(good), &p), 0);
	assert_non_null(p->model);
	assert_int_equal(p->model[47], 7);
	assert_null(p->node_binary);
	assert_int_equal(p->n_tcb_status, 2);
	assert_string_equal(p->tcb_status[1], "SWHardeningNeeded");
	veil_report_policy_free(p);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(bad); i++) {
		p = NULL;
		assert_true(veil_report_policy_load((const uint8_t *)bad[i], strlen(bad[i]), &p) < 0);
		assert_null(p);
	}
}

static void test_sniff(void **state)
{
	const char *r = " {\"version\":\"veil-report/1\",\"tee\":\"sim\"}";
	const char *n = "{\"signing_address\":\"0x00\",\"intel_quote\":\"00\"}";

	(void)state;
	assert_true(veil_report_sniff((const uint8_t *)r, strlen(r)));
	assert_false(veil_nearai_sniff((const uint8_t *)r, strlen(r)));
	assert_true(veil_nearai_sniff((const uint8_t *)n, strlen(n)));
	assert_false(veil_report_sniff((const uint8_t *)n, strlen(n)));
	assert_false(veil_report_sniff((const uint8_t *)"\x04\x00", 2));
}

static void test_malformed_reports_give_a_verdict(void **state)
{
	const char *cases[] = {
		"",
		"[]",
		"{\"version\":\"veil-report/1\"}",
		"{\"version\":\"veil-report/1\",\"tee\":\"tdx\",\"nonce\":\"00\"}",
		"{\"version\":\"veil-report/1\",\"tee\":\"tdx\",\"version\":\"x\"}",
		"{\"version\":\"veil-report/1\",\"tee\":\"tdx\",\"nonce\":"
		"\"0000000000000000000000000000000000000000000000000000000000000000\",\"keys\":{}}",
	};
	struct veil_report_opts o = {.skip_nonce = true, .allow_sim = true};
	struct veil_report_verdict v;

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(cases); i++) {
		assert_true(veil_report_verify((const uint8_t *)cases[i], strlen(cases[i]), &o, &v) < 0);
		assert_false(v.ok);
		assert_true(v.error[0] != 0);
		assert_non_null(v.json);
		assert_true(json_is_false(json_object_get(v.json, "ok")));
		assert_true(json_is_string(json_object_get(v.json, "error")));
		assert_true(json_is_array(json_object_get(v.json, "advisories")));
		veil_report_verdict_free(&v);
	}
	assert_int_equal(veil_report_build(NULL, NULL), VEIL_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nearai_private_ml_sdk_report),
		cmocka_unit_test(test_nearai_dstack_quote_event_log_and_compose),
		cmocka_unit_test(test_nearai_composite_report),
		cmocka_unit_test(test_policy_load),
		cmocka_unit_test(test_sniff),
		cmocka_unit_test(test_malformed_reports_give_a_verdict),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
