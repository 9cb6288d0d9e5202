/* veil hconn module: a small HTTP/1.1 client for the hot path of a server on
 * a libevent loop — kept-alive pooled connections to one upstream, TLS
 * pinned to an attested key — and the incremental response parser it reads
 * answers with.
 *
 * Why not the libcurl client of veil/http.h (which health checks,
 * attestation fetches and the CLIs keep using): per request curl set up an
 * easy handle, options and header lists, checked a kept connection's
 * liveness with two recv(MSG_PEEK), read the proxy environment
 * (curl_getenv), polled after each read and re-created its socket event per
 * state change; each TLS record took two recv (header, body); and its
 * connection cache, sized by the handles alive at the moment, closed
 * kept-alive connections under load so that some requests paid a fresh
 * handshake.  Here:
 *
 *  - a pool (struct veil_hconn_pool) keeps idle connections alive, most
 *    recently used first, at most idle_max, each closed after idle_ms quiet
 *    or when the peer closes it; a request takes an idle one made for the
 *    same origin URL and pin, or opens a new one — it never waits;
 *  - a TLS connection with a pin succeeds only if the leaf certificate's
 *    SubjectPublicKeyInfo hashes (SHA-256) to the pin: no CA, no host name,
 *    no session resumption or tickets (a resumed session would skip the
 *    certificate), no renegotiation;
 *  - the request is written straight from the caller's bytes (head + body:
 *    a body up to 16 KiB goes in the same write as the head); the answer is
 *    parsed as it arrives (veil_hconn_resp_step) and handed on in place, as
 *    spans of one read buffer per loop (struct veil_hconn);
 *  - the socket is driven directly (non-blocking OpenSSL on the fd, TLS
 *    read-ahead: one read(2) per burst of records), so a request on a kept
 *    connection costs one write, usually one read and no epoll change;
 *  - a request on a reused connection the peer had closed meanwhile (EOF or
 *    reset before any byte of the answer) is sent once more on a fresh
 *    connection, as curl and nginx do; every other failure goes to on_done.
 *
 * Threading: everything but the response parser runs on the thread of the
 * event_base given to veil_hconn_new (callbacks run there too).  Separate
 * loops need separate struct veil_hconn. */
#ifndef VEIL_HCONN_H
#define VEIL_HCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "veil/base.h"

struct event_base;

#define VEIL_HCONN_URL_MAX 1024      /* an origin "scheme://host[:port]" */
#define VEIL_HCONN_LABEL_MAX 96      /* the peer's name in error details */

/* ======================================================================
 * The response parser (pure; usable on its own)
 * ======================================================================
 * Fed an HTTP/1.1 answer's bytes as they arrive, in any split: the status
 * line and header fields (strict RFC 9112 syntax: no obs-fold, no control
 * bytes, one Content-Length of digits, Transfer-Encoding only "chunked" and
 * never with Content-Length — the request smuggling shapes are refused),
 * then the body by Content-Length, by the chunked coding (extensions and
 * trailer fields skipped), or until the connection closes.  1xx heads
 * before the final one are skipped.  Body bytes are handed back as spans of
 * the input, never copied; the head is kept (header lookups stay valid until
 * veil_hconn_resp_free).  Fuzzed by tests/fuzz/fuzz_hconn_resp.c. */

#define VEIL_HCONN_HEAD_MAX (128u * 1024) /* X-Veil-Receipt alone may be 88 KiB */
#define VEIL_HCONN_HEADERS_MAX 64
#define VEIL_HCONN_LINE_MAX 1024          /* a chunk-size or trailer line */

enum veil_hconn_resp_state {
	VEIL_HCONN_RESP_HEAD,       /* reading the status line and header fields */
	VEIL_HCONN_RESP_BODY_CL,    /* `left` body bytes to come */
	VEIL_HCONN_RESP_CHUNK_SIZE, /* a chunk-size line */
	VEIL_HCONN_RESP_CHUNK_DATA, /* `left` bytes of chunk data */
	VEIL_HCONN_RESP_CHUNK_END,  /* the line end after chunk data */
	VEIL_HCONN_RESP_TRAILER,    /* trailer fields, up to the empty line */
	VEIL_HCONN_RESP_BODY_EOF,   /* everything until the connection closes */
	VEIL_HCONN_RESP_DONE,       /* the answer is complete (or failed) */
};

struct veil_hconn_resp {
	enum veil_hconn_resp_state st;
	int status;               /* valid once head_done */
	bool head_done;
	bool keep_alive;          /* the connection may carry another request */
	struct veil_buf head;     /* the final head, split in place once parsed */
	size_t nhdr;
	uint32_t hdr[VEIL_HCONN_HEADERS_MAX][2]; /* name, value offsets in head */
	uint64_t left;
	uint64_t body, max_body;  /* body bytes so far, and the cap */
	char line[VEIL_HCONN_LINE_MAX + 1];
	size_t line_len;
	size_t trailer;           /* trailer bytes so far */
};

/* max_body: body bytes allowed (VEIL_ERANGE beyond). */
void veil_hconn_resp_init(struct veil_hconn_resp *r, uint64_t max_body);
void veil_hconn_resp_free(struct veil_hconn_resp *r);
/* Consumes some of p[0..n): *used bytes, of which the first *data (0 or
 * *used) are body bytes.  Stops right after the head (head_done turns
 * true: the caller may look at it before any body byte) and at the end of
 * the answer (st VEIL_HCONN_RESP_DONE; bytes after it are not consumed).
 * *used is 0 only when n is 0 or the answer is done.  VEIL_EFORMAT
 * (malformed, with a detail) or VEIL_ERANGE (over a cap); the parser is
 * then spent. */
int veil_hconn_resp_step(struct veil_hconn_resp *r, const uint8_t *p, size_t n,
			 size_t *used, size_t *data);
/* The connection closed: 0 when that ends the answer (a body read until
 * close; st becomes VEIL_HCONN_RESP_DONE) or it was complete, else
 * VEIL_EIO. */
int veil_hconn_resp_eof(struct veil_hconn_resp *r);
/* The first header field `name` (case-insensitive), value trimmed; NULL
 * when absent or before the head is complete. */
const char *veil_hconn_resp_header(const struct veil_hconn_resp *r, const char *name);

/* ======================================================================
 * The client
 * ====================================================================== */

struct veil_hconn;        /* one per loop: TLS context, resolver, read buffer */
struct veil_hconn_pool;   /* idle connections of one upstream */
struct veil_hconn_call;   /* one request */

/* The client of `base`'s loop.  Free with veil_hconn_free() after every
 * pool is freed and every call has ended (the loop's owner does it last). */
int veil_hconn_new(struct event_base *base, struct veil_hconn **out);
void veil_hconn_free(struct veil_hconn *h);

/* A pool: at most idle_max idle connections (0: 256), each closed after
 * idle_ms of quiet (0: 25 s, below the 30 s idle timeout of the veil
 * servers, so that we close first).  Connections are kept per (origin URL,
 * pin) of the request that made them and reused only for a request with the
 * same pair. */
int veil_hconn_pool_new(struct veil_hconn *h, unsigned idle_max, unsigned idle_ms,
			struct veil_hconn_pool **out);
/* Closes the idle connections (the upstream failed or changed); calls in
 * flight go on and may pool their connection afterwards. */
void veil_hconn_pool_flush(struct veil_hconn_pool *p);
/* Closes the idle connections and keeps no more: calls in flight finish,
 * their connections are closed after them. */
void veil_hconn_pool_close(struct veil_hconn_pool *p);
/* Closes the pool for its owner (as veil_hconn_pool_close); it is freed
 * when its last call ends.  NULL is fine. */
void veil_hconn_pool_free(struct veil_hconn_pool *p);

struct veil_hconn_request {
	/* the upstream: "http://" or "https://" host (name, IPv4, [IPv6]) and
	 * an optional port, nothing after it (at most VEIL_HCONN_URL_MAX) */
	const char *url;
	/* https: SHA-256 of the peer's SubjectPublicKeyInfo (required: there
	 * is no CA verification here); http: NULL */
	const uint8_t *pin;
	const char *label;             /* the peer in error details ("node n-1") */
	const char *method;            /* "POST", "GET" */
	const char *path;              /* "/v1/chat/completions" */
	const char *const *headers;    /* NULL-terminated "Name: value"; copied */
	/* borrowed: valid until on_done / cancel, or until veil_hconn_sent
	 * says it is no longer read */
	const uint8_t *body;
	size_t body_len;
	unsigned timeout_ms;           /* the whole answer, from connected; 0 = 60 s */
	unsigned connect_timeout_ms;   /* TCP + TLS; 0 = 10 s */
	uint64_t max_response;         /* body cap (VEIL_ERANGE); 0 = 16 MiB */
	/* the final head is in (veil_hconn_header works from here on) */
	void (*on_head)(void *arg, struct veil_hconn_call *call, int status);
	/* a piece of the body, a span of the read buffer valid during the call:
	 * 0 to go on (the bytes are taken; veil_hconn_pause may be called
	 * here to take no more), a negative VEIL_E* to abort (on_done gets
	 * it).  NULL: the body is buffered (capped) and given to on_done. */
	int (*on_data)(void *arg, struct veil_hconn_call *call, const uint8_t *p, size_t n);
	/* once, then the call is freed: rc 0, VEIL_ETIMEDOUT (the whole
	 * request was written and the answer did not complete within
	 * timeout_ms: the peer may be working on it — a slow answer, not an
	 * unreachable peer), VEIL_EBADMSG (the
	 * peer's TLS key is not the pin: only the pin check gives it),
	 * VEIL_EFORMAT (the answer is malformed HTTP), VEIL_ERANGE (over a
	 * cap), VEIL_EIO (the connection failed or broke, TLS errors other
	 * than the pin included; so is a connect, handshake or request write
	 * that does not finish in time: "connect timed out"), or on_data's
	 * code; status 0 when no
	 * head came (or the answer turned out malformed) */
	void (*on_done)(void *arg, int rc, int status, const uint8_t *body, size_t len);
	void *arg;
};

/* Starts a request; failures after it returned 0 come through on_done
 * (never from inside this call).  VEIL_EINVAL: a bad request (URL, CR/LF in
 * a header, no pin for https); VEIL_ERANGE: head over 4 KiB.  *out
 * (optional) names the call until on_done returns or it is cancelled. */
int veil_hconn_start(struct veil_hconn_pool *p, const struct veil_hconn_request *rq,
		     struct veil_hconn_call **out);
/* Stops / restarts reading the answer (backpressure); from on_data too.
 * Bytes already read wait in the call; resume hands them over from the
 * loop, not from inside resume.  A pause after the answer's last bytes does
 * not hold on_done back: the call is gone once on_done has run (resume it
 * only while it is known to be alive). */
void veil_hconn_pause(struct veil_hconn_call *call);
void veil_hconn_resume(struct veil_hconn_call *call);
/* Aborts without on_done (the connection is closed); from on_head /
 * on_data too, not from on_done.  NULL is fine. */
void veil_hconn_cancel(struct veil_hconn_call *call);
/* Whether the whole request has been written to the peer and the caller's
 * body will not be read again (hconn may send a request once more, from
 * the body, when a kept-alive connection closes before any answer byte:
 * not after this turned true).  A caller that stops caring about the
 * answer but wants it run to its end (a client gone, the work to be billed)
 * may then free the body and keep reading; before, cancelling is right
 * (the peer has not got the request).  NULL: false. */
bool veil_hconn_sent(const struct veil_hconn_call *call);
/* A header of the answer (from on_head on); NULL when absent. */
const char *veil_hconn_header(struct veil_hconn_call *call, const char *name);

#endif
