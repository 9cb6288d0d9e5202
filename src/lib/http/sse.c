/* Server-sent events parser: the "event stream" interpretation of the WHATWG
 * HTML standard (§9.2.6), incremental and bounded.
 *
 * Lines end with CRLF, LF or CR (a CR split from its LF across two feeds is
 * still one line end).  "data" lines are joined with "\n"; a blank line
 * dispatches the event unless no data was seen; lines starting with ':' are
 * comments; a leading UTF-8 BOM is skipped; unknown fields are ignored. */
#include <string.h>

#include "veil/http.h"

#define SSE_LINE_DEFAULT (64u * 1024u)
#define SSE_EVENT_DEFAULT (1024u * 1024u)

void veil_http_sse_init(struct veil_http_sse_parser *p, size_t max_line,
			size_t max_event, veil_http_sse_cb cb, void *arg)
{
	memset(p, 0, sizeof(*p));
	p->line.max = max_line ? max_line : SSE_LINE_DEFAULT;
	/* +1: the "\n" appended after each data line before it is trimmed */
	p->data.max = (max_event ? max_event : SSE_EVENT_DEFAULT) + 1;
	p->cb = cb;
	p->arg = arg;
}

void veil_http_sse_free(struct veil_http_sse_parser *p)
{
	veil_buf_free(&p->line);
	veil_buf_free(&p->data);
}

bool veil_http_sse_truncated(const struct veil_http_sse_parser *p)
{
	return p->line.len > 0 || p->data.len > 0;
}

static int dispatch(struct veil_http_sse_parser *p)
{
	int rc = 0;

	if (p->data.len > 0) {
		p->data.len--; /* the trailing "\n" */
		p->data.data[p->data.len] = 0;
		if (p->cb)
			rc = p->cb(p->arg, p->event[0] ? p->event : "message",
				   (const char *)p->data.data, p->data.len,
				   p->id);
	}
	veil_buf_reset(&p->data);
	p->event[0] = 0;
	return rc;
}

static int process_line(struct veil_http_sse_parser *p)
{
	const char *line = p->line.data ? (const char *)p->line.data : "";
	size_t n = p->line.len, flen, vlen;
	const char *colon, *val;
	int rc;

	if (n == 0)
		return dispatch(p);
	if (line[0] == ':')
		return 0;
	colon = memchr(line, ':', n);
	if (colon) {
		flen = (size_t)(colon - line);
		val = colon + 1;
		vlen = n - flen - 1;
		if (vlen > 0 && *val == ' ') {
			val++;
			vlen--;
		}
	} else {
		flen = n;
		val = "";
		vlen = 0;
	}
	if (flen == 4 && memcmp(line, "data", 4) == 0) {
		if ((rc = veil_buf_append(&p->data, val, vlen)) < 0 ||
		    (rc = veil_buf_append(&p->data, "\n", 1)) < 0)
			return veil_errf(VEIL_ERANGE,
					 "SSE event data over %zu bytes",
					 p->data.max - 1);
	} else if (flen == 5 && memcmp(line, "event", 5) == 0) {
		if (vlen >= sizeof(p->event) || memchr(val, 0, vlen))
			return veil_errf(VEIL_ERANGE,
					 "SSE event name of %zu bytes", vlen);
		memcpy(p->event, val, vlen);
		p->event[vlen] = 0;
	} else if (flen == 2 && memcmp(line, "id", 2) == 0) {
		/* the spec ignores an id holding NUL */
		if (!memchr(val, 0, vlen)) {
			if (vlen >= sizeof(p->id))
				return veil_errf(VEIL_ERANGE,
						 "SSE id of %zu bytes", vlen);
			memcpy(p->id, val, vlen);
			p->id[vlen] = 0;
		}
	} else if (flen == 5 && memcmp(line, "retry", 5) == 0) {
		uint64_t v = 0;
		size_t i;

		for (i = 0; i < vlen; i++) {
			if (val[i] < '0' || val[i] > '9' ||
			    v > (UINT64_MAX - 9) / 10)
				break;
			v = v * 10 + (uint64_t)(val[i] - '0');
		}
		if (vlen > 0 && i == vlen)
			p->retry_ms = v;
	}
	return 0;
}

int veil_http_sse_feed(struct veil_http_sse_parser *p, const uint8_t *buf,
		       size_t n)
{
	size_t i = 0;
	int rc;

	if (p->failed)
		return veil_errf(VEIL_EINVAL, "SSE parser already failed");
	if (!buf && n)
		return VEIL_EINVAL;
	while (i < n) {
		if (!p->started) {
			/* A BOM may only start the stream; it can arrive
			 * split, so match it byte by byte against the line. */
			static const uint8_t bom[3] = {0xef, 0xbb, 0xbf};
			size_t have = p->line.len;

			if (have < 3 && buf[i] == bom[have] &&
			    (have == 0 || memcmp(p->line.data, bom, have) == 0)) {
				if ((rc = veil_buf_append(&p->line, &buf[i], 1)) < 0)
					goto fail;
				i++;
				if (p->line.len == 3) {
					veil_buf_reset(&p->line);
					p->started = true;
				}
				continue;
			}
			p->started = true;
		}
		if (p->cr) {
			p->cr = false;
			if (buf[i] == '\n') {
				i++;
				continue;
			}
		}
		const uint8_t *s = buf + i;
		size_t left = n - i, k;

		for (k = 0; k < left && s[k] != '\n' && s[k] != '\r'; k++)
			;
		if (k > 0 && veil_buf_append(&p->line, s, k) < 0) {
			rc = veil_errf(VEIL_ERANGE, "SSE line over %zu bytes",
				       p->line.max);
			goto fail;
		}
		i += k;
		if (k == left)
			break;
		p->cr = s[k] == '\r';
		i++;
		rc = process_line(p);
		veil_buf_reset(&p->line);
		if (rc != 0)
			goto fail;
	}
	return 0;
fail:
	p->failed = true;
	return rc;
}
