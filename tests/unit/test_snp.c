/* Unit tests of the SEV-SNP verifier against the real reports in
 * $VEIL_SHARED/vectors/attest/sev-snp (VEIL_SHARED defaults to ../shared;
 * tests run from the repository root), with the expected outcomes of
 * vectors/MANIFEST.md, plus synthetic corruptions of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "veil/base.h"
#include "veil/snp.h"

#define T_2025_07_01 1751328000ll /* 2025-07-01T00:00:00Z */
#define T_2030_06_01 1906502400ll
#define T_2022_01_01 1640995200ll

static bool load(const char *rel, struct veil_buf *b)
{
	const char *root = getenv("VEIL_SHARED");
	char path[4096];

	snprintf(path, sizeof(path), "%s/vectors/%s", root && *root ? root : "../shared", rel);
	b->max = 1 << 20;
	if (veil_buf_read_file(b, path) < 0) {
		fprintf(stderr, "test_snp: SKIP: %s not readable; set VEIL_SHARED to the shared "
			"data directory\n", path);
		return false;
	}
	return true;
}

struct pair {
	struct veil_buf rep, cert;
};

static bool load_pair(struct pair *p, const char *rep, const char *cert)
{
	memset(p, 0, sizeof(*p));
	return load(rep, &p->rep) && load(cert, &p->cert);
}

static void free_pair(struct pair *p)
{
	veil_buf_free(&p->rep);
	veil_buf_free(&p->cert);
}

#define GOOGLE "attest/sev-snp/go-sev-guest/attestation.bin", "attest/sev-snp/go-sev-guest/vcek.testcer"
#define TRUSTEE "attest/sev-snp/trustee/test-report.bin", "attest/sev-snp/trustee/test-vcek.der"
#define VLEK "attest/sev-snp/trustee/test-vlek-report.bin", "attest/sev-snp/trustee/test-vlek.der"

static void test_parse_reads_every_field_of_milan_v2_report(void **state)
{
	struct pair p;
	struct veil_snp_report r;

	(void)state;
	if (!load_pair(&p, GOOGLE))
		skip();
	assert_int_equal(veil_snp_report_parse(p.rep.data, p.rep.len, &r), 0);
	assert_int_equal(r.version, 2);
	assert_int_equal(r.guest_svn, 0);
	assert_true(r.policy == 0xb0000);
	assert_true(r.policy & VEIL_SNP_POLICY_DEBUG);
	assert_int_equal(r.vmpl, 0);
	assert_int_equal(r.signature_algo, 1);
	assert_int_equal(r.signing_key, VEIL_SNP_SIGNER_VCEK);
	assert_false(r.mask_chip_key);
	assert_true(r.reported_tcb == 0x4405000000000002ull);
	assert_true(r.platform_info == 1);
	assert_memory_equal(r.report_data, "\x01\x02\x03\x04\x05\x00\x00", 7);
	assert_memory_equal(r.chip_id, "\x3a\xc3\xfe\x21", 4);
	assert_int_equal(veil_snp_report_product(&r), VEIL_SNP_PRODUCT_UNKNOWN); /* v2 */
	free_pair(&p);
}

static void test_parse_reads_v3_vlek_report_cpuid_and_signer(void **state)
{
	struct pair p;
	struct veil_snp_report r;
	struct veil_snp_tcb t;

	(void)state;
	if (!load_pair(&p, VLEK))
		skip();
	assert_int_equal(veil_snp_report_parse(p.rep.data, p.rep.len, &r), 0);
	assert_int_equal(r.version, 3);
	assert_int_equal(r.signer_info, 4);
	assert_int_equal(r.signing_key, VEIL_SNP_SIGNER_VLEK);
	assert_int_equal(r.vmpl, 1);
	assert_int_equal(r.cpuid_fam_id, 0x19);
	assert_int_equal(veil_snp_report_product(&r), VEIL_SNP_PRODUCT_MILAN);
	veil_snp_tcb_decode(r.reported_tcb, VEIL_SNP_PRODUCT_MILAN, &t);
	assert_int_equal(t.bootloader, 4);
	assert_int_equal(t.tee, 0);
	assert_int_equal(t.snp, 0x18);
	assert_int_equal(t.microcode, 0xd9);
	free_pair(&p);
}

/* Any VMPL may ask for a report with report_data of its choosing: one asked
 * for at VMPL 1 counts only where VMPL 1 is allowed (default: 0 only). */
static void test_vmpl_above_the_maximum_is_refused(void **state)
{
	struct pair p, g;
	struct veil_snp_report r;

	(void)state;
	if (!load_pair(&p, VLEK) || !load_pair(&g, GOOGLE))
		skip();
	assert_int_equal(veil_snp_report_parse(p.rep.data, p.rep.len, &r), 0);
	assert_int_equal(r.vmpl, 1);
	assert_int_equal(veil_snp_vmpl_check(&r, 0), VEIL_EPERM);
	assert_non_null(strstr(veil_err_detail(), "VMPL 1"));
	assert_int_equal(veil_snp_vmpl_check(&r, 1), 0);
	assert_int_equal(veil_snp_vmpl_check(&r, 3), 0);
	assert_int_equal(veil_snp_report_parse(g.rep.data, g.rep.len, &r), 0);
	assert_int_equal(r.vmpl, 0);
	assert_int_equal(veil_snp_vmpl_check(&r, 0), 0);
	free_pair(&p);
	free_pair(&g);
}

static void test_tcb_decode_uses_turin_layout_for_turin(void **state)
{
	struct veil_snp_tcb t;

	(void)state;
	veil_snp_tcb_decode(0x4800000004030201ull, VEIL_SNP_PRODUCT_TURIN, &t);
	assert_int_equal(t.fmc, 1);
	assert_int_equal(t.bootloader, 2);
	assert_int_equal(t.tee, 3);
	assert_int_equal(t.snp, 4);
	assert_int_equal(t.microcode, 0x48);
}

static void test_parse_rejects_wrong_length_and_version(void **state)
{
	uint8_t buf[VEIL_SNP_REPORT_LEN + 1] = {0};
	struct veil_snp_report r;

	(void)state;
	buf[0] = 2;
	assert_int_equal(veil_snp_report_parse(buf, VEIL_SNP_REPORT_LEN, &r), 0);
	assert_int_equal(veil_snp_report_parse(buf, VEIL_SNP_REPORT_LEN - 1, &r), VEIL_EFORMAT);
	assert_int_equal(veil_snp_report_parse(buf, VEIL_SNP_REPORT_LEN + 1, &r), VEIL_EFORMAT);
	buf[0] = 1;
	assert_int_equal(veil_snp_report_parse(buf, VEIL_SNP_REPORT_LEN, &r), VEIL_ENOTSUP);
	buf[0] = 6;
	assert_int_equal(veil_snp_report_parse(buf, VEIL_SNP_REPORT_LEN, &r), VEIL_ENOTSUP);
}

static void test_google_report_verifies_when_debug_allowed(void **state)
{
	struct pair p;
	struct veil_snp_opts o = {.now = T_2025_07_01, .allow_debug = true};
	struct veil_snp_result res;

	(void)state;
	if (!load_pair(&p, GOOGLE))
		skip();
	assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res), 0);
	assert_true(res.signature_ok && res.chain_ok && res.tcb_ok && res.chip_id_ok && res.policy_ok);
	assert_int_equal(res.product, VEIL_SNP_PRODUCT_MILAN);
	assert_string_equal(res.cert_product, "Milan-B0");
	assert_int_equal(res.cert_tcb.snp, 5);
	assert_int_equal(res.cert_tcb.microcode, 0x44);
	free_pair(&p);
}

static void test_google_report_rejected_for_debug_policy_by_default(void **state)
{
	struct pair p;
	struct veil_snp_opts o = {.now = T_2025_07_01};
	struct veil_snp_result res;

	(void)state;
	if (!load_pair(&p, GOOGLE))
		skip();
	assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res),
			 VEIL_EPERM);
	assert_true(res.signature_ok && res.chain_ok);
	assert_false(res.policy_ok);
	assert_non_null(strstr(res.error, "DEBUG"));
	free_pair(&p);
}

static void test_google_report_rejected_outside_vcek_validity(void **state)
{
	struct pair p;
	struct veil_snp_opts o = {.now = T_2030_06_01, .allow_debug = true};
	struct veil_snp_result res;

	(void)state;
	if (!load_pair(&p, GOOGLE))
		skip();
	assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res),
			 VEIL_EPERM);
	assert_non_null(strstr(res.error, "expired"));
	o.now = T_2022_01_01;
	assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res),
			 VEIL_EPERM);
	assert_non_null(strstr(res.error, "not yet valid"));
	free_pair(&p);
}

static void test_trustee_vcek_report_verifies(void **state)
{
	struct pair p;
	struct veil_snp_opts o = {.now = T_2025_07_01};
	struct veil_snp_result res;
	uint8_t rd[64];

	(void)state;
	if (!load_pair(&p, TRUSTEE))
		skip();
	assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res), 0);
	assert_int_equal(res.report.guest_svn, 4);
	assert_int_equal(res.reported_tcb.snp, 8);
	assert_int_equal(res.reported_tcb.microcode, 0x73);
	/* expected report data: right value passes, wrong one is refused */
	memcpy(rd, res.report.report_data, 64);
	o.expected_report_data = rd;
	assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res), 0);
	rd[63] ^= 1;
	assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res),
			 VEIL_EPERM);
	assert_false(res.report_data_ok);
	free_pair(&p);
}

static void test_report_rejected_with_another_chips_vcek(void **state)
{
	struct pair a, b;
	struct veil_snp_opts o = {.now = T_2025_07_01, .allow_debug = true};
	struct veil_snp_result res;

	(void)state;
	if (!load_pair(&a, TRUSTEE) || !load_pair(&b, GOOGLE))
		skip();
	assert_int_equal(veil_snp_verify(a.rep.data, a.rep.len, b.cert.data, b.cert.len, &o, &res),
			 VEIL_EBADMSG);
	assert_false(res.signature_ok);
	free_pair(&a);
	free_pair(&b);
}

static void test_vlek_report_signature_valid_but_chain_unverifiable(void **state)
{
	struct pair p;
	struct veil_snp_opts o = {.now = T_2025_07_01};
	struct veil_snp_result res;
	size_t ask_len;
	const uint8_t *ask = veil_snp_pinned_ask(VEIL_SNP_PRODUCT_MILAN, &ask_len);

	(void)state;
	if (!load_pair(&p, VLEK))
		skip();
	assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res),
			 VEIL_ENOTSUP);
	assert_true(res.signature_ok && res.tcb_ok);
	assert_false(res.chain_checked);
	assert_int_equal(res.signer, VEIL_SNP_SIGNER_VLEK);
	/* the VCEK ASK is no ASVK: the VLEK is not issued by it */
	o.intermediate = ask;
	o.intermediate_len = ask_len;
	assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res),
			 VEIL_EBADMSG);
	assert_false(res.chain_ok);
	free_pair(&p);
}

static void test_flipped_byte_in_signed_region_is_rejected(void **state)
{
	static const size_t offs[] = {0x04, 0x08 + 3, 0x50, 0x90, 0xC0, 0x1A0, 0x29F, 0x2A0, 0x2E8 + 10};
	struct pair p;
	struct veil_snp_opts o = {.now = T_2025_07_01};
	struct veil_snp_result res;

	(void)state;
	if (!load_pair(&p, TRUSTEE))
		skip();
	for (size_t i = 0; i < VEIL_ARRAY_LEN(offs); i++) {
		p.rep.data[offs[i]] ^= 0x01;
		assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o,
						 &res), VEIL_EBADMSG);
		assert_false(res.signature_ok);
		p.rep.data[offs[i]] ^= 0x01;
	}
	assert_int_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res), 0);
	free_pair(&p);
}

static void test_flipped_byte_in_vcek_is_rejected(void **state)
{
	struct pair p;
	struct veil_snp_opts o = {.now = T_2025_07_01};
	struct veil_snp_result res;
	size_t at;

	(void)state;
	if (!load_pair(&p, TRUSTEE))
		skip();
	at = p.cert.len - 20; /* inside the VCEK's RSA-PSS signature by the ASK */
	p.cert.data[at] ^= 0x40;
	assert_int_not_equal(veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res),
			     0);
	assert_false(res.chain_ok);
	free_pair(&p);
}

static void test_pinned_amd_roots_equal_shared_pem(void **state)
{
	static const struct {
		enum veil_snp_product p;
		const char *file;
	} t[] = {
		{VEIL_SNP_PRODUCT_MILAN, "attest/roots/amd/ask_ark_milan.pem"},
		{VEIL_SNP_PRODUCT_GENOA, "attest/roots/amd/ask_ark_genoa.pem"},
		{VEIL_SNP_PRODUCT_TURIN, "attest/roots/amd/ask_ark_turin_vcek.pem"},
	};

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(t); i++) {
		struct veil_buf b = VEIL_BUF_INIT(1 << 16);
		BIO *bio;
		X509 *ask, *ark;
		unsigned char *d1 = NULL, *d2 = NULL;
		int l1, l2;
		size_t ask_len, ark_len;
		const uint8_t *pa = veil_snp_pinned_ask(t[i].p, &ask_len);
		const uint8_t *pr = veil_snp_pinned_ark(t[i].p, &ark_len);

		if (!load(t[i].file, &b))
			skip();
		bio = BIO_new_mem_buf(b.data, (int)b.len);
		ask = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		ark = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		assert_non_null(ask);
		assert_non_null(ark);
		l1 = i2d_X509(ask, &d1);
		l2 = i2d_X509(ark, &d2);
		assert_int_equal((size_t)l1, ask_len);
		assert_memory_equal(d1, pa, ask_len);
		assert_int_equal((size_t)l2, ark_len);
		assert_memory_equal(d2, pr, ark_len);
		OPENSSL_free(d1);
		OPENSSL_free(d2);
		X509_free(ask);
		X509_free(ark);
		BIO_free(bio);
		veil_buf_free(&b);
	}
	assert_null(veil_snp_pinned_ark(VEIL_SNP_PRODUCT_UNKNOWN, NULL));
}

static void test_verdict_json_has_contract_keys(void **state)
{
	struct pair p;
	struct veil_snp_opts o = {.now = T_2025_07_01};
	struct veil_snp_result res;
	json_t *j;
	int rc;

	(void)state;
	if (!load_pair(&p, TRUSTEE))
		skip();
	rc = veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res);
	j = veil_snp_verdict_json(&res, rc);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "ok")));
	assert_string_equal(json_string_value(json_object_get(j, "kind")), "snp");
	assert_string_equal(json_string_value(json_object_get(j, "status")), "verified");
	assert_int_equal(json_array_size(json_object_get(j, "advisories")), 0);
	assert_true(json_is_null(json_object_get(j, "error")));
	assert_string_equal(json_string_value(json_object_get(j, "measurement")),
			    "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c"
			    "23500644e0e692e6be917f9050d3d38c");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "reported_tcb"), "snp")), 8);
	assert_int_equal(json_integer_value(json_object_get(j, "vmpl")), 0);
	assert_non_null(json_object_get(j, "host_data"));
	assert_non_null(json_object_get(j, "chip_id"));
	assert_non_null(json_object_get(j, "policy"));
	json_decref(j);

	p.rep.data[0x90] ^= 1;
	rc = veil_snp_verify(p.rep.data, p.rep.len, p.cert.data, p.cert.len, &o, &res);
	j = veil_snp_verdict_json(&res, rc);
	assert_true(json_is_false(json_object_get(j, "ok")));
	assert_string_equal(json_string_value(json_object_get(j, "status")), "signature_invalid");
	assert_true(json_is_string(json_object_get(j, "error")));
	json_decref(j);
	free_pair(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_reads_every_field_of_milan_v2_report),
		cmocka_unit_test(test_parse_reads_v3_vlek_report_cpuid_and_signer),
		cmocka_unit_test(test_vmpl_above_the_maximum_is_refused),
		cmocka_unit_test(test_tcb_decode_uses_turin_layout_for_turin),
		cmocka_unit_test(test_parse_rejects_wrong_length_and_version),
		cmocka_unit_test(test_google_report_verifies_when_debug_allowed),
		cmocka_unit_test(test_google_report_rejected_for_debug_policy_by_default),
		cmocka_unit_test(test_google_report_rejected_outside_vcek_validity),
		cmocka_unit_test(test_trustee_vcek_report_verifies),
		cmocka_unit_test(test_report_rejected_with_another_chips_vcek),
		cmocka_unit_test(test_vlek_report_signature_valid_but_chain_unverifiable),
		cmocka_unit_test(test_flipped_byte_in_signed_region_is_rejected),
		cmocka_unit_test(test_flipped_byte_in_vcek_is_rejected),
		cmocka_unit_test(test_pinned_amd_roots_equal_shared_pem),
		cmocka_unit_test(test_verdict_json_has_contract_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
