/* Unit tests of the HTTP layer: real servers on 127.0.0.1 with ephemeral
 * ports, their loop in a thread, driven by the libcurl client and by raw
 * sockets (for what a well-behaved client never sends). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "veil/base.h"
#include "veil/http.h"

/* ---- fixture: a server whose loop runs in a thread ---------------------- */

struct fx;
struct cmd {
	void (*fn)(struct fx *f, void *arg);
	void *arg;
};

struct fx {
	struct event_base *base;
	struct veil_http_server *srv;
	struct veil_http_chan *cmds;  /* test thread -> loop */
	struct veil_http_chan *work;  /* worker threads -> loop */
	pthread_t th;
	uint16_t port;
	char url[96];
	atomic_int closed;            /* close callbacks seen */
	atomic_int shut_done;
	atomic_long ebusy;            /* worker posts refused (full channel) */
};

static void run_cmd(void *msg, void *arg)
{
	struct cmd *c = msg;

	c->fn(arg, c->arg);
	free(c);
}

static void post_cmd(struct fx *f, void (*fn)(struct fx *, void *), void *arg)
{
	struct cmd *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->fn = fn;
	c->arg = arg;
	while (veil_http_chan_post(f->cmds, c) == VEIL_EBUSY)
		sched_yield();
}

static void *loop_main(void *arg)
{
	struct fx *f = arg;

	event_base_loop(f->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void do_break(struct fx *f, void *arg)
{
	(void)arg;
	event_base_loopbreak(f->base);
}

/* ---- handlers ----------------------------------------------------------- */

static void h_hello(struct veil_http_req *r, void *arg)
{
	(void)arg;
	veil_http_reply_json(r, 200, json_pack("{s:s}", "hello", "world"));
}

static void h_echo(struct veil_http_req *r, void *arg)
{
	size_t n;
	const uint8_t *b = veil_http_req_body(r, &n);

	(void)arg;
	veil_http_reply(r, 200, "application/octet-stream", b, n);
}

static void h_query(struct veil_http_req *r, void *arg)
{
	const char *a = veil_http_req_query(r, "a"), *b = veil_http_req_query(r, "b");
	const char *c = veil_http_req_query(r, "c"), *d = veil_http_req_query(r, "d");

	(void)arg;
	veil_http_reply_json(r, 200,
			     json_pack("{s:s?,s:s?,s:s?,s:s?,s:i,s:s?}", "a", a,
				       "b", b, "c", c, "d", d, "n",
				       (int)veil_http_req_query_count(r), "ua",
				       veil_http_req_header(r, "x-test")));
}

static void h_sig(struct veil_http_req *r, void *arg)
{
	(void)arg;
	veil_http_reply_json(r, 200, json_pack("{s:s}", "path", veil_http_req_path(r)));
}

/* /sse?n=N: N events from a loop timer, one of them multi-line */
struct sse_job {
	struct veil_http_req *r;
	struct event *ev;
	int i, n;
};

static void sse_job_free(struct sse_job *j)
{
	event_free(j->ev);
	free(j);
}

static void sse_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sse_job *j = arg;
	char data[64];
	struct timeval tv = {0, 500};

	(void)fd;
	(void)what;
	if (j->i == j->n) {
		veil_http_sse_done(j->r);
		sse_job_free(j);
		return;
	}
	if (j->i == 3)
		snprintf(data, sizeof(data), "line one %d\nline two", j->i);
	else
		snprintf(data, sizeof(data), "{\"i\":%d}", j->i);
	assert_int_equal(veil_http_sse_send(j->r, j->i == 5 ? "note" : NULL,
					    data, strlen(data)), 0);
	j->i++;
	evtimer_add(j->ev, &tv);
}

static void sse_closed(struct veil_http_req *r, void *arg)
{
	struct sse_job *j = arg;

	veil_http_stream_end(r);
	sse_job_free(j);
}

static void h_sse(struct veil_http_req *r, void *arg)
{
	struct fx *f = arg;
	struct sse_job *j = calloc(1, sizeof(*j));
	const char *n = veil_http_req_query(r, "n");
	struct timeval tv = {0, 0};

	assert_non_null(j);
	j->r = r;
	j->n = n ? atoi(n) : 10;
	j->ev = evtimer_new(f->base, sse_tick, j);
	veil_http_req_on_close(r, sse_closed, j);
	assert_int_equal(veil_http_sse_start(r), 0);
	evtimer_add(j->ev, &tv);
}

/* /forever: one event, then waits for the client to leave */
static void forever_closed(struct veil_http_req *r, void *arg)
{
	struct fx *f = arg;

	assert_true(veil_http_req_gone(r));
	assert_int_equal(veil_http_stream_write(r, "x", 1), VEIL_ECANCELED);
	atomic_fetch_add(&f->closed, 1);
	assert_int_equal(veil_http_stream_end(r), VEIL_ECANCELED);
}

static void h_forever(struct veil_http_req *r, void *arg)
{
	veil_http_req_on_close(r, forever_closed, arg);
	assert_int_equal(veil_http_sse_start(r), 0);
	assert_int_equal(veil_http_sse_send(r, NULL, "first", 5), 0);
}

/* /slow: replies after 300 ms */
static void slow_fire(evutil_socket_t fd, short what, void *arg)
{
	struct veil_http_req *r = arg;

	(void)fd;
	(void)what;
	veil_http_reply(r, 200, "text/plain", "slow done", 9);
}

static void h_slow(struct veil_http_req *r, void *arg)
{
	struct fx *f = arg;
	struct timeval tv = {0, 300000};

	event_base_once(f->base, -1, EV_TIMEOUT, slow_fire, r, &tv);
}

/* /work?n=N: a worker thread produces N events through the bounded channel */
struct work_job {
	struct fx *f;
	struct veil_http_req *r;
	int n;
};

struct work_msg {
	struct work_job *job;
	int seq; /* -1: done */
};

static void *worker_main(void *arg)
{
	struct work_job *j = arg;
	int i;

	for (i = 0; i <= j->n; i++) {
		struct work_msg *m = malloc(sizeof(*m));

		m->job = j;
		m->seq = i == j->n ? -1 : i;
		while (veil_http_chan_post(j->f->work, m) == VEIL_EBUSY) {
			atomic_fetch_add(&j->f->ebusy, 1);
			usleep(50);
		}
	}
	return NULL; /* the loop frees the job on the done message */
}

static void work_deliver(void *msg, void *arg)
{
	struct work_msg *m = msg;
	char data[32];

	(void)arg;
	if (m->seq < 0) {
		veil_http_sse_done(m->job->r);
		free(m->job);
	} else {
		snprintf(data, sizeof(data), "%d", m->seq);
		assert_int_equal(veil_http_sse_send(m->job->r, NULL, data,
						    strlen(data)), 0);
	}
	free(m);
}

static void h_work(struct veil_http_req *r, void *arg)
{
	struct work_job *j = calloc(1, sizeof(*j));
	const char *n = veil_http_req_query(r, "n");
	pthread_t th;

	j->f = arg;
	j->r = r;
	j->n = n ? atoi(n) : 10;
	assert_int_equal(veil_http_sse_start(r), 0);
	assert_int_equal(pthread_create(&th, NULL, worker_main, j), 0);
	pthread_detach(th);
}

/* /big?n=N: N pattern bytes with a 1.7 KB header (a receipt's size) and
 * the header checks; /fill: headers up to the 16 KiB cap */
#define LONG_HDR_LEN 1700

static uint8_t big_byte(size_t i)
{
	return (uint8_t)('a' + (i * 7 + i / 4096) % 26);
}

static void h_big(struct veil_http_req *r, void *arg)
{
	const char *n = veil_http_req_query(r, "n");
	size_t len = n ? strtoul(n, NULL, 10) : 0, i;
	uint8_t *body = malloc(len ? len : 1);
	char *v = malloc(LONG_HDR_LEN + 1);

	(void)arg;
	assert_non_null(body);
	assert_non_null(v);
	for (i = 0; i < len; i++)
		body[i] = big_byte(i);
	memset(v, 'r', LONG_HDR_LEN);
	v[LONG_HDR_LEN] = 0;
	assert_int_equal(veil_http_add_header(r, "X-Long", v), 0);
	/* header injection and bad names are refused, nothing half-added */
	assert_int_equal(veil_http_add_header(r, "X-Bad", "a\r\nX-Evil: 1"), VEIL_EINVAL);
	assert_int_equal(veil_http_add_header(r, "X-Bad", "a\nb"), VEIL_EINVAL);
	assert_int_equal(veil_http_add_header(r, "X-Bad\r\nX-Evil", "1"), VEIL_EINVAL);
	assert_int_equal(veil_http_add_header(r, "Bad Name", "1"), VEIL_EINVAL);
	assert_int_equal(veil_http_add_header(r, "", "1"), VEIL_EINVAL);
	assert_int_equal(veil_http_add_header(r, "X-Empty", ""), 0);
	assert_int_equal(veil_http_add_header(r, "X-Tab", "a\tb"), 0);
	assert_int_equal(veil_http_reply(r, 200, "application/octet-stream", body, len), 0);
	free(body);
	free(v);
}

static void h_fill(struct veil_http_req *r, void *arg)
{
	char v[1001], name[24];
	int i, rc = 0;

	(void)arg;
	memset(v, 'f', 1000);
	v[1000] = 0;
	for (i = 0; i < 40 && rc == 0; i++) {
		snprintf(name, sizeof(name), "X-Fill-%02d", i);
		rc = veil_http_add_header(r, name, v);
	}
	/* "X-Fill-NN: " + 1000 + CRLF = 1013 bytes: 16 fit in 16 KiB */
	assert_int_equal(rc, VEIL_ERANGE);
	assert_int_equal(i, 17);
	veil_http_reply(r, 200, "text/plain", "filled", 6);
}

static void fx_start(struct fx *f, const struct veil_http_server_opts *o)
{
	memset(f, 0, sizeof(*f));
	f->base = event_base_new();
	assert_non_null(f->base);
	assert_int_equal(veil_http_server_new(f->base, o, &f->srv), 0);
	f->port = veil_http_server_port(f->srv);
	assert_true(f->port != 0);
	snprintf(f->url, sizeof(f->url), "%s://127.0.0.1:%u",
		 o->tls_key ? "https" : "http", f->port);
	assert_int_equal(veil_http_route(f->srv, "GET", "/hello", false, h_hello, f), 0);
	assert_int_equal(veil_http_route(f->srv, "POST", "/echo", false, h_echo, f), 0);
	assert_int_equal(veil_http_route(f->srv, "GET", "/q", false, h_query, f), 0);
	assert_int_equal(veil_http_route(f->srv, "GET", "/v1/sig/", true, h_sig, f), 0);
	assert_int_equal(veil_http_route(f->srv, "GET", "/sse", false, h_sse, f), 0);
	assert_int_equal(veil_http_route(f->srv, "GET", "/forever", false, h_forever, f), 0);
	assert_int_equal(veil_http_route(f->srv, "GET", "/slow", false, h_slow, f), 0);
	assert_int_equal(veil_http_route(f->srv, "GET", "/work", false, h_work, f), 0);
	assert_int_equal(veil_http_route(f->srv, "GET", "/big", false, h_big, f), 0);
	assert_int_equal(veil_http_route(f->srv, "GET", "/fill", false, h_fill, f), 0);
	assert_int_equal(veil_http_chan_new(f->base, 16, run_cmd, NULL, f, &f->cmds), 0);
	assert_int_equal(veil_http_chan_new(f->base, 8, work_deliver, NULL, f, &f->work), 0);
	assert_int_equal(pthread_create(&f->th, NULL, loop_main, f), 0);
}

static void fx_stop(struct fx *f)
{
	post_cmd(f, do_break, NULL);
	pthread_join(f->th, NULL);
	veil_http_server_free(f->srv);
	veil_http_chan_free(f->cmds);
	veil_http_chan_free(f->work);
	/* bufferevents freed with deferred callbacks finish on the loop */
	event_base_loop(f->base, EVLOOP_NONBLOCK);
	event_base_free(f->base);
}

/* ---- client helpers ------------------------------------------------------ */

static int get(struct fx *f, const char *path, int *status, struct veil_buf *body)
{
	char url[256];
	struct veil_http_request rq = {0};

	snprintf(url, sizeof(url), "%s%s", f->url, path);
	rq.url = url;
	rq.timeout_ms = 5000;
	veil_buf_reset(body);
	return veil_http_fetch(&rq, status, body);
}

static int raw_connect(uint16_t port)
{
	struct sockaddr_in sa = {0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void raw_sends(int fd, const char *s)
{
	raw_send(fd, s, strlen(s));
}

/* Reads until EOF, `until` appears, or timeout; returns bytes read. */
static size_t raw_read(int fd, char *buf, size_t cap, int timeout_ms,
		       const char *until)
{
	size_t len = 0;
	uint64_t end = veil_now_ns() + (uint64_t)timeout_ms * 1000000u;

	buf[0] = 0;
	while (len + 1 < cap) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int64_t left = (int64_t)(end - veil_now_ns()) / 1000000;
		ssize_t k;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		k = recv(fd, buf + len, cap - 1 - len, 0);
		if (k <= 0)
			break;
		len += (size_t)k;
		buf[len] = 0;
		if (until && strstr(buf, until))
			break;
	}
	return len;
}

static int raw_status(const char *resp)
{
	int st = 0;

	if (sscanf(resp, "HTTP/1.1 %d", &st) != 1)
		return -1;
	return st;
}

/* A whole request on a fresh connection; returns the status. */
static int raw_roundtrip(struct fx *f, const char *req, size_t reqlen,
			 char *resp, size_t cap)
{
	int fd = raw_connect(f->port), st;

	assert_true(fd >= 0);
	raw_send(fd, req, reqlen ? reqlen : strlen(req));
	raw_read(fd, resp, cap, 3000, NULL);
	close(fd);
	st = raw_status(resp);
	return st;
}

static json_t *parse_json(const struct veil_buf *b)
{
	json_error_t e;
	json_t *j = json_loadb((const char *)b->data, b->len, 0, &e);

	assert_non_null(j);
	return j;
}

static void assert_error_shape(const struct veil_buf *b, const char *type,
			       const char *code)
{
	json_t *j = parse_json(b), *e = json_object_get(j, "error");

	assert_true(json_is_object(e));
	assert_true(json_is_string(json_object_get(e, "message")));
	assert_string_equal(json_string_value(json_object_get(e, "type")), type);
	if (code)
		assert_string_equal(json_string_value(json_object_get(e, "code")), code);
	json_decref(j);
}

static void json_body_of(const char *resp, struct veil_buf *b)
{
	const char *p = strstr(resp, "\r\n\r\n");

	assert_non_null(p);
	veil_buf_reset(b);
	assert_int_equal(veil_buf_append_str(b, p + 4), 0);
}

static const struct veil_http_server_opts base_opts = {
	.addr = "127.0.0.1",
	.max_body = 1024,
	.max_header_bytes = 2048,
	.max_headers = 16,
};

/* ---- tests: routing, queries, errors -------------------------------------- */

static void test_routes_exact_prefix_404_and_405(void **state)
{
	struct fx f;
	struct veil_buf b = VEIL_BUF_INIT(1 << 20);
	char resp[4096];
	int st = 0;
	json_t *j;

	(void)state;
	fx_start(&f, &base_opts);
	assert_int_equal(get(&f, "/hello", &st, &b), 0);
	assert_int_equal(st, 200);
	j = parse_json(&b);
	assert_string_equal(json_string_value(json_object_get(j, "hello")), "world");
	json_decref(j);

	assert_int_equal(get(&f, "/v1/sig/abc%20d", &st, &b), 0);
	assert_int_equal(st, 200);
	j = parse_json(&b);
	assert_string_equal(json_string_value(json_object_get(j, "path")), "/v1/sig/abc%20d");
	json_decref(j);

	assert_int_equal(get(&f, "/hello/more", &st, &b), 0);
	assert_int_equal(st, 404);
	assert_error_shape(&b, "not_found_error", "not_found");

	st = raw_roundtrip(&f, "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 0, resp, sizeof(resp));
	assert_int_equal(st, 405);
	assert_non_null(strstr(resp, "\r\nAllow: GET\r\n"));
	json_body_of(resp, &b);
	assert_error_shape(&b, "invalid_request_error", "method_not_allowed");

	/* keep-alive: two requests on one connection, then a malformed one */
	{
		int fd = raw_connect(f.port);
		const char *two = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
				  "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
		size_t n;

		raw_send(fd, two, strlen(two));
		n = raw_read(fd, resp, sizeof(resp), 3000, NULL);
		assert_true(n > 0);
		assert_non_null(strstr(strstr(resp, "world") + 5, "HTTP/1.1 200 OK"));
		close(fd);
	}
	st = raw_roundtrip(&f, "GET /hello HTTP/1.1\r\nBad Name: x\r\n\r\n", 0, resp, sizeof(resp));
	assert_int_equal(st, 400);
	st = raw_roundtrip(&f, "GET /hello HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 0, resp, sizeof(resp));
	assert_int_equal(st, 400);
	st = raw_roundtrip(&f, "GET /hello HTTP/2.0\r\n\r\n", 0, resp, sizeof(resp));
	assert_int_equal(st, 505);
	st = raw_roundtrip(&f,
			   "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0, resp, sizeof(resp));
	assert_int_equal(st, 400);
	fx_stop(&f);
	veil_buf_free(&b);
}

static void test_query_parameters_are_decoded_and_capped(void **state)
{
	struct fx f;
	struct veil_buf b = VEIL_BUF_INIT(1 << 20);
	char path[1024];
	int st = 0, i;
	json_t *j;

	(void)state;
	fx_start(&f, &base_opts);
	assert_int_equal(get(&f, "/q?a=1&b=hello%20world&&c=x+y&d", &st, &b), 0);
	assert_int_equal(st, 200);
	j = parse_json(&b);
	assert_string_equal(json_string_value(json_object_get(j, "a")), "1");
	assert_string_equal(json_string_value(json_object_get(j, "b")), "hello world");
	assert_string_equal(json_string_value(json_object_get(j, "c")), "x y");
	assert_string_equal(json_string_value(json_object_get(j, "d")), "");
	assert_int_equal(json_integer_value(json_object_get(j, "n")), 4);
	json_decref(j);

	assert_int_equal(get(&f, "/q?a=%zz", &st, &b), 0);
	assert_int_equal(st, 400);
	assert_error_shape(&b, "invalid_request_error", "bad_request");
	assert_int_equal(get(&f, "/q?a=%00", &st, &b), 0);
	assert_int_equal(st, 400);

	strcpy(path, "/q?");
	for (i = 0; i < 40; i++)
		sprintf(path + strlen(path), "p%d=%d&", i, i);
	assert_int_equal(get(&f, path, &st, &b), 0);
	assert_int_equal(st, 400);
	fx_stop(&f);
	veil_buf_free(&b);
}

/* ---- body and header caps -------------------------------------------------- */

static void test_body_cap_413_with_and_without_content_length(void **state)
{
	struct fx f;
	struct veil_buf b = VEIL_BUF_INIT(1 << 20);
	struct veil_http_request rq = {0};
	char url[128], resp[4096], big[1500];
	int st = 0, fd;

	(void)state;
	fx_start(&f, &base_opts);
	/* a body within the cap comes back */
	snprintf(url, sizeof(url), "%s/echo", f.url);
	rq.url = url;
	rq.body = "0123456789";
	rq.body_len = 10;
	rq.timeout_ms = 5000;
	assert_int_equal(veil_http_fetch(&rq, &st, &b), 0);
	assert_int_equal(st, 200);
	assert_int_equal(b.len, 10);
	assert_memory_equal(b.data, "0123456789", 10);

	/* Content-Length over the cap: 413 before any body byte is sent */
	fd = raw_connect(f.port);
	raw_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
	raw_read(fd, resp, sizeof(resp), 3000, "}}");
	close(fd);
	assert_int_equal(raw_status(resp), 413);
	json_body_of(resp, &b);
	assert_error_shape(&b, "invalid_request_error", "request_too_large");

	/* the same through the client (Expect-less, whole body sent) */
	memset(big, 'a', sizeof(big));
	rq.body = big;
	rq.body_len = sizeof(big);
	veil_buf_reset(&b);
	assert_int_equal(veil_http_fetch(&rq, &st, &b), 0);
	assert_int_equal(st, 413);

	/* chunked, no Content-Length: cut when the sum passes the cap */
	fd = raw_connect(f.port);
	raw_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
	memset(big, 'b', 600);
	raw_sends(fd, "258\r\n");
	raw_send(fd, big, 600);
	raw_sends(fd, "\r\n258\r\n");
	raw_send(fd, big, 600);
	raw_read(fd, resp, sizeof(resp), 3000, "}}");
	close(fd);
	assert_int_equal(raw_status(resp), 413);

	/* chunked within the cap is decoded */
	st = raw_roundtrip(&f,
			   "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
			   "Connection: close\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n", 0, resp, sizeof(resp));
	assert_int_equal(st, 200);
	assert_non_null(strstr(resp, "\r\n\r\nhello world"));
	fx_stop(&f);
	veil_buf_free(&b);
}

static void test_header_caps_give_431(void **state)
{
	struct fx f;
	struct veil_buf req = VEIL_BUF_INIT(1 << 20);
	char resp[4096];
	int i;

	(void)state;
	fx_start(&f, &base_opts);
	veil_buf_append_str(&req, "GET /hello HTTP/1.1\r\nHost: x\r\n");
	for (i = 0; i < 20; i++)
		veil_buf_appendf(&req, "X-H%d: %d\r\n", i, i);
	veil_buf_append_str(&req, "\r\n");
	assert_int_equal(raw_roundtrip(&f, (char *)req.data, req.len, resp, sizeof(resp)), 431);
	assert_non_null(strstr(resp, "headers_too_large"));

	veil_buf_reset(&req);
	veil_buf_append_str(&req, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ");
	for (i = 0; i < 4000; i++)
		veil_buf_append(&req, "z", 1);
	veil_buf_append_str(&req, "\r\n\r\n");
	assert_int_equal(raw_roundtrip(&f, (char *)req.data, req.len, resp, sizeof(resp)), 431);
	fx_stop(&f);
	veil_buf_free(&req);
}

/* ---- streaming ------------------------------------------------------------- */

struct stream_rx {
	struct veil_http_sse_parser p;
	struct event_base *base;
	struct event *resume_ev;
	struct veil_http_call *call;
	int status, rc, next, done_marker, paused_once, ndone;
	bool pause_once, multiline_ok, note_ok;
	int ncalls;
};

static int rx_event(void *arg, const char *event, const char *data, size_t len,
		    const char *id)
{
	struct stream_rx *x = arg;
	char want[64];

	(void)len;
	(void)id;
	if (strcmp(data, "[DONE]") == 0) {
		x->done_marker++;
		return 0;
	}
	if (x->done_marker)
		return VEIL_EFORMAT; /* nothing after [DONE] */
	if (x->next == 3) {
		snprintf(want, sizeof(want), "line one %d\nline two", x->next);
		x->multiline_ok = strcmp(data, want) == 0;
	} else if (data[0] == '{') {
		snprintf(want, sizeof(want), "{\"i\":%d}", x->next);
		if (strcmp(data, want) != 0)
			return VEIL_EFORMAT;
	} else {
		snprintf(want, sizeof(want), "%d", x->next);
		if (strcmp(data, want) != 0)
			return VEIL_EFORMAT;
	}
	if (x->next == 5 && strcmp(event, "note") == 0)
		x->note_ok = true;
	x->next++;
	return 0;
}

static void rx_resume(evutil_socket_t fd, short what, void *arg)
{
	struct stream_rx *x = arg;

	(void)fd;
	(void)what;
	veil_http_call_resume(x->call);
}

static int rx_data(void *arg, struct veil_http_call *call, const uint8_t *p, size_t n)
{
	struct stream_rx *x = arg;
	struct timeval tv = {0, 20000};

	x->call = call;
	if (x->pause_once && !x->paused_once) {
		x->paused_once = 1;
		evtimer_add(x->resume_ev, &tv);
		return VEIL_HTTP_PAUSE; /* redelivered after resume */
	}
	return veil_http_sse_feed(&x->p, p, n);
}

static void rx_head(void *arg, struct veil_http_call *call, int status)
{
	struct stream_rx *x = arg;
	const char *ct = veil_http_call_header(call, "content-type");

	x->status = status;
	assert_non_null(ct);
	assert_string_equal(ct, "text/event-stream");
}

static void rx_done(void *arg, int rc, int status, const uint8_t *body, size_t len)
{
	struct stream_rx *x = arg;

	(void)body;
	(void)len;
	x->rc = rc;
	x->status = status;
	x->ndone++;
}

static void test_sse_stream_arrives_in_order_with_pause(void **state)
{
	struct fx f;
	struct stream_rx x = {0};
	struct veil_http_client *cl;
	struct veil_http_request rq = {0};
	char url[128];

	(void)state;
	fx_start(&f, &base_opts);
	x.base = event_base_new();
	x.resume_ev = evtimer_new(x.base, rx_resume, &x);
	x.pause_once = true;
	veil_http_sse_init(&x.p, 0, 0, rx_event, &x);
	assert_int_equal(veil_http_client_new(x.base, &cl), 0);
	snprintf(url, sizeof(url), "%s/sse?n=40", f.url);
	rq.url = url;
	rq.timeout_ms = 5000;
	rq.on_head = rx_head;
	rq.on_data = rx_data;
	rq.on_done = rx_done;
	rq.arg = &x;
	assert_int_equal(veil_http_client_start(cl, &rq, NULL), 0);
	while (!x.ndone)
		event_base_loop(x.base, EVLOOP_ONCE);
	assert_int_equal(x.rc, 0);
	assert_int_equal(x.status, 200);
	assert_int_equal(x.next, 40);
	assert_int_equal(x.done_marker, 1);
	assert_true(x.multiline_ok);
	assert_true(x.note_ok);
	assert_int_equal(x.paused_once, 1);
	assert_false(veil_http_sse_truncated(&x.p));
	veil_http_sse_free(&x.p);
	veil_http_client_free(cl);
	event_free(x.resume_ev);
	event_base_free(x.base);
	fx_stop(&f);
}

static void test_client_disconnect_fires_close_callback(void **state)
{
	struct fx f;
	char resp[4096];
	int fd, i;

	(void)state;
	fx_start(&f, &base_opts);
	fd = raw_connect(f.port);
	raw_sends(fd, "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_read(fd, resp, sizeof(resp), 3000, "data: first\n\n");
	assert_non_null(strstr(resp, "Transfer-Encoding: chunked"));
	assert_non_null(strstr(resp, "data: first\n\n"));
	assert_int_equal(atomic_load(&f.closed), 0);
	close(fd);
	for (i = 0; i < 300 && atomic_load(&f.closed) == 0; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&f.closed), 1);
	fx_stop(&f);
}

/* ---- connection cap, timeouts ---------------------------------------------- */

static void test_connection_cap_503_with_retry_after(void **state)
{
	struct veil_http_server_opts o = base_opts;
	struct fx f;
	struct veil_buf b = VEIL_BUF_INIT(1 << 20);
	char resp[4096];
	int a, c, d, st = 0, i;

	(void)state;
	o.max_conns = 2;
	o.retry_after_s = 7;
	fx_start(&f, &o);
	a = raw_connect(f.port);
	c = raw_connect(f.port);
	for (i = 0; i < 200 && veil_http_server_conns(f.srv) < 2; i++)
		usleep(5000);
	assert_int_equal(veil_http_server_conns(f.srv), 2);
	d = raw_connect(f.port);
	raw_sends(d, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_read(d, resp, sizeof(resp), 3000, NULL);
	assert_int_equal(raw_status(resp), 503);
	assert_non_null(strstr(resp, "\r\nRetry-After: 7\r\n"));
	json_body_of(resp, &b);
	assert_error_shape(&b, "server_error", "server_busy");
	close(d);
	close(a);
	for (i = 0; i < 200 && veil_http_server_conns(f.srv) > 1; i++)
		usleep(5000);
	assert_int_equal(get(&f, "/hello", &st, &b), 0);
	assert_int_equal(st, 200);
	close(c);
	fx_stop(&f);
	veil_buf_free(&b);
}

static void test_idle_and_partial_request_timeouts(void **state)
{
	struct veil_http_server_opts o = base_opts;
	struct fx f;
	char resp[4096];
	uint64_t t0;
	size_t n;
	int fd;

	(void)state;
	o.idle_timeout_ms = 200;
	fx_start(&f, &o);
	/* a request head that stalls: 408 */
	fd = raw_connect(f.port);
	raw_sends(fd, "GET /hello HTTP/1.1\r\nHo");
	raw_read(fd, resp, sizeof(resp), 3000, NULL);
	close(fd);
	assert_int_equal(raw_status(resp), 408);
	assert_non_null(strstr(resp, "request_timeout"));
	/* an idle connection: closed without a word */
	fd = raw_connect(f.port);
	t0 = veil_now_ns();
	n = raw_read(fd, resp, sizeof(resp), 3000, NULL);
	assert_int_equal(n, 0);
	assert_true(veil_now_ns() - t0 < 2000000000ull);
	close(fd);
	fx_stop(&f);
}

/* Drips `byte` every 100 ms (each resetting the idle timeout) for up to
 * max_ms or until the server answers or closes; what it answered in resp,
 * the milliseconds it took as the return value (max_ms: never). */
static int drip_fd_until_closed(int fd, char byte, int max_ms, char *resp, size_t cap);

static int drip_until_closed(uint16_t port, char byte, int max_ms, char *resp, size_t cap)
{
	int fd = raw_connect(port);

	assert_true(fd >= 0);
	return drip_fd_until_closed(fd, byte, max_ms, resp, cap);
}

static int drip_fd_until_closed(int fd, char byte, int max_ms, char *resp, size_t cap)
{
	uint64_t t0 = veil_now_ns();
	int ms = max_ms;

	resp[0] = 0;
	while ((int)((veil_now_ns() - t0) / 1000000) < max_ms) {
		struct pollfd pfd = {fd, POLLIN, 0};

		if (send(fd, &byte, 1, MSG_NOSIGNAL) != 1 || poll(&pfd, 1, 100) > 0) {
			raw_read(fd, resp, cap, 500, NULL);
			ms = (int)((veil_now_ns() - t0) / 1000000);
			break;
		}
	}
	close(fd);
	return ms;
}

/* Bytes that never make a request, one at a time, each resetting the idle
 * timeout: empty lines before a request line are capped (400), and a TLS
 * handshake has the request timeout (found by review: both held a
 * connection for as long as the client kept dripping). */
static void test_dripped_empty_lines_and_tls_handshake_are_bounded(void **state)
{
	struct veil_http_server_opts o = base_opts;
	char resp[4096];
	EVP_PKEY *key;
	X509 *cert;
	struct fx f;
	int ms;

	(void)state;
	o.idle_timeout_ms = 300;
	o.request_timeout_ms = 600;
	fx_start(&f, &o);
	ms = drip_until_closed(f.port, '\n', 3000, resp, sizeof(resp));
	assert_true(ms < 3000);
	assert_int_equal(raw_status(resp), 400);
	assert_non_null(strstr(resp, "too many empty lines"));
	/* a request after a CRLF or two is served as before */
	{
		static const char req[] = "\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

		assert_int_equal(raw_roundtrip(&f, req, sizeof(req) - 1, resp, sizeof(resp)), 200);
	}
	fx_stop(&f);

	assert_int_equal(veil_http_selfsigned(VEIL_HTTP_KEY_P256, "node.example", 1, &key, &cert), 0);
	o.tls_key = key;
	o.tls_cert = cert;
	fx_start(&f, &o);
	/* the first byte of a TLS record, over and over: a ClientHello never done */
	ms = drip_until_closed(f.port, 0x16, 3000, resp, sizeof(resp));
	assert_true(ms < 2000);
	fx_stop(&f);
	EVP_PKEY_free(key);
	X509_free(cert);
}

/* A stalled request gets its 408 when the idle and request timeouts are
 * equal (the defaults: 30 s each) and so fire in one pass: the deadline's
 * 408 was freed unsent by the idle timeout that followed it (found by
 * review). */
static void test_stalled_request_408_with_equal_timeouts(void **state)
{
	struct veil_http_server_opts o = base_opts;
	char resp[4096];
	struct fx f;
	int fd;

	(void)state;
	o.idle_timeout_ms = 400;
	o.request_timeout_ms = 400;
	fx_start(&f, &o);
	for (int i = 0; i < 3; i++) {
		fd = raw_connect(f.port);
		assert_true(fd >= 0);
		raw_sends(fd, "POST /v1/completions");
		raw_read(fd, resp, sizeof(resp), 3000, NULL);
		close(fd);
		assert_int_equal(raw_status(resp), 408);
	}
	fx_stop(&f);
}

/* A request dripped a byte at a time, each byte resetting the idle
 * timeout, gets 408 at the request timeout; over TLS, record bytes that
 * never make a whole record (nothing decrypted arrives) close the
 * connection at the idle + request timeouts.  Both held a connection for
 * as long as the client kept dripping (found by review). */
static void test_dripped_request_and_tls_record_are_bounded(void **state)
{
	struct veil_http_server_opts o = base_opts;
	char resp[4096];
	EVP_PKEY *key;
	X509 *cert;
	SSL_CTX *ctx;
	SSL *ssl;
	struct fx f;
	int ms, fd;

	(void)state;
	o.idle_timeout_ms = 300;
	o.request_timeout_ms = 600;
	fx_start(&f, &o);
	fd = raw_connect(f.port);
	assert_true(fd >= 0);
	raw_sends(fd, "GET /hello HTTP/1.1\r\nX-Pad: ");
	ms = drip_fd_until_closed(fd, 'a', 4000, resp, sizeof(resp));
	assert_true(ms < 2000);
	assert_int_equal(raw_status(resp), 408);
	assert_non_null(strstr(resp, "request_timeout"));
	fx_stop(&f);

	assert_int_equal(veil_http_selfsigned(VEIL_HTTP_KEY_P256, "node.example", 1, &key, &cert), 0);
	o.tls_key = key;
	o.tls_cert = cert;
	fx_start(&f, &o);
	assert_non_null(ctx = SSL_CTX_new(TLS_client_method()));
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	fd = raw_connect(f.port);
	assert_true(fd >= 0);
	assert_non_null(ssl = SSL_new(ctx));
	SSL_set_fd(ssl, fd);
	assert_int_equal(SSL_connect(ssl), 1);
	/* an application-data record header and payload bytes, raw, slowly */
	ms = drip_fd_until_closed(fd, 0x17, 4000, resp, sizeof(resp));
	assert_true(ms < 2500);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	fx_stop(&f);
	EVP_PKEY_free(key);
	X509_free(cert);
}

/* ---- TLS and pinning -------------------------------------------------------- */

static void tls_case(enum veil_http_keytype kt)
{
	struct veil_http_server_opts o = base_opts;
	struct veil_http_request rq = {0};
	struct veil_buf b = VEIL_BUF_INIT(1 << 20);
	EVP_PKEY *key;
	X509 *cert;
	uint8_t pin[32], pin2[32];
	char url[128];
	struct fx f;
	int st = 0;

	assert_int_equal(veil_http_selfsigned(kt, "node.example", 1, &key, &cert), 0);
	assert_int_equal(veil_http_spki_sha256_cert(cert, pin), 0);
	assert_int_equal(veil_http_spki_sha256_key(key, pin2), 0);
	assert_memory_equal(pin, pin2, 32);
	o.tls_key = key;
	o.tls_cert = cert;
	fx_start(&f, &o);
	snprintf(url, sizeof(url), "%s/hello", f.url);
	rq.url = url;
	rq.timeout_ms = 5000;
	rq.pin_spki_sha256 = pin;
	assert_int_equal(veil_http_fetch(&rq, &st, &b), 0);
	assert_int_equal(st, 200);
	assert_non_null(strstr((char *)b.data, "world"));

	pin2[7] ^= 1;
	rq.pin_spki_sha256 = pin2;
	st = 0;
	assert_int_equal(veil_http_fetch(&rq, &st, &b), VEIL_EBADMSG);
	assert_int_equal(st, 0);
	/* no pin: the self-signed certificate is not trusted */
	rq.pin_spki_sha256 = NULL;
	assert_int_equal(veil_http_fetch(&rq, &st, &b), VEIL_EBADMSG);
	fx_stop(&f);
	EVP_PKEY_free(key);
	X509_free(cert);
	veil_buf_free(&b);
}

static void test_tls_pinned_spki_accepted_wrong_pin_refused(void **state)
{
	(void)state;
	tls_case(VEIL_HTTP_KEY_P256);
	tls_case(VEIL_HTTP_KEY_ED25519);
}

/* ---- whole replies: direct send, queue fallback, one TLS record ----------- */

/* Checks one /big response at p (8 MiB or any size): head, header, body. */
static size_t check_big(const char *p, size_t avail, size_t n)
{
	const char *he = memmem(p, avail, "\r\n\r\n", 4);
	char cl[64], *lh = malloc(LONG_HDR_LEN + 16);
	size_t hl, i;

	assert_non_null(he);
	assert_non_null(lh);
	hl = (size_t)(he - p) + 4;
	assert_int_equal(raw_status(p), 200);
	snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", n);
	assert_non_null(memmem(p, hl, cl, strlen(cl)));
	memcpy(lh, "\r\nX-Long: ", 10);
	memset(lh + 10, 'r', LONG_HDR_LEN);
	memcpy(lh + 10 + LONG_HDR_LEN, "\r\n", 2);
	assert_non_null(memmem(p, hl, lh, LONG_HDR_LEN + 12));
	assert_non_null(memmem(p, hl, "\r\nX-Empty: \r\n", strlen("\r\nX-Empty: \r\n")));
	assert_non_null(memmem(p, hl, "\r\nX-Tab: a\tb\r\n", strlen("\r\nX-Tab: a\tb\r\n")));
	assert_null(memmem(p, hl, "X-Bad", 5));
	assert_null(memmem(p, hl, "X-Evil", 6));
	free(lh);
	assert_true(avail - hl >= n);
	for (i = 0; i < n; i++)
		if ((uint8_t)p[hl + i] != big_byte(i))
			fail_msg("body byte %zu differs", i);
	return hl + n;
}

static void test_reply_sent_at_once_or_queued_in_order(void **state)
{
	static const char hello[] = "{\"hello\":\"world\"}";
	const size_t n = 8u << 20, cap = n + 65536;
	struct sockaddr_in sa = {0};
	struct fx f;
	char *buf = malloc(cap), resp[32768];
	size_t len = 0, used;
	int fd, rcv = 4096;
	uint64_t end;

	(void)state;
	assert_non_null(buf);
	fx_start(&f, &base_opts);
	/* a small window and a reader that waits: the socket cannot take
	 * 8 MiB at once, the rest must be queued and follow in order, and
	 * the pipelined request after it must be answered after it */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)), 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons(f.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	raw_sends(fd, "GET /big?n=8388608 HTTP/1.1\r\nHost: x\r\n\r\n"
		      "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	usleep(200000);
	end = veil_now_ns() + 20000000000ull;
	while (len < cap && veil_now_ns() < end) {
		struct pollfd pfd = {fd, POLLIN, 0};
		ssize_t k;

		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		if ((k = recv(fd, buf + len, cap - len, 0)) <= 0)
			break;
		len += (size_t)k;
		if (len > n && memcmp(buf + len - (sizeof(hello) - 1), hello,
				      sizeof(hello) - 1) == 0)
			break;
	}
	used = check_big(buf, len, n);
	assert_int_equal(raw_status(buf + used), 200);
	assert_non_null(memmem(buf + used, len - used, "\r\n\r\n{\"hello\"",
			       strlen("\r\n\r\n{\"hello\"")));
	/* the connection is kept alive after both */
	raw_sends(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_read(fd, resp, sizeof(resp), 3000, "}");
	assert_int_equal(raw_status(resp), 200);
	assert_non_null(strstr(resp, hello));
	assert_null(strstr(resp, "Connection: close"));
	/* headers to the cap: the 17th is refused, the 16 go out */
	raw_sends(fd, "GET /fill HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	len = raw_read(fd, buf, cap, 3000, NULL); /* to EOF: closed */
	assert_int_equal(raw_status(buf), 200);
	assert_non_null(strstr(buf, "X-Fill-15: fff"));
	assert_null(strstr(buf, "X-Fill-16"));
	assert_non_null(strstr(buf, "Connection: close\r\n\r\nfilled"));
	assert_true(len > 16 * 1013);
	close(fd);
	/* HTTP/1.0 without keep-alive: answered, then closed */
	assert_int_equal(raw_roundtrip(&f, "GET /big?n=5 HTTP/1.0\r\n\r\n", 0,
				       resp, sizeof(resp)), 200);
	assert_non_null(strstr(resp, "Connection: close\r\n"));
	fx_stop(&f);

	/* TLS: the same answers, whole, through the bufferevent's path */
	{
		struct veil_http_server_opts o = base_opts;
		struct veil_http_request rq = {0};
		struct veil_buf b = VEIL_BUF_INIT(16u << 20);
		EVP_PKEY *key;
		X509 *cert;
		uint8_t pin[32];
		char url[128];
		int st = 0;
		static const size_t sizes[] = {0, 1, 150, 14000, 20000, 1u << 20};

		assert_int_equal(veil_http_selfsigned(VEIL_HTTP_KEY_P256, NULL, 1,
						      &key, &cert), 0);
		assert_int_equal(veil_http_spki_sha256_cert(cert, pin), 0);
		o.tls_key = key;
		o.tls_cert = cert;
		fx_start(&f, &o);
		rq.url = url;
		rq.timeout_ms = 10000;
		rq.pin_spki_sha256 = pin;
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			snprintf(url, sizeof(url), "%s/big?n=%zu", f.url, sizes[k]);
			veil_buf_reset(&b);
			assert_int_equal(veil_http_fetch(&rq, &st, &b), 0);
			assert_int_equal(st, 200);
			assert_int_equal(b.len, sizes[k]);
			for (size_t i = 0; i < b.len; i++)
				if (b.data[i] != big_byte(i))
					fail_msg("TLS body byte %zu differs", i);
		}
		fx_stop(&f);
		EVP_PKEY_free(key);
		X509_free(cert);
		veil_buf_free(&b);
	}
	free(buf);
}

/* ---- worker hand-off ------------------------------------------------------- */

static void count_msg(void *msg, void *arg)
{
	(*(int *)arg) += *(int *)msg;
}

static void drop_msg(void *msg, void *arg)
{
	(void)msg;
	(*(int *)arg) += 1000;
}

static void test_channel_is_bounded_and_ordered(void **state)
{
	struct event_base *base = event_base_new();
	struct veil_http_chan *c;
	int one = 1, sum = 0, i;

	(void)state;
	assert_int_equal(veil_http_chan_new(base, 4, count_msg, drop_msg, &sum, &c), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(veil_http_chan_post(c, &one), 0);
	assert_int_equal(veil_http_chan_post(c, &one), VEIL_EBUSY);
	assert_int_equal(veil_http_chan_post(c, NULL), VEIL_EINVAL);
	assert_int_equal(veil_http_chan_len(c), 4);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(sum, 4);
	assert_int_equal(veil_http_chan_len(c), 0);
	assert_int_equal(veil_http_chan_post(c, &one), 0);
	veil_http_chan_free(c); /* the queued one goes to drop */
	assert_int_equal(sum, 1004);
	event_base_free(base);
}

#define NCLIENTS 16
#define NEVENTS 200

static void test_worker_threads_stream_under_load(void **state)
{
	struct fx f;
	struct stream_rx x[NCLIENTS];
	struct veil_http_client *cl;
	struct event_base *base = event_base_new();
	char url[128];
	int i, done;

	(void)state;
	fx_start(&f, &base_opts);
	assert_int_equal(veil_http_client_new(base, &cl), 0);
	snprintf(url, sizeof(url), "%s/work?n=%d", f.url, NEVENTS);
	memset(x, 0, sizeof(x));
	for (i = 0; i < NCLIENTS; i++) {
		struct veil_http_request rq = {0};

		veil_http_sse_init(&x[i].p, 0, 0, rx_event, &x[i]);
		rq.url = url;
		rq.timeout_ms = 10000;
		rq.on_head = rx_head;
		rq.on_data = rx_data;
		rq.on_done = rx_done;
		rq.arg = &x[i];
		assert_int_equal(veil_http_client_start(cl, &rq, NULL), 0);
	}
	do {
		event_base_loop(base, EVLOOP_ONCE);
		for (done = 0, i = 0; i < NCLIENTS; i++)
			done += x[i].ndone;
	} while (done < NCLIENTS);
	for (i = 0; i < NCLIENTS; i++) {
		assert_int_equal(x[i].rc, 0);
		assert_int_equal(x[i].status, 200);
		assert_int_equal(x[i].next, NEVENTS);
		assert_int_equal(x[i].done_marker, 1);
		veil_http_sse_free(&x[i].p);
	}
	/* 16 producers into 8 slots: the bound was hit and held */
	assert_true(atomic_load(&f.ebusy) > 0);
	veil_http_client_free(cl);
	event_base_free(base);
	fx_stop(&f);
}

/* ---- graceful shutdown ------------------------------------------------------ */

static void on_shut_done(void *arg)
{
	atomic_store(&((struct fx *)arg)->shut_done, 1);
}

static void do_shutdown(struct fx *f, void *arg)
{
	(void)arg;
	veil_http_server_shutdown(f->srv, 3000, on_shut_done, f);
}

static void test_graceful_shutdown_finishes_requests_in_flight(void **state)
{
	struct fx f;
	char resp[4096];
	int fd, fd2, i;

	(void)state;
	fx_start(&f, &base_opts);
	fd = raw_connect(f.port);
	raw_sends(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
	fd2 = raw_connect(f.port); /* idle keep-alive: closed at once */
	for (i = 0; i < 200 && veil_http_server_conns(f.srv) < 2; i++)
		usleep(5000);
	usleep(50000);
	post_cmd(&f, do_shutdown, NULL);
	assert_int_equal(raw_read(fd2, resp, sizeof(resp), 2000, NULL), 0);
	close(fd2);
	raw_read(fd, resp, sizeof(resp), 3000, NULL);
	assert_int_equal(raw_status(resp), 200);
	assert_non_null(strstr(resp, "Connection: close"));
	assert_non_null(strstr(resp, "slow done"));
	close(fd);
	for (i = 0; i < 300 && !atomic_load(&f.shut_done); i++)
		usleep(10000);
	assert_int_equal(atomic_load(&f.shut_done), 1);
	/* no longer listening */
	fd = raw_connect(f.port);
	if (fd >= 0) {
		assert_int_equal(raw_read(fd, resp, sizeof(resp), 500, NULL), 0);
		close(fd);
	}
	fx_stop(&f);
}

/* ---- SSE parser ------------------------------------------------------------- */

struct collect {
	char out[4096];
	int n;
};

static int collect_cb(void *arg, const char *event, const char *data, size_t len,
		      const char *id)
{
	struct collect *c = arg;

	assert_int_equal(strlen(data), len);
	snprintf(c->out + strlen(c->out), sizeof(c->out) - strlen(c->out),
		 "[%s|%s|%s]", event, data, id);
	c->n++;
	return 0;
}

static void test_sse_parser_line_endings_multiline_and_comments(void **state)
{
	static const char stream[] =
		"\xef\xbb\xbf: comment\r\n"
		"data: a\r\ndata:b\r\n\r\n"
		"event: tick\rid: 7\rdata: c\r\r"
		"data\n\n"          /* empty data line: event with "" */
		"retry: 1500\nfoo: bar\n\n" /* no data: nothing dispatched */
		"data: d1\ndata: d2\n\n"
		"data: trailing";
	const char *want = "[message|a\nb|][tick|c|7][message||7][message|d1\nd2|7]";
	struct veil_http_sse_parser p;
	struct collect c;
	size_t step, i;

	(void)state;
	for (step = 1; step <= sizeof(stream); step++) {
		memset(&c, 0, sizeof(c));
		veil_http_sse_init(&p, 0, 0, collect_cb, &c);
		for (i = 0; i < sizeof(stream) - 1; i += step)
			assert_int_equal(veil_http_sse_feed(&p, (const uint8_t *)stream + i,
							    VEIL_MIN(step, sizeof(stream) - 1 - i)), 0);
		assert_string_equal(c.out, want);
		assert_true(veil_http_sse_truncated(&p));
		assert_int_equal(p.retry_ms, 1500);
		veil_http_sse_free(&p);
	}
}

static void test_sse_parser_caps_lines_and_events(void **state)
{
	struct veil_http_sse_parser p;
	struct collect c = {0};
	char line[200];

	(void)state;
	veil_http_sse_init(&p, 64, 100, collect_cb, &c);
	memset(line, 'x', sizeof(line));
	assert_int_equal(veil_http_sse_feed(&p, (const uint8_t *)line, sizeof(line)), VEIL_ERANGE);
	assert_int_equal(veil_http_sse_feed(&p, (const uint8_t *)"\n", 1), VEIL_EINVAL);
	veil_http_sse_free(&p);

	veil_http_sse_init(&p, 64, 100, collect_cb, &c);
	memcpy(line, "data: ", 6);
	memset(line + 6, 'y', 50);
	line[56] = '\n';
	assert_int_equal(veil_http_sse_feed(&p, (const uint8_t *)line, 57), 0);
	assert_int_equal(veil_http_sse_feed(&p, (const uint8_t *)line, 57), VEIL_ERANGE);
	assert_int_equal(c.n, 0);
	veil_http_sse_free(&p);
}

/* ---- TLS helpers -------------------------------------------------------------- */

static void test_selfsigned_certificate_has_sans(void **state)
{
	EVP_PKEY *key;
	X509 *cert;

	(void)state;
	assert_int_equal(veil_http_selfsigned(VEIL_HTTP_KEY_P256, NULL, 30, &key, &cert), 0);
	assert_int_equal(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_host(cert, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(cert, "example.com", 0, 0, NULL), 0);
	assert_int_equal(X509_verify(cert, key), 1);
	EVP_PKEY_free(key);
	X509_free(cert);
	assert_int_equal(veil_http_selfsigned(7, NULL, 30, &key, &cert), VEIL_EINVAL);
}

/* ---- tests: chunked framing ---------------------------------------------- */

/* The chunked decoder sees its input in whatever pieces TCP delivers: a
 * request written one byte at a time decodes as a whole one does, with chunk
 * extensions skipped, bare-LF line ends taken and trailer fields ignored.  A
 * NUL or other bytes where a line end belongs, a NUL in a chunk size, or a
 * framing line over 1024 bytes is a 400. */
static void test_chunked_body_split_bytewise_and_strict_framing(void **state)
{
	static const char head[] = "POST /echo HTTP/1.1\r\nHost: x\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n";
	static const char whole[] = "POST /echo HTTP/1.1\r\nHost: x\r\n"
				    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
				    "3;a=b\r\nabc\n4\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n";
	static const struct {
		const char *p;
		size_t n;
	} bad[] = {
		{"3\r\nabc\0x\r\n0\r\n\r\n", 15}, /* NUL where CRLF belongs */
		{"3\0\r\nabc\r\n0\r\n\r\n", 14}, /* NUL in the chunk size */
		{"3\r\nabcX\r\n0\r\n\r\n", 14},   /* data longer than its size */
		{"x\r\n", 3},                     /* not a size */
	};
	struct fx f;
	char resp[4096], req[2048];
	int fd;

	(void)state;
	fx_start(&f, &base_opts);
	fd = raw_connect(f.port);
	assert_true(fd >= 0);
	for (size_t i = 0; i < sizeof(whole) - 1; i++)
		raw_send(fd, whole + i, 1);
	raw_read(fd, resp, sizeof(resp), 3000, NULL);
	close(fd);
	assert_int_equal(raw_status(resp), 200);
	assert_non_null(strstr(resp, "\r\n\r\nabcdefg"));

	for (size_t k = 0; k < VEIL_ARRAY_LEN(bad); k++) {
		memcpy(req, head, sizeof(head) - 1);
		memcpy(req + sizeof(head) - 1, bad[k].p, bad[k].n);
		assert_int_equal(raw_roundtrip(&f, req, sizeof(head) - 1 + bad[k].n, resp,
					       sizeof(resp)),
				 400);
		assert_non_null(strstr(resp, "bad_chunk"));
	}
	/* a chunk-size line of 1025 bytes */
	memcpy(req, head, sizeof(head) - 1);
	memset(req + sizeof(head) - 1, '0', 1025);
	memcpy(req + sizeof(head) - 1 + 1025, "\r\n", 2);
	assert_int_equal(raw_roundtrip(&f, req, sizeof(head) - 1 + 1027, resp, sizeof(resp)),
			 400);
	assert_non_null(strstr(resp, "chunk line too long"));
	fx_stop(&f);
}

/* ---- client: calls on one kept client, one after another ----------------- */

static char seq_body[1100]; /* the last call's body, as text */

struct seq_call {
	struct event_base *base;
	int rc, status;
	size_t got;
	bool done;
};

static void seq_done(void *arg, int rc, int status, const uint8_t *body, size_t len)
{
	struct seq_call *s = arg;

	s->rc = rc;
	s->status = status;
	s->got = len;
	snprintf(seq_body, sizeof(seq_body), "%.*s", (int)(len < 1024 ? len : 1024),
		 (const char *)body);
	s->done = true;
	event_base_loopbreak(s->base);
}

static int verify_seen;
static bool verify_refuse;

static int count_verify(void *arg, X509 *leaf)
{
	(void)arg;
	(void)leaf;
	verify_seen++;
	return verify_refuse ? 0 : 1;
}

static int seq_run(struct veil_http_client *cl, struct event_base *base,
		   struct veil_http_request *rq, int *status, size_t *got)
{
	struct seq_call s = {.base = base};
	int rc;

	rq->on_done = seq_done;
	rq->arg = &s;
	if ((rc = veil_http_client_start(cl, rq, NULL)) < 0)
		return rc;
	while (!s.done)
		if (event_base_dispatch(base) < 0)
			break;
	*status = s.status;
	*got = s.got;
	return s.done ? s.rc : VEIL_EINTERNAL;
}

/* A long-lived client runs call after call (its easy handles and connections
 * are kept between calls): each call's pin, headers, body and method are its
 * own.  A wrong pin or none is refused even right after a pinned call to the
 * same server succeeded; a pin never outlives its call.  Prints the client
 * thread's CPU per pinned call on a kept-alive connection. */
static void test_client_reused_calls_keep_their_own_pin_and_options(void **state)
{
	struct veil_http_server_opts o = base_opts;
	struct veil_http_request rq = {0};
	struct event_base *base = event_base_new();
	struct veil_http_client *cl = NULL;
	const char *hdrs[] = {"X-Test: one", NULL};
	EVP_PKEY *key;
	X509 *cert;
	uint8_t pin[32], bad[32];
	char url[128], qurl[128], body[300];
	struct timespec t0, t1;
	size_t got = 0;
	struct fx f;
	int st = 0, i, n = 200;

	(void)state;
	assert_non_null(base);
	assert_int_equal(veil_http_selfsigned(VEIL_HTTP_KEY_P256, "node.example", 1, &key,
					      &cert), 0);
	assert_int_equal(veil_http_spki_sha256_cert(cert, pin), 0);
	memcpy(bad, pin, 32);
	bad[31] ^= 0x80;
	o.tls_key = key;
	o.tls_cert = cert;
	fx_start(&f, &o);
	assert_int_equal(veil_http_client_new(base, &cl), 0);
	snprintf(url, sizeof(url), "%s/echo", f.url);
	snprintf(qurl, sizeof(qurl), "%s/q?a=1", f.url);
	for (i = 0; i < 3; i++) {
		/* pinned POST with a body */
		memset(body, 'a' + i, sizeof(body));
		memset(&rq, 0, sizeof(rq));
		rq.url = url;
		rq.body = body;
		rq.body_len = sizeof(body) - (size_t)i;
		rq.timeout_ms = 5000;
		rq.pin_spki_sha256 = pin;
		assert_int_equal(seq_run(cl, base, &rq, &st, &got), 0);
		assert_int_equal(st, 200);
		assert_int_equal(got, sizeof(body) - (size_t)i);
		/* the same server under a wrong pin, then none: refused */
		rq.pin_spki_sha256 = bad;
		st = -1;
		assert_int_equal(seq_run(cl, base, &rq, &st, &got), VEIL_EBADMSG);
		assert_int_equal(st, 0);
		rq.pin_spki_sha256 = NULL;
		assert_int_equal(seq_run(cl, base, &rq, &st, &got), VEIL_EBADMSG);
		/* a GET with headers after a POST: no body, method or header
		 * is left over from the call before, and the other way */
		memset(&rq, 0, sizeof(rq));
		rq.url = qurl;
		rq.timeout_ms = 5000;
		rq.pin_spki_sha256 = pin;
		rq.headers = i == 1 ? NULL : hdrs;
		assert_int_equal(seq_run(cl, base, &rq, &st, &got), 0);
		assert_int_equal(st, 200);
		if (i == 1)
			assert_null(strstr(seq_body, "one"));
		else
			assert_non_null(strstr(seq_body, "one"));
	}
	/* with a verify hook every call makes a new connection: the hook
	 * (and the pin before it) runs for each one, never skipped because
	 * the handle was kept (this server issues no session tickets, so the
	 * client's own "no resumption" is not what this checks) */
	memset(&rq, 0, sizeof(rq));
	rq.url = qurl;
	rq.timeout_ms = 5000;
	rq.pin_spki_sha256 = pin;
	rq.verify = count_verify;
	for (i = 0; i < 4; i++) {
		assert_int_equal(seq_run(cl, base, &rq, &st, &got), 0);
		assert_int_equal(verify_seen, i + 1);
	}
	verify_refuse = true;
	assert_int_equal(seq_run(cl, base, &rq, &st, &got), VEIL_EBADMSG);
	assert_int_equal(verify_seen, 5);
	verify_refuse = false;
	/* CPU per pinned call on the kept connection */
	memset(&rq, 0, sizeof(rq));
	rq.url = url;
	rq.body = body;
	rq.body_len = 64;
	rq.timeout_ms = 5000;
	rq.pin_spki_sha256 = pin;
	rq.headers = hdrs;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
	for (i = 0; i < n; i++) {
		assert_int_equal(seq_run(cl, base, &rq, &st, &got), 0);
		assert_int_equal(got, 64);
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
	print_message("client CPU per kept-alive pinned call: %.1f us\n",
		      ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
		       (double)(t1.tv_nsec - t0.tv_nsec)) / n / 1e3);
	veil_http_client_free(cl);
	fx_stop(&f);
	event_base_free(base);
	EVP_PKEY_free(key);
	X509_free(cert);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes_exact_prefix_404_and_405),
		cmocka_unit_test(test_query_parameters_are_decoded_and_capped),
		cmocka_unit_test(test_body_cap_413_with_and_without_content_length),
		cmocka_unit_test(test_header_caps_give_431),
		cmocka_unit_test(test_sse_stream_arrives_in_order_with_pause),
		cmocka_unit_test(test_client_disconnect_fires_close_callback),
		cmocka_unit_test(test_connection_cap_503_with_retry_after),
		cmocka_unit_test(test_idle_and_partial_request_timeouts),
		cmocka_unit_test(test_dripped_empty_lines_and_tls_handshake_are_bounded),
		cmocka_unit_test(test_dripped_request_and_tls_record_are_bounded),
		cmocka_unit_test(test_stalled_request_408_with_equal_timeouts),
		cmocka_unit_test(test_tls_pinned_spki_accepted_wrong_pin_refused),
		cmocka_unit_test(test_reply_sent_at_once_or_queued_in_order),
		cmocka_unit_test(test_channel_is_bounded_and_ordered),
		cmocka_unit_test(test_worker_threads_stream_under_load),
		cmocka_unit_test(test_graceful_shutdown_finishes_requests_in_flight),
		cmocka_unit_test(test_sse_parser_line_endings_multiline_and_comments),
		cmocka_unit_test(test_sse_parser_caps_lines_and_events),
		cmocka_unit_test(test_selfsigned_certificate_has_sans),
		cmocka_unit_test(test_chunked_body_split_bytewise_and_strict_framing),
		cmocka_unit_test(test_client_reused_calls_keep_their_own_pin_and_options),
	};
	veil_log_setup(VEIL_LOG_WARN, false, stderr);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
