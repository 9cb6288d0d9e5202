/* The incremental HTTP/1.1 response parser of the hconn client
 * (include/veil/hconn.h): pure functions over (pointer, length), fuzzed by
 * tests/fuzz/fuzz_hconn_resp.c, unit-tested in tests/unit/test_hconn.c. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "veil/hconn.h"


void veil_hconn_resp_init(struct veil_hconn_resp *r, uint64_t max_body)
{
	memset(r, 0, sizeof(*r));
	r->st = VEIL_HCONN_RESP_HEAD;
	r->head = (struct veil_buf)VEIL_BUF_INIT(VEIL_HCONN_HEAD_MAX);
	r->max_body = max_body;
}

void veil_hconn_resp_free(struct veil_hconn_resp *r)
{
	veil_buf_free(&r->head);
}

static bool resp_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A field value byte: VCHAR, SP, HTAB or obs-text (RFC 9110 5.5). */
static bool resp_vchar(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int resp_bad(struct veil_hconn_resp *r, const char *why)
{
	r->st = VEIL_HCONN_RESP_DONE;
	r->head_done = false;
	r->keep_alive = false;
	return veil_errf(VEIL_EFORMAT, "HTTP answer: %s", why);
}

/* Cuts the next line (LF, or CR LF) out of head text s[*pos..len), NUL
 * terminated in place; NULL at the end.  A bare CR inside a line is
 * refused by the callers' byte checks. */
static char *resp_line(char *s, size_t len, size_t *pos)
{
	char *l = s + *pos, *nl;

	if (*pos >= len)
		return NULL;
	nl = memchr(l, '\n', len - *pos);
	if (!nl)
		nl = s + len;
	*pos = (size_t)(nl - s) + 1;
	if (nl > l && nl[-1] == '\r')
		nl--;
	*nl = '\0';
	return l;
}

/* Parses the complete head in r->head; sets the framing. */
static int resp_head_parse(struct veil_hconn_resp *r)
{
	char *s = (char *)r->head.data, *l, *v, *e;
	size_t pos = 0, len = r->head.len, i;
	bool http10, has_cl = false, chunked = false, close = false, ka = false;
	uint64_t cl = 0;
	int status;

	r->nhdr = 0;
	/* the checks below stop at a NUL: one inside the head would hide what
	 * follows it in its line ("Content-Length: 5\0junk") */
	if (memchr(s, '\0', len))
		return resp_bad(r, "NUL byte in the response head");
	l = resp_line(s, len, &pos);
	/* HTTP/1.x SP 3DIGIT [SP reason] */
	if (!l || strncmp(l, "HTTP/1.", 7) || (l[7] != '0' && l[7] != '1') || l[8] != ' ' ||
	    !isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
	    !isdigit((unsigned char)l[11]) || (l[12] && l[12] != ' '))
		return resp_bad(r, "malformed status line");
	for (e = l + 12; *e; e++)
		if (!resp_vchar((unsigned char)*e))
			return resp_bad(r, "control character in the status line");
	http10 = l[7] == '0';
	status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	if (status < 100)
		return resp_bad(r, "malformed status code");
	while ((l = resp_line(s, len, &pos)) && *l) {
		char *colon = strchr(l, ':');

		if (*l == ' ' || *l == '\t')
			return resp_bad(r, "obsolete line folding");
		if (!colon || colon == l)
			return resp_bad(r, "malformed header field");
		for (e = l; e < colon; e++)
			if (!resp_tchar((unsigned char)*e))
				return resp_bad(r, "malformed header field name");
		*colon = '\0';
		for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
			;
		e = v + strlen(v);
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		for (char *q = v; q < e; q++)
			if (!resp_vchar((unsigned char)*q))
				return resp_bad(r, "control character in a header field");
		if (r->nhdr == VEIL_HCONN_HEADERS_MAX)
			return resp_bad(r, "too many header fields");
		r->hdr[r->nhdr][0] = (uint32_t)(l - s);
		r->hdr[r->nhdr][1] = (uint32_t)(v - s);
		r->nhdr++;
		if (!strcasecmp(l, "Content-Length")) {
			size_t d = strlen(v);

			if (has_cl || d == 0 || d > 18)
				return resp_bad(r, "bad or repeated Content-Length");
			cl = 0;
			for (i = 0; i < d; i++) {
				if (!isdigit((unsigned char)v[i]))
					return resp_bad(r, "bad Content-Length");
				cl = cl * 10 + (uint64_t)(v[i] - '0');
			}
			has_cl = true;
		} else if (!strcasecmp(l, "Transfer-Encoding")) {
			if (chunked || http10 || strcasecmp(v, "chunked"))
				return resp_bad(r, "Transfer-Encoding other than one \"chunked\"");
			chunked = true;
		} else if (!strcasecmp(l, "Connection")) {
			for (const char *t = v; *t;) {
				size_t tl;

				while (*t == ' ' || *t == '\t' || *t == ',')
					t++;
				tl = strcspn(t, " \t,");
				if (tl == 5 && !strncasecmp(t, "close", 5))
					close = true;
				else if (tl == 10 && !strncasecmp(t, "keep-alive", 10))
					ka = true;
				t += tl;
			}
		}
	}
	if (has_cl && chunked)
		return resp_bad(r, "both Content-Length and Transfer-Encoding");
	r->status = status;
	if (status == 101)
		return resp_bad(r, "unexpected protocol switch");
	if (status < 200) {
		/* an interim answer (100 Continue, 103): the final one follows */
		veil_buf_reset(&r->head);
		r->nhdr = 0;
		return 0;
	}
	r->head_done = true;
	r->keep_alive = !close && (!http10 || ka);
	if (status == 204 || status == 304) {
		r->st = VEIL_HCONN_RESP_DONE;
	} else if (chunked) {
		r->st = VEIL_HCONN_RESP_CHUNK_SIZE;
	} else if (has_cl) {
		if (cl > r->max_body) {
			r->st = VEIL_HCONN_RESP_DONE;
			r->keep_alive = false;
			return veil_errf(VEIL_ERANGE, "HTTP answer: body over %llu bytes",
					 (unsigned long long)r->max_body);
		}
		r->left = cl;
		r->st = cl ? VEIL_HCONN_RESP_BODY_CL : VEIL_HCONN_RESP_DONE;
	} else {
		r->st = VEIL_HCONN_RESP_BODY_EOF;
		r->keep_alive = false;
	}
	return 0;
}

/* Body bytes so far + n within the cap. */
static int resp_count(struct veil_hconn_resp *r, uint64_t n)
{
	if (n > r->max_body - r->body) {
		r->st = VEIL_HCONN_RESP_DONE;
		r->keep_alive = false;
		return veil_errf(VEIL_ERANGE, "HTTP answer: body over %llu bytes",
				 (unsigned long long)r->max_body);
	}
	r->body += n;
	return 0;
}

/* One line of the chunked framing, complete in r->line. */
static int resp_chunk_line(struct veil_hconn_resp *r)
{
	const char *l = r->line;
	size_t n = r->line_len, i;
	uint64_t v = 0;

	if (n && l[n - 1] == '\r')
		n--;
	for (i = 0; i < n; i++)
		if (l[i] == '\r' || l[i] == '\0')
			return resp_bad(r, "control character in the chunked framing");
	switch (r->st) {
	case VEIL_HCONN_RESP_CHUNK_SIZE:
		for (i = 0; i < n && isxdigit((unsigned char)l[i]); i++) {
			if (v >> 60)
				return resp_bad(r, "chunk size too large");
			v = v * 16 + (uint64_t)(isdigit((unsigned char)l[i])
							? l[i] - '0'
							: (tolower((unsigned char)l[i]) - 'a' + 10));
		}
		/* only extensions (";...") or whitespace may follow */
		if (i == 0 || (i < n && l[i] != ';' && l[i] != ' ' && l[i] != '\t'))
			return resp_bad(r, "malformed chunk size");
		if (v && resp_count(r, v) < 0)
			return VEIL_ERANGE;
		r->left = v;
		r->st = v ? VEIL_HCONN_RESP_CHUNK_DATA : VEIL_HCONN_RESP_TRAILER;
		break;
	case VEIL_HCONN_RESP_CHUNK_END:
		if (n)
			return resp_bad(r, "chunk data longer than its size");
		r->st = VEIL_HCONN_RESP_CHUNK_SIZE;
		break;
	default: /* VEIL_HCONN_RESP_TRAILER: fields skipped */
		r->trailer += n + 2;
		if (r->trailer > VEIL_HCONN_HEAD_MAX)
			return resp_bad(r, "trailer fields too large");
		if (!n)
			r->st = VEIL_HCONN_RESP_DONE;
		break;
	}
	return 0;
}

int veil_hconn_resp_step(struct veil_hconn_resp *r, const uint8_t *p, size_t n, size_t *used,
		 size_t *data)
{
	const uint8_t *nl;
	size_t k;
	int rc;

	*used = *data = 0;
	if (n == 0)
		return 0;
	switch (r->st) {
	case VEIL_HCONN_RESP_HEAD: {
		size_t hl = r->head.len, end = 0, j;
		int b1, b2;

		/* the blank line that ends the head: an LF after LF or after
		 * LF CR, looking back into the bytes already kept when the
		 * end is split across pieces */
		for (nl = p; (nl = memchr(nl, '\n', n - (size_t)(nl - p))) != NULL; nl++) {
			j = (size_t)(nl - p);
			b1 = j >= 1 ? p[j - 1] : hl >= 1 ? r->head.data[hl - 1] : -1;
			b2 = j >= 2 ? p[j - 2] : hl + j >= 2 ? r->head.data[hl + j - 2] : -1;
			if (b1 == '\n' || (b1 == '\r' && b2 == '\n')) {
				end = j + 1;
				break;
			}
		}
		k = end ? end : n;
		if (k > VEIL_HCONN_HEAD_MAX - hl) {
			r->st = VEIL_HCONN_RESP_DONE;
			return veil_errf(VEIL_ERANGE, "HTTP answer: head over %u bytes",
					 VEIL_HCONN_HEAD_MAX);
		}
		if ((rc = veil_buf_append(&r->head, p, k)) < 0) {
			r->st = VEIL_HCONN_RESP_DONE;
			return rc;
		}
		*used = k;
		return end ? resp_head_parse(r) : 0;
	}
	case VEIL_HCONN_RESP_BODY_CL:
	case VEIL_HCONN_RESP_CHUNK_DATA:
		k = (size_t)VEIL_MIN((uint64_t)n, r->left);
		if (r->st == VEIL_HCONN_RESP_BODY_CL && (rc = resp_count(r, k)) < 0)
			return rc;
		r->left -= k;
		if (!r->left)
			r->st = r->st == VEIL_HCONN_RESP_BODY_CL ? VEIL_HCONN_RESP_DONE : VEIL_HCONN_RESP_CHUNK_END;
		*used = *data = k;
		return 0;
	case VEIL_HCONN_RESP_BODY_EOF:
		if ((rc = resp_count(r, n)) < 0)
			return rc;
		*used = *data = n;
		return 0;
	case VEIL_HCONN_RESP_CHUNK_SIZE:
	case VEIL_HCONN_RESP_CHUNK_END:
	case VEIL_HCONN_RESP_TRAILER:
		nl = memchr(p, '\n', n);
		k = nl ? (size_t)(nl - p) : n;
		if (r->line_len + k > VEIL_HCONN_LINE_MAX)
			return resp_bad(r, "chunk framing line too long");
		memcpy(r->line + r->line_len, p, k);
		r->line_len += k;
		if (!nl) {
			*used = n;
			return 0;
		}
		*used = k + 1;
		r->line[r->line_len] = '\0';
		rc = resp_chunk_line(r);
		r->line_len = 0;
		return rc;
	case VEIL_HCONN_RESP_DONE:
		return 0;
	}
	return 0;
}

int veil_hconn_resp_eof(struct veil_hconn_resp *r)
{
	if (r->st == VEIL_HCONN_RESP_BODY_EOF)
		r->st = VEIL_HCONN_RESP_DONE;
	else if (r->st != VEIL_HCONN_RESP_DONE)
		return veil_errf(VEIL_EIO, "HTTP answer: the connection closed mid-answer");
	return 0;
}

const char *veil_hconn_resp_header(const struct veil_hconn_resp *r, const char *name)
{
	if (!r->head_done)
		return NULL;
	for (size_t i = 0; i < r->nhdr; i++)
		if (!strcasecmp((const char *)r->head.data + r->hdr[i][0], name))
			return (const char *)r->head.data + r->hdr[i][1];
	return NULL;
}
