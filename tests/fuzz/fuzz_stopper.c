/* Fuzzes the stopper (veil_stopper_* in include/veil/sampler.h).
 *
 * Input: byte 0 = number of stop strings (mod 5), byte 1 = seed of the
 * piece lengths, then each stop string as a length byte (1 + b % 8) and its
 * bytes, then the generated text.  The text is fed in pieces of 0..9 bytes.
 * Invariants: what is emitted is always valid UTF-8 and a prefix of the
 * answer computed here independently on the whole text (cut before the
 * stop string that completes first, invalid bytes as U+FFFD); it never
 * contains a stop string (unless U+FFFD itself can form one); the stopper
 * reports a stop exactly when the answer has one. */
#include <stdlib.h>
#include <string.h>

#include "veil/sampler.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Code point at p[0..n) the slow way: returns the bytes of a valid sequence,
 * 0 for a valid prefix cut by n, -k for k bytes to replace. */
static int decode(const uint8_t *p, size_t n)
{
	static const struct { uint8_t lo, hi, len; uint32_t min, max; } lead[] = {
		{0x00, 0x7F, 1, 0, 0x7F},
		{0xC2, 0xDF, 2, 0x80, 0x7FF},
		{0xE0, 0xEF, 3, 0x800, 0xFFFF},
		{0xF0, 0xF4, 4, 0x10000, 0x10FFFF},
	};
	for (size_t k = 0; k < 4; k++) {
		uint32_t cp;
		size_t len = lead[k].len;

		if (p[0] < lead[k].lo || p[0] > lead[k].hi)
			continue;
		cp = p[0] & (0x7F >> (len == 1 ? 0 : len));
		for (size_t i = 1; i < len; i++) {
			uint32_t lo_cp, hi_cp;

			if (i >= n)
				return 0;
			if ((p[i] & 0xC0) != 0x80)
				return -(int)i;
			cp = cp << 6 | (p[i] & 0x3F);
			/* the prefix so far must still extend to a valid scalar */
			lo_cp = cp << (6 * (len - 1 - i));
			hi_cp = lo_cp | ((1u << (6 * (len - 1 - i))) - 1);
			if (hi_cp < lead[k].min || lo_cp > lead[k].max ||
			    (lo_cp >= 0xD800 && hi_cp <= 0xDFFF))
				return -(int)i;
		}
		return (int)len;
	}
	return -1;
}

static size_t sanitize(const uint8_t *p, size_t n, uint8_t *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		int r = decode(p + i, n - i);

		if (r > 0) {
			memcpy(out + o, p + i, (size_t)r);
			o += (size_t)r;
			i += (size_t)r;
		} else {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i = r == 0 ? n : i + (size_t)-r;
		}
	}
	return o;
}

static bool valid(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		int r = decode(p + i, n - i);

		if (r <= 0)
			return false;
		i += (size_t)r;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char stops[VEIL_STOP_MAX][9];
	const char *sp[VEIL_STOP_MAX];
	size_t nstop, pos = 2, tlen, cut = SIZE_MAX, ans_len;
	const uint8_t *text;
	uint8_t *answer;
	uint32_t rng;
	struct veil_stopper *st = NULL;
	struct veil_buf e = VEIL_BUF_INIT(1 << 16);
	bool stopped = false;

	if (size < 2 || size > 4096)
		return 0;
	nstop = data[0] % (VEIL_STOP_MAX + 1);
	rng = data[1] | 0x100u;
	for (size_t k = 0; k < nstop; k++) {
		size_t l;

		if (pos >= size)
			return 0;
		l = 1 + data[pos++] % 8;
		if (pos + l > size)
			return 0;
		memcpy(stops[k], data + pos, l);
		stops[k][l] = 0;
		if (strlen(stops[k]) != l)
			return 0;   /* a NUL inside: not a C string */
		sp[k] = stops[k];
		pos += l;
	}
	text = data + pos;
	tlen = size - pos;

	/* the answer: cut before the stop that completes first (the longer
	 * one on a tie) */
	for (size_t end = 1; end <= tlen && cut == SIZE_MAX; end++)
		for (size_t k = 0; k < nstop; k++) {
			size_t l = strlen(stops[k]);

			if (l <= end && memcmp(text + end - l, stops[k], l) == 0 &&
			    end - l < cut)
				cut = end - l;
		}
	answer = malloc(3 * tlen + 1);
	if (!answer)
		abort();
	ans_len = sanitize(text, cut == SIZE_MAX ? tlen : cut, answer);

	if (veil_stopper_new(sp, nstop, &st) != 0)
		abort();
	for (size_t off = 0; off < tlen && !stopped;) {
		size_t n;

		rng = rng * 1103515245u + 12345u;
		n = VEIL_MIN((size_t)(rng >> 16) % 10, tlen - off);
		if (veil_stopper_feed(st, (const char *)text + off, n, &e, &stopped))
			abort();
		off += n;
		if (e.len > ans_len || (e.len && memcmp(e.data, answer, e.len)) ||
		    (e.len && !valid(e.data, e.len)))
			abort();
	}
	if (veil_stopper_flush(st, &e))
		abort();
	if (stopped != (cut != SIZE_MAX) || veil_stopper_stopped(st) != stopped)
		abort();
	if (e.len != ans_len || (e.len && memcmp(e.data, answer, e.len)))
		abort();
	for (size_t k = 0; k < nstop && e.len; k++)
		if (!strpbrk(stops[k], "\xEF\xBF\xBD") &&
		    memmem(e.data, e.len, stops[k], strlen(stops[k])))
			abort();
	veil_stopper_free(st);
	veil_buf_free(&e);
	free(answer);
	return 0;
}
