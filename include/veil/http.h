/* veil http: the HTTP layer the servers (veil-node, veil-gateway,
 * veil-proxy) are built on.
 *
 *  - server: HTTP/1.1 (plain or TLS) on a caller's libevent event_base, with a
 *    route table, capped requests, JSON / OpenAI-shaped error replies,
 *    chunked streaming and server-sent events, a close callback when the
 *    client goes away, per-connection timeouts, a connection cap and graceful
 *    shutdown;
 *  - channel: the one thread-safe way for worker threads to hand results to
 *    the loop (bounded; full is VEIL_EBUSY, never a wait);
 *  - client: libcurl multi driven by the same event_base, streaming callbacks
 *    with pause/resume, timeouts, SPKI SHA-256 pinning; plus a synchronous
 *    helper for CLIs and tests;
 *  - SSE parser: incremental and bounded, for clients relaying streams;
 *  - TLS helpers: self-signed certificates, SPKI SHA-256.
 *
 * Threading: every function here except veil_http_chan_post(),
 * veil_http_fetch() and the SSE parser / TLS helpers must be called on the
 * thread running the event_base the object was created on.
 *
 * The server is built on libevent's evconnlistener, bufferevent and
 * bufferevent_openssl with its own strict HTTP/1.1 request framing: evhttp in
 * libevent 2.1 has no hook to answer oversized headers with 431, oversized
 * bodies with a JSON 413, or to cap connections with 503. */
#ifndef VEIL_HTTP_H
#define VEIL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "veil/base.h"

struct event_base;

/* ======================================================================
 * Server
 * ====================================================================== */

struct veil_http_server;
struct veil_http_req;

/* Zero means "the default" for every numeric field. */
struct veil_http_server_opts {
	const char *addr;         /* numeric IPv4/IPv6 address; "127.0.0.1" */
	uint16_t port;            /* 0 = ephemeral; see veil_http_server_port */
	EVP_PKEY *tls_key;        /* both set: TLS (1.2 minimum, 1.3 preferred) */
	X509 *tls_cert;           /* the server takes its own references */
	size_t max_conns;         /* 1024; beyond it: 503 + Retry-After, close */
	size_t max_header_bytes;  /* 16 KiB request line + headers; over: 431 */
	size_t max_headers;       /* 64 header fields; over: 431 */
	size_t max_body;          /* 1 MiB; over: 413 (before reading it all) */
	size_t max_query_params;  /* 32; over: 400 */
	size_t max_output;        /* 1 MiB queued response bytes per stream */
	unsigned idle_timeout_ms; /* 30 s: keep-alive idle, or a stalled read */
	unsigned request_timeout_ms; /* 30 s: whole head + body; over: 408 */
	unsigned write_timeout_ms;   /* 60 s: a client not reading; close */
	unsigned retry_after_s;   /* 1: Retry-After on 503/429 by default */
};

typedef void (*veil_http_handler)(struct veil_http_req *req, void *arg);

/* Creates a listening server on `base`.  Ignores SIGPIPE process-wide (a
 * server must survive writes to a closed socket).  Free with
 * veil_http_server_free(). */
int veil_http_server_new(struct event_base *base,
			 const struct veil_http_server_opts *opts,
			 struct veil_http_server **out);

/* The bound port (the real one when opts.port was 0). */
uint16_t veil_http_server_port(const struct veil_http_server *s);

/* Adds a route.  `method` NULL matches any method.  `path` is matched
 * exactly, or as a prefix when `prefix` is true; the first matching route in
 * the order added wins.  A path that matches only routes of other methods gets
 * 405 with Allow; no match at all gets 404.  Strings are copied. */
int veil_http_route(struct veil_http_server *s, const char *method,
		    const char *path, bool prefix, veil_http_handler h,
		    void *arg);

/* Graceful shutdown: stops accepting, closes idle keep-alive connections,
 * lets requests in flight finish (their responses carry Connection: close),
 * and calls done(arg) on the loop once no connection is left, or after
 * grace_ms when the rest are closed by force (their close callbacks fire).
 * `done` may be NULL.  Calling it twice is harmless. */
void veil_http_server_shutdown(struct veil_http_server *s, unsigned grace_ms,
			       void (*done)(void *arg), void *arg);

/* Closes every connection at once (close callbacks fire for requests not yet
 * completed; those requests stay valid until completed by their owner) and
 * frees the server.  NULL is fine.  libevent finishes freeing connections on
 * the loop: run it once more (EVLOOP_NONBLOCK) before event_base_free(). */
void veil_http_server_free(struct veil_http_server *s);

/* Open connections right now (for tests and metrics). */
size_t veil_http_server_conns(const struct veil_http_server *s);

/* ---- the request ------------------------------------------------------

 * A handler receives a request and must complete it exactly once, now or
 * later (on the loop thread): veil_http_reply*() or veil_http_stream_end() /
 * veil_http_sse_done().  Completing frees it; the caller must not touch it
 * afterwards.  If the client goes away first, the close callback fires and
 * the request stays valid (writes return VEIL_ECANCELED) until completed. */

const char *veil_http_req_method(const struct veil_http_req *r);
/* The raw path, without the query, not percent-decoded. */
const char *veil_http_req_path(const struct veil_http_req *r);
/* The percent-decoded value of the first query parameter `name` ("" for
 * "?name" or "?name="), NULL when absent. */
const char *veil_http_req_query(const struct veil_http_req *r,
				const char *name);
size_t veil_http_req_query_count(const struct veil_http_req *r);
/* The first header `name` (case-insensitive), surrounding spaces trimmed;
 * NULL when absent. */
const char *veil_http_req_header(const struct veil_http_req *r,
				 const char *name);
/* The request body (chunked uploads decoded), NUL-terminated; "" when none. */
const uint8_t *veil_http_req_body(const struct veil_http_req *r, size_t *len);
/* "ADDR:PORT" of the peer. */
const char *veil_http_req_remote(const struct veil_http_req *r);
/* A per-server sequence number for logs. */
uint64_t veil_http_req_id(const struct veil_http_req *r);
/* True once the client has gone away (writes will fail). */
bool veil_http_req_gone(const struct veil_http_req *r);

/* Called once, on the loop, when the client disconnects (or the server is
 * shut down by force) before the request was completed: cancel the work, then
 * complete the request to free it. */
void veil_http_req_on_close(struct veil_http_req *r,
			    void (*cb)(struct veil_http_req *r, void *arg),
			    void *arg);

/* ---- responses ----------------------------------------------------------- */

/* Adds a response header (before the reply or stream starts).  Name and value
 * must not contain CR, LF or NUL (VEIL_EINVAL). */
int veil_http_add_header(struct veil_http_req *r, const char *name,
			 const char *value);
/* Adds Retry-After: <seconds>. */
int veil_http_set_retry_after(struct veil_http_req *r, unsigned seconds);

/* Replies with a whole body and completes the request.  Returns VEIL_ECANCELED
 * when the client had gone (the request is freed all the same). */
int veil_http_reply(struct veil_http_req *r, int status,
		    const char *content_type, const void *body, size_t len);
/* Replies with `obj` serialized (application/json) and completes.  Takes
 * ownership of `obj` (json_decref); a NULL obj becomes a 500. */
int veil_http_reply_json(struct veil_http_req *r, int status, json_t *obj);
/* OpenAI's error shape {"error":{"message","type","code"}} and completes.
 * `type` NULL picks one from the status (veil_http_error_type); `code` NULL
 * becomes JSON null.  429 and 503 get Retry-After when none was added. */
int veil_http_reply_error(struct veil_http_req *r, int status,
			  const char *type, const char *code,
			  const char *fmt, ...) VEIL_PRINTF(5, 6);
/* "invalid_request_error", "authentication_error", "permission_error",
 * "not_found_error", "rate_limit_error", "server_error". */
const char *veil_http_error_type(int status);
const char *veil_http_status_text(int status);

/* Streaming: starts a chunked response (HTTP/1.0 clients get a body ended by
 * closing the connection).  Writes queue bytes on the loop; VEIL_EBUSY when
 * more than opts.max_output bytes are already queued (the client reads too
 * slowly: wait for on_drain or give up), VEIL_ECANCELED when the client is
 * gone.  stream_end completes the request. */
int veil_http_stream_start(struct veil_http_req *r, int status,
			   const char *content_type);
int veil_http_stream_write(struct veil_http_req *r, const void *p, size_t n);
int veil_http_stream_end(struct veil_http_req *r);
/* Bytes queued and not yet sent to the client. */
size_t veil_http_stream_pending(const struct veil_http_req *r);
/* Whether veil_http_stream_write would refuse the next write (VEIL_EBUSY):
 * for a writer that must not do irreversible work (seal a chunk) first. */
bool veil_http_stream_full(const struct veil_http_req *r);
/* Lets `extra` more bytes be queued past opts.max_output: a stream's last
 * events (an error, a receipt) after its client fell behind.  The caller
 * bounds what it writes. */
void veil_http_stream_allow(struct veil_http_req *r, size_t extra);
/* Called on the loop whenever the queued output has fully drained. */
void veil_http_req_on_drain(struct veil_http_req *r,
			    void (*cb)(struct veil_http_req *r, void *arg),
			    void *arg);

/* Server-sent events over a stream: text/event-stream, no caching. */
int veil_http_sse_start(struct veil_http_req *r);
/* One event "data: ...\n\n"; a `data` holding newlines is sent as several
 * data lines (a parser joins them back with "\n"); CR is not allowed
 * (VEIL_EINVAL).  `event` NULL for the default event type. */
int veil_http_sse_send(struct veil_http_req *r, const char *event,
		       const char *data, size_t len);
/* Sends "data: [DONE]\n\n" and completes the request. */
int veil_http_sse_done(struct veil_http_req *r);

/* ======================================================================
 * Channel: worker threads -> loop
 * ====================================================================== */

struct veil_http_chan;

/* A bounded FIFO of pointers from any thread to the loop of `base`.  `cb`
 * runs on the loop for each message, in the order posted.  `drop` (may be
 * NULL) receives messages still queued when the channel is freed. */
int veil_http_chan_new(struct event_base *base, size_t capacity,
		       void (*cb)(void *msg, void *arg),
		       void (*drop)(void *msg, void *arg), void *arg,
		       struct veil_http_chan **out);
/* Thread-safe.  VEIL_EBUSY when `capacity` messages are already queued: the
 * message is not taken, the caller still owns it.  NULL msg is VEIL_EINVAL. */
int veil_http_chan_post(struct veil_http_chan *c, void *msg);
/* Messages queued right now (thread-safe). */
size_t veil_http_chan_len(struct veil_http_chan *c);
/* On the loop thread, once no thread can post any more. */
void veil_http_chan_free(struct veil_http_chan *c);

/* ======================================================================
 * Client (libcurl multi on the event loop)
 * ====================================================================== */

struct veil_http_client;
struct veil_http_call;

/* Returned by on_data to pause the transfer (resume with
 * veil_http_call_resume). */
#define VEIL_HTTP_PAUSE 1

struct veil_http_request {
	const char *method;            /* NULL: GET, or POST when body set */
	const char *url;
	const char *const *headers;    /* NULL-terminated "Name: value" */
	const void *body;              /* copied at start */
	size_t body_len;
	unsigned timeout_ms;           /* whole transfer; 0 = 60 s */
	unsigned connect_timeout_ms;   /* 0 = 10 s */
	/* TLS: with pin_spki_sha256 set, the peer is accepted if and only if
	 * its leaf certificate's SubjectPublicKeyInfo hashes (SHA-256) to these
	 * 32 bytes (no CA, no host name: the pin is the identity).  Otherwise
	 * normal verification against ca_file or the system store. */
	const uint8_t *pin_spki_sha256;
	const char *ca_file;
	/* Optional extra check run in the handshake after the pin: return 1 to
	 * accept, 0 to refuse. */
	int (*verify)(void *arg, X509 *leaf);
	size_t max_response;           /* buffered body cap; 0 = 16 MiB */
	size_t max_response_headers;   /* 0 = 64 KiB */
	/* Called once when the final response head arrived. */
	void (*on_head)(void *arg, struct veil_http_call *call, int status);
	/* Streaming body: called per piece.  Return 0 to go on, VEIL_HTTP_PAUSE
	 * to pause, a negative VEIL_E* code to abort (on_done gets it).  When
	 * NULL the body is buffered (capped) and given to on_done. */
	int (*on_data)(void *arg, struct veil_http_call *call,
		       const uint8_t *p, size_t n);
	/* Called once at the end (rc 0 or VEIL_E*: VEIL_ETIMEDOUT,
	 * VEIL_EBADMSG for a refused peer certificate / pin, VEIL_ERANGE for a
	 * body over the cap, VEIL_EIO otherwise).  `status` is 0 when no
	 * response came.  The call is freed right after it returns. */
	void (*on_done)(void *arg, int rc, int status, const uint8_t *body,
			size_t len);
	void *arg;
};

int veil_http_client_new(struct event_base *base,
			 struct veil_http_client **out);
/* Cancels every call still running (no on_done) and frees.  NULL is fine. */
void veil_http_client_free(struct veil_http_client *c);

/* Starts a request; *out (optional) identifies it until on_done returns. */
int veil_http_client_start(struct veil_http_client *c,
			   const struct veil_http_request *rq,
			   struct veil_http_call **out);
/* Pause/resume receiving (backpressure when relaying).  Not from inside the
 * call's own on_data (return VEIL_HTTP_PAUSE there). */
void veil_http_call_pause(struct veil_http_call *call);
void veil_http_call_resume(struct veil_http_call *call);
/* Aborts and frees the call without calling on_done.  Not from inside its
 * own callbacks (return a negative code from on_data instead). */
void veil_http_call_cancel(struct veil_http_call *call);
/* A response header of the call (case-insensitive), valid during its
 * callbacks; NULL when absent. */
const char *veil_http_call_header(struct veil_http_call *call,
				  const char *name);

/* Synchronous helper on a private event loop.  *status gets the HTTP status;
 * the body is appended to `body` (its max caps it; NULL to discard). */
int veil_http_fetch(const struct veil_http_request *rq, int *status,
		    struct veil_buf *body);

/* ======================================================================
 * Server-sent events parser (WHATWG HTML "event stream" interpretation)
 * ====================================================================== */

/* One dispatched event: `event` is "message" unless an event field named it;
 * `data` is the data lines joined with "\n" (NUL-terminated); `id` is the
 * last event id seen ("" when none).  Return 0 to go on, non-zero to stop:
 * veil_http_sse_feed then returns it. */
typedef int (*veil_http_sse_cb)(void *arg, const char *event,
				const char *data, size_t len, const char *id);

struct veil_http_sse_parser {
	struct veil_buf line;   /* current line, capped */
	struct veil_buf data;   /* current event's data, capped */
	char event[64];
	char id[128];
	bool cr;                /* last byte was CR: a following LF is eaten */
	bool started;           /* past a leading BOM */
	bool failed;
	veil_http_sse_cb cb;
	void *arg;
	uint64_t retry_ms;      /* last valid retry field, 0 when none */
};

/* max_line caps one line, max_event one event's data (0 = 64 KiB / 1 MiB). */
void veil_http_sse_init(struct veil_http_sse_parser *p, size_t max_line,
			size_t max_event, veil_http_sse_cb cb, void *arg);
/* Feeds bytes in any split.  VEIL_ERANGE when a line or an event passes its
 * cap (the parser is then failed and refuses more), or the callback's
 * non-zero return. */
int veil_http_sse_feed(struct veil_http_sse_parser *p, const uint8_t *buf,
		       size_t n);
/* End of stream: true when bytes of an unfinished event were pending (a
 * truncated stream; that event is dropped, as the spec says). */
bool veil_http_sse_truncated(const struct veil_http_sse_parser *p);
void veil_http_sse_free(struct veil_http_sse_parser *p);

/* ======================================================================
 * TLS helpers
 * ====================================================================== */

enum veil_http_keytype {
	VEIL_HTTP_KEY_P256 = 0,
	VEIL_HTTP_KEY_ED25519 = 1,
};

/* A fresh key and a self-signed X.509 v3 certificate for it, CN "veil",
 * SAN IP:127.0.0.1, IP:::1, DNS:localhost (plus `dns_name` when not NULL),
 * valid from one hour ago for `days` days.  Free with EVP_PKEY_free /
 * X509_free. */
int veil_http_selfsigned(enum veil_http_keytype type, const char *dns_name,
			 unsigned days, EVP_PKEY **key, X509 **cert);

/* SHA-256 of the DER SubjectPublicKeyInfo: what clients pin. */
int veil_http_spki_sha256_key(EVP_PKEY *key, uint8_t out[32]);
int veil_http_spki_sha256_cert(X509 *cert, uint8_t out[32]);

/* Server SSL_CTX: TLS 1.2 minimum, the given key and certificate, no
 * renegotiation, no compression, no session tickets.  SSL_CTX_free. */
int veil_http_tls_server_ctx(EVP_PKEY *key, X509 *cert, SSL_CTX **out);

#endif
