/* Unit tests of the hconn module (include/veil/hconn.h).  The response
 * parser (veil_hconn_resp_*): framing by Content-Length, chunked coding and
 * connection close, each fed whole and cut at every byte; interim 1xx
 * heads; keep-alive; header lookup; and the refusals (request smuggling
 * shapes, malformed heads, caps).  The client (veil_hconn_*), against real
 * servers on 127.0.0.1: a veil_http_server over TLS on the client's own
 * loop (pin accepted / refused, kept-alive reuse), and a raw server thread
 * for what a veil server does not do (close a kept connection as it is
 * used; a large body read with pauses; cancel mid-answer); TLS that breaks
 * (handshake cut, non-TLS bytes, a garbage record) is VEIL_EIO, never the
 * pin refusal's VEIL_EBADMSG. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "veil/hconn.h"
#include "veil/http.h"

/* Feeds p[0..n) in pieces of `piece` bytes (0: whole); body bytes are
 * appended to `body`.  Returns the first error, else 0; *consumed gets
 * the bytes taken (those after a complete answer are not). */
static int feed(struct veil_hconn_resp *r, const char *p, size_t n, size_t piece,
		struct veil_buf *body, size_t *consumed)
{
	size_t off = 0;

	while (off < n && r->st != VEIL_HCONN_RESP_DONE) {
		size_t k = piece ? VEIL_MIN(piece, n - off) : n - off, used, data;
		int rc = veil_hconn_resp_step(r, (const uint8_t *)p + off, k, &used, &data);

		if (rc < 0)
			return rc;
		if (data)
			assert_int_equal(veil_buf_append(body, p + off, data), 0);
		/* progress whenever there is input and the answer is not done */
		assert_true(used > 0 || r->st == VEIL_HCONN_RESP_DONE);
		off += used;
	}
	if (consumed)
		*consumed = off;
	return 0;
}

/* Every split of `in` gives `want_body`, status and keep-alive. */
static void check_all_splits(const char *in, int status, const char *want_body,
			     bool keep_alive, enum veil_hconn_resp_state end)
{
	size_t n = strlen(in);

	for (size_t piece = 0; piece <= n; piece++) {
		struct veil_hconn_resp r;
		struct veil_buf body = VEIL_BUF_INIT(1 << 20);
		size_t used = 0;

		veil_hconn_resp_init(&r, 1 << 20);
		assert_int_equal(feed(&r, in, n, piece, &body, &used), 0);
		assert_true(r.head_done);
		assert_int_equal(r.status, status);
		assert_int_equal(r.st, end);
		if (end == VEIL_HCONN_RESP_BODY_EOF) {
			assert_int_equal(veil_hconn_resp_eof(&r), 0);
			assert_int_equal(r.st, VEIL_HCONN_RESP_DONE);
		}
		assert_int_equal(body.len, strlen(want_body));
		assert_memory_equal(body.len ? (const char *)body.data : "", want_body, body.len);
		assert_int_equal(r.keep_alive, keep_alive);
		veil_buf_free(&body);
		veil_hconn_resp_free(&r);
	}
}

static void test_content_length(void **st)
{
	(void)st;
	check_all_splits("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: 11\r\n\r\n{\"a\":\"bcd\"}",
			 200, "{\"a\":\"bcd\"}", true, VEIL_HCONN_RESP_DONE);
	/* bare LF line ends, no reason phrase */
	check_all_splits("HTTP/1.1 503\nContent-Length: 2\n\nno", 503, "no", true, VEIL_HCONN_RESP_DONE);
	/* an empty body */
	check_all_splits("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, "", true,
			 VEIL_HCONN_RESP_DONE);
}

static void test_chunked(void **st)
{
	(void)st;
	check_all_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			 "Content-Type: text/event-stream\r\n\r\n"
			 "6\r\ndata: \r\n3;ext=1\r\nabc\r\nA \r\n0123456789\r\n"
			 "0\r\nX-Trailer: 1\r\n\r\n",
			 200, "data: abc0123456789", true, VEIL_HCONN_RESP_DONE);
	check_all_splits("HTTP/1.1 200 OK\ntransfer-encoding: Chunked\n\n1\nx\n0\n\n", 200, "x",
			 true, VEIL_HCONN_RESP_DONE);
}

static void test_until_close_and_interim(void **st)
{
	(void)st;
	check_all_splits("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", 200,
			 "all of it", false, VEIL_HCONN_RESP_BODY_EOF);
	check_all_splits("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n"
			 "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
			 200, "z", true, VEIL_HCONN_RESP_DONE);
	check_all_splits("HTTP/1.1 204 No Content\r\n\r\n", 204, "", true, VEIL_HCONN_RESP_DONE);
}

static void test_keep_alive_rules(void **st)
{
	(void)st;
	check_all_splits("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n"
			 "Content-Length: 1\r\n\r\na", 200, "a", false, VEIL_HCONN_RESP_DONE);
	check_all_splits("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na", 200, "a", false,
			 VEIL_HCONN_RESP_DONE);
	check_all_splits("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\na",
			 200, "a", true, VEIL_HCONN_RESP_DONE);
}

static void test_headers_and_leftover(void **st)
{
	static const char in[] = "HTTP/1.1 200 OK\r\nX-Veil-Receipt:   abc  \r\n"
				 "x-veil-receipt: second\r\nContent-Length: 2\r\n\r\nokEXTRA";
	struct veil_hconn_resp r;
	struct veil_buf body = VEIL_BUF_INIT(64);
	size_t used;

	(void)st;
	veil_hconn_resp_init(&r, 1024);
	assert_null(veil_hconn_resp_header(&r, "X-Veil-Receipt"));
	assert_int_equal(feed(&r, in, strlen(in), 0, &body, &used), 0);
	assert_int_equal(r.st, VEIL_HCONN_RESP_DONE);
	/* the bytes after the answer are left for the caller */
	assert_int_equal(used, strlen(in) - 5);
	assert_string_equal(veil_hconn_resp_header(&r, "x-VEIL-receipt"), "abc");
	assert_string_equal(veil_hconn_resp_header(&r, "content-length"), "2");
	assert_null(veil_hconn_resp_header(&r, "Content-Type"));
	assert_string_equal((const char *)body.data, "ok");
	veil_buf_free(&body);
	veil_hconn_resp_free(&r);
}

static void test_refusals(void **st)
{
	static const char *const bad[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/1.1 099 x\r\n\r\n",
		"HTTP/1.1 101 Switching\r\n\r\n",
		"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1x\r\n",
		"\r\n\r\n",
	};

	(void)st;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(bad); i++) {
		for (size_t piece = 0; piece < 3; piece++) {
			struct veil_hconn_resp r;
			struct veil_buf body = VEIL_BUF_INIT(1 << 20);

			veil_hconn_resp_init(&r, 1 << 20);
			if (feed(&r, bad[i], strlen(bad[i]), piece, &body, NULL) == 0) {
				print_error("accepted: %s (piece %zu)\n", bad[i], piece);
				fail();
			}
			veil_buf_free(&body);
			veil_hconn_resp_free(&r);
		}
	}
}

/* A NUL inside the head is refused, not read as the end of its line
 * ("Content-Length: 5" would otherwise hide what follows). */
static void test_nul_in_head(void **st)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\0junk\r\n\r\nhello";

	(void)st;
	for (size_t piece = 0; piece < 3; piece++) {
		struct veil_hconn_resp r;
		struct veil_buf body = VEIL_BUF_INIT(1 << 20);

		veil_hconn_resp_init(&r, 1 << 20);
		assert_int_not_equal(feed(&r, head, sizeof(head) - 1, piece, &body, NULL), 0);
		veil_buf_free(&body);
		veil_hconn_resp_free(&r);
	}
}

static void test_caps(void **st)
{
	struct veil_hconn_resp r;
	struct veil_buf body = VEIL_BUF_INIT(1 << 20);
	struct veil_buf big = VEIL_BUF_INIT(VEIL_HCONN_HEAD_MAX * 2);
	static const char cl[] = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
	static const char ck[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "6\r\n012345\r\n6\r\n012345\r\n0\r\n\r\n";
	static const char eof[] = "HTTP/1.1 200 OK\r\n\r\n0123456789x";

	(void)st;
	/* body caps: declared, chunked, until close */
	veil_hconn_resp_init(&r, 10);
	assert_int_equal(feed(&r, cl, strlen(cl), 0, &body, NULL), VEIL_ERANGE);
	veil_hconn_resp_free(&r);
	veil_hconn_resp_init(&r, 10);
	assert_int_equal(feed(&r, ck, strlen(ck), 0, &body, NULL), VEIL_ERANGE);
	veil_hconn_resp_free(&r);
	veil_hconn_resp_init(&r, 10);
	assert_int_equal(feed(&r, eof, strlen(eof), 0, &body, NULL), VEIL_ERANGE);
	veil_hconn_resp_free(&r);
	/* a head over VEIL_HCONN_HEAD_MAX, whole or in pieces */
	assert_int_equal(veil_buf_append_str(&big, "HTTP/1.1 200 OK\r\nX: "), 0);
	while (big.len < VEIL_HCONN_HEAD_MAX + 10)
		assert_int_equal(veil_buf_append_str(&big, "aaaaaaaaaaaaaaaa"), 0);
	for (size_t piece = 0; piece <= 4096; piece += 4096) {
		veil_hconn_resp_init(&r, 10);
		assert_int_equal(feed(&r, (const char *)big.data, big.len, piece, &body, NULL),
				 VEIL_ERANGE);
		veil_hconn_resp_free(&r);
	}
	/* a head just under the cap, followed at once by its body */
	veil_buf_reset(&big);
	assert_int_equal(veil_buf_append_str(&big, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: "), 0);
	while (big.len < VEIL_HCONN_HEAD_MAX - 16)
		assert_int_equal(veil_buf_append_str(&big, "a"), 0);
	assert_int_equal(veil_buf_append_str(&big, "\r\n\r\nabc"), 0);
	veil_hconn_resp_init(&r, 10);
	veil_buf_reset(&body);
	assert_int_equal(feed(&r, (const char *)big.data, big.len, 0, &body, NULL), 0);
	assert_int_equal(r.st, VEIL_HCONN_RESP_DONE);
	assert_string_equal((const char *)body.data, "abc");
	veil_hconn_resp_free(&r);
	veil_buf_free(&big);
	veil_buf_free(&body);
}

static void test_eof_mid_answer(void **st)
{
	static const char *const cut[] = {
		"HTTP/1.1 200 OK\r\nContent-Le",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
	};

	(void)st;
	for (size_t i = 0; i < VEIL_ARRAY_LEN(cut); i++) {
		struct veil_hconn_resp r;
		struct veil_buf body = VEIL_BUF_INIT(64);

		veil_hconn_resp_init(&r, 1024);
		assert_int_equal(feed(&r, cut[i], strlen(cut[i]), 0, &body, NULL), 0);
		assert_int_equal(veil_hconn_resp_eof(&r), VEIL_EIO);
		veil_buf_free(&body);
		veil_hconn_resp_free(&r);
	}
}

/* ---- the client ----------------------------------------------------------------- */

struct res {
	struct event_base *base;
	struct veil_hconn_call *call;
	int rc, status, head_status, done;
	bool ctype;
	struct veil_buf body;
	size_t pieces, pauses;
	bool pause_each;
	size_t cancel_at;           /* cancel from on_data once this many bytes came */
};

static void res_init(struct res *x, struct event_base *base)
{
	memset(x, 0, sizeof(*x));
	x->base = base;
	x->rc = 1;
	x->body = (struct veil_buf)VEIL_BUF_INIT(8u << 20);
}

static void c_head(void *arg, struct veil_hconn_call *call, int status)
{
	struct res *x = arg;

	x->head_status = status;
	x->ctype = veil_hconn_header(call, "content-type") != NULL;
}

static void c_resume(evutil_socket_t fd, short what, void *arg)
{
	struct res *x = arg;

	(void)fd;
	(void)what;
	/* a pause on the last piece does not hold the end back: the call may
	 * be over (and freed) by now */
	if (!x->done)
		veil_hconn_resume(x->call);
}

static int c_data(void *arg, struct veil_hconn_call *call, const uint8_t *p, size_t n)
{
	struct res *x = arg;
	struct timeval tv = {0, 1000};

	x->pieces++;
	assert_int_equal(veil_buf_append(&x->body, p, n), 0);
	if (x->cancel_at && x->body.len >= x->cancel_at) {
		veil_hconn_cancel(call);
		x->done = 2;
		return 0;
	}
	if (x->pause_each) {
		veil_hconn_pause(call);
		x->pauses++;
		event_base_once(x->base, -1, EV_TIMEOUT, c_resume, x, &tv);
	}
	return 0;
}

static void c_done(void *arg, int rc, int status, const uint8_t *body, size_t len)
{
	struct res *x = arg;

	x->rc = rc;
	x->status = status;
	x->done = 1;
	x->call = NULL;
	if (len)
		assert_int_equal(veil_buf_append(&x->body, body, len), 0);
}

static void run_until(struct event_base *b, const int *flag)
{
	uint64_t t0 = veil_now_ns();

	while (!*flag && veil_now_ns() - t0 < 10000000000ull)
		event_base_loop(b, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static int start(struct veil_hconn_pool *pool, const char *url, const uint8_t *pin,
		 const char *path, bool streaming, struct res *x)
{
	struct veil_hconn_request rq = {0};
	const char *hdrs[] = {"Accept: */*", NULL};

	rq.url = url;
	rq.pin = pin;
	rq.label = "test server";
	rq.method = "GET";
	rq.path = path;
	rq.headers = hdrs;
	rq.timeout_ms = 5000;
	rq.on_head = c_head;
	rq.on_data = streaming ? c_data : NULL;
	rq.on_done = c_done;
	rq.arg = x;
	return veil_hconn_start(pool, &rq, &x->call);
}

static void h_hello(struct veil_http_req *r, void *arg)
{
	(void)arg;
	veil_http_reply_json(r, 200, json_pack("{s:s}", "hello", "world"));
}

/* TLS to a veil_http_server on the same loop: the pinned key is accepted
 * and its connection kept for the next requests; another pin is refused
 * in the handshake (VEIL_EBADMSG, no status) and nothing of it pooled. */
static void test_client_pins_and_keeps_alive(void **st)
{
	struct veil_http_server_opts o = {.addr = "127.0.0.1"};
	struct event_base *base = event_base_new();
	struct veil_http_server *srv;
	struct veil_hconn *h;
	struct veil_hconn_pool *pool;
	EVP_PKEY *key;
	X509 *cert;
	uint8_t pin[32], bad[32];
	char url[64];
	struct res x;

	(void)st;
	assert_non_null(base);
	assert_int_equal(veil_http_selfsigned(VEIL_HTTP_KEY_P256, "node.example", 1, &key,
					      &cert), 0);
	assert_int_equal(veil_http_spki_sha256_cert(cert, pin), 0);
	o.tls_key = key;
	o.tls_cert = cert;
	assert_int_equal(veil_http_server_new(base, &o, &srv), 0);
	assert_int_equal(veil_http_route(srv, "GET", "/hello", false, h_hello, NULL), 0);
	snprintf(url, sizeof(url), "https://127.0.0.1:%u", veil_http_server_port(srv));
	assert_int_equal(veil_hconn_new(base, &h), 0);
	assert_int_equal(veil_hconn_pool_new(h, 0, 0, &pool), 0);

	for (int i = 0; i < 3; i++) {
		res_init(&x, base);
		assert_int_equal(start(pool, url, pin, "/hello", i == 1, &x), 0);
		assert_int_equal(x.done, 0); /* never from inside start */
		run_until(base, &x.done);
		assert_int_equal(x.rc, 0);
		assert_int_equal(x.status, 200);
		assert_int_equal(x.head_status, 200);
		assert_true(x.ctype);
		assert_non_null(strstr((char *)x.body.data, "world"));
		/* one connection, kept */
		assert_int_equal(veil_http_server_conns(srv), 1);
		veil_buf_free(&x.body);
	}

	memcpy(bad, pin, 32);
	bad[5] ^= 1;
	res_init(&x, base);
	assert_int_equal(start(pool, url, bad, "/hello", false, &x), 0);
	run_until(base, &x.done);
	assert_int_equal(x.rc, VEIL_EBADMSG);
	assert_int_equal(x.status, 0);
	assert_int_equal(x.body.len, 0);
	veil_buf_free(&x.body);

	/* refused before any byte: https without a pin, a URL with a path,
	 * CR or LF in a header */
	res_init(&x, base);
	assert_int_equal(start(pool, url, NULL, "/hello", false, &x), VEIL_EINVAL);
	assert_int_equal(start(pool, "https://127.0.0.1:1/x", pin, "/hello", false, &x),
			 VEIL_EINVAL);
	assert_int_equal(start(pool, "http://127.0.0.1:99999", NULL, "/hello", false, &x),
			 VEIL_EINVAL);
	{
		struct veil_hconn_request rq = {0};
		const char *hdrs[] = {"X-A: b\r\nX-Injected: 1", NULL};

		rq.url = url;
		rq.pin = pin;
		rq.method = "GET";
		rq.path = "/hello";
		rq.headers = hdrs;
		rq.on_done = c_done;
		rq.arg = &x;
		assert_int_equal(veil_hconn_start(pool, &rq, NULL), VEIL_EINVAL);
	}
	veil_buf_free(&x.body);

	veil_hconn_pool_free(pool);
	veil_http_server_free(srv);
	event_base_loop(base, EVLOOP_NONBLOCK);
	veil_hconn_free(h);
	event_base_free(base);
	EVP_PKEY_free(key);
	X509_free(cert);
}

/* A raw HTTP/1.1 server thread: answers each request head with `body_len`
 * bytes (byte i = i * 7), keeps the connection; with drop_second, the
 * first connection is closed as the second request on it arrives,
 * unanswered (a peer closing a kept-alive connection as it is reused). */
struct raw {
	int lfd;
	uint16_t port;
	pthread_t th;
	int accepted, answered;
	bool drop_second;
	size_t body_len;
};

static uint8_t raw_byte(size_t i)
{
	return (uint8_t)(i * 7);
}

static void *raw_main(void *arg)
{
	struct raw *s = arg;
	int fd;

	while ((fd = accept(s->lfd, NULL, NULL)) >= 0) {
		char buf[8192];
		size_t have = 0;
		int served = 0;

		__atomic_add_fetch(&s->accepted, 1, __ATOMIC_SEQ_CST);
		for (;;) {
			ssize_t k = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
			char *end;

			if (k <= 0)
				break;
			have += (size_t)k;
			buf[have] = '\0';
			if (!(end = strstr(buf, "\r\n\r\n")))
				continue;
			if (s->drop_second && s->accepted == 1 && served == 1)
				break; /* closed with the request unread */
			{
				char head[128];
				uint8_t *b = malloc(s->body_len + 1);
				int hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n"
						  "Content-Length: %zu\r\n\r\n", s->body_len);

				for (size_t i = 0; i < s->body_len; i++)
					b[i] = raw_byte(i);
				/* counted before the client can see it */
				served++;
				__atomic_add_fetch(&s->answered, 1, __ATOMIC_SEQ_CST);
				send(fd, head, (size_t)hl, MSG_NOSIGNAL);
				send(fd, b, s->body_len, MSG_NOSIGNAL);
				free(b);
			}
			have = 0;
		}
		close(fd);
	}
	return NULL;
}

static void raw_start(struct raw *s, size_t body_len, bool drop_second)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);

	memset(s, 0, sizeof(*s));
	s->body_len = body_len;
	s->drop_second = drop_second;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((s->lfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 8), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
	s->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&s->th, NULL, raw_main, s), 0);
}

static void raw_stop(struct raw *s)
{
	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(s->th, NULL);
	close(s->lfd);
}

/* The peer closes the kept-alive connection as the second request is sent
 * on it: that request goes once more on a fresh connection and succeeds. */
static void test_client_resends_once_on_a_closed_kept_connection(void **st)
{
	struct event_base *base = event_base_new();
	struct veil_hconn *h;
	struct veil_hconn_pool *pool;
	struct raw s;
	char url[64];
	struct res x;

	(void)st;
	raw_start(&s, 5, true);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", s.port);
	assert_int_equal(veil_hconn_new(base, &h), 0);
	assert_int_equal(veil_hconn_pool_new(h, 0, 0, &pool), 0);
	for (int i = 0; i < 2; i++) {
		res_init(&x, base);
		assert_int_equal(start(pool, url, NULL, "/", false, &x), 0);
		run_until(base, &x.done);
		assert_int_equal(x.rc, 0);
		assert_int_equal(x.status, 200);
		assert_int_equal(x.body.len, 5);
		veil_buf_free(&x.body);
	}
	/* the second went over the first connection, then a new one */
	assert_int_equal(s.accepted, 2);
	assert_int_equal(s.answered, 2);
	veil_hconn_pool_free(pool);
	raw_stop(&s);
	veil_hconn_free(h);
	event_base_free(base);
}

/* A 2 MiB body read with a pause after every piece (resumed from a timer)
 * arrives whole and in order; a call cancelled from on_data ends without
 * on_done, and the pool still serves the next request. */
static void test_client_pause_resume_and_cancel(void **st)
{
	struct event_base *base = event_base_new();
	struct veil_hconn *h;
	struct veil_hconn_pool *pool;
	struct raw s;
	char url[64];
	struct res x;

	(void)st;
	raw_start(&s, 2u << 20, false);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", s.port);
	assert_int_equal(veil_hconn_new(base, &h), 0);
	assert_int_equal(veil_hconn_pool_new(h, 0, 0, &pool), 0);

	res_init(&x, base);
	x.pause_each = true;
	assert_int_equal(start(pool, url, NULL, "/", true, &x), 0);
	run_until(base, &x.done);
	assert_int_equal(x.rc, 0);
	assert_int_equal(x.body.len, 2u << 20);
	for (size_t i = 0; i < x.body.len; i++)
		if (x.body.data[i] != raw_byte(i))
			fail_msg("byte %zu differs", i);
	assert_true(x.pauses >= 2);
	veil_buf_free(&x.body);

	res_init(&x, base);
	x.cancel_at = 1;
	assert_int_equal(start(pool, url, NULL, "/", true, &x), 0);
	run_until(base, &x.done);
	assert_int_equal(x.done, 2);
	assert_int_equal(x.rc, 1); /* no on_done */
	veil_buf_free(&x.body);

	res_init(&x, base);
	assert_int_equal(start(pool, url, NULL, "/", false, &x), 0);
	run_until(base, &x.done);
	assert_int_equal(x.rc, 0);
	assert_int_equal(x.body.len, 2u << 20);
	veil_buf_free(&x.body);

	veil_hconn_pool_free(pool);
	event_base_loop(base, EVLOOP_NONBLOCK);
	raw_stop(&s);
	veil_hconn_free(h);
	event_base_free(base);
}

/* A TLS server thread that fails in one way per connection: mode 0 reads
 * the ClientHello and closes (a handshake broken off), mode 1 answers it
 * with bytes that are not TLS, mode 2 completes the handshake with the
 * pinned key and then sends a garbage record.  None is a pin refusal, so
 * none may be VEIL_EBADMSG (callers read that as "another server's key"). */
struct badtls {
	int lfd;
	uint16_t port;
	pthread_t th;
	int mode;
	SSL_CTX *ctx;
};

static void *badtls_main(void *arg)
{
	struct badtls *s = arg;
	int fd;

	while ((fd = accept(s->lfd, NULL, NULL)) >= 0) {
		char buf[4096];
		static const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\nnot TLS at all";
		/* application data record, TLS 1.2, 32 bytes of noise: fails
		 * the record MAC / AEAD tag */
		uint8_t rec[5 + 32] = {0x17, 0x03, 0x03, 0x00, 0x20};

		if (s->mode == 2) {
			SSL *ssl = SSL_new(s->ctx);

			SSL_set_fd(ssl, fd);
			if (SSL_accept(ssl) == 1) {
				for (size_t i = 5; i < sizeof(rec); i++)
					rec[i] = (uint8_t)(i * 13);
				send(fd, rec, sizeof(rec), MSG_NOSIGNAL);
				/* hold until the client gives up on it */
				while (recv(fd, buf, sizeof(buf), 0) > 0)
					;
			}
			SSL_free(ssl);
		} else if (recv(fd, buf, sizeof(buf), 0) > 0 && s->mode == 1) {
			send(fd, junk, sizeof(junk) - 1, MSG_NOSIGNAL);
		}
		close(fd);
	}
	return NULL;
}

static void test_client_tls_failure_is_not_a_pin_refusal(void **st)
{
	struct event_base *base = event_base_new();
	struct veil_hconn *h;
	struct veil_hconn_pool *pool;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	struct badtls s = {0};
	EVP_PKEY *key;
	X509 *cert;
	uint8_t pin[32];
	char url[64];
	struct res x;

	(void)st;
	assert_int_equal(veil_http_selfsigned(VEIL_HTTP_KEY_P256, "node.example", 1, &key,
					      &cert), 0);
	assert_int_equal(veil_http_spki_sha256_cert(cert, pin), 0);
	assert_int_equal(veil_http_tls_server_ctx(key, cert, &s.ctx), 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((s.lfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(s.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s.lfd, 8), 0);
	assert_int_equal(getsockname(s.lfd, (struct sockaddr *)&a, &al), 0);
	s.port = ntohs(a.sin_port);
	snprintf(url, sizeof(url), "https://127.0.0.1:%u", s.port);
	assert_int_equal(veil_hconn_new(base, &h), 0);
	assert_int_equal(veil_hconn_pool_new(h, 0, 0, &pool), 0);
	for (int mode = 0; mode < 3; mode++) {
		s.mode = mode;
		assert_int_equal(pthread_create(&s.th, NULL, badtls_main, &s), 0);
		res_init(&x, base);
		assert_int_equal(start(pool, url, pin, "/hello", false, &x), 0);
		run_until(base, &x.done);
		assert_int_equal(x.done, 1);
		assert_int_equal(x.rc, VEIL_EIO);
		assert_int_equal(x.status, 0);
		veil_buf_free(&x.body);
		shutdown(s.lfd, SHUT_RDWR);
		pthread_join(s.th, NULL);
		if (mode < 2) {
			/* the listener is spent by shutdown: a fresh one */
			close(s.lfd);
			a.sin_port = 0;
			assert_true((s.lfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
			assert_int_equal(bind(s.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
			assert_int_equal(listen(s.lfd, 8), 0);
			al = sizeof(a);
			assert_int_equal(getsockname(s.lfd, (struct sockaddr *)&a, &al), 0);
			s.port = ntohs(a.sin_port);
			snprintf(url, sizeof(url), "https://127.0.0.1:%u", s.port);
		}
	}
	close(s.lfd);
	veil_hconn_pool_free(pool);
	veil_hconn_free(h);
	event_base_free(base);
	SSL_CTX_free(s.ctx);
	EVP_PKEY_free(key);
	X509_free(cert);
}

static void timeout_req(struct veil_hconn_request *rq, const char *url, const uint8_t *pin,
			struct res *x)
{
	memset(rq, 0, sizeof(*rq));
	rq->url = url;
	rq->pin = pin;
	rq->label = "test server";
	rq->method = "POST";
	rq->path = "/v1/chat/completions";
	rq->body = (const uint8_t *)"{}";
	rq->body_len = 2;
	rq->timeout_ms = 300;
	rq->connect_timeout_ms = 300;
	rq->on_head = c_head;
	rq->on_done = c_done;
	rq->arg = x;
}

/* A peer that has the whole request but does not answer in time is a slow
 * answer (VEIL_ETIMEDOUT: the gateway answers 504 and keeps the node); one
 * that never completes the connection (here: a TLS handshake nobody
 * answers) is a connection failure (VEIL_EIO: the node is out of rotation
 * and the request may go elsewhere).  veil_hconn_sent tells the two apart
 * while the call runs. */
static void test_client_answer_timeout_is_not_a_connect_timeout(void **st)
{
	struct event_base *base = event_base_new();
	struct veil_hconn *h;
	struct veil_hconn_pool *pool;
	struct veil_hconn_request rq;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	uint8_t pin[32] = {1};
	char url[64];
	struct res x;
	int lfd;
	bool sent = false;
	uint64_t t0;

	(void)st;
	/* listening, never accepting: the kernel completes TCP and takes the
	 * request's bytes; nothing ever answers */
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((lfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 8), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
	assert_int_equal(veil_hconn_new(base, &h), 0);
	assert_int_equal(veil_hconn_pool_new(h, 0, 0, &pool), 0);

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(a.sin_port));
	res_init(&x, base);
	timeout_req(&rq, url, NULL, &x);
	assert_int_equal(veil_hconn_start(pool, &rq, &x.call), 0);
	t0 = veil_now_ns();
	while (!x.done && veil_now_ns() - t0 < 5000000000ull) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		if (!x.done && veil_hconn_sent(x.call))
			sent = true;
	}
	assert_true(sent);
	assert_int_equal(x.done, 1);
	assert_int_equal(x.rc, VEIL_ETIMEDOUT);
	assert_int_equal(x.status, 0);
	veil_buf_free(&x.body);

	snprintf(url, sizeof(url), "https://127.0.0.1:%u", ntohs(a.sin_port));
	res_init(&x, base);
	timeout_req(&rq, url, pin, &x);
	assert_int_equal(veil_hconn_start(pool, &rq, &x.call), 0);
	sent = false;
	t0 = veil_now_ns();
	while (!x.done && veil_now_ns() - t0 < 5000000000ull) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		if (!x.done && veil_hconn_sent(x.call))
			sent = true;
	}
	assert_false(sent);
	assert_int_equal(x.done, 1);
	assert_int_equal(x.rc, VEIL_EIO);
	assert_int_equal(x.status, 0);
	veil_buf_free(&x.body);
	assert_false(veil_hconn_sent(NULL));

	veil_hconn_pool_free(pool);
	close(lfd);
	veil_hconn_free(h);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_until_close_and_interim),
		cmocka_unit_test(test_keep_alive_rules),
		cmocka_unit_test(test_headers_and_leftover),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_nul_in_head),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_eof_mid_answer),
		cmocka_unit_test(test_client_pins_and_keeps_alive),
		cmocka_unit_test(test_client_resends_once_on_a_closed_kept_connection),
		cmocka_unit_test(test_client_pause_resume_and_cancel),
		cmocka_unit_test(test_client_tls_failure_is_not_a_pin_refusal),
		cmocka_unit_test(test_client_answer_timeout_is_not_a_connect_timeout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
