/* Unit tests of the NVIDIA GPU evidence verifier against the real captures
 * in $VEIL_SHARED/vectors/attest/nvidia and vectors/nearai (VEIL_SHARED
 * defaults to ../shared; tests run from the repository root), with the
 * expected outcomes of vectors/MANIFEST.md: positive reports, the negative
 * trustee chains, trustee's parsed claims, the 8-GPU NRAS evidence list,
 * the RIM samples, and synthetic corruptions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "veil/base.h"
#include "veil/nvgpu.h"

static bool load(const char *rel, struct veil_buf *b)
{
	const char *root = getenv("VEIL_SHARED");
	char path[4096];

	snprintf(path, sizeof(path), "%s/vectors/%s", root && *root ? root : "../shared", rel);
	memset(b, 0, sizeof(*b));
	b->max = 1 << 20;
	if (veil_buf_read_file(b, path) < 0) {
		fprintf(stderr, "test_nvgpu: SKIP: %s not readable; set VEIL_SHARED to the shared "
			"data directory\n", path);
		return false;
	}
	return true;
}

/* Evidence (hex text file) and chain (PEM file). */
struct vec {
	struct veil_buf ev, pem;
};

static bool load_vec(struct vec *v, const char *report, const char *chain)
{
	struct veil_buf t;
	bool ok;

	memset(v, 0, sizeof(*v));
	if (!load(report, &t))
		return false;
	v->ev.max = VEIL_NVGPU_MAX_EVIDENCE;
	ok = veil_hex_text_decode((const char *)t.data, t.len, &v->ev) == 0;
	veil_buf_free(&t);
	assert_true(ok);
	return load(chain, &v->pem);
}

static void free_vec(struct vec *v)
{
	veil_buf_free(&v->ev);
	veil_buf_free(&v->pem);
}

static int verify(const struct vec *v, const struct veil_nvgpu_opts *o, struct veil_nvgpu_result *r)
{
	return veil_nvgpu_verify(v->ev.data, v->ev.len, (const char *)v->pem.data, v->pem.len, o, r);
}

#define NV "attest/nvidia/"
#define HOPPER NV "nvtrust/hopperAttestationReport.txt"
#define HOPPER_CHAIN NV "nvtrust/hopperCertChain.txt"
#define BW NV "trustee/blackwellAttestationReport.txt"
#define BW_CHAIN NV "trustee/blackwell_cert_chain_case1.txt"
#define COCO NV "trustee/hopper_coco_report1.txt"
#define COCO_CHAIN NV "trustee/hopper_coco_certs1.txt"

static const struct {
	const char *report, *chain;
	const char *nonce8;       /* first 4 nonce bytes, hex */
	const char *driver, *vbios;
	enum veil_nvgpu_arch arch;
	size_t trailing;
} positives[] = {
	{HOPPER, HOPPER_CHAIN, "931d8dd0", "550.90.07", "96.00.9f.00.01", VEIL_NVGPU_ARCH_HOPPER, 0},
	{BW, BW_CHAIN, "4cff7f53", "595.58.03", "98.02.81.00.01", VEIL_NVGPU_ARCH_BLACKWELL, 0},
	{COCO, COCO_CHAIN, "87d8e24a", "580.95.05", "96.00.74.00.1a", VEIL_NVGPU_ARCH_HOPPER, 1},
	{NV "trustee-blackwell-coco/blackwell_coco_report.txt",
	 NV "trustee-blackwell-coco/blackwell_coco_certs.txt", "d622979b", "595.58.03",
	 "98.02.74.00.01", VEIL_NVGPU_ARCH_BLACKWELL, 0},
};

static void test_every_positive_vector_verifies(void **state)
{
	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(positives); i++) {
		struct vec v;
		struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
		char nonce[9];
		int rc;

		assert_non_null(r);
		if (!load_vec(&v, positives[i].report, positives[i].chain))
			skip();
		rc = verify(&v, NULL, r);
		if (rc != 0)
			fail_msg("%s: rc %d: %s", positives[i].report, rc, r->error);
		assert_true(r->signature_ok && r->chain_ok && r->fwid_ok);
		veil_hex_encode(r->ev.nonce, 4, nonce, sizeof(nonce));
		assert_string_equal(nonce, positives[i].nonce8);
		assert_string_equal(r->ev.driver_version, positives[i].driver);
		assert_string_equal(r->ev.vbios_version, positives[i].vbios);
		assert_int_equal(r->arch, positives[i].arch);
		assert_int_equal(r->ev.trailing, positives[i].trailing);
		assert_int_equal(r->ev.n_blocks, 64);
		assert_int_equal(r->n_certs, 5);
		assert_int_equal(r->ev.fwid_len, 48);
		free_vec(&v);
		free(r);
	}
}

static void test_blackwell_fwid_and_ueid_match_fixture(void **state)
{
	struct vec v;
	struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
	char fwid[97];

	(void)state;
	if (!load_vec(&v, BW, BW_CHAIN))
		skip();
	assert_int_equal(verify(&v, NULL, r), 0);
	veil_hex_encode(r->ev.fwid, r->ev.fwid_len, fwid, sizeof(fwid));
	assert_string_equal(fwid, "9b92cc3e53b9265259e1abde163653288c2474fcafd8e5c0fd62ce9c9036fb62"
			    "723fe3715b50f4ac27c68b62e2fd9240");
	assert_string_equal(r->ueid, "408762037488965241743361667085904172082023387885");
	free_vec(&v);
	free(r);
}

static void test_negative_chains_are_rejected(void **state)
{
	static const struct {
		const char *report, *chain, *why;
	} neg[] = {
		{HOPPER, NV "trustee/hopper_cert_chain_case2.txt", "at least"},
		{HOPPER, NV "trustee/hopper_cert_chain_case3.txt", "failed to verify"},
		{HOPPER, NV "trustee/hopper_cert_chain_case4.txt", "FWID extension"},
		{BW, NV "trustee/blackwell_cert_chain_case2.txt", "at least"},
		{BW, NV "trustee/blackwell_cert_chain_case3.txt", "failed to verify"},
		/* a valid chain of another GPU: FWID and signature do not match */
		{HOPPER, COCO_CHAIN, "FWID does not equal"},
		{BW, HOPPER_CHAIN, "FWID does not equal"},
	};

	(void)state;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(neg); i++) {
		struct vec v;
		struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
		int rc;

		if (!load_vec(&v, neg[i].report, neg[i].chain))
			skip();
		rc = verify(&v, NULL, r);
		if (rc != VEIL_EBADMSG || !strstr(r->error, neg[i].why))
			fail_msg("%s: rc %d, error \"%s\", want EBADMSG with \"%s\"", neg[i].chain, rc,
				 r->error, neg[i].why);
		assert_false(r->signature_ok);
		free_vec(&v);
		free(r);
	}
}

static void test_coco_report_signature_located_by_parsing(void **state)
{
	struct vec v;
	struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
	uint8_t z = 0, one = 1;

	(void)state;
	if (!load_vec(&v, COCO, COCO_CHAIN))
		skip();
	assert_int_equal(v.ev.len, 4130);
	assert_int_equal(verify(&v, NULL, r), 0);
	assert_int_equal(r->ev.signed_len + VEIL_NVGPU_SIG_LEN, 4129);
	/* without the trailing byte it still verifies */
	v.ev.len--;
	assert_int_equal(verify(&v, NULL, r), 0);
	/* a non-zero trailing byte, or too many, is refused */
	assert_int_equal(veil_buf_append(&v.ev, &one, 1), 0);
	assert_int_equal(verify(&v, NULL, r), VEIL_EFORMAT);
	v.ev.len--;
	for (int i = 0; i < 17; i++)
		assert_int_equal(veil_buf_append(&v.ev, &z, 1), 0);
	assert_int_equal(verify(&v, NULL, r), VEIL_EFORMAT);
	free_vec(&v);
	free(r);
}

static void test_flipped_byte_in_signed_region_is_rejected(void **state)
{
	struct vec v;
	struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
	size_t offs[6];

	(void)state;
	if (!load_vec(&v, HOPPER, HOPPER_CHAIN))
		skip();
	assert_int_equal(verify(&v, NULL, r), 0);
	offs[0] = 10;                          /* requester nonce */
	offs[1] = 37 + 8 + 4 + 3 + 5;          /* first measurement value */
	offs[2] = r->ev.opaque_off - 10;       /* responder nonce */
	offs[3] = r->ev.opaque_off + r->ev.tlvs[0].off + 2; /* VBIOS version bytes */
	offs[4] = r->ev.signed_len + 5;        /* r */
	offs[5] = v.ev.len - 1;                /* s */
	for (size_t i = 0; i < VEIL_ARRAY_LEN(offs); i++) {
		int rc;

		v.ev.data[offs[i]] ^= 0x01;
		rc = verify(&v, NULL, r);
		if (rc != VEIL_EBADMSG || r->signature_ok)
			fail_msg("flip at %zu: rc %d (%s)", offs[i], rc, r->error);
		v.ev.data[offs[i]] ^= 0x01;
	}
	assert_int_equal(verify(&v, NULL, r), 0);
	free_vec(&v);
	free(r);
}

static void test_every_truncation_is_refused(void **state)
{
	struct vec v;
	struct veil_nvgpu_evidence *ev = malloc(sizeof(*ev));

	(void)state;
	if (!load_vec(&v, HOPPER, HOPPER_CHAIN))
		skip();
	assert_int_equal(veil_nvgpu_parse(v.ev.data, v.ev.len, ev), 0);
	for (size_t n = 0; n < v.ev.len; n++)
		if (veil_nvgpu_parse(v.ev.data, n, ev) == 0)
			fail_msg("prefix of %zu bytes parsed", n);
	free_vec(&v);
	free(ev);
}

static void test_expected_nonce_is_checked(void **state)
{
	struct vec v;
	struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
	struct veil_nvgpu_opts o = {0};
	uint8_t nonce[32];

	(void)state;
	if (!load_vec(&v, HOPPER, HOPPER_CHAIN))
		skip();
	memcpy(nonce, v.ev.data + 4, 32);
	o.expected_nonce = nonce;
	assert_int_equal(verify(&v, &o, r), 0);
	assert_true(r->nonce_checked && r->nonce_ok);
	nonce[31] ^= 0x80;
	assert_int_equal(verify(&v, &o, r), VEIL_EPERM);
	assert_true(r->nonce_checked);
	assert_false(r->nonce_ok);
	free_vec(&v);
	free(r);
}

static void check_claims(const char *report, const char *chain, const char *claims)
{
	struct vec v;
	struct veil_buf c;
	struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
	json_t *want, *got;
	json_error_t err;

	if (!load_vec(&v, report, chain) || !load(claims, &c))
		skip();
	assert_int_equal(verify(&v, NULL, r), 0);
	want = json_loadb((const char *)c.data, c.len, 0, &err);
	assert_non_null(want);
	json_object_del(want, "uuid"); /* trustee's fixed placeholder, not evidence */
	got = veil_nvgpu_claims_json(r);
	assert_non_null(got);
	if (!json_equal(want, got)) {
		char *a = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);
		char *b = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);

		fail_msg("claims differ:\nwant %s\ngot  %s", a, b);
	}
	json_decref(want);
	json_decref(got);
	veil_buf_free(&c);
	free_vec(&v);
	free(r);
}

static void test_hopper_claims_equal_trustee_claims(void **state)
{
	(void)state;
	check_claims(HOPPER, HOPPER_CHAIN, NV "trustee/hopperAttestationReport-claims.txt");
}

static void test_blackwell_claims_equal_trustee_claims(void **state)
{
	(void)state;
	check_claims(BW, BW_CHAIN, NV "trustee/blackwellAttestationReport-claims.txt");
}

static void test_ppcie_evidence_list_all_eight_verify(void **state)
{
	struct veil_buf b;
	struct veil_nvgpu_result *res = NULL;
	size_t n = 0, i;
	json_t *j, *e;

	(void)state;
	if (!load(NV "nvtrust/ppcie_gpu_evidence.json", &b))
		skip();
	assert_int_equal(veil_nvgpu_verify_list((const char *)b.data, b.len, NULL, &res, &n), 0);
	assert_int_equal(n, 8);
	j = json_loadb((const char *)b.data, b.len, 0, NULL);
	assert_non_null(j);
	json_array_foreach(j, i, e) {
		char nonce[65];

		assert_true(res[i].signature_ok && res[i].chain_ok && res[i].fwid_ok);
		assert_string_equal(res[i].ev.driver_version,
				    json_string_value(json_object_get(e, "driver_version")));
		assert_int_equal(strcasecmp(res[i].ev.vbios_version,
					    json_string_value(json_object_get(e, "vbios_version"))), 0);
		veil_hex_encode(res[i].ev.nonce, 32, nonce, sizeof(nonce));
		assert_int_equal(strcasecmp(nonce, json_string_value(json_object_get(e, "nonce"))), 0);
		assert_int_equal(res[i].arch, VEIL_NVGPU_ARCH_HOPPER);
	}
	json_decref(j);
	free(res);
	veil_buf_free(&b);
}

static void test_ppcie_list_with_one_wrong_nonce_fails(void **state)
{
	struct veil_buf b;
	struct veil_nvgpu_result *res = NULL;
	size_t n = 0;
	json_t *j;
	char *text;

	(void)state;
	if (!load(NV "nvtrust/ppcie_gpu_evidence.json", &b))
		skip();
	j = json_loadb((const char *)b.data, b.len, 0, NULL);
	json_object_set_new(json_array_get(j, 3), "nonce",
			    json_string("00000000000000000000000000000000"
					"00000000000000000000000000000000"));
	text = json_dumps(j, 0);
	assert_int_equal(veil_nvgpu_verify_list(text, strlen(text), NULL, &res, &n), VEIL_EPERM);
	assert_int_equal(n, 8);
	assert_true(res[3].signature_ok);
	assert_non_null(strstr(res[3].error, "nonce"));
	assert_int_equal(res[2].error[0], '\0');
	free(res);
	free(text);
	json_decref(j);
	veil_buf_free(&b);
}

static void test_nearai_nvidia_payload_verifies(void **state)
{
	struct veil_buf b;
	struct veil_nvgpu_result *res = NULL;
	struct veil_nvgpu_opts o = {0};
	uint8_t nonce[32];
	size_t n = 0, got;

	(void)state;
	if (!load("nearai/private-ml-sdk-report.json", &b))
		skip();
	assert_int_equal(veil_nvgpu_verify_list((const char *)b.data, b.len, NULL, &res, &n), 0);
	assert_int_equal(n, 1);
	assert_true(res[0].signature_ok && res[0].chain_ok && res[0].fwid_ok);
	free(res);
	assert_int_equal(veil_hex_decode("89d36f654c47ef2bb6ed989c9655ea19548a9057a97ef4e0b7ad54dfcf5e6b00",
					 64, nonce, sizeof(nonce), &got), 0);
	o.expected_nonce = nonce;
	assert_int_equal(veil_nvgpu_verify_list((const char *)b.data, b.len, &o, &res, &n), 0);
	free(res);
	nonce[0] ^= 1;
	assert_int_equal(veil_nvgpu_verify_list((const char *)b.data, b.len, &o, &res, &n), VEIL_EPERM);
	free(res);
	veil_buf_free(&b);
}

static void test_rim_samples_parse(void **state)
{
	struct veil_buf b;
	struct veil_nvgpu_rim *rim = calloc(1, sizeof(*rim));
	size_t active = 0;

	(void)state;
	if (!load(NV "nvtrust/1010_0200_882_96005E0001_PROD.swidtag", &b))
		skip();
	assert_int_equal(veil_nvgpu_rim_parse((const char *)b.data, b.len, rim), 0);
	assert_string_equal(rim->product, "GH100");
	assert_string_equal(rim->version, "96.00.5E.00.01");
	assert_int_equal(rim->n, 64);
	assert_true(rim->signed_);
	assert_int_equal(rim->e[3].index, 3);
	assert_int_equal(rim->e[3].len, 48);
	assert_memory_equal(rim->e[3].hash[0], "\x73\xbb\xf3\x58", 4);
	veil_buf_free(&b);
	if (!load(NV "nvtrust/Driver_RIM_test_no_gpu.swidtag", &b))
		skip();
	assert_int_equal(veil_nvgpu_rim_parse((const char *)b.data, b.len, rim), 0);
	assert_string_equal(rim->version, "545.00");
	for (size_t i = 0; i < rim->n; i++)
		active += rim->e[i].active;
	assert_int_equal(active, 21);
	/* truncated anywhere inside a tag: refused or fewer measurements */
	assert_int_not_equal(veil_nvgpu_rim_parse((const char *)b.data, 600, rim), 0);
	veil_buf_free(&b);
	free(rim);
}

static void test_rim_comparison_reports_per_measurement_results(void **state)
{
	struct vec v;
	struct veil_buf b;
	struct veil_nvgpu_rim *rim = calloc(1, sizeof(*rim));
	struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
	struct veil_nvgpu_opts o = {0};
	static const unsigned match[] = {1, 4, 5, 6, 7, 9, 11, 13}, mismatch[] = {2, 3, 10, 12};

	(void)state;
	if (!load_vec(&v, HOPPER, HOPPER_CHAIN) ||
	    !load(NV "nvtrust/1010_0200_882_96005E0001_PROD.swidtag", &b))
		skip();
	assert_int_equal(veil_nvgpu_rim_parse((const char *)b.data, b.len, rim), 0);
	o.rim_vbios = rim;
	/* the sample RIM is for VBIOS 96.00.5E.00.01, the report has 96.00.9f.00.01 */
	assert_int_equal(verify(&v, &o, r), VEIL_EPERM);
	assert_true(r->signature_ok && r->rim_checked);
	assert_false(r->rim_ok);
	assert_non_null(strstr(r->error, "VBIOS RIM version"));
	assert_int_equal(r->rim_mismatches, 4);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(match); i++)
		assert_int_equal(r->meas[match[i]], VEIL_NVGPU_MEAS_MATCH);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(mismatch); i++)
		assert_int_equal(r->meas[mismatch[i]], VEIL_NVGPU_MEAS_MISMATCH);
	assert_int_equal(r->meas[20], VEIL_NVGPU_MEAS_NOT_CHECKED);
	/* a RIM that matches every active block (made from the report) passes */
	strcpy(rim->version, "96.00.9F.00.01");
	for (size_t i = 0; i < rim->n; i++)
		if (rim->e[i].active)
			memcpy(rim->e[i].hash[0], r->ev.blocks[rim->e[i].index].value, 48);
	assert_int_equal(verify(&v, &o, r), 0);
	assert_true(r->rim_ok);
	{
		/* the verdict says the RIM's own signature was not checked */
		json_t *j = veil_nvgpu_verdict_json(r, 0), *c = json_object_get(j, "checks");

		assert_true(json_is_true(json_object_get(c, "rim")));
		assert_non_null(json_object_get(c, "rim_signature"));
		assert_true(json_is_null(json_object_get(c, "rim_signature")));
		json_decref(j);
	}
	veil_buf_free(&b);
	free_vec(&v);
	free(rim);
	free(r);
}

static void test_pinned_root_equals_shared_pem(void **state)
{
	struct veil_buf b;
	BIO *bio;
	X509 *c;
	unsigned char *d = NULL;
	size_t len;
	const uint8_t *pinned = veil_nvgpu_pinned_root(&len);
	int l;

	(void)state;
	if (!load("attest/roots/nvidia/verifier_device_root.pem", &b))
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

static void test_verdict_json_has_contract_keys(void **state)
{
	struct vec v;
	struct veil_nvgpu_result *r = calloc(1, sizeof(*r));
	json_t *j;
	int rc;

	(void)state;
	if (!load_vec(&v, BW, BW_CHAIN))
		skip();
	rc = verify(&v, NULL, r);
	j = veil_nvgpu_verdict_json(r, rc);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "ok")));
	assert_string_equal(json_string_value(json_object_get(j, "kind")), "nvgpu");
	assert_string_equal(json_string_value(json_object_get(j, "status")), "verified");
	assert_int_equal(json_array_size(json_object_get(j, "advisories")), 0);
	assert_true(json_is_null(json_object_get(j, "error")));
	assert_string_equal(json_string_value(json_object_get(j, "arch")), "blackwell");
	assert_string_equal(json_string_value(json_object_get(j, "driver_version")), "595.58.03");
	assert_string_equal(json_string_value(json_object_get(j, "vbios_version")), "98.02.81.00.01");
	assert_string_equal(json_string_value(json_object_get(j, "nonce")),
			    "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e");
	assert_int_equal(json_integer_value(json_object_get(j, "measurements_count")), 64);
	assert_int_equal(json_array_size(json_object_get(j, "measurements")), 64);
	assert_non_null(json_object_get(j, "fwid"));
	json_decref(j);
	free_vec(&v);

	if (!load_vec(&v, HOPPER, NV "trustee/hopper_cert_chain_case3.txt"))
		skip();
	rc = verify(&v, NULL, r);
	j = veil_nvgpu_verdict_json(r, rc);
	assert_true(json_is_false(json_object_get(j, "ok")));
	assert_string_equal(json_string_value(json_object_get(j, "status")), "chain_invalid");
	assert_true(json_is_string(json_object_get(j, "error")));
	json_decref(j);
	free_vec(&v);
	free(r);
}

static void test_parse_rejects_malformed_headers(void **state)
{
	struct vec v;
	struct veil_nvgpu_evidence *ev = malloc(sizeof(*ev));

	(void)state;
	if (!load_vec(&v, HOPPER, HOPPER_CHAIN))
		skip();
	v.ev.data[0] = 0x12; /* SPDM 1.2 */
	assert_int_equal(veil_nvgpu_parse(v.ev.data, v.ev.len, ev), VEIL_ENOTSUP);
	v.ev.data[0] = 0x11;
	v.ev.data[2] = 0x00; /* no signature requested */
	assert_int_equal(veil_nvgpu_parse(v.ev.data, v.ev.len, ev), VEIL_EFORMAT);
	v.ev.data[2] = 0x01;
	v.ev.data[37 + 1] = 0x61; /* not MEASUREMENTS */
	assert_int_equal(veil_nvgpu_parse(v.ev.data, v.ev.len, ev), VEIL_ENOTSUP);
	v.ev.data[37 + 1] = 0x60;
	v.ev.data[37 + 4] = 63; /* block count disagrees with the record length */
	assert_int_equal(veil_nvgpu_parse(v.ev.data, v.ev.len, ev), VEIL_EFORMAT);
	v.ev.data[37 + 4] = 64;
	v.ev.data[37 + 7] = 0x10; /* record length past the end */
	assert_int_equal(veil_nvgpu_parse(v.ev.data, v.ev.len, ev), VEIL_EFORMAT);
	v.ev.data[37 + 7] = 0x00;
	assert_int_equal(veil_nvgpu_parse(v.ev.data, v.ev.len, ev), 0);
	free_vec(&v);
	free(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_positive_vector_verifies),
		cmocka_unit_test(test_blackwell_fwid_and_ueid_match_fixture),
		cmocka_unit_test(test_negative_chains_are_rejected),
		cmocka_unit_test(test_coco_report_signature_located_by_parsing),
		cmocka_unit_test(test_flipped_byte_in_signed_region_is_rejected),
		cmocka_unit_test(test_every_truncation_is_refused),
		cmocka_unit_test(test_expected_nonce_is_checked),
		cmocka_unit_test(test_hopper_claims_equal_trustee_claims),
		cmocka_unit_test(test_blackwell_claims_equal_trustee_claims),
		cmocka_unit_test(test_ppcie_evidence_list_all_eight_verify),
		cmocka_unit_test(test_ppcie_list_with_one_wrong_nonce_fails),
		cmocka_unit_test(test_nearai_nvidia_payload_verifies),
		cmocka_unit_test(test_rim_samples_parse),
		cmocka_unit_test(test_rim_comparison_reports_per_measurement_results),
		cmocka_unit_test(test_pinned_root_equals_shared_pem),
		cmocka_unit_test(test_verdict_json_has_contract_keys),
		cmocka_unit_test(test_parse_rejects_malformed_headers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
