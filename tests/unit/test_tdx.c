/* Unit tests of the DCAP verifier (include/veil/tdx.h, include/veil/x509.h).
 *
 * Real quotes and collateral come from $VEIL_SHARED/vectors (default
 * ../shared; tests run from the repository root): every case of
 * oracle/expected_verdicts.json (verdict, status, advisories and the
 * rejection wording of @phala/dcap-qvl 0.3.9), every TDX/SGX row of
 * MANIFEST.md, and tamper tests on a real v4 quote: every bit of the signed
 * header+body and several changes of every byte of its signature data. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "veil/base.h"
#include "veil/tdx.h"
#include "veil/x509.h"

static const char *shared_dir(void)
{
	const char *s = getenv("VEIL_SHARED");

	return s && *s ? s : "../shared";
}

/* $VEIL_SHARED/vectors/<rel>; skips the test when the vectors are absent. */
static void vec(const char *rel, char *out, size_t cap)
{
	FILE *f;

	snprintf(out, cap, "%s/vectors/%s", shared_dir(), rel);
	f = fopen(out, "rb");
	if (!f) {
		fprintf(stderr, "test_tdx: %s not found (set VEIL_SHARED)\n", out);
		skip();
	}
	fclose(f);
}

static int64_t t_iso(const char *s)
{
	int64_t t = 0;

	assert_int_equal(veil_x509_iso8601_parse(s, strlen(s), &t), 0);
	return t;
}

static void load_quote(const char *rel, uint8_t **q, size_t *n)
{
	char path[1024];

	vec(rel, path, sizeof(path));
	assert_int_equal(veil_tdx_quote_load(path, q, n), 0);
}

static struct veil_tdx_collateral *load_coll(const char *rel)
{
	char path[1024];
	struct veil_tdx_collateral *c = NULL;

	vec(rel, path, sizeof(path));
	if (veil_tdx_collateral_load(path, &c) != 0)
		fail_msg("collateral %s: %s", rel, veil_err_detail());
	return c;
}

/* Verifies and returns the verdict (the return code must agree with ok). */
static void run(const char *qrel, const char *crel, const char *time,
		struct veil_tdx_verdict *v)
{
	uint8_t *q = NULL;
	size_t n = 0;
	struct veil_tdx_collateral *c;
	int rc;

	load_quote(qrel, &q, &n);
	c = load_coll(crel);
	rc = veil_tdx_verify(q, n, c, t_iso(time), NULL, 0, v);
	assert_true((rc == 0) == v->ok);
	veil_tdx_collateral_free(c);
	free(q);
}

/* ---- trust anchor -------------------------------------------------------- */

static void test_pinned_root_equals_shared_der_and_pem(void **state)
{
	char path[1024];
	struct veil_buf b = VEIL_BUF_INIT(1u << 16);
	size_t len;
	const uint8_t *der = veil_tdx_intel_root_der(&len);
	uint8_t fp[32], want[32];
	STACK_OF(X509) *sk = NULL;
	unsigned char *re = NULL;
	size_t got;
	int relen;

	(void)state;
	vec("attest/roots/intel/TrustedRootCA.der", path, sizeof(path));
	assert_int_equal(veil_buf_read_file(&b, path), 0);
	assert_int_equal(b.len, len);
	assert_memory_equal(b.data, der, len);
	SHA256(der, len, fp);
	assert_int_equal(veil_hex_decode("44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3",
					 64, want, sizeof(want), &got), 0);
	assert_memory_equal(fp, want, 32);
	veil_buf_free(&b);

	vec("attest/roots/intel/trusted_root.pem", path, sizeof(path));
	assert_int_equal(veil_buf_read_file(&b, path), 0);
	assert_int_equal(veil_x509_pem_chain_parse(b.data, b.len, &sk), 0);
	assert_int_equal(sk_X509_num(sk), 1);
	relen = i2d_X509(sk_X509_value(sk, 0), &re);
	assert_int_equal(relen, (int)len);
	assert_memory_equal(re, der, len);
	OPENSSL_free(re);
	sk_X509_pop_free(sk, X509_free);
	veil_buf_free(&b);
}

/* ---- oracle cases -------------------------------------------------------- */

static void test_expected_verdicts_match_dcap_qvl(void **state)
{
	char path[1024];
	json_error_t err;
	json_t *root, *cases;
	size_t i, npass = 0;

	(void)state;
	vec("oracle/expected_verdicts.json", path, sizeof(path));
	root = json_load_file(path, 0, &err);
	assert_non_null(root);
	cases = json_object_get(root, "cases");
	assert_int_equal(json_array_size(cases), 14);
	for (i = 0; i < json_array_size(cases); i++) {
		json_t *cs = json_array_get(cases, i);
		const char *id = json_string_value(json_object_get(cs, "id"));
		json_t *status = json_object_get(cs, "status");
		struct veil_tdx_verdict v;

		run(json_string_value(json_object_get(cs, "quote")),
		    json_string_value(json_object_get(cs, "collateral")),
		    json_string_value(json_object_get(cs, "time")), &v);
		if (status) {
			json_t *adv = json_object_get(cs, "advisory_ids");

			if (!v.ok)
				fail_msg("%s: rejected: %s", id, v.error);
			assert_string_equal(v.status, json_string_value(status));
			assert_int_equal(v.n_advisories, json_array_size(adv));
			for (size_t k = 0; k < v.n_advisories; k++)
				assert_string_equal(v.advisories[k],
						    json_string_value(json_array_get(adv, k)));
		} else {
			if (v.ok)
				fail_msg("%s: accepted, expected \"%s\"", id,
					 json_string_value(json_object_get(cs, "error")));
			assert_string_equal(v.error, json_string_value(json_object_get(cs, "error")));
			assert_string_equal(v.status, "");
		}
		npass++;
	}
	assert_int_equal(npass, 14);
	json_decref(root);
}

/* ---- manifest rows ------------------------------------------------------- */

struct qrow {
	const char *rel;
	size_t file_len;
	int version, body_type;
	uint32_t tee;
	size_t quote_len;
};

static const struct qrow QROWS[] = {
	{"attest/tdx/dcap-qvl/tdx_quote", 5006, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4936},
	{"attest/tdx/dcap-qvl/tdx_quote_outdated", 5006, 5, VEIL_TDX_BODY_TD15, VEIL_TDX_TEE_TDX, 5006},
	{"attest/tdx/dcap-qvl/tdx-quote.hex", 5006, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4936},
	{"attest/tdx/dcap-qvl/tdx-quote.hex.bin", 5006, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4936},
	{"attest/tdx/dcap-qvl/quote-from-tappd.hex", 5006, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4936},
	{"attest/tdx/dcap-qvl/quote-from-tappd.hex.bin", 5006, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4936},
	{"attest/tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat", 4974, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4935},
	{"attest/tdx/go-tdx-guest/quote_v5_sample.dat", 5006, 5, VEIL_TDX_BODY_TD15, VEIL_TDX_TEE_TDX, 5006},
	{"attest/tdx/go-tdx-guest/cos-113-tdx-quote.dat", 8000, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4935},
	{"attest/tdx/trustee/tdx_quote_5.dat", 5006, 5, VEIL_TDX_BODY_TD15, VEIL_TDX_TEE_TDX, 5006},
	{"attest/tdx/trustee/tdx_quote_6.dat", 5006, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4936},
	{"attest/sgx/dcap-qvl/sgx_quote", 4600, 3, VEIL_TDX_BODY_SGX, VEIL_TDX_TEE_SGX, 4600},
	{"nearai/private-ml-sdk-intel_quote.bin", 5006, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4936},
	{"nearai/quote.bin", 5010, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4940},
	{"nearai/quote.hex", 5010, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4940},
	{"nearai/app_cert_quote.bin", 5010, 4, VEIL_TDX_BODY_TD10, VEIL_TDX_TEE_TDX, 4940},
};

static void test_manifest_quotes_parse_with_padding_and_appended_bytes(void **state)
{
	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(QROWS); i++) {
		const struct qrow *r = &QROWS[i];
		struct veil_tdx_quote q;
		uint8_t *b = NULL;
		size_t n = 0;

		load_quote(r->rel, &b, &n);
		assert_int_equal(n, r->file_len);
		if (veil_tdx_quote_parse(b, n, &q) != 0)
			fail_msg("%s: %s", r->rel, veil_err_detail());
		assert_int_equal(q.header.version, r->version);
		assert_int_equal(q.body_type, r->body_type);
		assert_int_equal(q.header.tee_type, r->tee);
		assert_int_equal(q.quote_len, r->quote_len);
		assert_int_equal(q.pck_cert_type, 5);
		assert_int_equal(q.qe_auth_len, 32);
		assert_int_equal(q.signed_len, r->version == 5 ? 48 + 6 + 648
					       : r->tee == VEIL_TDX_TEE_SGX ? 48 + 384 : 48 + 584);
		/* exactly the declared bytes parse too */
		assert_int_equal(veil_tdx_quote_parse(b, q.quote_len, &q), 0);
		free(b);
	}
}

static void test_hex_quotes_decode_to_their_bin(void **state)
{
	static const char *const pairs[][2] = {
		{"attest/tdx/dcap-qvl/tdx-quote.hex", "attest/tdx/dcap-qvl/tdx-quote.hex.bin"},
		{"attest/tdx/dcap-qvl/quote-from-tappd.hex", "attest/tdx/dcap-qvl/quote-from-tappd.hex.bin"},
		{"nearai/quote.hex", "nearai/quote.bin"},
	};

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(pairs); i++) {
		uint8_t *a = NULL, *b = NULL;
		size_t na = 0, nb = 0;

		load_quote(pairs[i][0], &a, &na);
		load_quote(pairs[i][1], &b, &nb);
		assert_int_equal(na, nb);
		assert_memory_equal(a, b, na);
		free(a);
		free(b);
	}
}

/* Quotes without collateral of their own: with another platform's collateral
 * every signature, the PCK chain and both CRLs pass and only the FMSPC
 * comparison (after all of them) fails. */
static void test_quotes_without_collateral_have_valid_signatures(void **state)
{
	static const char *const q[] = {
		"attest/tdx/go-tdx-guest/cos-113-tdx-quote.dat",
		"nearai/quote.bin",
		"nearai/quote.hex",
		"nearai/app_cert_quote.bin",
	};

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(q); i++) {
		struct veil_tdx_verdict v;

		run(q[i], "attest/tdx/dcap-qvl/tdx_quote_collateral.json", "2025-07-01T00:00:00Z", &v);
		assert_false(v.ok);
		if (strcmp(v.error, "Fmspc mismatch") != 0)
			fail_msg("%s: %s", q[i], v.error);
	}
}

static void test_hex_bin_quotes_get_no_matching_tcb_level(void **state)
{
	static const char *const q[] = {
		"attest/tdx/dcap-qvl/tdx-quote.hex.bin",
		"attest/tdx/dcap-qvl/quote-from-tappd.hex.bin",
	};

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(q); i++) {
		struct veil_tdx_verdict v;

		run(q[i], "attest/tdx/dcap-qvl/tdx_quote_collateral.json", "2025-07-01T00:00:00Z", &v);
		assert_false(v.ok);
		assert_string_equal(v.error, "No matching TCB level found");
	}
}

static void test_measurements_and_json_of_accepted_tdx_quote(void **state)
{
	struct veil_tdx_verdict v;
	json_t *j = NULL;
	const char *mrtd;

	(void)state;
	run("attest/tdx/dcap-qvl/tdx_quote", "attest/tdx/dcap-qvl/tdx_quote_collateral.json",
	    "2025-07-01T00:00:00Z", &v);
	assert_true(v.ok);
	assert_int_equal(veil_tdx_verdict_json(&v, &j), 0);
	assert_true(json_is_true(json_object_get(j, "ok")));
	assert_string_equal(json_string_value(json_object_get(j, "kind")), "tdx");
	assert_string_equal(json_string_value(json_object_get(j, "status")), "UpToDate");
	assert_true(json_is_null(json_object_get(j, "error")));
	assert_int_equal(json_array_size(json_object_get(j, "advisories")), 0);
	mrtd = json_string_value(json_object_get(j, "mrtd"));
	assert_non_null(mrtd);
	assert_int_equal(strlen(mrtd), 96);
	assert_true(strncmp(mrtd, "91eb2b44", 8) == 0);
	assert_true(strncmp(json_string_value(json_object_get(j, "report_data")), "9a9d48e7", 8) == 0);
	assert_string_equal(json_string_value(json_object_get(j, "fmspc")), "b0c06f000000");
	assert_string_equal(json_string_value(json_object_get(j, "td_attributes")), "0000001000000000");
	for (const char *const *k = (const char *const[]){"rtmr0", "rtmr1", "rtmr2", "rtmr3",
							   "mr_config_id", "mr_owner",
							   "mr_owner_config", "mr_seam", "xfam", NULL};
	     *k; k++)
		assert_non_null(json_string_value(json_object_get(j, *k)));
	json_decref(j);
}

static void test_sgx_verdict_json_has_enclave_fields(void **state)
{
	struct veil_tdx_verdict v;
	json_t *j = NULL;

	(void)state;
	run("attest/sgx/dcap-qvl/sgx_quote", "attest/sgx/dcap-qvl/sgx_quote_collateral.json",
	    "2025-07-01T00:00:00Z", &v);
	assert_true(v.ok);
	assert_int_equal(veil_tdx_verdict_json(&v, &j), 0);
	assert_string_equal(json_string_value(json_object_get(j, "kind")), "sgx");
	assert_int_equal(strlen(json_string_value(json_object_get(j, "mrenclave"))), 64);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "mrsigner"))), 64);
	assert_true(json_is_integer(json_object_get(j, "isvprodid")));
	assert_true(json_is_integer(json_object_get(j, "isvsvn")));
	/* report_data starts with "Hello, world!" */
	assert_true(strncmp(json_string_value(json_object_get(j, "report_data")),
			    "48656c6c6f2c20776f726c6421", 26) == 0);
	assert_null(json_object_get(j, "mrtd"));
	json_decref(j);
}

static void test_rejected_verdict_json_has_error_and_no_measurements(void **state)
{
	struct veil_tdx_verdict v;
	json_t *j = NULL;

	(void)state;
	run("attest/tdx/dcap-qvl/tdx_quote", "attest/tdx/dcap-qvl/tdx_quote_collateral.json",
	    "2025-07-20T00:00:00Z", &v);
	assert_false(v.ok);
	assert_int_equal(veil_tdx_verdict_json(&v, &j), 0);
	assert_true(json_is_false(json_object_get(j, "ok")));
	assert_true(json_is_null(json_object_get(j, "status")));
	assert_string_equal(json_string_value(json_object_get(j, "error")), "TCBInfo expired");
	assert_null(json_object_get(j, "mrtd"));
	json_decref(j);
}

/* Stricter than dcap-qvl 0.3.9: the PCK CRL's nextUpdate is
 * 2025-07-19T10:00:35Z, so five minutes later the quote is refused. */
static void test_expired_pck_crl_is_rejected(void **state)
{
	struct veil_tdx_verdict v;

	(void)state;
	run("attest/tdx/dcap-qvl/tdx_quote", "attest/tdx/dcap-qvl/tdx_quote_collateral.json",
	    "2025-07-19T10:05:00Z", &v);
	assert_false(v.ok);
	assert_non_null(strstr(v.error, "CRL"));
	assert_non_null(strstr(v.error, "expired"));
	run("attest/tdx/dcap-qvl/tdx_quote", "attest/tdx/dcap-qvl/tdx_quote_collateral.json",
	    "2025-07-19T10:00:35Z", &v);
	assert_true(v.ok); /* bounds are inclusive */
}

/* A self-signed P-256 certificate as the trust anchor: nothing chains to it,
 * and the quote's own copy of the Intel root is not taken on trust. */
static void test_foreign_trust_anchor_is_rejected(void **state)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	unsigned char *der = NULL;
	int dlen;
	uint8_t *q = NULL;
	size_t n = 0;
	struct veil_tdx_collateral *c;
	struct veil_tdx_verdict v;

	(void)state;
	assert_non_null(k);
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"Intel SGX Root CA", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	ASN1_TIME_set(X509_getm_notBefore(x), 0);
	ASN1_TIME_set(X509_getm_notAfter(x), 4102444800);
	X509_set_pubkey(x, k);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	dlen = i2d_X509(x, &der);
	assert_true(dlen > 0);

	load_quote("attest/tdx/dcap-qvl/tdx_quote", &q, &n);
	c = load_coll("attest/tdx/dcap-qvl/tdx_quote_collateral.json");
	assert_int_not_equal(veil_tdx_verify(q, n, c, t_iso("2025-07-01T00:00:00Z"), der,
					     (size_t)dlen, &v), 0);
	assert_false(v.ok);
	assert_non_null(strstr(v.error, "pinned trust anchor"));
	veil_tdx_collateral_free(c);
	free(q);
	OPENSSL_free(der);
	X509_free(x);
	EVP_PKEY_free(k);
}

/* ---- tampering ------------------------------------------------------------ */

struct fixture {
	uint8_t *q;
	size_t n;
	struct veil_tdx_collateral *c;
	int64_t now;
};

static void fixture_load(struct fixture *f)
{
	load_quote("attest/tdx/dcap-qvl/tdx_quote", &f->q, &f->n);
	f->c = load_coll("attest/tdx/dcap-qvl/tdx_quote_collateral.json");
	f->now = t_iso("2025-07-01T00:00:00Z");
}

static void fixture_free(struct fixture *f)
{
	veil_tdx_collateral_free(f->c);
	free(f->q);
}

static bool accepted(struct fixture *f)
{
	struct veil_tdx_verdict v;

	return veil_tdx_verify(f->q, f->n, f->c, f->now, NULL, 0, &v) == 0 && v.ok;
}

/* Every bit of the 632 signed bytes (header 48 + TD report 584). */
static void test_quote_rejects_every_bit_flip_in_signed_region(void **state)
{
	struct fixture f;
	size_t tried = 0;

	(void)state;
	fixture_load(&f);
	assert_true(accepted(&f));
	for (size_t i = 0; i < 632; i++) {
		for (int b = 0; b < 8; b++) {
			f.q[i] ^= (uint8_t)(1u << b);
			if (accepted(&f))
				fail_msg("accepted with byte %zu bit %d flipped", i, b);
			f.q[i] ^= (uint8_t)(1u << b);
			tried++;
		}
	}
	assert_int_equal(tried, 632 * 8);
	assert_true(accepted(&f));
	fixture_free(&f);
}

/* Every byte after the body up to the declared end: signature data size,
 * signature, attestation key, certification data (QE report, its signature,
 * QE auth data, the PEM chain with its final NUL).  Four changes each: low
 * bit, case bit (another valid base64 letter), high bit, all bits. */
static void test_quote_rejects_every_byte_change_in_signature_data(void **state)
{
	static const uint8_t xors[] = {0x01, 0x20, 0x80, 0xff};
	struct fixture f;
	struct veil_tdx_quote q;

	(void)state;
	fixture_load(&f);
	assert_int_equal(veil_tdx_quote_parse(f.q, f.n, &q), 0);
	assert_int_equal(q.quote_len, 4936);
	for (size_t i = 632; i < q.quote_len; i++) {
		for (size_t k = 0; k < sizeof(xors); k++) {
			f.q[i] ^= xors[k];
			if (accepted(&f))
				fail_msg("accepted with byte %zu ^ 0x%02x", i, xors[k]);
			f.q[i] ^= xors[k];
		}
	}
	assert_true(accepted(&f));
	fixture_free(&f);
}

/* The 70 bytes after the declared end are not part of the quote. */
static void test_quote_ignores_bytes_after_declared_end(void **state)
{
	struct fixture f;

	(void)state;
	fixture_load(&f);
	assert_int_equal(f.n, 5006);
	for (size_t i = 4936; i < f.n; i++)
		f.q[i] = (uint8_t)(i * 7 + 1);
	assert_true(accepted(&f));
	f.n = 4936;
	assert_true(accepted(&f));
	fixture_free(&f);
}

static void test_quote_parse_rejects_every_truncation(void **state)
{
	struct fixture f;
	struct veil_tdx_quote q;

	(void)state;
	fixture_load(&f);
	for (size_t n = 0; n < 4936; n++)
		if (veil_tdx_quote_parse(f.q, n, &q) == 0)
			fail_msg("truncated quote of %zu bytes parsed", n);
	fixture_free(&f);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void test_quote_parse_rejects_lying_lengths(void **state)
{
	struct fixture f;
	struct veil_tdx_quote q;
	uint8_t *cp;

	(void)state;
	fixture_load(&f);
	cp = malloc(f.n);
	assert_non_null(cp);
	/* signature data size at 632 */
	static const uint32_t lies[] = {0, 1, 4303, 4305, 4373, 4374, 0x7fffffff, 0xffffffff};
	for (size_t i = 0; i < VEIL_ARRAY_LEN(lies); i++) {
		memcpy(cp, f.q, f.n);
		put32(cp + 632, lies[i]);
		assert_int_not_equal(veil_tdx_quote_parse(cp, f.n, &q), 0);
	}
	/* certification data size (632+4+128+2) and inner PEM size */
	for (uint32_t d = 1; d < 80; d++) {
		memcpy(cp, f.q, f.n);
		put32(cp + 766, (uint32_t)(cp[766] | cp[767] << 8 | cp[768] << 16) + d);
		assert_int_not_equal(veil_tdx_quote_parse(cp, f.n, &q), 0);
	}
	memcpy(cp, f.q, f.n);
	put32(cp + 766, 0xffffffffu);
	assert_int_not_equal(veil_tdx_quote_parse(cp, f.n, &q), 0);
	/* QE auth data size lies (u16 at 770 + 384 + 64) */
	for (uint32_t v = 0; v < 65536; v += 97) {
		if (v == 32)
			continue;
		memcpy(cp, f.q, f.n);
		cp[1218] = (uint8_t)v;
		cp[1219] = (uint8_t)(v >> 8);
		assert_int_not_equal(veil_tdx_quote_parse(cp, f.n, &q), 0);
	}
	free(cp);
	fixture_free(&f);
}

static void test_v5_body_descriptor_size_must_match_type(void **state)
{
	uint8_t *b = NULL;
	size_t n = 0;
	struct veil_tdx_quote q;

	(void)state;
	load_quote("attest/tdx/dcap-qvl/tdx_quote_outdated", &b, &n);
	assert_int_equal(veil_tdx_quote_parse(b, n, &q), 0);
	put32(b + 50, 584);
	assert_int_equal(veil_tdx_quote_parse(b, n, &q), VEIL_EFORMAT);
	put32(b + 50, 648);
	b[48] = 9;
	assert_int_equal(veil_tdx_quote_parse(b, n, &q), VEIL_ENOTSUP);
	free(b);
}

static void test_tdreport_is_not_a_quote(void **state)
{
	struct veil_buf buf = VEIL_BUF_INIT(1u << 16);
	char path[1024];
	struct veil_tdx_quote q;

	(void)state;
	vec("attest/tdx/go-tdx-guest/report.dat", path, sizeof(path));
	assert_int_equal(veil_buf_read_file(&buf, path), 0);
	assert_int_equal(buf.len, 1024);
	assert_int_not_equal(veil_tdx_quote_parse(buf.data, buf.len, &q), 0);
	veil_buf_free(&buf);
}

/* ---- collateral tampering ------------------------------------------------- */

/* Re-serialises the collateral with `key`'s string changed at one byte. */
static struct veil_tdx_collateral *coll_with_edit(const char *rel, const char *key,
						  const char *from, const char *to)
{
	char path[1024];
	json_error_t err;
	json_t *o;
	char *s, *hit, *dump;
	struct veil_tdx_collateral *c = NULL;

	vec(rel, path, sizeof(path));
	o = json_load_file(path, 0, &err);
	assert_non_null(o);
	s = strdup(json_string_value(json_object_get(o, key)));
	hit = strstr(s, from);
	assert_non_null(hit);
	memcpy(hit, to, strlen(to));
	json_object_set_new(o, key, json_string(s));
	dump = json_dumps(o, 0);
	if (veil_tdx_collateral_parse((const uint8_t *)dump, strlen(dump), &c) != 0)
		c = NULL;
	free(dump);
	free(s);
	json_decref(o);
	return c;
}

static void test_tampered_tcb_info_and_qe_identity_are_rejected(void **state)
{
	static const char *const edits[][4] = {
		{"tcb_info", "\"tcbStatus\":\"OutOfDate\"", "\"tcbStatus\":\"UpToDate\" ",
		 "Signature is invalid for tcb_info"},
		{"tcb_info", "\"nextUpdate\":\"2025", "\"nextUpdate\":\"2026", "Signature is invalid for tcb_info"},
		{"qe_identity", "\"isvsvn\":4", "\"isvsvn\":0", "Signature is invalid for qe_identity"},
		{"tcb_info_signature", "0", "1", "Signature is invalid for tcb_info"},
	};
	uint8_t *q = NULL;
	size_t n = 0;

	(void)state;
	load_quote("attest/tdx/dcap-qvl/tdx_quote", &q, &n);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(edits); i++) {
		struct veil_tdx_verdict v;
		struct veil_tdx_collateral *c =
			coll_with_edit("attest/tdx/dcap-qvl/tdx_quote_collateral.json", edits[i][0],
				       edits[i][1], edits[i][2]);

		assert_non_null(c);
		assert_int_not_equal(veil_tdx_verify(q, n, c, t_iso("2025-07-01T00:00:00Z"), NULL,
						     0, &v),
				     0);
		assert_string_equal(v.error, edits[i][3]);
		veil_tdx_collateral_free(c);
	}
	free(q);
}

static void test_collateral_parse_rejects_garbage(void **state)
{
	static const char *const bad[] = {
		"", "[]", "{}", "{\"tcb_info\":1}", "not json",
	};
	struct veil_tdx_collateral *c = NULL;

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(bad); i++)
		assert_int_not_equal(veil_tdx_collateral_parse((const uint8_t *)bad[i],
							       strlen(bad[i]), &c),
				     0);
	assert_null(c);
	/* a truncated real collateral */
	c = coll_with_edit("attest/tdx/dcap-qvl/tdx_quote_collateral.json", "tcb_info", "{\"id\"",
			   "[\"id\"");
	assert_null(c);
}

/* ---- PEM and time --------------------------------------------------------- */

static void test_pem_chain_grammar_is_strict(void **state)
{
	char path[1024];
	json_error_t err;
	json_t *o;
	const char *chain;
	size_t len;
	STACK_OF(X509) *sk = NULL;
	char *buf;

	(void)state;
	vec("attest/tdx/dcap-qvl/tdx_quote_collateral.json", path, sizeof(path));
	o = json_load_file(path, 0, &err);
	chain = json_string_value(json_object_get(o, "tcb_info_issuer_chain"));
	len = strlen(chain);
	buf = malloc(len + 8);
	assert_non_null(buf);

	assert_int_equal(veil_x509_pem_chain_parse((const uint8_t *)chain, len, &sk), 0);
	assert_int_equal(sk_X509_num(sk), 2);
	sk_X509_pop_free(sk, X509_free);
	sk = NULL;
	/* trailing NULs are fine; anything else after the last END is not */
	memcpy(buf, chain, len);
	memcpy(buf + len, "\0\0\0", 3);
	assert_int_equal(veil_x509_pem_chain_parse((const uint8_t *)buf, len + 3, &sk), 0);
	sk_X509_pop_free(sk, X509_free);
	sk = NULL;
	buf[len] = '\n';
	assert_int_equal(veil_x509_pem_chain_parse((const uint8_t *)buf, len + 1, &sk), VEIL_EFORMAT);
	buf[len] = ' ';
	assert_int_equal(veil_x509_pem_chain_parse((const uint8_t *)buf, len + 1, &sk), VEIL_EFORMAT);
	/* CRLF endings are accepted */
	{
		char *crlf = malloc(2 * len + 1);
		size_t k = 0;

		for (size_t i = 0; i < len; i++) {
			if (chain[i] == '\n')
				crlf[k++] = '\r';
			crlf[k++] = chain[i];
		}
		assert_int_equal(veil_x509_pem_chain_parse((const uint8_t *)crlf, k, &sk), 0);
		sk_X509_pop_free(sk, X509_free);
		sk = NULL;
		/* a lone CR is not */
		for (size_t i = 0; i < k; i++)
			if (crlf[i] == '\r') {
				crlf[i + 1] = 'A';
				break;
			}
		assert_int_not_equal(veil_x509_pem_chain_parse((const uint8_t *)crlf, k, &sk), 0);
		free(crlf);
	}
	/* every single-byte change of the first 900 bytes is refused or yields
	 * different certificates (here: refused, as DER inside is signed data
	 * only for the TBS part, the outer encoding must stay canonical) */
	assert_int_equal(veil_x509_pem_chain_parse((const uint8_t *)"", 0, &sk), VEIL_EFORMAT);
	assert_int_equal(veil_x509_pem_chain_parse((const uint8_t *)"\0", 1, &sk), VEIL_EFORMAT);
	free(buf);
	json_decref(o);
}

static void test_iso8601_parse(void **state)
{
	int64_t t = 0;

	(void)state;
	assert_int_equal(t_iso("1970-01-01T00:00:00Z"), 0);
	assert_int_equal(t_iso("2025-07-01T00:00:00Z"), 1751328000);
	assert_int_equal(t_iso("2026-03-01T00:00:00Z"), 1772323200);
	assert_int_equal(t_iso("2024-02-29T12:34:56.789Z"), 1709210096);
	assert_int_equal(veil_x509_iso8601_parse("2023-02-29T00:00:00Z", 20, &t), VEIL_EFORMAT);
	assert_int_equal(veil_x509_iso8601_parse("2025-07-01 00:00:00Z", 20, &t), VEIL_EFORMAT);
	assert_int_equal(veil_x509_iso8601_parse("2025-07-01T00:00:00", 19, &t), VEIL_EFORMAT);
	assert_int_equal(veil_x509_iso8601_parse("2025-07-01T00:00:00+01:00", 25, &t), VEIL_EFORMAT);
	assert_int_equal(veil_x509_iso8601_parse("2025-13-01T00:00:00Z", 20, &t), VEIL_EFORMAT);
	/* and back: what the parser reads */
	{
		char s[VEIL_X509_ISO8601_LEN];

		assert_int_equal(veil_x509_iso8601_format(1709210096, s), 0);
		assert_string_equal(s, "2024-02-29T12:34:56Z");
		assert_int_equal(t_iso(s), 1709210096);
		assert_int_equal(veil_x509_iso8601_format(INT64_MAX, s), VEIL_ERANGE);
		assert_string_equal(s, "9223372036854775807");
	}
}

/* ---- verification caches -------------------------------------------------- */

#define MAIN_Q "attest/tdx/dcap-qvl/tdx_quote"
#define MAIN_C "attest/tdx/dcap-qvl/tdx_quote_collateral.json"

/* Verdicts are compared whole: veil_tdx_verify() zeroes *v first. */
static void assert_same_verdict(const struct veil_tdx_verdict *a,
				const struct veil_tdx_verdict *b, const char *what)
{
	if (memcmp(a, b, sizeof(*a)) != 0)
		fail_msg("%s: verdicts differ: ok %d/%d, \"%s\" / \"%s\"", what, a->ok, b->ok,
			 a->error, b->error);
}

/* Each time below once with nothing cached (a fresh collateral object after
 * a flush) and once with both caches warmed at an accepting time: inside the
 * cached window, at its inclusive edge, past the PCK CRL's nextUpdate, before
 * the QE identity's issue date, and past everything.  Then every oracle case
 * twice on one collateral object.  The verdicts are byte-identical. */
static void test_cache_hit_and_miss_give_identical_verdicts(void **state)
{
	static const char *const times[] = {
		"2025-07-01T00:00:00Z", "2025-06-19T10:40:00Z", "2025-07-19T10:00:35Z",
		"2025-07-19T10:00:36Z", "2025-07-19T10:05:00Z", "2025-06-19T10:20:00Z",
		"2025-06-01T00:00:00Z", "2040-01-01T00:00:00Z",
	};
	struct veil_tdx_cache_stats st;
	struct veil_tdx_collateral *warm, *cold;
	struct veil_tdx_verdict vw, vc;
	char path[1024];
	json_error_t err;
	json_t *root, *cases;
	uint8_t *q = NULL;
	size_t n = 0;

	(void)state;
	load_quote(MAIN_Q, &q, &n);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(times); i++) {
		int64_t t = t_iso(times[i]);

		veil_tdx_cache_flush();
		cold = load_coll(MAIN_C);
		(void)veil_tdx_verify(q, n, cold, t, NULL, 0, &vc);
		veil_tdx_collateral_free(cold);

		veil_tdx_cache_flush();
		warm = load_coll(MAIN_C);
		assert_int_equal(veil_tdx_verify(q, n, warm, t_iso("2025-07-01T00:00:00Z"), NULL, 0,
						 &vw),
				 0);
		veil_tdx_cache_stats(&st);
		assert_int_equal(st.pck_hits + st.collateral_hits, 0);
		assert_int_equal(st.pck_misses, 1);
		(void)veil_tdx_verify(q, n, warm, t, NULL, 0, &vw);
		assert_same_verdict(&vc, &vw, times[i]);
		veil_tdx_cache_stats(&st);
		if (vw.ok) /* inside the window the cached outcome was used */
			assert_true(st.pck_hits == 1 && st.collateral_hits == 1);
		veil_tdx_collateral_free(warm);
	}
	assert_int_equal(veil_tdx_verify(q, n, NULL, 0, NULL, 0, &vw), VEIL_EINVAL);
	free(q);

	vec("oracle/expected_verdicts.json", path, sizeof(path));
	root = json_load_file(path, 0, &err);
	assert_non_null(root);
	cases = json_object_get(root, "cases");
	assert_int_equal(json_array_size(cases), 14);
	for (size_t i = 0; i < json_array_size(cases); i++) {
		json_t *cs = json_array_get(cases, i);
		const char *id = json_string_value(json_object_get(cs, "id"));
		struct veil_tdx_collateral *c;
		int64_t t = t_iso(json_string_value(json_object_get(cs, "time")));
		int r1, r2;

		veil_tdx_cache_flush();
		load_quote(json_string_value(json_object_get(cs, "quote")), &q, &n);
		c = load_coll(json_string_value(json_object_get(cs, "collateral")));
		r1 = veil_tdx_verify(q, n, c, t, NULL, 0, &vc);
		r2 = veil_tdx_verify(q, n, c, t, NULL, 0, &vw);
		assert_int_equal(r1, r2);
		assert_same_verdict(&vc, &vw, id);
		veil_tdx_cache_stats(&st);
		if (vw.ok)
			assert_true(st.pck_hits >= 1 && st.collateral_hits >= 1);
		veil_tdx_collateral_free(c);
		free(q);
		q = NULL;
	}
	json_decref(root);
}

/* The collateral with its PCK CRL replaced by one that lists the quote's PCK
 * leaf (signed by a key of ours: Intel's is not at hand). */
static struct veil_tdx_collateral *coll_revoking_leaf(X509 *leaf)
{
	X509_CRL *crl = X509_CRL_new();
	X509_REVOKED *rev = X509_REVOKED_new();
	EVP_PKEY *k = EVP_EC_gen("P-256");
	ASN1_TIME *tu = ASN1_TIME_set(NULL, t_iso("2025-06-01T00:00:00Z"));
	ASN1_TIME *nu = ASN1_TIME_set(NULL, t_iso("2025-08-01T00:00:00Z"));
	struct veil_tdx_collateral *c = NULL;
	unsigned char *der = NULL;
	char path[1024], *hex, *dump;
	json_error_t err;
	json_t *o;
	int len;

	assert_true(crl && rev && k && tu && nu);
	assert_int_equal(X509_CRL_set_version(crl, 1), 1);
	assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_issuer_name(leaf)), 1);
	assert_int_equal(X509_CRL_set1_lastUpdate(crl, tu), 1);
	assert_int_equal(X509_CRL_set1_nextUpdate(crl, nu), 1);
	assert_int_equal(X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(leaf)), 1);
	assert_int_equal(X509_REVOKED_set_revocationDate(rev, tu), 1);
	assert_int_equal(X509_CRL_add0_revoked(crl, rev), 1);
	assert_true(X509_CRL_sign(crl, k, EVP_sha256()) > 0);
	len = i2d_X509_CRL(crl, &der);
	assert_true(len > 0);
	hex = malloc(2 * (size_t)len + 1);
	assert_non_null(hex);
	assert_int_equal(veil_hex_encode(der, (size_t)len, hex, 2 * (size_t)len + 1), 0);
	vec(MAIN_C, path, sizeof(path));
	o = json_load_file(path, 0, &err);
	assert_non_null(o);
	json_object_set_new(o, "pck_crl", json_string(hex));
	dump = json_dumps(o, 0);
	assert_int_equal(veil_tdx_collateral_parse((const uint8_t *)dump, strlen(dump), &c), 0);
	free(dump);
	json_decref(o);
	free(hex);
	OPENSSL_free(der);
	ASN1_TIME_free(tu);
	ASN1_TIME_free(nu);
	EVP_PKEY_free(k);
	X509_CRL_free(crl);
	return c;
}

/* With both caches warm: past the PCK CRL's nextUpdate the quote is refused
 * as it is uncached; a CRL that lists the PCK leaf is another cache key, so
 * the chain is verified again and refused; and the tampered-chain rule holds
 * on a warm cache too (every byte of the PEM chain). */
static void test_cache_still_catches_expiry_revocation_and_tampering(void **state)
{
	struct veil_tdx_cache_stats st0, st;
	struct veil_tdx_collateral *c, *rc;
	struct veil_tdx_verdict v;
	struct veil_tdx_quote qq;
	STACK_OF(X509) *sk = NULL;
	uint8_t *q = NULL;
	size_t n = 0;
	int64_t ok_t = t_iso("2025-07-01T00:00:00Z");

	(void)state;
	veil_tdx_cache_flush();
	load_quote(MAIN_Q, &q, &n);
	c = load_coll(MAIN_C);
	assert_int_equal(veil_tdx_verify(q, n, c, ok_t, NULL, 0, &v), 0);
	assert_int_equal(veil_tdx_verify(q, n, c, ok_t, NULL, 0, &v), 0);
	veil_tdx_cache_stats(&st);
	assert_int_equal(st.pck_hits, 1);
	assert_int_equal(st.collateral_hits, 1);

	/* expired: the PCK CRL's nextUpdate is 2025-07-19T10:00:35Z */
	assert_int_not_equal(veil_tdx_verify(q, n, c, t_iso("2025-07-19T10:00:36Z"), NULL, 0, &v), 0);
	assert_string_equal(v.error,
			    "PCK certificate chain: CRL from \"Intel SGX PCK Platform CA\" has expired");
	assert_int_equal(veil_tdx_verify(q, n, c, ok_t, NULL, 0, &v), 0);

	/* revoked: a CRL naming the leaf; the cached chain is not used */
	assert_int_equal(veil_tdx_quote_parse(q, n, &qq), 0);
	assert_int_equal(veil_x509_pem_chain_parse(qq.pck_data, qq.pck_data_len, &sk), 0);
	rc = coll_revoking_leaf(sk_X509_value(sk, 0));
	veil_tdx_cache_stats(&st0);
	assert_int_not_equal(veil_tdx_verify(q, n, rc, ok_t, NULL, 0, &v), 0);
	assert_false(v.ok);
	assert_non_null(strstr(v.error, "PCK certificate chain: CRL from"));
	veil_tdx_cache_stats(&st);
	assert_int_equal(st.pck_hits, st0.pck_hits);
	assert_int_equal(st.pck_misses, st0.pck_misses + 1);
	veil_tdx_collateral_free(rc);
	sk_X509_pop_free(sk, X509_free);

	/* every byte of the PEM chain, changed, on a warm cache */
	for (size_t i = 0; i < qq.pck_data_len; i++) {
		size_t off = (size_t)(qq.pck_data - q) + i;

		q[off] ^= 0x01;
		if (veil_tdx_verify(q, n, c, ok_t, NULL, 0, &v) == 0 || v.ok)
			fail_msg("accepted with PEM byte %zu ^ 0x01 on a warm cache", i);
		q[off] ^= 0x01;
	}
	veil_tdx_cache_stats(&st0);
	assert_int_equal(veil_tdx_verify(q, n, c, ok_t, NULL, 0, &v), 0);
	veil_tdx_cache_stats(&st);
	assert_int_equal(st.pck_hits, st0.pck_hits + 1);
	veil_tdx_collateral_free(c);
	free(q);
}

struct race {
	const uint8_t *q;
	size_t n;
	const struct veil_tdx_collateral *c;
	int64_t now;
	int bad; /* verdicts that were not what they should be */
	bool flusher;
};

static void *race_thread(void *arg)
{
	struct race *r = arg;
	uint8_t *t = malloc(r->n);
	struct veil_tdx_verdict v;

	if (!t) {
		r->bad++;
		return NULL;
	}
	memcpy(t, r->q, r->n);
	t[4000] ^= 0x01; /* inside the PEM chain */
	for (int i = 0; i < 150; i++) {
		if (veil_tdx_verify(r->q, r->n, r->c, r->now, NULL, 0, &v) != 0 || !v.ok)
			r->bad++;
		if (veil_tdx_verify(t, r->n, r->c, r->now, NULL, 0, &v) == 0 || v.ok)
			r->bad++;
		if (r->flusher && i % 10 == 0)
			veil_tdx_cache_flush();
	}
	free(t);
	return NULL;
}

/* Threads verifying one collateral object, with a tampered copy of the quote
 * interleaved and the PCK cache flushed under them: every verdict right. */
static void test_cache_is_thread_safe(void **state)
{
	struct race r[4];
	pthread_t th[4];
	struct veil_tdx_collateral *c;
	struct veil_tdx_quote qq;
	uint8_t *q = NULL;
	size_t n = 0;

	(void)state;
	load_quote(MAIN_Q, &q, &n);
	assert_int_equal(veil_tdx_quote_parse(q, n, &qq), 0);
	assert_true((size_t)(qq.pck_data - q) < 4000 &&
		    (size_t)(qq.pck_data - q) + qq.pck_data_len > 4001);
	c = load_coll(MAIN_C);
	for (int i = 0; i < 4; i++) {
		r[i] = (struct race){q, n, c, t_iso("2025-07-01T00:00:00Z"), 0, i == 0};
		assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(r[i].bad, 0);
	}
	veil_tdx_collateral_free(c);
	free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pinned_root_equals_shared_der_and_pem),
		cmocka_unit_test(test_expected_verdicts_match_dcap_qvl),
		cmocka_unit_test(test_manifest_quotes_parse_with_padding_and_appended_bytes),
		cmocka_unit_test(test_hex_quotes_decode_to_their_bin),
		cmocka_unit_test(test_quotes_without_collateral_have_valid_signatures),
		cmocka_unit_test(test_hex_bin_quotes_get_no_matching_tcb_level),
		cmocka_unit_test(test_measurements_and_json_of_accepted_tdx_quote),
		cmocka_unit_test(test_sgx_verdict_json_has_enclave_fields),
		cmocka_unit_test(test_rejected_verdict_json_has_error_and_no_measurements),
		cmocka_unit_test(test_expired_pck_crl_is_rejected),
		cmocka_unit_test(test_foreign_trust_anchor_is_rejected),
		cmocka_unit_test(test_quote_rejects_every_bit_flip_in_signed_region),
		cmocka_unit_test(test_quote_rejects_every_byte_change_in_signature_data),
		cmocka_unit_test(test_quote_ignores_bytes_after_declared_end),
		cmocka_unit_test(test_quote_parse_rejects_every_truncation),
		cmocka_unit_test(test_quote_parse_rejects_lying_lengths),
		cmocka_unit_test(test_v5_body_descriptor_size_must_match_type),
		cmocka_unit_test(test_tdreport_is_not_a_quote),
		cmocka_unit_test(test_tampered_tcb_info_and_qe_identity_are_rejected),
		cmocka_unit_test(test_collateral_parse_rejects_garbage),
		cmocka_unit_test(test_pem_chain_grammar_is_strict),
		cmocka_unit_test(test_iso8601_parse),
		cmocka_unit_test(test_cache_hit_and_miss_give_identical_verdicts),
		cmocka_unit_test(test_cache_still_catches_expiry_revocation_and_tampering),
		cmocka_unit_test(test_cache_is_thread_safe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
