/* Private to src/lib/http: the HTTP/1.1 request-head parser and the chunked
 * body decoder as pure functions over bytes, so that the server
 * (server.c) and its fuzzer (tests/fuzz/fuzz_http_head.c) run the same code.
 *
 * RFC 9112: the request line and header fields are parsed strictly (no
 * obs-fold, no whitespace before the colon, no control bytes), Content-Length
 * together with Transfer-Encoding is refused (request smuggling), and only the
 * "chunked" coding is accepted.  Failures are an HTTP status (400, 413, 417,
 * 431, 500, 501, 505) with a short reason that names the field. */
#ifndef VEIL_HTTP_PARSE_H
#define VEIL_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest chunk-size, chunk-end or trailer line, without its line end. */
#define VEIL_HTTP_CHUNK_LINE_MAX 1024
/* Longest method token. */
#define VEIL_HTTP_METHOD_MAX 32
/* Largest Content-Length accepted (18 decimal digits). */
#define VEIL_HTTP_CL_DIGITS_MAX 18

struct veil_http_hdr {
	const char *name;  /* NUL-terminated, inside veil_http_head.buf */
	const char *value; /* trimmed of SP/HTAB on both sides, likewise */
};

struct veil_http_qparam {
	char *name;  /* percent-decoded, own allocation */
	char *value;
};

/* A parsed request head.  Everything points into or is owned by it; free with
 * veil_http_head_free(). */
struct veil_http_head {
	char *buf;          /* own NUL-terminated copy of the head, split in place */
	size_t len;         /* bytes of head copied (excluding the added NUL) */
	const char *method; /* inside buf */
	char *path;         /* own copy, without the query */
	int minor;          /* HTTP/1.<minor> */
	struct veil_http_hdr *hdrs;
	size_t nhdrs;       /* <= max_headers */
	struct veil_http_qparam *qps;
	size_t nqps;        /* <= max_query_params */
	uint64_t content_length;
	bool has_cl, chunked_in, expect_continue, want_close, want_keepalive;
};

/* Looks for the blank line that ends a request head in p[0..n), starting the
 * scan at byte `from` (a restart point: bytes before it were already scanned;
 * the scan backs up two bytes so a line end split across calls is found).
 * Returns the head's length including the blank line, or 0 when p[0..n) holds
 * no complete head. */
size_t veil_http_head_end(const uint8_t *p, size_t n, size_t from);

/* Parses the request head p[0..n) (request line, header fields, the blank
 * line; at most one head: bytes after the first empty line are ignored).
 * Writes *h in every case (zeroed first); the caller frees it with
 * veil_http_head_free() whatever the result.  Returns 0, or an HTTP status
 * with *why set to a static string. */
int veil_http_head_parse(const uint8_t *p, size_t n, size_t max_headers,
			 size_t max_query_params, struct veil_http_head *h,
			 const char **why);

void veil_http_head_free(struct veil_http_head *h);

/* ---- chunked transfer coding (RFC 9112 §7.1) --------------------------- */

enum veil_http_ck_state {
	VEIL_HTTP_CK_SIZE,    /* expecting a chunk-size line */
	VEIL_HTTP_CK_DATA,    /* inside chunk data */
	VEIL_HTTP_CK_CRLF,    /* expecting the empty line after chunk data */
	VEIL_HTTP_CK_TRAILER, /* trailer section (fields are skipped) */
	VEIL_HTTP_CK_DONE,    /* the message body is complete */
};

struct veil_http_chunked {
	enum veil_http_ck_state st;
	uint64_t left;        /* data bytes left in the current chunk */
	uint64_t total;       /* sum of the chunk sizes so far (<= max_body) */
	uint64_t max_body;
	size_t trailer_bytes; /* trailer section so far, 2 bytes per line end */
	size_t max_trailer;
};

void veil_http_chunked_init(struct veil_http_chunked *d, uint64_t max_body,
			    size_t max_trailer);

/* How many buffered bytes veil_http_chunked_step() may look at, given `avail`
 * buffered: a step never reads more, and its outcome does not depend on
 * anything past them. */
size_t veil_http_chunked_view(const struct veil_http_chunked *d, size_t avail);

/* Advances the decoder over the buffered, not yet consumed input p[0..n).
 * Returns 0 with *used set to the bytes consumed (0: more input is needed, or
 * d->st is VEIL_HTTP_CK_DONE) and *data to how many of them, from the start,
 * are body bytes (either 0 or *used); or an HTTP status (400, 413, 431) with
 * *why set, after which the decoder must not be used again.  A line is ended
 * by LF with an optional CR before it. */
int veil_http_chunked_step(struct veil_http_chunked *d, const uint8_t *p,
			   size_t n, size_t *used, size_t *data,
			   const char **why);

#endif
