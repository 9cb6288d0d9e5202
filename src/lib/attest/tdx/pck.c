/* veil tdx: the Intel SGX PCK certificate extension.
 *
 * Intel SGX PCK Certificate and CRL Profile, §3.5: extension
 * 1.2.840.113741.1.13.1 is a SEQUENCE OF SEQUENCE { OID, value }:
 *   .1 PPID OCTET STRING(16)     .2 TCB SEQUENCE OF { .2.1-.2.16 INTEGER
 *   .3 PCE-ID OCTET STRING(2)         component SVNs, .2.17 PCESVN INTEGER,
 *   .4 FMSPC OCTET STRING(6)          .2.18 CPUSVN OCTET STRING(16) }
 *   .5 SGX Type ENUMERATED       .6/.7 platform instance / configuration
 * Decoded with OpenSSL's generic d2i_ASN1_SEQUENCE_ANY; every level must be
 * consumed exactly, each OID may appear once, .1-.5 and all 18 TCB entries
 * are required. */
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "../tdx_impl.h"
#include "veil/base.h"

/* DER content octets of 1.2.840.113741.1.13.1 */
static const uint8_t SGX_EXT_OID[] = {0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01};

/* Number of arcs after the SGX OID (1 or 2, each < 128) in *arc, or -1. */
static int sgx_arcs(const ASN1_OBJECT *o, int arc[2])
{
	const unsigned char *d = OBJ_get0_data(o);
	size_t n = OBJ_length(o), k = sizeof(SGX_EXT_OID);

	if (!d || n <= k || n > k + 2 || memcmp(d, SGX_EXT_OID, k) != 0)
		return -1;
	for (size_t i = k; i < n; i++) {
		if (d[i] & 0x80)
			return -1;
		arc[i - k] = d[i];
	}
	return (int)(n - k);
}

static ASN1_SEQUENCE_ANY *seq_any(const unsigned char *p, long n)
{
	const unsigned char *q = p;
	ASN1_SEQUENCE_ANY *s = d2i_ASN1_SEQUENCE_ANY(NULL, &q, n);

	if (s && q != p + n) {
		sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free);
		return NULL;
	}
	return s;
}

/* Splits an element of the outer list into (OID, value). */
static ASN1_SEQUENCE_ANY *pair(const ASN1_TYPE *t, const ASN1_OBJECT **oid,
			       const ASN1_TYPE **val)
{
	ASN1_SEQUENCE_ANY *s;

	if (!t || t->type != V_ASN1_SEQUENCE || !t->value.sequence)
		return NULL;
	s = seq_any(t->value.sequence->data, t->value.sequence->length);
	if (!s)
		return NULL;
	if (sk_ASN1_TYPE_num(s) != 2 || sk_ASN1_TYPE_value(s, 0)->type != V_ASN1_OBJECT) {
		sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free);
		return NULL;
	}
	*oid = sk_ASN1_TYPE_value(s, 0)->value.object;
	*val = sk_ASN1_TYPE_value(s, 1);
	return s;
}

static int octets(const ASN1_TYPE *v, uint8_t *out, int want, const char *what)
{
	if (v->type != V_ASN1_OCTET_STRING || !v->value.octet_string ||
	    v->value.octet_string->length != want)
		return veil_errf(VEIL_EFORMAT, "PCK extension: %s is not an OCTET STRING of %d bytes",
				 what, want);
	memcpy(out, v->value.octet_string->data, (size_t)want);
	return 0;
}

static int integer(const ASN1_TYPE *v, int64_t max, int64_t *out, const char *what)
{
	int64_t x;

	if (v->type != V_ASN1_INTEGER || !v->value.integer ||
	    ASN1_INTEGER_get_int64(&x, v->value.integer) != 1 || x < 0 || x > max)
		return veil_errf(VEIL_EFORMAT, "PCK extension: %s is not an INTEGER in 0..%lld",
				 what, (long long)max);
	*out = x;
	return 0;
}

static int tcb_parse(const ASN1_TYPE *v, struct tdx_pck_ext *e)
{
	ASN1_SEQUENCE_ANY *s;
	uint32_t seen = 0;
	int rc = 0;

	if (v->type != V_ASN1_SEQUENCE || !v->value.sequence ||
	    !(s = seq_any(v->value.sequence->data, v->value.sequence->length)))
		return veil_errf(VEIL_EFORMAT, "PCK extension: TCB is not a SEQUENCE");
	for (int i = 0; i < sk_ASN1_TYPE_num(s) && rc == 0; i++) {
		const ASN1_OBJECT *oid;
		const ASN1_TYPE *val;
		ASN1_SEQUENCE_ANY *pr = pair(sk_ASN1_TYPE_value(s, i), &oid, &val);
		int arc[2];
		int64_t x;

		if (!pr) {
			rc = veil_errf(VEIL_EFORMAT, "PCK extension: TCB entry %d malformed", i);
			break;
		}
		if (sgx_arcs(oid, arc) != 2 || arc[0] != 2 || arc[1] < 1 || arc[1] > 18) {
			rc = veil_errf(VEIL_EFORMAT, "PCK extension: TCB entry %d has an unknown OID", i);
		} else if (seen & (1u << arc[1])) {
			rc = veil_errf(VEIL_EFORMAT, "PCK extension: TCB entry .2.%d repeated", arc[1]);
		} else {
			seen |= 1u << arc[1];
			if (arc[1] <= 16) {
				if ((rc = integer(val, 255, &x, "TCB component SVN")) == 0)
					e->comp[arc[1] - 1] = (uint8_t)x;
			} else if (arc[1] == 17) {
				if ((rc = integer(val, 65535, &x, "PCESVN")) == 0)
					e->pcesvn = (uint16_t)x;
			} else {
				rc = octets(val, e->cpusvn, 16, "CPUSVN");
			}
		}
		sk_ASN1_TYPE_pop_free(pr, ASN1_TYPE_free);
	}
	sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free);
	if (rc == 0 && seen != 0x7fffeu)
		rc = veil_errf(VEIL_EFORMAT, "PCK extension: TCB lacks entries (have mask 0x%x)",
			       (unsigned)seen);
	if (rc == 0 && memcmp(e->comp, e->cpusvn, 16) != 0)
		rc = veil_errf(VEIL_EFORMAT, "PCK extension: CPUSVN disagrees with the TCB components");
	return rc;
}

int tdx_pck_ext_parse(X509 *pck, struct tdx_pck_ext *out)
{
	struct tdx_pck_ext e;
	const ASN1_OCTET_STRING *data = NULL;
	ASN1_SEQUENCE_ANY *s = NULL;
	uint32_t seen = 0;
	int found = 0, rc = 0;

	memset(&e, 0, sizeof(e));
	for (int i = 0; i < X509_get_ext_count(pck); i++) {
		X509_EXTENSION *x = X509_get_ext(pck, i);
		const ASN1_OBJECT *o = X509_EXTENSION_get_object(x);

		if (OBJ_length(o) == sizeof(SGX_EXT_OID) &&
		    memcmp(OBJ_get0_data(o), SGX_EXT_OID, sizeof(SGX_EXT_OID)) == 0) {
			found++;
			data = X509_EXTENSION_get_data(x);
		}
	}
	if (found != 1 || !data)
		return veil_errf(VEIL_EFORMAT, "PCK certificate: %s SGX extension",
				 found ? "more than one" : "no");
	if (!(s = seq_any(data->data, data->length)))
		return veil_errf(VEIL_EFORMAT, "PCK extension: not a SEQUENCE");
	for (int i = 0; i < sk_ASN1_TYPE_num(s) && rc == 0; i++) {
		const ASN1_OBJECT *oid;
		const ASN1_TYPE *val;
		ASN1_SEQUENCE_ANY *pr = pair(sk_ASN1_TYPE_value(s, i), &oid, &val);
		int arc[2];

		if (!pr) {
			rc = veil_errf(VEIL_EFORMAT, "PCK extension: entry %d malformed", i);
			break;
		}
		if (sgx_arcs(oid, arc) != 1 || arc[0] < 1 || arc[0] > 31) {
			rc = veil_errf(VEIL_EFORMAT, "PCK extension: entry %d has an unknown OID", i);
		} else if (seen & (1u << arc[0])) {
			rc = veil_errf(VEIL_EFORMAT, "PCK extension: entry .%d repeated", arc[0]);
		} else {
			seen |= 1u << arc[0];
			switch (arc[0]) {
			case 1:
				rc = octets(val, e.ppid, 16, "PPID");
				break;
			case 2:
				rc = tcb_parse(val, &e);
				break;
			case 3:
				rc = octets(val, e.pceid, 2, "PCE-ID");
				break;
			case 4:
				rc = octets(val, e.fmspc, 6, "FMSPC");
				break;
			case 5: {
				int64_t t;

				if (val->type != V_ASN1_ENUMERATED || !val->value.enumerated ||
				    ASN1_ENUMERATED_get_int64(&t, val->value.enumerated) != 1 ||
				    t < 0 || t > 255)
					rc = veil_errf(VEIL_EFORMAT, "PCK extension: SGX Type is not an ENUMERATED");
				else
					e.sgx_type = (int)t;
				break;
			}
			default: /* platform instance ID, configuration: not used */
				break;
			}
		}
		sk_ASN1_TYPE_pop_free(pr, ASN1_TYPE_free);
	}
	sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free);
	if (rc == 0 && (seen & 0x3e) != 0x3e)
		rc = veil_errf(VEIL_EFORMAT, "PCK extension: required entries missing (have mask 0x%x)",
			       (unsigned)seen);
	if (rc == 0)
		*out = e;
	return rc;
}
