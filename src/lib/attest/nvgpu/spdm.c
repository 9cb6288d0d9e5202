/* SPDM 1.1 GET_MEASUREMENTS request||response parser for NVIDIA GPU
 * evidence.  Layouts: DMTF DSP0274 1.1.1 §10.11 (GET_MEASUREMENTS Table 40,
 * MEASUREMENTS Table 43, measurement block Table 44, DMTF measurement
 * Table 45); NVIDIA's opaque data is a list of (u16 type, u16 size, value)
 * little-endian TLVs whose ids follow nvtrust's OpaqueDataType. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvgpu_internal.h"

#define SPDM_V11 0x11
#define SPDM_GET_MEASUREMENTS 0xE0
#define SPDM_MEASUREMENTS 0x60
#define DMTF_SPEC 0x01
#define MAX_TRAILING 16

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

/* A string TLV: trailing NULs trimmed, printable ASCII only. */
static int tlv_string(const char *what, const uint8_t *v, size_t len, char *out, size_t cap)
{
	while (len > 0 && v[len - 1] == 0)
		len--;
	if (len >= cap)
		return veil_errf(VEIL_EFORMAT, "SPDM opaque %s: %zu bytes exceeds %zu", what, len,
				 cap - 1);
	for (size_t i = 0; i < len; i++)
		if (v[i] < 0x20 || v[i] > 0x7e)
			return veil_errf(VEIL_EFORMAT, "SPDM opaque %s: byte %zu is not printable",
					 what, i);
	memcpy(out, v, len);
	out[len] = '\0';
	return 0;
}

/* nvtrust format_vbios_version: the first half reversed, then the first
 * byte of the second half: 00 9f 00 96 01 00 00 00 -> "96.00.9f.00.01". */
static int vbios_format(const uint8_t *v, size_t len, char *out, size_t cap)
{
	size_t half = len / 2, o = 0;

	if (len < 2 || half * 3 + 3 > cap)
		return veil_errf(VEIL_EFORMAT, "SPDM opaque vbios_version: bad length %zu", len);
	for (size_t i = 0; i < half; i++) {
		snprintf(out + o, cap - o, "%02x.", v[half - 1 - i]);
		o += 3;
	}
	snprintf(out + o, cap - o, "%02x", v[half]);
	return 0;
}

static int decode_tlv(struct veil_nvgpu_evidence *ev, uint16_t type, const uint8_t *v,
		      uint16_t len)
{
	switch (type) {
	case VEIL_NVGPU_OP_DRIVER_VERSION:
		return tlv_string("driver_version", v, len, ev->driver_version,
				  sizeof(ev->driver_version));
	case VEIL_NVGPU_OP_VBIOS_VERSION:
		return vbios_format(v, len, ev->vbios_version, sizeof(ev->vbios_version));
	case VEIL_NVGPU_OP_FWID:
		if (len == 0 || len > sizeof(ev->fwid))
			return veil_errf(VEIL_EFORMAT, "SPDM opaque fwid: length %u", len);
		memcpy(ev->fwid, v, len);
		ev->fwid_len = len;
		return 0;
	case VEIL_NVGPU_OP_NVDEC0_STATUS:
		if (len != 1 || (v[0] != 0xAA && v[0] != 0x55))
			return veil_errf(VEIL_EFORMAT, "SPDM opaque nvdec0_status: invalid value");
		ev->nvdec0_status = v[0] == 0xAA;
		return 0;
	case VEIL_NVGPU_OP_MSRSCNT:
		if (len % 4 || len / 4 > VEIL_NVGPU_MAX_BLOCKS)
			return veil_errf(VEIL_EFORMAT, "SPDM opaque measurement_count: length %u",
					 len);
		for (size_t i = 0; i < len / 4u; i++)
			ev->msr_count[i] = le32(v + 4 * i);
		ev->n_msr_count = len / 4u;
		return 0;
	case 0:
	case 255:
		return veil_errf(VEIL_EFORMAT, "SPDM opaque: invalid field type %u", type);
	default:
		return 0; /* kept as a raw TLV */
	}
}

static int parse_opaque(struct veil_nvgpu_evidence *ev, const uint8_t *base, size_t off,
			size_t len)
{
	size_t o = 0;
	int rc;

	if (len > VEIL_NVGPU_OPAQUE_MAX)
		return veil_errf(VEIL_ENOTSUP, "SPDM opaque data: %zu bytes exceeds %d", len,
				 VEIL_NVGPU_OPAQUE_MAX);
	memcpy(ev->opaque, base + off, len);

	while (o < len) {
		uint16_t type, tl;

		if (len - o < 4)
			return veil_errf(VEIL_EFORMAT,
					 "SPDM opaque: %zu trailing byte(s) at offset %zu", len - o, o);
		type = le16(base + off + o);
		tl = le16(base + off + o + 2);
		o += 4;
		if (tl > len - o)
			return veil_errf(VEIL_EFORMAT,
					 "SPDM opaque field %u: length %u exceeds remaining %zu", type,
					 tl, len - o);
		for (size_t i = 0; i < ev->n_tlvs; i++)
			if (ev->tlvs[i].type == type)
				return veil_errf(VEIL_EFORMAT, "SPDM opaque: duplicate field %u", type);
		if (ev->n_tlvs == VEIL_NVGPU_MAX_TLVS)
			return veil_errf(VEIL_ERANGE, "SPDM opaque: more than %d fields",
					 VEIL_NVGPU_MAX_TLVS);
		ev->tlvs[ev->n_tlvs].type = type;
		ev->tlvs[ev->n_tlvs].len = tl;
		ev->tlvs[ev->n_tlvs].off = o;
		ev->n_tlvs++;
		if ((rc = decode_tlv(ev, type, base + off + o, tl)) < 0)
			return rc;
		o += tl;
	}
	if (!ev->driver_version[0] || !ev->vbios_version[0])
		return veil_errf(VEIL_EFORMAT,
				 "SPDM opaque: driver_version and vbios_version must both be present");
	return 0;
}

static int parse_record(struct veil_nvgpu_evidence *ev, const uint8_t *r, size_t len,
			size_t nblocks)
{
	size_t o = 0;

	for (size_t b = 0; b < nblocks; b++) {
		struct veil_nvgpu_block *blk = &ev->blocks[b];
		uint16_t msize, vlen;

		if (len - o < 4)
			return veil_errf(VEIL_EFORMAT,
					 "SPDM measurement block %zu: header exceeds remaining %zu", b,
					 len - o);
		blk->index = r[o];
		blk->spec = r[o + 1];
		msize = le16(r + o + 2);
		o += 4;
		if (msize > len - o)
			return veil_errf(VEIL_EFORMAT,
					 "SPDM measurement block %zu: size %u exceeds remaining %zu", b,
					 msize, len - o);
		if (blk->spec != DMTF_SPEC)
			return veil_errf(VEIL_ENOTSUP,
					 "SPDM measurement block %zu: specification %#x is not DMTF", b,
					 blk->spec);
		if (msize < 3)
			return veil_errf(VEIL_EFORMAT,
					 "SPDM measurement block %zu: DMTF measurement of %u bytes", b,
					 msize);
		blk->value_type = r[o];
		vlen = le16(r + o + 1);
		if ((size_t)vlen + 3 != msize)
			return veil_errf(VEIL_EFORMAT,
					 "SPDM measurement block %zu: value size %u does not fill %u", b,
					 vlen, msize);
		if (vlen > VEIL_NVGPU_VALUE_MAX)
			return veil_errf(VEIL_ENOTSUP,
					 "SPDM measurement block %zu: value of %u bytes exceeds %d", b,
					 vlen, VEIL_NVGPU_VALUE_MAX);
		for (size_t k = 0; k < b; k++)
			if (ev->blocks[k].index == blk->index)
				return veil_errf(VEIL_EFORMAT,
						 "SPDM measurement block %zu: duplicate index %u", b,
						 blk->index);
		blk->value_len = vlen;
		memcpy(blk->value, r + o + 3, vlen);
		o += msize;
	}
	if (o != len)
		return veil_errf(VEIL_EFORMAT,
				 "SPDM measurement record: %zu bytes left after %zu blocks", len - o,
				 nblocks);
	ev->n_blocks = nblocks;
	return 0;
}

int veil_nvgpu_parse(const uint8_t *p, size_t n, struct veil_nvgpu_evidence *out)
{
	struct veil_nvgpu_evidence *ev;
	size_t o, rec_len, op_len, nblocks;
	int rc;

	if (!p || !out)
		return veil_errf(VEIL_EINVAL, "SPDM evidence: NULL argument");
	if (n > VEIL_NVGPU_MAX_EVIDENCE)
		return veil_errf(VEIL_ERANGE, "SPDM evidence: %zu bytes exceeds %u", n,
				 VEIL_NVGPU_MAX_EVIDENCE);
	if (n < VEIL_NVGPU_REQ_LEN + 8)
		return veil_errf(VEIL_EFORMAT, "SPDM evidence: %zu bytes is too short", n);
	if (p[0] != SPDM_V11 || p[1] != SPDM_GET_MEASUREMENTS)
		return veil_errf(VEIL_ENOTSUP,
				 "SPDM request: version %#x code %#x is not 1.1 GET_MEASUREMENTS",
				 p[0], p[1]);
	if (!(p[2] & 1))
		return veil_errf(VEIL_EFORMAT, "SPDM request: param1 %#x asks for no signature",
				 p[2]);
	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return VEIL_ENOMEM;
	ev->nvdec0_status = -1;
	ev->req_param1 = p[2];
	ev->req_param2 = p[3];
	memcpy(ev->nonce, p + 4, VEIL_NVGPU_NONCE_LEN);
	ev->slot = p[36];

	o = VEIL_NVGPU_REQ_LEN;
	ev->spdm_version = p[o];
	if (p[o] != SPDM_V11 || p[o + 1] != SPDM_MEASUREMENTS) {
		rc = veil_errf(VEIL_ENOTSUP,
			       "SPDM response: version %#x code %#x is not 1.1 MEASUREMENTS", p[o],
			       p[o + 1]);
		goto out;
	}
	ev->resp_param1 = p[o + 2];
	ev->resp_param2 = p[o + 3];
	nblocks = p[o + 4];
	rec_len = (size_t)p[o + 5] | ((size_t)p[o + 6] << 8) | ((size_t)p[o + 7] << 16);
	o += 8;
	if (rec_len > n - o) {
		rc = veil_errf(VEIL_EFORMAT,
			       "SPDM response: measurement record length %zu exceeds remaining %zu",
			       rec_len, n - o);
		goto out;
	}
	if ((rc = parse_record(ev, p + o, rec_len, nblocks)) < 0)
		goto out;
	o += rec_len;
	if (n - o < VEIL_NVGPU_NONCE_LEN + 2) {
		rc = veil_errf(VEIL_EFORMAT, "SPDM response: nonce and opaque length exceed "
			       "remaining %zu", n - o);
		goto out;
	}
	memcpy(ev->resp_nonce, p + o, VEIL_NVGPU_NONCE_LEN);
	o += VEIL_NVGPU_NONCE_LEN;
	op_len = le16(p + o);
	o += 2;
	if (op_len > n - o) {
		rc = veil_errf(VEIL_EFORMAT, "SPDM response: opaque length %zu exceeds remaining %zu",
			       op_len, n - o);
		goto out;
	}
	ev->opaque_off = o;
	ev->opaque_len = op_len;
	if ((rc = parse_opaque(ev, p, o, op_len)) < 0)
		goto out;
	o += op_len;
	if (n - o < VEIL_NVGPU_SIG_LEN) {
		rc = veil_errf(VEIL_EFORMAT, "SPDM response: signature of %d bytes exceeds "
			       "remaining %zu", VEIL_NVGPU_SIG_LEN, n - o);
		goto out;
	}
	ev->signed_len = o;
	memcpy(ev->sig, p + o, VEIL_NVGPU_SIG_LEN);
	o += VEIL_NVGPU_SIG_LEN;
	ev->trailing = n - o;
	if (ev->trailing > MAX_TRAILING) {
		rc = veil_errf(VEIL_EFORMAT, "SPDM evidence: %zu bytes after the signature",
			       ev->trailing);
		goto out;
	}
	for (; o < n; o++)
		if (p[o] != 0) {
			rc = veil_errf(VEIL_EFORMAT,
				       "SPDM evidence: non-zero byte after the signature at %zu", o);
			goto out;
		}
	memcpy(out, ev, sizeof(*ev));
	rc = 0;
out:
	free(ev);
	return rc;
}

const struct veil_nvgpu_tlv *veil_nvgpu_find_tlv(const struct veil_nvgpu_evidence *ev,
						 uint16_t type)
{
	for (size_t i = 0; i < ev->n_tlvs; i++)
		if (ev->tlvs[i].type == type)
			return &ev->tlvs[i];
	return NULL;
}

const uint8_t *veil_nvgpu_pinned_root(size_t *len)
{
	if (len)
		*len = nvgpu_device_root_der_len;
	return nvgpu_device_root_der;
}
