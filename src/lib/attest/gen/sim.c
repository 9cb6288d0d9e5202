/* veil attester, simulated TEE: a locally generated DCAP PKI and NVIDIA
 * device chain, TDX v4 quotes and SPDM evidence that the real verifiers
 * accept when given the sim roots.
 *
 * Quote layout: Intel TDX DCAP Quoting Library API, quote format v4
 * (header 48 B, TD report 1.0 584 B, u32 signature data length, ECDSA
 * signature, attestation key, certification data type 6 holding the QE
 * report, its signature, QE auth data and a type-5 PEM PCK chain).  PCK
 * extension: Intel SGX PCK Certificate and CRL Profile §3.5.  Collateral:
 * dcap-qvl's JSON layout with Intel PCS v4 TCB info (v3) / QE identity (v2).
 * SPDM: DSP0274 1.1 §10.11, NVIDIA opaque TLVs as in nvtrust. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "gen_internal.h"
#include "veil/tdx.h"
#include "veil/x509.h"

#define SIM_ORG "veil SIMULATED TEE (not a real TEE)"
#define SIM_FILE "sim-tee.pem"

static const uint8_t INTEL_QE_VENDOR_ID[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
					       0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};
/* TCB the sim platform reports, equal to the single UpToDate level. */
static const uint8_t SIM_SGX_COMP[16] = {3, 3, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0};
static const uint16_t SIM_PCESVN = 13;
static const uint8_t SIM_TEE_TCB_SVN[16] = {5, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
static const uint8_t SIM_FMSPC[6] = {0x5e, 0xe1, 0x50, 0x00, 0x00, 0x00};
static const uint16_t SIM_QE_ISVSVN = 4, SIM_QE_PRODID = 2;

static void le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void sha384_str(const char *s, uint8_t out[48])
{
	SHA384((const unsigned char *)s, strlen(s), out);
}

void sim_tee_mrtd(uint8_t out[48])
{
	sha384_str("veil sim MRTD", out);
}

static void qe_mrsigner(uint8_t out[32])
{
	SHA256((const unsigned char *)"veil sim QE MRSIGNER", 20, out);
}

int gen_ecdsa_sign_rs(EVP_PKEY *k, const EVP_MD *md, const uint8_t *msg, size_t n,
		      uint8_t *rs, size_t half)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned char der[160];
	const unsigned char *dp = der;
	size_t dlen = sizeof(der);
	ECDSA_SIG *sig = NULL;
	const BIGNUM *r, *s;
	int rc = VEIL_EINTERNAL;

	if (!c)
		return VEIL_ENOMEM;
	if (EVP_DigestSignInit(c, NULL, md, NULL, k) != 1 ||
	    EVP_DigestSign(c, der, &dlen, msg, n) != 1)
		goto out;
	sig = d2i_ECDSA_SIG(NULL, &dp, (long)dlen);
	if (!sig)
		goto out;
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, rs, (int)half) < 0 || BN_bn2binpad(s, rs + half, (int)half) < 0)
		goto out;
	rc = 0;
out:
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(c);
	ERR_clear_error();
	return rc;
}

/* ---- certificates ----------------------------------------------------------- */

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *val)
{
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, val);
	int ok;

	if (!e)
		return VEIL_EINTERNAL;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : VEIL_ENOMEM;
}

static int add_raw_ext(X509 *x, const char *oid, const uint8_t *der, size_t n)
{
	ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	X509_EXTENSION *e = NULL;
	int rc = VEIL_ENOMEM;

	if (o && os && ASN1_OCTET_STRING_set(os, der, (int)n) &&
	    (e = X509_EXTENSION_create_by_OBJ(NULL, o, 0, os)) && X509_add_ext(x, e, -1))
		rc = 0;
	X509_EXTENSION_free(e);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(o);
	return rc;
}

static const EVP_MD *md_for(EVP_PKEY *k)
{
	return EVP_PKEY_get_bits(k) > 256 ? EVP_sha384() : EVP_sha256();
}

/* A certificate for `pub` named CN=cn, O=SIM_ORG, issued by `issuer`
 * (NULL: self-signed) with `ikey`.  pathlen < 0: leaf. */
static X509 *mk_cert(const char *cn, X509 *issuer, EVP_PKEY *ikey, EVP_PKEY *pub, int pathlen,
		     int64_t now, const char *ext_oid, const uint8_t *ext_der, size_t ext_len)
{
	X509 *x = X509_new();
	X509_NAME *nm = X509_NAME_new();
	BIGNUM *bn = BN_new();
	X509V3_CTX ctx;
	char bc[64];
	bool ok = false;

	if (!x || !nm || !bn)
		goto out;
	if (!X509_set_version(x, 2) || !BN_rand(bn, 63, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(now - 86400)) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(now + 10LL * 365 * 86400)) ||
	    !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)SIM_ORG, -1,
					-1, 0) ||
	    !X509_set_subject_name(x, nm) ||
	    !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : nm) ||
	    !X509_set_pubkey(x, pub))
		goto out;
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	if (pathlen >= 0)
		snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", pathlen);
	else
		snprintf(bc, sizeof(bc), "critical,CA:FALSE");
	if (add_ext(x, &ctx, NID_basic_constraints, bc) < 0 ||
	    add_ext(x, &ctx, NID_key_usage,
		    pathlen >= 0 ? "critical,keyCertSign,cRLSign"
				 : "critical,digitalSignature,nonRepudiation") < 0 ||
	    add_ext(x, &ctx, NID_subject_key_identifier, "hash") < 0 ||
	    add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") < 0)
		goto out;
	if (ext_oid && add_raw_ext(x, ext_oid, ext_der, ext_len) < 0)
		goto out;
	if (!X509_sign(x, ikey, md_for(ikey)))
		goto out;
	ok = true;
out:
	BN_free(bn);
	X509_NAME_free(nm);
	if (!ok) {
		X509_free(x);
		x = NULL;
	}
	ERR_clear_error();
	return x;
}

/* ---- tiny DER writer for the two custom extensions -------------------------- */

struct der {
	uint8_t b[1024];
	size_t n;
	bool bad;
};

static void der_put(struct der *d, const void *p, size_t n)
{
	if (d->bad || n > sizeof(d->b) - d->n) {
		d->bad = true;
		return;
	}
	memcpy(d->b + d->n, p, n);
	d->n += n;
}

/* Wraps bytes [start, n) into tag + length (short or 1/2-byte long form). */
static void der_wrap(struct der *d, size_t start, uint8_t tag)
{
	size_t len = d->n - start, hl = len < 128 ? 2 : len < 256 ? 3 : 4;

	if (d->bad || hl > sizeof(d->b) - d->n) {
		d->bad = true;
		return;
	}
	memmove(d->b + start + hl, d->b + start, len);
	d->b[start] = tag;
	if (hl == 2) {
		d->b[start + 1] = (uint8_t)len;
	} else if (hl == 3) {
		d->b[start + 1] = 0x81;
		d->b[start + 2] = (uint8_t)len;
	} else {
		d->b[start + 1] = 0x82;
		d->b[start + 2] = (uint8_t)(len >> 8);
		d->b[start + 3] = (uint8_t)len;
	}
	d->n += hl;
}

static void der_tlv(struct der *d, uint8_t tag, const uint8_t *p, size_t n)
{
	size_t s = d->n;

	der_put(d, p, n);
	der_wrap(d, s, tag);
}

static const uint8_t SGX_OID[] = {0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01};

/* SEQUENCE { OID sgx.<a>[.<b>], value } with value pre-encoded */
static void sgx_pair(struct der *d, int a, int b, uint8_t tag, const uint8_t *v, size_t vn)
{
	uint8_t oid[sizeof(SGX_OID) + 2];
	size_t on = sizeof(SGX_OID), s = d->n;

	memcpy(oid, SGX_OID, on);
	oid[on++] = (uint8_t)a;
	if (b > 0)
		oid[on++] = (uint8_t)b;
	der_tlv(d, 0x06, oid, on);
	der_tlv(d, tag, v, vn);
	der_wrap(d, s, 0x30);
}

static void der_uint_pair(struct der *d, int a, int b, unsigned v)
{
	uint8_t iv[3];
	size_t n = 0;

	/* minimal two's-complement INTEGER of a value below 2^16 */
	if (v >= 0x8000)
		iv[n++] = 0;
	if (v >= 0x80)
		iv[n++] = (uint8_t)(v >> 8);
	iv[n++] = (uint8_t)v;
	if (n == 2 && iv[0] == 0 && !(iv[1] & 0x80)) {
		iv[0] = iv[1];
		n = 1;
	}
	sgx_pair(d, a, b, 0x02, iv, n);
}

static int pck_extension(struct der *d)
{
	uint8_t ppid[16], pceid[2] = {0, 0}, e = 0;
	size_t tcb;

	memset(d, 0, sizeof(*d));
	memset(ppid, 0x5a, sizeof(ppid));
	sgx_pair(d, 1, 0, 0x04, ppid, 16);
	tcb = d->n;
	{
		/* .2 = SEQUENCE OF { .2.1..16 INTEGER, .2.17 PCESVN, .2.18 CPUSVN } */
		uint8_t oid[sizeof(SGX_OID) + 1];
		size_t inner;

		memcpy(oid, SGX_OID, sizeof(SGX_OID));
		oid[sizeof(SGX_OID)] = 2;
		der_tlv(d, 0x06, oid, sizeof(oid));
		inner = d->n;
		for (int i = 0; i < 16; i++)
			der_uint_pair(d, 2, i + 1, SIM_SGX_COMP[i]);
		der_uint_pair(d, 2, 17, SIM_PCESVN);
		sgx_pair(d, 2, 18, 0x04, SIM_SGX_COMP, 16);
		der_wrap(d, inner, 0x30);
		der_wrap(d, tcb, 0x30);
	}
	sgx_pair(d, 3, 0, 0x04, pceid, 2);
	sgx_pair(d, 4, 0, 0x04, SIM_FMSPC, 6);
	sgx_pair(d, 5, 0, 0x0a, &e, 1);
	der_wrap(d, 0, 0x30);
	return d->bad ? VEIL_EINTERNAL : 0;
}

/* TCG DICE TcbInfo { fwids [6] SEQUENCE OF FWID { hashAlg OID, digest } } */
static int dice_extension(struct der *d, const uint8_t fwid[48])
{
	static const uint8_t sha384_oid[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02};

	memset(d, 0, sizeof(*d));
	der_tlv(d, 0x06, sha384_oid, sizeof(sha384_oid));
	der_tlv(d, 0x04, fwid, 48);
	der_wrap(d, 0, 0x30);
	der_wrap(d, 0, 0xa6);
	der_wrap(d, 0, 0x30);
	return d->bad ? VEIL_EINTERNAL : 0;
}

/* ---- persistence ---------------------------------------------------------------- */

#define NKEYS 7
#define NCERTS 6

static EVP_PKEY **key_slot(struct sim_tee *s, int i)
{
	EVP_PKEY **k[NKEYS] = {&s->root_key, &s->pca_key, &s->pck_key, &s->tcb_key,
			       &s->att_key, &s->nv_root_key, &s->nv_leaf_key};
	return k[i];
}

static X509 **cert_slot(struct sim_tee *s, int i)
{
	X509 **c[NCERTS] = {&s->root, &s->pca, &s->pck, &s->tcb, &s->nv_root, &s->nv_leaf};
	return c[i];
}

static int load_state(struct sim_tee *s, const char *path)
{
	BIO *b = BIO_new_file(path, "r");
	int rc = 0;

	if (!b) {
		ERR_clear_error();
		return VEIL_ENOENT;
	}
	for (int i = 0; i < NKEYS && rc == 0; i++)
		if (!(*key_slot(s, i) = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)))
			rc = veil_errf(VEIL_EFORMAT, "sim state %s: key %d unreadable", path, i);
	for (int i = 0; i < NCERTS && rc == 0; i++)
		if (!(*cert_slot(s, i) = PEM_read_bio_X509(b, NULL, NULL, NULL)))
			rc = veil_errf(VEIL_EFORMAT, "sim state %s: certificate %d unreadable", path, i);
	BIO_free(b);
	ERR_clear_error();
	return rc;
}

static int save_state(struct sim_tee *s, const char *dir)
{
	char path[4096], tmp[4200];
	BIO *b = NULL;
	FILE *f = NULL;
	int fd, rc = VEIL_EIO;

	snprintf(path, sizeof(path), "%s/%s", dir, SIM_FILE);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return veil_errf(VEIL_EIO, "sim state dir %s: %s", dir, strerror(errno));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return veil_errf(VEIL_EIO, "sim state %s: %s", tmp, strerror(errno));
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		goto out;
	}
	b = BIO_new_fp(f, BIO_NOCLOSE);
	if (!b)
		goto out;
	for (int i = 0; i < NKEYS; i++)
		if (!PEM_write_bio_PrivateKey(b, *key_slot(s, i), NULL, NULL, 0, NULL, NULL))
			goto out;
	for (int i = 0; i < NCERTS; i++)
		if (!PEM_write_bio_X509(b, *cert_slot(s, i)))
			goto out;
	if (BIO_flush(b) != 1)
		goto out;
	rc = 0;
out:
	BIO_free(b);
	if (f && fclose(f) != 0)
		rc = VEIL_EIO;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = VEIL_EIO;
	if (rc < 0) {
		unlink(tmp);
		rc = veil_errf(rc, "sim state %s: could not write", path);
	}
	ERR_clear_error();
	return rc;
}

static int generate(struct sim_tee *s, int64_t now)
{
	struct der pck, dice;
	const char *curves[NKEYS] = {"P-256", "P-256", "P-256", "P-256", "P-256", "P-384", "P-384"};

	for (int i = 0; i < NKEYS; i++)
		if (!(*key_slot(s, i) = EVP_EC_gen(curves[i])))
			return VEIL_ENOMEM;
	if (pck_extension(&pck) < 0 || dice_extension(&dice, s->fwid) < 0)
		return VEIL_EINTERNAL;
	s->root = mk_cert("veil SIMULATED SGX Root CA", NULL, s->root_key, s->root_key, 1, now,
			  NULL, NULL, 0);
	if (!s->root)
		return VEIL_ENOMEM;
	s->pca = mk_cert("veil SIMULATED SGX PCK Platform CA", s->root, s->root_key, s->pca_key, 0,
			 now, NULL, NULL, 0);
	s->tcb = mk_cert("veil SIMULATED SGX TCB Signing", s->root, s->root_key, s->tcb_key, -1,
			 now, NULL, NULL, 0);
	if (!s->pca || !s->tcb)
		return VEIL_ENOMEM;
	s->pck = mk_cert("veil SIMULATED SGX PCK Certificate", s->pca, s->pca_key, s->pck_key, -1,
			 now, "1.2.840.113741.1.13.1", pck.b, pck.n);
	s->nv_root = mk_cert("veil SIMULATED NVIDIA Device Identity CA", NULL, s->nv_root_key,
			     s->nv_root_key, 2, now, NULL, NULL, 0);
	if (!s->pck || !s->nv_root)
		return VEIL_ENOMEM;
	s->nv_leaf = mk_cert("GH100 A01 GSP FMC LF SIMULATED", s->nv_root, s->nv_root_key,
			     s->nv_leaf_key, -1, now, "2.23.133.5.4.1", dice.b, dice.n);
	return s->nv_leaf ? 0 : VEIL_ENOMEM;
}

/* ---- collateral -------------------------------------------------------------------- */

static int pem_of(X509 *const *certs, size_t n, struct veil_buf *out)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long len;
	int rc = VEIL_ENOMEM;

	if (!b)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (!PEM_write_bio_X509(b, certs[i]))
			goto out;
	len = BIO_get_mem_data(b, &p);
	rc = veil_buf_append(out, p, (size_t)len);
out:
	BIO_free(b);
	return rc;
}

static int der_hex(int (*i2d)(const void *, unsigned char **), const void *obj, char **out)
{
	unsigned char *der = NULL;
	int n = i2d(obj, &der);
	char *h;

	if (n <= 0)
		return VEIL_ENOMEM;
	h = malloc(2 * (size_t)n + 1);
	if (!h) {
		OPENSSL_free(der);
		return VEIL_ENOMEM;
	}
	veil_hex_encode(der, (size_t)n, h, 2 * (size_t)n + 1);
	OPENSSL_free(der);
	*out = h;
	return 0;
}

static int i2d_crl(const void *c, unsigned char **p)
{
	return i2d_X509_CRL((X509_CRL *)c, p);
}

static X509_CRL *mk_crl(X509 *issuer, EVP_PKEY *key, int64_t now)
{
	X509_CRL *c = X509_CRL_new();
	ASN1_TIME *a = ASN1_TIME_new(), *b = ASN1_TIME_new();
	bool ok = c && a && b && X509_CRL_set_version(c, 1) &&
		  X509_CRL_set_issuer_name(c, X509_get_subject_name(issuer)) &&
		  ASN1_TIME_set(a, (time_t)(now - 86400)) &&
		  ASN1_TIME_set(b, (time_t)(now + 30LL * 86400)) && X509_CRL_set1_lastUpdate(c, a) &&
		  X509_CRL_set1_nextUpdate(c, b) && X509_CRL_sign(c, key, EVP_sha256());

	ASN1_TIME_free(a);
	ASN1_TIME_free(b);
	if (!ok) {
		X509_CRL_free(c);
		c = NULL;
	}
	ERR_clear_error();
	return c;
}

static int comps_json(struct veil_buf *b, const char *key, const uint8_t c[16])
{
	int rc = veil_buf_appendf(b, "\"%s\":[", key);

	for (int i = 0; i < 16 && rc == 0; i++)
		rc = veil_buf_appendf(b, "%s{\"svn\":%u}", i ? "," : "", c[i]);
	return rc ? rc : veil_buf_append_str(b, "]");
}

static int build_collateral(struct sim_tee *s, int64_t now)
{
	struct veil_buf tcb = VEIL_BUF_INIT(1u << 16), qe = VEIL_BUF_INIT(1u << 16);
	struct veil_buf chain = VEIL_BUF_INIT(1u << 16), pca_chain = VEIL_BUF_INIT(1u << 16);
	X509_CRL *root_crl = mk_crl(s->root, s->root_key, now);
	X509_CRL *pck_crl = mk_crl(s->pca, s->pca_key, now);
	char issue[32], next[32], fm[13], mrs[65], tcb_sig[129], qe_sig[129];
	char *root_crl_hex = NULL, *pck_crl_hex = NULL;
	uint8_t sig[64], mrsigner[32];
	X509 *tcb_chain[2] = {s->tcb, s->root}, *pca_c[2] = {s->pca, s->root};
	json_t *o = NULL;
	int rc;

	veil_x509_iso8601_format(now - 86400, issue);
	veil_x509_iso8601_format(now + 30LL * 86400, next);
	veil_hex_encode(SIM_FMSPC, 6, fm, sizeof(fm));
	for (char *p = fm; *p; p++)
		if (*p >= 'a')
			*p = (char)(*p - 32);
	qe_mrsigner(mrsigner);
	veil_hex_encode(mrsigner, 32, mrs, sizeof(mrs));
	if (!root_crl || !pck_crl) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if ((rc = veil_buf_appendf(&tcb,
				   "{\"id\":\"TDX\",\"version\":3,\"issueDate\":\"%s\",\"nextUpdate\":\"%s\","
				   "\"fmspc\":\"%s\",\"pceId\":\"0000\",\"tcbType\":0,\"tcbEvaluationDataNumber\":1,"
				   "\"tdxModule\":{\"mrsigner\":\"%096d\",\"attributes\":\"0000000000000000\","
				   "\"attributesMask\":\"FFFFFFFFFFFFFFFF\"},"
				   "\"tdxModuleIdentities\":[{\"id\":\"TDX_%02X\",\"mrsigner\":\"%096d\","
				   "\"attributes\":\"0000000000000000\",\"attributesMask\":\"FFFFFFFFFFFFFFFF\","
				   "\"tcbLevels\":[{\"tcb\":{\"isvsvn\":%u},\"tcbDate\":\"%s\",\"tcbStatus\":\"UpToDate\"}]}],"
				   "\"tcbLevels\":[{\"tcb\":{",
				   issue, next, fm, 0, SIM_TEE_TCB_SVN[1], 0, SIM_TEE_TCB_SVN[0],
				   issue)) < 0 ||
	    (rc = comps_json(&tcb, "sgxtcbcomponents", SIM_SGX_COMP)) < 0 ||
	    (rc = veil_buf_appendf(&tcb, ",\"pcesvn\":%u,", SIM_PCESVN)) < 0 ||
	    (rc = comps_json(&tcb, "tdxtcbcomponents", SIM_TEE_TCB_SVN)) < 0 ||
	    (rc = veil_buf_appendf(&tcb, "},\"tcbDate\":\"%s\",\"tcbStatus\":\"UpToDate\"}]}",
				   issue)) < 0)
		goto out;
	if ((rc = veil_buf_appendf(&qe,
				   "{\"id\":\"TD_QE\",\"version\":2,\"issueDate\":\"%s\",\"nextUpdate\":\"%s\","
				   "\"tcbEvaluationDataNumber\":1,\"miscselect\":\"00000000\",\"miscselectMask\":\"FFFFFFFF\","
				   "\"attributes\":\"11000000000000000000000000000000\","
				   "\"attributesMask\":\"FBFFFFFFFFFFFFFF0000000000000000\",\"mrsigner\":\"%s\","
				   "\"isvprodid\":%u,\"tcbLevels\":[{\"tcb\":{\"isvsvn\":%u},\"tcbDate\":\"%s\","
				   "\"tcbStatus\":\"UpToDate\"}]}",
				   issue, next, mrs, SIM_QE_PRODID, SIM_QE_ISVSVN, issue)) < 0)
		goto out;
	if ((rc = gen_ecdsa_sign_rs(s->tcb_key, EVP_sha256(), tcb.data, tcb.len, sig, 32)) < 0)
		goto out;
	veil_hex_encode(sig, 64, tcb_sig, sizeof(tcb_sig));
	if ((rc = gen_ecdsa_sign_rs(s->tcb_key, EVP_sha256(), qe.data, qe.len, sig, 32)) < 0)
		goto out;
	veil_hex_encode(sig, 64, qe_sig, sizeof(qe_sig));
	if ((rc = pem_of(tcb_chain, 2, &chain)) < 0 || (rc = pem_of(pca_c, 2, &pca_chain)) < 0 ||
	    (rc = der_hex(i2d_crl, root_crl, &root_crl_hex)) < 0 ||
	    (rc = der_hex(i2d_crl, pck_crl, &pck_crl_hex)) < 0)
		goto out;
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "pck_crl_issuer_chain",
		      (const char *)pca_chain.data, "root_ca_crl", root_crl_hex, "pck_crl",
		      pck_crl_hex, "tcb_info_issuer_chain", (const char *)chain.data, "tcb_info",
		      (const char *)tcb.data, "tcb_info_signature", tcb_sig,
		      "qe_identity_issuer_chain", (const char *)chain.data, "qe_identity",
		      (const char *)qe.data, "qe_identity_signature", qe_sig);
	{
		char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;

		if (!txt) {
			rc = VEIL_ENOMEM;
			goto out;
		}
		free(s->collateral);
		s->collateral = txt;
		s->collateral_at = now;
	}
	rc = 0;
out:
	json_decref(o);
	free(root_crl_hex);
	free(pck_crl_hex);
	X509_CRL_free(root_crl);
	X509_CRL_free(pck_crl);
	veil_buf_free(&tcb);
	veil_buf_free(&qe);
	veil_buf_free(&chain);
	veil_buf_free(&pca_chain);
	return rc;
}

static int i2d_cert(const void *c, unsigned char **p)
{
	return i2d_X509((X509 *)c, p);
}

static int der_of(X509 *x, uint8_t **out, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_cert(x, &der);

	if (n <= 0)
		return VEIL_ENOMEM;
	*out = malloc((size_t)n);
	if (!*out) {
		OPENSSL_free(der);
		return VEIL_ENOMEM;
	}
	memcpy(*out, der, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(der);
	return 0;
}

int sim_tee_open(const char *state_dir, struct sim_tee **out)
{
	struct sim_tee *s = calloc(1, sizeof(*s));
	struct veil_buf pem = VEIL_BUF_INIT(1u << 16), nv = VEIL_BUF_INIT(1u << 16);
	int64_t now = (int64_t)time(NULL);
	char path[4096];
	int rc;

	if (!s)
		return VEIL_ENOMEM;
	sha384_str("veil sim GPU firmware", s->fwid);
	rc = VEIL_ENOENT;
	if (state_dir) {
		snprintf(path, sizeof(path), "%s/%s", state_dir, SIM_FILE);
		rc = load_state(s, path);
		if (rc < 0 && rc != VEIL_ENOENT)
			goto out;
	}
	if (rc == VEIL_ENOENT) {
		if ((rc = generate(s, now)) < 0)
			goto out;
		if (state_dir && (rc = save_state(s, state_dir)) < 0)
			goto out;
	}
	{
		X509 *pck_chain[3] = {s->pck, s->pca, s->root};
		X509 *nv_chain[2] = {s->nv_leaf, s->nv_root};

		if ((rc = pem_of(pck_chain, 3, &pem)) < 0 || (rc = veil_buf_append(&pem, "", 1)) < 0 ||
		    (rc = pem_of(nv_chain, 2, &nv)) < 0)
			goto out;
	}
	s->pck_chain_len = pem.len;
	s->pck_chain_pem = (char *)veil_buf_steal(&pem, NULL);
	s->nv_chain_pem = (char *)veil_buf_steal(&nv, NULL);
	if ((rc = der_of(s->root, &s->root_der, &s->root_der_len)) < 0 ||
	    (rc = der_of(s->nv_root, &s->nv_root_der, &s->nv_root_der_len)) < 0 ||
	    (rc = build_collateral(s, now)) < 0)
		goto out;
	*out = s;
	s = NULL;
out:
	veil_buf_free(&pem);
	veil_buf_free(&nv);
	sim_tee_free(s);
	return rc;
}

int sim_tee_refresh(struct sim_tee *s)
{
	int64_t now = (int64_t)time(NULL);

	if (now - s->collateral_at < 7LL * 86400)
		return 0;
	return build_collateral(s, now);
}

void sim_tee_free(struct sim_tee *s)
{
	if (!s)
		return;
	for (int i = 0; i < NKEYS; i++)
		EVP_PKEY_free(*key_slot(s, i));
	for (int i = 0; i < NCERTS; i++)
		X509_free(*cert_slot(s, i));
	free(s->root_der);
	free(s->nv_root_der);
	free(s->pck_chain_pem);
	free(s->nv_chain_pem);
	for (unsigned i = 0; i < VEIL_SIM_MAX_GPUS; i++) {
		EVP_PKEY_free(s->gpu_key[i]);
		free(s->gpu_chain_pem[i]);
	}
	free(s->collateral);
	free(s);
}

int sim_tee_gpus(struct sim_tee *s, unsigned n)
{
	struct veil_buf pem = VEIL_BUF_INIT(1 << 16);
	struct der dice;
	int64_t now = (int64_t)time(NULL);
	int rc = 0;

	if (n > VEIL_SIM_MAX_GPUS)
		return veil_errf(VEIL_EINVAL, "sim: %u GPUs, at most %d", n, VEIL_SIM_MAX_GPUS);
	if (dice_extension(&dice, s->fwid) < 0)
		return VEIL_EINTERNAL;
	for (unsigned i = s->n_gpus ? s->n_gpus : 1; i < n; i++) {
		X509 *leaf = NULL;

		rc = VEIL_ENOMEM;
		if (!(s->gpu_key[i] = EVP_EC_gen("P-384")) ||
		    !(leaf = mk_cert("GH100 A01 GSP FMC LF SIMULATED", s->nv_root, s->nv_root_key,
				     s->gpu_key[i], -1, now, "2.23.133.5.4.1", dice.b, dice.n))) {
			X509_free(leaf);
			break;
		}
		veil_buf_reset(&pem);
		{
			X509 *chain[2] = {leaf, s->nv_root};

			rc = pem_of(chain, 2, &pem);
		}
		X509_free(leaf);
		if (rc < 0)
			break;
		s->gpu_chain_pem[i] = (char *)veil_buf_steal(&pem, NULL);
		s->n_gpus = i + 1;
		rc = 0;
	}
	veil_buf_free(&pem);
	return rc;
}

const char *sim_tee_gpu_chain(const struct sim_tee *s, unsigned index)
{
	return index == 0 || index >= s->n_gpus ? s->nv_chain_pem : s->gpu_chain_pem[index];
}

/* ---- quote ----------------------------------------------------------------------- */

static int raw_pub(EVP_PKEY *k, uint8_t *out, size_t want)
{
	uint8_t buf[133];
	size_t len = 0;

	if (!EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, buf, sizeof(buf), &len) ||
	    len != want + 1 || buf[0] != 0x04) {
		ERR_clear_error();
		return VEIL_EINTERNAL;
	}
	memcpy(out, buf + 1, want);
	return 0;
}

int sim_tee_quote(const struct sim_tee *s, const uint8_t report_data[64],
		  const uint8_t rtmr[4][48], uint8_t **out, size_t *out_len)
{
	const size_t hb = VEIL_TDX_HEADER_LEN + VEIL_TDX_TD10_LEN;
	size_t inner = 384 + 64 + 2 + 32 + 2 + 4 + s->pck_chain_len;
	size_t sig_len = 64 + 64 + 2 + 4 + inner, total = hb + 4 + sig_len, o;
	uint8_t *q = calloc(1, total), *h, *b, *qe;
	uint8_t ak[64], qe_auth[32], hash[32];
	int rc;

	if (!q)
		return VEIL_ENOMEM;
	h = q;
	le16(h, 4);
	le16(h + 2, 2);
	le32(h + 4, VEIL_TDX_TEE_TDX);
	le16(h + 8, SIM_QE_ISVSVN);
	le16(h + 10, SIM_PCESVN);
	memcpy(h + 12, INTEL_QE_VENDOR_ID, 16);
	b = q + VEIL_TDX_HEADER_LEN;
	memcpy(b, SIM_TEE_TCB_SVN, 16);
	sha384_str("veil sim MRSEAM", b + 16);
	/* mr_signer_seam (b+64), seam_attributes (b+112): zero, as Intel's */
	b[120 + 3] = 0x10; /* TD_ATTRIBUTES: SEPT_VE_DISABLE */
	b[128] = 0xe7;     /* XFAM: x87 SSE AVX, AVX-512, PKRU as typical guests */
	b[129] = 0x1a;
	b[130] = 0x06;
	sim_tee_mrtd(b + 136);
	for (int i = 0; i < 4; i++)
		memcpy(b + 328 + 48 * i, rtmr[i], 48);
	memcpy(b + 520, report_data, 64);
	o = hb;
	le32(q + o, (uint32_t)sig_len);
	o += 4;
	if ((rc = gen_ecdsa_sign_rs(s->att_key, EVP_sha256(), q, hb, q + o, 32)) < 0 ||
	    (rc = raw_pub(s->att_key, ak, 64)) < 0)
		goto out;
	o += 64;
	memcpy(q + o, ak, 64);
	o += 64;
	le16(q + o, 6);
	le32(q + o + 2, (uint32_t)inner);
	o += 6;
	qe = q + o;
	memcpy(qe, SIM_SGX_COMP, 16);
	qe[48] = 0x11;
	SHA256((const unsigned char *)"veil sim QE MRENCLAVE", 21, qe + 64);
	qe_mrsigner(qe + 128);
	le16(qe + 256, SIM_QE_PRODID);
	le16(qe + 258, SIM_QE_ISVSVN);
	for (int i = 0; i < 32; i++)
		qe_auth[i] = (uint8_t)i;
	{
		uint8_t cat[96];

		memcpy(cat, ak, 64);
		memcpy(cat + 64, qe_auth, 32);
		SHA256(cat, sizeof(cat), hash);
	}
	memcpy(qe + 320, hash, 32);
	o += 384;
	if ((rc = gen_ecdsa_sign_rs(s->pck_key, EVP_sha256(), qe, 384, q + o, 32)) < 0)
		goto out;
	o += 64;
	le16(q + o, 32);
	memcpy(q + o + 2, qe_auth, 32);
	o += 34;
	le16(q + o, 5);
	le32(q + o + 2, (uint32_t)s->pck_chain_len);
	o += 6;
	memcpy(q + o, s->pck_chain_pem, s->pck_chain_len);
	o += s->pck_chain_len;
	if (o != total) {
		rc = VEIL_EINTERNAL;
		goto out;
	}
	*out = q;
	*out_len = total;
	q = NULL;
	rc = 0;
out:
	free(q);
	return rc;
}

/* ---- GPU evidence ------------------------------------------------------------------- */

int sim_tee_gpu_evidence(const struct sim_tee *s, unsigned index, const uint8_t nonce[32],
			 uint8_t **out, size_t *out_len)
{
	enum { NBLOCKS = 4, BLK = 4 + 3 + 48 };
	static const char driver[] = "550.127.05";
	static const uint8_t vbios[8] = {0x00, 0x9f, 0x00, 0x96, 0x01, 0x00, 0x00, 0x00};
	size_t opaque = (4 + sizeof(driver)) + (4 + 8) + (4 + 48);
	size_t total = 37 + 8 + NBLOCKS * BLK + 32 + 2 + opaque + 96, o = 0;
	uint8_t *p = calloc(1, total);
	char label[64];
	int rc;

	if (!p)
		return VEIL_ENOMEM;
	p[0] = 0x11;
	p[1] = 0xe0;
	p[2] = 0x01;
	p[3] = 0xff;
	memcpy(p + 4, nonce, 32);
	o = 37;
	p[o] = 0x11;
	p[o + 1] = 0x60;
	p[o + 4] = NBLOCKS;
	p[o + 5] = (uint8_t)(NBLOCKS * BLK);
	p[o + 6] = (uint8_t)((NBLOCKS * BLK) >> 8);
	o += 8;
	for (int i = 0; i < NBLOCKS; i++) {
		p[o] = (uint8_t)(i + 1);
		p[o + 1] = 0x01;
		le16(p + o + 2, 3 + 48);
		p[o + 4] = 0x01;
		le16(p + o + 5, 48);
		snprintf(label, sizeof(label), "veil sim GPU measurement %d", i + 1);
		sha384_str(label, p + o + 7);
		o += BLK;
	}
	if ((rc = veil_random(p + o, 32)) < 0)
		goto out;
	p[o] ^= (uint8_t)index; /* distinct per GPU even if random repeated */
	o += 32;
	le16(p + o, (uint16_t)opaque);
	o += 2;
	le16(p + o, 3);
	le16(p + o + 2, sizeof(driver));
	memcpy(p + o + 4, driver, sizeof(driver));
	o += 4 + sizeof(driver);
	le16(p + o, 6);
	le16(p + o + 2, 8);
	memcpy(p + o + 4, vbios, 8);
	o += 12;
	le16(p + o, 20);
	le16(p + o + 2, 48);
	memcpy(p + o + 4, s->fwid, 48);
	o += 52;
	if ((rc = gen_ecdsa_sign_rs(index && index < s->n_gpus ? s->gpu_key[index] : s->nv_leaf_key,
				    EVP_sha384(), p, o, p + o, 48)) < 0)
		goto out;
	o += 96;
	if (o != total) {
		rc = VEIL_EINTERNAL;
		goto out;
	}
	*out = p;
	*out_len = total;
	p = NULL;
out:
	free(p);
	return rc;
}
