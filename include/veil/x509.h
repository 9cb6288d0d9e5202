/* veil x509: the small PKI toolkit the attestation verifiers share.
 *
 * Strict PEM certificate chains, DER certificates and CRLs, explicit chain
 * verification at a caller-given time with CRLs applied, ECDSA signatures in
 * the raw r||s form that attestation formats use, and UTC time conversion.
 * Everything is OpenSSL 3.0 underneath; the OpenSSL objects handed out are
 * owned by the caller and freed with the usual OpenSSL calls
 * (sk_X509_pop_free(chain, X509_free), X509_free, X509_CRL_free,
 * EVP_PKEY_free).
 *
 * Nothing here consults the system trust store or the wall clock: trust
 * anchors and the verification time are always explicit arguments. */
#ifndef VEIL_X509_H
#define VEIL_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Longest chain a PEM bundle may hold. */
#define VEIL_X509_CHAIN_MAX 8

/* Parses a DER certificate that spans exactly `n` bytes and is encoded
 * canonically (re-encoding gives the same bytes).  VEIL_EFORMAT otherwise. */
int veil_x509_der_parse(const uint8_t *p, size_t n, X509 **out);

/* Parses a DER CRL that spans exactly `n` bytes.  VEIL_EFORMAT otherwise. */
int veil_x509_crl_der_parse(const uint8_t *p, size_t n, X509_CRL **out);

/* Parses a bundle of PEM certificates, first certificate first, with a
 * grammar strict enough that every byte of it matters:
 *
 *   bundle = cert+ NUL*
 *   cert   = "-----BEGIN CERTIFICATE-----" EOL (b64line EOL)+
 *            "-----END CERTIFICATE-----" (EOL | end of bundle)
 *   EOL    = "\n" | "\r\n"
 *
 * with base64 that is canonical (no stray bits, '=' only at the end), at most
 * 76 characters a line, and DER that is canonical (see veil_x509_der_parse).
 * Nothing may sit between two certificates; only NUL bytes may follow the last
 * one (DCAP quotes end their chain with one).  At most VEIL_X509_CHAIN_MAX
 * certificates.  On success *out holds at least one certificate. */
int veil_x509_pem_chain_parse(const uint8_t *p, size_t n, STACK_OF(X509) **out);

/* As veil_x509_pem_chain_parse(), and the text must be exactly what OpenSSL
 * writes for those certificates (64-column base64, "\n" line ends, "\n"
 * after each END line) followed by NUL bytes only: for framing no signature
 * covers (the PCK chain inside a DCAP quote), so that no byte of it can
 * change unnoticed. */
int veil_x509_pem_chain_parse_canonical(const uint8_t *p, size_t n,
					STACK_OF(X509) **out);

/* ---- chain verification ------------------------------------------------ */

/* Every certificate below the trust anchor must be covered by a CRL from its
 * issuer (otherwise VEIL_EPERM "no CRL from ..."). */
#define VEIL_X509_REQUIRE_CRL 1u
/* The leaf must not be a CA certificate. */
#define VEIL_X509_LEAF_NOT_CA 2u

/* Verifies `chain` (leaf first; chain[i+1] issued chain[i]) up to the pinned
 * trust anchor `root` at unix time `now`:
 *  - each link: issuer name/AKID/keyCertSign match (X509_check_issued), the
 *    issuer is a CA whose path length allows the depth, the signature
 *    verifies with the issuer key, no unhandled critical extension;
 *  - each certificate, the root included, is inside its validity window
 *    (bounds inclusive);
 *  - the last element is either issued by `root` or is byte-equal to `root`
 *    (a self-signed look-alike is refused, never silently replaced);
 *  - revocation: every CRL in `crls` whose issuer name equals a
 *    certificate's issuer must verify with that issuer's key (cRLSign) and be
 *    inside [thisUpdate, nextUpdate] at `now`; a listed serial is VEIL_EPERM.
 *    The root is checked against CRLs it signed itself.  CRLs from issuers not
 *    in this chain are ignored.
 * Returns 0, VEIL_EBADMSG (a signature), VEIL_EPERM (time window, revocation,
 * policy) or VEIL_EFORMAT, with a detail naming the certificate. */
int veil_x509_chain_verify(STACK_OF(X509) *chain, X509 *root,
			   X509_CRL *const *crls, size_t ncrls, int64_t now,
			   unsigned flags);

/* ---- signatures and keys ---------------------------------------------- */

/* Verifies an ECDSA signature given as big-endian r||s (each half
 * rs_len/2 bytes) over msg with digest `md` (e.g. EVP_sha256()).
 * 0 when valid, VEIL_EBADMSG when not, VEIL_EINVAL for a bad argument. */
int veil_x509_ecdsa_verify_rs(EVP_PKEY *pk, const EVP_MD *md,
			      const uint8_t *msg, size_t n, const uint8_t *rs,
			      size_t rs_len);

/* Builds a P-256 public key from the 64-byte raw x||y form.  A point that is
 * not on the curve is VEIL_EFORMAT. */
int veil_x509_p256_pubkey(const uint8_t xy[64], EVP_PKEY **out);

/* ---- time ---------------------------------------------------------------- */

/* ASN.1 UTCTime/GeneralizedTime -> unix seconds. */
int veil_x509_time_unix(const ASN1_TIME *t, int64_t *out);

/* Parses exactly "YYYY-MM-DDTHH:MM:SSZ" (optionally with a fraction of a
 * second, which is dropped) into unix seconds.  `len` bytes of `s`. */
int veil_x509_iso8601_parse(const char *s, size_t len, int64_t *out);

/* Unix seconds -> "YYYY-MM-DDTHH:MM:SSZ" (what the parser above reads).
 * VEIL_ERANGE for a time gmtime cannot represent: out then holds the
 * decimal seconds. */
#define VEIL_X509_ISO8601_LEN 32
int veil_x509_iso8601_format(int64_t t, char out[VEIL_X509_ISO8601_LEN]);

/* Days from 1970-01-01 to the given proleptic Gregorian date. */
int64_t veil_x509_days_from_civil(int64_t y, unsigned m, unsigned d);

#endif
