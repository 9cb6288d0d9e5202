/* veil-gateway's HTTP/1.1 client to its nodes, for the relayed requests.
 *
 * Why not the libcurl client of include/veil/http.h (which the health
 * checks and attestation fetches still use): a relayed request is the
 * gateway's hot path, and there curl cost more than everything else the
 * gateway does — an easy handle, option set-up and header lists per
 * request, a socket event re-created per state change, and, worst, a
 * connection cache sized by the handles alive at the moment, so that under
 * load it closed kept-alive connections and paid (with the node) a fresh
 * TLS handshake for some requests.  Here:
 *
 *  - connections to each node are kept alive in a pool (most recently used
 *    first, at most UP_IDLE_MAX idle per node, closed after UP_IDLE_MS idle
 *    or when the node closes them); a request takes an idle one or opens a
 *    new one, never waits;
 *  - every TLS connection is pinned: the handshake succeeds only if the
 *    leaf certificate's SubjectPublicKeyInfo hashes (SHA-256) to the key
 *    the node's verified attestation report binds (n->spki), the same rule
 *    as curl's pinning before; no CA, no host name, no session resumption
 *    (a resumed session would skip the certificate).  A pooled connection is
 *    reused only for the same URL and pin it was made under;
 *  - the request is written straight from the caller's bytes (head + body);
 *    the answer is parsed as it arrives (gw_resp_step, parse.c) and handed
 *    on in place: the caller's on_data sees spans of the read buffer;
 *  - the sockets are driven here (non-blocking OpenSSL on the fd, not a
 *    bufferevent, which waited for writability before every write and
 *    toggled its epoll watch around it, and read each TLS record with two
 *    read(2)s): a request on a kept-alive connection is written at once,
 *    the answer read with TLS read-ahead into one loop-wide buffer until
 *    OpenSSL wants the socket again — one write, usually one read, no
 *    epoll change.  Bytes a paused caller has not taken wait in a small
 *    per-connection copy;
 *  - a request on a reused connection that the node had closed meanwhile
 *    (EOF or reset before any byte of the answer) is sent once more on a
 *    fresh connection, as curl and nginx do; every other failure is the
 *    caller's (on_done).
 *
 * Threading: the loop thread only. */
#include <errno.h>
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
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "gateway.h"

#define UP_IDLE_MAX 256     /* idle kept-alive connections per node */
#define UP_IDLE_MS 25000    /* below a veil-node's default idle timeout (30 s) */
#define UP_HEAD_MAX 4096    /* our request head */
#define UP_BODY_INLINE 16384 /* bodies sent in one piece with the head */
#define UP_READ_BUF 65536   /* the loop's read buffer (shared by every connection) */

enum conn_st {
	CONN_CONNECTING,   /* TCP connect in progress (waits for writability) */
	CONN_HANDSHAKE,    /* TLS handshake */
	CONN_OPEN,
};

struct gw_up_conn {
	struct gw_up_conn *prev, *next; /* the node's idle list */
	struct gw *g;
	struct gw_node *node;         /* set while idle (the node frees idle conns) */
	int fd;
	SSL *ssl;                     /* NULL for http:// nodes */
	struct event *rev, *wev;      /* the socket's read and write watches */
	bool rd_on, wr_on;            /* added (a change costs an epoll_ctl) */
	enum conn_st st;
	struct gw_up_call *call;      /* the request on it; NULL when idle */
	char url[VEIL_STORE_URL_MAX + 1]; /* made for this node URL ... */
	bool https;
	uint8_t pin[32];              /* ... and this pin */
	bool connected;               /* TCP (and TLS) up */
	bool pin_failed;              /* the handshake met another key */
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

struct gw_up_call {
	struct gw *g;
	struct gw_node *node;         /* ref held */
	struct gw_up_conn *c;
	struct gw_up_request rq;      /* callbacks and limits; body borrowed */
	char *head;                   /* the request head (sent again on a retry) */
	size_t head_len;
	bool body_in_head;            /* a small body is in head too */
	struct gw_resp resp;
	struct veil_buf body;         /* the answer's body when no on_data */
	struct event *timer;          /* connect / whole-answer deadline; failures */
	struct evdns_getaddrinfo_request *dns;
	uint64_t start_ns;
	int fail_rc;                  /* a failure to report from the timer */
	bool reused;                  /* on a pooled connection */
	bool retried;                 /* already sent once more */
	bool got_bytes;               /* a byte of the answer came */
	bool head_seen;
	bool paused;
	bool in_cb;                   /* inside the read loop: free later */
	bool dead;                    /* cancelled inside the read loop */
};

static int conn_ex_idx = -1;
static uint8_t read_buf[UP_READ_BUF]; /* loop thread only */

/* ---- connections ----------------------------------------------------------- */

static void idle_unlink(struct gw_up_conn *c)
{
	struct gw_node *n = c->node;

	if (!n)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		n->up_idle = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->node = NULL;
	n->up_nidle--;
}

static void conn_free(struct gw_up_conn *c)
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

void gw_up_node_flush(struct gw_node *n)
{
	while (n->up_idle)
		conn_free(n->up_idle);
}

/* The socket's watches: an epoll change only when one changes, so that a
 * request on a kept-alive connection that is written at once and read as
 * it comes costs none.  (An idle connection's read watch carries its idle
 * timeout; taking it from the pool removes just the timer.) */
static void conn_watch(struct gw_up_conn *c, bool rd, bool wr)
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
	struct gw_up_conn *c = ssl ? SSL_get_ex_data(ssl, conn_ex_idx) : NULL;
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

int gw_up_init(struct gw *g)
{
	SSL_CTX *ctx;

	if (conn_ex_idx < 0 &&
	    (conn_ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL)) < 0)
		return veil_errf(VEIL_EINTERNAL, "upstream: no SSL ex_data index");
	if (!(ctx = SSL_CTX_new(TLS_client_method())))
		return veil_errf(VEIL_ENOMEM, "upstream: SSL_CTX_new failed");
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
	g->up_ctx = ctx;
	return 0;
}

/* ---- calls ------------------------------------------------------------------- */

static bool call_process(struct gw_up_call *call, const uint8_t *p, size_t n);
static void conn_cb(evutil_socket_t fd, short what, void *arg);
static int conn_open(struct gw_up_call *call);
static void conn_io(struct gw_up_conn *c, short what);

static void call_free(struct gw_up_call *call)
{
	if (call->dns)
		evdns_getaddrinfo_cancel(call->dns);
	if (call->timer)
		event_free(call->timer);
	gw_resp_free(&call->resp);
	veil_buf_free(&call->body);
	gw_node_unref(call->node);
	free(call->head);
	free(call);
}

/* Reports the end of the call (on_done) and frees it; the connection has
 * been dealt with. */
static void call_finish(struct gw_up_call *call, int rc)
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
static void call_fail(struct gw_up_call *call, int rc)
{
	if (call->c) {
		call->c->call = NULL;
		conn_free(call->c);
		call->c = NULL;
	}
	call_finish(call, rc);
}

/* Fails the call from the loop rather than inside the caller's start. */
static void call_fail_later(struct gw_up_call *call, int rc)
{
	struct timeval tv = {0, 0};

	call->fail_rc = rc;
	evtimer_add(call->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gw_up_call *call = arg;

	(void)fd;
	(void)what;
	if (call->fail_rc) {
		call_fail(call, call->fail_rc);
		return;
	}
	call_fail(call, veil_errf(VEIL_ETIMEDOUT, "node %s: %s", call->node->id,
				  call->c && call->c->connected ? "the answer timed out"
								: "connect timed out"));
}

static void set_deadline(struct gw_up_call *call, unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	evtimer_add(call->timer, &tv);
}

/* The answer is complete: the connection goes back to the pool when it can
 * carry another request. */
static void call_complete(struct gw_up_call *call)
{
	struct gw_up_conn *c = call->c;
	struct gw_node *n = call->node;

	call->c = NULL;
	c->call = NULL;
	/* reusable: the node keeps it open, nothing unread (here or inside
	 * TLS), and all of the request went out (a node may answer before
	 * reading all of it) */
	if (call->resp.keep_alive && !c->eof && !c->left &&
	    (!c->ssl || !SSL_has_pending(c->ssl)) && !c->out_len[0] && !c->out_len[1] &&
	    !n->removed && n->up_nidle < UP_IDLE_MAX) {
		struct timeval tv = {UP_IDLE_MS / 1000, (UP_IDLE_MS % 1000) * 1000};

		free(c->left);
		c->left = NULL;
		c->left_len = c->left_off = 0;
		/* idle: a byte, a close or UP_IDLE_MS of quiet ends it */
		conn_watch(c, true, false);
		event_add(c->rev, &tv);
		c->node = n;
		c->prev = NULL;
		c->next = n->up_idle;
		if (n->up_idle)
			n->up_idle->prev = c;
		n->up_idle = c;
		n->up_nidle++;
	} else {
		conn_free(c);
	}
	call_finish(call, 0);
}

/* The connection closed or broke with no answer complete. */
static void call_on_eof(struct gw_up_call *call)
{
	struct gw_up_conn *c = call->c;
	int rc;

	if (c->pin_failed) {
		call_fail(call, veil_errf(VEIL_EBADMSG, "node %s: its TLS key is not the "
					  "attested one (pin)", call->node->id));
		return;
	}
	if (call->resp.st == GW_RESP_BODY_EOF && !c->err) {
		gw_resp_eof(&call->resp);
		call_complete(call);
		return;
	}
	if (!call->got_bytes && call->reused && !call->retried) {
		/* the node closed a kept-alive connection as we used it: once
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
	call_fail(call, veil_errf(rc, "node %s: %s", call->node->id,
				  !c->connected ? "connection failed"
				  : call->got_bytes ? "the answer broke off"
						    : "the connection closed before an answer"));
}

/* Hands answer bytes p[0..n) over, as far as the caller takes them (a
 * pause keeps the rest in c->left); then settles the call if it is over:
 * complete, failed, cancelled, or its connection ended.  true: the call
 * goes on, on this connection; false: the call is over and freed, and the
 * connection may be gone (pooled, freed). */
static bool call_process(struct gw_up_call *call, const uint8_t *p, size_t n)
{
	struct gw_up_conn *c = call->c;
	size_t off = 0;
	int rc = 0;

	call->in_cb = true;
	while (off < n && !call->paused && !call->dead && call->resp.st != GW_RESP_DONE) {
		size_t used, data;

		if ((rc = gw_resp_step(&call->resp, p + off, n - off, &used, &data)) < 0)
			break;
		if (!call->got_bytes) {
			/* answered: never sent again, the copy can go (unless a
			 * node answering early left some of it unwritten) */
			call->got_bytes = true;
			if (!c->out_len[0]) {
				free(call->head);
				call->head = NULL;
			}
		}
		if (data) {
			if (call->rq.on_data)
				rc = call->rq.on_data(call->rq.arg, call, p + off, data);
			else if (veil_buf_append(&call->body, p + off, data) < 0)
				rc = veil_errf(VEIL_ERANGE, "node answer: body over %zu bytes",
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
	if (call->resp.st == GW_RESP_DONE) {
		call_complete(call);
		return false;
	}
	if (c->eof && !call->paused && !c->left) {
		call_on_eof(call);
		return false;
	}
	return true;
}

/* TLS / socket failures as the callers knew them: a refused pin or another
 * TLS failure is VEIL_EBADMSG, the connection's own VEIL_EIO. */
static void conn_broke(struct gw_up_conn *c, bool tls)
{
	c->eof = true;
	c->err = c->pin_failed || tls ? VEIL_EBADMSG : VEIL_EIO;
	ERR_clear_error();
}

/* Writes what is left of the request; 0 (done or would block: c->interest
 * says) or -1 (the connection broke). */
static int conn_flush(struct gw_up_conn *c)
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
	return 0;
}

/* Reads every byte there is (TLS: until SSL_read wants the socket again,
 * so nothing waits inside OpenSSL unseen) and hands it to the call.  true:
 * the call goes on on c (paused, or waiting for more). */
static bool conn_read(struct gw_up_conn *c)
{
	struct gw_up_call *call = c->call;

	while (!call->paused) {
		ssize_t n;

		if (c->left) {
			if (!call_process(call, c->left + c->left_off, c->left_len - c->left_off))
				return false;
			continue;
		}
		if (c->eof)
			return call_process(call, read_buf, 0);
		if (c->ssl) {
			int k = SSL_read(c->ssl, read_buf, (int)sizeof(read_buf));

			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);

				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return true;
				if (e == SSL_ERROR_ZERO_RETURN ||
				    (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
					/* closed, with or without close_notify (a
					 * dirty shutdown is allowed, as before) */
					c->eof = true;
					ERR_clear_error();
				} else {
					conn_broke(c, e == SSL_ERROR_SSL);
				}
				continue;
			}
			n = k;
		} else {
			n = recv(c->fd, read_buf, sizeof(read_buf), 0);
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
		if (!call_process(call, read_buf, (size_t)n))
			return false;
	}
	return true;
}

/* The request's deadline runs from the moment the connection is up. */
static void conn_up(struct gw_up_conn *c)
{
	struct gw_up_call *call = c->call;

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
static void conn_io(struct gw_up_conn *c, short what)
{
	struct gw_up_call *call = c->call;

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
			call_process(call, read_buf, 0);
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
			call_process(call, read_buf, 0);
			return;
		}
		conn_up(c);
	}
	if (conn_flush(c) < 0) {
		call_process(call, read_buf, 0);
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
static int conn_send(struct gw_up_call *call)
{
	struct gw_up_conn *c = call->c;

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
 * and a small body with them (one write, one TLS record for the node to
 * read, instead of two). */
static int head_build(struct gw_up_call *call, const char *const *headers)
{
	const struct gw_up_request *rq = &call->rq;
	const char *host = call->node->url + (call->node->https ? 8 : 7);
	char cl[48];
	size_t n, i, cll = 0;
	char *p;

	if (rq->body_len || !strcmp(rq->method, "POST"))
		cll = (size_t)snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", rq->body_len);
	n = strlen(rq->method) + 1 + strlen(rq->path) + 17 + strlen(host) + 2 + cll + 2;
	for (i = 0; headers && headers[i]; i++) {
		if (strpbrk(headers[i], "\r\n"))
			return veil_errf(VEIL_EINVAL, "upstream: CR or LF in a header field");
		n += strlen(headers[i]) + 2;
	}
	if (n > UP_HEAD_MAX)
		return veil_errf(VEIL_ERANGE, "upstream: request head too long");
	call->body_in_head = rq->body_len <= UP_BODY_INLINE;
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

/* The host part of the node URL, brackets of an IPv6 literal dropped, and
 * its port. */
static int url_host_port(const struct gw_node *n, char *host, size_t cap, char *port,
			 size_t pcap)
{
	const char *h = n->url + (n->https ? 8 : 7), *e, *colon;
	size_t hl;

	if (*h == '[') {
		if (!(e = strchr(h, ']')))
			return VEIL_EINVAL;
		h++;
		hl = (size_t)(e - h);
		colon = e[1] == ':' ? e + 1 : NULL;
	} else {
		colon = strchr(h, ':');
		hl = colon ? (size_t)(colon - h) : strlen(h);
	}
	if (hl == 0 || hl >= cap)
		return VEIL_EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, pcap, "%s", colon ? colon + 1 : n->https ? "443" : "80");
	return 0;
}

/* Starts the connection for `call` to address sa (TCP, then TLS). */
static int conn_connect(struct gw_up_call *call, const struct sockaddr *sa, socklen_t len,
			const char *host)
{
	struct gw *g = call->g;
	struct gw_up_conn *c = call->c;
	struct in6_addr a6;
	int one = 1;

	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return veil_errf(VEIL_EIO, "node %s: socket: errno %d", call->node->id, errno);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, sa, len) < 0 && errno != EINPROGRESS)
		return veil_errf(VEIL_EIO, "node %s: connect: errno %d", call->node->id, errno);
	if (c->https) {
		if (!(c->ssl = SSL_new(g->up_ctx)) || SSL_set_fd(c->ssl, c->fd) != 1)
			return VEIL_ENOMEM;
		SSL_set_ex_data(c->ssl, conn_ex_idx, c);
		/* SNI for a host name (never for an address literal) */
		if (inet_pton(AF_INET, host, &a6) != 1 && inet_pton(AF_INET6, host, &a6) != 1)
			SSL_set_tlsext_host_name(c->ssl, host);
		SSL_set_connect_state(c->ssl);
	}
	if (!(c->rev = event_new(g->base, c->fd, EV_READ | EV_PERSIST, conn_cb, c)) ||
	    !(c->wev = event_new(g->base, c->fd, EV_WRITE | EV_PERSIST, conn_cb, c)))
		return VEIL_ENOMEM;
	c->st = CONN_CONNECTING;
	return conn_send(call);
}

static void dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct gw_up_call *call = arg;
	char host[VEIL_STORE_URL_MAX + 1], port[8];
	int rc;

	call->dns = NULL;
	if (err == EVUTIL_EAI_CANCEL)
		return; /* the call is being freed */
	if (err || !ai) {
		if (ai)
			evutil_freeaddrinfo(ai);
		call_fail(call, veil_errf(VEIL_EIO, "node %s: cannot resolve its host (%s)",
					  call->node->id, evutil_gai_strerror(err)));
		return;
	}
	url_host_port(call->node, host, sizeof(host), port, sizeof(port));
	rc = conn_connect(call, ai->ai_addr, (socklen_t)ai->ai_addrlen, host);
	evutil_freeaddrinfo(ai);
	if (rc < 0)
		call_fail(call, rc);
}

/* A new connection for `call`: resolved (a literal at once, a name through
 * evdns), connected, the request queued.  Failures after this returned 0
 * come through on_done. */
static int conn_open(struct gw_up_call *call)
{
	struct gw *g = call->g;
	struct gw_node *n = call->node;
	struct gw_up_conn *c = calloc(1, sizeof(*c));
	char host[VEIL_STORE_URL_MAX + 1], port[8];
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	int rc;

	if (!c)
		return VEIL_ENOMEM;
	c->fd = -1;
	c->g = g;
	c->call = call;
	c->https = n->https;
	snprintf(c->url, sizeof(c->url), "%s", n->url);
	memcpy(c->pin, n->spki, 32);
	call->c = c;
	call->reused = false;
	set_deadline(call, g->o.connect_timeout_ms ? g->o.connect_timeout_ms : 10000);
	if ((rc = url_host_port(n, host, sizeof(host), port, sizeof(port))) < 0) {
		call_fail_later(call, veil_errf(VEIL_EINVAL, "node %s: bad URL", n->id));
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
	if (!g->dns && !(g->dns = evdns_base_new(g->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
							      EVDNS_BASE_DISABLE_WHEN_INACTIVE))) {
		call_fail_later(call, veil_errf(VEIL_EIO, "node %s: no DNS resolver", n->id));
		return 0;
	}
	{
		struct evutil_addrinfo hints;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_protocol = IPPROTO_TCP;
		call->dns = evdns_getaddrinfo(g->dns, host, port, &hints, dns_cb, call);
	}
	return 0;
}

/* An idle connection of the node made for its present URL and pin. */
static struct gw_up_conn *pool_take(struct gw_node *n)
{
	struct gw_up_conn *c;

	while ((c = n->up_idle) != NULL) {
		idle_unlink(c);
		if (c->https == n->https && !strcmp(c->url, n->url) &&
		    (!c->https || !CRYPTO_memcmp(c->pin, n->spki, 32)) && !c->eof &&
		    !c->left && (!c->ssl || !SSL_has_pending(c->ssl)))
			return c;
		conn_free(c);
	}
	return NULL;
}

int gw_up_start(struct gw *g, struct gw_node *n, const struct gw_up_request *rq,
		struct gw_up_call **out)
{
	struct gw_up_call *call;
	int rc;

	if (!rq->method || !rq->path || (rq->body_len && !rq->body))
		return veil_errf(VEIL_EINVAL, "upstream: bad request");
	if (n->https && !n->have_keys)
		return veil_errf(VEIL_EPERM, "node %s: not verified (no pin)", n->id);
	if (!(call = calloc(1, sizeof(*call))))
		return VEIL_ENOMEM;
	call->g = g;
	call->node = n;
	gw_node_ref(n);
	call->rq = *rq;
	call->rq.headers = NULL; /* serialized at once, not kept */
	call->start_ns = veil_now_ns();
	gw_resp_init(&call->resp, rq->max_response ? rq->max_response : 16u << 20);
	call->body = (struct veil_buf)VEIL_BUF_INIT(rq->max_response ? rq->max_response
								    : 16u << 20);
	if (!(call->timer = evtimer_new(g->base, timer_cb, call))) {
		call_free(call);
		return VEIL_ENOMEM;
	}
	if ((rc = head_build(call, rq->headers)) < 0) {
		call_free(call);
		return rc;
	}
	if ((call->c = pool_take(n)) != NULL) {
		call->c->call = call;
		call->reused = true;
		/* no idle timeout any more (the read watch stays): the call's
		 * deadline rules */
		event_remove_timer(call->c->rev);
		set_deadline(call, rq->timeout_ms ? rq->timeout_ms : 60000);
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

void gw_up_pause(struct gw_up_call *call)
{
	if (call && !call->paused) {
		call->paused = true;
		/* inside the read loop, the watches are set when it returns */
		if (call->c && call->c->rev && !call->in_cb && !call->c->tls_want_read)
			conn_watch(call->c, false, call->c->wr_on);
	}
}

void gw_up_resume(struct gw_up_call *call)
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

void gw_up_cancel(struct gw_up_call *call)
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

const char *gw_up_header(struct gw_up_call *call, const char *name)
{
	return gw_resp_header(&call->resp, name);
}
