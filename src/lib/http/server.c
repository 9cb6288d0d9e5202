/* HTTP/1.1 server on libevent bufferevents (plain or OpenSSL).
 *
 * One connection serves one request at a time (pipelined requests wait in
 * the input buffer, bounded by the read high-water mark).  A connection moves
 * through: HEAD (waiting for the request head) -> BODY / CHUNKED (reading a
 * capped body) -> HANDLING (the handler owns the request; reading stays on
 * only to notice the client going away) -> DRAIN (response queued; once
 * written, back to HEAD or closed) or CLOSING (error or last response; after
 * it is written the connection lingers briefly, discarding input, so the
 * client sees the response instead of a reset).
 *
 * Framing follows RFC 9112: the request line and header fields are parsed
 * strictly (no obs-fold, no whitespace before the colon, no control bytes),
 * Content-Length together with Transfer-Encoding is refused (request
 * smuggling), and only the "chunked" coding is accepted. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "veil/http.h"

#include "parse.h"

#define MOD "http"
#define LINGER_MS 500
#define MAX_REJECTING 64

enum conn_state {
	CS_HEAD,
	CS_BODY,
	CS_CHUNKED,
	CS_HANDLING,
	CS_DRAIN,
	CS_CLOSING,
};

struct route {
	struct route *next;
	char *method; /* NULL: any */
	char *path;
	size_t plen;
	bool prefix;
	veil_http_handler h;
	void *arg;
};

struct conn;

struct veil_http_req {
	struct conn *c; /* NULL once the client has gone */
	uint64_t id;
	struct veil_http_head h; /* method, path, query, header fields */
	struct veil_buf body;
	struct veil_buf out_hdrs;
	/* A streamed response's status line and headers, held back on a
	 * plain connection until the first body bytes so that both leave in
	 * one send (flush_head() queues them when anything else comes
	 * first). */
	struct veil_buf head;
	bool dispatched, started, stream_chunked, gone, has_retry_after;
	size_t max_output;
	unsigned retry_after_s;
	char remote[64];
	void (*on_close)(struct veil_http_req *r, void *arg);
	void *close_arg;
	void (*on_drain)(struct veil_http_req *r, void *arg);
	void *drain_arg;
};

struct conn {
	struct conn *prev, *next;
	struct veil_http_server *s;
	struct bufferevent *bev;
	struct event *kick;
	struct event *deadline;      /* until the next request is whole: a
				      * timer, not a check made when bytes
				      * arrive (a drip of TLS record bytes
				      * delivers none, yet resets the idle
				      * timeout) */
	enum conn_state st;
	struct veil_http_req *req;
	size_t scanned;
	size_t empty_bytes;          /* CR / LF before this request */
	bool req_started;            /* a byte of the next request came */
	struct veil_http_chunked ck; /* CS_CHUNKED */
	bool close_after, rejecting, lingering, tls;
	char remote[64];
};

struct veil_http_server {
	struct event_base *base;
	struct evconnlistener *lev;
	SSL_CTX *ssl_ctx;
	struct veil_http_server_opts o;
	struct route *routes, **routes_tail;
	struct conn *conns;
	size_t nconns, nrejecting;
	uint16_t port;
	uint64_t next_id;
	bool shutting, freeing, done_called;
	struct event *shut_ev;
	void (*done)(void *arg);
	void *done_arg;
};

static void conn_process(struct conn *c);
/* CR / LF bytes ignored before a request line (RFC 9112 §2.2 asks for at
 * least one CRLF) */
#define MAX_EMPTY_LINE_BYTES 8
static void conn_free(struct conn *c);

/* ---- small helpers ----------------------------------------------------- */

const char *veil_http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return status >= 500 ? "Server Error"
		      : status >= 400 ? "Client Error" : "OK";
	}
}

const char *veil_http_error_type(int status)
{
	switch (status) {
	case 401: return "authentication_error";
	case 403: return "permission_error";
	case 404: return "not_found_error";
	case 429: return "rate_limit_error";
	default:
		return status >= 500 ? "server_error" : "invalid_request_error";
	}
}

static bool is_tchar(unsigned char ch)
{
	/* RFC 9110 §5.6.2 token characters */
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
	    (ch >= 'A' && ch <= 'Z'))
		return true;
	return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool is_field_vchar(unsigned char ch)
{
	return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static void set_tv(struct timeval *tv, unsigned ms)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

static void conn_kick(struct conn *c)
{
	event_active(c->kick, EV_TIMEOUT, 0);
}

/* The JSON error body shared by handler replies and protocol errors. */
static char *error_json(int status, const char *type, const char *code,
			const char *msg)
{
	json_t *o;
	char *s;

	o = json_pack("{s:{s:s,s:s,s:o}}", "error", "message", msg, "type",
		      type ? type : veil_http_error_type(status), "code",
		      code ? json_string(code) : json_null());
	if (!o)
		return NULL;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* ---- request head and chunked framing (parse.h) ------------------------ */

static int hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes p[0..n) ('+' is a space) into a new string; NULL on a bad
 * escape, a decoded NUL or no memory. */
static char *pct_decode(const char *p, size_t n)
{
	char *out = malloc(n + 1), *w = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		if (p[i] == '%') {
			int hi, lo;

			if (n - i < 3 || (hi = hexval((unsigned char)p[i + 1])) < 0 ||
			    (lo = hexval((unsigned char)p[i + 2])) < 0 ||
			    (hi == 0 && lo == 0)) {
				free(out);
				return NULL;
			}
			*w++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*w++ = p[i] == '+' ? ' ' : p[i];
		}
	}
	*w = 0;
	return out;
}

/* Returns 0 or an HTTP status, with *why set. */
static int parse_query(struct veil_http_head *h, const char *q, size_t max,
		       const char **why)
{
	const char *end = q + strlen(q);

	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *stop = amp ? amp : end, *eq;
		struct veil_http_qparam *np;

		if (stop == q) {
			q++;
			continue;
		}
		if (h->nqps >= max) {
			*why = "too many query parameters";
			return 400;
		}
		eq = memchr(q, '=', (size_t)(stop - q));
		np = realloc(h->qps, (h->nqps + 1) * sizeof(*np));
		if (!np) {
			*why = "out of memory";
			return 500;
		}
		h->qps = np;
		np = &h->qps[h->nqps];
		np->name = pct_decode(q, (size_t)((eq ? eq : stop) - q));
		np->value = eq ? pct_decode(eq + 1, (size_t)(stop - eq - 1))
			       : strdup("");
		h->nqps++;
		if (!np->name || !np->value) {
			*why = "malformed percent-encoding in the query";
			return 400;
		}
		q = amp ? amp + 1 : end;
	}
	return 0;
}

/* Splits the next line off *pp (ending at LF, optional CR before it).
 * Returns NULL at the end of the head; a CR elsewhere is an error. */
static char *next_line(char **pp, char *end, bool *bad)
{
	char *p = *pp, *nl, *cr;

	if (p >= end)
		return NULL;
	nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl)
		nl = end;
	*pp = nl < end ? nl + 1 : end;
	if (nl > p && nl[-1] == '\r')
		nl--;
	*nl = 0;
	cr = memchr(p, '\r', (size_t)(nl - p));
	if (cr || memchr(p, 0, (size_t)(nl - p)))
		*bad = true;
	return p;
}

size_t veil_http_head_end(const uint8_t *p, size_t n, size_t from)
{
	size_t i = from > 2 ? from - 2 : 0;

	for (; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < n && p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

void veil_http_head_free(struct veil_http_head *h)
{
	size_t i;

	if (!h)
		return;
	for (i = 0; i < h->nqps; i++) {
		free(h->qps[i].name);
		free(h->qps[i].value);
	}
	free(h->qps);
	free(h->hdrs);
	free(h->buf);
	free(h->path);
	memset(h, 0, sizeof(*h));
}

int veil_http_head_parse(const uint8_t *in, size_t n, size_t max_headers,
			 size_t max_query_params, struct veil_http_head *h,
			 const char **why)
{
	char *p, *end, *line, *sp1, *sp2, *q;
	bool bad = false;
	size_t i;

	memset(h, 0, sizeof(*h));
	if (n == SIZE_MAX || !(h->buf = malloc(n + 1)))
		return *why = "out of memory", 500;
	if (n)
		memcpy(h->buf, in, n);
	h->buf[n] = 0;
	h->len = n;
	p = h->buf;
	end = h->buf + n;

	line = next_line(&p, end, &bad);
	if (!line || bad) {
		*why = "malformed request line";
		return 400;
	}
	/* method SP request-target SP HTTP-version */
	sp1 = strchr(line, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || sp1 == line || sp2 == sp1 + 1 ||
	    strchr(sp2 + 1, ' ')) {
		*why = "malformed request line";
		return 400;
	}
	*sp1 = *sp2 = 0;
	for (q = line; *q; q++)
		if (!is_tchar((unsigned char)*q) ||
		    q - line >= VEIL_HTTP_METHOD_MAX) {
			*why = "malformed method";
			return 400;
		}
	for (q = sp1 + 1; *q; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) {
			*why = "malformed request target";
			return 400;
		}
	if (sp1[1] != '/') {
		*why = "request target must be an absolute path";
		return 400;
	}
	if (strncmp(sp2 + 1, "HTTP/", 5) != 0) {
		*why = "malformed HTTP version";
		return 400;
	}
	if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
		h->minor = 1;
	else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
		h->minor = 0;
	else
		return *why = "only HTTP/1.0 and HTTP/1.1 are supported", 505;
	h->method = line;
	q = strchr(sp1 + 1, '?');
	h->path = strndup(sp1 + 1, q ? (size_t)(q - sp1 - 1) : strlen(sp1 + 1));
	if (!h->path)
		return *why = "out of memory", 500;
	if (q) {
		int st = parse_query(h, q + 1, max_query_params, why);

		if (st)
			return st;
	}

	if (!(h->hdrs = calloc(max_headers ? max_headers : 1, sizeof(*h->hdrs))))
		return *why = "out of memory", 500;
	while ((line = next_line(&p, end, &bad)) != NULL) {
		char *colon, *v, *ve;

		if (bad) {
			*why = "control character in a header field";
			return 400;
		}
		if (*line == 0)
			break;
		if (*line == ' ' || *line == '\t') {
			*why = "obsolete line folding in a header field";
			return 400;
		}
		colon = strchr(line, ':');
		if (!colon || colon == line) {
			*why = "malformed header field";
			return 400;
		}
		for (q = line; q < colon; q++)
			if (!is_tchar((unsigned char)*q)) {
				*why = "malformed header field name";
				return 400;
			}
		*colon = 0;
		v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		ve = v + strlen(v);
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			*--ve = 0;
		for (q = v; q < ve; q++)
			if (!is_field_vchar((unsigned char)*q)) {
				*why = "control character in a header field";
				return 400;
			}
		if (h->nhdrs >= max_headers) {
			*why = "too many header fields";
			return 431;
		}
		h->hdrs[h->nhdrs].name = line;
		h->hdrs[h->nhdrs].value = v;
		h->nhdrs++;
	}

	for (i = 0; i < h->nhdrs; i++) {
		const char *nm = h->hdrs[i].name, *v = h->hdrs[i].value;

		if (strcasecmp(nm, "Content-Length") == 0) {
			uint64_t cl = 0;

			if (h->has_cl || !*v ||
			    strlen(v) > VEIL_HTTP_CL_DIGITS_MAX) {
				*why = "bad or repeated Content-Length";
				return 400;
			}
			for (q = (char *)v; *q; q++) {
				if (*q < '0' || *q > '9') {
					*why = "bad Content-Length";
					return 400;
				}
				cl = cl * 10 + (uint64_t)(*q - '0');
			}
			h->has_cl = true;
			h->content_length = cl;
		} else if (strcasecmp(nm, "Transfer-Encoding") == 0) {
			if (h->chunked_in || h->minor == 0) {
				*why = "bad Transfer-Encoding";
				return 400;
			}
			if (strcasecmp(v, "chunked") != 0) {
				*why = "only the chunked transfer coding is supported";
				return 501;
			}
			h->chunked_in = true;
		} else if (strcasecmp(nm, "Connection") == 0) {
			const char *t = v;

			while (*t) {
				size_t len;

				while (*t == ' ' || *t == '\t' || *t == ',')
					t++;
				len = strcspn(t, " \t,");
				if (len == 5 && strncasecmp(t, "close", 5) == 0)
					h->want_close = true;
				if (len == 10 &&
				    strncasecmp(t, "keep-alive", 10) == 0)
					h->want_keepalive = true;
				t += len;
			}
		} else if (strcasecmp(nm, "Expect") == 0) {
			if (strcasecmp(v, "100-continue") != 0) {
				*why = "unsupported expectation";
				return 417;
			}
			h->expect_continue = h->minor == 1;
		}
	}
	if (h->has_cl && h->chunked_in) {
		*why = "both Content-Length and Transfer-Encoding";
		return 400;
	}
	return 0;
}

void veil_http_chunked_init(struct veil_http_chunked *d, uint64_t max_body,
			    size_t max_trailer)
{
	memset(d, 0, sizeof(*d));
	d->st = VEIL_HTTP_CK_SIZE;
	d->max_body = max_body;
	d->max_trailer = max_trailer;
}

size_t veil_http_chunked_view(const struct veil_http_chunked *d, size_t avail)
{
	switch (d->st) {
	case VEIL_HTTP_CK_DATA:
		return (size_t)VEIL_MIN((uint64_t)avail, d->left);
	case VEIL_HTTP_CK_DONE:
		return 0;
	default:
		return VEIL_MIN(avail, (size_t)VEIL_HTTP_CHUNK_LINE_MAX + 2);
	}
}

/* Finds the next framing line in p[0..n): 1 with *len (without the line end)
 * and *used (with it), 0 when more input is needed, -1 when it is too long.
 * Looks at no more than VEIL_HTTP_CHUNK_LINE_MAX + 2 bytes. */
static int chunk_line(const uint8_t *p, size_t n, size_t *len, size_t *used)
{
	size_t lim = VEIL_MIN(n, (size_t)VEIL_HTTP_CHUNK_LINE_MAX + 2);
	const uint8_t *nl = lim ? memchr(p, '\n', lim) : NULL;

	if (!nl)
		return n > VEIL_HTTP_CHUNK_LINE_MAX ? -1 : 0;
	*used = (size_t)(nl - p) + 1;
	*len = *used - 1;
	if (*len && p[*len - 1] == '\r')
		(*len)--;
	return *len > VEIL_HTTP_CHUNK_LINE_MAX ? -1 : 1;
}

int veil_http_chunked_step(struct veil_http_chunked *d, const uint8_t *p,
			   size_t n, size_t *used, size_t *data,
			   const char **why)
{
	size_t len = 0, u = 0, i;
	uint64_t v = 0;
	int k;

	*used = *data = 0;
	if (d->st == VEIL_HTTP_CK_DONE)
		return 0;
	if (d->st == VEIL_HTTP_CK_DATA) {
		*used = *data = (size_t)VEIL_MIN((uint64_t)n, d->left);
		d->left -= *used;
		if (!d->left)
			d->st = VEIL_HTTP_CK_CRLF;
		return 0;
	}
	if ((k = chunk_line(p, n, &len, &u)) < 0)
		return *why = "chunk line too long", 400;
	if (k == 0)
		return 0;
	switch (d->st) {
	case VEIL_HTTP_CK_SIZE:
		/* chunk-size [ chunk-ext ]: extensions are skipped */
		for (i = 0; i < len && p[i] != ';' && p[i] != ' ' && p[i] != '\t';
		     i++) {
			int hv = hexval(p[i]);

			if (hv < 0 || v > (UINT64_MAX >> 4))
				return *why = "malformed chunk size", 400;
			v = v * 16 + (uint64_t)hv;
		}
		if (i == 0 || v == UINT64_MAX)
			return *why = "malformed chunk size", 400;
		if (v > d->max_body - d->total)
			return *why = "request body too large", 413;
		d->total += v;
		d->left = v;
		d->st = v ? VEIL_HTTP_CK_DATA : VEIL_HTTP_CK_TRAILER;
		break;
	case VEIL_HTTP_CK_CRLF:
		if (len)
			return *why = "chunk data longer than its size", 400;
		d->st = VEIL_HTTP_CK_SIZE;
		break;
	default: /* VEIL_HTTP_CK_TRAILER: fields are ignored */
		if (len + 2 > d->max_trailer - d->trailer_bytes)
			return *why = "trailer fields too large", 431;
		d->trailer_bytes += len + 2;
		if (!len)
			d->st = VEIL_HTTP_CK_DONE;
		break;
	}
	*used = u;
	return 0;
}

/* ---- requests ---------------------------------------------------------- */

static void req_free(struct veil_http_req *r)
{
	if (!r)
		return;
	veil_http_head_free(&r->h);
	veil_buf_free(&r->body);
	veil_buf_free(&r->out_hdrs);
	veil_buf_free(&r->head);
	free(r);
}

const char *veil_http_req_method(const struct veil_http_req *r)
{
	return r->h.method;
}

const char *veil_http_req_path(const struct veil_http_req *r)
{
	return r->h.path;
}

const char *veil_http_req_query(const struct veil_http_req *r,
				const char *name)
{
	size_t i;

	for (i = 0; i < r->h.nqps; i++)
		if (strcmp(r->h.qps[i].name, name) == 0)
			return r->h.qps[i].value;
	return NULL;
}

size_t veil_http_req_query_count(const struct veil_http_req *r)
{
	return r->h.nqps;
}

const char *veil_http_req_header(const struct veil_http_req *r,
				 const char *name)
{
	size_t i;

	for (i = 0; i < r->h.nhdrs; i++)
		if (strcasecmp(r->h.hdrs[i].name, name) == 0)
			return r->h.hdrs[i].value;
	return NULL;
}

const uint8_t *veil_http_req_body(const struct veil_http_req *r, size_t *len)
{
	if (len)
		*len = r->body.len;
	return r->body.data ? r->body.data : (const uint8_t *)"";
}

const char *veil_http_req_remote(const struct veil_http_req *r)
{
	return r->remote;
}

uint64_t veil_http_req_id(const struct veil_http_req *r)
{
	return r->id;
}

bool veil_http_req_gone(const struct veil_http_req *r)
{
	return r->gone;
}

void veil_http_req_on_close(struct veil_http_req *r,
			    void (*cb)(struct veil_http_req *r, void *arg),
			    void *arg)
{
	r->on_close = cb;
	r->close_arg = arg;
}

void veil_http_req_on_drain(struct veil_http_req *r,
			    void (*cb)(struct veil_http_req *r, void *arg),
			    void *arg)
{
	r->on_drain = cb;
	r->drain_arg = arg;
}

/* ---- responses --------------------------------------------------------- */

/* The length of a valid header name (a non-empty token) or value (field
 * characters: no CR, LF, NUL or other controls but HTAB); SIZE_MAX when
 * invalid.  One pass that also measures, for veil_http_add_header. */
static size_t header_text_len(const char *s, bool name)
{
	const char *p = s;

	if (!s || (name && !*s))
		return SIZE_MAX;
	for (; *p; p++)
		if (name ? !is_tchar((unsigned char)*p)
			 : !is_field_vchar((unsigned char)*p))
			return SIZE_MAX;
	return (size_t)(p - s);
}

static bool header_text_ok(const char *s, bool name)
{
	return header_text_len(s, name) != SIZE_MAX;
}

/* Plain copies, not veil_buf_appendf: a format pass (vsnprintf twice) over
 * a 1.7 KB receipt header was a visible share of the gateway's CPU. */
int veil_http_add_header(struct veil_http_req *r, const char *name,
			 const char *value)
{
	size_t nl, vl;
	uint8_t *w;
	int rc;

	if (r->started)
		return veil_errf(VEIL_EINVAL, "response already started");
	if ((nl = header_text_len(name, true)) == SIZE_MAX ||
	    (vl = header_text_len(value, false)) == SIZE_MAX)
		return veil_errf(VEIL_EINVAL, "bad response header");
	if (nl == 11 && strcasecmp(name, "Retry-After") == 0)
		r->has_retry_after = true;
	if (!r->out_hdrs.max)
		r->out_hdrs.max = 16384;
	/* the cap check; nl + vl cannot overflow: both are string lengths */
	if ((rc = veil_buf_reserve(&r->out_hdrs, nl + vl + 4)) < 0)
		return rc;
	w = r->out_hdrs.data + r->out_hdrs.len;
	memcpy(w, name, nl);
	w += nl;
	*w++ = ':';
	*w++ = ' ';
	memcpy(w, value, vl);
	w += vl;
	*w++ = '\r';
	*w++ = '\n';
	*w = 0;
	r->out_hdrs.len += nl + vl + 4;
	return 0;
}

int veil_http_set_retry_after(struct veil_http_req *r, unsigned seconds)
{
	char v[16];

	snprintf(v, sizeof(v), "%u", seconds);
	return veil_http_add_header(r, "Retry-After", v);
}

/* Queues a held-back stream head (see struct veil_http_req.head). */
static void flush_head(struct veil_http_req *r)
{
	if (r->head.len && r->c)
		evbuffer_add(bufferevent_get_output(r->c->bev), r->head.data,
			     r->head.len);
	veil_buf_free(&r->head);
}

/* Appends the decimal digits of v. */
static char *put_u64(char *w, uint64_t v)
{
	char tmp[20];
	size_t m = 0;

	do
		tmp[m++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (m)
		*w++ = tmp[--m];
	return w;
}

/* Builds the status line and headers into *hb (a fresh buffer the caller
 * frees) and marks the response started; decides close_after.  Plain
 * copies into one buffer sized up front: no format pass, one allocation.
 * content_length < 0: streaming.  VEIL_EINVAL when already started (a
 * caller bug), VEIL_ECANCELED when the client is gone. */
static int build_head(struct veil_http_req *r, int status,
		      const char *content_type, int64_t content_length,
		      struct veil_buf *hb)
{
	struct conn *c = r->c;
	const char *text, *end;
	size_t tl, ctl, need;
	char *w;
	int rc;

	*hb = (struct veil_buf)VEIL_BUF_INIT(0);
	if (r->started)
		return veil_errf(VEIL_EINVAL, "response already started");
	r->started = true;
	if (!c)
		return VEIL_ECANCELED;
	if (status < 100 || status > 999)
		status = 500;
	if (r->h.want_close || (r->h.minor == 0 && !r->h.want_keepalive) ||
	    c->s->shutting)
		c->close_after = true;
	if (content_length < 0) {
		r->stream_chunked = r->h.minor == 1;
		if (!r->stream_chunked)
			c->close_after = true; /* HTTP/1.0: the close ends it */
	}
	text = veil_http_status_text(status);
	tl = strlen(text);
	ctl = content_type ? strlen(content_type) : 0;
	end = c->close_after ? "Connection: close\r\n\r\n"
	      : r->h.minor == 0 ? "Connection: keep-alive\r\n\r\n" : "\r\n";
	/* status line, Content-Type, Content-Length or Transfer-Encoding
	 * (the longer, 28), the handler's headers, the end */
	need = 15 + tl + (content_type ? 16 + ctl : 0) + 38 + r->out_hdrs.len +
	       strlen(end);
	hb->max = need;
	if ((rc = veil_buf_reserve(hb, need)) < 0)
		return rc;
	w = (char *)hb->data;
	memcpy(w, "HTTP/1.1 ", 9);
	w += 9;
	*w++ = (char)('0' + status / 100);
	*w++ = (char)('0' + status / 10 % 10);
	*w++ = (char)('0' + status % 10);
	*w++ = ' ';
	memcpy(w, text, tl);
	w += tl;
	*w++ = '\r';
	*w++ = '\n';
	if (content_type) {
		memcpy(w, "Content-Type: ", 14);
		w += 14;
		memcpy(w, content_type, ctl);
		w += ctl;
		*w++ = '\r';
		*w++ = '\n';
	}
	if (content_length >= 0) {
		memcpy(w, "Content-Length: ", 16);
		w = put_u64(w + 16, (uint64_t)content_length);
		*w++ = '\r';
		*w++ = '\n';
	} else if (r->stream_chunked) {
		memcpy(w, "Transfer-Encoding: chunked\r\n", 28);
		w += 28;
	}
	if (r->out_hdrs.len) {
		memcpy(w, r->out_hdrs.data, r->out_hdrs.len);
		w += r->out_hdrs.len;
	}
	memcpy(w, end, strlen(end));
	w += strlen(end);
	*w = 0;
	hb->len = (size_t)(w - (char *)hb->data);
	return 0;
}

/* Writes the status line and headers of a response, queued with one
 * evbuffer_add.  content_length < 0: streaming; on a plain connection with
 * nothing queued, the head waits in r->head for the first body bytes
 * (veil_http_stream_write sends both at once). */
static int write_head(struct veil_http_req *r, int status,
		      const char *content_type, int64_t content_length)
{
	struct veil_buf hb;
	struct evbuffer *out;
	int rc;

	if ((rc = build_head(r, status, content_type, content_length, &hb)) < 0)
		return rc;
	out = bufferevent_get_output(r->c->bev);
	if (content_length < 0 && !r->c->tls && evbuffer_get_length(out) == 0) {
		r->head = hb;
		return 0;
	}
	evbuffer_add(out, hb.data, hb.len);
	veil_buf_free(&hb);
	return 0;
}

/* Completes the request: frees it and lets the connection move on. */
static int finish(struct veil_http_req *r)
{
	struct conn *c = r->c;
	int rc = c ? 0 : VEIL_ECANCELED;

	if (c) {
		flush_head(r);
		c->req = NULL;
		c->st = c->close_after ? CS_CLOSING : CS_DRAIN;
		conn_kick(c);
	}
	req_free(r);
	return rc;
}

/* Sends what it can of iov straight to a plain socket; returns the bytes
 * the socket took (0 when it took none or failed: the caller queues
 * everything and the bufferevent meets the error, as it would have). */
static size_t send_direct(struct conn *c, const struct iovec *iov, int n)
{
	struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
	ssize_t w = sendmsg(bufferevent_getfd(c->bev), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

	return w > 0 ? (size_t)w : 0;
}

/* Queues what send_direct left of iov (the first `sent` bytes went out). */
static int queue_rest(struct evbuffer *out, const struct iovec *iov, int n,
		      size_t sent)
{
	for (int i = 0; i < n; i++) {
		size_t skip = VEIL_MIN(sent, iov[i].iov_len);

		sent -= skip;
		if (skip < iov[i].iov_len &&
		    evbuffer_add(out, (const uint8_t *)iov[i].iov_base + skip,
				 iov[i].iov_len - skip) < 0)
			return VEIL_ENOMEM;
	}
	return 0;
}

/* A whole response.  Queuing it and waiting for the write event cost an
 * epoll_ctl to arm EV_WRITE, a loop wake-up, and an epoll_ctl to disarm it
 * per response; on a plain connection with nothing queued, head and body
 * leave at once in one sendmsg, and only what the socket does not take is
 * queued (order, the write timeout and the lingering close stay the
 * bufferevent's).  Over TLS, head and body go into one contiguous chain:
 * bufferevent_openssl calls SSL_write once per chain, so the peer gets one
 * record (up to 16 KiB) and one segment instead of two. */
int veil_http_reply(struct veil_http_req *r, int status,
		    const char *content_type, const void *body, size_t len)
{
	struct veil_buf hb;
	struct evbuffer *out;
	int rc;

	if (!r)
		return VEIL_EINVAL;
	rc = build_head(r, status, content_type, (int64_t)len, &hb);
	if (rc == VEIL_EINVAL)
		return rc; /* started twice: a caller bug, keep the request */
	if (rc == 0) {
		struct iovec iov[2] = {{hb.data, hb.len}, {(void *)body, len}};
		int k = len ? 2 : 1;

		out = bufferevent_get_output(r->c->bev);
		if (!r->c->tls && evbuffer_get_length(out) == 0)
			rc = queue_rest(out, iov, k, send_direct(r->c, iov, k));
		else
			rc = (r->c->tls && evbuffer_expand(out, hb.len + len) < 0)
				     ? VEIL_ENOMEM : queue_rest(out, iov, k, 0);
	}
	/* out of memory: a cut answer must not look like a whole one on a
	 * kept-alive connection, nor a missing one leave the client waiting */
	if (rc == VEIL_ENOMEM && r->c)
		r->c->close_after = true;
	veil_buf_free(&hb);
	return finish(r);
}

int veil_http_reply_json(struct veil_http_req *r, int status, json_t *obj)
{
	char *s;
	int rc;

	if (!obj)
		return veil_http_reply_error(r, 500, NULL, NULL,
					     "internal error");
	s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (!s)
		return veil_http_reply_error(r, 500, NULL, NULL,
					     "internal error");
	rc = veil_http_reply(r, status, "application/json", s, strlen(s));
	free(s);
	return rc;
}

int veil_http_reply_error(struct veil_http_req *r, int status,
			  const char *type, const char *code,
			  const char *fmt, ...)
{
	char msg[512];
	char *body;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((status == 429 || status == 503) && !r->has_retry_after)
		veil_http_set_retry_after(r, r->retry_after_s);
	body = error_json(status, type, code, msg);
	if (!body)
		return veil_http_reply(r, 500, "application/json", "{}", 2);
	rc = veil_http_reply(r, status, "application/json", body,
			     strlen(body));
	free(body);
	return rc;
}

int veil_http_stream_start(struct veil_http_req *r, int status,
			   const char *content_type)
{
	return write_head(r, status, content_type, -1);
}

size_t veil_http_stream_pending(const struct veil_http_req *r)
{
	if (!r->c)
		return 0;
	return r->head.len + evbuffer_get_length(bufferevent_get_output(r->c->bev));
}

bool veil_http_stream_full(const struct veil_http_req *r)
{
	/* the test veil_http_stream_write makes before it queues anything */
	return r->c && evbuffer_get_length(bufferevent_get_output(r->c->bev)) > r->max_output;
}

void veil_http_stream_allow(struct veil_http_req *r, size_t extra)
{
	size_t now = veil_http_stream_pending(r);

	/* from what is queued now, not from the cap (it may be far past it) */
	if (now > SIZE_MAX - extra)
		r->max_output = SIZE_MAX;
	else
		r->max_output = VEIL_MAX(r->max_output, now + extra);
}

/* One stream write: the chunk framing and the bytes (and a held-back head
 * before them).  On a plain connection with nothing queued they go out in
 * one sendmsg; arming the write event, waking on it, writing and
 * disarming it again cost four system calls and a loop turn per event.
 * What the socket does not take is queued, so order and back-pressure
 * (max_output, on_drain, the write timeout) stay the bufferevent's. */
int veil_http_stream_write(struct veil_http_req *r, const void *p, size_t n)
{
	struct evbuffer *out;
	struct iovec iov[4];
	char sz[24];
	size_t sent = 0;
	int k = 0, rc = 0;

	if (!r->started)
		return veil_errf(VEIL_EINVAL, "stream not started");
	if (!r->c)
		return VEIL_ECANCELED;
	if (n == 0)
		return 0; /* an empty chunk would end the stream */
	if (veil_http_stream_full(r))
		return VEIL_EBUSY;
	out = bufferevent_get_output(r->c->bev);
	if (r->head.len)
		iov[k++] = (struct iovec){r->head.data, r->head.len};
	if (r->stream_chunked) {
		static const char hex[] = "0123456789abcdef";
		char tmp[20];
		size_t m = 0, i = 0;

		for (size_t v = n; v; v >>= 4)
			tmp[m++] = hex[v & 15];
		while (m)
			sz[i++] = tmp[--m];
		sz[i++] = '\r';
		sz[i++] = '\n';
		iov[k++] = (struct iovec){sz, i};
	}
	iov[k++] = (struct iovec){(void *)p, n};
	if (r->stream_chunked)
		iov[k++] = (struct iovec){"\r\n", 2};
	if (!r->c->tls && evbuffer_get_length(out) == 0)
		sent = send_direct(r->c, iov, k);
	rc = queue_rest(out, iov, k, sent);
	veil_buf_free(&r->head); /* sent or queued */
	return rc;
}

int veil_http_stream_end(struct veil_http_req *r)
{
	if (!r)
		return VEIL_EINVAL;
	if (!r->started)
		write_head(r, 500, NULL, 0);
	else if (r->c && r->stream_chunked) {
		flush_head(r);
		evbuffer_add(bufferevent_get_output(r->c->bev), "0\r\n\r\n", 5);
	}
	return finish(r);
}

int veil_http_sse_start(struct veil_http_req *r)
{
	int rc;

	if (r->c && !r->started &&
	    ((rc = veil_http_add_header(r, "Cache-Control", "no-cache")) < 0 ||
	     (rc = veil_http_add_header(r, "X-Accel-Buffering", "no")) < 0))
		return rc;
	return veil_http_stream_start(r, 200, "text/event-stream");
}

int veil_http_sse_send(struct veil_http_req *r, const char *event,
		       const char *data, size_t len)
{
	struct veil_buf b = VEIL_BUF_INIT(r->max_output + 65536);
	size_t i = 0;
	int rc;

	if (!data && len)
		return VEIL_EINVAL;
	if (memchr(data ? data : "", '\r', len) ||
	    (event && (strpbrk(event, "\r\n") || !*event)))
		return veil_errf(VEIL_EINVAL, "SSE data holds CR");
	if (!r->c)
		return VEIL_ECANCELED;
	if (event && (rc = veil_buf_appendf(&b, "event: %s\n", event)) < 0)
		goto out;
	do {
		const char *nl = len > i ? memchr(data + i, '\n', len - i) : NULL;
		size_t l = nl ? (size_t)(nl - (data + i)) : len - i;

		if ((rc = veil_buf_append(&b, "data: ", 6)) < 0 ||
		    (rc = veil_buf_append(&b, data ? data + i : "", l)) < 0 ||
		    (rc = veil_buf_append(&b, "\n", 1)) < 0)
			goto out;
		i += l + (nl ? 1 : 0);
		if (!nl)
			break;
		if (i == len) { /* a trailing newline: one empty data line */
			if ((rc = veil_buf_append(&b, "data: \n", 7)) < 0)
				goto out;
			break;
		}
	} while (1);
	if ((rc = veil_buf_append(&b, "\n", 1)) < 0)
		goto out;
	rc = veil_http_stream_write(r, b.data, b.len);
out:
	veil_buf_free(&b);
	return rc;
}

int veil_http_sse_done(struct veil_http_req *r)
{
	static const char done[] = "data: [DONE]\n\n";

	if (r->c && r->started)
		veil_http_stream_write(r, done, sizeof(done) - 1);
	return veil_http_stream_end(r);
}

/* ---- connections ------------------------------------------------------- */

/* A protocol error found by the server itself: JSON error, then close. */
static void conn_fail(struct conn *c, int status, const char *code,
		      const char *msg)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char *body = error_json(status, NULL, code, msg);
	const char *b = body ? body : "{}";

	if (c->req && !c->req->dispatched) {
		req_free(c->req);
		c->req = NULL;
	}
	evbuffer_add_printf(out,
			    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			    "Content-Length: %zu\r\n",
			    status, veil_http_status_text(status), strlen(b));
	if (status == 503 || status == 429)
		evbuffer_add_printf(out, "Retry-After: %u\r\n",
				    c->s->o.retry_after_s);
	evbuffer_add_printf(out, "Connection: close\r\n\r\n%s", b);
	free(body);
	c->st = CS_CLOSING;
	c->close_after = true;
	/* From now on the reply's time: the write timeout (a client that does
	 * not read), no read timeout.  The request's deadline or the idle
	 * timeout firing next would close it before the reply went out (with
	 * both timeouts equal, a stalled request's 408 did). */
	{
		struct timeval w;

		set_tv(&w, c->s->o.write_timeout_ms);
		bufferevent_set_timeouts(c->bev, NULL, &w);
		evtimer_add(c->deadline, &w);
	}
	VEIL_DEBUG(MOD, "%s: %d %s", c->remote, status, code);
	conn_kick(c);
}

static void set_read_timeout(struct conn *c, bool on)
{
	struct timeval r, w;

	set_tv(&r, c->s->o.idle_timeout_ms);
	set_tv(&w, c->s->o.write_timeout_ms);
	bufferevent_set_timeouts(c->bev, on ? &r : NULL, &w);
}

/* The connection's deadline: ms from now. */
static void arm_deadline(struct conn *c, unsigned ms)
{
	struct timeval tv;

	set_tv(&tv, ms);
	evtimer_add(c->deadline, &tv);
}

/* Waiting for a request (after a TLS handshake, or a keep-alive response):
 * the idle timeout for its first byte, then the request timeout. */
static void arm_next_request(struct conn *c)
{
	arm_deadline(c, c->s->o.idle_timeout_ms + c->s->o.request_timeout_ms);
}

static void dispatch(struct conn *c)
{
	struct veil_http_server *s = c->s;
	struct veil_http_req *r = c->req;
	struct route *rt, *hit = NULL;
	char allow[256] = "";
	bool path_hit = false;

	c->st = CS_HANDLING;
	c->req_started = false;
	c->empty_bytes = 0;
	event_del(c->deadline);
	r->dispatched = true;
	set_read_timeout(c, false);
	/* Reading stays on (bounded by the high-water mark) so a client that
	 * goes away is noticed while the handler works. */
	for (rt = s->routes; rt; rt = rt->next) {
		bool pm = rt->prefix ? strncmp(r->h.path, rt->path, rt->plen) == 0
				     : strcmp(r->h.path, rt->path) == 0;

		if (!pm)
			continue;
		path_hit = true;
		if (!rt->method || strcmp(rt->method, r->h.method) == 0) {
			hit = rt;
			break;
		}
		if (strlen(allow) + strlen(rt->method) + 3 < sizeof(allow)) {
			if (*allow)
				strcat(allow, ", ");
			strcat(allow, rt->method);
		}
	}
	if (hit) {
		hit->h(r, hit->arg);
	} else if (path_hit) {
		veil_http_add_header(r, "Allow", allow);
		veil_http_reply_error(r, 405, NULL, "method_not_allowed",
				      "method %s not allowed here", r->h.method);
	} else {
		veil_http_reply_error(r, 404, NULL, "not_found",
				      "no such endpoint");
	}
}

static void body_ready(struct conn *c)
{
	struct veil_http_req *r = c->req;

	if (r->h.expect_continue)
		evbuffer_add_printf(bufferevent_get_output(c->bev),
				    "HTTP/1.1 100 Continue\r\n\r\n");
}

/* Finds the end of the request head; returns its length including the blank
 * line, 0 when more input is needed, or -1 after failing the connection. */
static ssize_t find_head(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in), max = c->s->o.max_header_bytes;
	size_t lim = VEIL_MIN(len, max + 4), hl;
	const unsigned char *p = evbuffer_pullup(in, (ssize_t)lim);

	if (!p)
		return 0;
	if ((hl = veil_http_head_end(p, lim, c->scanned)) > 0)
		return (ssize_t)hl;
	c->scanned = lim;
	if (len >= max + 4) {
		conn_fail(c, 431, "headers_too_large",
			  "request header fields too large");
		return -1;
	}
	return 0;
}

static void conn_process(struct conn *c)
{
	struct veil_http_server *s = c->s;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct veil_http_req *r;
	const char *why = NULL;
	const uint8_t *hp;
	ssize_t hl;
	int st;

	for (;;) {
		size_t len = evbuffer_get_length(in);

		switch (c->st) {
		case CS_HEAD:
			/* RFC 9112 §2.2: ignore empty lines before a request,
			 * a few: each byte of a drip of them would reset the
			 * idle timeout and hold the connection for ever (the
			 * request's own time starts at its first byte, so a
			 * trailing CRLF and then a pause before the next
			 * request is not a late request) */
			while (len) {
				unsigned char ch;

				evbuffer_copyout(in, &ch, 1);
				if (ch != '\r' && ch != '\n')
					break;
				if (++c->empty_bytes > MAX_EMPTY_LINE_BYTES) {
					conn_fail(c, 400, "bad_request",
						  "too many empty lines before the request");
					return;
				}
				evbuffer_drain(in, 1);
				len--;
			}
			if (!len)
				return;
			if (!c->req_started) {
				c->req_started = true;
				arm_deadline(c, s->o.request_timeout_ms);
			}
			if (s->shutting && !c->req) {
				/* still accepted: its response closes */
				c->close_after = true;
			}
			if ((hl = find_head(c)) <= 0)
				return;
			c->scanned = 0;
			if (!(r = calloc(1, sizeof(*r)))) {
				conn_fail(c, 500, "internal_error",
					  "out of memory");
				return;
			}
			c->req = r;
			r->c = c;
			r->id = ++s->next_id;
			r->max_output = s->o.max_output;
			r->retry_after_s = s->o.retry_after_s;
			r->body.max = s->o.max_body + 1;
			/* a plaintext prompt: wiped before it is freed */
			r->body.secret = true;
			memcpy(r->remote, c->remote, sizeof(r->remote));
			/* find_head() pulled the head up: no copy here */
			if (!(hp = evbuffer_pullup(in, hl))) {
				st = 500;
				why = "out of memory";
			} else {
				st = veil_http_head_parse(hp, (size_t)hl,
							  s->o.max_headers,
							  s->o.max_query_params,
							  &r->h, &why);
			}
			evbuffer_drain(in, (size_t)hl);
			if (st == 0 && r->h.has_cl &&
			    r->h.content_length > s->o.max_body) {
				st = 413;
				why = "request body too large";
			}
			if (st) {
				conn_fail(c, st,
					  st == 431 ? "headers_too_large"
					  : st == 413 ? "request_too_large"
					  : st == 505 ? "http_version"
					  : "bad_request", why);
				return;
			}
			if (r->h.chunked_in) {
				body_ready(c);
				veil_http_chunked_init(&c->ck, s->o.max_body,
						       s->o.max_header_bytes);
				c->st = CS_CHUNKED;
			} else if (r->h.has_cl && r->h.content_length > 0) {
				body_ready(c);
				c->st = CS_BODY;
			} else {
				dispatch(c);
			}
			break;
		case CS_BODY: {
			r = c->req;
			size_t want = (size_t)r->h.content_length - r->body.len;
			size_t take = VEIL_MIN(want, len);

			if (!take)
				return;
			if (veil_buf_reserve(&r->body, take) < 0) {
				conn_fail(c, 500, "internal_error",
					  "out of memory");
				return;
			}
			evbuffer_remove(in, r->body.data + r->body.len, take);
			r->body.len += take;
			r->body.data[r->body.len] = 0;
			if (r->body.len == r->h.content_length)
				dispatch(c);
			break;
		}
		case CS_CHUNKED: {
			size_t view = veil_http_chunked_view(&c->ck, len);
			const uint8_t *p = view ? evbuffer_pullup(in, (ssize_t)view)
						: NULL;
			size_t used, data;

			r = c->req;
			if (view && !p) {
				conn_fail(c, 500, "internal_error",
					  "out of memory");
				return;
			}
			st = veil_http_chunked_step(&c->ck, p, view, &used, &data,
						    &why);
			if (st) {
				conn_fail(c, st,
					  st == 431 ? "headers_too_large"
					  : st == 413 ? "request_too_large"
					  : "bad_chunk", why);
				return;
			}
			if (data) {
				if (veil_buf_reserve(&r->body, data) < 0) {
					conn_fail(c, 500, "internal_error",
						  "out of memory");
					return;
				}
				memcpy(r->body.data + r->body.len, p, data);
				r->body.len += data;
				r->body.data[r->body.len] = 0;
			}
			evbuffer_drain(in, used);
			if (c->ck.st == VEIL_HTTP_CK_DONE)
				dispatch(c); /* trailer fields are ignored */
			else if (!used)
				return;
			break;
		}
		case CS_HANDLING:
		case CS_DRAIN:
			return; /* pipelined input waits */
		case CS_CLOSING:
			evbuffer_drain(in, len); /* discarded */
			return;
		}
	}
}

static void conn_after_write(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct timeval tv;

	if (evbuffer_get_length(out))
		return;
	switch (c->st) {
	case CS_HANDLING:
		if (c->req && c->req->started && c->req->on_drain)
			c->req->on_drain(c->req, c->req->drain_arg);
		break;
	case CS_DRAIN:
		if (c->close_after || c->s->shutting) {
			c->st = CS_CLOSING;
			conn_kick(c);
			break;
		}
		c->st = CS_HEAD;
		set_read_timeout(c, true);
		arm_next_request(c);
		bufferevent_enable(c->bev, EV_READ);
		conn_process(c);
		break;
	case CS_CLOSING:
		if (c->lingering)
			break;
		/* Half-close and discard what the client still sends for a
		 * moment, so it reads the response instead of a reset. */
		c->lingering = true;
		if (!c->tls)
			shutdown(bufferevent_getfd(c->bev), SHUT_WR);
		bufferevent_enable(c->bev, EV_READ);
		bufferevent_set_timeouts(c->bev, NULL, NULL);
		set_tv(&tv, LINGER_MS);
		evtimer_add(c->kick, &tv);
		break;
	default:
		break;
	}
}

static void conn_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->lingering) {
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 &&
		    !evtimer_pending(c->kick, NULL))
			conn_free(c);
		return;
	}
	conn_after_write(c);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_process(arg);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_after_write(arg);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	size_t inlen = evbuffer_get_length(bufferevent_get_input(bev));

	if (what == BEV_EVENT_CONNECTED) {
		if (c->st == CS_HEAD && !c->req_started)
			arm_next_request(c); /* TLS handshake done */
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && c->st == CS_CLOSING)
		return; /* fired with the deadline's 408 in one pass: it goes out */
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
	    c->st <= CS_CHUNKED && (c->st != CS_HEAD || inlen > 0)) {
		conn_fail(c, 408, "request_timeout",
			  "request not received in time");
		return;
	}
	if ((what & BEV_EVENT_EOF) && (c->st == CS_DRAIN ||
				       (c->st == CS_CLOSING && !c->lingering))) {
		/* The client finished sending; let the response go out. */
		c->close_after = true;
		bufferevent_disable(bev, EV_READ);
		return;
	}
	conn_free(c);
}

static void server_check_done(struct veil_http_server *s)
{
	if (s->shutting && !s->freeing && !s->done_called && s->nconns == 0 &&
	    s->nrejecting == 0)
		event_active(s->shut_ev, EV_TIMEOUT, 0);
}

static void conn_free(struct conn *c)
{
	struct veil_http_server *s = c->s;
	struct veil_http_req *r = c->req;

	if (r) {
		c->req = NULL;
		r->c = NULL;
		r->gone = true;
		if (!r->dispatched)
			req_free(r); /* nobody owns it yet */
		else if (r->on_close)
			r->on_close(r, r->close_arg);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->rejecting)
		s->nrejecting--;
	else
		s->nconns--;
	bufferevent_free(c->bev);
	event_free(c->kick);
	if (c->deadline)
		event_free(c->deadline);
	free(c);
	server_check_done(s);
}

/* A request begun and not whole in time: 408.  A TLS handshake, or the
 * wait for a request, not done in time: closed without a word (no answer
 * is possible before TLS; its bytes never reach conn_process, and each
 * resets the idle timeout, so only a timer bounds a client dripping them). */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->st == CS_HANDLING || c->st == CS_DRAIN)
		return; /* a response under way: the write timeout rules */
	if (c->st <= CS_CHUNKED && c->req_started) {
		conn_fail(c, 408, "request_timeout", "request not received in time");
		return;
	}
	VEIL_DEBUG(MOD, "%s: no request in time; closed", c->remote);
	conn_free(c);
}

static void format_remote(const struct sockaddr *sa, char *out, size_t cap)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
		snprintf(out, cap, "%s:%u", a, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
		snprintf(out, cap, "[%s]:%u", a, ntohs(in6->sin6_port));
	} else {
		snprintf(out, cap, "unknown");
	}
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	struct veil_http_server *s = arg;
	struct bufferevent *bev = NULL;
	struct conn *c;
	bool over = s->nconns >= s->o.max_conns;
	int one = 1;
	const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;

	(void)lev;
	(void)salen;
	if (s->shutting || (over && s->nrejecting >= MAX_REJECTING)) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (s->ssl_ctx) {
		SSL *ssl = SSL_new(s->ssl_ctx);

		if (ssl)
			bev = bufferevent_openssl_socket_new(
				s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, opts);
		if (!bev)
			SSL_free(ssl);
		else
			bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(s->base, fd, opts);
	}
	if (!bev || !(c = calloc(1, sizeof(*c)))) {
		if (bev)
			bufferevent_free(bev);
		else
			close(fd);
		VEIL_WARN(MOD, "out of memory accepting a connection");
		return;
	}
	c->s = s;
	c->bev = bev;
	c->tls = s->ssl_ctx != NULL;
	c->kick = evtimer_new(s->base, conn_kick_cb, c);
	c->deadline = evtimer_new(s->base, deadline_cb, c);
	if (!c->kick || !c->deadline) {
		if (c->kick)
			event_free(c->kick);
		if (c->deadline)
			event_free(c->deadline);
		bufferevent_free(bev);
		free(c);
		return;
	}
	format_remote(sa, c->remote, sizeof(c->remote));
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	if (over) {
		c->rejecting = true;
		s->nrejecting++;
	} else {
		s->nconns++;
	}
	bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_setwatermark(bev, EV_READ, 0,
				 s->o.max_header_bytes + 16384);
	set_read_timeout(c, true);
	/* TLS: the handshake within the request timeout */
	if (c->tls)
		arm_deadline(c, s->o.request_timeout_ms);
	else
		arm_next_request(c);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (over) {
		VEIL_WARN(MOD, "connection cap %zu reached; 503 to %s",
			  s->o.max_conns, c->remote);
		conn_fail(c, 503, "server_busy",
			  "too many connections; retry later");
	}
}

static void shut_cb(evutil_socket_t fd, short what, void *arg)
{
	struct veil_http_server *s = arg;

	(void)fd;
	(void)what;
	if (s->done_called)
		return;
	/* Either the last connection went, or grace ran out. */
	while (s->conns)
		conn_free(s->conns);
	s->done_called = true;
	event_del(s->shut_ev);
	if (s->done)
		s->done(s->done_arg);
}

void veil_http_server_shutdown(struct veil_http_server *s, unsigned grace_ms,
			       void (*done)(void *arg), void *arg)
{
	struct conn *c, *next;
	struct timeval tv;

	if (!s || s->shutting)
		return;
	s->shutting = true;
	s->done = done;
	s->done_arg = arg;
	/* closing the socket (not just pausing accept) refuses new clients
	 * instead of leaving them in the kernel's backlog */
	evconnlistener_free(s->lev);
	s->lev = NULL;
	for (c = s->conns; c; c = next) {
		next = c->next;
		c->close_after = true;
		if (c->st == CS_HEAD && !c->req &&
		    evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
			conn_free(c); /* idle keep-alive */
	}
	VEIL_INFO(MOD, "shutting down: %zu connections in flight", s->nconns);
	set_tv(&tv, grace_ms);
	evtimer_add(s->shut_ev, &tv);
	server_check_done(s);
}

int veil_http_server_new(struct event_base *base,
			 const struct veil_http_server_opts *opts,
			 struct veil_http_server **out)
{
	struct veil_http_server *s;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int sslen = (int)sizeof(ss), rc;
	const char *addr;

	if (!base || !opts || !out || (!opts->tls_key != !opts->tls_cert))
		return veil_errf(VEIL_EINVAL, "http server: bad arguments");
	if (!(s = calloc(1, sizeof(*s))))
		return VEIL_ENOMEM;
	s->base = base;
	s->o = *opts;
	s->o.tls_key = NULL;
	s->o.tls_cert = NULL;
	s->routes_tail = &s->routes;
#define DEF(f, v) if (!s->o.f) s->o.f = (v)
	DEF(max_conns, 1024);
	DEF(max_header_bytes, 16384);
	DEF(max_headers, 64);
	DEF(max_body, 1024 * 1024);
	DEF(max_query_params, 32);
	DEF(max_output, 1024 * 1024);
	DEF(idle_timeout_ms, 30000);
	DEF(request_timeout_ms, 30000);
	DEF(write_timeout_ms, 60000);
	DEF(retry_after_s, 1);
#undef DEF
	addr = opts->addr ? opts->addr : "127.0.0.1";
	memset(&ss, 0, sizeof(ss));
	{
		struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
			in4->sin_family = AF_INET;
			in4->sin_port = htons(opts->port);
			sslen = (int)sizeof(*in4);
		} else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons(opts->port);
			sslen = (int)sizeof(*in6);
		} else {
			rc = veil_errf(VEIL_EINVAL,
				       "http server: bad address %s (numeric IPv4/IPv6)",
				       addr);
			goto fail;
		}
	}
	if (opts->tls_key &&
	    (rc = veil_http_tls_server_ctx(opts->tls_key, opts->tls_cert,
					   &s->ssl_ctx)) < 0)
		goto fail;
	{
		struct sigaction sa;

		/* a write to a closed socket must not kill the server */
		if (sigaction(SIGPIPE, NULL, &sa) == 0 &&
		    sa.sa_handler == SIG_DFL)
			signal(SIGPIPE, SIG_IGN);
	}
	s->shut_ev = evtimer_new(base, shut_cb, s);
	s->lev = evconnlistener_new_bind(
		base, accept_cb, s,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
		511, (struct sockaddr *)&ss, sslen);
	if (!s->shut_ev || !s->lev) {
		rc = veil_errf(VEIL_EIO, "http server: cannot listen on %s:%u: %s",
			       addr, opts->port, strerror(errno));
		goto fail;
	}
	if (getsockname(evconnlistener_get_fd(s->lev), (struct sockaddr *)&ss,
			&sl) == 0)
		s->port = ntohs(ss.ss_family == AF_INET6
					? ((struct sockaddr_in6 *)&ss)->sin6_port
					: ((struct sockaddr_in *)&ss)->sin_port);
	VEIL_INFO(MOD, "listening on %s:%u (%s)", addr, s->port,
		  s->ssl_ctx ? "TLS" : "plain HTTP");
	*out = s;
	return 0;
fail:
	veil_http_server_free(s);
	return rc;
}

uint16_t veil_http_server_port(const struct veil_http_server *s)
{
	return s->port;
}

size_t veil_http_server_conns(const struct veil_http_server *s)
{
	return s->nconns;
}

int veil_http_route(struct veil_http_server *s, const char *method,
		    const char *path, bool prefix, veil_http_handler h,
		    void *arg)
{
	struct route *rt;

	if (!s || !path || path[0] != '/' || !h ||
	    (method && !header_text_ok(method, true)))
		return veil_errf(VEIL_EINVAL, "http route: bad arguments");
	if (!(rt = calloc(1, sizeof(*rt))))
		return VEIL_ENOMEM;
	rt->path = strdup(path);
	rt->method = method ? strdup(method) : NULL;
	if (!rt->path || (method && !rt->method)) {
		free(rt->path);
		free(rt->method);
		free(rt);
		return VEIL_ENOMEM;
	}
	rt->plen = strlen(path);
	rt->prefix = prefix;
	rt->h = h;
	rt->arg = arg;
	*s->routes_tail = rt;
	s->routes_tail = &rt->next;
	return 0;
}

void veil_http_server_free(struct veil_http_server *s)
{
	struct route *rt;

	if (!s)
		return;
	s->freeing = true;
	while (s->conns)
		conn_free(s->conns);
	if (s->lev)
		evconnlistener_free(s->lev);
	if (s->shut_ev)
		event_free(s->shut_ev);
	while ((rt = s->routes) != NULL) {
		s->routes = rt->next;
		free(rt->path);
		free(rt->method);
		free(rt);
	}
	SSL_CTX_free(s->ssl_ctx);
	free(s);
}
