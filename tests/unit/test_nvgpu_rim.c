/* Unit tests of NVIDIA RIM signature verification (veil_nvgpu_rim_verify,
 * veil_nvgpu_rim_load) against the two real nvtrust sample RIMs in
 * $VEIL_SHARED/vectors/attest/nvidia/nvtrust (VEIL_SHARED defaults to
 * ../shared; tests run from the repository root; each test skips with a
 * message when the vectors are absent).  The samples' signer chain ends in
 * the NVIDIA CoRIM signing Root CA; their leaf "HCC RIM L4 Signer" expired
 * in June 2025, so positive checks run at 2024-01-01 (as
 * `xmlsec1 --verify --verification-time` does) and checks at later times
 * must fail with an expiry.  Corruptions are made in memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "veil/base.h"
#include "veil/nvgpu.h"

#define NV "attest/nvidia/nvtrust/"
#define VBIOS_RIM NV "1010_0200_882_96005E0001_PROD.swidtag"
#define DRIVER_RIM NV "Driver_RIM_test_no_gpu.swidtag"
#define T_2024 ((time_t)1704067200)        /* 2024-01-01T00:00:00Z */
#define T_2026_11_22 ((time_t)1795305600)  /* 2026-11-22T00:00:00Z, both leaves expired */

static bool load(const char *rel, struct veil_buf *b)
{
	const char *root = getenv("VEIL_SHARED");
	char path[4096];

	snprintf(path, sizeof(path), "%s/vectors/%s", root && *root ? root : "../shared", rel);
	memset(b, 0, sizeof(*b));
	b->max = 1 << 20;
	if (veil_buf_read_file(b, path) < 0) {
		fprintf(stderr, "test_nvgpu_rim: SKIP: %s not readable; set VEIL_SHARED to the "
			"shared data directory\n", path);
		return false;
	}
	return true;
}

/* A NUL-terminated copy, so strstr() can find the spot to corrupt. */
static char *text_of(const struct veil_buf *b)
{
	char *s = malloc(b->len + 1);

	assert_non_null(s);
	memcpy(s, b->data, b->len);
	s[b->len] = '\0';
	return s;
}

/* s with [at, at+cut) replaced by ins; caller frees. */
static char *splice(const char *s, size_t at, size_t cut, const char *ins)
{
	size_t n = strlen(s), k = strlen(ins);
	char *o = malloc(n - cut + k + 1);

	assert_non_null(o);
	memcpy(o, s, at);
	memcpy(o + at, ins, k);
	memcpy(o + at + k, s + at + cut, n - at - cut + 1);
	return o;
}

static int verify_text(const char *s, time_t t, struct veil_nvgpu_rim_sig *sig)
{
	return veil_nvgpu_rim_verify(s, strlen(s), t, NULL, 0, sig, NULL);
}

static void test_both_sample_rims_verify_at_2024(void **state)
{
	static const char *const files[] = {VBIOS_RIM, DRIVER_RIM};

	(void)state;
	for (size_t f = 0; f < 2; f++) {
		struct veil_buf b, canon = VEIL_BUF_INIT(4u << 20);
		struct veil_nvgpu_rim_sig sig;
		char *c;

		if (!load(files[f], &b))
			skip();
		assert_int_equal(veil_nvgpu_rim_verify((const char *)b.data, b.len, T_2024, NULL, 0,
						       &sig, &canon), 0);
		assert_true(sig.checked && sig.ok);
		assert_int_equal(sig.rc, 0);
		assert_string_equal(sig.error, "");
		assert_int_equal(sig.time, (int64_t)T_2024);
		assert_string_equal(sig.method, "ecdsa-sha384");
		assert_int_equal(sig.n_certs, 4);
		assert_non_null(strstr(sig.certs[0].subject, "CN=HCC RIM L4 Signer"));
		assert_non_null(strstr(sig.certs[1].subject, "NVIDIA Reference Value L3 GH100 001"));
		assert_non_null(strstr(sig.certs[3].subject, "CN=NVIDIA CoRIM signing Root CA"));
		for (size_t i = 0; i < sig.n_certs; i++)
			assert_true(sig.certs[i].valid_at_time);
		/* the signed bytes: the canonical document without its Signature */
		assert_true(canon.len > 10000 && canon.len < b.len);
		c = text_of(&canon);
		assert_null(strstr(c, "Signature"));
		assert_int_equal(strncmp(c, "<SoftwareIdentity ", 18), 0);
		free(c);
		veil_buf_free(&canon);
		veil_buf_free(&b);
	}
}

static void test_golden_values_come_from_the_signed_bytes(void **state)
{
	struct veil_nvgpu_rim *plain = calloc(1, sizeof(*plain)), *rim = calloc(1, sizeof(*rim));
	struct veil_buf b;
	const char *hash = "ns2:Hash0=\"c3f65e";
	char *s, *p, *refs;

	(void)state;
	assert_true(plain && rim);
	if (!load(VBIOS_RIM, &b))
		skip();
	assert_int_equal(veil_nvgpu_rim_parse((const char *)b.data, b.len, plain), 0);
	assert_int_equal(veil_nvgpu_rim_load((const char *)b.data, b.len, T_2024, NULL, 0, rim), 0);
	assert_true(rim->sig.checked && rim->sig.ok && rim->signed_);
	assert_string_equal(rim->product, plain->product);
	assert_string_equal(rim->version, "96.00.5E.00.01");
	assert_int_equal(rim->n, plain->n);
	assert_memory_equal(rim->e, plain->e, sizeof(rim->e[0]) * rim->n);
	/* Character references canonicalise to the same signed octets, so the
	 * signature still verifies; the scanner, which refuses '&' in the
	 * file, reads the same golden value from the canonical form. */
	s = text_of(&b);
	p = strstr(s, hash);
	assert_non_null(p);
	refs = splice(s, (size_t)(p - s) + strlen(hash) - 6, 1, "&#x63;");
	assert_int_not_equal(veil_nvgpu_rim_parse(refs, strlen(refs), plain), 0);
	assert_int_equal(veil_nvgpu_rim_load(refs, strlen(refs), T_2024, NULL, 0, rim), 0);
	assert_int_equal(rim->e[1].hash[0][0], 0xc3);
	/* a comment is outside the signature: a fake measurement in one is
	 * never scanned */
	free(refs);
	p = strstr(s, "<ns0:Resource");
	refs = splice(s, (size_t)(p - s), 0, "<!-- <ns0:Resource type=\"Measurement\" index=\"200\" "
		      "active=\"True\" alternatives=\"1\" ns2:Hash0=\"00\"/> -->");
	assert_int_equal(veil_nvgpu_rim_load(refs, strlen(refs), T_2024, NULL, 0, rim), 0);
	for (size_t i = 0; i < rim->n; i++)
		assert_int_not_equal(rim->e[i].index, 200);
	free(refs);
	free(s);
	veil_buf_free(&b);
	free(plain);
	free(rim);
}

static void test_samples_fail_later_with_expired_leaf(void **state)
{
	static const char *const files[] = {VBIOS_RIM, DRIVER_RIM};
	static const time_t times[] = {T_2026_11_22, 0 /* now */};

	(void)state;
	for (size_t f = 0; f < 2; f++) {
		struct veil_buf b;

		if (!load(files[f], &b))
			skip();
		for (size_t k = 0; k < 2; k++) {
			struct veil_nvgpu_rim_sig sig;
			struct veil_nvgpu_rim *rim = calloc(1, sizeof(*rim));
			time_t before = time(NULL);

			assert_int_equal(veil_nvgpu_rim_verify((const char *)b.data, b.len, times[k],
							       NULL, 0, &sig, NULL), VEIL_EPERM);
			assert_true(sig.checked && !sig.ok);
			assert_non_null(strstr(sig.error, "\"HCC RIM L4 Signer\" has expired"));
			assert_non_null(strstr(sig.error, "verification time"));
			assert_false(sig.certs[0].valid_at_time);
			if (times[k])
				assert_int_equal(sig.time, (int64_t)times[k]);
			else
				assert_true(sig.time >= before && sig.time <= time(NULL));
			/* a RIM that fails its signature yields no golden values */
			assert_int_equal(veil_nvgpu_rim_load((const char *)b.data, b.len, times[k],
							     NULL, 0, rim), VEIL_EPERM);
			assert_int_equal(rim->n, 0);
			assert_true(rim->sig.checked && !rim->sig.ok);
			free(rim);
		}
		veil_buf_free(&b);
	}
}

static void test_flipped_golden_hash_byte_is_rejected(void **state)
{
	struct veil_nvgpu_rim_sig sig;
	struct veil_buf b;
	char *s, *p;

	(void)state;
	if (!load(VBIOS_RIM, &b))
		skip();
	s = text_of(&b);
	p = strstr(s, "ns2:Hash0=\"c3f65e");
	assert_non_null(p);
	p[11] = 'd'; /* c3f6... -> d3f6... */
	assert_int_equal(verify_text(s, T_2024, &sig), VEIL_EBADMSG);
	assert_false(sig.ok);
	assert_non_null(strstr(sig.error, "digest differs"));
	free(s);
	veil_buf_free(&b);
}

static void test_flipped_signature_value_is_rejected(void **state)
{
	struct veil_nvgpu_rim_sig sig;
	struct veil_buf b;
	char *s, *p;

	(void)state;
	if (!load(DRIVER_RIM, &b))
		skip();
	s = text_of(&b);
	p = strstr(s, "<ds:SignatureValue>");
	assert_non_null(p);
	p += strlen("<ds:SignatureValue>") + 20;
	*p = *p == 'A' ? 'B' : 'A'; /* still base64, another value */
	assert_int_equal(verify_text(s, T_2024, &sig), VEIL_EBADMSG);
	assert_non_null(strstr(sig.error, "SignatureValue does not verify"));
	free(s);
	veil_buf_free(&b);
}

static void test_removed_signature_is_rejected(void **state)
{
	struct veil_nvgpu_rim_sig sig;
	struct veil_nvgpu_rim *rim = calloc(1, sizeof(*rim));
	struct veil_buf b;
	char *s, *p, *e, *cut;

	(void)state;
	if (!load(VBIOS_RIM, &b))
		skip();
	s = text_of(&b);
	p = strstr(s, "<ds:Signature ");
	e = strstr(s, "</ds:Signature>");
	assert_true(p && e);
	cut = splice(s, (size_t)(p - s), (size_t)(e - p) + strlen("</ds:Signature>"), "");
	assert_int_equal(verify_text(cut, T_2024, &sig), VEIL_EBADMSG);
	assert_non_null(strstr(sig.error, "not signed"));
	assert_int_equal(veil_nvgpu_rim_load(cut, strlen(cut), T_2024, NULL, 0, rim), VEIL_EBADMSG);
	assert_int_equal(rim->n, 0);
	free(cut);
	free(s);
	free(rim);
	veil_buf_free(&b);
}

static void test_wrong_trust_anchor_is_rejected(void **state)
{
	struct veil_nvgpu_rim_sig sig;
	struct veil_buf b;
	size_t len;
	const uint8_t *other = veil_nvgpu_pinned_root(&len); /* the device identity CA */

	(void)state;
	if (!load(VBIOS_RIM, &b))
		skip();
	assert_int_equal(veil_nvgpu_rim_verify((const char *)b.data, b.len, T_2024, other, len,
					       &sig, NULL), VEIL_EPERM);
	assert_false(sig.ok);
	assert_non_null(strstr(sig.error, "not the pinned trust anchor"));
	veil_buf_free(&b);
}

static void test_doctype_and_external_entities_are_refused(void **state)
{
	static const char *const heads[] = {
		"<!DOCTYPE SoftwareIdentity [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n",
		"<!DOCTYPE SoftwareIdentity SYSTEM \"http://127.0.0.1:9/rim.dtd\">\n",
		"<!DOCTYPE SoftwareIdentity [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>\n",
	};
	struct veil_nvgpu_rim_sig sig;
	struct veil_buf b;
	char *s;

	(void)state;
	if (!load(VBIOS_RIM, &b))
		skip();
	s = text_of(&b);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(heads); i++) {
		char *d = splice(s, 0, 0, heads[i]);

		assert_int_equal(verify_text(d, T_2024, &sig), VEIL_ENOTSUP);
		assert_non_null(strstr(sig.error, "DOCTYPE"));
		free(d);
	}
	/* an entity reference without a DTD is not well-formed */
	{
		char *p = strstr(s, "name=\"GH100\""), *d;

		assert_non_null(p);
		d = splice(s, (size_t)(p - s) + 6, 5, "&x;");
		assert_int_equal(verify_text(d, T_2024, &sig), VEIL_EFORMAT);
		assert_non_null(strstr(sig.error, "not well-formed"));
		free(d);
	}
	free(s);
	veil_buf_free(&b);
}

/* Signatures that do not cover the whole document are refused before any
 * cryptography. */
static void test_partial_reference_shapes_are_refused(void **state)
{
	static const struct {
		const char *find, *replace, *why;
	} cases[] = {
		{"<ds:Reference URI=\"\">", "<ds:Reference URI=\"#meta\">", "URI=\"\""},
		{"<ds:Reference URI=\"\">", "<ds:Reference>", "URI=\"\""},
		{"<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>",
		 "", "algorithm"},
		{"<ds:Transform Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/></ds:Transforms>",
		 "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\">"
		 "<ds:XPath>self::text()</ds:XPath></ds:Transform></ds:Transforms>", "algorithm"},
		{"<ds:Transform Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/></ds:Transforms>",
		 "<ds:Other Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/></ds:Transforms>",
		 "bad Transforms"},
		{"</ds:KeyInfo>", "</ds:KeyInfo><ds:Object Id=\"o\"/>", "no Object"},
		{"<ds:KeyInfo><ds:X509Data>", "<ds:KeyInfo><ds:KeyValue/><ds:X509Data>",
		 "exactly one X509Data"},
	};
	struct veil_nvgpu_rim_sig sig;
	struct veil_buf b;
	char *s;

	(void)state;
	if (!load(VBIOS_RIM, &b))
		skip();
	s = text_of(&b);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(cases); i++) {
		char *p = strstr(s, cases[i].find), *d;

		assert_non_null(p);
		d = splice(s, (size_t)(p - s), strlen(cases[i].find), cases[i].replace);
		assert_int_equal(verify_text(d, T_2024, &sig), VEIL_ENOTSUP);
		if (!strstr(sig.error, cases[i].why))
			fail_msg("case %zu: %s", i, sig.error);
		free(d);
	}
	/* the Signature moved into a child element (Payload) is no longer an
	 * enveloped signature of the document: refused.  (Moved elsewhere
	 * among the root's children it still signs the same bytes.) */
	{
		char *p = strstr(s, "<ds:Signature "), *e = strstr(s, "</ds:Signature>"), *sigxml,
		     *cut, *d, *meta;
		size_t sl;

		assert_true(p && e);
		sl = (size_t)(e - p) + strlen("</ds:Signature>");
		sigxml = strndup(p, sl);
		cut = splice(s, (size_t)(p - s), sl, "");
		meta = strstr(cut, "<ns0:Payload");
		assert_non_null(meta);
		meta = strchr(meta, '>') + 1;
		d = splice(cut, (size_t)(meta - cut), 0, sigxml);
		assert_int_equal(verify_text(d, T_2024, &sig), VEIL_ENOTSUP);
		assert_non_null(strstr(sig.error, "not a child of the root"));
		free(d);
		free(cut);
		free(sigxml);
	}
	free(s);
	veil_buf_free(&b);
}

static void test_size_cap_and_garbage(void **state)
{
	struct veil_nvgpu_rim_sig sig;
	char *big = calloc(1, VEIL_NVGPU_RIM_MAX + 1);

	(void)state;
	assert_non_null(big);
	assert_int_equal(veil_nvgpu_rim_verify(big, VEIL_NVGPU_RIM_MAX + 1, T_2024, NULL, 0, &sig,
					       NULL), VEIL_ERANGE);
	assert_true(sig.checked && !sig.ok);
	free(big);
	assert_int_equal(verify_text("<SoftwareIdentity", T_2024, &sig), VEIL_EFORMAT);
	assert_int_equal(verify_text("<Other/>", T_2024, &sig), VEIL_EFORMAT);
	assert_int_equal(verify_text("<SoftwareIdentity/>", T_2024, &sig), VEIL_EBADMSG);
}

/* ---- canonicalisation budget (crafted documents, refused before C14N) --- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* s with `ins` added to the root start tag's attributes; caller frees. */
static char *with_root_attrs(const char *s, const char *ins)
{
	const char *p = strstr(s, "<SoftwareIdentity ");

	assert_non_null(p);
	return splice(s, (size_t)(p - s) + strlen("<SoftwareIdentity "), 0, ins);
}

/* s with `ins` as the root's first children; caller frees. */
static char *with_children(const char *s, const char *ins)
{
	const char *p = strstr(s, "<SoftwareIdentity ");

	assert_non_null(p);
	p = strchr(p, '>');
	return splice(s, (size_t)(p - s) + 1, 0, ins);
}

/* `n` copies of printf(fmt, i, i) concatenated; caller frees. */
static char *repeat(size_t n, const char *fmt)
{
	size_t cap = n * (strlen(fmt) + 24) + 1, len = 0;
	char *o = malloc(cap);

	assert_non_null(o);
	o[0] = '\0';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(o + len, cap - len, fmt, i, i);
	return o;
}

/* Verifies d, expects VEIL_ENOTSUP naming `why`, within a loose 2 s. */
static void expect_refused(const char *d, const char *why)
{
	struct veil_nvgpu_rim_sig sig;
	double t0 = now_s();
	int rc = verify_text(d, T_2024, &sig);
	double dt = now_s() - t0;

	if (rc != VEIL_ENOTSUP || !strstr(sig.error, why))
		fail_msg("want ENOTSUP \"%s\", got %d: %s", why, rc, sig.error);
	if (dt > 2.0)
		fail_msg("refusal took %.2f s (%s)", dt, why);
}

/* Namespace declarations: C14N's cost is ~ declarations^2 x elements.  33
 * declarations (one over) are refused by name; 2000 declarations over 2000
 * elements (67 KB; 500 x 500 took 1.3 s of C14N before, this ~64x that) is
 * refused at once. */
static void test_namespace_budget(void **state)
{
	struct veil_buf b;
	char *s, *ns, *el, *d, *d2, *uri;

	(void)state;
	if (!load(VBIOS_RIM, &b))
		skip();
	s = text_of(&b);
	ns = repeat(VEIL_NVGPU_RIM_MAX_NS_DECLS + 1 - 6, "xmlns:n%zu=\"urn:x\" ");
	d = with_root_attrs(s, ns);
	expect_refused(d, "more than 32 namespace declarations");
	free(d);
	free(ns);
	/* the limit counts declarations anywhere in the document */
	ns = repeat(VEIL_NVGPU_RIM_MAX_NS_DECLS, "<n%zu:e xmlns:n%zu=\"urn:x\"/>");
	d = with_children(s, ns);
	expect_refused(d, "more than 32 namespace declarations");
	free(d);
	free(ns);
	/* 2000 declarations in scope of 2000 elements */
	ns = repeat(2000, "xmlns:n%zu=\"urn:x\" ");
	el = repeat(2000, "<e/>");
	d = with_root_attrs(s, ns);
	d2 = with_children(d, el);
	expect_refused(d2, "namespace declarations");
	free(d2);
	free(d);
	free(el);
	free(ns);
	/* one long namespace URI */
	uri = calloc(1, VEIL_NVGPU_RIM_MAX_NS_URI + 32);
	assert_non_null(uri);
	strcpy(uri, "xmlns:long=\"urn:");
	memset(uri + strlen(uri), 'a', VEIL_NVGPU_RIM_MAX_NS_URI);
	strcat(uri, "\" ");
	d = with_root_attrs(s, uri);
	expect_refused(d, "namespace URI longer than 256 bytes");
	free(d);
	free(uri);
	free(s);
	veil_buf_free(&b);
}

static void test_element_and_attribute_budget(void **state)
{
	struct veil_buf b;
	char *s, *x, *d;

	(void)state;
	if (!load(VBIOS_RIM, &b))
		skip();
	s = text_of(&b);
	/* 4096 added to the RIM's 85 elements */
	x = repeat(VEIL_NVGPU_RIM_MAX_ELEMENTS, "<e/>");
	d = with_children(s, x);
	expect_refused(d, "more than 4096 elements");
	free(d);
	free(x);
	/* 65 attributes on one (new) element; the RIM's own have at most 12 */
	x = repeat(VEIL_NVGPU_RIM_MAX_ATTRS + 1, " a%zu=\"\"");
	d = splice(x, 0, 0, "<e");
	free(x);
	x = splice(d, strlen(d), 0, "/>");
	free(d);
	d = with_children(s, x);
	expect_refused(d, "element e has more than 64 attributes");
	free(d);
	free(x);
	/* many attributes on the root (C14N sorts them: ~2 s for 20000 before,
	 * minutes for 90000; libxml2's own parse is quadratic in them too, so
	 * the test keeps to 5000) */
	x = repeat(5000, "a%zu=\"\" ");
	d = with_root_attrs(s, x);
	assert_true(strlen(d) <= VEIL_NVGPU_RIM_MAX);
	expect_refused(d, "element SoftwareIdentity has more than 64 attributes");
	free(d);
	free(x);
	free(s);
	veil_buf_free(&b);
}

/* Exclusive C14N as the Reference transform re-declares namespaces on every
 * element (output ~1000x the input for a crafted document): refused. */
static void test_exclusive_c14n_reference_is_refused(void **state)
{
	static const char *const algs[] = {
		"http://www.w3.org/2001/10/xml-exc-c14n#",
		"http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
	};
	const char *find = "<ds:Transform Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/>";
	struct veil_buf b;
	char *s, *p;

	(void)state;
	if (!load(VBIOS_RIM, &b))
		skip();
	s = text_of(&b);
	p = strstr(s, find);
	assert_non_null(p);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(algs); i++) {
		char t[160], *d;

		snprintf(t, sizeof(t), "<ds:Transform Algorithm=\"%s\"/>", algs[i]);
		d = splice(s, (size_t)(p - s), strlen(find), t);
		expect_refused(d, "exclusive C14N is not accepted as the Reference transform");
		free(d);
	}
	free(s);
	veil_buf_free(&b);
}

static bool printable_ascii(const char *e)
{
	for (; *e; e++)
		if ((unsigned char)*e < 0x20 || (unsigned char)*e > 0x7e)
			return false;
	return true;
}

/* An Algorithm value quoted in the error: a newline in it cannot forge a
 * line, and a multi-byte UTF-8 character cut at the quote's limit cannot
 * make the error (and so the JSON verdict) invalid UTF-8. */
static void test_error_text_is_printable_ascii(void **state)
{
	const char *find = "Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384\"";
	struct veil_buf b, t, ev = VEIL_BUF_INIT(VEIL_NVGPU_MAX_EVIDENCE), pem;
	struct veil_nvgpu_rim_sig sig;
	struct veil_nvgpu_rim *rim = calloc(1, sizeof(*rim));
	struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
	struct veil_nvgpu_opts o = {0};
	char *s, *p, *d, utf[400];
	json_t *j;
	int rc;

	(void)state;
	assert_true(rim && r);
	if (!load(VBIOS_RIM, &b))
		skip();
	s = text_of(&b);
	p = strstr(s, find);
	assert_non_null(p);
	/* a newline (raw and as a character reference) */
	d = splice(s, (size_t)(p - s), strlen(find),
		   "Algorithm=\"x&#10;veil verify: RIM OK (forged line)\n\"");
	assert_int_equal(verify_text(d, T_2024, &sig), VEIL_ENOTSUP);
	assert_non_null(strstr(sig.error, "SignatureMethod algorithm x?veil verify: RIM OK"));
	if (!printable_ascii(sig.error))
		fail_msg("not printable ASCII: %s", sig.error);
	free(d);
	/* 'x' then 2-byte characters: the 120-byte quote ends inside one */
	strcpy(utf, "Algorithm=\"x");
	for (size_t i = 0; i < 100; i++)
		strcat(utf, "\xc3\xa9");
	strcat(utf, "\"");
	d = splice(s, (size_t)(p - s), strlen(find), utf);
	assert_int_equal(verify_text(d, T_2024, &sig), VEIL_ENOTSUP);
	if (!printable_ascii(sig.error))
		fail_msg("not printable ASCII: %s", sig.error);
	assert_non_null(strstr(sig.error, "algorithm x??"));
	/* ... and through the GPU verdict (res->error, the JSON) */
	if (!load(NV "hopperAttestationReport.txt", &t))
		skip();
	assert_int_equal(veil_hex_text_decode((const char *)t.data, t.len, &ev), 0);
	veil_buf_free(&t);
	if (!load(NV "hopperCertChain.txt", &pem))
		skip();
	assert_int_equal(veil_nvgpu_rim_load(d, strlen(d), T_2024, NULL, 0, rim), VEIL_ENOTSUP);
	o.rim_vbios = rim;
	rc = veil_nvgpu_verify(ev.data, ev.len, (const char *)pem.data, pem.len, &o, r);
	assert_int_equal(rc, VEIL_ENOTSUP);
	assert_true(printable_ascii(r->error));
	j = veil_nvgpu_verdict_json(r, rc);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "status")),
			    "rim_signature_invalid");
	assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "algorithm x??"));
	json_decref(j);
	free(d);
	free(s);
	veil_buf_free(&ev);
	veil_buf_free(&pem);
	veil_buf_free(&b);
	free(rim);
	free(r);
}

static void test_rim_root_equals_shared_pem(void **state)
{
	struct veil_buf b;
	BIO *bio;
	X509 *c;
	unsigned char *d = NULL;
	size_t len;
	const uint8_t *pinned = veil_nvgpu_rim_root(&len);
	int l;

	(void)state;
	if (!load("attest/roots/nvidia/verifier_RIM_root.pem", &b))
		skip();
	bio = BIO_new_mem_buf(b.data, (int)b.len);
	c = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	assert_non_null(c);
	l = i2d_X509(c, &d);
	assert_int_equal((size_t)l, len);
	assert_memory_equal(d, pinned, len);
	OPENSSL_free(d);
	X509_free(c);
	BIO_free(bio);
	veil_buf_free(&b);
}

/* GPU evidence checked against a RIM: the verdict says whether the RIM's
 * signature verified and fails when it did not. */
static void test_verdict_reports_rim_signature(void **state)
{
	struct veil_buf t, ev = VEIL_BUF_INIT(VEIL_NVGPU_MAX_EVIDENCE), pem, rb;
	struct veil_nvgpu_rim *rim = calloc(1, sizeof(*rim));
	struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
	struct veil_nvgpu_opts o = {0};
	json_t *j;
	int rc;

	(void)state;
	assert_true(rim && r);
	if (!load(NV "hopperAttestationReport.txt", &t))
		skip();
	assert_int_equal(veil_hex_text_decode((const char *)t.data, t.len, &ev), 0);
	veil_buf_free(&t);
	if (!load(NV "hopperCertChain.txt", &pem) || !load(VBIOS_RIM, &rb))
		skip();
	o.rim_vbios = rim;
	/* signed RIM, valid time: the signature passes, the values differ (the
	 * sample RIM is for VBIOS 96.00.5E.00.01, the report has 96.00.9f) */
	assert_int_equal(veil_nvgpu_rim_load((const char *)rb.data, rb.len, T_2024, NULL, 0, rim), 0);
	rc = veil_nvgpu_verify(ev.data, ev.len, (const char *)pem.data, pem.len, &o, r);
	assert_int_equal(rc, VEIL_EPERM);
	assert_true(r->rim_sig_checked && r->rim_sig_ok);
	j = veil_nvgpu_verdict_json(r, rc);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(json_object_get(j, "checks"), "rim_signature")));
	assert_string_equal(json_string_value(json_object_get(j, "status")), "rim_mismatch");
	assert_string_equal(json_string_value(json_object_get(
		json_array_get(json_object_get(j, "rim_signatures"), 0), "time")),
		"2024-01-01T00:00:00Z");
	json_decref(j);
	/* the same RIM at a time its leaf had expired: the verdict fails on
	 * the signature, before any comparison */
	assert_int_equal(veil_nvgpu_rim_load((const char *)rb.data, rb.len, T_2026_11_22, NULL, 0,
					     rim), VEIL_EPERM);
	rc = veil_nvgpu_verify(ev.data, ev.len, (const char *)pem.data, pem.len, &o, r);
	assert_int_equal(rc, VEIL_EPERM);
	assert_true(r->signature_ok && r->chain_ok);
	assert_true(r->rim_sig_checked && !r->rim_sig_ok && !r->rim_ok);
	assert_non_null(strstr(r->error, "VBIOS RIM: RIM signer chain"));
	assert_non_null(strstr(r->error, "has expired"));
	j = veil_nvgpu_verdict_json(r, rc);
	assert_non_null(j);
	assert_true(json_is_false(json_object_get(json_object_get(j, "checks"), "rim_signature")));
	assert_string_equal(json_string_value(json_object_get(j, "status")),
			    "rim_signature_invalid");
	json_decref(j);
	/* a RIM only scanned (no signature check): rim_signature stays null */
	assert_int_equal(veil_nvgpu_rim_parse((const char *)rb.data, rb.len, rim), 0);
	rc = veil_nvgpu_verify(ev.data, ev.len, (const char *)pem.data, pem.len, &o, r);
	j = veil_nvgpu_verdict_json(r, rc);
	assert_non_null(j);
	assert_true(json_is_null(json_object_get(json_object_get(j, "checks"), "rim_signature")));
	json_decref(j);
	veil_buf_free(&ev);
	veil_buf_free(&pem);
	veil_buf_free(&rb);
	free(rim);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_both_sample_rims_verify_at_2024),
		cmocka_unit_test(test_golden_values_come_from_the_signed_bytes),
		cmocka_unit_test(test_samples_fail_later_with_expired_leaf),
		cmocka_unit_test(test_flipped_golden_hash_byte_is_rejected),
		cmocka_unit_test(test_flipped_signature_value_is_rejected),
		cmocka_unit_test(test_removed_signature_is_rejected),
		cmocka_unit_test(test_wrong_trust_anchor_is_rejected),
		cmocka_unit_test(test_doctype_and_external_entities_are_refused),
		cmocka_unit_test(test_partial_reference_shapes_are_refused),
		cmocka_unit_test(test_size_cap_and_garbage),
		cmocka_unit_test(test_namespace_budget),
		cmocka_unit_test(test_element_and_attribute_budget),
		cmocka_unit_test(test_exclusive_c14n_reference_is_refused),
		cmocka_unit_test(test_error_text_is_printable_ascii),
		cmocka_unit_test(test_rim_root_equals_shared_pem),
		cmocka_unit_test(test_verdict_reports_rim_signature),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
