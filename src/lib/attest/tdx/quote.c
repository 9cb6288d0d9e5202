/* veil tdx: DCAP quote parsing (SGX v3, TDX v4/v5).
 *
 * Layouts: Intel TDX DCAP Quoting Library API (quote format v4, appendix A),
 * and its v5 update (body descriptor: u16 type, u32 size); SGX ECDSA quote
 * v3 from the SGX DCAP Quote Library reference.  All integers little-endian. */
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"
#include "veil/tdx.h"

struct rd {
	const uint8_t *p;
	size_t n;
	size_t off;
};

static int need(struct rd *r, size_t len, const char *what)
{
	if (len > r->n - r->off)
		return veil_errf(VEIL_EFORMAT, "quote: %s: length %zu exceeds remaining %zu",
				 what, len, r->n - r->off);
	return 0;
}

static int take(struct rd *r, size_t len, const char *what, const uint8_t **out)
{
	int rc = need(r, len, what);

	if (rc < 0)
		return rc;
	*out = r->p + r->off;
	r->off += len;
	return 0;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static int take16(struct rd *r, const char *what, uint16_t *v)
{
	const uint8_t *q;
	int rc = take(r, 2, what, &q);

	if (rc == 0)
		*v = le16(q);
	return rc;
}

static int take32(struct rd *r, const char *what, uint32_t *v)
{
	const uint8_t *q;
	int rc = take(r, 4, what, &q);

	if (rc == 0)
		*v = le32(q);
	return rc;
}

static void enclave_report(const uint8_t *b, struct veil_tdx_enclave_report *e)
{
	memcpy(e->cpu_svn, b, 16);
	e->miscselect = le32(b + 16);
	memcpy(e->attributes, b + 48, 16);
	memcpy(e->mr_enclave, b + 64, 32);
	memcpy(e->mr_signer, b + 128, 32);
	e->isv_prod_id = le16(b + 256);
	e->isv_svn = le16(b + 258);
	memcpy(e->report_data, b + 320, 64);
}

static void td_report(const uint8_t *b, bool td15, struct veil_tdx_td_report *t)
{
	memcpy(t->tee_tcb_svn, b, 16);
	memcpy(t->mr_seam, b + 16, 48);
	memcpy(t->mr_signer_seam, b + 64, 48);
	memcpy(t->seam_attributes, b + 112, 8);
	memcpy(t->td_attributes, b + 120, 8);
	memcpy(t->xfam, b + 128, 8);
	memcpy(t->mr_td, b + 136, 48);
	memcpy(t->mr_config_id, b + 184, 48);
	memcpy(t->mr_owner, b + 232, 48);
	memcpy(t->mr_owner_config, b + 280, 48);
	for (int i = 0; i < 4; i++)
		memcpy(t->rtmr[i], b + 328 + 48 * i, 48);
	memcpy(t->report_data, b + 520, 64);
	if (td15) {
		memcpy(t->tee_tcb_svn2, b + 584, 16);
		memcpy(t->mr_servicetd, b + 600, 48);
	}
}

/* QE report, its signature, QE auth data and the nested certification data:
 * the v3 tail of the auth data and the body of a v4 type-6 element. */
static int qe_part(struct rd *r, struct veil_tdx_quote *q)
{
	uint32_t sz;
	int rc;

	if ((rc = take(r, VEIL_TDX_SGX_REPORT_LEN, "QE report", &q->qe_report)) < 0 ||
	    (rc = take(r, 64, "QE report signature", &q->qe_report_sig)) < 0 ||
	    (rc = take16(r, "QE auth data size", &q->qe_auth_len)) < 0 ||
	    (rc = take(r, q->qe_auth_len, "QE auth data", &q->qe_auth)) < 0 ||
	    (rc = take16(r, "PCK certification data type", &q->pck_cert_type)) < 0 ||
	    (rc = take32(r, "PCK certification data size", &sz)) < 0 ||
	    (rc = take(r, sz, "PCK certification data", &q->pck_data)) < 0)
		return rc;
	q->pck_data_len = sz;
	enclave_report(q->qe_report, &q->qe);
	return 0;
}

int veil_tdx_quote_parse(const uint8_t *p, size_t n, struct veil_tdx_quote *out)
{
	struct veil_tdx_quote q;
	struct rd r = {p, n, 0};
	struct rd a;
	const uint8_t *h, *body, *auth;
	uint32_t auth_len;
	int rc;

	if (!p || !out)
		return VEIL_EINVAL;
	memset(&q, 0, sizeof(q));
	if ((rc = take(&r, VEIL_TDX_HEADER_LEN, "header", &h)) < 0)
		return rc;
	q.header.version = le16(h);
	q.header.att_key_type = le16(h + 2);
	q.header.tee_type = le32(h + 4);
	q.header.qe_svn = le16(h + 8);
	q.header.pce_svn = le16(h + 10);
	memcpy(q.header.qe_vendor_id, h + 12, 16);
	memcpy(q.header.user_data, h + 28, 20);

	if (q.header.tee_type != VEIL_TDX_TEE_SGX && q.header.tee_type != VEIL_TDX_TEE_TDX)
		return veil_errf(VEIL_ENOTSUP, "quote: header: TEE type 0x%08x is not SGX or TDX",
				 (unsigned)q.header.tee_type);
	if (q.header.att_key_type != 2)
		return veil_errf(VEIL_ENOTSUP, "quote: header: attestation key type %u is not ECDSA-256-with-P-256",
				 q.header.att_key_type);
	switch (q.header.version) {
	case 3:
		if (q.header.tee_type != VEIL_TDX_TEE_SGX)
			return veil_errf(VEIL_ENOTSUP, "quote: header: version 3 with a TDX TEE type");
		q.body_type = VEIL_TDX_BODY_SGX;
		break;
	case 4:
		q.body_type = q.header.tee_type == VEIL_TDX_TEE_SGX ? VEIL_TDX_BODY_SGX
								    : VEIL_TDX_BODY_TD10;
		break;
	case 5: {
		uint16_t bt;
		uint32_t bs;

		if ((rc = take16(&r, "body descriptor type", &bt)) < 0 ||
		    (rc = take32(&r, "body descriptor size", &bs)) < 0)
			return rc;
		if (bt < VEIL_TDX_BODY_SGX || bt > VEIL_TDX_BODY_TD15)
			return veil_errf(VEIL_ENOTSUP, "quote: body descriptor: type %u unknown", bt);
		if ((bt == VEIL_TDX_BODY_SGX) != (q.header.tee_type == VEIL_TDX_TEE_SGX))
			return veil_errf(VEIL_EFORMAT, "quote: body descriptor: type %u does not fit TEE type 0x%08x",
					 bt, (unsigned)q.header.tee_type);
		q.body_type = bt;
		q.body_size = bs;
		break;
	}
	default:
		return veil_errf(VEIL_ENOTSUP, "quote: header: version %u unsupported",
				 q.header.version);
	}
	{
		uint32_t want = q.body_type == VEIL_TDX_BODY_SGX    ? VEIL_TDX_SGX_REPORT_LEN
				: q.body_type == VEIL_TDX_BODY_TD10 ? VEIL_TDX_TD10_LEN
								    : VEIL_TDX_TD15_LEN;

		if (q.header.version == 5 && q.body_size != want)
			return veil_errf(VEIL_EFORMAT, "quote: body descriptor: size %u, body type %d needs %u",
					 (unsigned)q.body_size, q.body_type, (unsigned)want);
		q.body_size = want;
	}
	if ((rc = take(&r, q.body_size, "report body", &body)) < 0)
		return rc;
	if (q.body_type == VEIL_TDX_BODY_SGX)
		enclave_report(body, &q.sgx);
	else
		td_report(body, q.body_type == VEIL_TDX_BODY_TD15, &q.td);
	q.signed_data = p;
	q.signed_len = r.off;

	if ((rc = take32(&r, "signature data size", &auth_len)) < 0 ||
	    (rc = take(&r, auth_len, "signature data", &auth)) < 0)
		return rc;
	q.quote_len = r.off;

	a = (struct rd){auth, auth_len, 0};
	if ((rc = take(&a, 64, "quote signature", &q.signature)) < 0 ||
	    (rc = take(&a, 64, "attestation key", &q.attest_key)) < 0)
		return rc;
	if (q.header.version == 3) {
		if ((rc = qe_part(&a, &q)) < 0)
			return rc;
	} else {
		uint32_t sz;
		const uint8_t *cd;
		struct rd c;

		if ((rc = take16(&a, "certification data type", &q.outer_cert_type)) < 0 ||
		    (rc = take32(&a, "certification data size", &sz)) < 0 ||
		    (rc = take(&a, sz, "certification data", &cd)) < 0)
			return rc;
		if (q.outer_cert_type != 6)
			return veil_errf(VEIL_ENOTSUP, "quote: certification data type %u is not 6 (QE report certification data)",
					 q.outer_cert_type);
		c = (struct rd){cd, sz, 0};
		if ((rc = qe_part(&c, &q)) < 0)
			return rc;
		if (c.off != c.n)
			return veil_errf(VEIL_EFORMAT, "quote: QE report certification data: %zu bytes left over",
					 c.n - c.off);
	}
	if (a.off != a.n)
		return veil_errf(VEIL_EFORMAT, "quote: signature data: %zu bytes left over",
				 a.n - a.off);
	*out = q;
	return 0;
}

int veil_tdx_quote_load(const char *path, uint8_t **out, size_t *out_len)
{
	struct veil_buf b = VEIL_BUF_INIT(2 * (size_t)VEIL_TDX_QUOTE_MAX + 64);
	struct veil_buf hex = VEIL_BUF_INIT(VEIL_TDX_QUOTE_MAX);
	uint8_t *bin = NULL;
	size_t len;
	int rc;

	if (!path || !out || !out_len)
		return VEIL_EINVAL;
	if ((rc = veil_buf_read_file(&b, path)) < 0)
		goto out;
	/* Hex text if it decodes as such; anything else is raw bytes. */
	if (veil_hex_text_decode((const char *)b.data, b.len, &hex) == 0 && hex.len > 0) {
		bin = veil_buf_steal(&hex, &len);
	} else {
		if (b.len > VEIL_TDX_QUOTE_MAX) {
			rc = veil_errf(VEIL_ERANGE, "quote file %s: larger than %u bytes", path,
				       VEIL_TDX_QUOTE_MAX);
			goto out;
		}
		bin = veil_buf_steal(&b, &len);
		if (!bin) {
			rc = veil_errf(VEIL_EFORMAT, "quote file %s: empty", path);
			goto out;
		}
	}
	*out = bin;
	*out_len = len;
	bin = NULL;
	rc = 0;
out:
	free(bin);
	veil_buf_free(&hex);
	veil_buf_free(&b);
	return rc;
}
