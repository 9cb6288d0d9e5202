/* libFuzzer harness that reaches the signature, TCB and chip-id checks of
 * veil_snp_verify (fuzz_snp_report stops at the parser).  At start it makes
 * a throwaway P-384 key and a "SEV-VCEK" certificate for it carrying the AMD
 * extensions (blSPL, teeSPL, snpSPL, ucodeSPL, fmcSPL INTEGERs, productName
 * IA5String, 64-byte hwID) and a v3 Milan report whose REPORTED_TCB and
 * CHIP_ID match them, signed with that key (ECDSA P-384 / SHA-384, r and s
 * little-endian), plus a throwaway RSA-PSS "SEV-Milan" ASK.  The input edits
 * copies of report and certificate:
 *   byte 0: flags: bit 0 re-sign the report after editing, bit 1 pass the
 *           certificate as PEM, bit 2 pass the throwaway ASK as the
 *           intermediate, bit 3 allow_debug, bit 4 require the template's
 *           REPORT_DATA;
 *   then records {op u8, offset u16 LE, len u8, data[len]}: op % 3 = 0
 *   overwrite, 1 insert, 2 delete, applied to the report when (op / 3) is
 *   even, else to the certificate (DER); at most 32 records.
 * No chain can reach AMD's pinned ARK from throwaway keys, so the oracle is
 * that nothing ever verifies; besides, without re-signing a report whose
 * signature verifies has the template's signed bytes, and a TCB reported as
 * matching does match. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "veil/base.h"
#include <jansson.h>

#include "veil/snp.h"

#define GROW 4096u

static EVP_PKEY *vcek_key;
static uint8_t report[VEIL_SNP_REPORT_LEN];
static uint8_t *cert_der, *ask_der;
static size_t cert_len, ask_len;
static const int64_t NOW = 1767225600; /* 2026-01-01 */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void add_ext(X509 *c, const char *oid, const uint8_t *der, size_t n)
{
	ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	X509_EXTENSION *e;

	if (!o || !os || !ASN1_OCTET_STRING_set(os, der, (int)n) ||
	    !(e = X509_EXTENSION_create_by_OBJ(NULL, o, 0, os)) || !X509_add_ext(c, e, -1))
		abort();
	X509_EXTENSION_free(e);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(o);
}

static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *signer, const char *cn, const char *issuer,
		       bool pss)
{
	X509 *c = X509_new();
	X509_NAME *sn = X509_NAME_new(), *in = X509_NAME_new();

	if (!c || !sn || !in || !X509_set_version(c, 2) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(c), 7) ||
	    !X509_NAME_add_entry_by_txt(sn, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(in, "CN", MBSTRING_ASC, (const unsigned char *)issuer, -1, -1, 0) ||
	    !X509_set_subject_name(c, sn) || !X509_set_issuer_name(c, in) ||
	    !X509_time_adj_ex(X509_getm_notBefore(c), 0, 0, &(time_t){NOW - 86400}) ||
	    !X509_time_adj_ex(X509_getm_notAfter(c), 0, 0, &(time_t){NOW + 86400 * 365}) ||
	    !X509_set_pubkey(c, key))
		abort();
	X509_NAME_free(sn);
	X509_NAME_free(in);
	if (pss) {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		EVP_PKEY_CTX *pc = NULL;

		if (!md || EVP_DigestSignInit(md, &pc, EVP_sha384(), NULL, signer) != 1 ||
		    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 48) != 1 || X509_sign_ctx(c, md) <= 0)
			abort();
		EVP_MD_CTX_free(md);
	} else if (X509_sign(c, signer, EVP_sha384()) <= 0) {
		abort();
	}
	return c;
}

static size_t der_of(X509 *c, uint8_t **out)
{
	int n = i2d_X509(c, NULL);
	uint8_t *p;

	if (n <= 0 || !(*out = malloc((size_t)n)))
		abort();
	p = *out;
	i2d_X509(c, &p);
	return (size_t)n;
}

/* ECDSA P-384 / SHA-384 over report[0, 0x2A0), r and s little-endian. */
static void sign_report(uint8_t *r)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char der[160];
	const unsigned char *dp = der;
	size_t dl = sizeof(der);
	ECDSA_SIG *sig;
	const BIGNUM *br, *bs;
	uint8_t be[72];

	if (!md || EVP_DigestSignInit(md, NULL, EVP_sha384(), NULL, vcek_key) != 1 ||
	    EVP_DigestSign(md, der, &dl, r, VEIL_SNP_SIGNED_LEN) != 1 ||
	    !(sig = d2i_ECDSA_SIG(NULL, &dp, (long)dl)))
		abort();
	ECDSA_SIG_get0(sig, &br, &bs);
	memset(r + 0x2A0, 0, 144);
	if (BN_bn2binpad(br, be, 72) != 72)
		abort();
	for (int i = 0; i < 72; i++)
		r[0x2A0 + i] = be[71 - i];
	if (BN_bn2binpad(bs, be, 72) != 72)
		abort();
	for (int i = 0; i < 72; i++)
		r[0x2E8 + i] = be[71 - i];
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(md);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const spl[] = {"1.3.6.1.4.1.3704.1.3.1", "1.3.6.1.4.1.3704.1.3.2",
					  "1.3.6.1.4.1.3704.1.3.3", "1.3.6.1.4.1.3704.1.3.8",
					  "1.3.6.1.4.1.3704.1.3.9"};
	static const uint8_t spl_v[] = {3, 0, 8, 115, 0};
	static const uint8_t product[] = {0x16, 8, 'M', 'i', 'l', 'a', 'n', '-', 'B', '0'};
	EVP_PKEY *ask_key;
	X509 *c, *a;
	uint64_t tcb;
	struct veil_snp_result res;

	(void)argc;
	(void)argv;
	veil_log_setup(VEIL_LOG_OFF, false, stderr);
	if (!(vcek_key = EVP_EC_gen("P-384")) || !(ask_key = EVP_RSA_gen(2048)))
		abort();
	/* the report: v3, Milan (family 19h model 01h), VCEK, ECDSA P-384 */
	report[0] = 3;
	report[0x08 + 2] = 0x02;                 /* policy bit 17 (reserved, 1) */
	report[0x34] = 1;                        /* signature algorithm */
	for (int i = 0; i < 64; i++) {
		report[0x50 + i] = (uint8_t)(0x40 + i); /* REPORT_DATA */
		report[0x1A0 + i] = (uint8_t)(0x80 + i); /* CHIP_ID */
	}
	memset(report + 0x90, 0x11, 48);         /* measurement */
	tcb = (uint64_t)spl_v[0] | (uint64_t)spl_v[1] << 8 | (uint64_t)spl_v[2] << 48 |
	      (uint64_t)spl_v[3] << 56;
	for (int i = 0; i < 8; i++) {
		report[0x38 + i] = (uint8_t)(tcb >> (8 * i)); /* CURRENT_TCB */
		report[0x180 + i] = (uint8_t)(tcb >> (8 * i)); /* REPORTED_TCB */
		report[0x1E0 + i] = (uint8_t)(tcb >> (8 * i)); /* COMMITTED_TCB */
		report[0x1F0 + i] = (uint8_t)(tcb >> (8 * i)); /* LAUNCH_TCB */
	}
	report[0x188] = 0x19;
	report[0x189] = 0x01;
	report[0x18A] = 0x01;
	sign_report(report);

	c = make_cert(vcek_key, vcek_key, "SEV-VCEK", "SEV-Milan", false);
	for (size_t i = 0; i < VEIL_ARRAY_LEN(spl); i++) {
		uint8_t d[3] = {0x02, 1, spl_v[i]};

		add_ext(c, spl[i], d, 3);
	}
	add_ext(c, "1.3.6.1.4.1.3704.1.2", product, sizeof(product));
	add_ext(c, "1.3.6.1.4.1.3704.1.4", report + 0x1A0, 64);
	if (X509_sign(c, vcek_key, EVP_sha384()) <= 0)
		abort();
	cert_len = der_of(c, &cert_der);
	a = make_cert(ask_key, ask_key, "SEV-Milan", "ARK-Milan", true);
	ask_len = der_of(a, &ask_der);
	X509_free(c);
	X509_free(a);
	EVP_PKEY_free(ask_key);

	/* The template gets as far as the chain: signature, TCB and chip id hold. */
	{
		struct veil_snp_opts o = {.now = NOW};

		if (veil_snp_verify(report, sizeof(report), cert_der, cert_len, &o, &res) == 0 ||
		    !res.signature_ok || !res.tcb_ok || !res.chip_id_ok)
			abort();
	}
	return 0;
}

static void edit(uint8_t *q, size_t *n, size_t cap, uint8_t op, size_t off, size_t len,
		 const uint8_t *src)
{
	off %= *n + 1;
	if (op == 2) {
		len = VEIL_MIN(len, *n - off);
		memmove(q + off, q + off + len, *n - off - len);
		*n -= len;
	} else if (op == 0) {
		len = VEIL_MIN(len, *n - off);
		memcpy(q + off, src, len);
	} else {
		len = VEIL_MIN(len, cap - *n);
		memmove(q + off + len, q + off, *n - off);
		memcpy(q + off, src, len);
		*n += len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t rbuf[VEIL_SNP_REPORT_LEN + GROW], *cbuf, *r, *cert;
	size_t rn = sizeof(report), cn = cert_len, i = 1;
	uint8_t flags = size ? data[0] : 0;
	struct veil_snp_opts o = {.now = NOW};
	struct veil_snp_result res;
	int rc;

	if (size > 64u << 10)
		return 0;
	if (!(cbuf = malloc(cert_len + GROW)))
		abort();
	memcpy(rbuf, report, sizeof(report));
	memcpy(cbuf, cert_der, cert_len);
	for (int rec = 0; rec < 32 && size >= 4 && i <= size - 4; rec++) {
		uint8_t op = data[i];
		size_t off = (size_t)data[i + 1] | (size_t)data[i + 2] << 8;
		size_t len = data[i + 3];

		i += 4;
		if (op % 3 != 2)
			len = VEIL_MIN(len, size - i);
		if ((op / 3) % 2 == 0)
			edit(rbuf, &rn, sizeof(rbuf), op % 3, off, len, data + i);
		else
			edit(cbuf, &cn, cert_len + GROW, op % 3, off, len, data + i);
		if (op % 3 != 2)
			i += len;
	}
	if ((flags & 1) && rn >= VEIL_SNP_SIGNED_LEN + 144)
		sign_report(rbuf);
	/* exact-size copies, so ASan sees reads past either */
	if (!(r = malloc(rn ? rn : 1)))
		abort();
	memcpy(r, rbuf, rn);
	if (flags & 2) {
		char *pem = NULL;
		size_t pl = veil_b64_encoded_len(cn, 0);
		struct veil_buf b = VEIL_BUF_INIT(1u << 20);

		if (!(pem = malloc(pl + 1)) || veil_b64_encode(cbuf, cn, 0, pem, pl + 1) < 0 ||
		    veil_buf_append_str(&b, "-----BEGIN CERTIFICATE-----\n") < 0)
			abort();
		for (size_t k = 0; k < pl; k += 64) {
			veil_buf_append(&b, pem + k, VEIL_MIN(64, pl - k));
			veil_buf_append(&b, "\n", 1);
		}
		veil_buf_append_str(&b, "-----END CERTIFICATE-----\n");
		free(pem);
		cn = b.len;
		if (!(cert = malloc(cn)))
			abort();
		memcpy(cert, b.data, cn);
		veil_buf_free(&b);
	} else {
		if (!(cert = malloc(cn ? cn : 1)))
			abort();
		memcpy(cert, cbuf, cn);
	}
	free(cbuf);
	if (flags & 4) {
		o.intermediate = ask_der;
		o.intermediate_len = ask_len;
	}
	o.allow_debug = flags & 8;
	if (flags & 16)
		o.expected_report_data = report + 0x50;

	rc = veil_snp_verify(r, rn, cert, cn, &o, &res);
	if (rc == 0)
		abort();
	if (res.signature_ok && !(flags & 1) &&
	    (rn != sizeof(report) || memcmp(r, report, VEIL_SNP_SIGNED_LEN)))
		abort();
	if (res.tcb_ok &&
	    (res.reported_tcb.bootloader != res.cert_tcb.bootloader ||
	     res.reported_tcb.tee != res.cert_tcb.tee || res.reported_tcb.snp != res.cert_tcb.snp ||
	     res.reported_tcb.microcode != res.cert_tcb.microcode))
		abort();
	{
		struct json_t *j = veil_snp_verdict_json(&res, rc);

		if (!j)
			abort();
		json_decref(j);
	}
	free(r);
	free(cert);
	return 0;
}
