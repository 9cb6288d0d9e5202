/* veil-gateway speed figures beside references measured in the same run
 * (never a pass/fail test).  scripts/bench_gateway.sh starts the nodes, the
 * gateway and nginx and calls the three modes:
 *
 *   gateway_bench latency --url URL --ref-url URL [--key K] [--reps N]
 *                         [--warmup N] [--path P] [--body JSON] [--header H]
 *     One small non-streamed request at a time on one keep-alive connection
 *     per target, alternating between --url (through the gateway) and
 *     --ref-url (straight to the node) so that the machine's other load
 *     hits both alike.  Each time runs from the first byte written to the
 *     last byte of the response read.  Prints BENCH lines: the p50 the
 *     gateway adds (goal <= 0.5 ms), and p50 / p99 through it against
 *     direct.
 *
 *   gateway_bench rps --url URL [--url URL ...] [--key K] --conns C
 *                     [--seconds S] [--rounds R] [--path P] [--body JSON]
 *                     [--cpu-pid PID ...]
 *     C keep-alive connections, each sending the next request as soon as
 *     the previous answer is in (closed loop), for S seconds after a
 *     half-second warm-up; the URLs take turns, R rounds.  Prints one line
 *     per run: "rps <url index> <round> <req/s> <ok> <failed> <cpu>" for
 *     the script to pick the best of each; <cpu> is the CPU time (user +
 *     system, all threads) the process of the --cpu-pid given in the same
 *     place as the --url spent per answered request in the measured
 *     seconds, in microseconds (-1 without one): on a machine the nodes
 *     keep busy, what a proxy costs shows there better than in req/s.
 *
 *   gateway_bench streams --url URL --pid PID --n N [--key K]
 *                         [--max-tokens M] [--blockers B --blocker-url URL...]
 *                         [--idle-pid NODEPID...] [--label L] [--timeout S]
 *     N streamed chat completions open at once through one proxy (process
 *     PID): first B "blocker" streams straight to each node (--blocker-url,
 *     repeated per node) fill its B decode slots with long generations (the
 *     node runs with a long --ctx so that they last), so the N streams
 *     queue behind them with their SSE stream started (the node sends the
 *     role chunk at once) and all N are open together; then PID's VmRSS is
 *     read, the blockers are dropped (the node cancels them) and every
 *     stream must complete (finish_reason, then [DONE]).  Prints
 *     BENCH|<L> memory per stream ...: (VmRSS with all N open - VmRSS
 *     before) / N.  --idle-pid: the node's threads but its main one run
 *     SCHED_IDLE while the streams open (set_threads_policy says why).
 *
 * Connections: http:// or https:// to a numeric IPv4 address (the bench
 * runs on 127.0.0.1); TLS without certificate checks (a benchmark, not a
 * client anyone trusts).  One thread, epoll, non-blocking sockets, a small
 * HTTP/1.1 response parser (Content-Length, chunked, or until close).
 * Diagnostics on stderr. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "veil/base.h"
#include "veil/http.h"

#define MAX_URLS 4
#define MAX_HEADERS 8
#define HEAD_MAX 8192
#define BODY_KEEP 4096 /* non-streamed answers: enough to check them */

static void die(const char *msg)
{
	fprintf(stderr, "gateway_bench: %s\n", msg);
	exit(1);
}

/* ==================================================================== */
/* targets and requests                                                  */
/* ==================================================================== */

struct target {
	struct sockaddr_in sa;
	bool tls;
	char text[128];
};

static int parse_url(const char *url, struct target *t)
{
	const char *p = url, *colon;
	char host[64];
	long port;
	char *end;

	memset(t, 0, sizeof(*t));
	if (!strncmp(p, "https://", 8)) {
		t->tls = true;
		p += 8;
	} else if (!strncmp(p, "http://", 7)) {
		p += 7;
	} else {
		return -1;
	}
	if (!(colon = strchr(p, ':')) || (size_t)(colon - p) >= sizeof(host))
		return -1;
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	port = strtol(colon + 1, &end, 10);
	if ((*end && *end != '/') || port < 1 || port > 65535)
		return -1;
	t->sa.sin_family = AF_INET;
	t->sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &t->sa.sin_addr) != 1)
		return -1;
	snprintf(t->text, sizeof(t->text), "%s", url);
	return 0;
}

/* The whole request, written anew on each connection that sends it. */
struct request {
	char *bytes;
	size_t len;
};

static void request_build(struct request *r, const char *path, const char *body,
			  const char *key, const char *const *hdrs, size_t nh, bool sse)
{
	struct veil_buf b = VEIL_BUF_INIT(1u << 20);

	veil_buf_appendf(&b, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			     "Content-Type: application/json\r\n"
			     "Content-Length: %zu\r\n", path, strlen(body));
	if (sse)
		veil_buf_append_str(&b, "Accept: text/event-stream\r\n");
	if (key)
		veil_buf_appendf(&b, "Authorization: Bearer %s\r\n", key);
	for (size_t i = 0; i < nh; i++)
		veil_buf_appendf(&b, "%s\r\n", hdrs[i]);
	veil_buf_appendf(&b, "\r\n%s", body);
	if (!b.data)
		die("out of memory");
	r->len = b.len;
	r->bytes = (char *)veil_buf_steal(&b, &r->len);
}

/* ==================================================================== */
/* one client connection                                                */
/* ==================================================================== */

enum cst { C_IDLE, C_CONNECT, C_HANDSHAKE, C_WRITE, C_READ, C_FAILED, C_CLOSED };
enum rst { R_HEAD, R_CL, R_CHUNK_SIZE, R_CHUNK_DATA, R_CHUNK_CRLF, R_TRAILER, R_EOF, R_DONE };

struct conn {
	int fd;
	SSL *ssl;
	enum cst st;
	const struct target *tg;
	const struct request *rq;
	size_t woff;
	bool want_write;     /* TLS asked to wait for writability */
	bool reused;         /* this connection answered before */
	/* response */
	enum rst rs;
	char head[HEAD_MAX];
	size_t hlen;
	int status;
	long long remain;
	bool chunked, close_after;
	char line[128];
	size_t llen;
	char body[BODY_KEEP + 1];
	size_t blen;
	/* SSE (streams) */
	bool sse;
	struct veil_http_sse_parser parser;
	bool first_event, finished, done, receipt, bad;
	/* times */
	uint64_t t0, t1;
	int idx;
};

struct loop {
	int ep;
	SSL_CTX *tls;
	void (*on_done)(struct loop *l, struct conn *c, bool ok);
	void (*on_event)(struct loop *l, struct conn *c);
	void *arg;
	int pending_connects;
};

static int sse_cb(void *arg, const char *event, const char *data, size_t len, const char *id);

static void conn_interest(struct loop *l, struct conn *c, bool add)
{
	struct epoll_event ev = {.data.ptr = c};

	ev.events = EPOLLIN;
	if (c->st == C_CONNECT || c->want_write || (c->st == C_WRITE && !c->ssl))
		ev.events |= EPOLLOUT;
	epoll_ctl(l->ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(struct loop *l, struct conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
		if (c->ssl) {
			SSL_free(c->ssl);
			c->ssl = NULL;
		}
		close(c->fd);
		c->fd = -1;
		if (c->st == C_CONNECT || c->st == C_HANDSHAKE)
			l->pending_connects--;
	}
}

static void resp_reset(struct conn *c)
{
	c->rs = R_HEAD;
	c->hlen = 0;
	c->status = 0;
	c->remain = 0;
	c->chunked = c->close_after = false;
	c->llen = 0;
	c->blen = 0;
	c->first_event = c->finished = c->done = c->receipt = c->bad = false;
	if (c->sse) {
		veil_http_sse_free(&c->parser);
		veil_http_sse_init(&c->parser, 0, 0, sse_cb, c);
	}
}

static void conn_fail(struct loop *l, struct conn *c)
{
	conn_close(l, c);
	c->st = C_FAILED;
	c->t1 = veil_now_ns();
	l->on_done(l, c, false);
}

/* Opens a connection to c->tg and sends c->rq once it is up. */
static int conn_open(struct loop *l, struct conn *c)
{
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fprintf(stderr, "gateway_bench: socket: %s\n", strerror(errno));
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->st = C_CONNECT;
	c->reused = false;
	c->want_write = false;
	l->pending_connects++;
	if (connect(c->fd, (const struct sockaddr *)&c->tg->sa, sizeof(c->tg->sa)) < 0 &&
	    errno != EINPROGRESS) {
		conn_close(l, c);
		return -1;
	}
	if (c->tg->tls) {
		if (!(c->ssl = SSL_new(l->tls)) || SSL_set_fd(c->ssl, c->fd) != 1) {
			conn_close(l, c);
			return -1;
		}
		SSL_set_connect_state(c->ssl);
	}
	conn_interest(l, c, true);
	return 0;
}

static void conn_io(struct loop *l, struct conn *c, uint32_t events);

/* Starts c->rq on c: on its open connection (written at once), or a new
 * one. */
static void conn_start(struct loop *l, struct conn *c)
{
	resp_reset(c);
	c->woff = 0;
	c->t0 = veil_now_ns();
	if (c->fd >= 0 && (c->st == C_IDLE)) {
		c->st = C_WRITE;
		c->reused = true;
		conn_io(l, c, EPOLLOUT);
		return;
	}
	if (conn_open(l, c) < 0) {
		c->st = C_FAILED;
		l->on_done(l, c, false);
	}
}

static int sse_cb(void *arg, const char *event, const char *data, size_t len, const char *id)
{
	struct conn *c = arg;
	json_t *o, *fr;

	(void)id;
	c->first_event = true;
	if (!strcmp(event, "error")) {
		c->bad = true;
		return 0;
	}
	if (!strcmp(event, "veil.receipt")) {
		c->receipt = true;
		return 0;
	}
	if (len == 6 && !memcmp(data, "[DONE]", 6)) {
		c->done = true;
		return 0;
	}
	if (!(o = json_loadb(data, len, 0, NULL))) {
		c->bad = true;
		return 0;
	}
	if (json_object_get(o, "error"))
		c->bad = true;
	fr = json_object_get(json_array_get(json_object_get(o, "choices"), 0), "finish_reason");
	if (json_is_string(fr))
		c->finished = true;
	if (json_is_string(json_object_get(o, "object")) &&
	    !strcmp(json_string_value(json_object_get(o, "object")), "veil.receipt"))
		c->receipt = true;
	json_decref(o);
	return 0;
}

static void body_bytes(struct loop *l, struct conn *c, const char *p, size_t n)
{
	if (c->sse && c->status == 200) {
		bool had = c->first_event;

		if (veil_http_sse_feed(&c->parser, (const uint8_t *)p, n) < 0)
			c->bad = true;
		if (!had && c->first_event && l->on_event)
			l->on_event(l, c);
		return;
	}
	n = VEIL_MIN(n, BODY_KEEP - c->blen);
	memcpy(c->body + c->blen, p, n);
	c->blen += n;
	c->body[c->blen] = '\0';
}

static int head_parse(struct conn *c)
{
	char *p, *e;

	c->head[c->hlen] = '\0';
	if (c->hlen < 12 || strncmp(c->head, "HTTP/1.", 7))
		return -1;
	c->status = atoi(c->head + 9);
	c->rs = R_EOF;
	c->close_after = !strncmp(c->head, "HTTP/1.0", 8);
	for (p = strstr(c->head, "\r\n"); p && p[2] != '\r'; p = e) {
		p += 2;
		if (!(e = strstr(p, "\r\n")))
			break;
		if (!strncasecmp(p, "content-length:", 15)) {
			c->remain = strtoll(p + 15, NULL, 10);
			c->rs = c->remain > 0 ? R_CL : R_DONE;
		} else if (!strncasecmp(p, "transfer-encoding:", 18) && strcasestr(p, "chunked") &&
			   strcasestr(p, "chunked") < e) {
			c->chunked = true;
		} else if (!strncasecmp(p, "connection:", 11) && strcasestr(p, "close") &&
			   strcasestr(p, "close") < e) {
			c->close_after = true;
		}
	}
	if (c->chunked) {
		c->rs = R_CHUNK_SIZE;
		c->llen = 0;
	}
	if (c->rs == R_EOF)
		c->close_after = true;
	return 0;
}

/* Feeds received bytes; 1 when the response is complete, -1 malformed. */
static int resp_feed(struct loop *l, struct conn *c, const char *p, size_t n)
{
	while (n > 0 && c->rs != R_DONE) {
		switch (c->rs) {
		case R_HEAD: {
			size_t k = VEIL_MIN(n, HEAD_MAX - 1 - c->hlen);
			char *end;

			memcpy(c->head + c->hlen, p, k);
			c->head[c->hlen + k] = '\0';
			if (!(end = strstr(c->head, "\r\n\r\n"))) {
				if (c->hlen + k >= HEAD_MAX - 1)
					return -1;
				c->hlen += k;
				p += k;
				n -= k;
				break;
			}
			/* bytes of this piece that belong to the head */
			k = (size_t)(end + 4 - c->head) - c->hlen;
			c->hlen += k;
			p += k;
			n -= k;
			if (head_parse(c) < 0)
				return -1;
			break;
		}
		case R_CL: {
			size_t k = (size_t)VEIL_MIN((long long)n, c->remain);

			body_bytes(l, c, p, k);
			p += k;
			n -= k;
			if ((c->remain -= (long long)k) == 0)
				c->rs = R_DONE;
			break;
		}
		case R_EOF:
			body_bytes(l, c, p, n);
			n = 0;
			break;
		case R_CHUNK_SIZE:
		case R_TRAILER:
			if (*p == '\n') {
				c->line[c->llen] = '\0';
				if (c->llen && c->line[c->llen - 1] == '\r')
					c->line[--c->llen] = '\0';
				if (c->rs == R_TRAILER) {
					if (c->llen == 0)
						c->rs = R_DONE;
				} else {
					char *end;

					c->remain = strtoll(c->line, &end, 16);
					if (end == c->line || c->remain < 0)
						return -1;
					c->rs = c->remain ? R_CHUNK_DATA : R_TRAILER;
				}
				c->llen = 0;
			} else if (c->llen < sizeof(c->line) - 1) {
				c->line[c->llen++] = *p;
			} else {
				return -1;
			}
			p++;
			n--;
			break;
		case R_CHUNK_DATA: {
			size_t k = (size_t)VEIL_MIN((long long)n, c->remain);

			body_bytes(l, c, p, k);
			p += k;
			n -= k;
			if ((c->remain -= (long long)k) == 0) {
				c->rs = R_CHUNK_CRLF;
				c->llen = 0;
			}
			break;
		}
		case R_CHUNK_CRLF:
			if (*p == '\n')
				c->rs = R_CHUNK_SIZE;
			else if (*p != '\r')
				return -1;
			p++;
			n--;
			break;
		case R_DONE:
			break;
		}
	}
	return c->rs == R_DONE ? 1 : 0;
}

static bool resp_ok(const struct conn *c)
{
	if (c->status != 200)
		return false;
	if (c->sse)
		return c->finished && c->done && !c->bad;
	return strstr(c->body, "\"finish_reason\"") != NULL;
}

/* The response is in: report it, keep the connection for the next one. */
static void conn_complete(struct loop *l, struct conn *c)
{
	static int shown;
	bool ok = resp_ok(c);

	c->t1 = veil_now_ns();
	if (c->close_after) {
		conn_close(l, c);
		c->st = C_CLOSED;
	} else {
		c->st = C_IDLE;
		c->reused = true;
		conn_interest(l, c, false);
	}
	if (!ok && c->status != 200 && c->blen && shown++ < 5)
		fprintf(stderr, "gateway_bench: HTTP %d: %.200s\n", c->status, c->body);
	l->on_done(l, c, ok);
}

static void conn_io(struct loop *l, struct conn *c, uint32_t events)
{
	char buf[16384];
	ssize_t r;

	if (c->st == C_CONNECT) {
		int err = 0;
		socklen_t el = sizeof(err);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			if (c->idx < 3)
				fprintf(stderr, "gateway_bench: connect %s: %s\n", c->tg->text,
					strerror(err));
			conn_fail(l, c);
			return;
		}
		c->st = c->ssl ? C_HANDSHAKE : C_WRITE;
		if (!c->ssl)
			l->pending_connects--;
	}
	if (c->st == C_HANDSHAKE) {
		int k = SSL_do_handshake(c->ssl);

		if (k != 1) {
			int e = SSL_get_error(c->ssl, k);

			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				c->want_write = e == SSL_ERROR_WANT_WRITE;
				conn_interest(l, c, false);
				return;
			}
			fprintf(stderr, "gateway_bench: TLS handshake with %s failed\n", c->tg->text);
			ERR_clear_error();
			conn_fail(l, c);
			return;
		}
		l->pending_connects--;
		c->st = C_WRITE;
		c->want_write = false;
	}
	if (c->st == C_WRITE) {
		while (c->woff < c->rq->len) {
			if (c->ssl) {
				int k = SSL_write(c->ssl, c->rq->bytes + c->woff,
						  (int)(c->rq->len - c->woff));

				if (k <= 0) {
					int e = SSL_get_error(c->ssl, k);

					if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
						c->want_write = e == SSL_ERROR_WANT_WRITE;
						conn_interest(l, c, false);
						return;
					}
					ERR_clear_error();
					goto failed;
				}
				r = k;
			} else {
				r = send(c->fd, c->rq->bytes + c->woff, c->rq->len - c->woff,
					 MSG_NOSIGNAL);
				if (r < 0 && errno == EAGAIN) {
					conn_interest(l, c, false);
					return;
				}
				if (r <= 0)
					goto failed;
			}
			c->woff += (size_t)r;
		}
		c->st = C_READ;
		c->want_write = false;
		conn_interest(l, c, false);
	}
	if (c->st != C_READ && c->st != C_IDLE)
		return;
	for (;;) {
		int k;

		if (c->ssl) {
			k = SSL_read(c->ssl, buf, sizeof(buf));
			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);

				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
					if (c->want_write != (e == SSL_ERROR_WANT_WRITE)) {
						c->want_write = e == SSL_ERROR_WANT_WRITE;
						conn_interest(l, c, false);
					}
					return;
				}
				ERR_clear_error();
				r = 0;
			} else {
				r = k;
			}
		} else {
			r = recv(c->fd, buf, sizeof(buf), 0);
			if (r < 0 && errno == EAGAIN)
				return;
		}
		if (r <= 0) {
			/* closed: the end of a body read until close, or a
			 * failure (an idle keep-alive connection closed by the
			 * server: dropped quietly) */
			if (c->st == C_READ && c->rs == R_EOF) {
				c->rs = R_DONE;
				c->close_after = true;
				conn_complete(l, c);
				return;
			}
			if (c->st == C_IDLE) {
				conn_close(l, c);
				c->st = C_CLOSED;
				return;
			}
			goto failed;
		}
		if (c->st != C_READ)
			continue; /* bytes on an idle connection: ignored */
		k = resp_feed(l, c, buf, (size_t)r);
		if (k < 0)
			goto failed;
		if (k == 1) {
			conn_complete(l, c);
			return;
		}
	}
failed:
	if (c->idx < 3 || c->status)
		fprintf(stderr, "gateway_bench: connection to %s failed (HTTP %d, %s)\n",
			c->tg->text, c->status, c->hlen ? "after the head" : "no response");
	conn_fail(l, c);
}

static void loop_init(struct loop *l)
{
	memset(l, 0, sizeof(*l));
	if ((l->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1 failed");
	if (!(l->tls = SSL_CTX_new(TLS_client_method())))
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(l->tls, TLS1_2_VERSION);
	SSL_CTX_set_verify(l->tls, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(l->tls, SSL_MODE_ENABLE_PARTIAL_WRITE |
				     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
}

/* One round of events, waiting at most ms. */
static void loop_once(struct loop *l, int ms)
{
	struct epoll_event evs[512];
	int k = epoll_wait(l->ep, evs, VEIL_ARRAY_LEN(evs), ms);

	for (int i = 0; i < k; i++) {
		struct conn *c = evs[i].data.ptr;

		if (c->fd >= 0)
			conn_io(l, c, evs[i].events);
	}
}

static void conn_init(struct conn *c, const struct target *tg, const struct request *rq,
		      bool sse, int idx)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->st = C_CLOSED;
	c->tg = tg;
	c->rq = rq;
	c->sse = sse;
	c->idx = idx;
	if (sse)
		veil_http_sse_init(&c->parser, 0, 0, sse_cb, c);
}

/* ==================================================================== */
/* options                                                               */
/* ==================================================================== */

struct opts {
	const char *urls[MAX_URLS];
	int nurls;
	const char *ref_url, *key, *path, *body, *label, *model;
	const char *blocker_urls[MAX_URLS];
	int nblocker_urls;
	const char *headers[MAX_HEADERS];
	size_t nheaders;
	int reps, warmup, conns, seconds, rounds, n, max_tokens, blockers, timeout;
	long pid;
	long cpu_pids[MAX_URLS];
	int ncpu_pids;
	long idle_pids[MAX_URLS];
	int nidle;
};

static const char *small_body(const char *model)
{
	static char b[512];

	snprintf(b, sizeof(b),
		 "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
		 "\"max_tokens\":1,\"temperature\":0}", model);
	return b;
}

/* ==================================================================== */
/* latency                                                               */
/* ==================================================================== */

struct lat_state {
	bool done, ok;
};

static void lat_done(struct loop *l, struct conn *c, bool ok)
{
	struct lat_state *s = l->arg;

	(void)c;
	s->done = true;
	s->ok = ok;
}

/* One request on c; its time in ns, or 0 when it failed. */
static uint64_t lat_one(struct loop *l, struct conn *c)
{
	struct lat_state *s = l->arg;
	uint64_t deadline;

	for (int attempt = 0; attempt < 2; attempt++) {
		bool reused = c->fd >= 0 && c->st == C_IDLE;

		if (!reused && c->fd < 0) {
			/* connect (and handshake) outside the timed part: the
			 * figure is per request on a kept-alive connection */
			static const struct request none = {"", 0};
			const struct request *rq = c->rq;

			c->rq = &none;
			s->done = false;
			conn_start(l, c);
			deadline = veil_now_ns() + 10000000000ull;
			while ((c->st == C_CONNECT || c->st == C_HANDSHAKE) &&
			       veil_now_ns() < deadline)
				loop_once(l, 100);
			c->rq = rq;
			if (c->st != C_READ)
				return 0;
			c->st = C_IDLE;
		}
		s->done = false;
		conn_start(l, c);
		deadline = veil_now_ns() + 30000000000ull;
		while (!s->done && veil_now_ns() < deadline)
			loop_once(l, 100);
		if (s->done && s->ok)
			return c->t1 - c->t0;
		/* a kept-alive connection the server had closed: once more */
		if (!(s->done && c->st == C_FAILED && c->status == 0 && reused))
			return 0;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_ms(uint64_t *v, int n, double q)
{
	int i = (int)ceil(q * n) - 1;

	if (n == 0)
		return 0;
	i = i < 0 ? 0 : i >= n ? n - 1 : i;
	return (double)v[i] / 1e6;
}

static int run_latency(const struct opts *o)
{
	struct loop l;
	struct lat_state st = {0};
	struct target tv, tr;
	struct request rv, rr;
	struct conn *cv = calloc(1, sizeof(*cv)), *cr = calloc(1, sizeof(*cr));
	uint64_t *sv = calloc((size_t)o->reps, sizeof(uint64_t));
	uint64_t *sr = calloc((size_t)o->reps, sizeof(uint64_t));
	int nv = 0, nr = 0, fails = 0;
	double v50, v99, r50, r99, vmean = 0, rmean = 0;

	if (!cv || !cr || !sv || !sr)
		die("out of memory");
	if (o->nurls != 1 || !o->ref_url || parse_url(o->urls[0], &tv) < 0 ||
	    parse_url(o->ref_url, &tr) < 0)
		die("latency needs --url URL and --ref-url URL (http[s]://IPv4:PORT)");
	loop_init(&l);
	l.on_done = lat_done;
	l.arg = &st;
	request_build(&rv, o->path, o->body, o->key, o->headers, o->nheaders, false);
	request_build(&rr, o->path, o->body, NULL, o->headers, o->nheaders, false);
	conn_init(cv, &tv, &rv, false, 0);
	conn_init(cr, &tr, &rr, false, 1);
	for (int i = 0; i < o->warmup; i++)
		if (!lat_one(&l, cv) || !lat_one(&l, cr))
			fails++;
	if (fails > o->warmup / 2)
		die("the warm-up requests failed");
	for (int i = 0; i < o->reps; i++) {
		/* alternate which goes first */
		struct conn *a = i & 1 ? cr : cv, *b = i & 1 ? cv : cr;
		uint64_t ta = lat_one(&l, a), tb = lat_one(&l, b);
		uint64_t t_v = a == cv ? ta : tb, t_r = a == cv ? tb : ta;

		if (t_v)
			sv[nv++] = t_v;
		else
			fails++;
		if (t_r)
			sr[nr++] = t_r;
		else
			fails++;
	}
	for (int i = 0; i < nv; i++)
		vmean += (double)sv[i] / 1e6 / nv;
	for (int i = 0; i < nr; i++)
		rmean += (double)sr[i] / 1e6 / nr;
	qsort(sv, (size_t)nv, sizeof(*sv), cmp_u64);
	qsort(sr, (size_t)nr, sizeof(*sr), cmp_u64);
	v50 = pct_ms(sv, nv, 0.5);
	v99 = pct_ms(sv, nv, 0.99);
	r50 = pct_ms(sr, nr, 0.5);
	r99 = pct_ms(sr, nr, 0.99);
	fprintf(stderr, "gateway_bench: latency over %d + %d requests (%d failed): through %s "
			"p50 %.3f p99 %.3f mean %.3f ms; direct %s p50 %.3f p99 %.3f mean %.3f ms\n",
		nv, nr, fails, tv.text, v50, v99, vmean, tr.text, r50, r99, rmean);
	if (nv < o->reps * 9 / 10 || nr < o->reps * 9 / 10) {
		printf("BENCH|%s added latency p50, small non-streamed request (goal <= 0.5 ms)|"
		       "n/a|ms|%d of %d requests failed|n/a\n", o->label, fails, 2 * o->reps);
	} else {
		printf("BENCH|%s added latency p50, small non-streamed request "
		       "(goal <= 0.5 ms, ratio <= 1)|%.3f|ms|goal 0.5 ms; p50 direct to the node "
		       "%.3f ms, through it %.3f ms (same run, %d sequential keep-alive requests "
		       "each)|%.2f\n", o->label, v50 - r50, r50, v50, nv, (v50 - r50) / 0.5);
		printf("BENCH|%s latency p50 through it vs direct to the node|%.3f|ms|"
		       "direct %.3f ms (same run)|%.2f\n", o->label, v50, r50, r50 / v50);
		printf("BENCH|%s latency p99 through it vs direct to the node|%.3f|ms|"
		       "direct %.3f ms (same run); added %.3f ms|%.2f\n", o->label, v99, r99,
		       v99 - r99, r99 / v99);
	}
	free(cv);
	free(cr);
	free(sv);
	free(sr);
	free(rv.bytes);
	free(rr.bytes);
	SSL_CTX_free(l.tls);
	close(l.ep);
	return 0;
}

/* ==================================================================== */
/* requests per second                                                  */
/* ==================================================================== */

struct rps_state {
	uint64_t t_measure, t_stop;
	long ok, failed, failed_all;
	bool stopping;
	int inflight;
};

static void rps_done(struct loop *l, struct conn *c, bool ok)
{
	struct rps_state *s = l->arg;
	uint64_t now = c->t1;

	s->inflight--;
	if (!ok)
		s->failed_all++;
	if (now >= s->t_measure && now < s->t_stop) {
		if (ok)
			s->ok++;
		else
			s->failed++;
	}
	if (s->stopping || now >= s->t_stop)
		return;
	if (!ok && c->st == C_FAILED) {
		/* a refused or broken connection: do not spin on it */
		if (s->failed_all > 1000)
			return;
	}
	s->inflight++;
	conn_start(l, c);
}

/* CPU time (user + system, every thread) of process pid in clock ticks;
 * -1 when it cannot be read. */
static long long proc_cpu_ticks(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, stm;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* fields after the command name (which may hold spaces) */
	if (!(p = strrchr(buf, ')')) ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
		   &stm) != 2)
		return -1;
	return (long long)(ut + stm);
}

static double rps_run(const struct opts *o, const struct target *tg, const struct request *rq,
		      long cpu_pid, long *ok, long *failed, double *cpu_us)
{
	struct loop l;
	struct rps_state st = {0};
	struct conn *cs = calloc((size_t)o->conns, sizeof(*cs));
	uint64_t deadline;
	long long c0 = -1, c1 = -1;

	if (!cs)
		die("out of memory");
	loop_init(&l);
	l.on_done = rps_done;
	l.arg = &st;
	st.t_measure = veil_now_ns() + 500000000ull;
	st.t_stop = st.t_measure + (uint64_t)o->seconds * 1000000000ull;
	for (int i = 0; i < o->conns; i++) {
		conn_init(&cs[i], tg, rq, false, i);
		st.inflight++;
		conn_start(&l, &cs[i]);
	}
	while (veil_now_ns() < st.t_stop) {
		loop_once(&l, 20);
		if (cpu_pid > 0 && c0 < 0 && veil_now_ns() >= st.t_measure)
			c0 = proc_cpu_ticks(cpu_pid);
	}
	if (cpu_pid > 0 && c0 >= 0)
		c1 = proc_cpu_ticks(cpu_pid);
	st.stopping = true;
	deadline = veil_now_ns() + 10000000000ull;
	while (st.inflight > 0 && veil_now_ns() < deadline)
		loop_once(&l, 50);
	for (int i = 0; i < o->conns; i++)
		conn_close(&l, &cs[i]);
	free(cs);
	SSL_CTX_free(l.tls);
	close(l.ep);
	*ok = st.ok;
	*failed = st.failed;
	*cpu_us = c0 >= 0 && c1 >= c0 && st.ok > 0
			  ? (double)(c1 - c0) * 1e6 / (double)sysconf(_SC_CLK_TCK) / (double)st.ok
			  : -1;
	return (double)st.ok / o->seconds;
}

static int run_rps(const struct opts *o)
{
	struct target tg[MAX_URLS];
	struct request rq[MAX_URLS];

	if (o->nurls < 1 || o->conns < 1 || o->seconds < 1)
		die("rps needs --url, --conns and --seconds");
	for (int i = 0; i < o->nurls; i++) {
		if (parse_url(o->urls[i], &tg[i]) < 0)
			die("bad --url (http[s]://IPv4:PORT)");
		request_build(&rq[i], o->path, o->body, o->key, o->headers, o->nheaders, false);
	}
	for (int r = 0; r < o->rounds; r++)
		for (int i = 0; i < o->nurls; i++) {
			long ok, failed;
			double cpu;
			double rps = rps_run(o, &tg[i], &rq[i], i < o->ncpu_pids ? o->cpu_pids[i] : 0,
					     &ok, &failed, &cpu);

			fprintf(stderr, "gateway_bench: %s round %d, %d connections: %.1f req/s "
					"(%ld ok, %ld failed; %.0f us CPU per request)\n", tg[i].text,
				r + 1, o->conns, rps, ok, failed, cpu);
			printf("rps %d %d %.1f %ld %ld %.1f\n", i, r + 1, failed ? 0.0 : rps, ok,
			       failed, cpu);
			fflush(stdout);
		}
	for (int i = 0; i < o->nurls; i++)
		free(rq[i].bytes);
	return 0;
}

/* ==================================================================== */
/* many streams at once                                                 */
/* ==================================================================== */

static long proc_kib(long pid, const char *field)
{
	char path[64], line[256], fmt[64];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	snprintf(fmt, sizeof(fmt), "%s: %%ld kB", field);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, fmt, &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* The scheduling policy of every thread of `pid` but its main one (the
 * node's engine and workers; the main thread runs the event loop).  While
 * the streams are being opened the blockers keep the node's engine busy:
 * with SCHED_IDLE it takes only CPU time nobody else wants, so the opening
 * (the node's TLS handshakes, the proxy, this client) is not slowed by it.
 * Only as root: an unprivileged thread may enter SCHED_IDLE but (with the
 * usual RLIMIT_NICE of 0) not leave it, and the node must run at full speed
 * again once the blockers are dropped. */
static void set_threads_policy(long pid, int policy)
{
	char path[64];
	struct dirent *e;
	struct sched_param sp = {0};
	DIR *d;

	if (geteuid() != 0)
		return;
	snprintf(path, sizeof(path), "/proc/%ld/task", pid);
	if (!(d = opendir(path)))
		return;
	while ((e = readdir(d))) {
		long tid = strtol(e->d_name, NULL, 10);

		if (tid > 0 && tid != pid && sched_setscheduler((pid_t)tid, policy, &sp) < 0)
			fprintf(stderr, "gateway_bench: sched_setscheduler(%ld): %s\n", tid,
				strerror(errno));
	}
	closedir(d);
}

struct st_state {
	int opened, started, completed, failed, receipts, bad_started;
	int blockers_started;
	bool dropped;
};

static void st_done(struct loop *l, struct conn *c, bool ok)
{
	struct st_state *s = l->arg;

	if (c->idx < 0) {
		/* a blocker ended: fine once we dropped it, noted otherwise */
		if (!s->dropped)
			fprintf(stderr, "gateway_bench: a blocker stream ended early (HTTP %d)\n",
				c->status);
		return;
	}
	if (ok) {
		s->completed++;
		s->receipts += c->receipt;
	} else {
		if (s->failed < 5)
			fprintf(stderr, "gateway_bench: stream %d failed: HTTP %d%s%s%s %.200s\n",
				c->idx, c->status, c->finished ? "" : ", no finish_reason",
				c->done ? "" : ", no [DONE]", c->bad ? ", error event" : "",
				c->status != 200 ? c->body : "");
		s->failed++;
	}
	/* done with it: the keep-alive connection is not what is measured */
	conn_close(l, c);
	c->st = C_CLOSED;
}

static void st_event(struct loop *l, struct conn *c)
{
	struct st_state *s = l->arg;

	if (c->idx < 0)
		s->blockers_started++;
	else
		s->started++;
}

static int run_streams(const struct opts *o)
{
	struct loop l;
	struct st_state st = {0};
	struct target tg, tb[MAX_URLS];
	int nbl = o->blockers * o->nblocker_urls;
	struct request rq, rb;
	struct conn *cs = calloc((size_t)o->n, sizeof(*cs));
	struct conn *bl = calloc((size_t)nbl + 1, sizeof(*bl));
	char body[512];
	long before, peak = -1, after, hwm, rss;
	int open_at_peak = 0, done_at_peak = 0;
	uint64_t t0, deadline, t_all_open = 0, t_end;
	struct rlimit rlim;

	if (!cs || !bl)
		die("out of memory");
	if (o->nurls != 1 || parse_url(o->urls[0], &tg) < 0 || o->pid <= 0 || o->n < 1)
		die("streams needs --url URL, --pid PID and --n N");
	if (o->blockers && !o->nblocker_urls)
		die("--blockers needs --blocker-url URL");
	for (int i = 0; i < o->nblocker_urls; i++)
		if (parse_url(o->blocker_urls[i], &tb[i]) < 0)
			die("bad --blocker-url (http[s]://IPv4:PORT)");
	if (getrlimit(RLIMIT_NOFILE, &rlim) == 0 && rlim.rlim_cur < (rlim_t)o->n + 256) {
		rlim.rlim_cur = VEIL_MIN(rlim.rlim_max, (rlim_t)o->n + 256);
		setrlimit(RLIMIT_NOFILE, &rlim);
	}
	loop_init(&l);
	l.on_done = st_done;
	l.on_event = st_event;
	l.arg = &st;
	snprintf(body, sizeof(body),
		 "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
		 "\"max_tokens\":%d,\"temperature\":0,\"stream\":true}",
		 o->model, o->max_tokens);
	request_build(&rq, "/v1/chat/completions", body, o->key, o->headers, o->nheaders, true);
	snprintf(body, sizeof(body),
		 "{\"model\":\"%s\",\"prompt\":\"Once\",\"max_tokens\":1000000,"
		 "\"temperature\":0,\"stream\":true}", o->model);
	request_build(&rb, "/v1/completions", body, NULL, NULL, 0, true);

	/* warm-up: a few streams one after another (buffers, TLS to the node,
	 * the key cache) so that the baseline has them */
	for (int i = 0; i < 4; i++) {
		struct conn *c = &cs[0];

		conn_init(c, &tg, &rq, true, 0);
		conn_start(&l, c);
		deadline = veil_now_ns() + 20000000000ull;
		while (c->st != C_CLOSED && c->st != C_FAILED && veil_now_ns() < deadline)
			loop_once(&l, 50);
		veil_http_sse_free(&c->parser);
	}
	if (st.completed != 4)
		die("the warm-up streams failed");
	st.completed = st.started = st.receipts = 0;
	usleep(300000);
	before = proc_kib(o->pid, "VmRSS");

	/* the blockers: one per decode slot of the node */
	for (int i = 0; i < nbl; i++) {
		conn_init(&bl[i], &tb[i / o->blockers], &rb, true, -1 - i);
		conn_start(&l, &bl[i]);
	}
	deadline = veil_now_ns() + 20000000000ull;
	while (st.blockers_started < nbl && veil_now_ns() < deadline)
		loop_once(&l, 50);
	if (st.blockers_started < nbl)
		fprintf(stderr, "gateway_bench: only %d of %d blockers started\n",
			st.blockers_started, nbl);
	for (int i = 0; i < o->nidle; i++)
		set_threads_policy(o->idle_pids[i], SCHED_IDLE);

	/* the streams, at most 128 connecting at once (the listen backlog is
	 * not what is measured) */
	t0 = veil_now_ns();
	deadline = t0 + (uint64_t)o->timeout * 1000000000ull;
	while (veil_now_ns() < deadline) {
		while (st.opened < o->n && l.pending_connects < 128) {
			struct conn *c = &cs[st.opened];

			conn_init(c, &tg, &rq, true, st.opened);
			st.opened++;
			conn_start(&l, c);
		}
		loop_once(&l, 20);
		rss = proc_kib(o->pid, "VmRSS");
		if (st.started - st.completed > open_at_peak ||
		    (st.started - st.completed == open_at_peak && rss > peak)) {
			open_at_peak = st.started - st.completed;
			done_at_peak = st.completed;
			peak = rss;
		}
		if (st.started + st.failed >= o->n)
			break;
	}
	t_all_open = veil_now_ns();
	/* let it settle, then read the memory with all of them open */
	for (int i = 0; i < 10; i++)
		loop_once(&l, 50);
	rss = proc_kib(o->pid, "VmRSS");
	if (st.started - st.completed >= open_at_peak) {
		open_at_peak = st.started - st.completed;
		done_at_peak = st.completed;
		peak = VEIL_MAX(peak, rss);
	}
	fprintf(stderr, "gateway_bench: %d streams: %d started in %.2f s (%d complete, %d "
			"failed so far); VmRSS %ld -> %ld KiB with %d open\n", o->n, st.started,
		(double)(t_all_open - t0) / 1e9, st.completed, st.failed, before, peak,
		open_at_peak);

	/* drop the blockers: the node cancels them and serves the queue */
	for (int i = 0; i < o->nidle; i++)
		set_threads_policy(o->idle_pids[i], SCHED_OTHER);
	st.dropped = true;
	for (int i = 0; i < nbl; i++) {
		conn_close(&l, &bl[i]);
		bl[i].st = C_CLOSED;
	}
	while (st.completed + st.failed < st.opened && veil_now_ns() < deadline)
		loop_once(&l, 50);
	t_end = veil_now_ns();
	after = proc_kib(o->pid, "VmRSS");
	hwm = proc_kib(o->pid, "VmHWM");
	fprintf(stderr, "gateway_bench: %d streams: %d complete (%d with a receipt), %d "
			"failed, %d unfinished after %.2f s; VmRSS after %ld KiB, VmHWM %ld KiB\n",
		o->n, st.completed, st.receipts, st.failed,
		st.opened - st.completed - st.failed, (double)(t_end - t0) / 1e9, after, hwm);
	if (st.completed < o->n || before < 0 || peak < 0 || open_at_peak < 1)
		printf("BENCH|%s memory per stream, %d concurrent SSE streams|n/a|KiB|"
		       "%d of %d streams complete, %d failed|n/a\n", o->label, o->n, st.completed,
		       o->n, st.failed);
	else
		printf("BENCH|%s memory per stream, %d concurrent SSE streams (all complete)|%.1f|"
		       "KiB|VmRSS %ld -> %ld KiB with %d open at once (%d already done)|n/a\n",
		       o->label, o->n, (double)(peak - before) / open_at_peak, before, peak,
		       open_at_peak, done_at_peak);
	printf("streams %s n %d complete %d failed %d open_at_peak %d rss_before %ld "
	       "rss_peak %ld kib_per_stream %.1f\n", o->label, o->n, st.completed, st.failed,
	       open_at_peak, before, peak,
	       open_at_peak ? (double)(peak - before) / open_at_peak : 0.0);
	for (int i = 0; i < st.opened; i++) {
		conn_close(&l, &cs[i]);
		veil_http_sse_free(&cs[i].parser);
	}
	for (int i = 0; i < nbl; i++)
		veil_http_sse_free(&bl[i].parser);
	free(cs);
	free(bl);
	free(rq.bytes);
	free(rb.bytes);
	SSL_CTX_free(l.tls);
	close(l.ep);
	return 0;
}

/* ==================================================================== */

static void usage(void)
{
	fprintf(stderr,
		"usage: gateway_bench latency --url URL --ref-url URL [--key K] [--reps N]\n"
		"                     [--warmup N] [--path P] [--body JSON] [--header H]\n"
		"                     [--label L]\n"
		"       gateway_bench rps --url URL [--url URL...] [--key K] [--conns C]\n"
		"                     [--seconds S] [--rounds R] [--path P] [--body JSON]\n"
		"                     [--cpu-pid PID...]\n"
		"       gateway_bench streams --url URL --pid PID --n N [--key K]\n"
		"                     [--max-tokens M] [--model NAME] [--blockers B\n"
		"                     --blocker-url URL...] [--idle-pid PID...] [--label L]\n"
		"                     [--timeout S]\n");
	exit(2);
}

static int num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!*s || *end || v < 0 || v > 1 << 30)
		usage();
	return (int)v;
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	if (argc < 2)
		usage();
	o.path = "/v1/chat/completions";
	o.model = "stories260K";
	o.label = "veil-gateway";
	o.reps = 500;
	o.warmup = 50;
	o.conns = 32;
	o.seconds = 3;
	o.rounds = 1;
	o.n = 5000;
	o.max_tokens = 4;
	o.timeout = 90;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--url")) {
			if (o.nurls == MAX_URLS)
				usage();
			o.urls[o.nurls++] = v;
		} else if (!strcmp(a, "--header")) {
			if (o.nheaders == MAX_HEADERS || strpbrk(v, "\r\n"))
				usage();
			o.headers[o.nheaders++] = v;
		}
		else if (!strcmp(a, "--ref-url")) o.ref_url = v;
		else if (!strcmp(a, "--blocker-url")) {
			if (o.nblocker_urls == MAX_URLS)
				usage();
			o.blocker_urls[o.nblocker_urls++] = v;
		}
		else if (!strcmp(a, "--key")) o.key = v;
		else if (!strcmp(a, "--path")) o.path = v;
		else if (!strcmp(a, "--body")) o.body = v;
		else if (!strcmp(a, "--model")) o.model = v;
		else if (!strcmp(a, "--label")) o.label = v;
		else if (!strcmp(a, "--reps")) o.reps = num(v);
		else if (!strcmp(a, "--warmup")) o.warmup = num(v);
		else if (!strcmp(a, "--conns")) o.conns = num(v);
		else if (!strcmp(a, "--seconds")) o.seconds = num(v);
		else if (!strcmp(a, "--rounds")) o.rounds = num(v);
		else if (!strcmp(a, "--n")) o.n = num(v);
		else if (!strcmp(a, "--max-tokens")) o.max_tokens = num(v);
		else if (!strcmp(a, "--blockers")) o.blockers = num(v);
		else if (!strcmp(a, "--timeout")) o.timeout = num(v);
		else if (!strcmp(a, "--pid")) o.pid = num(v);
		else if (!strcmp(a, "--cpu-pid")) {
			if (o.ncpu_pids == MAX_URLS)
				usage();
			o.cpu_pids[o.ncpu_pids++] = num(v);
		}
		else if (!strcmp(a, "--idle-pid")) {
			if (o.nidle == MAX_URLS)
				usage();
			o.idle_pids[o.nidle++] = num(v);
		}
		else usage();
	}
	if (strpbrk(o.model, "\"\\"))
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[1], "streams"))
		return run_streams(&o);
	if (!o.body)
		o.body = small_body(o.model);
	if (!strcmp(argv[1], "latency"))
		return run_latency(&o);
	if (!strcmp(argv[1], "rps"))
		return run_rps(&o);
	usage();
	return 2;
}
