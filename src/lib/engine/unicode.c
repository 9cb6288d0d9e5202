/* UTF-8 and Unicode properties for the tokenizer, with llama.cpp's
 * semantics (src/unicode.cpp at c392e509); see unicode.h. */
#include "unicode.h"

size_t veil_uni_len_utf8(uint8_t lead)
{
	static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1,
					   1, 1, 1, 1, 2, 2, 3, 4};
	return lookup[lead >> 4];
}

static int is_cont(uint8_t b)
{
	return (b & 0xc0) == 0x80;
}

uint32_t veil_uni_decode(const uint8_t *p, size_t n, size_t *adv)
{
	uint8_t b0 = p[0];
	uint32_t cpt;

	/* Same acceptance as unicode_cpt_from_utf8: no overlong or surrogate
	 * checks, only lead bits and continuation bytes. */
	if (!(b0 & 0x80)) {
		*adv = 1;
		return b0;
	}
	if (!(b0 & 0x40))
		goto invalid;
	if (!(b0 & 0x20)) {
		if (n < 2 || !is_cont(p[1]))
			goto invalid;
		*adv = 2;
		return ((uint32_t)(b0 & 0x1f) << 6) | (p[1] & 0x3f);
	}
	if (!(b0 & 0x10)) {
		if (n < 3 || !is_cont(p[1]) || !is_cont(p[2]))
			goto invalid;
		*adv = 3;
		return ((uint32_t)(b0 & 0x0f) << 12) |
		       ((uint32_t)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
	}
	if (!(b0 & 0x08)) {
		if (n < 4 || !is_cont(p[1]) || !is_cont(p[2]) || !is_cont(p[3]))
			goto invalid;
		cpt = ((uint32_t)(b0 & 0x07) << 18) |
		      ((uint32_t)(p[1] & 0x3f) << 12) |
		      ((uint32_t)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
		/* llama.cpp decodes this but throws when re-encoding it;
		 * treating it as invalid keeps the tokenizer total. */
		if (cpt >= VEIL_UNI_MAX_CPT)
			goto invalid;
		*adv = 4;
		return cpt;
	}
invalid:
	*adv = 1;
	return VEIL_UNI_REPLACEMENT;
}

size_t veil_uni_encode(uint32_t cpt, uint8_t out[4])
{
	if (cpt <= 0x7f) {
		out[0] = (uint8_t)cpt;
		return 1;
	}
	if (cpt <= 0x7ff) {
		out[0] = (uint8_t)(0xc0 | ((cpt >> 6) & 0x1f));
		out[1] = (uint8_t)(0x80 | (cpt & 0x3f));
		return 2;
	}
	if (cpt <= 0xffff) {
		out[0] = (uint8_t)(0xe0 | ((cpt >> 12) & 0x0f));
		out[1] = (uint8_t)(0x80 | ((cpt >> 6) & 0x3f));
		out[2] = (uint8_t)(0x80 | (cpt & 0x3f));
		return 3;
	}
	if (cpt <= 0x10ffff) {
		out[0] = (uint8_t)(0xf0 | ((cpt >> 18) & 0x07));
		out[1] = (uint8_t)(0x80 | ((cpt >> 12) & 0x3f));
		out[2] = (uint8_t)(0x80 | ((cpt >> 6) & 0x3f));
		out[3] = (uint8_t)(0x80 | (cpt & 0x3f));
		return 4;
	}
	return 0;
}

/* llama.cpp's unicode_set_whitespace (PropList.txt White_Space). */
static int is_whitespace(uint32_t cpt)
{
	if (cpt >= 0x09 && cpt <= 0x0d)
		return 1;
	if (cpt >= 0x2000 && cpt <= 0x200a)
		return 1;
	switch (cpt) {
	case 0x20: case 0x85: case 0xa0: case 0x1680: case 0x2028:
	case 0x2029: case 0x202f: case 0x205f: case 0x3000:
		return 1;
	default:
		return 0;
	}
}

static unsigned class_flag(uint32_t cpt)
{
	size_t lo = 0, hi = veil_uni_class_ranges_n;

	if (cpt >= VEIL_UNI_MAX_CPT)
		return VEIL_UNI_UNDEFINED;
	/* Last entry whose first code point is <= cpt (entry 0 starts at 0). */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if ((veil_uni_class_ranges[mid] >> 3) <= cpt)
			lo = mid;
		else
			hi = mid;
	}
	return 1u << (veil_uni_class_ranges[lo] & 7u);
}

unsigned veil_uni_flags(uint32_t cpt)
{
	unsigned f = class_flag(cpt);

	if (is_whitespace(cpt))
		f |= VEIL_UNI_WHITESPACE;
	return f;
}

uint32_t veil_uni_tolower(uint32_t cpt)
{
	size_t lo = 0, hi = veil_uni_lower_runs_n;

	if (cpt < 0x80)
		return (cpt >= 'A' && cpt <= 'Z') ? cpt + 32 : cpt;
	/* Runs are sorted and disjoint by first code point. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct veil_uni_lower_run *r = &veil_uni_lower_runs[mid];
		uint32_t last = r->first + (uint32_t)(r->count - 1) * r->stride;

		if (cpt < r->first) {
			hi = mid;
		} else if (cpt > last) {
			lo = mid + 1;
		} else {
			if ((cpt - r->first) % r->stride == 0)
				return (uint32_t)((int64_t)cpt + r->delta);
			return cpt;
		}
	}
	return cpt;
}

static int byte_is_printable(unsigned b)
{
	return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
	       (b >= 0xae && b <= 0xff);
}

uint32_t veil_uni_byte_to_cpt(uint8_t b)
{
	unsigned n = 0;

	if (byte_is_printable(b))
		return b;
	/* The non-printable bytes take U+0100.. in byte order. */
	for (unsigned c = 0; c < b; c++)
		if (!byte_is_printable(c))
			n++;
	return 256 + n;
}

int veil_uni_cpt_to_byte(uint32_t cpt)
{
	unsigned n = 0;

	if (cpt < 256)
		return byte_is_printable(cpt) ? (int)cpt : -1;
	if (cpt >= 256 + 68)
		return -1;
	for (unsigned c = 0; c < 256; c++) {
		if (byte_is_printable(c))
			continue;
		if (256 + n == cpt)
			return (int)c;
		n++;
	}
	return -1;
}
