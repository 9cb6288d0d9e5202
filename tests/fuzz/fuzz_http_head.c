/* libFuzzer harness for the HTTP/1.1 request parsers of src/lib/http/server.c,
 * through the functions the server itself calls (src/lib/http/parse.h):
 *
 *   veil_http_head_end()     the end of the request head, also found when the
 *                            input arrives in pieces (the server's restart);
 *   veil_http_head_parse()   request line, header fields, query, limits;
 *   veil_http_chunked_*()    the chunked body after a head that asks for it,
 *                            decoded once with all input at hand and once fed
 *                            in pieces: both must agree byte for byte.
 *
 * Input: byte 0 picks the caps (header fields, query parameters, head bytes),
 * byte 1 the piece size and the body cap; the rest is what a client sends.
 * Each step of the decoder gets exactly the bytes veil_http_chunked_view()
 * names, in a buffer of that size, so ASan sees any read past them. */
#include <stdlib.h>
#include <string.h>

#include "veil/base.h"

#include "../../src/lib/http/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

static bool tchar(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= 'A' && ch <= 'Z') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* s is a NUL-terminated string lying inside h->buf. */
static void in_buf(const struct veil_http_head *h, const char *s)
{
	CHECK(s >= h->buf && s <= h->buf + h->len);
	CHECK(strlen(s) <= (size_t)(h->buf + h->len - s));
}

static void check_head(const struct veil_http_head *h, size_t n,
		       size_t max_headers, size_t max_qps)
{
	size_t i;
	const char *q;

	CHECK(h->len == n);
	CHECK(h->nhdrs <= max_headers && h->nqps <= max_qps);
	CHECK(h->minor == 0 || h->minor == 1);
	in_buf(h, h->method);
	CHECK(*h->method && strlen(h->method) <= VEIL_HTTP_METHOD_MAX);
	for (q = h->method; *q; q++)
		CHECK(tchar((unsigned char)*q));
	CHECK(h->path && h->path[0] == '/' && strlen(h->path) < n);
	for (q = h->path; *q; q++)
		CHECK((unsigned char)*q > 0x20 && (unsigned char)*q < 0x7f &&
		      *q != '?');
	for (i = 0; i < h->nhdrs; i++) {
		const char *nm = h->hdrs[i].name, *v = h->hdrs[i].value;
		size_t vl;

		in_buf(h, nm);
		in_buf(h, v);
		CHECK(*nm);
		for (q = nm; *q; q++)
			CHECK(tchar((unsigned char)*q));
		vl = strlen(v);
		CHECK(!vl || (v[0] != ' ' && v[0] != '\t' && v[vl - 1] != ' ' &&
			      v[vl - 1] != '\t'));
		for (q = v; *q; q++)
			CHECK(*q == '\t' || ((unsigned char)*q >= 0x20 &&
					     (unsigned char)*q != 0x7f));
	}
	for (i = 0; i < h->nqps; i++) {
		CHECK(h->qps[i].name && h->qps[i].value);
		CHECK(strlen(h->qps[i].name) < n && strlen(h->qps[i].value) < n);
	}
	CHECK(!(h->has_cl && h->chunked_in));
	CHECK(!h->chunked_in || h->minor == 1);
	CHECK(!h->expect_continue || h->minor == 1);
	CHECK(h->content_length < 1000000000000000000ull);
}

struct ck_result {
	int st;          /* 0 or the HTTP status */
	bool done;
	size_t consumed; /* input bytes taken by the decoder */
	uint8_t *body;
	size_t body_len;
};

/* Decodes p[0..n), making `piece` more bytes available each round (0: all at
 * once), the way the server sees its input buffer grow. */
static void decode(const uint8_t *p, size_t n, size_t piece, uint64_t max_body,
		   size_t max_trailer, struct ck_result *res)
{
	struct veil_http_chunked d;
	size_t avail = piece ? VEIL_MIN(piece, n) : n, off = 0;

	memset(res, 0, sizeof(*res));
	res->body = malloc(n + 1);
	CHECK(res->body);
	veil_http_chunked_init(&d, max_body, max_trailer);
	for (;;) {
		size_t view = veil_http_chunked_view(&d, avail - off);
		size_t used = 99, dlen = 99;
		const char *why = NULL;
		uint8_t *copy = NULL;
		int st;

		CHECK(view <= avail - off);
		if (view) {
			copy = malloc(view);
			CHECK(copy);
			memcpy(copy, p + off, view);
		}
		st = veil_http_chunked_step(&d, copy, view, &used, &dlen, &why);
		if (st) {
			CHECK(why && (st == 400 || st == 413 || st == 431));
			res->st = st;
			free(copy);
			break;
		}
		CHECK(used <= view && (dlen == 0 || dlen == used));
		if (dlen) {
			memcpy(res->body + res->body_len, copy, dlen);
			res->body_len += dlen;
		}
		free(copy);
		off += used;
		CHECK(d.total <= max_body && res->body_len <= d.total);
		if (d.st == VEIL_HTTP_CK_DONE) {
			CHECK(res->body_len == d.total && d.left == 0);
			CHECK(d.trailer_bytes <= max_trailer);
			res->done = true;
			break;
		}
		if (used)
			continue;
		if (avail == n)
			break;
		avail = VEIL_MIN(n, avail + piece);
	}
	res->consumed = off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct veil_http_head h;
	size_t max_headers, max_qps, max_head, piece, lim, hl, scanned, avail;
	uint64_t max_body;
	const char *why = NULL;
	const uint8_t *p;
	size_t n;
	int st;

	if (size < 2)
		return 0;
	max_headers = (size_t)(data[0] & 7) + 1;
	max_qps = (size_t)((data[0] >> 3) & 3);
	max_head = (size_t)64 << (data[0] >> 5);
	piece = (size_t)(data[1] & 15) + 1;
	max_body = (uint64_t)16 << (data[1] >> 4);
	p = data + 2;
	n = size - 2;
	/* RFC 9112 §2.2: the server skips empty lines before a request */
	while (n && (*p == '\r' || *p == '\n')) {
		p++;
		n--;
	}

	lim = VEIL_MIN(n, max_head + 4);
	hl = veil_http_head_end(p, lim, 0);
	CHECK(hl <= lim);
	if (hl) {
		CHECK(hl >= 2 && p[hl - 1] == '\n' &&
		      (p[hl - 2] == '\n' || (hl >= 3 && p[hl - 2] == '\r' &&
					     p[hl - 3] == '\n')));
	}
	/* the same end when the bytes arrive in pieces */
	for (scanned = 0, avail = VEIL_MIN(piece, lim);;) {
		size_t e = veil_http_head_end(p, avail, scanned);

		if (e) {
			CHECK(e == hl);
			break;
		}
		CHECK(avail < lim || hl == 0);
		if (avail == lim)
			break;
		scanned = avail;
		avail = VEIL_MIN(lim, avail + piece);
	}
	if (!hl)
		return 0; /* more input needed, or 431 once past max_head + 4 */

	st = veil_http_head_parse(p, hl, max_headers, max_qps, &h, &why);
	if (st) {
		CHECK(why && *why);
		CHECK(st == 400 || st == 417 || st == 431 || st == 500 ||
		      st == 501 || st == 505);
	} else {
		check_head(&h, hl, max_headers, max_qps);
	}
	if (st == 0 && h.chunked_in) {
		struct ck_result whole, pieces;

		decode(p + hl, n - hl, 0, max_body, max_head, &whole);
		decode(p + hl, n - hl, piece, max_body, max_head, &pieces);
		CHECK(whole.st == pieces.st && whole.done == pieces.done);
		CHECK(whole.consumed == pieces.consumed);
		CHECK(whole.body_len == pieces.body_len &&
		      memcmp(whole.body, pieces.body, whole.body_len) == 0);
		CHECK(whole.consumed <= n - hl && whole.body_len <= whole.consumed);
		free(whole.body);
		free(pieces.body);
	}
	veil_http_head_free(&h);
	return 0;
}
