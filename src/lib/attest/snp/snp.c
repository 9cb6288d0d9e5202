/* AMD SEV-SNP attestation report parsing and verification.
 *
 * Layout: AMD SEV-SNP Firmware ABI Specification (56860) rev 1.55+,
 * Table 23 "ATTESTATION_REPORT Structure"; signature format Table 137
 * (ECDSA P-384 r and s, 72-byte little-endian each); VCEK certificate
 * extensions: AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS
 * Interface Specification" (57230) §3.1 (1.3.6.1.4.1.3704.1.x). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "veil/base.h"
#include "snp_internal.h"

#define OID_AMD "1.3.6.1.4.1.3704.1."

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}

int veil_snp_report_parse(const uint8_t *p, size_t n, struct veil_snp_report *out)
{
	struct veil_snp_report r;

	if (!p || !out)
		return veil_errf(VEIL_EINVAL, "SNP report: NULL argument");
	if (n != VEIL_SNP_REPORT_LEN)
		return veil_errf(VEIL_EFORMAT, "SNP report: length %zu, expected %d", n,
				 VEIL_SNP_REPORT_LEN);
	memset(&r, 0, sizeof(r));
	r.version = le32(p + 0x00);
	if (r.version < 2 || r.version > 5)
		return veil_errf(VEIL_ENOTSUP, "SNP report: version %u (2..5 supported)", r.version);
	r.guest_svn = le32(p + 0x04);
	r.policy = le64(p + 0x08);
	memcpy(r.family_id, p + 0x10, 16);
	memcpy(r.image_id, p + 0x20, 16);
	r.vmpl = le32(p + 0x30);
	r.signature_algo = le32(p + 0x34);
	r.current_tcb = le64(p + 0x38);
	r.platform_info = le64(p + 0x40);
	r.signer_info = le32(p + 0x48);
	r.author_key_en = r.signer_info & 1;
	r.mask_chip_key = (r.signer_info >> 1) & 1;
	r.signing_key = (r.signer_info >> 2) & 7;
	memcpy(r.report_data, p + 0x50, 64);
	memcpy(r.measurement, p + 0x90, 48);
	memcpy(r.host_data, p + 0xC0, 32);
	memcpy(r.id_key_digest, p + 0xE0, 48);
	memcpy(r.author_key_digest, p + 0x110, 48);
	memcpy(r.report_id, p + 0x140, 32);
	memcpy(r.report_id_ma, p + 0x160, 32);
	r.reported_tcb = le64(p + 0x180);
	if (r.version >= 3) {
		r.cpuid_fam_id = p[0x188];
		r.cpuid_mod_id = p[0x189];
		r.cpuid_step = p[0x18A];
	}
	memcpy(r.chip_id, p + 0x1A0, 64);
	r.committed_tcb = le64(p + 0x1E0);
	r.current_build = p[0x1E8];
	r.current_minor = p[0x1E9];
	r.current_major = p[0x1EA];
	r.committed_build = p[0x1EC];
	r.committed_minor = p[0x1ED];
	r.committed_major = p[0x1EE];
	r.launch_tcb = le64(p + 0x1F0);
	memcpy(r.sig_r, p + 0x2A0, 72);
	memcpy(r.sig_s, p + 0x2E8, 72);
	*out = r;
	return 0;
}

enum veil_snp_product veil_snp_report_product(const struct veil_snp_report *r)
{
	if (r->version < 3)
		return VEIL_SNP_PRODUCT_UNKNOWN;
	if (r->cpuid_fam_id == 0x19 && r->cpuid_mod_id <= 0x0F)
		return VEIL_SNP_PRODUCT_MILAN;
	if (r->cpuid_fam_id == 0x19 && r->cpuid_mod_id >= 0x10 && r->cpuid_mod_id <= 0x1F)
		return VEIL_SNP_PRODUCT_GENOA;
	if (r->cpuid_fam_id == 0x1A && r->cpuid_mod_id <= 0x1F)
		return VEIL_SNP_PRODUCT_TURIN;
	return VEIL_SNP_PRODUCT_UNKNOWN;
}

void veil_snp_tcb_decode(uint64_t raw, enum veil_snp_product prod, struct veil_snp_tcb *t)
{
	memset(t, 0, sizeof(*t));
	t->raw = raw;
	if (prod == VEIL_SNP_PRODUCT_TURIN) {
		t->fmc = (uint8_t)raw;
		t->bootloader = (uint8_t)(raw >> 8);
		t->tee = (uint8_t)(raw >> 16);
		t->snp = (uint8_t)(raw >> 24);
	} else {
		t->bootloader = (uint8_t)raw;
		t->tee = (uint8_t)(raw >> 8);
		t->snp = (uint8_t)(raw >> 48);
	}
	t->microcode = (uint8_t)(raw >> 56);
}

const char *veil_snp_product_name(enum veil_snp_product p)
{
	switch (p) {
	case VEIL_SNP_PRODUCT_MILAN: return "Milan";
	case VEIL_SNP_PRODUCT_GENOA: return "Genoa";
	case VEIL_SNP_PRODUCT_TURIN: return "Turin";
	default: return "unknown";
	}
}

static const struct snp_root *root_of(enum veil_snp_product p)
{
	for (size_t i = 0; i < SNP_ROOT_COUNT; i++)
		if (snp_roots[i].product == p)
			return &snp_roots[i];
	return NULL;
}

const uint8_t *veil_snp_pinned_ark(enum veil_snp_product p, size_t *len)
{
	const struct snp_root *r = root_of(p);

	if (!r)
		return NULL;
	if (len)
		*len = r->ark_len;
	return r->ark;
}

const uint8_t *veil_snp_pinned_ask(enum veil_snp_product p, size_t *len)
{
	const struct snp_root *r = root_of(p);

	if (!r)
		return NULL;
	if (len)
		*len = r->ask_len;
	return r->ask;
}

/* ---- verification ------------------------------------------------------- */

static int fail(struct veil_snp_result *res, int rc, const char *fmt, ...) VEIL_PRINTF(3, 4);

static int fail(struct veil_snp_result *res, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
	ERR_clear_error();
	return veil_errf(rc, "%s", res->error);
}

/* DER or PEM certificate. */
static X509 *load_cert(const uint8_t *p, size_t n)
{
	X509 *c = NULL;

	if (n > 64 * 1024)
		return NULL;
	if (n > 10 && !memcmp(p, "-----BEGIN", 10)) {
		BIO *b = BIO_new_mem_buf(p, (int)n);

		if (b)
			c = PEM_read_bio_X509(b, NULL, NULL, NULL);
		BIO_free(b);
	} else {
		const uint8_t *q = p;

		c = d2i_X509(NULL, &q, (long)n);
		if (c && q != p + n) {
			X509_free(c);
			c = NULL;
		}
	}
	ERR_clear_error();
	return c;
}

static const ASN1_OCTET_STRING *ext_data(X509 *c, const char *oid_txt)
{
	ASN1_OBJECT *oid = OBJ_txt2obj(oid_txt, 1);
	int idx;

	if (!oid)
		return NULL;
	idx = X509_get_ext_by_OBJ(c, oid, -1);
	ASN1_OBJECT_free(oid);
	return idx < 0 ? NULL : X509_EXTENSION_get_data(X509_get_ext(c, idx));
}

/* A TCB component extension: DER INTEGER 0..255.  -1 absent, -2 malformed. */
static int ext_spl(X509 *c, const char *oid_txt)
{
	const ASN1_OCTET_STRING *d = ext_data(c, oid_txt);
	const uint8_t *p;
	ASN1_INTEGER *i;
	long v;

	if (!d)
		return -1;
	p = ASN1_STRING_get0_data(d);
	i = d2i_ASN1_INTEGER(NULL, &p, ASN1_STRING_length(d));
	if (!i)
		return -2;
	v = ASN1_INTEGER_get(i);
	ASN1_INTEGER_free(i);
	return v < 0 || v > 255 ? -2 : (int)v;
}

static int cert_tcb(struct veil_snp_result *res, X509 *c, enum veil_snp_product prod)
{
	static const struct {
		const char *oid;
		const char *name;
	} comp[] = {
		{OID_AMD "3.1", "blSPL"}, {OID_AMD "3.2", "teeSPL"},
		{OID_AMD "3.3", "snpSPL"}, {OID_AMD "3.8", "ucodeSPL"},
		{OID_AMD "3.9", "fmcSPL"},
	};
	int v[5];

	for (size_t i = 0; i < VEIL_ARRAY_LEN(comp); i++) {
		v[i] = ext_spl(c, comp[i].oid);
		if (v[i] == -2 || (v[i] == -1 && (i < 4 || prod == VEIL_SNP_PRODUCT_TURIN)))
			return fail(res, VEIL_EFORMAT, "signing certificate: %s extension (%s) %s",
				    comp[i].name, comp[i].oid, v[i] == -1 ? "missing" : "malformed");
	}
	res->cert_tcb.bootloader = (uint8_t)v[0];
	res->cert_tcb.tee = (uint8_t)v[1];
	res->cert_tcb.snp = (uint8_t)v[2];
	res->cert_tcb.microcode = (uint8_t)v[3];
	res->cert_tcb.fmc = v[4] < 0 ? 0 : (uint8_t)v[4];
	return 0;
}

static enum veil_snp_product product_from_text(const char *s)
{
	if (strstr(s, "Milan"))
		return VEIL_SNP_PRODUCT_MILAN;
	if (strstr(s, "Genoa"))
		return VEIL_SNP_PRODUCT_GENOA;
	if (strstr(s, "Turin"))
		return VEIL_SNP_PRODUCT_TURIN;
	return VEIL_SNP_PRODUCT_UNKNOWN;
}

static void cert_product(struct veil_snp_result *res, X509 *c)
{
	const ASN1_OCTET_STRING *d = ext_data(c, OID_AMD "2");

	/* productName: IA5String "Milan-B0" */
	if (d) {
		const uint8_t *p = ASN1_STRING_get0_data(d);
		int n = ASN1_STRING_length(d);

		if (n >= 2 && p[0] == 0x16 && p[1] == n - 2 && (size_t)n - 2 < sizeof(res->cert_product)) {
			for (int i = 2; i < n; i++)
				res->cert_product[i - 2] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
			res->cert_product[n - 2] = '\0';
		}
	}
}

static int verify_report_sig(struct veil_snp_result *res, X509 *cert, const uint8_t *report)
{
	EVP_PKEY *pk = X509_get0_pubkey(cert);
	ECDSA_SIG *sig = ECDSA_SIG_new();
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t be_r[72], be_s[72];
	BIGNUM *r, *s;
	unsigned char *der = NULL;
	char group[32] = "";
	size_t glen = 0;
	int der_len, rc;

	for (int i = 0; i < 72; i++) {
		be_r[i] = res->report.sig_r[71 - i];
		be_s[i] = res->report.sig_s[71 - i];
	}
	r = BN_bin2bn(be_r, 72, NULL);
	s = BN_bin2bn(be_s, 72, NULL);
	if (!sig || !md || !r || !s) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC ||
	    !EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof(group), &glen) ||
	    strcmp(group, "secp384r1") != 0) {
		rc = fail(res, VEIL_EBADMSG, "signing certificate: key is not ECDSA P-384");
		goto out;
	}
	if (!ECDSA_SIG_set0(sig, r, s)) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	r = s = NULL;
	if ((der_len = i2d_ECDSA_SIG(sig, &der)) <= 0) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, pk) != 1 ||
	    EVP_DigestVerify(md, der, (size_t)der_len, report, VEIL_SNP_SIGNED_LEN) != 1) {
		rc = fail(res, VEIL_EBADMSG, "SNP report signature does not verify with the %s",
			  res->signer == VEIL_SNP_SIGNER_VLEK ? "VLEK" : "VCEK");
		goto out;
	}
	res->signature_ok = true;
	rc = 0;
out:
	OPENSSL_free(der);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(md);
	ERR_clear_error();
	return rc;
}

static int check_validity(struct veil_snp_result *res, X509 *c, const char *what, time_t now)
{
	if (X509_cmp_time(X509_get0_notBefore(c), &now) >= 0)
		return fail(res, VEIL_EPERM, "%s certificate is not yet valid at %lld", what,
			    (long long)now);
	if (X509_cmp_time(X509_get0_notAfter(c), &now) <= 0)
		return fail(res, VEIL_EPERM, "%s certificate expired before %lld", what,
			    (long long)now);
	return 0;
}

/* child must be issued and signed (RSASSA-PSS per its AlgorithmIdentifier)
 * by parent. */
static int check_link(struct veil_snp_result *res, X509 *child, X509 *parent, const char *c_name,
		      const char *p_name)
{
	int err = X509_check_issued(parent, child);

	if (err != X509_V_OK)
		return fail(res, VEIL_EBADMSG, "%s is not issued by %s: %s", c_name, p_name,
			    X509_verify_cert_error_string(err));
	if (X509_get_signature_nid(child) != NID_rsassaPss)
		return fail(res, VEIL_EBADMSG, "%s: signature algorithm is not RSASSA-PSS", c_name);
	if (X509_verify(child, X509_get0_pubkey(parent)) != 1)
		return fail(res, VEIL_EBADMSG, "%s signature by %s does not verify", c_name, p_name);
	return 0;
}

static int verify_chain(struct veil_snp_result *res, X509 *cert, const struct veil_snp_opts *o,
			time_t now)
{
	const struct snp_root *root = root_of(res->product);
	const char *leaf = res->signer == VEIL_SNP_SIGNER_VLEK ? "VLEK" : "VCEK";
	const char *mid_name = res->signer == VEIL_SNP_SIGNER_VLEK ? "ASVK" : "ASK";
	X509 *ark = NULL, *mid = NULL;
	const uint8_t *q;
	int rc;

	if (!root)
		return fail(res, VEIL_ENOTSUP, "SNP: product line unknown; no pinned ARK");
	q = root->ark;
	ark = d2i_X509(NULL, &q, (long)root->ark_len);
	if (!ark) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (o->intermediate) {
		mid = load_cert(o->intermediate, o->intermediate_len);
		if (!mid) {
			rc = fail(res, VEIL_EFORMAT, "intermediate certificate: not DER or PEM");
			goto out;
		}
	} else if (res->signer == VEIL_SNP_SIGNER_VCEK) {
		q = root->ask;
		mid = d2i_X509(NULL, &q, (long)root->ask_len);
		if (!mid) {
			rc = VEIL_ENOMEM;
			goto out;
		}
	} else {
		rc = fail(res, VEIL_ENOTSUP, "VLEK chain: no ASVK certificate for %s is pinned; "
			  "pass it as the intermediate (report signature %s)", root->name,
			  res->signature_ok ? "valid" : "not checked");
		goto out;
	}
	res->chain_checked = true;
	if ((rc = check_link(res, mid, ark, mid_name, "the pinned ARK")) < 0 ||
	    (rc = check_link(res, cert, mid, leaf, mid_name)) < 0 ||
	    (rc = check_link(res, ark, ark, "ARK", "itself")) < 0)
		goto out;
	res->chain_ok = true;
	if ((rc = check_validity(res, cert, leaf, now)) < 0 ||
	    (rc = check_validity(res, mid, mid_name, now)) < 0 ||
	    (rc = check_validity(res, ark, "ARK", now)) < 0) {
		res->chain_ok = false;
		goto out;
	}
	rc = 0;
out:
	X509_free(mid);
	X509_free(ark);
	ERR_clear_error();
	return rc;
}

static int check_tcb_and_chip(struct veil_snp_result *res, X509 *cert)
{
	const struct veil_snp_tcb *a = &res->reported_tcb, *b = &res->cert_tcb;
	const ASN1_OCTET_STRING *hw;

	if (a->bootloader != b->bootloader || a->tee != b->tee || a->snp != b->snp ||
	    a->microcode != b->microcode ||
	    (res->product == VEIL_SNP_PRODUCT_TURIN && a->fmc != b->fmc))
		return fail(res, VEIL_EPERM,
			    "REPORTED_TCB (bl %u tee %u snp %u ucode %u) differs from the signing "
			    "certificate's TCB (bl %u tee %u snp %u ucode %u)", a->bootloader, a->tee,
			    a->snp, a->microcode, b->bootloader, b->tee, b->snp, b->microcode);
	res->tcb_ok = true;
	if (res->signer == VEIL_SNP_SIGNER_VLEK || res->report.mask_chip_key) {
		res->chip_id_ok = true; /* a VLEK is not chip-bound; a masked id is zero */
		return 0;
	}
	hw = ext_data(cert, OID_AMD "4");
	if (!hw)
		return fail(res, VEIL_EFORMAT, "VCEK: hwID extension (" OID_AMD "4) missing");
	{
		const uint8_t *h = ASN1_STRING_get0_data(hw);
		size_t hl = (size_t)ASN1_STRING_length(hw);
		bool ok = hl > 0 && hl <= 64 && !memcmp(h, res->report.chip_id, hl);

		for (size_t i = hl; ok && i < 64; i++)
			ok = res->report.chip_id[i] == 0;
		if (!ok)
			return fail(res, VEIL_EPERM, "CHIP_ID differs from the VCEK's hwID");
	}
	res->chip_id_ok = true;
	return 0;
}

int veil_snp_vmpl_check(const struct veil_snp_report *r, unsigned max_vmpl)
{
	if (r->vmpl > max_vmpl)
		return veil_errf(VEIL_EPERM, "VMPL %u: the report was requested by code less "
				 "privileged than VMPL %u, which may choose its report_data",
				 r->vmpl, max_vmpl);
	return 0;
}

static int check_policy(struct veil_snp_result *res, const struct veil_snp_opts *o)
{
	const struct veil_snp_report *r = &res->report;
	const struct veil_snp_tcb *t = &res->reported_tcb, *m = &o->min_tcb;

	if ((r->policy & VEIL_SNP_POLICY_DEBUG) && !o->allow_debug)
		return fail(res, VEIL_EPERM, "policy: DEBUG (bit 19) is set: the host can read "
			    "guest memory");
	if (t->bootloader < m->bootloader || t->tee < m->tee || t->snp < m->snp ||
	    t->microcode < m->microcode || t->fmc < m->fmc)
		return fail(res, VEIL_EPERM, "REPORTED_TCB is below the required minimum");
	if (veil_snp_vmpl_check(r, o->max_vmpl) < 0)
		return fail(res, VEIL_EPERM, "%s", veil_err_detail());
	res->policy_ok = true;
	if (o->expected_report_data &&
	    memcmp(o->expected_report_data, r->report_data, sizeof(r->report_data)) != 0) {
		res->report_data_ok = false;
		return fail(res, VEIL_EPERM, "REPORT_DATA differs from the expected value");
	}
	return 0;
}

int veil_snp_verify(const uint8_t *report, size_t report_len, const uint8_t *cert_bytes,
		    size_t cert_len, const struct veil_snp_opts *opts, struct veil_snp_result *res)
{
	static const struct veil_snp_opts none;
	const struct veil_snp_opts *o = opts ? opts : &none;
	time_t now = o->now ? (time_t)o->now : time(NULL);
	X509 *cert = NULL;
	char cn[64] = "";
	int rc;

	if (!res)
		return veil_errf(VEIL_EINVAL, "SNP verify: NULL result");
	memset(res, 0, sizeof(*res));
	res->report_data_ok = true;
	if (!report || !cert_bytes)
		return fail(res, VEIL_EINVAL, "SNP verify: NULL report or certificate");
	if ((rc = veil_snp_report_parse(report, report_len, &res->report)) < 0) {
		snprintf(res->error, sizeof(res->error), "%s", veil_err_detail());
		return rc;
	}
	res->parsed = true;
	if (res->report.signature_algo != 1)
		return fail(res, VEIL_ENOTSUP, "SNP report: signature algorithm %u (1 = ECDSA "
			    "P-384/SHA-384 supported)", res->report.signature_algo);
	if (res->report.signing_key == VEIL_SNP_SIGNER_VCEK)
		res->signer = VEIL_SNP_SIGNER_VCEK;
	else if (res->report.signing_key == VEIL_SNP_SIGNER_VLEK)
		res->signer = VEIL_SNP_SIGNER_VLEK;
	else
		return fail(res, VEIL_ENOTSUP, "SNP report: signing key %u (not VCEK or VLEK)",
			    res->report.signing_key);
	if (!(cert = load_cert(cert_bytes, cert_len)))
		return fail(res, VEIL_EFORMAT, "signing certificate: not a DER or PEM certificate");
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
	ERR_clear_error();
	if (strcmp(cn, res->signer == VEIL_SNP_SIGNER_VLEK ? "SEV-VLEK" : "SEV-VCEK") != 0) {
		rc = fail(res, VEIL_EBADMSG, "signing certificate is \"%s\" but the report says "
			  "it is signed by the %s", cn,
			  res->signer == VEIL_SNP_SIGNER_VLEK ? "VLEK" : "VCEK");
		goto out;
	}
	cert_product(res, cert);
	res->product = veil_snp_report_product(&res->report);
	if (res->product == VEIL_SNP_PRODUCT_UNKNOWN)
		res->product = product_from_text(res->cert_product);
	if (res->product == VEIL_SNP_PRODUCT_UNKNOWN) {
		char issuer[64] = "";

		X509_NAME_get_text_by_NID(X509_get_issuer_name(cert), NID_commonName, issuer,
					  sizeof(issuer));
		ERR_clear_error();
		res->product = product_from_text(issuer);
	}
	veil_snp_tcb_decode(res->report.reported_tcb, res->product, &res->reported_tcb);
	if ((rc = verify_report_sig(res, cert, report)) < 0)
		goto out;
	if ((rc = cert_tcb(res, cert, res->product)) < 0)
		goto out;
	if ((rc = check_tcb_and_chip(res, cert)) < 0)
		goto out;
	if ((rc = verify_chain(res, cert, o, now)) < 0)
		goto out;
	rc = check_policy(res, o);
out:
	X509_free(cert);
	return rc;
}
