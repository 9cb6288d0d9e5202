/* Hex and base64 (RFC 4648), standard and URL-safe alphabets. */
#include "veil/base.h"

#include <string.h>

static const char hexdig[] = "0123456789abcdef";

int veil_hex_encode(const uint8_t *p, size_t n, char *out, size_t outcap)
{
	size_t need;

	if (veil_mul_ovf(n, 2, &need) || veil_add_ovf(need, 1, &need))
		return VEIL_EOVERFLOW;
	if (outcap < need)
		return veil_errf(VEIL_ERANGE, "hex: output needs %zu bytes", need);
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdig[p[i] >> 4];
		out[2 * i + 1] = hexdig[p[i] & 15];
	}
	out[2 * n] = '\0';
	return 0;
}

/* Hex digit values plus one, 0 for anything else.  A table, not
 * comparisons: on the hex of random bytes (hashes, signatures, keys: most
 * of what is decoded) a digit-or-letter branch mispredicts about once a
 * byte, which made hex the largest cost of reading a receipt after its
 * signature. */
static const uint8_t hexv1[256] = {
	['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5,
	['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
	['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
	['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

static int hexval(char c)
{
	return (int)hexv1[(unsigned char)c] - 1;
}

int veil_hex_decode(const char *s, size_t len, uint8_t *out, size_t outcap,
		    size_t *outlen)
{
	const unsigned char *h = (const unsigned char *)s;
	unsigned ok = 1;

	if (len % 2)
		return veil_errf(VEIL_EFORMAT, "hex: odd length %zu", len);
	if (outcap < len / 2)
		return veil_errf(VEIL_ERANGE, "hex: %zu bytes exceed %zu", len / 2, outcap);
	/* no branch per digit; the first bad one is looked for only after */
	for (size_t i = 0; i < len; i += 2) {
		unsigned hi = hexv1[h[i]], lo = hexv1[h[i + 1]];

		ok &= (hi != 0) & (lo != 0);
		out[i / 2] = (uint8_t)((hi - 1) << 4 | (lo - 1));
	}
	if (!ok) {
		size_t i = 0;

		while (hexv1[h[i]])
			i++;
		return veil_errf(VEIL_EFORMAT, "hex: bad character at %zu", i);
	}
	*outlen = len / 2;
	return 0;
}

int veil_hex_text_decode(const char *s, size_t n, struct veil_buf *out)
{
	size_t i = 0, start = out->len;
	int hi = -1, rc;

	while (i < n && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')))
		i++;
	if (n - i >= 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X'))
		i += 2;
	if ((rc = veil_buf_reserve(out, (n - i) / 2)) < 0)
		return rc;
	for (; i < n; i++) {
		int v;

		if (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r'))
			continue;
		if ((v = hexval(s[i])) < 0) {
			rc = veil_errf(VEIL_EFORMAT, "hex text: bad character at %zu", i);
			goto fail;
		}
		if (hi < 0) {
			hi = v;
		} else {
			uint8_t b = (uint8_t)(hi << 4 | v);

			if ((rc = veil_buf_append(out, &b, 1)) < 0)
				goto fail;
			hi = -1;
		}
	}
	if (hi >= 0) {
		rc = veil_errf(VEIL_EFORMAT, "hex text: odd number of digits");
		goto fail;
	}
	return 0;
fail:
	out->len = start;
	if (out->data)
		out->data[start] = '\0';
	return rc;
}

static const char b64std[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t veil_b64_encoded_len(size_t n, unsigned flags)
{
	if (flags & VEIL_B64_NOPAD)
		return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
	return (n + 2) / 3 * 4;
}

int veil_b64_encode(const uint8_t *p, size_t n, unsigned flags, char *out,
		    size_t outcap)
{
	const char *abc = (flags & VEIL_B64_URL) ? b64url : b64std;
	size_t need, o = 0, i = 0;

	if (n > (SIZE_MAX - 8) / 4 * 3)
		return VEIL_EOVERFLOW;
	need = veil_b64_encoded_len(n, flags) + 1;
	if (outcap < need)
		return veil_errf(VEIL_ERANGE, "base64: output needs %zu bytes", need);
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = abc[v >> 6 & 63];
		out[o++] = abc[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;

		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		if (!(flags & VEIL_B64_NOPAD)) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;

		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = abc[v >> 6 & 63];
		if (!(flags & VEIL_B64_NOPAD))
			out[o++] = '=';
	}
	out[o] = '\0';
	return 0;
}

/* Digit values, 0xff for every other byte ('=' too: padding is handled
 * apart).  A table and four digits a step: the decoder runs on every
 * sealed event the proxy opens and every receipt header the gateway reads. */
#define B64_ROW(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
#define B64_LETTERS_AND_DIGITS(c62, c63, u62, u63)                                         \
	B64_ROW(0xff), B64_ROW(0xff),                                                      \
	/* ' ' .. '/' */                                                                   \
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, c62, 0xff, u62,  \
	0xff, c63,                                                                         \
	/* '0' .. '?' */                                                                   \
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,        \
	/* '@' .. 'O' */                                                                   \
	0xff, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,                            \
	/* 'P' .. '_' */                                                                   \
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 0xff, 0xff, 0xff, 0xff, u63,           \
	/* '`' .. 'o' */                                                                   \
	0xff, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,                  \
	/* 'p' .. DEL */                                                                   \
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 0xff, 0xff, 0xff, 0xff, 0xff,          \
	B64_ROW(0xff), B64_ROW(0xff), B64_ROW(0xff), B64_ROW(0xff),                        \
	B64_ROW(0xff), B64_ROW(0xff), B64_ROW(0xff), B64_ROW(0xff)
/* standard: '+' 62, '/' 63; URL-safe: '-' 62, '_' 63 */
static const uint8_t b64std_val[256] = {B64_LETTERS_AND_DIGITS(62, 63, 0xff, 0xff)};
static const uint8_t b64url_val[256] = {B64_LETTERS_AND_DIGITS(0xff, 0xff, 62, 63)};
#undef B64_LETTERS_AND_DIGITS
#undef B64_ROW

int veil_b64_decode(const char *s, size_t len, unsigned flags, uint8_t *out,
		    size_t outcap, size_t *outlen)
{
	const uint8_t *t = (flags & VEIL_B64_URL) ? b64url_val : b64std_val;
	const uint8_t *u = (const uint8_t *)s;
	size_t pad = 0, o = 0, ndata, full, i;
	unsigned a, b, c, d;

	while (pad < 2 && len > pad && s[len - 1 - pad] == '=')
		pad++;
	if (pad && len % 4)
		return veil_errf(VEIL_EFORMAT, "base64: bad padding");
	if (!pad && !(flags & VEIL_B64_NOPAD) && len % 4)
		return veil_errf(VEIL_EFORMAT, "base64: length %zu not a multiple of 4", len);
	ndata = len - pad;
	if (ndata % 4 == 1)
		return veil_errf(VEIL_EFORMAT, "base64: truncated");
	if (outcap < ndata / 4 * 3 + (ndata % 4 ? ndata % 4 - 1 : 0))
		return veil_errf(VEIL_ERANGE, "base64: output too small");
	full = ndata / 4 * 4;
	for (i = 0; i < full; i += 4) {
		a = t[u[i]];
		b = t[u[i + 1]];
		c = t[u[i + 2]];
		d = t[u[i + 3]];
		if ((a | b | c | d) & 0x80)
			goto bad;
		out[o++] = (uint8_t)(a << 2 | b >> 4);
		out[o++] = (uint8_t)(b << 4 | c >> 2);
		out[o++] = (uint8_t)(c << 6 | d);
	}
	if (ndata > full) {
		/* 2 or 3 digits: 1 or 2 bytes */
		a = t[u[i]];
		b = t[u[i + 1]];
		c = ndata - full == 3 ? t[u[i + 2]] : 0;
		if ((a | b | c) & 0x80)
			goto bad;
		/* the bits past the data must be zero, so each input has one
		 * encoding */
		if (ndata - full == 2 ? (b & 0x0f) : (c & 0x03))
			return veil_errf(VEIL_EFORMAT, "base64: non-canonical trailing bits");
		out[o++] = (uint8_t)(a << 2 | b >> 4);
		if (ndata - full == 3)
			out[o++] = (uint8_t)(b << 4 | c >> 2);
	}
	*outlen = o;
	return 0;
bad:
	while (i < ndata && !(t[u[i]] & 0x80))
		i++;
	return veil_errf(VEIL_EFORMAT, "base64: bad character at %zu", i);
}

bool veil_model_name_ok(const char *m, size_t len, size_t max)
{
	if (!m || len < 1 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)m[i];

		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
			return false;
	}
	return true;
}
