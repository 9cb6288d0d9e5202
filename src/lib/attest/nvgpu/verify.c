/* NVIDIA GPU evidence verification: device certificate chain to the pinned
 * NVIDIA Device Identity CA, leaf FWID (TCG DICE, 2.23.133.5.4.1) against
 * the opaque FWID, the SPDM ECDSA P-384 signature, the nonce, and optional
 * RIM golden values; plus NRAS-shaped evidence lists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "nvgpu_internal.h"

#define MAX_CERTS 8
#define MAX_PEM (64u * 1024)
/* TCG DICE TcbInfo: Hopper leaves use 2.23.133.5.4.1, Blackwell leaves
 * 2.23.133.5.4.1.1; both hold FWID ::= SEQUENCE { hashAlg OID, digest }. */
#define OID_TCG_DICE_TCBINFO "2.23.133.5.4.1"
#define OID_TCG_DICE_TCBINFO_1 "2.23.133.5.4.1.1"

static int fail(struct veil_nvgpu_result *res, int rc, const char *fmt, ...)
	VEIL_PRINTF(3, 4);

void nvgpu_ascii(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' ||
			 s[n - 1] == '\t'))
		s[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			s[i] = '?';
}

/* Records the reason in res->error and the thread's error detail. */
static int fail(struct veil_nvgpu_result *res, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
	nvgpu_ascii(res->error); /* it may quote a RIM */
	return veil_errf(rc, "%s", res->error);
}

static int load_chain(const char *pem, size_t len, X509 **certs, size_t *n)
{
	BIO *bio;
	size_t k = 0;
	int rc = 0;

	if (len > MAX_PEM)
		return veil_errf(VEIL_ERANGE, "certificate chain: %zu bytes exceeds %u", len, MAX_PEM);
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return VEIL_ENOMEM;
	for (;;) {
		X509 *c = PEM_read_bio_X509(bio, NULL, NULL, NULL);

		if (!c)
			break;
		if (k == MAX_CERTS) {
			X509_free(c);
			rc = veil_errf(VEIL_ERANGE, "certificate chain: more than %d certificates",
				       MAX_CERTS);
			break;
		}
		certs[k++] = c;
	}
	ERR_clear_error();
	BIO_free(bio);
	if (rc < 0) {
		while (k)
			X509_free(certs[--k]);
		return rc;
	}
	*n = k;
	return 0;
}

/* ---- DER walk for the DICE FWID -------------------------------------- */

/* Reads one TLV header at p[0..n): tag, content offset and length. */
static int der_hdr(const uint8_t *p, size_t n, uint8_t *tag, size_t *hl, size_t *cl)
{
	size_t l, k;

	if (n < 2 || (p[0] & 0x1f) == 0x1f)
		return -1;
	*tag = p[0];
	l = p[1];
	k = 2;
	if (l & 0x80) {
		size_t nb = l & 0x7f;

		if (nb == 0 || nb > 3 || n < 2 + nb)
			return -1;
		l = 0;
		for (size_t i = 0; i < nb; i++)
			l = (l << 8) | p[2 + i];
		k += nb;
	}
	if (l > n - k)
		return -1;
	*hl = k;
	*cl = l;
	return 0;
}

/* True when some SEQUENCE { OID, OCTET STRING fwid } (TCG FWID) inside the
 * DER equals `fwid`.  Walks constructed values, at most `depth` deep. */
static bool der_has_fwid(const uint8_t *p, size_t n, const uint8_t *fwid, size_t flen,
			 int depth)
{
	size_t o = 0;

	if (depth > 8)
		return false;
	while (o < n) {
		uint8_t tag;
		size_t hl, cl;

		if (der_hdr(p + o, n - o, &tag, &hl, &cl) < 0)
			return false;
		if (tag == 0x30) {
			const uint8_t *c = p + o + hl;
			uint8_t t1, t2;
			size_t h1, l1, h2, l2;

			if (der_hdr(c, cl, &t1, &h1, &l1) == 0 && t1 == 0x06 &&
			    der_hdr(c + h1 + l1, cl - h1 - l1, &t2, &h2, &l2) == 0 && t2 == 0x04 &&
			    h1 + l1 + h2 + l2 == cl && l2 == flen &&
			    memcmp(c + h1 + l1 + h2, fwid, flen) == 0)
				return true;
		}
		if ((tag & 0x20) && der_has_fwid(p + o + hl, cl, fwid, flen, depth + 1))
			return true;
		o += hl + cl;
	}
	return false;
}

static int find_ext(X509 *c, const char *oid_txt)
{
	ASN1_OBJECT *oid = OBJ_txt2obj(oid_txt, 1);
	int idx;

	if (!oid)
		return -1;
	idx = X509_get_ext_by_OBJ(c, oid, -1);
	ASN1_OBJECT_free(oid);
	return idx;
}

static int check_fwid(struct veil_nvgpu_result *res, X509 *leaf)
{
	int idx, rc;
	X509_EXTENSION *ext;
	const ASN1_OCTET_STRING *v;

	idx = find_ext(leaf, OID_TCG_DICE_TCBINFO);
	if (idx < 0)
		idx = find_ext(leaf, OID_TCG_DICE_TCBINFO_1);
	if (idx < 0)
		return fail(res, VEIL_EBADMSG,
			    "leaf certificate: FWID extension (%s) not found; is the signing "
			    "certificate missing from the chain?", OID_TCG_DICE_TCBINFO);
	if (res->ev.fwid_len == 0)
		return fail(res, VEIL_EBADMSG, "evidence: no opaque FWID (field 20)");
	ext = X509_get_ext(leaf, idx);
	v = X509_EXTENSION_get_data(ext);
	if (!der_has_fwid(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v), res->ev.fwid,
			  res->ev.fwid_len, 0))
		rc = fail(res, VEIL_EBADMSG,
			  "leaf certificate: FWID does not equal the evidence's opaque FWID");
	else
		rc = 0;
	res->fwid_ok = rc == 0;
	return rc;
}

/* ---- chain ------------------------------------------------------------- */

static int verify_chain(struct veil_nvgpu_result *res, X509 **certs, size_t n, int64_t now,
			const uint8_t *root_der, size_t root_der_len)
{
	const uint8_t *rp = root_der;
	X509 *root = d2i_X509(NULL, &rp, (long)root_der_len);
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	unsigned char *top = NULL;
	int top_len, rc, depth;
	bool top_is_root;

	if (!root || !store || !ctx || !untrusted) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (n < 2) {
		rc = fail(res, VEIL_EBADMSG,
			  "certificate chain: %zu certificate(s); it must hold at least the "
			  "signing certificate and the root CA", n);
		goto out;
	}
	top_len = i2d_X509(certs[n - 1], &top);
	top_is_root = top_len == (int)root_der_len && memcmp(top, root_der, root_der_len) == 0;
	for (size_t i = 1; i < n; i++)
		if (!sk_X509_push(untrusted, certs[i])) {
			rc = VEIL_ENOMEM;
			goto out;
		}
	if (!X509_STORE_add_cert(store, root) ||
	    !X509_STORE_CTX_init(ctx, store, certs[0], untrusted)) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	X509_STORE_CTX_set_time(ctx, 0, (time_t)now);
	if (X509_verify_cert(ctx) != 1) {
		int err = X509_STORE_CTX_get_error(ctx);

		rc = fail(res, err == X509_V_ERR_CERT_HAS_EXPIRED ||
				       err == X509_V_ERR_CERT_NOT_YET_VALID ? VEIL_EPERM : VEIL_EBADMSG,
			  "certificate chain failed to verify to the NVIDIA Device Identity CA: "
			  "%s (depth %d)", X509_verify_cert_error_string(err),
			  X509_STORE_CTX_get_error_depth(ctx));
		goto out;
	}
	/* The path must be exactly the chain given (plus the pinned root when
	 * the chain stops below it): no unused or reordered certificates. */
	depth = sk_X509_num(X509_STORE_CTX_get0_chain(ctx));
	if ((size_t)depth != n + (top_is_root ? 0 : 1)) {
		rc = fail(res, VEIL_EBADMSG,
			  "certificate chain: %zu certificates given but the path uses %d", n,
			  depth);
		goto out;
	}
	for (int i = 0; i < depth && (size_t)i < n; i++)
		if (X509_cmp(sk_X509_value(X509_STORE_CTX_get0_chain(ctx), i), certs[i]) != 0) {
			rc = fail(res, VEIL_EBADMSG, "certificate chain: certificate %d out of order",
				  i);
			goto out;
		}
	res->chain_ok = true;
	rc = 0;
out:
	OPENSSL_free(top);
	sk_X509_free(untrusted);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(root);
	ERR_clear_error();
	return rc;
}

/* ---- signature --------------------------------------------------------- */

static int verify_sig(struct veil_nvgpu_result *res, X509 *leaf, const uint8_t *ev)
{
	EVP_PKEY *pk = X509_get0_pubkey(leaf);
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(res->ev.sig, 48, NULL), *s = BN_bin2bn(res->ev.sig + 48, 48, NULL);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *der = NULL;
	int der_len, rc;
	char group[32] = "";
	size_t glen = 0;

	if (!sig || !r || !s || !md) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC ||
	    !EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof(group), &glen) ||
	    strcmp(group, "secp384r1") != 0) {
		rc = fail(res, VEIL_EBADMSG, "leaf certificate: key is not ECDSA P-384");
		goto out;
	}
	if (!ECDSA_SIG_set0(sig, r, s)) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	r = s = NULL;
	der_len = i2d_ECDSA_SIG(sig, &der);
	if (der_len <= 0) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, pk) != 1 ||
	    EVP_DigestVerify(md, der, (size_t)der_len, ev, res->ev.signed_len) != 1) {
		rc = fail(res, VEIL_EBADMSG,
			  "SPDM signature does not verify with the leaf certificate's key");
		goto out;
	}
	res->signature_ok = true;
	rc = 0;
out:
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	ERR_clear_error();
	return rc;
}

/* ---- identity ---------------------------------------------------------- */

static void leaf_identity(struct veil_nvgpu_result *res, X509 *leaf)
{
	X509_NAME *nm = X509_get_subject_name(leaf);
	const ASN1_INTEGER *sn = X509_get0_serialNumber(leaf);
	BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
	char *dec = bn ? BN_bn2dec(bn) : NULL;
	const struct veil_nvgpu_tlv *ci;

	X509_NAME_get_text_by_NID(nm, NID_commonName, res->leaf_cn, sizeof(res->leaf_cn));
	if (dec && strlen(dec) < sizeof(res->ueid))
		strcpy(res->ueid, dec);
	OPENSSL_free(dec);
	BN_free(bn);
	ERR_clear_error();
	/* "GH100 A01 GSP FMC LF" -> Hopper; "GB20X ..."/"GB100 ..." -> Blackwell */
	if (!strncmp(res->leaf_cn, "GH", 2))
		res->arch = VEIL_NVGPU_ARCH_HOPPER;
	else if (!strncmp(res->leaf_cn, "GB", 2))
		res->arch = VEIL_NVGPU_ARCH_BLACKWELL;
	else if ((ci = veil_nvgpu_find_tlv(&res->ev, VEIL_NVGPU_OP_CHIP_INFO)) && ci->len >= 2 &&
		 !memcmp(res->ev.opaque + ci->off, "GB", 2))
		res->arch = VEIL_NVGPU_ARCH_BLACKWELL;
}

/* ---- RIM ----------------------------------------------------------------- */

static const struct veil_nvgpu_block *find_block(const struct veil_nvgpu_evidence *ev,
						 unsigned idx)
{
	for (size_t i = 0; i < ev->n_blocks; i++)
		if (ev->blocks[i].index == idx)
			return &ev->blocks[i];
	return NULL;
}

static void rim_apply(struct veil_nvgpu_result *res, const struct veil_nvgpu_rim *rim,
		      const struct veil_nvgpu_rim *other, size_t *conflicts)
{
	for (size_t i = 0; i < rim->n; i++) {
		const struct veil_nvgpu_rim_entry *e = &rim->e[i];
		unsigned idx = e->index + 1u; /* RIM is 0-based, SPDM 1-based */
		const struct veil_nvgpu_block *b;
		uint8_t st = VEIL_NVGPU_MEAS_MISMATCH;

		if (!e->active || idx > VEIL_NVGPU_MAX_BLOCKS)
			continue;
		if (other)
			for (size_t k = 0; k < other->n; k++)
				if (other->e[k].active && other->e[k].index == e->index && rim < other)
					(*conflicts)++;
		b = find_block(&res->ev, idx);
		if (!b) {
			st = VEIL_NVGPU_MEAS_MISSING;
		} else {
			for (unsigned a = 0; a < e->n_alt; a++)
				if (b->value_len == e->len && !memcmp(b->value, e->hash[a], e->len))
					st = VEIL_NVGPU_MEAS_MATCH;
		}
		res->meas[idx] = st;
	}
}

/* RIM signatures, before any golden value is used: a RIM whose check ran
 * must have verified (veil_nvgpu_rim_load leaves a failed one empty). */
static int check_rim_sigs(struct veil_nvgpu_result *res, const struct veil_nvgpu_opts *o)
{
	const struct veil_nvgpu_rim *rims[2] = {o->rim_driver, o->rim_vbios};
	static const char *const role[2] = {"driver", "VBIOS"};
	size_t given = 0, checked = 0, good = 0;

	for (int k = 0; k < 2; k++) {
		if (!rims[k])
			continue;
		given++;
		res->rim_sig[k] = rims[k]->sig;
		if (rims[k]->sig.checked) {
			checked++;
			good += rims[k]->sig.ok;
		}
	}
	res->rim_sig_checked = checked > 0 && (checked == given || good < checked);
	res->rim_sig_ok = checked == given && good == given;
	for (int k = 0; k < 2; k++)
		if (rims[k] && rims[k]->sig.checked && !rims[k]->sig.ok)
			return fail(res, rims[k]->sig.rc < 0 ? rims[k]->sig.rc : VEIL_EBADMSG,
				    "%s RIM: %s", role[k], rims[k]->sig.error);
	return 0;
}

static int check_rim(struct veil_nvgpu_result *res, const struct veil_nvgpu_opts *o)
{
	size_t conflicts = 0, bad = 0;
	int rc;

	if (!o->rim_driver && !o->rim_vbios)
		return 0;
	res->rim_checked = true;
	if ((rc = check_rim_sigs(res, o)) < 0)
		return rc;
	if (o->rim_driver)
		rim_apply(res, o->rim_driver, o->rim_vbios, &conflicts);
	if (o->rim_vbios)
		rim_apply(res, o->rim_vbios, o->rim_driver, &conflicts);
	for (size_t i = 1; i <= VEIL_NVGPU_MAX_BLOCKS; i++)
		bad += res->meas[i] == VEIL_NVGPU_MEAS_MISMATCH ||
		       res->meas[i] == VEIL_NVGPU_MEAS_MISSING;
	res->rim_mismatches = bad;
	if (conflicts)
		return fail(res, VEIL_EPERM, "RIM: %zu index(es) active in both driver and VBIOS "
			    "RIM", conflicts);
	if (o->rim_driver && strcasecmp(o->rim_driver->version, res->ev.driver_version) != 0)
		return fail(res, VEIL_EPERM, "RIM: driver RIM version %s != evidence driver %s",
			    o->rim_driver->version, res->ev.driver_version);
	if (o->rim_vbios && strcasecmp(o->rim_vbios->version, res->ev.vbios_version) != 0)
		return fail(res, VEIL_EPERM, "RIM: VBIOS RIM version %s != evidence VBIOS %s",
			    o->rim_vbios->version, res->ev.vbios_version);
	if (bad)
		return fail(res, VEIL_EPERM, "RIM: %zu measurement(s) differ from golden values",
			    bad);
	res->rim_ok = true;
	return 0;
}

/* ---- entry points -------------------------------------------------------- */

int veil_nvgpu_verify(const uint8_t *ev, size_t ev_len, const char *pem, size_t pem_len,
		      const struct veil_nvgpu_opts *opts, struct veil_nvgpu_result *res)
{
	static const struct veil_nvgpu_opts none;
	const struct veil_nvgpu_opts *o = opts ? opts : &none;
	X509 *certs[MAX_CERTS];
	size_t n = 0;
	int64_t now = o->now ? o->now : (int64_t)time(NULL);
	int rc;

	if (!res)
		return veil_errf(VEIL_EINVAL, "nvgpu verify: NULL result");
	memset(res, 0, sizeof(*res));
	if (!ev || !pem)
		return fail(res, VEIL_EINVAL, "nvgpu verify: NULL evidence or chain");
	if ((rc = veil_nvgpu_parse(ev, ev_len, &res->ev)) < 0) {
		snprintf(res->error, sizeof(res->error), "%s", veil_err_detail());
		nvgpu_ascii(res->error);
		return rc;
	}
	res->parsed = true;
	if ((rc = load_chain(pem, pem_len, certs, &n)) < 0) {
		snprintf(res->error, sizeof(res->error), "%s", veil_err_detail());
		nvgpu_ascii(res->error);
		return rc;
	}
	res->n_certs = n;
	if (n == 0) {
		rc = fail(res, VEIL_EBADMSG, "certificate chain: no PEM certificate");
		goto out;
	}
	leaf_identity(res, certs[0]);
	if ((rc = verify_chain(res, certs, n, now,
			       o->root_der ? o->root_der : nvgpu_device_root_der,
			       o->root_der ? o->root_der_len : nvgpu_device_root_der_len)) < 0)
		goto out;
	if ((rc = check_fwid(res, certs[0])) < 0)
		goto out;
	if ((rc = verify_sig(res, certs[0], ev)) < 0)
		goto out;
	if (o->expected_nonce) {
		res->nonce_checked = true;
		res->nonce_ok = !memcmp(o->expected_nonce, res->ev.nonce, VEIL_NVGPU_NONCE_LEN);
		if (!res->nonce_ok) {
			rc = fail(res, VEIL_EPERM, "evidence nonce differs from the expected nonce");
			goto out;
		}
	}
	rc = check_rim(res, o);
out:
	while (n)
		X509_free(certs[--n]);
	return rc;
}

/* Base64 text -> bytes; evidence that decodes to hex text is hex-decoded. */
static int b64_field(json_t *obj, const char *key, bool maybe_hex, struct veil_buf *out)
{
	const char *s = json_string_value(json_object_get(obj, key));
	size_t len, got;
	uint8_t *tmp;
	int rc;

	if (!s)
		return veil_errf(VEIL_EFORMAT, "evidence list: \"%s\" missing or not a string", key);
	len = json_string_length(json_object_get(obj, key));
	if (len > 4 * (size_t)VEIL_NVGPU_MAX_EVIDENCE)
		return veil_errf(VEIL_ERANGE, "evidence list: \"%s\" too long", key);
	tmp = malloc(len / 4 * 3 + 4);
	if (!tmp)
		return VEIL_ENOMEM;
	rc = veil_b64_decode(s, len, 0, tmp, len / 4 * 3 + 4, &got);
	if (rc < 0) {
		rc = veil_errf(VEIL_EFORMAT, "evidence list: \"%s\" is not base64", key);
	} else if (maybe_hex && got >= 4 && !memcmp(tmp, "11e0", 4)) {
		rc = veil_hex_text_decode((const char *)tmp, got, out);
	} else {
		rc = veil_buf_append(out, tmp, got);
	}
	free(tmp);
	return rc;
}

static int nonce_field(json_t *obj, uint8_t out[VEIL_NVGPU_NONCE_LEN], bool *present)
{
	json_t *v = json_object_get(obj, "nonce");
	const char *s = json_string_value(v);
	size_t got;

	*present = false;
	if (!v)
		return 0;
	if (!s || veil_hex_decode(s, json_string_length(v), out, VEIL_NVGPU_NONCE_LEN, &got) < 0 ||
	    got != VEIL_NVGPU_NONCE_LEN)
		return veil_errf(VEIL_EFORMAT, "evidence list: nonce is not 32 bytes of hex");
	*present = true;
	return 0;
}

int veil_nvgpu_verify_list(const char *json, size_t len, const struct veil_nvgpu_opts *opts,
			   struct veil_nvgpu_result **results, size_t *count)
{
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr), *payload = NULL;
	json_t *list, *top = NULL, *item;
	struct veil_nvgpu_result *res = NULL;
	uint8_t top_nonce[VEIL_NVGPU_NONCE_LEN];
	bool has_top = false;
	size_t n, i;
	int rc, first = 0;

	if (!json || !results || !count)
		return veil_errf(VEIL_EINVAL, "evidence list: NULL argument");
	if (!root)
		return veil_errf(VEIL_EFORMAT, "evidence list: JSON error at line %d: %s", jerr.line,
				 jerr.text);
	top = root;
	if (json_is_object(root) && json_is_string(json_object_get(root, "nvidia_payload"))) {
		json_t *s = json_object_get(root, "nvidia_payload");

		payload = json_loadb(json_string_value(s), json_string_length(s),
				     JSON_REJECT_DUPLICATES, &jerr);
		if (!payload) {
			rc = veil_errf(VEIL_EFORMAT, "nvidia_payload: JSON error: %s", jerr.text);
			goto out;
		}
		top = payload;
	}
	if (json_is_array(top)) {
		list = top;
	} else if (json_is_object(top) && json_is_array(json_object_get(top, "evidence_list"))) {
		list = json_object_get(top, "evidence_list");
		if ((rc = nonce_field(top, top_nonce, &has_top)) < 0)
			goto out;
	} else {
		rc = veil_errf(VEIL_EFORMAT, "evidence list: neither an array nor an object with "
			       "\"evidence_list\"");
		goto out;
	}
	n = json_array_size(list);
	if (n == 0 || n > 64) {
		rc = veil_errf(VEIL_EFORMAT, "evidence list: %zu entries (1..64 accepted)", n);
		goto out;
	}
	res = calloc(n, sizeof(*res));
	if (!res) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	json_array_foreach(list, i, item) {
		struct veil_buf ev = VEIL_BUF_INIT(VEIL_NVGPU_MAX_EVIDENCE);
		struct veil_buf pem = VEIL_BUF_INIT(MAX_PEM);
		uint8_t nonce[VEIL_NVGPU_NONCE_LEN];
		bool has_nonce;

		rc = json_is_object(item) ? 0 : veil_errf(VEIL_EFORMAT, "entry %zu: not an object", i);
		if (rc == 0)
			rc = b64_field(item, "evidence", true, &ev);
		if (rc == 0)
			rc = b64_field(item, "certificate", false, &pem);
		if (rc == 0)
			rc = nonce_field(item, nonce, &has_nonce);
		if (rc == 0)
			rc = veil_nvgpu_verify(ev.data, ev.len, (const char *)pem.data, pem.len, opts,
					       &res[i]);
		else
			snprintf(res[i].error, sizeof(res[i].error), "%s", veil_err_detail());
		if (rc == 0 && has_nonce && memcmp(nonce, res[i].ev.nonce, sizeof(nonce)))
			rc = fail(&res[i], VEIL_EPERM, "entry %zu: \"nonce\" differs from the "
				  "evidence nonce", i);
		if (rc == 0 && has_top && memcmp(top_nonce, res[i].ev.nonce, sizeof(nonce)))
			rc = fail(&res[i], VEIL_EPERM, "entry %zu: payload \"nonce\" differs from "
				  "the evidence nonce", i);
		if (rc < 0 && first == 0)
			first = rc;
		veil_buf_free(&ev);
		veil_buf_free(&pem);
	}
	*results = res;
	*count = n;
	res = NULL;
	rc = first;
out:
	free(res);
	json_decref(payload);
	json_decref(root);
	return rc;
}
