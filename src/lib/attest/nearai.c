/* veil report: verification of NEAR AI's attestation report
 * (GET /v1/attestation/report of nearai/vllm-proxy and the early
 * nearai/private-ml-sdk {"intel_quote","nvidia_payload"} form).  See
 * include/veil/report.h for what is checked, and the shared vectors'
 * nearai/README.md for the formats. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "report_impl.h"
#include "veil/base.h"
#include "veil/eventlog.h"
#include "veil/nvgpu.h"
#include "veil/report.h"
#include "veil/tdx.h"

static void warn(json_t *j, const char *msg)
{
	json_t *w = json_object_get(j, "warnings");

	if (!w) {
		w = json_array();
		json_object_set_new(j, "warnings", w);
	}
	json_array_append_new(w, json_string(msg));
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

/* intel_quote: hex (optionally 0x) or base64. */
static int quote_bytes(json_t *doc, uint8_t **out, size_t *len)
{
	json_t *s = json_object_get(doc, "intel_quote");
	const char *p = json_string_value(s);
	size_t n = json_string_length(s), got;
	bool hex = true;
	uint8_t *b;

	if (!p || n == 0 || n > 4 * (size_t)VEIL_TDX_QUOTE_MAX)
		return veil_errf(VEIL_EFORMAT, "\"intel_quote\" missing or not a string");
	if (n >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		p += 2;
		n -= 2;
	}
	for (size_t i = 0; i < n && hex; i++)
		hex = isxdigit((unsigned char)p[i]);
	b = malloc(n);
	if (!b)
		return VEIL_ENOMEM;
	if ((hex && n % 2 == 0 && veil_hex_decode(p, n, b, n, &got) == 0) ||
	    (!hex && veil_b64_decode(p, n, 0, b, n, &got) == 0)) {
		*out = b;
		*len = got;
		return 0;
	}
	free(b);
	return veil_errf(VEIL_EFORMAT, "\"intel_quote\" is neither hex nor base64");
}

/* info.tcb_info, an object or a JSON string holding one (served both ways):
 * a new reference (or NULL) the caller releases.  A parsed string is never
 * stored back into doc, where a key of the document itself could stand in
 * for it. */
static json_t *tcb_info(json_t *doc)
{
	json_t *info = json_object_get(doc, "info"), *t, *parsed;

	t = json_is_object(info) ? json_object_get(info, "tcb_info") : NULL;
	if (!json_is_string(t))
		return json_incref(t);
	parsed = json_loadb(json_string_value(t), json_string_length(t), JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(parsed)) {
		json_decref(parsed);
		return NULL;
	}
	return parsed;
}

/* The event log as an array: doc.event_log or info.tcb_info.event_log,
 * either an array or a JSON string holding one.  New reference or NULL. */
static json_t *event_log(json_t *doc)
{
	json_t *e = json_object_get(doc, "event_log");
	json_t *t = tcb_info(doc), *r = NULL;

	if (!e && json_is_object(t))
		e = json_object_get(t, "event_log");
	if (json_is_array(e))
		r = json_incref(e);
	else if (json_is_string(e))
		r = json_loadb(json_string_value(e), json_string_length(e),
			       JSON_REJECT_DUPLICATES, NULL);
	json_decref(t);
	return r;
}

static int td_fields(json_t *j, const struct veil_tdx_td_report *t)
{
	static const char *const rt[4] = {"rtmr0", "rtmr1", "rtmr2", "rtmr3"};
	int rc = rpt_set_hex(j, "mrtd", t->mr_td, 48);

	for (int i = 0; i < 4 && rc == 0; i++)
		rc = rpt_set_hex(j, rt[i], t->rtmr[i], 48);
	if (rc == 0)
		rc = rpt_set_hex(j, "mr_config_id", t->mr_config_id, 48);
	if (rc == 0)
		rc = rpt_set_hex(j, "td_attributes", t->td_attributes, 8);
	if (rc == 0)
		rc = rpt_set_hex(j, "report_data", t->report_data, 64);
	return rc;
}

static int binding_check(struct veil_report_verdict *v, json_t *j, json_t *doc,
			 const uint8_t rd[64], const uint8_t *nonce)
{
	uint8_t addr[32], fp[32], want[32];
	bool has_fp = json_object_get(doc, "tls_cert_fingerprint") != NULL;
	json_t *a = json_object_get(doc, "signing_address");
	const char *s = json_string_value(a);
	size_t len = json_string_length(a), got = 0;

	if (!a) {
		warn(j, "report_data binding not checkable: the report has no signing_address");
	} else {
		/* ecdsa: "0x" + 20-byte address; ed25519: hex public key (NEAR AI
		 * pads either with zeros on the right to 32 bytes) */
		if (s && len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
			s += 2;
			len -= 2;
		}
		if (!s || len == 0 || len % 2 || len > 64 ||
		    veil_hex_decode(s, len, addr, sizeof(addr), &got) < 0)
			return rpt_fail(v, VEIL_EFORMAT, "\"signing_address\" is not hex of at most "
					"32 bytes");
		json_object_set(j, "signing_address", a);
		if (has_fp) {
			uint8_t cat[64];

			if (rpt_hex_exact(doc, "tls_cert_fingerprint", fp, 32) < 0)
				return rpt_fail(v, VEIL_EFORMAT, "\"tls_cert_fingerprint\" is not 32 "
						"bytes of hex");
			memcpy(cat, addr, got);
			memcpy(cat + got, fp, 32);
			SHA256(cat, got + 32, want);
		} else {
			memset(want, 0, 32);
			memcpy(want, addr, got);
		}
		if (memcmp(want, rd, 32))
			return rpt_fail(v, VEIL_EBADMSG, "report_data[0:32] is not %s",
					has_fp ? "sha256(signing_address || tls_cert_fingerprint)"
					       : "the signing address zero-padded to 32 bytes");
		json_object_set_new(j, "binding",
				    json_string(has_fp ? "sha256(signing_address||tls_cert_fingerprint)"
						       : "signing_address"));
		check(j, "report_data_binding", true);
	}
	if (!nonce) {
		warn(j, "freshness not checked: no nonce given");
	} else if (memcmp(nonce, rd + 32, 32)) {
		return rpt_fail(v, VEIL_EPERM, "report_data[32:64] differs from the nonce");
	} else {
		check(j, "nonce", true);
	}
	return 0;
}

static int compose_check_in(struct veil_report_verdict *v, json_t *j, json_t *t,
			    const struct veil_tdx_td_report *td, const struct veil_evlog *log)
{
	json_t *ac = json_is_object(t) ? json_object_get(t, "app_compose") : NULL;
	uint8_t h[32], want[48];
	struct veil_evlog_claims cl;

	if (!ac) {
		warn(j, "mr_config_id not checked: no app_compose in the report");
		return 0;
	}
	if (!json_is_string(ac))
		return rpt_fail(v, VEIL_EFORMAT, "info.tcb_info.app_compose is not a string");
	SHA256((const uint8_t *)json_string_value(ac), json_string_length(ac), h);
	rpt_set_hex(j, "compose_hash", h, 32);
	memset(want, 0, sizeof(want));
	want[0] = 0x01;
	memcpy(want + 1, h, 32);
	if (memcmp(want, td->mr_config_id, 48))
		return rpt_fail(v, VEIL_EBADMSG, "mr_config_id is not 0x01 || sha256(app_compose)");
	check(j, "mr_config_id", true);
	if (log && veil_evlog_claims(log, &cl) == 0 && cl.compose_hash.present) {
		if (cl.compose_hash.len != 32 || memcmp(cl.compose_hash.p, h, 32))
			return rpt_fail(v, VEIL_EBADMSG, "the compose-hash event differs from "
					"sha256(app_compose)");
		check(j, "compose_hash_event", true);
	}
	return 0;
}

static int compose_check(struct veil_report_verdict *v, json_t *j, json_t *doc,
			 const struct veil_tdx_td_report *td, const struct veil_evlog *log)
{
	json_t *t = tcb_info(doc);
	int rc = compose_check_in(v, j, t, td, log);

	json_decref(t);
	return rc;
}

static int gpu_check(struct veil_report_verdict *v, json_t *j, json_t *doc, int64_t now,
		     const uint8_t *nonce)
{
	json_t *p = json_object_get(doc, "nvidia_payload"), *arr;
	struct veil_nvgpu_result *res = NULL;
	struct veil_nvgpu_opts no;
	size_t count = 0;
	char *txt = NULL;
	const char *t;
	size_t tl;
	int rc;

	if (!p) {
		warn(j, "no nvidia_payload: no GPU evidence checked");
		return 0;
	}
	if (json_is_string(p)) {
		t = json_string_value(p);
		tl = json_string_length(p);
	} else {
		txt = json_dumps(p, JSON_COMPACT);
		if (!txt)
			return VEIL_ENOMEM;
		t = txt;
		tl = strlen(txt);
	}
	memset(&no, 0, sizeof(no));
	no.now = now;
	no.expected_nonce = nonce;
	rc = veil_nvgpu_verify_list(t, tl, &no, &res, &count);
	arr = json_array();
	for (size_t i = 0; arr && res && i < count; i++)
		json_array_append_new(arr, veil_nvgpu_verdict_json(&res[i], res[i].error[0] ? VEIL_EBADMSG : 0));
	json_object_set_new(j, "gpus", arr);
	if (rc < 0) {
		const char *why = veil_err_detail();

		for (size_t i = 0; res && i < count; i++)
			if (res[i].error[0]) {
				why = res[i].error;
				break;
			}
		rpt_fail(v, rc, "nvidia_payload: %s", why);
	} else {
		check(j, "gpus", true);
	}
	free(res);
	free(txt);
	return rc;
}

static int verify_doc(struct veil_report_verdict *v, json_t *j, json_t *doc,
		      const struct veil_report_opts *o)
{
	int64_t now = o->now ? o->now : (int64_t)time(NULL);
	struct veil_tdx_quote q;
	struct veil_tdx_verdict *tv = NULL;
	struct veil_evlog log = VEIL_EVLOG_INIT;
	bool have_log = false;
	uint8_t *quote = NULL, docnonce[32];
	const uint8_t *nonce = o->nonce;
	json_t *el = NULL, *tj = NULL;
	unsigned mask;
	int rc;

	memset(&q, 0, sizeof(q));
	snprintf(v->tee, sizeof(v->tee), "tdx");
	if (!json_is_object(doc))
		return rpt_fail(v, VEIL_EFORMAT, "NEAR AI report: not a JSON object");
	{
		size_t qlen = 0;

		if ((rc = quote_bytes(doc, &quote, &qlen)) < 0) {
			rpt_fail(v, rc, "%s", veil_err_detail());
			goto out;
		}
		if (o->collateral) {
			tv = calloc(1, sizeof(*tv));
			if (!tv) {
				rc = VEIL_ENOMEM;
				goto out;
			}
			rc = veil_tdx_verify(quote, qlen, o->collateral, now, NULL, 0, tv);
			if (veil_tdx_verdict_json(tv, &tj) == 0) {
				json_object_set(j, "quote", tj);
				json_object_set(j, "advisories", json_object_get(tj, "advisories"));
			}
			if (rc < 0) {
				rpt_fail(v, rc, "quote: %s", tv->error);
				goto out;
			}
			snprintf(v->status, sizeof(v->status), "%s", tv->status);
		} else {
			rc = rpt_quote_sigs_only(quote, qlen, now, &q);
			if (rc < 0) {
				rpt_fail(v, rc, "quote: %s", veil_err_detail());
				goto out;
			}
			if (q.header.tee_type != VEIL_TDX_TEE_TDX) {
				rc = rpt_fail(v, VEIL_ENOTSUP, "quote: not a TDX quote");
				goto out;
			}
			if (q.td.td_attributes[0]) {
				rc = rpt_fail(v, VEIL_EPERM, "quote: Debug mode is enabled");
				goto out;
			}
			warn(j, "TCB status not evaluated: no collateral given (signatures and the PCK "
				"chain to the Intel root were checked)");
		}
	}
	if (tv) {
		q.td = tv->td;
	}
	check(j, "quote", true);
	td_fields(j, &q.td);
	/* the nonce: the caller's, else the one the report says it answered */
	if (json_object_get(doc, "request_nonce") || json_object_get(doc, "nonce")) {
		const char *k = json_object_get(doc, "request_nonce") ? "request_nonce" : "nonce";

		if (rpt_hex_exact(doc, k, docnonce, 32) < 0) {
			rc = rpt_fail(v, VEIL_EFORMAT, "\"%s\" is not 32 bytes of hex", k);
			goto out;
		}
		if (nonce && memcmp(nonce, docnonce, 32)) {
			rc = rpt_fail(v, VEIL_EPERM, "the report's %s differs from the expected nonce", k);
			goto out;
		}
		if (!nonce && !o->skip_nonce)
			warn(j, "nonce taken from the report itself: freshness is only as good as that");
		nonce = docnonce;
	}
	if ((rc = binding_check(v, j, doc, q.td.report_data, nonce)) < 0)
		goto out;
	el = event_log(doc);
	if (el) {
		if ((rc = veil_evlog_from_json(el, &log)) < 0 || (rc = veil_evlog_check_runtime(&log)) < 0 ||
		    (rc = veil_evlog_check_rtmrs(&log, (const uint8_t(*)[48])q.td.rtmr, &mask)) < 0) {
			rpt_fail(v, rc, "event_log: %s", veil_err_detail());
			goto out;
		}
		have_log = true;
		json_object_set_new(j, "event_log_events", json_integer((json_int_t)log.n));
		check(j, "event_log", true);
	} else {
		warn(j, "no event log: RTMRs not replayed");
	}
	if ((rc = compose_check(v, j, doc, &q.td, have_log ? &log : NULL)) < 0)
		goto out;
	rc = gpu_check(v, j, doc, now, o->nonce);
out:
	json_decref(tj);
	json_decref(el);
	veil_evlog_free(&log);
	free(tv);
	free(quote);
	return rc;
}

/* The composite form {"gateway_attestation": {...}, "model_attestations":
 * [...]} (or "all_attestations": [...]): every component must verify. */
static int verify_composite(struct veil_report_verdict *v, json_t *j, json_t *doc,
			    const struct veil_report_opts *o)
{
	json_t *comps = json_array(), *g = json_object_get(doc, "gateway_attestation");
	json_t *lists[2] = {json_object_get(doc, "model_attestations"),
			    json_object_get(doc, "all_attestations")};
	json_t *item;
	size_t i, n = 0;
	int first = 0;
	bool same_status = true;
	char status[40] = "";

	if (!comps)
		return VEIL_ENOMEM;
	json_object_set_new(j, "components", comps);
	for (int k = -1; k < 2; k++) {
		json_t *arr = k < 0 ? NULL : lists[k];
		size_t m = k < 0 ? (g ? 1 : 0) : json_array_size(arr);

		if (k >= 0 && arr && !json_is_array(arr))
			return rpt_fail(v, VEIL_EFORMAT, "model_attestations/all_attestations is not a list");
		for (i = 0; i < m && n < 64; i++, n++) {
			struct veil_report_verdict cv;
			int rc;

			item = k < 0 ? g : json_array_get(arr, i);
			memset(&cv, 0, sizeof(cv));
			cv.json = json_object();
			if (!cv.json)
				return VEIL_ENOMEM;
			json_object_set_new(cv.json, "role", json_string(k < 0 ? "gateway" : "model"));
			rc = verify_doc(&cv, cv.json, item, o);
			rpt_finish(&cv, rc);
			json_array_append_new(comps, cv.json);
			if (rc < 0 && first == 0) {
				first = rc;
				rpt_fail(v, rc, "%s %zu: %s", k < 0 ? "gateway" : "model", i, cv.error);
			}
			if (n == 0)
				snprintf(status, sizeof(status), "%s", cv.status);
			else if (strcmp(status, cv.status))
				same_status = false;
		}
	}
	if (n == 0)
		return rpt_fail(v, VEIL_EFORMAT, "NEAR AI report: no attestation in it");
	snprintf(v->tee, sizeof(v->tee), "tdx");
	if (same_status)
		snprintf(v->status, sizeof(v->status), "%s", status);
	return first;
}

int veil_nearai_verify(const uint8_t *json, size_t n, const struct veil_report_opts *o,
		       struct veil_report_verdict *v)
{
	static const struct veil_report_opts none;
	json_error_t e;
	json_t *doc;
	int rc;

	if (!v)
		return VEIL_EINVAL;
	memset(v, 0, sizeof(*v));
	v->json = json_object();
	if (v->json)
		json_object_set_new(v->json, "kind", json_string("nearai"));
	if (!o)
		o = &none;
	if (!json || n > VEIL_REPORT_MAX)
		return rpt_finish(v, rpt_fail(v, VEIL_ERANGE, "report: missing or too large"));
	doc = json_loadb((const char *)json, n, JSON_REJECT_DUPLICATES, &e);
	if (!doc)
		return rpt_finish(v, rpt_fail(v, VEIL_EFORMAT, "report: JSON error at line %d: %s",
					      e.line, e.text));
	if (!v->json)
		rc = VEIL_ENOMEM;
	else if (json_is_object(doc) && (json_object_get(doc, "gateway_attestation") ||
					 json_object_get(doc, "model_attestations") ||
					 json_object_get(doc, "all_attestations")))
		rc = verify_composite(v, v->json, doc, o);
	else
		rc = verify_doc(v, v->json, doc, o);
	json_decref(doc);
	return rpt_finish(v, rc);
}
