/* The hconn client (include/veil/hconn.h): pooled, pinned HTTP/1.1
 * requests driven on the caller's libevent loop.  Began as veil-gateway's
 * client to its nodes (src/gateway/upstream.c, now a thin wrapper over
 * this); veil-proxy sends its relayed requests to the gateway through it.
 *
 * Life cycle: a call holds a reference on its pool; a connection belongs to
 * its call while busy and to the pool's idle list while idle (c->pool set
 * only then).  Every path that ends a call goes through call_finish (with
 * on_done) or call_free (cancelled); a connection is either pooled in
 * call_complete or freed.
 *
 * Threading: the loop thread of struct veil_hconn only. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "veil/hconn.h"
#include "veil/http.h"

#define IDLE_MAX_DEFAULT 256
#define IDLE_MS_DEFAULT 25000 /* below a veil server's idle timeout (30 s) */
#define HEAD_MAX 4096         /* our request head */
#define BODY_INLINE 16384     /* bodies sent in one piece with the head */
#define READ_BUF 65536        /* the loop's read buffer (shared by every connection) */

struct veil_hconn {
	struct event_base *base;
	SSL_CTX *ctx;
	struct evdns_base *dns;       /* host names (made on first use) */
	uint8_t *rbuf;                /* READ_BUF bytes, loop thread only */
};

struct conn;

struct veil_hconn_pool {
	struct veil_hconn *h;
	struct conn *idle;            /* kept-alive connections, newest first */
	unsigned nidle, idle_max, idle_ms;
	unsigned refs;                /* the owner's and one per call */
	bool closed;                  /* keeps no more connections */
};

enum conn_st {
	CONN_CONNECTING,   /* TCP connect in progress (waits for writability) */
	CONN_HANDSHAKE,    /* TLS handshake */
	CONN_OPEN,
};

struct conn {
	struct conn *prev, *next;     /* the pool's idle list */
	struct veil_hconn_pool *pool; /* set while idle */
	struct veil_hconn *h;
	int fd;
	SSL *ssl;                     /* NULL for http:// */
	struct event *rev, *wev;      /* the socket's read and write watches */
	bool rd_on, wr_on;            /* added (a change costs an epoll_ctl) */
	enum conn_st st;
	struct veil_hconn_call *call; /* the request on it; NULL when idle */
	char url[VEIL_HCONN_URL_MAX + 1]; /* made for this origin ... */
	bool https;
	uint8_t pin[32];              /* ... and this pin */
	bool connected;               /* TCP (and TLS) up */
	bool pin_failed;              /* the handshake met another key */
	bool tls_failed;              /* a TLS error (not the pin): VEIL_EIO */
	bool eof;                     /* closed, or broken (err set) */
	int err;                      /* VEIL_E* of a broken connection */
	bool tls_want_read;           /* SSL_write / handshake waits for readability */
	/* the request's bytes still to write (the call's head, then its body) */
	const uint8_t *out[2];
	size_t out_len[2];
	/* answer bytes read but not yet taken (the caller paused mid-read) */
	uint8_t *left;
	size_t left_len, left_off;
};

struct veil_hconn_call {
	struct veil_hconn *h;
	struct veil_hconn_pool *pool; /* ref held */
	struct conn *c;
	struct veil_hconn_request rq; /* callbacks and limits; body borrowed */
	char url[VEIL_HCONN_URL_MAX + 1];
	char label[VEIL_HCONN_LABEL_MAX + 1];
	bool https;
	uint8_t pin[32];
	char *head;                   /* the request head (sent again on a retry) */
	size_t head_len;
	bool body_in_head;            /* a small body is in head too */
	struct veil_hconn_resp resp;
	struct veil_buf body;         /* the answer's body when no on_data */
	struct event *timer;          /* connect / whole-answer deadline; failures */
	struct evdns_getaddrinfo_request *dns;
	uint64_t start_ns;
	int fail_rc;                  /* a failure to report from the timer */
	bool reused;                  /* on a pooled connection */
	bool retried;                 /* already sent once more */
	bool got_bytes;               /* a byte of the answer came */
	bool sent;                    /* all of the request is written (this try) */
	bool head_seen;
	bool paused;
	bool in_cb;                   /* inside the read loop: free later */
	bool dead;                    /* cancelled inside the read loop */
};

static int conn_ex_idx = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ex_init(void)
{
	conn_ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- connections ----------------------------------------------------------- */

static void pool_unref(struct veil_hconn_pool *p)
{
	if (p && --p->refs == 0)
		free(p);
}

static void idle_unlink(struct conn *c)
{
	struct veil_hconn_pool *p = c->pool;

	if (!p)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		p->idle = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->pool = NULL;
	p->nidle--;
}

static void conn_free(struct conn *c)
{
	if (!c)
		return;
	idle_unlink(c);
	if (c->rev)
		event_free(c->rev);
	if (c->wev)
		event_free(c->wev);
	if (c->ssl) {
		/* no close_notify wait: the connection is done with */
		SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c->left);
	free(c);
}

void veil_hconn_pool_flush(struct veil_hconn_pool *p)
{
	if (!p)
		return;
	while (p->idle)
		conn_free(p->idle);
}

void veil_hconn_pool_close(struct veil_hconn_pool *p)
{
	if (!p)
		return;
	p->closed = true;
	veil_hconn_pool_flush(p);
}

void veil_hconn_pool_free(struct veil_hconn_pool *p)
{
	if (!p)
		return;
	veil_hconn_pool_close(p);
	pool_unref(p);
}

int veil_hconn_pool_new(struct veil_hconn *h, unsigned idle_max, unsigned idle_ms,
			struct veil_hconn_pool **out)
{
	struct veil_hconn_pool *p;

	if (!h || !out)
		return veil_errf(VEIL_EINVAL, "hconn: pool without a client");
	if (!(p = calloc(1, sizeof(*p))))
		return VEIL_ENOMEM;
	p->h = h;
	p->idle_max = idle_max ? idle_max : IDLE_MAX_DEFAULT;
	p->idle_ms = idle_ms ? idle_ms : IDLE_MS_DEFAULT;
	p->refs = 1;
	*out = p;
	return 0;
}

/* The socket's watches: an epoll change only when one changes, so that a
 * request on a kept-alive connection that is written at once and read as
 * it comes costs none.  (An idle connection's read watch carries its idle
 * timeout; taking it from the pool removes just the timer.) */
static void conn_watch(struct conn *c, bool rd, bool wr)
{
	if (rd != c->rd_on) {
		if (rd)
			event_add(c->rev, NULL);
		else
			event_del(c->rev);
		c->rd_on = rd;
	}
	if (wr != c->wr_on) {
		if (wr)
			event_add(c->wev, NULL);
		else
			event_del(c->wev);
		c->wr_on = wr;
	}
}

/* The pin check, in the handshake: replaces chain verification. */
static int verify_cb(X509_STORE_CTX *xs, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct conn *c = ssl ? SSL_get_ex_data(ssl, conn_ex_idx) : NULL;
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);
	uint8_t h[32];

	(void)arg;
	if (c && leaf && veil_http_spki_sha256_cert(leaf, h) == 0 &&
	    CRYPTO_memcmp(h, c->pin, 32) == 0)
		return 1;
	if (c)
		c->pin_failed = true;
	X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

int veil_hconn_new(struct event_base *base, struct veil_hconn **out)
{
	struct veil_hconn *h = NULL;
	SSL_CTX *ctx = NULL;
	int rc = VEIL_ENOMEM;

	if (!base || !out)
		return veil_errf(VEIL_EINVAL, "hconn: no event base");
	pthread_once(&ex_once, ex_init);
	if (conn_ex_idx < 0)
		return veil_errf(VEIL_EINTERNAL, "hconn: no SSL ex_data index");
	if (!(h = calloc(1, sizeof(*h))) || !(h->rbuf = malloc(READ_BUF)))
		goto fail;
	if (!(ctx = SSL_CTX_new(TLS_client_method()))) {
		rc = veil_errf(VEIL_ENOMEM, "hconn: SSL_CTX_new failed");
		goto fail;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* a renegotiation would run the pin check again on a pooled
	 * connection; resumption would skip it */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					 SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* thousands of idle streams: no 34 KiB of buffers each while quiet */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE);
	/* one read(2) takes every record that has arrived, not a 5-byte
	 * header and then the record (the read loop below runs SSL_read
	 * until it wants more, so nothing stays buffered unseen) */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, verify_cb, NULL);
	h->ctx = ctx;
	h->base = base;
	*out = h;
	return 0;
fail:
	if (h)
		free(h->rbuf);
	free(h);
	return rc;
}

void veil_hconn_free(struct veil_hconn *h)
{
	if (!h)
		return;
	if (h->dns)
		evdns_base_free(h->dns, 0);
	SSL_CTX_free(h->ctx);
	free(h->rbuf);
	free(h);
}

/* ---- calls ------------------------------------------------------------------- */

static bool call_process(struct veil_hconn_call *call, const uint8_t *p, size_t n);
static void conn_cb(evutil_socket_t fd, short what, void *arg);
static int conn_open(struct veil_hconn_call *call);

/* The request copy holds the caller's headers (a proxy's API key) and, up
 * to BODY_INLINE, its body (a plaintext prompt through the gateway):
 * wiped before it is freed. */
static void head_free(struct veil_hconn_call *call)
{
	if (call->head) {
		veil_wipe(call->head, call->head_len);
		free(call->head);
		call->head = NULL;
	}
}

static void call_free(struct veil_hconn_call *call)
{
	if (call->dns)
		evdns_getaddrinfo_cancel(call->dns);
	if (call->timer)
		event_free(call->timer);
	veil_hconn_resp_free(&call->resp);
	veil_buf_free(&call->body);
	pool_unref(call->pool);
	head_free(call);
	free(call);
}

/* Reports the end of the call (on_done) and frees it; the connection has
 * been dealt with. */
static void call_finish(struct veil_hconn_call *call, int rc)
{
	int status = call->resp.head_done ? call->resp.status : 0;

	if (call->rq.on_done)
		call->rq.on_done(call->rq.arg, rc, status,
				 call->body.data ? call->body.data : (const uint8_t *)"",
				 call->body.len);
	call_free(call);
}

/* Ends the call with a failure: its connection is closed (its state is
 * unknown), on_done gets rc. */
static void call_fail(struct veil_hconn_call *call, int rc)
{
	if (call->c) {
		call->c->call = NULL;
		conn_free(call->c);
		call->c = NULL;
	}
	call_finish(call, rc);
}

/* Fails the call from the loop rather than inside the caller's start. */
static void call_fail_later(struct veil_hconn_call *call, int rc)
{
	struct timeval tv = {0, 0};

	call->fail_rc = rc;
	evtimer_add(call->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct veil_hconn_call *call = arg;

	(void)fd;
	(void)what;
	if (call->fail_rc) {
		call_fail(call, call->fail_rc);
		return;
	}
	/* Only a request the peer has whole may be working on it (a slow
	 * answer, not a dead peer): VEIL_ETIMEDOUT.  A connect, handshake or
	 * write that does not finish in time is a connection failure. */
	if (call->sent && call->c && call->c->connected)
		call_fail(call, veil_errf(VEIL_ETIMEDOUT, "%s: the answer timed out",
					  call->label));
	else
		call_fail(call, veil_errf(VEIL_EIO, "%s: %s", call->label,
					  call->c && call->c->connected
						  ? "timed out sending the request"
						  : "connect timed out"));
}

static void set_deadline(struct veil_hconn_call *call, unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	evtimer_add(call->timer, &tv);
}

/* The answer is complete: the connection goes back to the pool when it can
 * carry another request. */
static void call_complete(struct veil_hconn_call *call)
{
	struct conn *c = call->c;
	struct veil_hconn_pool *p = call->pool;

	call->c = NULL;
	c->call = NULL;
	/* reusable: the peer keeps it open, nothing unread (here or inside
	 * TLS), and all of the request went out (a peer may answer before
	 * reading all of it) */
	if (call->resp.keep_alive && !c->eof && !c->left &&
	    (!c->ssl || !SSL_has_pending(c->ssl)) && !c->out_len[0] && !c->out_len[1] &&
	    !p->closed && p->nidle < p->idle_max) {
		struct timeval tv = {p->idle_ms / 1000, (p->idle_ms % 1000) * 1000};

		/* idle: a byte, a close or idle_ms of quiet ends it */
		conn_watch(c, true, false);
		event_add(c->rev, &tv);
		c->pool = p;
		c->prev = NULL;
		c->next = p->idle;
		if (p->idle)
			p->idle->prev = c;
		p->idle = c;
		p->nidle++;
	} else {
		conn_free(c);
	}
	call_finish(call, 0);
}

/* The connection closed or broke with no answer complete. */
static void call_on_eof(struct veil_hconn_call *call)
{
	struct conn *c = call->c;
	int rc;

	if (c->pin_failed) {
		call_fail(call, veil_errf(VEIL_EBADMSG, "%s: its TLS key is not the "
					  "attested one (pin)", call->label));
		return;
	}
	if (call->resp.st == VEIL_HCONN_RESP_BODY_EOF && !c->err) {
		veil_hconn_resp_eof(&call->resp);
		call_complete(call);
		return;
	}
	if (!call->got_bytes && call->reused && !call->retried) {
		/* the peer closed a kept-alive connection as we used it: once
		 * more on a fresh one */
		call->retried = true;
		call->reused = false;
		c->call = NULL;
		conn_free(c);
		call->c = NULL;
		if ((rc = conn_open(call)) < 0)
			call_finish(call, rc);
		return;
	}
	rc = c->err ? c->err : VEIL_EIO;
	call_fail(call, veil_errf(rc, "%s: %s%s", call->label,
				  !c->connected ? "connection failed"
				  : call->got_bytes ? "the answer broke off"
						    : "the connection closed before an answer",
				  c->tls_failed ? " (TLS error)" : ""));
}

/* Hands answer bytes p[0..n) over, as far as the caller takes them (a
 * pause keeps the rest in c->left); then settles the call if it is over:
 * complete, failed, cancelled, or its connection ended.  true: the call
 * goes on, on this connection; false: the call is over and freed, and the
 * connection may be gone (pooled, freed). */
static bool call_process(struct veil_hconn_call *call, const uint8_t *p, size_t n)
{
	struct conn *c = call->c;
	size_t off = 0;
	int rc = 0;

	call->in_cb = true;
	while (off < n && !call->paused && !call->dead && call->resp.st != VEIL_HCONN_RESP_DONE) {
		size_t used, data;

		if ((rc = veil_hconn_resp_step(&call->resp, p + off, n - off, &used, &data)) < 0)
			break;
		if (!call->got_bytes) {
			/* answered: never sent again, the copy can go (unless a
			 * peer answering early left some of it unwritten) */
			call->got_bytes = true;
			if (!c->out_len[0])
				head_free(call);
		}
		if (data) {
			if (call->rq.on_data)
				rc = call->rq.on_data(call->rq.arg, call, p + off, data);
			else if (veil_buf_append(&call->body, p + off, data) < 0)
				rc = veil_errf(VEIL_ERANGE, "%s: body over %zu bytes", call->label,
					       call->body.max);
		}
		off += used;
		if (rc < 0)
			break;
		if (call->resp.head_done && !call->head_seen) {
			call->head_seen = true;
			if (call->rq.on_head)
				call->rq.on_head(call->rq.arg, call, call->resp.status);
		}
	}
	call->in_cb = false;
	if (call->dead) {
		/* cancelled by a callback: no on_done */
		c->call = NULL;
		conn_free(c);
		call->c = NULL;
		call_free(call);
		return false;
	}
	if (rc < 0) {
		call_fail(call, rc);
		return false;
	}
	if (off < n) {
		/* paused, or bytes past the answer's end (the connection is
		 * then not reused): kept until resumed or freed */
		if (!c->left || p != c->left + c->left_off) {
			uint8_t *k = malloc(n - off);

			if (!k) {
				call_fail(call, VEIL_ENOMEM);
				return false;
			}
			memcpy(k, p + off, n - off);
			free(c->left);
			c->left = k;
			c->left_len = n - off;
			c->left_off = 0;
		} else {
			c->left_off += off;
		}
	} else if (c->left && p == c->left + c->left_off) {
		free(c->left);
		c->left = NULL;
		c->left_len = c->left_off = 0;
	}
	if (call->resp.st == VEIL_HCONN_RESP_DONE) {
		call_complete(call);
		return false;
	}
	if (c->eof && !call->paused && !c->left) {
		call_on_eof(call);
		return false;
	}
	return true;
}

/* TLS / socket failures: VEIL_EBADMSG only when the pin check refused the
 * peer's key (callers read it as "not the attested server", and the proxy
 * re-verifies on it); any other TLS failure (a handshake broken off, a bad
 * record, an alert) is VEIL_EIO like a broken socket, since nothing says
 * another server answered. */
static void conn_broke(struct conn *c, bool tls)
{
	c->eof = true;
	c->tls_failed |= tls && !c->pin_failed;
	c->err = c->pin_failed ? VEIL_EBADMSG : VEIL_EIO;
	ERR_clear_error();
}

/* Writes what is left of the request; 0 (done or would block:
 * c->tls_want_read and out_len say) or -1 (the connection broke). */
static int conn_flush(struct conn *c)
{
	while (c->out_len[0] || c->out_len[1]) {
		int i = c->out_len[0] ? 0 : 1;
		size_t len = VEIL_MIN(c->out_len[i], (size_t)INT32_MAX);
		ssize_t w;

		if (c->ssl) {
			int k = SSL_write(c->ssl, c->out[i], (int)len);

			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);

				c->tls_want_read = e == SSL_ERROR_WANT_READ;
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					return 0;
				conn_broke(c, e == SSL_ERROR_SSL);
				return -1;
			}
			w = k;
		} else {
			w = send(c->fd, c->out[i], len, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					return 0;
				conn_broke(c, false);
				return -1;
			}
		}
		c->out[i] += w;
		c->out_len[i] -= (size_t)w;
	}
	c->tls_want_read = false;
	if (c->call)
		c->call->sent = true;
	return 0;
}

/* Reads every byte there is (TLS: until SSL_read wants the socket again,
 * so nothing waits inside OpenSSL unseen) and hands it to the call.  true:
 * the call goes on on c (paused, or waiting for more). */
static bool conn_read(struct conn *c)
{
	struct veil_hconn_call *call = c->call;
	uint8_t *buf = c->h->rbuf;

	while (!call->paused) {
		ssize_t n;

		if (c->left) {
			if (!call_process(call, c->left + c->left_off, c->left_len - c->left_off))
				return false;
			continue;
		}
		if (c->eof)
			return call_process(call, buf, 0);
		if (c->ssl) {
			int k = SSL_read(c->ssl, buf, READ_BUF);

			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);

				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return true;
				if (e == SSL_ERROR_ZERO_RETURN ||
				    (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
					/* closed, with close_notify or (a bare EOF
					 * that OpenSSL reports as SYSCALL) without;
					 * OpenSSL 3 reports most EOFs without
					 * close_notify as SSL_ERROR_SSL, so a
					 * read-until-close answer cut that way fails
					 * (veil's peers frame their answers) */
					c->eof = true;
					ERR_clear_error();
				} else {
					conn_broke(c, e == SSL_ERROR_SSL);
				}
				continue;
			}
			n = k;
		} else {
			n = recv(c->fd, buf, READ_BUF, 0);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					return true;
				conn_broke(c, false);
				continue;
			}
			if (n == 0) {
				c->eof = true;
				continue;
			}
		}
		if (!call_process(call, buf, (size_t)n))
			return false;
	}
	return true;
}

/* The request's deadline runs from the moment the connection is up. */
static void conn_up(struct conn *c)
{
	struct veil_hconn_call *call = c->call;

	c->st = CONN_OPEN;
	c->connected = true;
	if (call) {
		uint64_t spent = (veil_now_ns() - call->start_ns) / 1000000;
		unsigned t = call->rq.timeout_ms;

		set_deadline(call, spent < t ? (unsigned)(t - spent) : 1);
	}
}

/* Every event of a connection: connect, handshake, write, read; a busy
 * connection then waits for what it needs, an idle one for anything (which
 * ends it). */
static void conn_io(struct conn *c, short what)
{
	struct veil_hconn_call *call = c->call;

	if (!call) {
		conn_free(c); /* idle: bytes, a close, or its idle time is up */
		return;
	}
	if (c->st == CONN_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);

		if (!(what & EV_WRITE))
			return;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			conn_broke(c, false);
			call_process(call, c->h->rbuf, 0);
			return;
		}
		if (c->ssl)
			c->st = CONN_HANDSHAKE;
		else
			conn_up(c);
	}
	if (c->st == CONN_HANDSHAKE) {
		int k = SSL_connect(c->ssl);

		if (k != 1) {
			int e = SSL_get_error(c->ssl, k);

			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				conn_watch(c, e == SSL_ERROR_WANT_READ, e == SSL_ERROR_WANT_WRITE);
				return;
			}
			conn_broke(c, true);
			call_process(call, c->h->rbuf, 0);
			return;
		}
		conn_up(c);
	}
	if (conn_flush(c) < 0) {
		call_process(call, c->h->rbuf, 0);
		return;
	}
	if (!conn_read(c))
		return; /* the call is over (the connection pooled or gone) */
	/* wait for: writability while the request is not all out (or the
	 * readability TLS wants for its write), readability unless paused */
	conn_watch(c, !c->eof && (!call->paused || c->tls_want_read),
		   !c->eof && (c->out_len[0] || c->out_len[1]) && !c->tls_want_read);
}

static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	conn_io(arg, what);
}

/* Queues the request on the call's connection and writes what it can now
 * (an open connection: at once, no wait for writability). */
static int conn_send(struct veil_hconn_call *call)
{
	struct conn *c = call->c;

	call->sent = false;
	c->out[0] = (const uint8_t *)call->head;
	c->out_len[0] = call->head_len;
	c->out[1] = call->rq.body;
	c->out_len[1] = call->body_in_head ? 0 : call->rq.body_len;
	c->tls_want_read = false;
	if (c->st != CONN_OPEN) {
		conn_watch(c, false, true); /* the connect completes first */
		return 0;
	}
	if (conn_flush(c) < 0 || c->out_len[0] || c->out_len[1] || c->tls_want_read) {
		/* the rest (or the failure) from the loop, not inside the
		 * caller's start */
		conn_watch(c, true, true);
		event_active(c->wev, EV_WRITE, 1);
		return 0;
	}
	conn_watch(c, true, false);
	return 0;
}

static char *put(char *p, const void *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

/* The request: request line, Host, the caller's fields, Content-Length,
 * and a small body with them (one write, one TLS record for the peer to
 * read, instead of two). */
static int head_build(struct veil_hconn_call *call, const char *const *headers)
{
	const struct veil_hconn_request *rq = &call->rq;
	const char *host = call->url + (call->https ? 8 : 7);
	char cl[48];
	size_t n, i, cll = 0;
	char *p;

	if (rq->body_len || !strcmp(rq->method, "POST"))
		cll = (size_t)snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", rq->body_len);
	if (strpbrk(rq->method, " \r\n") || strpbrk(rq->path, " \r\n") || rq->path[0] != '/')
		return veil_errf(VEIL_EINVAL, "hconn: bad method or path");
	n = strlen(rq->method) + 1 + strlen(rq->path) + 17 + strlen(host) + 2 + cll + 2;
	if (n > HEAD_MAX)
		return veil_errf(VEIL_ERANGE, "hconn: request head too long");
	for (i = 0; headers && headers[i]; i++) {
		if (strpbrk(headers[i], "\r\n"))
			return veil_errf(VEIL_EINVAL, "hconn: CR or LF in a header field");
		n += strlen(headers[i]) + 2;
		if (n > HEAD_MAX)
			return veil_errf(VEIL_ERANGE, "hconn: request head too long");
	}
	call->body_in_head = rq->body_len <= BODY_INLINE;
	if (!(p = call->head = malloc(n + (call->body_in_head ? rq->body_len : 0))))
		return VEIL_ENOMEM;
	p = put(p, rq->method, strlen(rq->method));
	p = put(p, " ", 1);
	p = put(p, rq->path, strlen(rq->path));
	p = put(p, " HTTP/1.1\r\nHost: ", 17);
	p = put(p, host, strlen(host));
	p = put(p, "\r\n", 2);
	for (i = 0; headers && headers[i]; i++) {
		p = put(p, headers[i], strlen(headers[i]));
		p = put(p, "\r\n", 2);
	}
	p = put(p, cl, cll);
	p = put(p, "\r\n", 2);
	if (call->body_in_head && rq->body_len)
		p = put(p, rq->body, rq->body_len);
	call->head_len = (size_t)(p - call->head);
	return 0;
}

/* The host part of an origin URL, brackets of an IPv6 literal dropped, and
 * its port (digits, 1..65535; the scheme's by default). */
static int url_host_port(const char *url, bool https, char *host, size_t cap, char *port,
			 size_t pcap)
{
	const char *h = url + (https ? 8 : 7), *e, *colon;
	size_t hl;

	if (*h == '[') {
		if (!(e = strchr(h, ']')))
			return VEIL_EINVAL;
		h++;
		hl = (size_t)(e - h);
		colon = e[1] == ':' ? e + 1 : NULL;
		if (!colon && e[1])
			return VEIL_EINVAL;
	} else {
		colon = strchr(h, ':');
		hl = colon ? (size_t)(colon - h) : strlen(h);
	}
	if (hl == 0 || hl >= cap || memchr(h, '/', hl) || memchr(h, ' ', hl))
		return VEIL_EINVAL;
	if (colon) {
		size_t d = strlen(colon + 1);
		long v;

		if (d == 0 || d > 5 || strspn(colon + 1, "0123456789") != d ||
		    (v = strtol(colon + 1, NULL, 10)) < 1 || v > 65535)
			return VEIL_EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, pcap, "%s", colon ? colon + 1 : https ? "443" : "80");
	return 0;
}

/* Starts the connection for `call` to address sa (TCP, then TLS). */
static int conn_connect(struct veil_hconn_call *call, const struct sockaddr *sa,
			socklen_t len, const char *host)
{
	struct veil_hconn *h = call->h;
	struct conn *c = call->c;
	struct in6_addr a6;
	int one = 1;

	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return veil_errf(VEIL_EIO, "%s: socket: errno %d", call->label, errno);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, sa, len) < 0 && errno != EINPROGRESS)
		return veil_errf(VEIL_EIO, "%s: connect: errno %d", call->label, errno);
	if (c->https) {
		if (!(c->ssl = SSL_new(h->ctx)) || SSL_set_fd(c->ssl, c->fd) != 1)
			return VEIL_ENOMEM;
		SSL_set_ex_data(c->ssl, conn_ex_idx, c);
		/* SNI for a host name (never for an address literal) */
		if (inet_pton(AF_INET, host, &a6) != 1 && inet_pton(AF_INET6, host, &a6) != 1)
			SSL_set_tlsext_host_name(c->ssl, host);
		SSL_set_connect_state(c->ssl);
	}
	if (!(c->rev = event_new(h->base, c->fd, EV_READ | EV_PERSIST, conn_cb, c)) ||
	    !(c->wev = event_new(h->base, c->fd, EV_WRITE | EV_PERSIST, conn_cb, c)))
		return VEIL_ENOMEM;
	c->st = CONN_CONNECTING;
	return conn_send(call);
}

static void dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct veil_hconn_call *call = arg;
	char host[VEIL_HCONN_URL_MAX + 1], port[8];
	int rc;

	call->dns = NULL;
	if (err == EVUTIL_EAI_CANCEL)
		return; /* the call is being freed */
	if (err || !ai) {
		if (ai)
			evutil_freeaddrinfo(ai);
		call_fail(call, veil_errf(VEIL_EIO, "%s: cannot resolve its host (%s)",
					  call->label, evutil_gai_strerror(err)));
		return;
	}
	url_host_port(call->url, call->https, host, sizeof(host), port, sizeof(port));
	rc = conn_connect(call, ai->ai_addr, (socklen_t)ai->ai_addrlen, host);
	evutil_freeaddrinfo(ai);
	if (rc < 0)
		call_fail(call, rc);
}

/* A new connection for `call`: resolved (a literal at once, a name through
 * evdns), connected, the request queued.  Failures after this returned 0
 * come through on_done. */
static int conn_open(struct veil_hconn_call *call)
{
	struct veil_hconn *h = call->h;
	struct conn *c = calloc(1, sizeof(*c));
	char host[VEIL_HCONN_URL_MAX + 1], port[8];
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	int rc;

	if (!c)
		return VEIL_ENOMEM;
	c->fd = -1;
	c->h = h;
	c->call = call;
	c->https = call->https;
	memcpy(c->url, call->url, sizeof(c->url));
	memcpy(c->pin, call->pin, 32);
	call->c = c;
	call->reused = false;
	set_deadline(call, call->rq.connect_timeout_ms);
	if ((rc = url_host_port(call->url, call->https, host, sizeof(host), port,
				sizeof(port))) < 0) {
		call_fail_later(call, veil_errf(VEIL_EINVAL, "%s: bad URL", call->label));
		return 0;
	}
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)atoi(port));
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)atoi(port));
		sl = sizeof(*s6);
	}
	if (sl) {
		if ((rc = conn_connect(call, (struct sockaddr *)&ss, sl, host)) < 0)
			call_fail_later(call, rc);
		return 0;
	}
	if (!h->dns && !(h->dns = evdns_base_new(h->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
							      EVDNS_BASE_DISABLE_WHEN_INACTIVE))) {
		call_fail_later(call, veil_errf(VEIL_EIO, "%s: no DNS resolver", call->label));
		return 0;
	}
	{
		struct evutil_addrinfo hints;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_protocol = IPPROTO_TCP;
		call->dns = evdns_getaddrinfo(h->dns, host, port, &hints, dns_cb, call);
	}
	return 0;
}

/* An idle connection of the pool made for the call's origin and pin. */
static struct conn *pool_take(struct veil_hconn_pool *p, const struct veil_hconn_call *call)
{
	struct conn *c;

	while ((c = p->idle) != NULL) {
		idle_unlink(c);
		if (c->https == call->https && !strcmp(c->url, call->url) &&
		    (!c->https || !CRYPTO_memcmp(c->pin, call->pin, 32)) && !c->eof &&
		    !c->left && (!c->ssl || !SSL_has_pending(c->ssl)))
			return c;
		conn_free(c);
	}
	return NULL;
}

int veil_hconn_start(struct veil_hconn_pool *p, const struct veil_hconn_request *rq,
		     struct veil_hconn_call **out)
{
	struct veil_hconn_call *call;
	char host[VEIL_HCONN_URL_MAX + 1], port[8];
	size_t ul;
	bool https;
	int rc;

	if (!p || !rq || !rq->url || !rq->method || !rq->path || (rq->body_len && !rq->body))
		return veil_errf(VEIL_EINVAL, "hconn: bad request");
	https = !strncmp(rq->url, "https://", 8);
	if ((!https && strncmp(rq->url, "http://", 7)) ||
	    (ul = strlen(rq->url)) > VEIL_HCONN_URL_MAX ||
	    url_host_port(rq->url, https, host, sizeof(host), port, sizeof(port)) < 0)
		return veil_errf(VEIL_EINVAL, "hconn: not an origin URL (http(s)://host[:port])");
	if (https && !rq->pin)
		return veil_errf(VEIL_EINVAL, "hconn: https without a pin");
	if (!(call = calloc(1, sizeof(*call))))
		return VEIL_ENOMEM;
	call->h = p->h;
	call->pool = p;
	p->refs++;
	call->rq = *rq;
	call->rq.headers = NULL; /* serialized at once, not kept */
	call->rq.url = NULL;
	call->rq.pin = NULL;
	call->rq.label = NULL;
	if (!call->rq.timeout_ms)
		call->rq.timeout_ms = 60000;
	if (!call->rq.connect_timeout_ms)
		call->rq.connect_timeout_ms = 10000;
	memcpy(call->url, rq->url, ul + 1);
	call->https = https;
	if (https)
		memcpy(call->pin, rq->pin, 32);
	snprintf(call->label, sizeof(call->label), "%s", rq->label ? rq->label : "upstream");
	call->start_ns = veil_now_ns();
	veil_hconn_resp_init(&call->resp, rq->max_response ? rq->max_response : 16u << 20);
	call->body = (struct veil_buf)VEIL_BUF_INIT(
		rq->max_response ? (size_t)VEIL_MIN(rq->max_response, (uint64_t)SIZE_MAX)
				 : 16u << 20);
	if (!(call->timer = evtimer_new(p->h->base, timer_cb, call))) {
		call_free(call);
		return VEIL_ENOMEM;
	}
	if ((rc = head_build(call, rq->headers)) < 0) {
		call_free(call);
		return rc;
	}
	if ((call->c = pool_take(p, call)) != NULL) {
		call->c->call = call;
		call->reused = true;
		/* no idle timeout any more (the read watch stays): the call's
		 * deadline rules */
		event_remove_timer(call->c->rev);
		set_deadline(call, call->rq.timeout_ms);
		rc = conn_send(call);
	} else {
		rc = conn_open(call);
	}
	if (rc < 0) {
		if (call->c) {
			call->c->call = NULL;
			conn_free(call->c);
		}
		call_free(call);
		return rc;
	}
	if (out)
		*out = call;
	return 0;
}

void veil_hconn_pause(struct veil_hconn_call *call)
{
	if (call && !call->paused) {
		call->paused = true;
		/* inside the read loop, the watches are set when it returns;
		 * before the connection is up they are the connect's and the
		 * handshake's (the read loop honours the pause once it is) */
		if (call->c && call->c->rev && !call->in_cb && !call->c->tls_want_read &&
		    call->c->st == CONN_OPEN)
			conn_watch(call->c, false, call->c->wr_on);
	}
}

void veil_hconn_resume(struct veil_hconn_call *call)
{
	if (!call || !call->paused)
		return;
	call->paused = false;
	if (call->c && call->c->rev && call->c->st == CONN_OPEN) {
		conn_watch(call->c, true, call->c->wr_on);
		/* what was read before the pause (here, or inside TLS) is handed
		 * over from the loop (not inside the caller's drain callback) */
		event_active(call->c->rev, EV_READ, 1);
	}
}

void veil_hconn_cancel(struct veil_hconn_call *call)
{
	if (!call)
		return;
	if (call->in_cb) {
		call->dead = true;
		return;
	}
	if (call->c) {
		call->c->call = NULL;
		conn_free(call->c);
		call->c = NULL;
	}
	call_free(call);
}

bool veil_hconn_sent(const struct veil_hconn_call *call)
{
	/* a request sent on a kept-alive connection that then closes before
	 * any answer byte is sent again (call_on_eof): from the caller's body
	 * when it did not fit in the head copy */
	return call && call->sent &&
	       (call->got_bytes || call->body_in_head || !call->reused || call->retried);
}

const char *veil_hconn_header(struct veil_hconn_call *call, const char *name)
{
	return veil_hconn_resp_header(&call->resp, name);
}
