/* veil x509: strict PEM/DER parsing, chain verification at a given time with
 * CRLs, raw ECDSA signatures, UTC time.  See include/veil/x509.h. */
#include "veil/x509.h"

#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "veil/base.h"

/* Bounds on what one certificate may weigh; Intel's are under 1.5 KB. */
#define CERT_DER_MAX 16384
#define PEM_LINE_MAX 76

static const char PEM_BEGIN[] = "-----BEGIN CERTIFICATE-----";
static const char PEM_END[] = "-----END CERTIFICATE-----";

int veil_x509_der_parse(const uint8_t *p, size_t n, X509 **out)
{
	const unsigned char *q = p;
	unsigned char *re = NULL;
	X509 *x;
	int relen;

	if (!p || !out || n == 0 || n > CERT_DER_MAX)
		return veil_errf(VEIL_EFORMAT, "certificate: DER length %zu out of range", n);
	x = d2i_X509(NULL, &q, (long)n);
	if (!x)
		return veil_errf(VEIL_EFORMAT, "certificate: not a DER X.509 certificate");
	if ((size_t)(q - p) != n) {
		X509_free(x);
		return veil_errf(VEIL_EFORMAT, "certificate: %zu trailing bytes after the DER",
				 n - (size_t)(q - p));
	}
	relen = i2d_X509(x, &re);
	if (relen < 0 || (size_t)relen != n || memcmp(re, p, n) != 0) {
		OPENSSL_free(re);
		X509_free(x);
		return veil_errf(VEIL_EFORMAT, "certificate: DER is not canonical");
	}
	OPENSSL_free(re);
	*out = x;
	return 0;
}

int veil_x509_crl_der_parse(const uint8_t *p, size_t n, X509_CRL **out)
{
	const unsigned char *q = p;
	X509_CRL *c;

	if (!p || !out || n == 0 || n > (1u << 24))
		return veil_errf(VEIL_EFORMAT, "CRL: DER length %zu out of range", n);
	c = d2i_X509_CRL(NULL, &q, (long)n);
	if (!c)
		return veil_errf(VEIL_EFORMAT, "CRL: not a DER X.509 CRL");
	if ((size_t)(q - p) != n) {
		X509_CRL_free(c);
		return veil_errf(VEIL_EFORMAT, "CRL: %zu trailing bytes after the DER",
				 n - (size_t)(q - p));
	}
	*out = c;
	return 0;
}

/* Prefixes the current error detail (copied first: veil_errf writes the
 * buffer veil_err_detail() returns). */
static int wrap(int rc, const char *what)
{
	char d[512];

	snprintf(d, sizeof(d), "%s", veil_err_detail());
	return veil_errf(rc, "%s: %s", what, d);
}

/* Reads one EOL at *i; true when there was one. */
static bool eat_eol(const uint8_t *p, size_t n, size_t *i)
{
	if (*i < n && p[*i] == '\n') {
		*i += 1;
		return true;
	}
	if (*i + 1 < n && p[*i] == '\r' && p[*i + 1] == '\n') {
		*i += 2;
		return true;
	}
	return false;
}

static bool has_prefix(const uint8_t *p, size_t n, size_t i, const char *lit)
{
	size_t k = strlen(lit);

	return n - i >= k && memcmp(p + i, lit, k) == 0;
}

static bool is_b64(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
}

/* One certificate starting at *i (at "-----BEGIN"); advances *i past it.
 * Without `decode` only the text grammar is checked and *out is untouched. */
static int pem_one(const uint8_t *p, size_t n, size_t *i, size_t idx, bool decode,
		   X509 **out)
{
	char *b64 = NULL;
	uint8_t *der = NULL;
	size_t blen = 0, dlen = 0, j = *i, lines = 0;
	char what[64];
	int rc;

	if (!has_prefix(p, n, j, PEM_BEGIN))
		return veil_errf(VEIL_EFORMAT, "PEM chain: certificate %zu: no BEGIN line", idx);
	j += strlen(PEM_BEGIN);
	if (!eat_eol(p, n, &j))
		return veil_errf(VEIL_EFORMAT, "PEM chain: certificate %zu: BEGIN line not ended", idx);
	/* The base64 body is at most as long as the rest of the input. */
	b64 = malloc(n - j + 1);
	if (!b64)
		return VEIL_ENOMEM;
	for (;;) {
		size_t start = j;

		if (has_prefix(p, n, j, PEM_END))
			break;
		while (j < n && is_b64(p[j]))
			j++;
		if (j == start || j - start > PEM_LINE_MAX) {
			rc = veil_errf(VEIL_EFORMAT,
				       "PEM chain: certificate %zu: bad base64 line at offset %zu",
				       idx, start);
			goto out;
		}
		memcpy(b64 + blen, p + start, j - start);
		blen += j - start;
		lines++;
		if (!eat_eol(p, n, &j)) {
			rc = veil_errf(VEIL_EFORMAT,
				       "PEM chain: certificate %zu: unexpected byte at offset %zu",
				       idx, j);
			goto out;
		}
	}
	if (lines == 0 || blen % 4 != 0) {
		rc = veil_errf(VEIL_EFORMAT, "PEM chain: certificate %zu: base64 length %zu",
			       idx, blen);
		goto out;
	}
	j += strlen(PEM_END);
	if (j < n && !eat_eol(p, n, &j) && p[j] != 0) {
		rc = veil_errf(VEIL_EFORMAT,
			       "PEM chain: certificate %zu: END line not ended", idx);
		goto out;
	}
	if (!decode) {
		*i = j;
		rc = 0;
		goto out;
	}
	der = malloc(blen / 4 * 3 + 1);
	if (!der) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	/* '=' inside the body is rejected by the decoder (bad character). */
	if ((rc = veil_b64_decode(b64, blen, 0, der, blen / 4 * 3 + 1, &dlen)) < 0) {
		snprintf(what, sizeof(what), "PEM chain: certificate %zu", idx);
		rc = wrap(VEIL_EFORMAT, what);
		goto out;
	}
	if ((rc = veil_x509_der_parse(der, dlen, out)) < 0) {
		snprintf(what, sizeof(what), "PEM chain: certificate %zu", idx);
		rc = wrap(rc, what);
		goto out;
	}
	*i = j;
	rc = 0;
out:
	free(b64);
	free(der);
	return rc;
}

int veil_x509_pem_chain_parse(const uint8_t *p, size_t n, STACK_OF(X509) **out)
{
	STACK_OF(X509) *sk;
	int rc = 0;

	if (!p || !out)
		return VEIL_EINVAL;
	sk = sk_X509_new_null();
	if (!sk)
		return VEIL_ENOMEM;
	/* Pass 0 checks the whole text (cheap), pass 1 decodes the DER. */
	for (int pass = 0; pass < 2; pass++) {
		size_t i = 0, count = 0;

		while (i < n && p[i] != 0) {
			X509 *x = NULL;

			if (count >= VEIL_X509_CHAIN_MAX) {
				rc = veil_errf(VEIL_ERANGE, "PEM chain: more than %d certificates",
					       VEIL_X509_CHAIN_MAX);
				goto out;
			}
			if ((rc = pem_one(p, n, &i, count, pass == 1, &x)) < 0)
				goto out;
			count++;
			if (pass == 1 && !sk_X509_push(sk, x)) {
				X509_free(x);
				rc = VEIL_ENOMEM;
				goto out;
			}
		}
		for (; i < n; i++) {
			if (p[i] != 0) {
				rc = veil_errf(VEIL_EFORMAT, "PEM chain: non-NUL byte at offset %zu after the last certificate", i);
				goto out;
			}
		}
		if (count == 0) {
			rc = veil_errf(VEIL_EFORMAT, "PEM chain: no certificate");
			goto out;
		}
	}
	*out = sk;
	sk = NULL;
out:
	sk_X509_pop_free(sk, X509_free);
	return rc;
}

int veil_x509_pem_chain_parse_canonical(const uint8_t *p, size_t n, STACK_OF(X509) **out)
{
	STACK_OF(X509) *sk = NULL;
	BIO *bio = NULL;
	char *txt;
	long tlen;
	int rc;

	if ((rc = veil_x509_pem_chain_parse(p, n, &sk)) < 0)
		return rc;
	bio = BIO_new(BIO_s_mem());
	if (!bio) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	for (int i = 0; i < sk_X509_num(sk); i++) {
		if (PEM_write_bio_X509(bio, sk_X509_value(sk, i)) != 1) {
			rc = VEIL_ENOMEM;
			goto out;
		}
	}
	tlen = BIO_get_mem_data(bio, &txt);
	if (tlen <= 0 || (size_t)tlen > n || memcmp(txt, p, (size_t)tlen) != 0) {
		rc = veil_errf(VEIL_EFORMAT, "PEM chain: not in canonical form");
		goto out;
	}
	*out = sk;
	sk = NULL;
	rc = 0;
out:
	BIO_free(bio);
	sk_X509_pop_free(sk, X509_free);
	return rc;
}

/* ---- time ------------------------------------------------------------------ */

int64_t veil_x509_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	/* H. Hinnant's days_from_civil. */
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (int64_t)(m > 2 ? m - 3 : m + 9) + 2) / 5 + (int64_t)d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool valid_ymdhms(int64_t y, unsigned mo, unsigned d, unsigned h,
			 unsigned mi, unsigned s)
{
	static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
		return false;
	if (mo == 2 && d == 29 && !leap)
		return false;
	return h < 24 && mi < 60 && s < 61;
}

int veil_x509_time_unix(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	if (!t || !out)
		return VEIL_EINVAL;
	memset(&tm, 0, sizeof(tm));
	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return veil_errf(VEIL_EFORMAT, "ASN.1 time: malformed");
	*out = veil_x509_days_from_civil((int64_t)tm.tm_year + 1900,
					 (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday) *
		       86400 +
	       (int64_t)tm.tm_hour * 3600 + (int64_t)tm.tm_min * 60 + tm.tm_sec;
	return 0;
}

static bool digits(const char *s, size_t n, unsigned *v)
{
	unsigned r = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		r = r * 10 + (unsigned)(s[i] - '0');
	}
	*v = r;
	return true;
}

int veil_x509_iso8601_format(int64_t t, char out[VEIL_X509_ISO8601_LEN])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) ||
	    !strftime(out, VEIL_X509_ISO8601_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm)) {
		snprintf(out, VEIL_X509_ISO8601_LEN, "%lld", (long long)t);
		return VEIL_ERANGE;
	}
	return 0;
}

int veil_x509_iso8601_parse(const char *s, size_t len, int64_t *out)
{
	unsigned y, mo, d, h, mi, sec;
	size_t i = 19;

	if (!s || !out)
		return VEIL_EINVAL;
	if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':' || !digits(s, 4, &y) || !digits(s + 5, 2, &mo) ||
	    !digits(s + 8, 2, &d) || !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) ||
	    !digits(s + 17, 2, &sec))
		goto bad;
	if (s[i] == '.') {
		size_t f = ++i;

		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == f || i - f > 9)
			goto bad;
	}
	if (i + 1 != len || s[i] != 'Z' || !valid_ymdhms(y, mo, d, h, mi, sec))
		goto bad;
	*out = veil_x509_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 +
	       (int64_t)mi * 60 + sec;
	return 0;
bad:
	return veil_errf(VEIL_EFORMAT, "time: \"%.*s\" is not YYYY-MM-DDTHH:MM:SSZ",
			 (int)VEIL_MIN(len, 40), s);
}

/* ---- signatures ------------------------------------------------------------ */

int veil_x509_ecdsa_verify_rs(EVP_PKEY *pk, const EVP_MD *md, const uint8_t *msg,
			      size_t n, const uint8_t *rs, size_t rs_len)
{
	ECDSA_SIG *sig = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *der = NULL;
	EVP_MD_CTX *ctx = NULL;
	int derlen, rc = VEIL_EBADMSG;

	if (!pk || !md || (!msg && n) || !rs || rs_len == 0 || rs_len % 2 || rs_len > 264)
		return VEIL_EINVAL;
	sig = ECDSA_SIG_new();
	r = BN_bin2bn(rs, (int)(rs_len / 2), NULL);
	s = BN_bin2bn(rs + rs_len / 2, (int)(rs_len / 2), NULL);
	if (!sig || !r || !s || !ECDSA_SIG_set0(sig, r, s)) {
		BN_free(r);
		BN_free(s);
		rc = VEIL_ENOMEM;
		goto out;
	}
	r = s = NULL;
	derlen = i2d_ECDSA_SIG(sig, &der);
	if (derlen <= 0) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, pk) != 1)
		goto out;
	if (EVP_DigestVerify(ctx, der, (size_t)derlen, msg, n) == 1)
		rc = 0;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	ECDSA_SIG_free(sig);
	return rc;
}

int veil_x509_p256_pubkey(const uint8_t xy[64], EVP_PKEY **out)
{
	uint8_t pt[65];
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;
	int rc = VEIL_EFORMAT;

	pt[0] = 0x04;
	memcpy(pt + 1, xy, 64);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
						     (char *)"prime256v1", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
	params[2] = OSSL_PARAM_construct_end();
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!ctx) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1 || !pk) {
		rc = veil_errf(VEIL_EFORMAT, "P-256 public key: not a point on the curve");
		goto out;
	}
	*out = pk;
	pk = NULL;
	rc = 0;
out:
	ERR_clear_error();
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/* ---- chain verification ---------------------------------------------------- */

static const char *cn_of(X509 *x, char *buf, size_t cap)
{
	X509_NAME *nm = X509_get_subject_name(x);

	buf[0] = 0;
	if (!nm || X509_NAME_get_text_by_NID(nm, NID_commonName, buf, (int)cap) < 0)
		snprintf(buf, cap, "(no CN)");
	return buf;
}

static int check_window(X509 *x, int64_t now)
{
	int64_t nb, na;
	char cn[128];

	if (veil_x509_time_unix(X509_get0_notBefore(x), &nb) < 0 ||
	    veil_x509_time_unix(X509_get0_notAfter(x), &na) < 0)
		return veil_errf(VEIL_EFORMAT, "certificate \"%s\": bad validity time",
				 cn_of(x, cn, sizeof(cn)));
	if (now < nb)
		return veil_errf(VEIL_EPERM, "certificate \"%s\" is not yet valid",
				 cn_of(x, cn, sizeof(cn)));
	if (now > na)
		return veil_errf(VEIL_EPERM, "certificate \"%s\" has expired",
				 cn_of(x, cn, sizeof(cn)));
	return 0;
}

static bool same_der(X509 *a, X509 *b)
{
	unsigned char *da = NULL, *db = NULL;
	int la = i2d_X509(a, &da), lb = i2d_X509(b, &db);
	bool eq = la > 0 && la == lb && memcmp(da, db, (size_t)la) == 0;

	OPENSSL_free(da);
	OPENSSL_free(db);
	return eq;
}

/* Applies every CRL from `issuer` to `x`; *covered says whether one applied.
 * *checked (one bit per CRL) remembers CRLs whose signature and window were
 * already verified in this chain walk, so the root CRL is verified once. */
static int check_revocation(X509 *x, X509 *issuer, X509_CRL *const *crls, size_t ncrls,
			    int64_t now, uint32_t *checked, bool *covered)
{
	char cn[128];

	for (size_t k = 0; k < ncrls; k++) {
		X509_CRL *crl = crls[k];
		X509_REVOKED *rev = NULL;
		EVP_PKEY *ik = X509_get0_pubkey(issuer);
		int64_t tu, nu;

		if (!crl || X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0)
			continue;
		if (!(*checked & (1u << k))) {
			if (!(X509_get_key_usage(issuer) & KU_CRL_SIGN))
				return veil_errf(VEIL_EPERM, "CRL issuer \"%s\" may not sign CRLs",
						 cn_of(issuer, cn, sizeof(cn)));
			if (!ik || X509_CRL_verify(crl, ik) != 1) {
				ERR_clear_error();
				return veil_errf(VEIL_EBADMSG, "CRL from \"%s\": signature invalid",
						 cn_of(issuer, cn, sizeof(cn)));
			}
			if (!X509_CRL_get0_nextUpdate(crl) ||
			    veil_x509_time_unix(X509_CRL_get0_lastUpdate(crl), &tu) < 0 ||
			    veil_x509_time_unix(X509_CRL_get0_nextUpdate(crl), &nu) < 0)
				return veil_errf(VEIL_EFORMAT, "CRL from \"%s\": bad thisUpdate/nextUpdate",
						 cn_of(issuer, cn, sizeof(cn)));
			if (now < tu)
				return veil_errf(VEIL_EPERM, "CRL from \"%s\" is not yet valid",
						 cn_of(issuer, cn, sizeof(cn)));
			if (now > nu)
				return veil_errf(VEIL_EPERM, "CRL from \"%s\" has expired",
						 cn_of(issuer, cn, sizeof(cn)));
			*checked |= 1u << k;
		}
		if (X509_CRL_get0_by_cert(crl, &rev, x) == 1)
			return veil_errf(VEIL_EPERM, "certificate \"%s\" is revoked",
					 cn_of(x, cn, sizeof(cn)));
		*covered = true;
	}
	return 0;
}

static int check_link(X509 *x, X509 *issuer, int depth_below, int64_t now,
		      X509_CRL *const *crls, size_t ncrls, uint32_t *checked, unsigned flags)
{
	char cn[128], icn[128];
	EVP_PKEY *ik;
	long pathlen;
	bool covered = false;
	int rc;

	if (X509_check_issued(issuer, x) != X509_V_OK)
		return veil_errf(VEIL_EPERM, "certificate \"%s\" is not issued by \"%s\"",
				 cn_of(x, cn, sizeof(cn)), cn_of(issuer, icn, sizeof(icn)));
	if (X509_check_ca(issuer) == 0)
		return veil_errf(VEIL_EPERM, "issuer \"%s\" is not a CA",
				 cn_of(issuer, icn, sizeof(icn)));
	pathlen = X509_get_pathlen(issuer);
	if (pathlen >= 0 && depth_below > pathlen)
		return veil_errf(VEIL_EPERM, "issuer \"%s\": path length exceeded",
				 cn_of(issuer, icn, sizeof(icn)));
	if (X509_get_extension_flags(x) & EXFLAG_CRITICAL)
		return veil_errf(VEIL_EPERM, "certificate \"%s\" has an unhandled critical extension",
				 cn_of(x, cn, sizeof(cn)));
	ik = X509_get0_pubkey(issuer);
	if (!ik || X509_verify(x, ik) != 1) {
		ERR_clear_error();
		return veil_errf(VEIL_EBADMSG, "certificate \"%s\": signature invalid",
				 cn_of(x, cn, sizeof(cn)));
	}
	if ((rc = check_window(x, now)) < 0)
		return rc;
	if ((rc = check_revocation(x, issuer, crls, ncrls, now, checked, &covered)) < 0)
		return rc;
	if ((flags & VEIL_X509_REQUIRE_CRL) && !covered)
		return veil_errf(VEIL_EPERM, "certificate \"%s\": no CRL from \"%s\"",
				 cn_of(x, cn, sizeof(cn)), cn_of(issuer, icn, sizeof(icn)));
	return 0;
}

int veil_x509_chain_verify(STACK_OF(X509) *chain, X509 *root, X509_CRL *const *crls,
			   size_t ncrls, int64_t now, unsigned flags)
{
	int n, rc;
	bool covered = false;
	uint32_t checked = 0;
	char cn[128];

	if (!chain || !root || (!crls && ncrls) || ncrls > 32)
		return VEIL_EINVAL;
	n = sk_X509_num(chain);
	if (n < 1)
		return veil_errf(VEIL_EFORMAT, "certificate chain is empty");
	/* A chain that carries the anchor must carry exactly the pinned one. */
	if (X509_check_issued(sk_X509_value(chain, n - 1), sk_X509_value(chain, n - 1)) ==
	    X509_V_OK) {
		if (!same_der(sk_X509_value(chain, n - 1), root))
			return veil_errf(VEIL_EPERM, "certificate chain ends in a root that is not the pinned trust anchor");
		n--;
		if (n < 1)
			return veil_errf(VEIL_EFORMAT, "certificate chain holds only the root");
	}
	if ((flags & VEIL_X509_LEAF_NOT_CA) && X509_check_ca(sk_X509_value(chain, 0)) != 0)
		return veil_errf(VEIL_EPERM, "leaf certificate \"%s\" is a CA",
				 cn_of(sk_X509_value(chain, 0), cn, sizeof(cn)));
	for (int i = 0; i < n; i++) {
		X509 *issuer = i + 1 < n ? sk_X509_value(chain, i + 1) : root;

		if ((rc = check_link(sk_X509_value(chain, i), issuer, i, now, crls, ncrls, &checked,
				     flags)) < 0)
			return rc;
	}
	if ((rc = check_window(root, now)) < 0)
		return rc;
	return check_revocation(root, root, crls, ncrls, now, &checked, &covered);
}
