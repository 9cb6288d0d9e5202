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

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int veil_hex_decode(const char *s, size_t len, uint8_t *out, size_t outcap,
		    size_t *outlen)
{
	if (len % 2)
		return veil_errf(VEIL_EFORMAT, "hex: odd length %zu", len);
	if (outcap < len / 2)
		return veil_errf(VEIL_ERANGE, "hex: %zu bytes exceed %zu", len / 2, outcap);
	for (size_t i = 0; i < len; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);

		if (hi < 0 || lo < 0)
			return veil_errf(VEIL_EFORMAT, "hex: bad character at %zu",
					 hi < 0 ? i : i + 1);
		out[i / 2] = (uint8_t)(hi << 4 | lo);
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

static int b64val(char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

int veil_b64_decode(const char *s, size_t len, unsigned flags, uint8_t *out,
		    size_t outcap, size_t *outlen)
{
	bool url = flags & VEIL_B64_URL;
	size_t pad = 0, o = 0, ndata;
	uint32_t acc = 0;
	int bits = 0;

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
	for (size_t i = 0; i < ndata; i++) {
		int v = b64val(s[i], url);

		if (v < 0)
			return veil_errf(VEIL_EFORMAT, "base64: bad character at %zu", i);
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* Leftover bits must be zero, so each input has one encoding. */
	if (bits && (acc & ((1u << bits) - 1)))
		return veil_errf(VEIL_EFORMAT, "base64: non-canonical trailing bits");
	*outlen = o;
	return 0;
}
