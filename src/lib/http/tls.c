/* TLS helpers: self-signed certificates, SPKI hashes, the server SSL_CTX. */
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "veil/http.h"

static int ossl_fail(int rc, const char *what)
{
	unsigned long e = ERR_get_error();
	char msg[160] = "";

	if (e)
		ERR_error_string_n(e, msg, sizeof(msg));
	ERR_clear_error();
	return veil_errf(rc, "%s failed%s%s", what, *msg ? ": " : "", msg);
}

static int add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return ossl_fail(VEIL_EINTERNAL, "X509V3_EXT_conf_nid");
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : ossl_fail(VEIL_ENOMEM, "X509_add_ext");
}

int veil_http_selfsigned(enum veil_http_keytype type, const char *dns_name,
			 unsigned days, EVP_PKEY **key, X509 **cert)
{
	EVP_PKEY *k = NULL;
	X509 *c = NULL;
	X509_NAME *name;
	uint8_t serial[16];
	BIGNUM *bn = NULL;
	char san[512];
	int rc = VEIL_EINTERNAL;

	if (!key || !cert || days == 0 || days > 3650)
		return veil_errf(VEIL_EINVAL, "selfsigned: bad arguments");
	if (dns_name && (strlen(dns_name) > 253 ||
			 strpbrk(dns_name, ",\r\n") != NULL))
		return veil_errf(VEIL_EINVAL, "selfsigned: bad DNS name");
	if (type == VEIL_HTTP_KEY_P256)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	else if (type == VEIL_HTTP_KEY_ED25519)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	else
		return veil_errf(VEIL_EINVAL, "selfsigned: key type %d", type);
	if (!k) {
		rc = ossl_fail(VEIL_EINTERNAL, "key generation");
		goto out;
	}
	if (!(c = X509_new())) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if ((rc = veil_random(serial, sizeof(serial))) < 0)
		goto out;
	serial[0] &= 0x7f; /* positive */
	serial[0] |= 0x01; /* and non-zero */
	rc = VEIL_EINTERNAL;
	if (!X509_set_version(c, 2) ||
	    !(bn = BN_bin2bn(serial, sizeof(serial), NULL)) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(c), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(c), (long)days * 86400L) ||
	    !X509_set_pubkey(c, k)) {
		rc = ossl_fail(VEIL_EINTERNAL, "certificate fields");
		goto out;
	}
	name = X509_get_subject_name(c);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					(const unsigned char *)"veil", -1, -1,
					0) ||
	    !X509_set_issuer_name(c, name)) {
		rc = ossl_fail(VEIL_EINTERNAL, "certificate name");
		goto out;
	}
	snprintf(san, sizeof(san), "IP:127.0.0.1,IP:::1,DNS:localhost%s%s",
		 dns_name ? ",DNS:" : "", dns_name ? dns_name : "");
	if ((rc = add_ext(c, NID_subject_alt_name, san)) < 0 ||
	    (rc = add_ext(c, NID_basic_constraints, "critical,CA:FALSE")) < 0 ||
	    (rc = add_ext(c, NID_key_usage, "critical,digitalSignature")) < 0 ||
	    (rc = add_ext(c, NID_ext_key_usage, "serverAuth,clientAuth")) < 0 ||
	    (rc = add_ext(c, NID_subject_key_identifier, "hash")) < 0)
		goto out;
	/* Ed25519 signs without a separate digest. */
	if (!X509_sign(c, k, type == VEIL_HTTP_KEY_ED25519 ? NULL
							  : EVP_sha256())) {
		rc = ossl_fail(VEIL_EINTERNAL, "X509_sign");
		goto out;
	}
	*key = k;
	*cert = c;
	k = NULL;
	c = NULL;
	rc = 0;
out:
	BN_free(bn);
	X509_free(c);
	EVP_PKEY_free(k);
	return rc;
}

int veil_http_spki_sha256_key(EVP_PKEY *key, uint8_t out[32])
{
	unsigned char *der = NULL;
	int n;

	if (!key || !out)
		return VEIL_EINVAL;
	n = i2d_PUBKEY(key, &der);
	if (n <= 0)
		return ossl_fail(VEIL_EFORMAT, "i2d_PUBKEY");
	SHA256(der, (size_t)n, out);
	OPENSSL_free(der);
	return 0;
}

int veil_http_spki_sha256_cert(X509 *cert, uint8_t out[32])
{
	EVP_PKEY *k;

	if (!cert || !out)
		return VEIL_EINVAL;
	k = X509_get0_pubkey(cert);
	if (!k)
		return ossl_fail(VEIL_EFORMAT, "certificate public key");
	return veil_http_spki_sha256_key(k, out);
}

int veil_http_tls_server_ctx(EVP_PKEY *key, X509 *cert, SSL_CTX **out)
{
	SSL_CTX *ctx;

	if (!key || !cert || !out)
		return VEIL_EINVAL;
	if (!(ctx = SSL_CTX_new(TLS_server_method())))
		return ossl_fail(VEIL_ENOMEM, "SSL_CTX_new");
	/* No tickets: the node's TLS key is its attested identity, and resumed
	 * sessions would skip the client's certificate (pin) check. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_NO_COMPRESSION |
					 SSL_OP_NO_TICKET |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_use_certificate(ctx, cert) ||
	    !SSL_CTX_use_PrivateKey(ctx, key) ||
	    !SSL_CTX_check_private_key(ctx)) {
		SSL_CTX_free(ctx);
		return ossl_fail(VEIL_EINVAL, "server TLS key/certificate");
	}
	*out = ctx;
	return 0;
}
